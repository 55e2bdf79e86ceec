//! The queue state machine as openraft's `RaftStateMachine`.
//!
//! Apply: each log entry becomes one `Fsm::apply_entry`, which writes the queue changes, the
//! applied log id and (for membership entries) the membership in one RocksDB batch. The
//! result goes back through the entry's responder once that batch is written.
//!
//! Snapshots, in bounded memory from end to end:
//! - Build: between two applies, a RocksDB checkpoint of the store (a memtable flush and hard
//!   links: short whatever the state's size); apply then goes on while a blocking task
//!   iterates the checkpoint into a staged file in chunks ([`crate::snapshot`]), which is
//!   committed (fsync, rename, directory fsync) as `snapshots/current`. The checkpoint holds
//!   the applied log id written in the same batch as the state it matches, so the meta is
//!   read from it.
//! - Install: the whole file is checked first (structure, entry count, digest), so a corrupt
//!   or truncated one is refused before the old state is touched; it is committed as
//!   `snapshots/current`; then streamed into the store in bounded batches under an import
//!   marker (`Fsm::import_streamed`). A restart that finds the marker reports no applied
//!   state, and openraft installs the file again.
//!
//! Two rules keep a node able to restart after a power loss, when the state machine (which
//! does not sync its applies) may come back older than the log's purge point:
//! - An install is durable before it returns (`Fsm::import_streamed` syncs), and openraft
//!   purges the log behind a snapshot only after that.
//! - `snapshots/current` never goes back to an older snapshot ([`SnapshotFile`]). openraft
//!   builds snapshots in a task of its own from a checkpoint taken earlier, so a build can finish
//!   after a newer snapshot was installed; writing it then would leave a file older than the
//!   purged log, and a restart could neither restore from the file nor replay the log.
//!   At start-up openraft restores a state machine older than the file from the file.

use crate::snapshot::{self, SnapshotData};
use crate::types::{
    decode, encode, io_err, LogId, Proposal, ProposalResult, Snapshot, SnapshotMeta,
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) const KEY_APPLIED: &[u8] = b"raft/applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"raft/membership";

/// The state machine, shared between openraft's apply worker and the node's read path.
pub type SharedFsm = Arc<Mutex<Fsm<RocksStore>>>;

/// Called after each applied entry with what it decided (the node wakes blocked reserves).
pub type EffectsHook = Arc<dyn Fn(&Effects) + Send + Sync>;

pub struct StateMachine {
    pub(crate) fsm: SharedFsm,
    pub(crate) snapshot_file: SnapshotFile,
    pub(crate) on_effects: Option<EffectsHook>,
}

/// Locks the state machine; a poisoned lock means an apply panicked half way, and the replica
/// must not go on from that state.
pub fn lock(fsm: &SharedFsm) -> io::Result<MutexGuard<'_, Fsm<RocksStore>>> {
    fsm.lock()
        .map_err(|_| io_err("state machine", "lock poisoned by an earlier panic"))
}

pub(crate) fn store_err(e: queue_fsm::StoreError) -> io::Error {
    io_err("state machine store", e)
}

/// (applied log id, membership) as stored in the state machine.
pub(crate) fn read_applied(store: &dyn StoreRead) -> io::Result<(Option<LogId>, StoredMembership)> {
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

/// The snapshot file `snapshots/current` and the log id of the snapshot in it, shared by the
/// state machine (installs) and its snapshot builders (openraft runs each build in a task of
/// its own), so that the file only ever moves forward. New snapshots are written beside it
/// (`*.tmp`, built or received) and moved over it by [`SnapshotFile::commit`].
#[derive(Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
    /// The last log id of the snapshot in the file (None: no file). Held while the file is
    /// replaced, so a commit compares against the file it replaces.
    current: Arc<Mutex<Option<LogId>>>,
    /// Names the staged files and checkpoints of this process.
    seq: Arc<AtomicU64>,
}

