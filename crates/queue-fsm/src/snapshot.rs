//! The whole state as a stream of bounded key/value chunks (what a Raft snapshot carries), its
//! import, and a digest to compare replicas.

use crate::fsm::{decode, Fsm, Meta};
use crate::keys;
use crate::store::{Space, Store, StoreError, StoreRead};
use serde::{Deserialize, Serialize};

/// Default bound of one chunk's payload.
pub const DEFAULT_CHUNK_BYTES: usize = 1024 * 1024;

/// Stored (in `Space::Meta`) while [`Fsm::import_streamed`] replaces the state: present, the
/// store holds part of the old state and part of the new one, and only a new import from the
/// same source can make it whole (see [`Fsm::import_incomplete`]).
pub const IMPORT_MARKER: &[u8] = b"fsm/import-in-progress";

/// Keys deleted per batch when an import clears the old state.
const CLEAR_BATCH_KEYS: usize = 16 * 1024;

/// Entries of one or more keyspaces, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// (keyspace code, key, value)
    pub entries: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

impl Chunk {
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, k, v)| 1 + k.len() + v.len())
            .sum()
    }
}

/// Streams every keyspace of `store` in order, in chunks of about `chunk_bytes` (an entry
/// larger than that gets a chunk of its own). Pass a point-in-time view for a consistent
/// export while writes go on.
pub fn export<'a>(
    store: &'a dyn StoreRead,
    chunk_bytes: usize,
) -> impl Iterator<Item = Result<Chunk, StoreError>> + 'a {
    let mut it = Space::ALL.into_iter().flat_map(move |s| {
        store
            .scan(s, b"", b"")
            .map(move |r| r.map(|(k, v)| (s, k, v)))
    });
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut chunk = Chunk::default();
        let mut size = 0;
        loop {
            match it.next() {
                None => {
                    done = true;
                    break;
                }
                Some(Err(e)) => {
                    done = true;
                    return Some(Err(e));
                }
                Some(Ok((s, k, v))) => {
                    size += 1 + k.len() + v.len();
                    chunk.entries.push((s.code(), k, v));
                    if size >= chunk_bytes {
                        break;
                    }
                }
            }
        }
        if chunk.entries.is_empty() {
            None
        } else {
            Some(Ok(chunk))
        }
    })
}

/// A hex digest of every keyspace's content; equal digests mean equal states.
pub fn digest(store: &dyn StoreRead) -> Result<String, StoreError> {
    let mut d = Digester::new(false);
    for s in Space::ALL {
        for r in store.scan(s, b"", b"") {
            let (k, v) = r?;
            d.update(s.code(), &k, &v);
        }
    }
    Ok(d.finish())
}

/// Keys of `Space::Meta` that start with this are the embedding layer's (raft-store's applied
/// log id and membership), not the queue's.
pub const EMBEDDER_META_PREFIX: &[u8] = b"raft/";

/// A hex digest of the queue's content alone: every keyspace without the embedding layer's
/// keys ([`EMBEDDER_META_PREFIX`]). A backup and the cluster restored from it (with a new log
/// and membership) have equal queue digests.
pub fn queue_digest(store: &dyn StoreRead) -> Result<String, StoreError> {
    let mut d = Digester::new(true);
    for s in Space::ALL {
        for r in store.scan(s, b"", b"") {
            let (k, v) = r?;
            d.update(s.code(), &k, &v);
        }
    }
    Ok(d.finish())
}

/// Computes [`digest`] or [`queue_digest`] from entries fed in export order (e.g. read back
/// from a snapshot's chunks).
pub struct Digester {
    h: blake3::Hasher,
    queue_only: bool,
}

impl Digester {
    /// `queue_only`: leave out the embedding layer's keys, as [`queue_digest`] does.
    pub fn new(queue_only: bool) -> Digester {
        Digester {
            h: blake3::Hasher::new(),
            queue_only,
        }
    }

    pub fn update(&mut self, space: u8, k: &[u8], v: &[u8]) {
        if self.queue_only && space == Space::Meta.code() && k.starts_with(EMBEDDER_META_PREFIX) {
            return;
        }
        self.h.update(&[space]);
        self.h.update(&(k.len() as u64).to_be_bytes());
        self.h.update(k);
        self.h.update(&(v.len() as u64).to_be_bytes());
        self.h.update(v);
    }

    pub fn finish(&self) -> String {
        self.h.finalize().to_hex().to_string()
    }
}

impl<S: Store> Fsm<S> {
    /// This replica's state digest.
    pub fn digest(&self) -> Result<String, StoreError> {
        digest(&self.store)
    }

