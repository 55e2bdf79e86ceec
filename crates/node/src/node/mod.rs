//! A running manager's shell: its Raft ([`Consensus`]), its replica of the queue
//! ([`Replica`]), the proposer, and the routing of commands and reads to the leader.
//!
//! ## Layout
//! - [`consensus`]: the [`Consensus`] trait the shell talks to, and [`RaftConsensus`] over
//!   openraft and the gRPC links to the leader.
//! - [`replica`]: reads of the local state machine off the async threads, and the count of
//!   store errors ([`StoreHealth`]).
//! - this file: [`Node`], routing (leader → proposer, follower → forward, no leader →
//!   UNAVAILABLE with a hint), the blocking-reserve long poll, linearizable reads.

pub mod consensus;
#[cfg(test)]
pub(crate) mod fake;
pub mod replica;
#[cfg(test)]
mod tests;

pub use consensus::{Consensus, RaftConsensus, View};
pub use replica::{ReadError, Replica, StoreHealth};

use crate::clock::Clock;
use crate::limits::MAX_RESERVE_WAIT_MS;
use crate::proposer::{ProposeError, Proposer};
use queue_fsm::{
    Command, Fsm, NoJob, Outcome, Request, RequestId, Response, RocksStore, StoreError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a follower asks the leader to do on its behalf.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Propose(Request),
    /// A blocking reserve, held (long poll) on the leader.
    Reserve {
        req: Request,
        wait_ms: u64,
    },
}

/// Why a read or write could not be served here.
#[derive(Clone, Debug, thiserror::Error, Serialize, Deserialize)]
pub enum RouteError {
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// No leader known, or the leader could not be reached.
    #[error("no leader reachable: {reason}")]
    NoLeader { leader: Option<u64>, reason: String },
}

impl RouteError {
    pub fn leader(&self) -> Option<u64> {
        match self {
            RouteError::Propose(ProposeError::NotLeader { leader }) => *leader,
            RouteError::NoLeader { leader, .. } => *leader,
            _ => None,
        }
    }
}

/// Watches bumped by apply (see `server`'s effects hook).
pub struct AppliedWatches {
    /// Bumped when an applied entry made jobs ready (wakes blocked reserves).
    pub ready: watch::Receiver<u64>,
    /// Bumped on every applied entry (the ticker re-reads the next deadline).
    pub applied: watch::Receiver<u64>,
}

pub struct Node {
    id: u64,
    consensus: Arc<dyn Consensus>,
    replica: Replica,
    proposer: Proposer,
    clock: Arc<dyn Clock>,
    watches: AppliedWatches,
    /// Scheduler groups whose waiting long polls end now with no job (see
    /// [`Node::set_yielding`]).
    yielding: watch::Sender<BTreeSet<String>>,
}

