//! The whole state as a stream of bounded key/value chunks (what a Raft snapshot carries), its
//! import, and a digest to compare replicas.

use crate::fsm::{decode, Fsm, Meta};
use crate::keys;
use crate::store::{Space, Store, StoreError, StoreRead};
use serde::{Deserialize, Serialize};

/// Default bound of one chunk's payload.
pub const DEFAULT_CHUNK_BYTES: usize = 1024 * 1024;

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
    let mut h = blake3::Hasher::new();
    for s in Space::ALL {
        for r in store.scan(s, b"", b"") {
            let (k, v) = r?;
            h.update(&[s.code()]);
            h.update(&(k.len() as u64).to_be_bytes());
            h.update(&k);
            h.update(&(v.len() as u64).to_be_bytes());
            h.update(&v);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

impl<S: Store> Fsm<S> {
    /// This replica's state digest.
    pub fn digest(&self) -> Result<String, StoreError> {
        digest(&self.store)
    }

    /// Exports this replica's committed state.
    pub fn export(
        &self,
        chunk_bytes: usize,
    ) -> impl Iterator<Item = Result<Chunk, StoreError>> + '_ {
        export(&self.store, chunk_bytes)
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
