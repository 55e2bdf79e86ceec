//! Raft traffic between managers over gRPC: the client side (openraft's `RaftNetworkV2`) and
//! the server side (the `Raft` service). openraft's messages travel serde-encoded (postcard) in
//! `bytes` fields; snapshots are client-streamed in chunks read from the snapshot file, and
//! written to a staged file on the receiving side, which checks it whole before openraft
//! installs it: neither side holds a snapshot in memory.

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
use raft_store::SnapshotInbox;
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
        let file = snapshot
            .snapshot
            .into_file()
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let chunks = futures::stream::once(async move { pb::SnapshotChunk { data: head } }).chain(
            file_chunks(tokio::fs::File::from_std(file), target_of(self.target)),
        );
        let mut client = self.client()?;
        let target = self.target;
        let send = async move {
            let reply = client
                .snapshot(chunks)
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

fn target_of(target: u64) -> String {
    format!("to node {target}")
}

/// The file's bytes as `SNAPSHOT_CHUNK_BYTES` pieces, one read at a time. A read error ends the
/// stream early (logged), which the receiver refuses as a truncated snapshot.
pub(crate) fn file_chunks(
    file: tokio::fs::File,
    to: String,
) -> impl futures::Stream<Item = pb::SnapshotChunk> + Send + 'static {
    futures::stream::unfold(Some(file), move |file| {
        let to = to.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut file = file?;
            let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let mut filled = 0;
            // Fills the piece whole (reads may return less), so pieces have one size.
            while filled < data.len() {
                match file.read(&mut data[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the snapshot file {to}");
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            data.truncate(filled);
            Some((pb::SnapshotChunk { data }, Some(file)))
        }
    })
}

/// The server side of the Raft service: hands incoming messages to the local Raft, and runs
/// what followers forward to this node as leader (through the node shell).
pub struct RaftService {
    pub node: std::sync::Arc<crate::node::Node>,
    pub raft: RaftHandle,
    /// Where received snapshots are staged.
    pub inbox: SnapshotInbox,
}

/// Writes the snapshot pieces of `stream` to `path`, then checks the file whole. The stream's
/// error (the sender gave up) and a bad file are the caller's to report.
async fn receive_snapshot(
    stream: &mut Streaming<pb::SnapshotChunk>,
    path: &std::path::Path,
) -> Result<SnapshotData, Status> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| Status::internal(format!("staging a received snapshot: {e}"));
    let file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut out = tokio::io::BufWriter::with_capacity(SNAPSHOT_CHUNK_BYTES, file);
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?.data).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    drop(out);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let data = SnapshotData::open(&path)?;
        data.verify()?;
        Ok::<_, std::io::Error>(data)
    })
    .await
    .map_err(|e| Status::internal(format!("checking a received snapshot: {e}")))?
    .map_err(|e| Status::data_loss(format!("received snapshot refused: {e}")))
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
        let path = self.inbox.staging_path();
        let received = receive_snapshot(&mut stream, &path).await;
        let r = match received {
            Ok(data) => Ok(self
                .raft
                .install_full_snapshot(
                    vote,
                    Snapshot {
                        meta,
                        snapshot: data,
                    },
                )
                .await
                .map_err(|e| e.to_string())),
            Err(status) => Err(status),
        };
        // Installed, the file was moved into place; otherwise it goes.
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged snapshot")
            }
            _ => {}
        }
        let r = r?;
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
