//! What the node shell needs from Raft, as a trait: the proposer, the ticker, the scheduler
//! and the routing talk to [`Consensus`], never to openraft directly, so that tests (and the
//! simulation's model) can put a fake in its place. [`RaftConsensus`] is the real one: this
//! node's openraft instance and its gRPC links to the leader.

use super::{Forwarded, RouteError};
use crate::proposer::ProposeError;
use crate::raft_net::{PeerLink, RaftHandle};
use futures::future::BoxFuture;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{ReadPolicy, ServerState};
use queue_fsm::Outcome;
use raft_store::Proposal;
use raftq_client::AuthChannel;
use raftq_proto::pb;
use raftq_proto::pb::raft_client::RaftClient;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How long a follower waits to apply up to a read index before it gives up.
const READ_INDEX_APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// This node's view of the cluster, as far as the shell cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub term: u64,
    /// This node is the leader of `term`.
    pub leading: bool,
    /// The leader this node believes in, if any (itself when `leading`).
    pub leader: Option<u64>,
    /// This node is in the membership (a removed node must not serve).
    pub member: bool,
}

impl View {
    /// The term this node leads, if it leads.
    pub fn leader_term(&self) -> Option<u64> {
        self.leading.then_some(self.term)
    }
}

/// The Raft side of a node, as the shell uses it.
pub trait Consensus: Send + Sync + 'static {
    /// This node's id.
    fn id(&self) -> u64;
    /// This node's [`View`] now.
    fn view(&self) -> View;
    /// A watch that changes when the [`View`] does (to wait on; decide on [`Consensus::view`]).
    /// Its sender closes when Raft stops.
    fn view_changes(&self) -> watch::Receiver<View>;
    /// Appends `proposal` as one log entry (this node must lead) and waits until it is applied
    /// here; the outcome of each command, in order.
    fn write(&self, proposal: Proposal) -> BoxFuture<'static, Result<Vec<Outcome>, ProposeError>>;
    /// The leader's side of a linearizable read: confirm leadership, return the read index.
    fn read_index(&self) -> BoxFuture<'_, Result<u64, RouteError>>;
    /// Waits until this replica has applied `index`.
    fn wait_applied(&self, index: u64) -> BoxFuture<'_, Result<(), RouteError>>;
    /// The address of member `id`, from the current membership.
    fn addr_of(&self, id: u64) -> Option<String>;
    /// Runs `f` on `leader` (a follower forwarding a client's command).
    fn forward(&self, leader: u64, f: Forwarded) -> BoxFuture<'_, Result<Outcome, RouteError>>;
    /// Asks `leader` for a read index.
    fn remote_read_index(&self, leader: u64) -> BoxFuture<'_, Result<u64, RouteError>>;
}

/// openraft and the Raft-service clients to the other managers.
pub struct RaftConsensus {
    id: u64,
    raft: RaftHandle,
    view: watch::Receiver<View>,
    peers: Mutex<BTreeMap<u64, (String, RaftClient<AuthChannel>)>>,
    link: PeerLink,
}

fn view_of(m: &openraft::RaftMetrics<raft_store::TypeConfig>) -> View {
    View {
        term: m.current_term,
        leading: m.state == ServerState::Leader,
        leader: m.current_leader,
        member: m.membership_config.membership().get_node(&m.id).is_some(),
    }
}

impl RaftConsensus {
    /// Wraps `raft`; a task mirrors its metrics into the [`View`] watch until Raft stops (the
    /// watch only wakes waiters: decisions read the metrics themselves, which are never
    /// behind the mirror).
    pub fn new(raft: RaftHandle, link: PeerLink) -> RaftConsensus {
        let mut metrics = raft.metrics();
        let (id, first) = {
            let m = metrics.borrow_watched();
            (m.id, view_of(&m))
        };
        let (tx, view) = watch::channel(first);
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let v = view_of(&metrics.borrow_watched());
                tx.send_if_modified(|old| {
                    let changed = *old != v;
                    *old = v;
                    changed
                });
            }
        });
        RaftConsensus {
            id,
            raft,
            view,
            peers: Mutex::new(BTreeMap::new()),
            link,
        }
    }

    /// The openraft handle, for what only the Admin service and the server do with it
    /// (membership changes, metrics, snapshots, shutdown).
    pub fn raft(&self) -> &RaftHandle {
        &self.raft
    }

    /// A Raft-service client to a peer (cached per address).
    fn peer(&self, id: u64) -> Result<RaftClient<AuthChannel>, RouteError> {
        let addr = self.addr_of(id).ok_or_else(|| RouteError::NoLeader {
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
        let c = self.link.client(&addr).map_err(|e| RouteError::NoLeader {
            leader: Some(id),
            reason: format!("bad address {addr}: {e}"),
        })?;
        peers.insert(id, (addr, c.clone()));
        Ok(c)
    }

    async fn forward_to(&self, leader: u64, f: Forwarded) -> Result<Outcome, RouteError> {
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

    async fn read_index_of(&self, leader: u64) -> Result<u64, RouteError> {
        let mut client = self.peer(leader)?;
        let reply = client
            .read_index(pb::RaftBytes { data: Vec::new() })
            .await
            .map_err(|s| RouteError::NoLeader {
                leader: Some(leader),
                reason: format!("leader {leader}: {}", s.message()),
            })?;
        let r: Result<u64, RouteError> =
            postcard::from_bytes(&reply.into_inner().data).map_err(|e| RouteError::NoLeader {
                leader: Some(leader),
                reason: format!("read index reply: {e}"),
            })?;
        r
    }
}

/// A failed client write as the proposer reports it.
fn classify(
    e: &RaftError<raft_store::TypeConfig, ClientWriteError<raft_store::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(other) => ProposeError::Unknown(other.to_string()),
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}

impl Consensus for RaftConsensus {
    fn id(&self) -> u64 {
        self.id
    }

    fn view(&self) -> View {
        view_of(&self.raft.metrics().borrow_watched())
    }

    fn view_changes(&self) -> watch::Receiver<View> {
        self.view.clone()
    }

    fn write(&self, proposal: Proposal) -> BoxFuture<'static, Result<Vec<Outcome>, ProposeError>> {
        let raft = self.raft.clone();
        Box::pin(async move {
            match raft.client_write(proposal).await {
                Ok(resp) => Ok(resp.data.outcomes),
                Err(e) => Err(classify(&e)),
            }
        })
    }

    fn read_index(&self) -> BoxFuture<'_, Result<u64, RouteError>> {
        Box::pin(async move {
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
        })
    }

    fn wait_applied(&self, index: u64) -> BoxFuture<'_, Result<(), RouteError>> {
        Box::pin(async move {
            self.raft
                .wait(Some(READ_INDEX_APPLY_TIMEOUT))
                .applied_index_at_least(Some(index), "read index")
                .await
                .map_err(|e| RouteError::NoLeader {
                    leader: self.view().leader,
                    reason: format!("waiting to apply the read index: {e}"),
                })?;
            Ok(())
        })
    }

    fn addr_of(&self, id: u64) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    fn forward(&self, leader: u64, f: Forwarded) -> BoxFuture<'_, Result<Outcome, RouteError>> {
        Box::pin(self.forward_to(leader, f))
    }

    fn remote_read_index(&self, leader: u64) -> BoxFuture<'_, Result<u64, RouteError>> {
        Box::pin(self.read_index_of(leader))
    }
}
