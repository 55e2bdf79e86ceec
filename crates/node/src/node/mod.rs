//! A running manager: its Raft, its replica of the queue, the proposer, and the routing of
//! commands and reads to the leader.

use crate::config::NodeConfig;
use crate::limits::{MAX_RAFT_MESSAGE_BYTES, MAX_RESERVE_WAIT_MS};
use crate::proposer::{ProposeError, Proposer};
use crate::raft_net::{channel, RaftHandle};
use openraft::async_runtime::WatchReceiver;
use openraft::ReadPolicy;
use queue_fsm::{NoJob, Outcome, Request, RequestId, Response};
use raft_store::SharedFsm;
use raftq_client::AuthChannel;
use raftq_proto::pb;
use raftq_proto::pb::raft_client::RaftClient;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
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

pub struct Node {
    pub id: u64,
    pub config: NodeConfig,
    pub raft: RaftHandle,
    pub fsm: SharedFsm,
    pub proposer: Proposer,
    /// Bumped when an applied entry made jobs ready (wakes blocked reserves).
    pub ready_rx: watch::Receiver<u64>,
    /// Bumped on every applied entry (the ticker re-reads the next deadline).
    pub applied_rx: watch::Receiver<u64>,
    peers: Mutex<BTreeMap<u64, (String, RaftClient<AuthChannel>)>>,
    auth: raftq_client::Auth,
}

impl Node {
    pub fn new(
        config: NodeConfig,
        raft: RaftHandle,
        fsm: SharedFsm,
        proposer: Proposer,
        ready_rx: watch::Receiver<u64>,
        applied_rx: watch::Receiver<u64>,
        auth: raftq_client::Auth,
    ) -> Node {
        Node {
            id: config.id,
            config,
            raft,
            fsm,
            proposer,
            ready_rx,
            applied_rx,
            peers: Mutex::new(BTreeMap::new()),
            auth,
        }
    }

