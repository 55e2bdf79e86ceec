//! The Queue service: decode, route through the leader, encode. No queue rule lives here.
//! Calls that add, change or remove jobs, or change the queue's mode, need a full token
//! ([`crate::auth::full_only`]); a runner token reserves, reports and reads.

use crate::node::{Node, ReadError, RouteError};
use queue_fsm::{Outcome, Request, Response as FsmResponse};
use raftq_proto::convert::{self, command_error_status};
use raftq_proto::pb;
use std::sync::Arc;
use tonic::{Request as TRequest, Response, Status};

pub struct QueueService {
    pub node: Arc<Node>,
}

type R<T> = Result<Response<T>, Status>;

impl QueueService {
    /// UNAVAILABLE, with the leader's address when known so that the client can go there.
    fn unavailable(&self, e: RouteError) -> Status {
        self.node.unavailable(e.to_string(), e.leader())
    }

    async fn write(&self, req: Request) -> Result<FsmResponse, Status> {
        let outcome: Outcome = self
            .node
            .submit(req)
            .await
            .map_err(|e| self.unavailable(e))?;
        outcome.map_err(|e| command_error_status(&e))
    }

    /// Makes the local replica fit for a linearizable read, unless the caller accepts stale.
    async fn read_gate(&self, stale: bool) -> Result<(), Status> {
        if stale {
            return Ok(());
        }
        self.node.linearize().await.map_err(|e| self.unavailable(e))
    }
}

/// A failed read of the replica (already logged and counted by the node).
fn store(e: ReadError) -> Status {
    Status::internal(format!("reading the queue: {e}"))
}

#[tonic::async_trait]
impl pb::queue_server::Queue for QueueService {
    async fn add(&self, request: TRequest<pb::AddRequest>) -> R<pb::AddResponse> {
        crate::auth::full_only(&request, "Add")?;
        let req = convert::add_request(request.into_inner())?;
        Ok(Response::new(convert::add_response(
            self.write(req).await?,
        )?))
    }

    async fn reserve(&self, request: TRequest<pb::ReserveRequest>) -> R<pb::ReserveResponse> {
        let r = request.into_inner();
        let wait_ms = r.wait_ms;
        let req = convert::reserve_request(r)?;
        let outcome = self
            .node
            .reserve(req, wait_ms)
            .await
            .map_err(|e| self.unavailable(e))?;
        let resp = outcome.map_err(|e| command_error_status(&e))?;
        Ok(Response::new(convert::reserve_response(resp)?))
    }

    async fn started(&self, request: TRequest<pb::StartedRequest>) -> R<pb::Ack> {
        let req = convert::started_request(request.into_inner())?;
        Ok(Response::new(convert::ack_response(
            self.write(req).await?,
        )?))
    }

    async fn touch(&self, request: TRequest<pb::TouchRequest>) -> R<pb::TouchResponse> {
        let req = convert::touch_request(request.into_inner())?;
        Ok(Response::new(convert::touch_response(
            self.write(req).await?,
        )?))
    }

    async fn archive(&self, request: TRequest<pb::ArchiveRequest>) -> R<pb::Ack> {
        let req = convert::archive_request(request.into_inner())?;
        Ok(Response::new(convert::ack_response(
            self.write(req).await?,
        )?))
    }

    async fn release(&self, request: TRequest<pb::HandBackRequest>) -> R<pb::ReleaseResponse> {
        let req = convert::release_request(request.into_inner())?;
        Ok(Response::new(convert::release_response(
            self.write(req).await?,
        )?))
    }

    async fn bury(&self, request: TRequest<pb::HandBackRequest>) -> R<pb::Ack> {
        let req = convert::bury_request(request.into_inner())?;
        Ok(Response::new(convert::ack_response(
            self.write(req).await?,
        )?))
    }

    async fn kick(&self, request: TRequest<pb::KeysRequest>) -> R<pb::CountResponse> {
        crate::auth::full_only(&request, "Kick")?;
        let req = convert::kick_request(request.into_inner())?;
        Ok(Response::new(convert::count_response(
            self.write(req).await?,
        )?))
    }

