//! The openraft type configuration, and what one log entry carries.

use queue_fsm::{Outcome, Request};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One log entry's payload: the commands the proposer merged (group commit), stamped with the
/// leader's clock. The state machine's clock is the largest stamp seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub stamp_ms: u64,
    pub requests: Vec<Request>,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proposal of {} command(s) at {} ms",
            self.requests.len(),
            self.stamp_ms
        )
    }
}

/// The outcome of each command of a [`Proposal`], in order. Empty for blank and membership
/// entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalResult {
    pub outcomes: Vec<Outcome>,
    /// Scheduler groups that gained ready jobs while applying this entry.
    pub woken_groups: Vec<String>,
}

openraft::declare_raft_types!(
    /// raftq's Raft types: node ids are `u64`, nodes carry their address.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
);

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// A snapshot as shipped and stored: a handle on a snapshot file (see [`crate::snapshot`]).
pub use crate::snapshot::SnapshotData;

pub(crate) fn io_err(what: &str, e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

pub(crate) fn encode<T: Serialize>(what: &str, v: &T) -> std::io::Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| io_err(what, e))
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> std::io::Result<T> {
    postcard::from_bytes(b).map_err(|e| io_err(what, e))
}
