//! The Admin service: cluster status as this node sees it, and its state digest.

use crate::node::Node;
use crate::raft_net::RaftHandle;
use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use raftq_proto::pb;
use std::collections::BTreeSet;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Membership and status are openraft's business: the service holds the Raft handle for them,
/// and the node for routing hints, reads of the replica and its store health. Clones share
/// the one-backup-at-a-time permit (the gRPC service and the HTTP port's use of it).
#[derive(Clone)]
pub struct AdminService {
    pub node: Arc<Node>,
    pub raft: RaftHandle,
    /// Where backups are taken from.
    pub backup: raft_store::BackupSource,
    /// One backup at a time (each holds a checkpoint and a file of the state's size).
    pub backups: Arc<tokio::sync::Semaphore>,
}

fn role(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

type WriteError = RaftError<raft_store::TypeConfig, ClientWriteError<raft_store::TypeConfig>>;

impl AdminService {
    /// The voters, and every member (voters and learners) with its address.
    fn members(&self) -> (BTreeSet<u64>, Vec<(u64, String)>) {
        let m = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let voters = m.membership().voter_ids().collect();
        let nodes = m
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        (voters, nodes)
    }

    /// Membership changes are decided on the leader's view: elsewhere, UNAVAILABLE with the
    /// leader's address (a follower's membership may lag behind).
    fn on_leader(&self) -> Result<(), Status> {
        let leader = self.node.current_leader();
        if leader == Some(self.node.id()) {
            return Ok(());
        }
        Err(self.not_leader(leader))
    }

    fn not_leader(&self, leader: Option<u64>) -> Status {
        self.node.unavailable(
            "not the leader; membership changes go to the leader".into(),
            leader,
        )
    }

    fn voters(&self) -> pb::MembershipResponse {
        pb::MembershipResponse {
            voters: self.members().0.into_iter().collect(),
        }
    }

    /// A membership change that failed: not the leader → UNAVAILABLE with the leader's
    /// address; a change openraft refuses (one in progress, ...) → FAILED_PRECONDITION.
    fn change_error(&self, e: WriteError) -> Status {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                self.not_leader(f.leader_id)
            }
            RaftError::APIError(e) => Status::failed_precondition(e.to_string()),
            RaftError::Fatal(e) => Status::internal(e.to_string()),
        }
    }
}