    /// This replica's queue digest (see [`queue_digest`]).
    pub fn queue_digest(&self) -> Result<String, StoreError> {
        queue_digest(&self.store)
    }

    /// Exports this replica's committed state.
    pub fn export(
        &self,
        chunk_bytes: usize,
    ) -> impl Iterator<Item = Result<Chunk, StoreError>> + '_ {
        export(&self.store, chunk_bytes)
    }

    /// Whether an [`import_streamed`](Self::import_streamed) was cut short (a crash, an I/O
    /// error): the store is then neither the old state nor the new one, and must be imported
    /// again before it is used.
    pub fn import_incomplete(&self) -> Result<bool, StoreError> {
        Ok(self.store().get(Space::Meta, IMPORT_MARKER)?.is_some())
    }

    /// Replaces the whole state with `chunks` in bounded memory: writes go in batches of about
    /// one chunk (deletes of the old keys in batches of `CLEAR_BATCH_KEYS`), so the state is
    /// never held whole. Not atomic, so the first batch stores [`IMPORT_MARKER`] and the last
    /// one removes it, and the store is synced before this returns; a cut in between leaves
    /// the marker (a store's batches survive a crash in order), which the caller checks at
    /// start-up with [`import_incomplete`](Self::import_incomplete) and repairs by importing
    /// again. The caller checks the source (its digest) *before*: an error from `chunks` half
    /// way leaves a half state behind.
    pub fn import_streamed(
        &mut self,
        chunks: impl IntoIterator<Item = Result<Chunk, StoreError>>,
    ) -> Result<(), StoreError> {
        self.store_mut()
            .write(vec![(Space::Meta, IMPORT_MARKER.to_vec(), Some(vec![1]))])?;
        for s in Space::ALL {
            let mut from: Vec<u8> = Vec::new();
            loop {
                let mut batch = Vec::new();
                for r in self.store().scan(s, b"", &from).take(CLEAR_BATCH_KEYS) {
                    let k = r?.0;
                    if !(s == Space::Meta && k == IMPORT_MARKER) {
                        batch.push((s, k, None));
                    }
                }
                let Some((_, last, _)) = batch.last() else {
                    break;
                };
                // The next scan starts just after the last key deleted, not over its
                // tombstones again.
                from = last.clone();
                from.push(0);
                self.store_mut().write(batch)?;
            }
        }
        for chunk in chunks {
            let mut batch = Vec::new();
            for (code, k, v) in chunk?.entries {
                let s = Space::from_code(code)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown keyspace {code}")))?;
                if s == Space::Meta && k == IMPORT_MARKER {
                    return Err(StoreError::Corrupt(
                        "the imported state is itself a cut-short import".into(),
                    ));
                }
                batch.push((s, k, Some(v)));
            }
            self.store_mut().write(batch)?;
        }
        self.store_mut()
            .write(vec![(Space::Meta, IMPORT_MARKER.to_vec(), None)])?;
        self.store_mut().sync()?;
        let meta: Meta = match self.store().get(Space::Meta, keys::META_STATE)? {
            Some(b) => decode("meta", &b)?,
            None => Meta::fresh(self.meta().config.clone()),
        };
        self.reset_to(meta);
        Ok(())
    }

    /// Replaces the whole state with the exported chunks, atomically and durably: one batch
    /// deletes every key there is and writes every key of the chunks, so a crash leaves either
    /// the old state or the new one, and the store is synced before this returns. The sync
    /// matters because the log entries the snapshot covers are purged once it is installed:
    /// an installed state that a power loss could take back would need entries that are gone.
    /// (The snapshot is in memory already; so is this batch.)
    pub fn import(&mut self, chunks: impl IntoIterator<Item = Chunk>) -> Result<(), StoreError> {
        let mut batch = Vec::new();
        for s in Space::ALL {
            for r in self.store().scan(s, b"", b"") {
                batch.push((s, r?.0, None));
            }
        }
        for chunk in chunks {
            for (code, k, v) in chunk.entries {
                let s = Space::from_code(code)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown keyspace {code}")))?;
                batch.push((s, k, Some(v)));
            }
        }
        self.store_mut().write(batch)?;
        self.store_mut().sync()?;
        let meta: Meta = match self.store().get(Space::Meta, keys::META_STATE)? {
            Some(b) => decode("meta", &b)?,
            None => Meta::fresh(self.meta().config.clone()),
        };
        self.reset_to(meta);
        Ok(())
    }
}
