//! Online backup and restore, on the snapshot stream.
//!
//! - A backup is a snapshot file ([`crate::snapshot`]: chunks and a BLAKE3 trailer) of one
//!   applied index, written from a checkpoint of the state machine, so apply goes on while it
//!   streams ([`BackupSource::write`]); its *queue digest* (the content without the Raft keys)
//!   is what the restored cluster must show.
//! - A restore seeds the first node of a new cluster ([`seed_from_backup`]): the backup's
//!   queue state with a new Raft identity — applied at the very first log id, the one
//!   `initialize` would write, with the membership given for the new cluster (not the old
//!   cluster's), the log purged up to it. The node then elects itself among the new members
//!   and sends the others the seeded state by snapshot (their logs are empty and its own
//!   starts after the purge point). Reservations held at backup time are still in the state:
//!   their runners are gone, so their leases run out and the jobs come back by the queue's
//!   lost-job rules.

use crate::snapshot::{self, SnapshotData, Summary};
use crate::state_machine::{lock, store_err, SharedFsm, SnapshotFile, KEY_APPLIED, KEY_MEMBERSHIP};
use crate::types::{encode, io_err, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::{LogStore, StateMachine};
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::BasicNode;
use queue_fsm::snapshot::{Chunk, Digester};
use queue_fsm::Space;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

/// Where `raftq restore` leaves a checked backup in a new node's data directory; the node
/// seeds its stores from it at its first start (with the members of `--peers`), then
/// removes it.
pub const SEED_FILE: &str = "restore/backup";

/// Where a backup is taken from: the state machine and its snapshot directory (for the
/// checkpoint and the staged file).
#[derive(Clone)]
pub struct BackupSource {
    pub(crate) fsm: SharedFsm,
    pub(crate) file: SnapshotFile,
}

impl StateMachine {
    pub fn backup_source(&self) -> BackupSource {
        BackupSource {
            fsm: self.fsm.clone(),
            file: self.snapshot_file.clone(),
        }
    }
}

impl BackupSource {
    /// Writes a backup of the state as applied now: a checkpoint (apply held off only while
    /// it is made), streamed into a file in the snapshot directory. The file is unlinked
    /// before this returns: the handle is the only way to it, and a crash leaves nothing
    /// behind. Blocking (seconds on a big state): run it off the async workers.
    pub fn write(&self) -> io::Result<(SnapshotData, Summary)> {
        let checkpoint = self.file.staging_path("backup", "ckpt");
        {
            let fsm = lock(&self.fsm)?;
            fsm.store().checkpoint(&checkpoint).map_err(store_err)?;
        }
        let staged = self.file.staging_path("backup", "tmp");
        let written = crate::state_machine::stream_checkpoint(&checkpoint, &staged);
        let removed = std::fs::remove_dir_all(&checkpoint);
        let (_, summary) = written?;
        removed.map_err(|e| io_err("removing the backup checkpoint", e))?;
        let data = SnapshotData::open(&staged)?;
        std::fs::remove_file(&staged)?;
        Ok((data, summary))
    }
}

/// Reads the backup `data` whole: checks it (structure, entry count, checksum trailer) and
/// returns its summary and its queue digest (`queue_fsm::snapshot::queue_digest` of the state
/// it holds). Errors name the file.
pub fn check_backup(data: &SnapshotData) -> io::Result<(Summary, String)> {
    let name = data.path().display().to_string();
    let mut reader = snapshot::Reader::new(data.reader()?).map_err(|e| e.naming(&name))?;
    let mut digest = Digester::new(true);
    while let Some(chunk) = reader.next_chunk().map_err(|e| e.naming(&name))? {
        for (space, k, v) in &chunk.entries {
            digest.update(*space, k, v);
        }
    }
    let summary = reader
        .summary()
        .cloned()
        .expect("the reader reached the trailer");
    Ok((summary, digest.finish()))
}

/// Whether the stores under a data directory were never used: no vote, no log, nothing
/// applied. Only such a node can be seeded.
pub async fn is_pristine(log: &mut LogStore, sm: &mut StateMachine) -> io::Result<bool> {
    use openraft::storage::RaftStateMachine;
    let state = log.get_log_state().await?;
    let vote = log.read_vote().await?;
    let (applied, _) = sm.applied_state().await?;
    Ok(state.last_log_id.is_none() && vote.is_none() && applied.is_none())
}

/// Seeds pristine stores with the backup at `backup` for node `me` of a new cluster whose
/// voters are `members` (see the module docs). Returns the backup's summary and queue digest.
/// The seed is durable when this returns: the state machine import is synced, and so are the
/// snapshot file, the vote and the purge point.
pub async fn seed_from_backup(
    log: &mut LogStore,
    sm: &mut StateMachine,
    backup: &Path,
    me: u64,
    members: BTreeMap<u64, BasicNode>,
) -> io::Result<(Summary, String)> {
    if !members.contains_key(&me) {
        return Err(io_err(
            "restore",
            format!("the new cluster's members ({:?}) do not include this node ({me}); give --peers with this node's id", members.keys().collect::<Vec<_>>()),
        ));
    }
    let first: LogId = openraft::testing::log_id::<TypeConfig>(0, me, 0);
    let voters: BTreeSet<u64> = members.keys().copied().collect();
    let membership = openraft::Membership::new(vec![voters], members)
        .map_err(|e| io_err("restore: the new membership", e))?;
    let stored = StoredMembership::new(Some(first), membership);
    let meta = SnapshotMeta {
        last_log_id: Some(first),
        last_membership: stored.clone(),
    };
    let backup = SnapshotData::open(backup)?;
    let staged = sm.snapshot_file.staging_path("seed", "tmp");
    let (summary, digest) = {
        let backup_name = backup.path().display().to_string();
        let meta = meta.clone();
        let staged = staged.clone();
        tokio::task::spawn_blocking(move || -> io::Result<(Summary, String)> {
            let checked = check_backup(&backup)?;
            // The backup's chunks with the old cluster's Raft keys replaced by the new ones.
            let mut reader =
                snapshot::Reader::new(backup.reader()?).map_err(|e| e.naming(&backup_name))?;
            let mut w = snapshot::Writer::new(snapshot::create(&staged)?, &meta)?;
            while let Some(mut chunk) = reader.next_chunk().map_err(|e| e.naming(&backup_name))? {
                chunk.entries.retain(|(s, k, _)| {
                    !(*s == Space::Meta.code() && (k == KEY_APPLIED || k == KEY_MEMBERSHIP))
                });
                w.chunk(&chunk)?;
            }
            w.chunk(&Chunk {
                entries: vec![
                    (
                        Space::Meta.code(),
                        KEY_APPLIED.to_vec(),
                        encode("applied log id", &meta.last_log_id)?,
                    ),
                    (
                        Space::Meta.code(),
                        KEY_MEMBERSHIP.to_vec(),
                        encode("membership", &meta.last_membership)?,
                    ),
                ],
            })?;
            w.finish()?;
            Ok(checked)
        })
        .await
        .map_err(|e| io_err("restore task", e))??
    };
    let this = StateMachine {
        fsm: sm.fsm.clone(),
        snapshot_file: sm.snapshot_file.clone(),
        on_effects: None,
    };
    let seeded = SnapshotData::open(&staged)?;
    let m = meta.clone();
    tokio::task::spawn_blocking(move || this.install_blocking(&m, seeded))
        .await
        .map_err(|e| io_err("restore task", e))??;
    log.save_vote(&crate::types::Vote::new_committed(0, me))
        .await?;
    log.purge(first).await?;
    log.save_committed(Some(first)).await?;
    let seeded_digest = lock(&sm.fsm)?.queue_digest().map_err(store_err)?;
    if seeded_digest != digest {
        return Err(io_err(
            "restore",
            format!("the seeded state's queue digest {seeded_digest} is not the backup's {digest}"),
        ));
    }
    Ok((summary, digest))
}
