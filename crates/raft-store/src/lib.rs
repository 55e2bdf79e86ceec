//! # raft-store: openraft storage for raftq, on RocksDB
//!
//! Two RocksDB databases per node, side by side under the node's data directory:
//! - `log/`: the Raft log and vote ([`LogStore`]). An append is readable at once and acknowledged
//!   to openraft as durable only after one WAL fsync for the whole batch; the vote is synced
//!   before `save_vote` returns.
//! - `fsm/`: the queue state machine ([`StateMachine`], a `queue_fsm::Fsm` over a
//!   `RocksStore`). Applying a log entry writes the queue changes and the applied log id (and
//!   membership) in one atomic batch, so a restart resumes exactly after the last applied
//!   entry; openraft re-applies the rest from the log.
//!
//! Snapshots are streamed, never held whole: a RocksDB checkpoint of the state machine (taken
//! between two applies, so it carries the applied log id it matches) is iterated in bounded
//! chunks into a file with a digest trailer ([`snapshot`]), kept as `snapshots/current`, sent
//! to lagging followers piece by piece from that file, checked whole on arrival and imported
//! in bounded batches.
//!
//! ## Layout
//! - [`backup`]: online backup (a snapshot of one applied index) and the seeding of a new
//!   cluster's first node from one.
//! - [`durable`]: directories and files made so that they survive a power loss.
//! - [`types`]: the openraft type configuration and what a log entry carries ([`Proposal`]).
//! - [`log_store`]: `RaftLogStorage` + `RaftLogReader`.
//! - [`snapshot`]: the snapshot file format (header, chunk frames, digest trailer): writer,
//!   reader, check.
//! - [`state_machine`]: `RaftStateMachine` + `RaftSnapshotBuilder`.
//!
//! Queue rules live in `queue-fsm`; nothing here looks inside a command.

/// Durable file writes (the `raftq-durable` crate, shared with the token file's writer).
pub use raftq_durable as durable;
pub mod backup;
pub mod log_store;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use backup::BackupSource;
pub use log_store::LogStore;
pub use snapshot::SnapshotData;
pub use state_machine::{EffectsHook, SharedFsm, SnapshotInbox, StateMachine};
pub use types::{Proposal, ProposalResult, TypeConfig};

/// How both databases are opened (e.g. the test-only power-loss simulation).
pub use queue_fsm::RocksOptions;

use std::path::Path;

/// Opens (creating if needed) the log store and the state machine under `dir`, both with
/// `options`.
pub fn open(
    dir: &Path,
    fsm_config: queue_fsm::FsmConfig,
    options: RocksOptions,
) -> std::io::Result<(LogStore, StateMachine)> {
    // RocksDB creates a missing database directory but does not sync its name into the
    // parent: made here, durably, a power loss cannot take a node's whole store away.
    for d in [dir.to_path_buf(), dir.join("log"), dir.join("fsm")] {
        durable::create_dir_all(&d)?;
    }
    let log = LogStore::open(&dir.join("log"), options)?;
    let sm = StateMachine::open(dir, fsm_config, options)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests;
