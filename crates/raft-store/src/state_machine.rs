//! The queue state machine as openraft's `RaftStateMachine`.
//!
//! Apply: each log entry becomes one `Fsm::apply_entry`, which writes the queue changes, the
//! applied log id and (for membership entries) the membership in one RocksDB batch. The
//! result goes back through the entry's responder once that batch is written.
//!
//! Snapshots: the whole state machine exported as bounded chunks while apply is held off (so
//! the export matches the applied log id inside it), written to `snapshots/current` with a
//! temp file + rename, and installed by importing the chunks.

use crate::types::{
    decode, encode, io_err, LogId, Proposal, ProposalResult, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use queue_fsm::snapshot::{Chunk, DEFAULT_CHUNK_BYTES};
use queue_fsm::{Effects, Fsm, FsmConfig, RocksOptions, RocksStore, Space, StoreRead};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const KEY_APPLIED: &[u8] = b"raft/applied";
const KEY_MEMBERSHIP: &[u8] = b"raft/membership";

/// The state machine, shared between openraft's apply worker and the node's read path.
pub type SharedFsm = Arc<Mutex<Fsm<RocksStore>>>;

/// Called after each applied entry with what it decided (the node wakes blocked reserves).
pub type EffectsHook = Arc<dyn Fn(&Effects) + Send + Sync>;

pub struct StateMachine {
    fsm: SharedFsm,
    snapshot_dir: PathBuf,
    on_effects: Option<EffectsHook>,
}

/// Locks the state machine; a poisoned lock means an apply panicked half way, and the replica
/// must not go on from that state.
pub fn lock(fsm: &SharedFsm) -> io::Result<MutexGuard<'_, Fsm<RocksStore>>> {
    fsm.lock()
        .map_err(|_| io_err("state machine", "lock poisoned by an earlier panic"))
}

fn store_err(e: queue_fsm::StoreError) -> io::Error {
    io_err("state machine store", e)
}

/// (applied log id, membership) as stored in the state machine.
fn read_applied(store: &dyn StoreRead) -> io::Result<(Option<LogId>, StoredMembership)> {
    let applied = match store.get(Space::Meta, KEY_APPLIED).map_err(store_err)? {
        Some(b) => decode("applied log id", &b)?,
        None => None,
    };
    let membership = match store.get(Space::Meta, KEY_MEMBERSHIP).map_err(store_err)? {
        Some(b) => decode("membership", &b)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: SnapshotData,
}

/// Makes `meta` + `data` the current snapshot: temp file, fsync, rename, fsync the directory.
fn save_snapshot(dir: &Path, meta: &SnapshotMeta, data: &SnapshotData) -> io::Result<()> {
    let file = SnapshotFile {
        meta: meta.clone(),
        data: data.clone(),
    };
    let tmp = dir.join("current.tmp");
    std::fs::write(&tmp, encode("snapshot", &file)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("current"))?;
    std::fs::File::open(dir)?.sync_all()
}

impl StateMachine {
    /// Opens the state machine under `dir` (`dir/fsm`, `dir/snapshots`).
    pub fn open(dir: &Path, config: FsmConfig, options: RocksOptions) -> io::Result<StateMachine> {
        let store = RocksStore::open_with(&dir.join("fsm"), options).map_err(store_err)?;
        let fsm = Fsm::open(store, config).map_err(store_err)?;
        let snapshot_dir = dir.join("snapshots");
        std::fs::create_dir_all(&snapshot_dir)?;
        Ok(StateMachine {
            fsm: Arc::new(Mutex::new(fsm)),
            snapshot_dir,
            on_effects: None,
        })
    }

    /// The shared state machine, for queries.
    pub fn fsm(&self) -> SharedFsm {
        self.fsm.clone()
    }

    pub fn set_effects_hook(&mut self, hook: EffectsHook) {
        self.on_effects = Some(hook);
    }

    fn apply_one(
        &self,
        log_id: LogId,
        payload: EntryPayload<Proposal, u64, openraft::BasicNode>,
    ) -> io::Result<ProposalResult> {
        let mut fsm = lock(&self.fsm)?;
        let mut extra = vec![(
            Space::Meta,
            KEY_APPLIED.to_vec(),
            Some(encode("applied log id", &Some(log_id))?),
        )];
        let (stamp, requests) = match payload {
            EntryPayload::Normal(p) => (p.stamp_ms, p.requests),
            EntryPayload::Blank => (0, Vec::new()),
            EntryPayload::Membership(m) => {
                let sm = StoredMembership::new(Some(log_id), m);
                extra.push((
                    Space::Meta,
                    KEY_MEMBERSHIP.to_vec(),
                    Some(encode("membership", &sm)?),
                ));
                (0, Vec::new())
            }
        };
        let applied = fsm.apply_entry(stamp, requests, extra).map_err(store_err)?;
        drop(fsm);
        if let Some(hook) = &self.on_effects {
            hook(&applied.effects);
        }
        Ok(ProposalResult {
            outcomes: applied.outcomes,
            woken_groups: applied.effects.woken_groups.into_iter().collect(),
        })
    }
}

/// Builds a snapshot from an export taken when the builder was made.
pub struct SnapshotBuilder {
    export: Result<(SnapshotMeta, SnapshotData), String>,
    snapshot_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, data) = self
            .export
            .clone()
            .map_err(|e| io_err("snapshot export", e))?;
        save_snapshot(&self.snapshot_dir, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let fsm = lock(&self.fsm)?;
        read_applied(fsm.store())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let result = self.apply_one(log_id, entry.payload)?;
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // openraft calls this on the apply worker, so no entry is applied during the export.
        let export = || -> io::Result<(SnapshotMeta, SnapshotData)> {
            let fsm = lock(&self.fsm)?;
            let (applied, membership) = read_applied(fsm.store())?;
            let chunks: Vec<Chunk> = fsm
                .export(DEFAULT_CHUNK_BYTES)
                .collect::<Result<_, _>>()
                .map_err(store_err)?;
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            };
            Ok((meta, encode("snapshot chunks", &chunks)?))
        };
        SnapshotBuilder {
            export: export().map_err(|e| e.to_string()),
            snapshot_dir: self.snapshot_dir.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        let chunks: Vec<Chunk> = decode("snapshot chunks", &snapshot)?;
        {
            // The export carries the applied log id and membership it was taken at, which
            // are the snapshot meta's.
            let mut fsm = lock(&self.fsm)?;
            fsm.import(chunks).map_err(store_err)?;
            let (applied, _) = read_applied(fsm.store())?;
            if applied != meta.last_log_id {
                return Err(io_err(
                    "install snapshot",
                    format!(
                        "data is at {applied:?} but meta says {:?}",
                        meta.last_log_id
                    ),
                ));
            }
        }
        save_snapshot(&self.snapshot_dir, meta, &snapshot)?;
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = snapshot.len(),
            "installed snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        match std::fs::read(self.snapshot_dir.join("current")) {
            Ok(b) => {
                let f: SnapshotFile = decode("snapshot file", &b)?;
                Ok(Some(Snapshot {
                    meta: f.meta,
                    snapshot: f.data,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
