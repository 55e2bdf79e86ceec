//! The Admin service: cluster status as this node sees it, and its state digest.

use crate::node::Node;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use raftq_proto::pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminService {
    pub node: Arc<Node>,
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

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let m = self.node.raft.metrics().borrow_watched().clone();
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
        Ok(Response::new(pb::ClusterStatusResponse {
            leader: m.current_leader.unwrap_or(0),
            term: m.current_term,
            nodes,
            answered_by: m.id,
        }))
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        self.node
            .raft
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
            .node
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index);
        let fsm = self
            .node
            .fsm
            .lock()
            .map_err(|_| Status::internal("state machine lock poisoned"))?;
        let digest = fsm
            .digest()
            .map_err(|e| Status::internal(format!("digest: {e}")))?;
        Ok(Response::new(pb::DigestResponse {
            digest,
            applied_index: applied,
        }))
    }
}