impl Node {
    /// A node over `consensus`; its proposer stamps entries with `clock` and batches as the
    /// bounds say.
    pub fn new(
        consensus: Arc<dyn Consensus>,
        replica: Replica,
        clock: Arc<dyn Clock>,
        watches: AppliedWatches,
        max_batch: usize,
        max_inflight: usize,
    ) -> Node {
        let proposer = Proposer::start(consensus.clone(), clock.clone(), max_batch, max_inflight);
        Node {
            id: consensus.id(),
            consensus,
            replica,
            proposer,
            clock,
            watches,
            yielding: watch::Sender::new(BTreeSet::new()),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn view(&self) -> View {
        self.consensus.view()
    }

    pub fn view_changes(&self) -> watch::Receiver<View> {
        self.consensus.view_changes()
    }

    pub fn current_leader(&self) -> Option<u64> {
        self.view().leader
    }

    pub fn ready_changes(&self) -> watch::Receiver<u64> {
        self.watches.ready.clone()
    }

    pub fn applied_changes(&self) -> watch::Receiver<u64> {
        self.watches.applied.clone()
    }

    /// Makes the long polls of runners of `groups` that find no job return now, instead of
    /// at the end of their wait, and keeps doing so until the set changes: a runner that
    /// gets no job exits, which frees its core and RAM for a group that waits for them. The
    /// scheduler sets it each round (empty when nothing waits); a poll that gets a job is not
    /// affected, so no job is interrupted.
    pub fn set_yielding(&self, groups: BTreeSet<String>) {
        self.yielding.send_if_modified(|g| {
            let changed = *g != groups;
            *g = groups;
            changed
        });
    }

    /// The leader's clock (what the proposer stamps entries with).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Store errors of the read path so far.
    pub fn store_health(&self) -> &StoreHealth {
        self.replica.health()
    }

    /// Reads the local replica (no read index: see [`Node::linearize`]).
    pub async fn read<T, F>(&self, what: &'static str, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Fsm<RocksStore>) -> Result<T, StoreError> + Send + 'static,
    {
        self.replica.read(what, f).await
    }

    /// Tells `f` of every log entry this node's proposer writes (see [`EntryObserver`]).
    pub fn observe_entries(&self, f: crate::proposer::EntryObserver) {
        self.proposer.observe_entries(f);
    }

    /// Proposes a command here (this node must lead); the ticker's way in.
    pub async fn propose(&self, req: Request) -> Result<Outcome, ProposeError> {
        self.proposer.propose(req).await
    }

    /// UNAVAILABLE with `message`, carrying `leader`'s address when known so that the client
    /// can go there.
    pub fn unavailable(&self, message: String, leader: Option<u64>) -> tonic::Status {
        let mut s = tonic::Status::unavailable(message);
        if let Some(addr) = leader.and_then(|l| self.consensus.addr_of(l)) {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(addr.as_str()) {
                s.metadata_mut().insert(raftq_client::LEADER_HEADER, v);
            }
        }
        s
    }

    /// The leader to route to: this node (None) or another (Some(id)).
    fn route(&self) -> Result<Option<u64>, RouteError> {
        let view = self.view();
        // A node removed from the cluster (or not added yet) may still believe in an old
        // leadership; it must not serve.
        if !view.member {
            return Err(RouteError::NoLeader {
                leader: None,
                reason: format!(
                    "node {} is not a member of the cluster (removed, or not added yet)",
                    self.id
                ),
            });
        }
        match view.leader {
            Some(l) if l == self.id => Ok(None),
            Some(l) => Ok(Some(l)),
            None => Err(RouteError::NoLeader {
                leader: None,
                reason: "no leader elected yet".into(),
            }),
        }
    }

    /// Runs a forwarded command here (this node believes it leads).
    pub async fn handle_forwarded(&self, f: Forwarded) -> Result<Outcome, RouteError> {
        match f {
            Forwarded::Propose(req) => Ok(self.proposer.propose(req).await?),
            Forwarded::Reserve { req, wait_ms } => self.reserve_here(req, wait_ms).await,
        }
    }

    /// Applies a command through the leader, wherever it is.
    pub async fn submit(&self, req: Request) -> Result<Outcome, RouteError> {
        match self.route()? {
            None => Ok(self.proposer.propose(req).await?),
            Some(l) => self.consensus.forward(l, Forwarded::Propose(req)).await,
        }
    }

    /// A reserve that waits up to `wait_ms` for a job, held on the leader.
    pub async fn reserve(&self, req: Request, wait_ms: u64) -> Result<Outcome, RouteError> {
        let wait_ms = wait_ms.min(MAX_RESERVE_WAIT_MS);
        match self.route()? {
            None => self.reserve_here(req, wait_ms).await,
            Some(l) => {
                self.consensus
                    .forward(l, Forwarded::Reserve { req, wait_ms })
                    .await
            }
        }
    }

    /// The long poll: propose Reserve; while none is ready, wait for applied entries that made
    /// jobs ready, and try again until the deadline. Attempt k uses a request id derived from
    /// the caller's, so a retried long poll replays the attempts already made (and gets the
    /// same reservation if one succeeded) instead of reserving twice.
    async fn reserve_here(&self, req: Request, wait_ms: u64) -> Result<Outcome, RouteError> {
        // bounded here too: a forwarded reserve's wait comes from a peer
        let wait_ms = wait_ms.min(MAX_RESERVE_WAIT_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let mut ready_rx = self.ready_changes();
        let mut yield_rx = self.yielding.subscribe();
        let group = match &req.cmd {
            Command::Reserve { group, .. } => group.clone(),
            _ => None,
        };
        let yields = |set: &BTreeSet<String>| group.as_ref().is_some_and(|g| set.contains(g));
        let mut attempt: u32 = 0;
        loop {
            let _ = *ready_rx.borrow_and_update();
            let id = req.id.map(|id| attempt_id(id, attempt));
            let stored = match id {
                Some(id) => self.stored_outcome(id).await,
                None => None,
            };
            let replayed = stored.is_some();
            let outcome = match stored {
                Some(o) => o,
                None => {
                    self.proposer
                        .propose(Request::new(id, req.cmd.clone()))
                        .await?
                }
            };
            let none_ready = matches!(outcome, Ok(Response::NoJob(NoJob::NoneReady)));
            if !none_ready
                || tokio::time::Instant::now() >= deadline
                || yields(&yield_rx.borrow_and_update())
            {
                return Ok(outcome);
            }
            attempt += 1;
            if replayed {
                continue;
            }
            tokio::select! {
                r = ready_rx.changed() => {
                    if r.is_err() {
                        return Ok(outcome);
                    }
                }
                r = yield_rx.changed() => {
                    if r.is_err() || yields(&yield_rx.borrow_and_update()) {
                        return Ok(outcome);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
            if self.current_leader() != Some(self.id) {
                return Err(RouteError::Propose(ProposeError::NotLeader {
                    leader: self.current_leader(),
                }));
            }
        }
    }

    /// The stored outcome of request `id`, if it was applied. A read error is recorded (see
    /// [`Replica`]) and counts as none: proposing again is safe, the state machine answers a
    /// known request id with its stored outcome.
    async fn stored_outcome(&self, id: RequestId) -> Option<Outcome> {
        self.read("stored outcome", move |f| f.stored_outcome(id))
            .await
            .ok()
            .flatten()
    }

    /// Waits until this replica may serve a linearizable read: the leader confirms its
    /// leadership and returns a read index; this node waits to have applied it.
    pub async fn linearize(&self) -> Result<(), RouteError> {
        let index = match self.route()? {
            None => self.read_index_here().await?,
            Some(l) => self.consensus.remote_read_index(l).await?,
        };
        self.consensus.wait_applied(index).await
    }

    /// The leader's side of a read index.
    pub async fn read_index_here(&self) -> Result<u64, RouteError> {
        self.consensus.read_index().await
    }
}

/// The request id of attempt `k` of a long-polled reserve.
fn attempt_id(id: RequestId, k: u32) -> RequestId {
    if k == 0 {
        return id;
    }
    // Mix the attempt into the id; collisions with other clients' random ids are as unlikely
    // as between any two random ids.
    let mixed = id.0 ^ ((k as u128) << 96) ^ (0x9e37_79b9_7f4a_7c15u128.wrapping_mul(k as u128));
    RequestId(mixed)
}
