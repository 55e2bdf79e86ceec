//! The queue state machine as openraft's `RaftStateMachine`.
//!
//! Apply: each log entry becomes one `Fsm::apply_entry`, which writes the queue changes, the
//! applied log id and (for membership entries) the membership in one RocksDB batch. The
//! result goes back through the entry's responder once that batch is written.
//!
//! Snapshots: the whole state machine exported as bounded chunks while apply is held off (so
//! the export matches the applied log id inside it), written to `snapshots/current` with a
//! temp file + rename, and installed by importing the chunks.
//!
//! Two rules keep a node able to restart after a power loss, when the state machine (which
//! does not sync its applies) may come back older than the log's purge point:
//! - An install is durable before it returns (`Fsm::import` syncs), and openraft purges the
//!   log behind a snapshot only after that.
//! - `snapshots/current` never goes back to an older snapshot ([`SnapshotFile`]). openraft
//!   builds snapshots in a task of its own from an export taken earlier, so a build can finish
//!   after a newer snapshot was installed; writing it then would leave a file older than the
//!   purged log, and a restart could neither restore from the file nor replay the log.
//!   At start-up openraft restores a state machine older than the file from the file.

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
use std::io::{self, Read};
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
    snapshot_file: SnapshotFile,
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

/// What `snapshots/current` holds. The meta comes first so that it can be read alone.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta,
    data: SnapshotData,
}

/// How much of the snapshot file is read to decode its meta alone (a meta is a log id and a
/// membership: a few hundred bytes). A larger one is read with the whole file.
const META_PREFIX_BYTES: u64 = 64 << 10;

/// The snapshot file `snapshots/current` and the log id of the snapshot in it, shared by the
/// state machine (installs) and its snapshot builders (openraft runs each build in a task of
/// its own), so that the file only ever moves forward.
#[derive(Clone)]
struct SnapshotFile {
    dir: PathBuf,
    /// The last log id of the snapshot in the file (None: no file). Held while the file is
    /// written, so a save compares against the file it replaces.
    current: Arc<Mutex<Option<LogId>>>,
}

impl SnapshotFile {
    fn open(dir: PathBuf) -> io::Result<SnapshotFile> {
        crate::durable::create_dir_all(&dir)?;
        let current = read_meta(&dir.join("current"))?.and_then(|m| m.last_log_id);
        Ok(SnapshotFile {
            dir,
            current: Arc::new(Mutex::new(current)),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// Makes `meta` + `data` the current snapshot (temp file, fsync, rename, fsync the
    /// directory), unless the file already holds this snapshot or a newer one. Returns whether
    /// it wrote.
    fn save(&self, meta: &SnapshotMeta, data: &SnapshotData) -> io::Result<bool> {
        let mut current = self
            .current
            .lock()
            .map_err(|_| io_err("snapshot file", "lock poisoned by an earlier panic"))?;
        if current.is_some() && meta.last_log_id <= *current {
            tracing::info!(
                kept = ?*current,
                offered = ?meta.last_log_id,
                "snapshot file kept: it is as new as this snapshot or newer"
            );
            return Ok(false);
        }
        let record = SnapshotRecord {
            meta: meta.clone(),
            data: data.clone(),
        };
        crate::durable::replace_file(&self.path(), &encode("snapshot", &record)?, 0o644)?;
        *current = meta.last_log_id;
        Ok(true)
    }

    /// The last log id of the snapshot in the file.
    fn current(&self) -> io::Result<Option<LogId>> {
        self.current
            .lock()
            .map(|c| *c)
            .map_err(|_| io_err("snapshot file", "lock poisoned by an earlier panic"))
    }

    fn read(&self) -> io::Result<Option<Snapshot>> {
        match std::fs::read(self.path()) {
            Ok(b) => {
                let f: SnapshotRecord = decode("snapshot file", &b)?;
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

/// The meta of the snapshot file at `path` (None: no file), reading only its start when the
/// meta fits there.
fn read_meta(path: &Path) -> io::Result<Option<SnapshotMeta>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut prefix = Vec::new();
    file.take(META_PREFIX_BYTES).read_to_end(&mut prefix)?;
    match postcard::take_from_bytes::<SnapshotMeta>(&prefix) {
        Ok((meta, _)) => Ok(Some(meta)),
        Err(postcard::Error::DeserializeUnexpectedEnd) => {
            let record: SnapshotRecord = decode("snapshot file", &std::fs::read(path)?)?;
            Ok(Some(record.meta))
        }
        Err(e) => Err(io_err("snapshot file meta", e)),
    }
}

impl StateMachine {
    /// Opens the state machine under `dir` (`dir/fsm`, `dir/snapshots`).
    pub fn open(dir: &Path, config: FsmConfig, options: RocksOptions) -> io::Result<StateMachine> {
        let store = RocksStore::open_with(&dir.join("fsm"), options).map_err(store_err)?;
        let fsm = Fsm::open(store, config).map_err(store_err)?;
        Ok(StateMachine {
            fsm: Arc::new(Mutex::new(fsm)),
            snapshot_file: SnapshotFile::open(dir.join("snapshots"))?,
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
    snapshot_file: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, data) = self
            .export
            .clone()
            .map_err(|e| io_err("snapshot export", e))?;
        // A newer snapshot installed since the export stays (see the module docs); openraft
        // drops a built snapshot older than the one it has.
        self.snapshot_file.save(&meta, &data)?;
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
            snapshot_file: self.snapshot_file.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        // openraft installs only a snapshot newer than what this node has committed; one older
        // than the snapshot file would need log entries that may be purged already. Refuse it
        // loudly rather than go back.
        let kept = self.snapshot_file.current()?;
        if kept.is_some() && meta.last_log_id < kept {
            return Err(io_err(
                "install snapshot",
                format!(
                    "refusing the snapshot at {:?}: this node's snapshot file is newer ({kept:?})",
                    meta.last_log_id
                ),
            ));
        }
        let chunks: Vec<Chunk> = decode("snapshot chunks", &snapshot)?;
        {
            // The export carries the applied log id and membership it was taken at, which
            // are the snapshot meta's. The import is synced before it returns.
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
        self.snapshot_file.save(meta, &snapshot)?;
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = snapshot.len(),
            "installed snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        self.snapshot_file.read()
    }
}