    async fn kill(&self, request: TRequest<pb::KeysRequest>) -> R<pb::CountResponse> {
        crate::auth::full_only(&request, "Kill")?;
        let req = convert::kill_request(request.into_inner())?;
        Ok(Response::new(convert::count_response(
            self.write(req).await?,
        )?))
    }

    async fn delete(&self, request: TRequest<pb::KeysRequest>) -> R<pb::DeleteResponse> {
        crate::auth::full_only(&request, "Delete")?;
        let req = convert::delete_request(request.into_inner())?;
        Ok(Response::new(convert::delete_response(
            self.write(req).await?,
        )?))
    }

    async fn modify(&self, request: TRequest<pb::ModifyRequest>) -> R<pb::ModifyResponse> {
        crate::auth::full_only(&request, "Modify")?;
        let req = convert::modify_request(request.into_inner())?;
        Ok(Response::new(convert::modify_response(
            self.write(req).await?,
        )?))
    }

    async fn set_limit(&self, request: TRequest<pb::SetLimitRequest>) -> R<pb::Ack> {
        crate::auth::full_only(&request, "SetLimit")?;
        let req = convert::set_limit_request(request.into_inner())?;
        Ok(Response::new(convert::ack_response(
            self.write(req).await?,
        )?))
    }

    async fn set_reserving(&self, request: TRequest<pb::SetReservingRequest>) -> R<pb::Ack> {
        crate::auth::full_only(&request, "SetReserving")?;
        let req = convert::set_reserving_request(request.into_inner())?;
        Ok(Response::new(convert::ack_response(
            self.write(req).await?,
        )?))
    }

    async fn get(&self, request: TRequest<pb::GetRequest>) -> R<pb::JobsResponse> {
        let r = request.into_inner();
        let keys = convert::job_keys("keys", &r.keys)?;
        self.read_gate(r.stale).await?;
        let found = self
            .node
            .read("get", move |fsm| fsm.get_jobs(&keys))
            .await
            .map_err(store)?;
        let jobs = found.into_iter().flatten().map(pb::Job::from).collect();
        Ok(Response::new(pb::JobsResponse { jobs }))
    }

    async fn search(&self, request: TRequest<pb::SearchRequest>) -> R<pb::JobsResponse> {
        let q = convert::search_query(request.into_inner())?;
        self.read_gate(q.stale).await?;
        let listed = self
            .node
            .read("search", move |fsm| {
                if q.incomplete_only && q.rep_grp.is_empty() {
                    return fsm.incomplete(q.state, q.limit);
                }
                let mut l = fsm.by_rep_group(&q.rep_grp, q.how, q.state, q.limit)?;
                if q.incomplete_only {
                    l.retain(|x| !x.job.is_complete());
                }
                Ok(l)
            })
            .await
            .map_err(store)?;
        Ok(Response::new(pb::JobsResponse {
            jobs: listed.into_iter().map(pb::Job::from).collect(),
        }))
    }

    async fn stats(&self, request: TRequest<pb::StatsRequest>) -> R<pb::StatsResponse> {
        self.read_gate(request.into_inner().stale).await?;
        let (counts, ready) = self
            .node
            .read("stats", |fsm| {
                Ok((fsm.counts()?, fsm.ready_by_sched_group()?))
            })
            .await
            .map_err(store)?;
        Ok(Response::new(convert::stats_response(counts, ready)))
    }

    async fn get_env(&self, request: TRequest<pb::GetEnvRequest>) -> R<pb::GetEnvResponse> {
        let r = request.into_inner();
        let hash = convert::env_hash(&r.env_hash)?;
        self.read_gate(r.stale).await?;
        let env = self
            .node
            .read("environment", move |fsm| fsm.env(&hash))
            .await
            .map_err(store)?
            .ok_or_else(|| Status::not_found(format!("no environment {}", r.env_hash)))?;
        Ok(Response::new(pb::GetEnvResponse { env }))
    }
}