impl SnapshotFile {
    fn open(dir: PathBuf) -> io::Result<SnapshotFile> {
        crate::durable::create_dir_all(&dir)?;
        // Staged files and checkpoints of an earlier run that never finished.
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let ext = path.extension().and_then(|x| x.to_str());
            if ext == Some("tmp") {
                std::fs::remove_file(&path)?;
            } else if ext == Some("ckpt") {
                std::fs::remove_dir_all(&path)?;
            }
        }
        let file = SnapshotFile {
            dir,
            current: Arc::new(Mutex::new(None)),
            seq: Arc::new(AtomicU64::new(0)),
        };
        file.upgrade_legacy()?;
        let current = snapshot::read_meta(&file.path())?.and_then(|m| m.last_log_id);
        *file.lock()? = current;
        Ok(file)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, Option<LogId>>> {
        self.current
            .lock()
            .map_err(|_| io_err("snapshot file", "lock poisoned by an earlier panic"))
    }

    /// A new path in the snapshot directory for a file or checkpoint of `kind`; `ext` is `tmp`
    /// or `ckpt`, which [`SnapshotFile::open`] clears away after a crash.
    pub fn staging_path(&self, kind: &str, ext: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{kind}-{}-{n}.{ext}", std::process::id()))
    }

    /// Makes the staged, complete snapshot file `staged` (with meta `meta`) the current
    /// snapshot, durably (fsync, rename, fsync of the directory), unless the file already
    /// holds this snapshot or a newer one; then `staged` is removed. Returns whether it
    /// replaced the file.
    fn commit(&self, meta: &SnapshotMeta, staged: &Path) -> io::Result<bool> {
        let mut current = self.lock()?;
        if current.is_some() && meta.last_log_id <= *current {
            tracing::info!(
                kept = ?*current,
                offered = ?meta.last_log_id,
                "snapshot file kept: it is as new as this snapshot or newer"
            );
            std::fs::remove_file(staged)?;
            return Ok(false);
        }
        crate::durable::install_file(staged, &self.path())?;
        *current = meta.last_log_id;
        Ok(true)
    }

    /// The last log id of the snapshot in the file.
    fn current(&self) -> io::Result<Option<LogId>> {
        self.lock().map(|c| *c)
    }

