//! # raftq-client: talk to a raftq cluster
//!
//! Give it the managers' addresses; it finds one that answers, follows the leader hint that a
//! node returns when it cannot reach the leader itself, and retries on unavailability and
//! timeouts with backoff until an overall deadline. Every mutating call carries a request id
//! chosen once per call, so a retry that reaches a new leader has exactly one effect.
//!
//! Errors the caller must see are not hidden: a refusal by the queue (bad input, stale fence,
//! ...) comes back at once as [`ClientError::Refused`]; running out of time as
//! [`ClientError::Unavailable`] (for a write, its outcome is then unknown).

pub mod auth;

pub use auth::Auth;

use queue_fsm::CommandError;
use raftq_proto::pb;
use raftq_proto::pb::admin_client::AdminClient;
use raftq_proto::pb::queue_client::QueueClient;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A channel whose calls carry the cluster token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, Auth>;

/// Metadata key of the leader's address on UNAVAILABLE replies.
pub const LEADER_HEADER: &str = "x-raftq-leader";
/// Largest message the client sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The queue refused the request; retrying the same request cannot help.
    #[error("{0}")]
    Refused(CommandError),
    /// The request was malformed (a field out of range); fix the request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No node answered in time. For a write, whether it took effect is unknown; retrying
    /// with the same request id is safe.
    #[error("cluster unavailable after {attempts} attempt(s) over {elapsed_ms} ms: {last}")]
    Unavailable {
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
    /// Any other failure reported by a node.
    #[error("{} ({:?})", .0.message(), .0.code())]
    Status(Status),
    #[error("bad cluster address list: {0}")]
    Config(String),
}

