//! Raft traffic between managers over gRPC: the client side (openraft's `RaftNetworkV2`) and
//! the server side (the `Raft` service). openraft's messages travel serde-encoded (postcard) in
//! `bytes` fields; snapshots are client-streamed in chunks.

use crate::limits::{MAX_RAFT_MESSAGE_BYTES, SNAPSHOT_CHUNK_BYTES};
use futures::StreamExt;
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkV2};
use raft_store::types::{Snapshot, SnapshotData, SnapshotMeta, Vote};
use raft_store::TypeConfig;
use raftq_client::AuthChannel;
use raftq_proto::pb;
use raftq_proto::pb::raft_client::RaftClient;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

pub type RaftHandle = openraft::Raft<TypeConfig, raft_store::StateMachine>;

/// How long one AppendEntries or Vote may take on the wire before the peer counts as slow;
/// openraft retries.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(v)
}

fn dec<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}

/// How this node reaches its peers: the cluster token on every call, and with TLS on, the
/// cluster CA as the only root and this node's certificate as its client identity (the peer
/// service admits managers by it).
#[derive(Clone)]
pub struct PeerLink {
    pub auth: raftq_client::Auth,
    pub tls: Option<raftq_proto::endpoint::Tls>,
}

impl PeerLink {
    /// A lazily connected channel to `addr` (host:port).
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        Ok(raftq_proto::endpoint::endpoint(addr, self.tls.as_ref())?
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy())
    }

    /// A Raft-service client of the node at `addr`.
    pub fn client(&self, addr: &str) -> Result<RaftClient<AuthChannel>, tonic::transport::Error> {
        Ok(
            RaftClient::with_interceptor(self.channel(addr)?, self.auth.clone())
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
        )
    }
}

/// Builds a network client per peer (see [`PeerLink`]).
#[derive(Clone)]
pub struct Network {
    pub link: PeerLink,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: self.link.client(&node.addr).map_err(|e| e.to_string()),
        }
    }
}

pub struct PeerClient {
    target: u64,
    client: Result<RaftClient<AuthChannel>, String>,
}

fn status_to_rpc(target: u64, s: Status) -> RPCError<TypeConfig> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {s}")))
        }
        _ => RPCError::Network(NetworkError::from_string(format!("node {target}: {s}"))),
    }
}

impl PeerClient {
    fn client(&self) -> Result<RaftClient<AuthChannel>, RPCError<TypeConfig>> {
        self.client.clone().map_err(|e| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "node {}: bad address: {e}",
                self.target
            )))
        })
    }

    /// One unary call: encode, send with a deadline, decode `Result<Resp, RaftError>`.
    async fn unary<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &mut self,
        vote: bool,
        req: &Req,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let data = enc(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.client()?;
        let mut request = Request::new(pb::RaftBytes { data });
        request.set_timeout(RPC_TIMEOUT);
        let reply = if vote {
            client.vote(request).await
        } else {
            client.append_entries(request).await
        }
        .map_err(|s| status_to_rpc(self.target, s))?;
        let r: Result<Resp, RaftError<TypeConfig>> =
            dec(&reply.into_inner().data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // A peer whose Raft stopped (fatal) counts as unreachable: openraft backs off.
        r.map_err(|e| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "node {}: {e}",
                self.target
            )))
        })
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(false, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(true, &rpc).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let head = enc(&(vote, snapshot.meta.clone()))
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let data = snapshot.snapshot;
        let mut chunks = vec![pb::SnapshotChunk { data: head }];
        chunks.extend(
            data.chunks(SNAPSHOT_CHUNK_BYTES)
                .map(|c| pb::SnapshotChunk { data: c.to_vec() }),
        );
        let mut client = self.client()?;
        let target = self.target;
        let send = async move {
            let reply = client
                .snapshot(futures::stream::iter(chunks))
                .await
                .map_err(|s| status_to_rpc(target, s))?;
            let r: Result<SnapshotResponse<TypeConfig>, String> = dec(&reply.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            r.map_err(|e| {
                RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {e}")))
            })
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => Ok(r?),
        }
    }
}

/// The server side of the Raft service: hands incoming messages to the local Raft, and runs
/// what followers forward to this node as leader (through the node shell).
pub struct RaftService {
    pub node: std::sync::Arc<crate::node::Node>,
    pub raft: RaftHandle,
}

fn bad_request(e: postcard::Error) -> Status {
    Status::invalid_argument(format!("undecodable raft message: {e}"))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<pb::RaftBytes>, Status> {
    let data = enc(v).map_err(|e| Status::internal(format!("encoding raft reply: {e}")))?;
    Ok(Response::new(pb::RaftBytes { data }))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftBytes>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            dec(&request.into_inner().data).map_err(bad_request)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftBytes>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        let rpc: VoteRequest<TypeConfig> = dec(&request.into_inner().data).map_err(bad_request)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        let mut stream = request.into_inner();
        let head = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = dec(&head.data).map_err(bad_request)?;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?.data);
        }
        let r = self
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: data,
                },
            )
            .await
            .map_err(|e| e.to_string());
        reply(&r)
    }

    async fn forward(
        &self,
        request: Request<pb::RaftBytes>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        let f: crate::node::Forwarded = dec(&request.into_inner().data).map_err(bad_request)?;
        reply(&self.node.handle_forwarded(f).await)
    }

    async fn read_index(
        &self,
        _request: Request<pb::RaftBytes>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        reply(&self.node.read_index_here().await)
    }
}