    fn read(&self) -> io::Result<Option<Snapshot>> {
        // Opened first: the meta read next is then this file's even if a commit replaces it
        // meanwhile (the handle keeps the file it opened).
        let data = match SnapshotData::open(&self.path()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = snapshot::Reader::new(data.reader()?)
            .map_err(|e| e.naming(&data.path().display().to_string()))?
            .meta()
            .clone();
        Ok(Some(Snapshot {
            meta,
            snapshot: data,
        }))
    }

    /// A `snapshots/current` of the format before streaming (one postcard record of the meta
    /// and every chunk) is rewritten in the stream format, once, at start-up. It is read whole,
    /// as the release that wrote it did.
    fn upgrade_legacy(&self) -> io::Result<()> {
        let path = self.path();
        let mut head = [0u8; 8];
        match std::fs::File::open(&path) {
            Ok(mut f) => match f.read_exact(&mut head) {
                Ok(()) if &head == b"RAFTQSNP" => return Ok(()),
                Ok(()) | Err(_) => {}
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        #[derive(serde::Deserialize)]
        struct LegacyRecord {
            meta: SnapshotMeta,
            data: Vec<u8>,
        }
        let record: LegacyRecord = decode(
            &format!("snapshot file {} (pre-stream format)", path.display()),
            &std::fs::read(&path)?,
        )?;
        let chunks: Vec<Chunk> = decode("snapshot chunks (pre-stream format)", &record.data)?;
        let staged = self.staging_path("upgrade", "tmp");
        let mut w = snapshot::Writer::new(snapshot::create(&staged)?, &record.meta)?;
        for c in &chunks {
            w.chunk(c)?;
        }
        w.finish()?;
        crate::durable::install_file(&staged, &path)?;
        tracing::info!(path = %path.display(), "snapshot file rewritten in the stream format");
        Ok(())
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

/// Builds a snapshot from a checkpoint of the state machine's store taken when the builder
/// was made: apply goes on while the checkpoint is streamed into a snapshot file.
pub struct SnapshotBuilder {
    checkpoint: Result<PathBuf, String>,
    snapshot_file: SnapshotFile,
}

impl Drop for SnapshotBuilder {
    fn drop(&mut self) {
        if let Ok(dir) = &self.checkpoint {
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a snapshot checkpoint");
                }
            }
        }
    }
}

/// Streams the checkpoint at `checkpoint` into a staged snapshot file, then commits it. Returns
/// the snapshot (a handle on the file written, which stays readable if a newer one is kept).
fn build_from_checkpoint(checkpoint: &Path, file: &SnapshotFile) -> io::Result<Snapshot> {
    let staged = file.staging_path("build", "tmp");
    let (meta, summary) = stream_checkpoint(checkpoint, &staged)?;
    let mut data = SnapshotData::open(&staged)?;
    // A newer snapshot installed since the checkpoint stays (see the module docs); openraft
    // drops a built snapshot older than the one it has.
    if file.commit(&meta, &staged)? {
        data.moved_to(file.path());
    }
    tracing::info!(
        last_log_id = ?meta.last_log_id,
        bytes = summary.bytes,
        entries = summary.entries,
        "built snapshot"
    );
    Ok(Snapshot {
        meta,
        snapshot: data,
    })
}

/// Writes the state in the checkpoint at `checkpoint` to the new snapshot file `staged`, in
/// chunks; the meta is the checkpoint's own applied log id and membership.
pub(crate) fn stream_checkpoint(
    checkpoint: &Path,
    staged: &Path,
) -> io::Result<(SnapshotMeta, snapshot::Summary)> {
    let store = RocksStore::open_read_only(checkpoint).map_err(store_err)?;
    if store
        .get(Space::Meta, queue_fsm::snapshot::IMPORT_MARKER)
        .map_err(store_err)?
        .is_some()
    {
        return Err(io_err(
            "snapshot build",
            "the state machine is a cut-short install; it is installed again at start-up",
        ));
    }
    let (applied, membership) = read_applied(&store)?;
    let meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
    };
    let mut w = snapshot::Writer::new(snapshot::create(staged)?, &meta)?;
    for chunk in queue_fsm::snapshot::export(&store, DEFAULT_CHUNK_BYTES) {
        w.chunk(&chunk.map_err(store_err)?)?;
    }
    let (_, summary) = w.finish()?;
    Ok((meta, summary))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let checkpoint = self
            .checkpoint
            .clone()
            .map_err(|e| io_err("snapshot checkpoint", e))?;
        let file = self.snapshot_file.clone();
        // Blocking file and RocksDB work, seconds long on a big state: off the runtime's
        // workers, which carry heartbeats.
        let built = tokio::task::spawn_blocking(move || {
            let r = build_from_checkpoint(&checkpoint, &file);
            let cleanup = std::fs::remove_dir_all(&checkpoint);
            let snapshot = r?;
            cleanup.map_err(|e| io_err("removing the snapshot checkpoint", e))?;
            Ok::<_, io::Error>(snapshot)
        })
        .await
        .map_err(|e| io_err("snapshot build task", e))?;
        built
    }
}

impl StateMachine {
    /// Where the node's Raft service stages snapshots it receives (see [`SnapshotInbox`]).
    pub fn snapshot_inbox(&self) -> SnapshotInbox {
        SnapshotInbox {
            file: self.snapshot_file.clone(),
        }
    }