impl ClientError {
    pub fn refusal(&self) -> Option<&CommandError> {
        match self {
            ClientError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// Retry and timeout settings, and the cluster token.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The cluster token (see `auth`); None sends none.
    pub token: Option<String>,
    /// Give up after this long (per call).
    pub deadline: Duration,
    /// One attempt's timeout (a blocking reserve adds its wait to this).
    pub attempt_timeout: Duration,
    /// First backoff after a failed attempt; doubled up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: None,
            deadline: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(15),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

struct State {
    /// Index into `nodes` of the node to try first.
    current: usize,
    channels: Vec<Option<Channel>>,
}

pub struct Client {
    nodes: Vec<String>,
    config: ClientConfig,
    auth: Auth,
    state: Mutex<State>,
}

/// A fresh 16-byte request id.
pub fn request_id() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

/// Gives a request without an id a fresh one (kept for all retries of the call).
fn ensure_id(id: &mut Vec<u8>) {
    if id.is_empty() {
        *id = request_id();
    }
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
    )
}

impl Client {
    /// `nodes`: host:port of one or more managers.
    pub fn new(nodes: Vec<String>, config: ClientConfig) -> Result<Client, ClientError> {
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(ClientError::Config(
                "no node addresses (use --cluster HOST:PORT,... or RAFTQ_CLUSTER)".into(),
            ));
        }
        for n in &nodes {
            Endpoint::from_shared(format!("http://{n}"))
                .map_err(|e| ClientError::Config(format!("{n:?}: {e}")))?;
        }
        let channels = vec![None; nodes.len()];
        let auth =
            Auth::new(config.token.as_deref()).map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            nodes,
            auth,
            config,
            state: Mutex::new(State {
                current: 0,
                channels,
            }),
        })
    }

    /// Parses `HOST:PORT,HOST:PORT`.
    pub fn from_list(list: &str, config: ClientConfig) -> Result<Client, ClientError> {
        Client::new(list.split(',').map(str::to_owned).collect(), config)
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    fn channel(&self, i: usize) -> Result<Channel, ClientError> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| ClientError::Config("client state lock poisoned".into()))?;
        if let Some(c) = &st.channels[i] {
            return Ok(c.clone());
        }
        let c = Endpoint::from_shared(format!("http://{}", self.nodes[i]))
            .map_err(|e| ClientError::Config(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        st.channels[i] = Some(c.clone());
        Ok(c)
    }

    fn current(&self) -> usize {
        self.state.lock().map(|s| s.current).unwrap_or(0)
    }

    fn set_current(&self, i: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.current = i;
        }
    }

    /// Calls `f` on a node until it succeeds, is refused, or the deadline passes.
    pub async fn call<T, F, Fut>(&self, extra_timeout: Duration, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = tokio::time::Instant::now();
        let mut backoff = self.config.backoff;
        let mut attempts = 0u32;
        let mut i = self.current();
        loop {
            attempts += 1;
            let ch = self.channel(i)?;
            let r = tokio::time::timeout(self.config.attempt_timeout + extra_timeout, f(ch)).await;
            let status = match r {
                Ok(Ok(resp)) => {
                    self.set_current(i);
                    return Ok(resp.into_inner());
                }
                Ok(Err(s)) => s,
                Err(_) => Status::deadline_exceeded("attempt timed out"),
            };
            if !retryable(&status) {
                if let Some(e) = raftq_proto::convert::status_command_error(&status) {
                    return Err(ClientError::Refused(e));
                }
                if status.code() == Code::InvalidArgument {
                    return Err(ClientError::Invalid(status.message().to_string()));
                }
                return Err(ClientError::Status(status));
            }
            let elapsed = start.elapsed();
            if elapsed >= self.config.deadline {
                return Err(ClientError::Unavailable {
                    attempts,
                    elapsed_ms: elapsed.as_millis() as u64,
                    last: format!("{}: {}", self.nodes[i], status.message()),
                });
            }
            // Follow the leader hint if the node gave one we know; else try the next node.
            let hint = status
                .metadata()
                .get(LEADER_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|a| self.nodes.iter().position(|n| n == a));
            i = match hint {
                Some(h) if h != i => h,
                _ => (i + 1) % self.nodes.len(),
            };
            tracing::debug!(error = %status, next = %self.nodes[i], "retrying");
            tokio::time::sleep(backoff.min(self.config.deadline.saturating_sub(elapsed))).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    fn queue(&self, ch: Channel) -> QueueClient<AuthChannel> {
        QueueClient::with_interceptor(ch, self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    // ---- typed API (each mutating call gets one request id for all its retries) ----------

    /// One Queue-service call with retries; `f` makes the call on a fresh client stub.
    async fn queue_call<Req, T, F, Fut>(
        &self,
        req: Req,
        extra: Duration,
        f: F,
    ) -> Result<T, ClientError>
    where
        Req: Clone,
        F: Fn(QueueClient<AuthChannel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call(extra, |ch| f(self.queue(ch), req.clone())).await
    }

    pub async fn add(&self, mut req: pb::AddRequest) -> Result<pb::AddResponse, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.add(r).await },
        )
        .await
    }

    /// Reserves a job, waiting up to `wait_ms` on the leader for one to be ready.
    pub async fn reserve(
        &self,
        mut req: pb::ReserveRequest,
    ) -> Result<pb::ReserveResponse, ClientError> {
        ensure_id(&mut req.request_id);
        let extra = Duration::from_millis(req.wait_ms);
        self.queue_call(req, extra, |mut c, r| async move { c.reserve(r).await })
            .await
    }

    pub async fn started(&self, mut req: pb::StartedRequest) -> Result<pb::Ack, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.started(r).await },
        )
        .await
    }

    pub async fn touch(&self, mut req: pb::TouchRequest) -> Result<pb::TouchResponse, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.touch(r).await },
        )
        .await
    }

    pub async fn archive(&self, mut req: pb::ArchiveRequest) -> Result<pb::Ack, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.archive(r).await },
        )
        .await
    }

    pub async fn release(
        &self,
        mut req: pb::ReleaseRequest,
    ) -> Result<pb::ReleaseResponse, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.release(r).await },
        )
        .await
    }

    pub async fn bury(&self, mut req: pb::BuryRequest) -> Result<pb::Ack, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.bury(r).await },
        )
        .await
    }

    fn keys_request(keys: Vec<String>) -> pb::KeysRequest {
        pb::KeysRequest {
            request_id: request_id(),
            keys,
        }
    }

    pub async fn kick(&self, keys: Vec<String>) -> Result<u64, ClientError> {
        let req = Self::keys_request(keys);
        let r = self
            .queue_call(
                req,
                Duration::ZERO,
                |mut c, r| async move { c.kick(r).await },
            )
            .await?;
        Ok(r.count)
    }

    pub async fn kill(&self, keys: Vec<String>) -> Result<u64, ClientError> {
        let req = Self::keys_request(keys);
        let r = self
            .queue_call(
                req,
                Duration::ZERO,
                |mut c, r| async move { c.kill(r).await },
            )
            .await?;
        Ok(r.count)
    }

    pub async fn delete(&self, keys: Vec<String>) -> Result<pb::DeleteResponse, ClientError> {
        let req = Self::keys_request(keys);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.delete(r).await },
        )
        .await
    }

    pub async fn modify(
        &self,
        mut req: pb::ModifyRequest,
    ) -> Result<pb::ModifyResponse, ClientError> {
        ensure_id(&mut req.request_id);
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.modify(r).await },
        )
        .await
    }

    pub async fn get(&self, keys: Vec<String>, stale: bool) -> Result<Vec<pb::Job>, ClientError> {
        let req = pb::GetRequest { keys, stale };
        let r = self
            .queue_call(
                req,
                Duration::ZERO,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        Ok(r.jobs)
    }

    pub async fn search(&self, req: pb::SearchRequest) -> Result<Vec<pb::Job>, ClientError> {
        let r = self
            .queue_call(
                req,
                Duration::ZERO,
                |mut c, r| async move { c.search(r).await },
            )
            .await?;
        Ok(r.jobs)
    }

    pub async fn stats(&self, stale: bool) -> Result<pb::StatsResponse, ClientError> {
        let req = pb::StatsRequest { stale };
        self.queue_call(
            req,
            Duration::ZERO,
            |mut c, r| async move { c.stats(r).await },
        )
        .await
    }

    pub async fn get_env(&self, env_hash: String) -> Result<Vec<String>, ClientError> {
        let req = pb::GetEnvRequest {
            env_hash,
            stale: false,
        };
        let r = self
            .queue_call(
                req,
                Duration::ZERO,
                |mut c, r| async move { c.get_env(r).await },
            )
            .await?;
        Ok(r.env)
    }

    pub async fn set_limit(&self, group: String, limit: i64) -> Result<(), ClientError> {
        let req = pb::SetLimitRequest {
            request_id: request_id(),
            group,
            limit,
        };
        self.queue_call(req, Duration::ZERO, |mut c, r| async move {
            c.set_limit(r).await
        })
        .await?;
        Ok(())
    }

    /// Cluster status as one node sees it (`node`: index into the address list).
    pub async fn cluster_status_of(
        &self,
        node: usize,
    ) -> Result<pb::ClusterStatusResponse, Status> {
        let ch = self
            .channel(node)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut c = AdminClient::with_interceptor(ch, self.auth.clone());
        let mut req = tonic::Request::new(pb::ClusterStatusRequest {});
        req.set_timeout(Duration::from_secs(3));
        Ok(c.cluster_status(req).await?.into_inner())
    }

    /// Asks one node to build a snapshot now.
    pub async fn trigger_snapshot_of(&self, node: usize) -> Result<(), Status> {
        let ch = self
            .channel(node)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut c = AdminClient::with_interceptor(ch, self.auth.clone());
        c.trigger_snapshot(pb::TriggerSnapshotRequest {}).await?;
        Ok(())
    }

    fn admin(&self, ch: Channel) -> AdminClient<AuthChannel> {
        AdminClient::with_interceptor(ch, self.auth.clone())
    }

    /// Adds node `id` at `addr` (host:port) to the cluster; returns the voters after the change.
    /// Waits (up to `catch_up`) while the new node catches up as a learner.
    pub async fn add_node(
        &self,
        id: u64,
        addr: String,
        catch_up: Duration,
    ) -> Result<Vec<u64>, ClientError> {
        let req = pb::AddNodeRequest { id, addr };
        let r = self
            .call(catch_up, |ch| {
                let mut c = self.admin(ch);
                let req = req.clone();
                async move { c.add_node(req).await }
            })
            .await?;
        Ok(r.voters)
    }

    /// Removes voter `id` from the cluster; returns the voters after the change.
    pub async fn remove_node(&self, id: u64) -> Result<Vec<u64>, ClientError> {
        let r = self
            .call(Duration::ZERO, |ch| {
                let mut c = self.admin(ch);
                async move { c.remove_node(pb::RemoveNodeRequest { id }).await }
            })
            .await?;
        Ok(r.voters)
    }

    /// State digest of one node.
    pub async fn digest_of(&self, node: usize) -> Result<pb::DigestResponse, Status> {
        let ch = self
            .channel(node)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut c = AdminClient::with_interceptor(ch, self.auth.clone());
        let mut req = tonic::Request::new(pb::DigestRequest {});
        req.set_timeout(Duration::from_secs(10));
        Ok(c.digest(req).await?.into_inner())
    }
}