    /// The address of a member node, from the current membership.
    pub fn node_addr(&self, id: u64) -> Option<String> {
        let m = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        m.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// UNAVAILABLE with `message`, carrying `leader`'s address when known so that the client
    /// can go there.
    pub fn unavailable(&self, message: String, leader: Option<u64>) -> tonic::Status {
        let mut s = tonic::Status::unavailable(message);
        if let Some(addr) = leader.and_then(|l| self.node_addr(l)) {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(addr.as_str()) {
                s.metadata_mut().insert(raftq_client::LEADER_HEADER, v);
            }
        }
        s
    }

    pub fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// A Raft-service client to a peer (cached per address).
    fn peer(&self, id: u64) -> Result<RaftClient<AuthChannel>, RouteError> {
        let addr = self.node_addr(id).ok_or_else(|| RouteError::NoLeader {
            leader: Some(id),
            reason: format!("node {id} is not in the membership"),
        })?;
        let mut peers = self.peers.lock().map_err(|_| RouteError::NoLeader {
            leader: Some(id),
            reason: "peer table lock poisoned".into(),
        })?;
        if let Some((a, c)) = peers.get(&id) {
            if *a == addr {
                return Ok(c.clone());
            }
        }
        let ch = channel(&addr).map_err(|e| RouteError::NoLeader {
            leader: Some(id),
            reason: format!("bad address {addr}: {e}"),
        })?;
        let c = RaftClient::with_interceptor(ch, self.auth.clone())
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        peers.insert(id, (addr, c.clone()));
        Ok(c)
    }

    /// The leader to route to: this node (None) or another (Some(id)).
    fn route(&self) -> Result<Option<u64>, RouteError> {
        // A node removed from the cluster (or not added yet) may still believe in an old
        // leadership; it must not serve.
        let (member, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            (
                m.membership_config
                    .membership()
                    .get_node(&self.id)
                    .is_some(),
                m.current_leader,
            )
        };
        if !member {
            return Err(RouteError::NoLeader {
                leader: None,
                reason: format!(
                    "node {} is not a member of the cluster (removed, or not added yet)",
                    self.id
                ),
            });
        }
        match leader {
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

    async fn forward(&self, leader: u64, f: Forwarded) -> Result<Outcome, RouteError> {
        let mut client = self.peer(leader)?;
        let data = postcard::to_allocvec(&f).map_err(|e| RouteError::NoLeader {
            leader: Some(leader),
            reason: format!("encoding: {e}"),
        })?;
        let unreachable = |reason: String| RouteError::NoLeader {
            leader: Some(leader),
            reason,
        };
        let reply = client
            .forward(pb::RaftBytes { data })
            .await
            .map_err(|s| unreachable(format!("leader {leader}: {}", s.message())))?;
        let r: Result<Outcome, RouteError> = postcard::from_bytes(&reply.into_inner().data)
            .map_err(|e| unreachable(format!("leader {leader} reply: {e}")))?;
        r
    }

    /// Applies a command through the leader, wherever it is.
    pub async fn submit(&self, req: Request) -> Result<Outcome, RouteError> {
        match self.route()? {
            None => Ok(self.proposer.propose(req).await?),
            Some(l) => self.forward(l, Forwarded::Propose(req)).await,
        }
    }

    /// A reserve that waits up to `wait_ms` for a job, held on the leader.
    pub async fn reserve(&self, req: Request, wait_ms: u64) -> Result<Outcome, RouteError> {
        let wait_ms = wait_ms.min(MAX_RESERVE_WAIT_MS);
        match self.route()? {
            None => self.reserve_here(req, wait_ms).await,
            Some(l) => self.forward(l, Forwarded::Reserve { req, wait_ms }).await,
        }
    }

    /// The long poll: propose Reserve; while none is ready, wait for applied entries that made
    /// jobs ready, and try again until the deadline. Attempt k uses a request id derived from
    /// the caller's, so a retried long poll replays the attempts already made (and gets the
    /// same reservation if one succeeded) instead of reserving twice.
    async fn reserve_here(&self, req: Request, wait_ms: u64) -> Result<Outcome, RouteError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let mut ready_rx = self.ready_rx.clone();
        let mut attempt: u32 = 0;
        loop {
            let _ = *ready_rx.borrow_and_update();
            let id = req.id.map(|id| attempt_id(id, attempt));
            let stored = match id {
                Some(id) => self.stored_outcome(id),
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
            if !none_ready || tokio::time::Instant::now() >= deadline {
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
                _ = tokio::time::sleep_until(deadline) => {}
            }
            if self.current_leader() != Some(self.id) {
                return Err(RouteError::Propose(ProposeError::NotLeader {
                    leader: self.current_leader(),
                }));
            }
        }
    }

    fn stored_outcome(&self, id: RequestId) -> Option<Outcome> {
        let fsm = self.fsm.lock().ok()?;
        fsm.stored_outcome(id).ok().flatten()
    }

    /// Waits until this replica may serve a linearizable read: the leader confirms its
    /// leadership and returns a read index; this node waits to have applied it.
    pub async fn linearize(&self) -> Result<(), RouteError> {
        let index = match self.route()? {
            None => self.read_index_here().await?,
            Some(l) => {
                let mut client = self.peer(l)?;
                let reply = client
                    .read_index(pb::RaftBytes { data: Vec::new() })
                    .await
                    .map_err(|s| RouteError::NoLeader {
                        leader: Some(l),
                        reason: format!("leader {l}: {}", s.message()),
                    })?;
                let r: Result<u64, RouteError> = postcard::from_bytes(&reply.into_inner().data)
                    .map_err(|e| RouteError::NoLeader {
                        leader: Some(l),
                        reason: format!("read index reply: {e}"),
                    })?;
                r?
            }
        };
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|e| RouteError::NoLeader {
                leader: self.current_leader(),
                reason: format!("waiting to apply the read index: {e}"),
            })?;
        Ok(())
    }

    /// The leader's side of a read index.
    pub async fn read_index_here(&self) -> Result<u64, RouteError> {
        let r = self
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => RouteError::Propose(ProposeError::NotLeader {
                    leader: f.leader_id,
                }),
                None => RouteError::NoLeader {
                    leader: None,
                    reason: e.to_string(),
                },
            })?;
        Ok(r.index())
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