/// Checks an AddNode request: a non-zero id and a host:port address.
fn check_add(r: &pb::AddNodeRequest) -> Result<(), Status> {
    if r.id == 0 {
        return Err(Status::invalid_argument("id: must be 1 or more"));
    }
    let port_ok = r
        .addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(Status::invalid_argument(format!(
            "addr: {:?} is not HOST:PORT (the address the other nodes reach the new node at)",
            r.addr
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        crate::auth::full_only(&request, "AddNode")?;
        let r = request.into_inner();
        check_add(&r)?;
        self.on_leader()?;
        let (voters, nodes) = self.members();
        if voters.contains(&r.id) {
            return Ok(Response::new(self.voters()));
        }
        if let Some((_, addr)) = nodes.iter().find(|(id, a)| *id == r.id && *a != r.addr) {
            return Err(Status::failed_precondition(format!(
                "node {} is already a learner at {addr}; remove it first to change its address",
                r.id
            )));
        }
        tracing::info!(id = r.id, addr = %r.addr, "adding a node: learner first");
        self.raft
            .add_learner(r.id, BasicNode { addr: r.addr }, true)
            .await
            .map_err(|e| self.change_error(e))?;
        tracing::info!(id = r.id, "the new node caught up; making it a voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([r.id])), false)
            .await
            .map_err(|e| self.change_error(e))?;
        Ok(Response::new(self.voters()))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        crate::auth::full_only(&request, "RemoveNode")?;
        let id = request.into_inner().id;
        self.on_leader()?;
        let (voters, _) = self.members();
        if !voters.contains(&id) {
            return Err(Status::not_found(format!(
                "node {id} is not a voter of this cluster (voters: {voters:?})"
            )));
        }
        if voters.len() == 1 {
            return Err(Status::failed_precondition(format!(
                "node {id} is the only voter; a cluster needs at least one"
            )));
        }
        tracing::info!(id, "removing a node");
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.change_error(e))?;
        Ok(Response::new(self.voters()))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let leader_last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.clone().unwrap_or_default();
        let mut nodes = Vec::new();
        for (id, n) in membership.nodes() {
            let mut s = pb::NodeStatus {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
                ..Default::default()
            };
            if *id == m.id {
                s.role = role(m.state).into();
                s.term = m.current_term;
                s.last_log_index = m.last_log_index.unwrap_or(0);
                s.applied_index = m.last_applied.map_or(0, |l| l.index);
                s.snapshot_index = m.snapshot.map_or(0, |l| l.index);
                s.purged_index = m.purged.map_or(0, |l| l.index);
                let (errors, last) = self.node.store_health().snapshot();
                s.store_errors = errors;
                s.last_store_error = last.unwrap_or_default();
            } else if m.state == ServerState::Leader {
                // The leader knows how far each follower has matched its log.
                let matched = replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .map_or(0, |l| l.index);
                s.role = if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                }
                .into();
                s.term = m.current_term;
                s.last_log_index = matched;
                s.lag = leader_last.saturating_sub(matched);
            } else {
                s.role = "unknown".into();
            }
            nodes.push(s);
        }
        // A node removed from the cluster may still believe in its old leadership: it knows
        // of no leader then.
        let member = membership.get_node(&m.id).is_some();
        Ok(Response::new(pb::ClusterStatusResponse {
            leader: if member {
                m.current_leader.unwrap_or(0)
            } else {
                0
            },
            term: m.current_term,
            nodes,
            answered_by: m.id,
        }))
    }

    async fn trigger_snapshot(
        &self,
        request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        crate::auth::full_only(&request, "TriggerSnapshot")?;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Status::unavailable(format!("raft stopped: {e}")))?;
        Ok(Response::new(pb::TriggerSnapshotResponse {}))
    }

    async fn digest(
        &self,
        _request: Request<pb::DigestRequest>,
    ) -> Result<Response<pb::DigestResponse>, Status> {
        let applied = self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index);
        let (digest, queue_digest) = self
            .node
            .read("digest", |fsm| Ok((fsm.digest()?, fsm.queue_digest()?)))
            .await
            .map_err(|e| Status::internal(format!("digest: {e}")))?;
        Ok(Response::new(pb::DigestResponse {
            digest,
            applied_index: applied,
            queue_digest,
        }))
    }

    type BackupStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::BackupChunk, Status>> + Send + 'static>,
    >;

    async fn backup(
        &self,
        _request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let permit = self.backups.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("a backup is already running on this node; try again")
        })?;
        let source = self.backup.clone();
        let (data, summary) = tokio::task::spawn_blocking(move || source.write())
            .await
            .map_err(|e| Status::internal(format!("backup task: {e}")))?
            .map_err(|e| Status::internal(format!("writing the backup: {e}")))?;
        let applied_index = summary.meta.last_log_id.map_or(0, |l| l.index);
        tracing::info!(
            applied_index,
            bytes = summary.bytes,
            entries = summary.entries,
            "backup written; streaming it"
        );
        let file = data
            .into_file()
            .map_err(|e| Status::internal(format!("reading the backup: {e}")))?;
        let pieces =
            crate::raft_net::file_chunks(tokio::fs::File::from_std(file), "for a backup".into());
        let total_bytes = summary.bytes;
        // The stream holds the permit: the next backup may start when this one is dropped
        // (sent, or the client went away). A read error ends it early; the client finds the
        // file short of its trailer and says so.
        let stream = futures::StreamExt::enumerate(pieces).map(move |(i, piece)| {
            let _held = &permit;
            let first = i == 0;
            Ok(pb::BackupChunk {
                data: piece.data,
                total_bytes: if first { total_bytes } else { 0 },
                applied_index: if first { applied_index } else { 0 },
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