    /// Installs the snapshot `data` (meta `meta`): checks the whole file first, so that a
    /// corrupt or truncated one is refused with the old state untouched; makes it the
    /// snapshot file; then streams it into the store (see `Fsm::import_streamed`).
    pub(crate) fn install_blocking(
        &self,
        meta: &SnapshotMeta,
        data: SnapshotData,
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
        let summary = data.verify()?;
        if summary.meta != *meta {
            return Err(io_err(
                "install snapshot",
                format!(
                    "{}: the file is the snapshot at {:?}, the install was asked for {:?}",
                    data.path().display(),
                    summary.meta.last_log_id,
                    meta.last_log_id
                ),
            ));
        }
        // The file first: if the import below is cut short, the restart finds the import
        // marker, reports no applied state, and openraft installs this file again.
        let current = self.snapshot_file.path();
        let from_file = data.path() == current;
        if !from_file {
            let staged = if data.path().parent() == Some(&self.snapshot_file.dir) {
                // received by this node's Raft service: moved into place
                data.path().to_path_buf()
            } else {
                // a file elsewhere (a restore, a test): copied, the original left alone
                let staged = self.snapshot_file.staging_path("copy", "tmp");
                let mut out = snapshot::create(&staged)?;
                io::copy(&mut data.reader()?, &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?;
                staged
            };
            self.snapshot_file.commit(meta, &staged)?;
        }
        {
            let mut fsm = lock(&self.fsm)?;
            let mut reader = snapshot::Reader::new(data.reader()?)
                .map_err(|e| e.naming(&data.path().display().to_string()))?;
            let chunks = std::iter::from_fn(|| match reader.next_chunk() {
                Ok(Some(c)) => Some(Ok(c)),
                Ok(None) => None,
                Err(e) => Some(Err(queue_fsm::StoreError::Io(e.to_string()))),
            });
            // The import is synced before it returns.
            fsm.import_streamed(chunks).map_err(store_err)?;
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
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = summary.bytes,
            entries = summary.entries,
            "{}",
            if from_file {
                "installed the snapshot file again"
            } else {
                "installed snapshot from the leader"
            }
        );
        Ok(())
    }
}

/// Where received snapshots are staged: the Raft service writes the stream from the leader to
/// [`SnapshotInbox::staging_path`], checks it ([`SnapshotData::verify`]) and hands it to
/// openraft, whose install moves it to `snapshots/current`.
#[derive(Clone)]
pub struct SnapshotInbox {
    file: SnapshotFile,
}

impl SnapshotInbox {
    /// A new file path in the snapshot directory (on the same file system as
    /// `snapshots/current`, so the install renames it into place).
    pub fn staging_path(&self) -> PathBuf {
        self.file.staging_path("incoming", "tmp")
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let fsm = lock(&self.fsm)?;
        if fsm.import_incomplete().map_err(store_err)? {
            // A cut-short install: no applied state, so openraft installs the snapshot file
            // (which the install made current before it began) again.
            tracing::warn!("the state machine holds a cut-short snapshot install; installing the snapshot file again");
            return Ok((None, StoredMembership::default()));
        }
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
        // openraft calls this on the apply worker, so no entry is applied during the
        // checkpoint (a flush of the memtables and hard links: short whatever the size).
        let checkpoint = || -> io::Result<PathBuf> {
            let fsm = lock(&self.fsm)?;
            let dir = self.snapshot_file.staging_path("build", "ckpt");
            fsm.store().checkpoint(&dir).map_err(store_err)?;
            Ok(dir)
        };
        SnapshotBuilder {
            checkpoint: checkpoint().map_err(|e| e.to_string()),
            snapshot_file: self.snapshot_file.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        let this = StateMachine {
            fsm: self.fsm.clone(),
            snapshot_file: self.snapshot_file.clone(),
            on_effects: None,
        };
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || this.install_blocking(&meta, snapshot))
            .await
            .map_err(|e| io_err("snapshot install task", e))?
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        self.snapshot_file.read()
    }
}
