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

use queue_fsm::{CommandError, JobKey};
use raftq_proto::endpoint::endpoint;
use raftq_proto::limits::MAX_RESERVE_WAIT_MS;
use raftq_proto::pb;
use raftq_proto::pb::admin_client::AdminClient;
use raftq_proto::pb::queue_client::QueueClient;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A channel whose calls carry the cluster token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, Auth>;

/// Metadata key of the leader's address on UNAVAILABLE replies.
pub const LEADER_HEADER: &str = "x-raftq-leader";
/// Largest message the client sends or accepts: the node's bound, one constant on the wire.
pub use raftq_proto::limits::MAX_QUEUE_MESSAGE_BYTES as MAX_MESSAGE_BYTES;

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
    /// The client's settings cannot work: no or bad addresses, a bad token, TLS settings that
    /// contradict each other or that the nodes do not share.
    #[error("client configuration: {0}")]
    Config(String),
}

impl ClientError {
    pub fn refusal(&self) -> Option<&CommandError> {
        match self {
            ClientError::Refused(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the same call may succeed later: true when no node answered in time (or
    /// a node reported a timeout-like status), false for refusals, invalid input and bad
    /// configuration, which the same call meets again.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Unavailable { .. } => true,
            ClientError::Status(s) => retryable(s),
            ClientError::Refused(_) | ClientError::Invalid(_) | ClientError::Config(_) => false,
        }
    }

    /// Whether the call certainly took no effect (it was refused or never valid); otherwise
    /// a write may have been applied although no answer came back.
    pub fn had_no_effect(&self) -> bool {
        matches!(
            self,
            ClientError::Refused(_) | ClientError::Invalid(_) | ClientError::Config(_)
        )
    }
}

/// Retry and timeout settings, and the cluster token.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The cluster token (see `auth`); None sends none.
    pub token: Option<String>,
    /// The token file `token` came from: re-read when a node refuses the token, so that a
    /// long-lived client (a runner) follows a rotation (`raftq token rotate`).
    pub token_file: Option<std::path::PathBuf>,
    /// The PEM of the CA that signed the managers' certificates (the cluster CA, `ca.pem` of
    /// `raftq cert ca`; the CLI reads it from `--ca-file` / `RAFTQ_CA_FILE`): every node's
    /// certificate must verify against it and name the host dialled. None: the system's
    /// trusted roots (managers with certificates of a public CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Talk plaintext (http) to nodes started with `--plaintext`, for tests and local
    /// experiments; addresses written `http://HOST:PORT` mean the same. Default: TLS.
    pub plaintext: bool,
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
            token_file: None,
            ca_pem: None,
            plaintext: false,
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
    tls: Option<raftq_proto::endpoint::Tls>,
    config: ClientConfig,
    auth: Auth,
    state: Mutex<State>,
}

/// This process's environment as `KEY=VALUE` entries (what an Add sends as the jobs'
/// environment), and the names of the variables left out because they are not UTF-8 (the
/// queue keeps environments as text).
pub fn process_env() -> (Vec<String>, Vec<String>) {
    let (mut entries, mut skipped) = (Vec::new(), Vec::new());
    for (k, v) in std::env::vars_os() {
        match (k.to_str(), v.to_str()) {
            (Some(k), Some(v)) => entries.push(format!("{k}={v}")),
            _ => skipped.push(k.to_string_lossy().into_owned()),
        }
    }
    (entries, skipped)
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

/// One attempt's timeout with `extra` added (a blocking reserve's wait); saturating, as a
/// caller's `extra` may be anything.
fn attempt_timeout(config: &ClientConfig, extra: Duration) -> Duration {
    config.attempt_timeout.saturating_add(extra)
}

/// The scheme the node addresses were written with, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// The addresses without their scheme, and the one scheme they share (mixing is refused).
fn split_schemes(nodes: Vec<String>) -> Result<(Vec<String>, Option<Scheme>), ClientError> {
    let mut scheme = None;
    let mut bare = Vec::with_capacity(nodes.len());
    for n in nodes {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        let (this, rest) = if let Some(rest) = n.strip_prefix("http://") {
            (Some(Scheme::Http), rest)
        } else if let Some(rest) = n.strip_prefix("https://") {
            (Some(Scheme::Https), rest)
        } else {
            (None, n)
        };
        if !bare.is_empty() && this != scheme {
            return Err(ClientError::Config(format!(
                "{n:?}: node addresses mix schemes; write them all as HOST:PORT (TLS), \
                 https://HOST:PORT (TLS) or http://HOST:PORT (plaintext)"
            )));
        }
        scheme = this;
        bare.push(rest.trim_end_matches('/').to_string());
    }
    Ok((bare, scheme))
}

/// TLS (the CA of `config`, else the system's roots) unless plaintext is asked for, by
/// `config.plaintext` or by `http://` addresses; contradictions are refused.
fn transport(
    config: &ClientConfig,
    scheme: Option<Scheme>,
) -> Result<Option<raftq_proto::endpoint::Tls>, ClientError> {
    use raftq_proto::endpoint::Tls;
    let plaintext = config.plaintext || scheme == Some(Scheme::Http);
    if !plaintext {
        return Ok(Some(match &config.ca_pem {
            Some(pem) => Tls::trusting(pem.clone()),
            None => Tls::system_roots(),
        }));
    }
    if scheme == Some(Scheme::Https) {
        return Err(ClientError::Config(
            "https:// node addresses with plaintext asked for: drop one of them".into(),
        ));
    }
    if config.ca_pem.is_some() {
        return Err(ClientError::Config(
            "a CA (--ca-file / RAFTQ_CA_FILE) with plaintext node addresses (http://): \
             drop the CA to talk plaintext, or write the addresses as HOST:PORT for TLS"
                .into(),
        ));
    }
    Ok(None)
}

/// The way out when a call failed because client and node disagree on TLS (which no retry
/// mends): a plaintext node, a TLS node for a plaintext client, a certificate refused.
fn tls_mismatch(status: &Status, plaintext: bool) -> Option<&'static str> {
    let m = status.message();
    if m.contains("invalid peer certificate") {
        return Some(if m.contains("UnknownIssuer") {
            "the node's certificate is not signed by a CA this client trusts: give the cluster \
             CA with --ca-file FILE or RAFTQ_CA_FILE (`raftq up` writes it to DIR/raftq.env)"
        } else if m.contains("NotValidForName") {
            "the node's certificate does not name the host dialled: use a host name or IP it \
             names, or issue it again with that --host (`raftq cert node`)"
        } else if m.contains("Expired") {
            "the node's certificate has expired: issue a new one (`raftq cert node`)"
        } else {
            "the node's certificate was refused: check it against the cluster CA"
        });
    }
    if m.contains("InvalidContentType") || m.contains("corrupt message") {
        return Some(
            "the node does not speak TLS (started with --plaintext?): write its address as \
             http://HOST:PORT to talk plaintext",
        );
    }
    if plaintext && m.contains("h2 protocol error") {
        return Some(
            "the node speaks TLS: write its address as HOST:PORT (not http://) and give the \
             cluster CA with --ca-file FILE or RAFTQ_CA_FILE",
        );
    }
    None
}

/// Whether a node's reply means "try again" (this node or another) rather than an answer.
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
    /// `nodes`: host:port of one or more managers (TLS), or all `http://host:port`
    /// (plaintext) or all `https://host:port`.
    pub fn new(nodes: Vec<String>, config: ClientConfig) -> Result<Client, ClientError> {
        let (nodes, scheme) = split_schemes(nodes)?;
        if nodes.is_empty() {
            return Err(ClientError::Config(
                "no node addresses (use --cluster HOST:PORT,... or RAFTQ_CLUSTER)".into(),
            ));
        }
        let tls = transport(&config, scheme)?;
        for n in &nodes {
            endpoint(n, tls.as_ref()).map_err(|e| ClientError::Config(format!("{n:?}: {e}")))?;
        }
        let channels = vec![None; nodes.len()];
        let auth =
            Auth::new(config.token.as_deref()).map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            nodes,
            tls,
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
        let c = endpoint(&self.nodes[i], self.tls.as_ref())
            .map_err(|e| ClientError::Config(e.to_string()))?
            .connect_lazy();
        st.channels[i] = Some(c.clone());
        Ok(c)
    }

    /// Re-reads the token file (if the client has one); whether it now sends another token.
    fn reread_token(&self) -> bool {
        let Some(path) = &self.config.token_file else {
            return false;
        };
        match auth::read_token_file(path) {
            Ok(t) => {
                let changed = self.auth.set(&t).unwrap_or(false);
                if changed {
                    tracing::info!(file = %path.display(), "token refused: sending the token file's new token");
                }
                changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "token refused, and re-reading the token file failed");
                false
            }
        }
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
        // Nodes that answered with a TLS mismatch (no use retrying once every node gave one),
        // and the last such answer with its way out.
        let mut mismatched = vec![false; self.nodes.len()];
        let mut mismatch: Option<String> = None;
        let mut reread = false;
        loop {
            attempts += 1;
            let ch = self.channel(i)?;
            let r = tokio::time::timeout(attempt_timeout(&self.config, extra_timeout), f(ch)).await;
            let status = match r {
                Ok(Ok(resp)) => {
                    self.set_current(i);
                    return Ok(resp.into_inner());
                }
                Ok(Err(s)) => s,
                Err(_) => Status::deadline_exceeded("attempt timed out"),
            };
            // A TLS mismatch is final once every node gave one; until then, the next node.
            if let Some(way_out) = tls_mismatch(&status, self.tls.is_none()) {
                mismatched[i] = true;
                let m = format!("{}: {}: {way_out}", self.nodes[i], status.message());
                if mismatched.iter().all(|m| *m) {
                    return Err(ClientError::Config(m));
                }
                mismatch = Some(m);
            } else if status.code() == Code::Unauthenticated && !reread && self.reread_token() {
                // the token file has a new token (rotated): the same node again, with it
                reread = true;
                continue;
            } else if !retryable(&status) {
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
                if let Some(m) = mismatch {
                    // the others did not answer at all: the mismatch is what to fix
                    return Err(ClientError::Config(m));
                }
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

    /// One Queue-service call with retries; `f` makes the call on a fresh client stub. Every
    /// Queue method goes through here (most through `queue_calls!`).
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

    /// Reserves a job, waiting up to `wait_ms` on the leader for one to be ready.
    pub async fn reserve(
        &self,
        mut req: pb::ReserveRequest,
    ) -> Result<pb::ReserveResponse, ClientError> {
        ensure_id(&mut req.request_id);
        let extra = reserve_wait(req.wait_ms);
        self.queue_call(req, extra, |mut c, r| async move { c.reserve(r).await })
            .await
    }

    pub async fn kick(&self, keys: &[JobKey]) -> Result<u64, ClientError> {
        Ok(self.kick_rpc(keys_request(keys)).await?.count)
    }

    pub async fn kill(&self, keys: &[JobKey]) -> Result<u64, ClientError> {
        Ok(self.kill_rpc(keys_request(keys)).await?.count)
    }

    pub async fn delete(&self, keys: &[JobKey]) -> Result<pb::DeleteResponse, ClientError> {
        self.delete_rpc(keys_request(keys)).await
    }

    pub async fn get(&self, keys: &[JobKey], stale: bool) -> Result<Vec<pb::Job>, ClientError> {
        let keys = keys.iter().map(JobKey::to_string).collect();
        Ok(self.get_rpc(pb::GetRequest { keys, stale }).await?.jobs)
    }

    pub async fn search(&self, req: pb::SearchRequest) -> Result<Vec<pb::Job>, ClientError> {
        Ok(self.search_rpc(req).await?.jobs)
    }

    pub async fn stats(&self, stale: bool) -> Result<pb::StatsResponse, ClientError> {
        self.stats_rpc(pb::StatsRequest { stale }).await
    }

    pub async fn get_env(&self, env_hash: String) -> Result<Vec<String>, ClientError> {
        let req = pb::GetEnvRequest {
            env_hash,
            stale: false,
        };
        Ok(self.get_env_rpc(req).await?.env)
    }

    pub async fn set_limit(&self, group: String, limit: i64) -> Result<(), ClientError> {
        let req = pb::SetLimitRequest {
            request_id: request_id(),
            group,
            limit,
        };
        self.set_limit_rpc(req).await?;
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
    /// A backup of node `node`'s state (see the Admin service's `Backup`): the stream of its
    /// pieces. No deadline: a backup of a big queue takes as long as it takes to send.
    pub async fn backup_of(
        &self,
        node: usize,
    ) -> Result<tonic::Streaming<pb::BackupChunk>, Status> {
        let ch = self
            .channel(node)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut c = AdminClient::with_interceptor(ch, self.auth.clone())
            .max_decoding_message_size(raftq_proto::limits::MAX_QUEUE_MESSAGE_BYTES);
        Ok(c.backup(pb::BackupRequest {}).await?.into_inner())
    }

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

/// The Queue methods whose call is the request as given: `VIS fn NAME = METHOD(REQUEST) ->
/// RESPONSE`, with `[request_id]` when the request carries an id, which is then filled in once
/// for all retries of the call.
macro_rules! queue_calls {
    ($($(#[$doc:meta])* $vis:vis fn $name:ident = $method:ident($req:ty) -> $resp:ty $([$id:ident])?;)*) => {
        impl Client {$(
            $(#[$doc])*
            $vis async fn $name(&self, req: $req) -> Result<$resp, ClientError> {
                #[allow(unused_mut)]
                let mut req = req;
                $(ensure_id(&mut req.$id);)?
                self.queue_call(req, Duration::ZERO, |mut c, r| async move { c.$method(r).await })
                    .await
            }
        )*}
    };
}

queue_calls! {
    pub fn add = add(pb::AddRequest) -> pb::AddResponse [request_id];
    pub fn started = started(pb::StartedRequest) -> pb::Ack [request_id];
    pub fn touch = touch(pb::TouchRequest) -> pb::TouchResponse [request_id];
    pub fn archive = archive(pb::ArchiveRequest) -> pb::Ack [request_id];
    pub fn release = release(pb::HandBackRequest) -> pb::ReleaseResponse [request_id];
    pub fn bury = bury(pb::HandBackRequest) -> pb::Ack [request_id];
    pub fn modify = modify(pb::ModifyRequest) -> pb::ModifyResponse [request_id];
    /// Opens, pauses or drains reserving.
    pub fn set_reserving = set_reserving(pb::SetReservingRequest) -> pb::Ack [request_id];
    fn kick_rpc = kick(pb::KeysRequest) -> pb::CountResponse [request_id];
    fn kill_rpc = kill(pb::KeysRequest) -> pb::CountResponse [request_id];
    fn delete_rpc = delete(pb::KeysRequest) -> pb::DeleteResponse [request_id];
    fn get_rpc = get(pb::GetRequest) -> pb::JobsResponse;
    fn search_rpc = search(pb::SearchRequest) -> pb::JobsResponse;
    fn stats_rpc = stats(pb::StatsRequest) -> pb::StatsResponse;
    fn get_env_rpc = get_env(pb::GetEnvRequest) -> pb::GetEnvResponse;
    fn set_limit_rpc = set_limit(pb::SetLimitRequest) -> pb::Ack [request_id];
}

/// The request of a call on jobs by key, with a fresh id.
fn keys_request(keys: &[JobKey]) -> pb::KeysRequest {
    pb::KeysRequest {
        request_id: request_id(),
        keys: keys.iter().map(JobKey::to_string).collect(),
    }
}

/// How much longer than one attempt's timeout to wait for a blocking Reserve's answer: its
/// wait, bounded by the longest a node waits (so a huge `wait_ms` neither overflows the
/// attempt's timeout nor waits beyond what any node would).
fn reserve_wait(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms.min(MAX_RESERVE_WAIT_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_reserve_wait_is_bounded_and_does_not_overflow() {
        assert_eq!(reserve_wait(250), Duration::from_millis(250));
        assert_eq!(
            reserve_wait(u64::MAX),
            Duration::from_millis(MAX_RESERVE_WAIT_MS)
        );
        let config = ClientConfig {
            attempt_timeout: Duration::MAX,
            ..ClientConfig::default()
        };
        assert_eq!(
            attempt_timeout(&config, reserve_wait(u64::MAX)),
            Duration::MAX
        );
        assert_eq!(
            attempt_timeout(&ClientConfig::default(), Duration::from_secs(1)),
            Duration::from_secs(16)
        );
    }

    #[test]
    fn only_unavailability_is_retryable() {
        let unavailable = ClientError::Unavailable {
            attempts: 3,
            elapsed_ms: 10,
            last: "n1: down".into(),
        };
        assert!(unavailable.retryable());
        assert!(ClientError::Status(Status::deadline_exceeded("slow")).retryable());
        assert!(!ClientError::Status(Status::internal("bug")).retryable());
        assert!(!ClientError::Invalid("keys[0]".into()).retryable());
        assert!(!ClientError::Config("no nodes".into()).retryable());
        let refused = ClientError::Refused(CommandError::Invalid {
            field: "x".into(),
            reason: "y".into(),
        });
        assert!(!refused.retryable());
        assert!(refused.had_no_effect() && !unavailable.had_no_effect());
    }

    #[test]
    fn a_tls_mismatch_names_the_way_out() {
        let unknown = Status::unavailable("invalid peer certificate: UnknownIssuer");
        assert!(tls_mismatch(&unknown, false).is_some_and(|h| h.contains("RAFTQ_CA_FILE")));
        let name = Status::unavailable("invalid peer certificate: NotValidForName");
        assert!(tls_mismatch(&name, false).is_some_and(|h| h.contains("--host")));
        let plain = Status::unavailable("received corrupt message of type InvalidContentType");
        assert!(tls_mismatch(&plain, false).is_some_and(|h| h.contains("http://")));
        let h2 = Status::internal("h2 protocol error: http2 error (Internal)");
        assert!(tls_mismatch(&h2, true).is_some_and(|h| h.contains("not http://")));
        assert!(tls_mismatch(&h2, false).is_none());
        assert!(tls_mismatch(&Status::unavailable("connection refused"), false).is_none());
    }

    #[test]
    fn tls_unless_plaintext_is_asked_for_by_flag_or_scheme() {
        let nodes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (bare, scheme) = split_schemes(nodes(&["a:1", " b:2 ", ""])).unwrap();
        assert_eq!((bare, scheme), (nodes(&["a:1", "b:2"]), None));
        let (bare, scheme) = split_schemes(nodes(&["http://a:1/", "http://b:2"])).unwrap();
        assert_eq!((bare, scheme), (nodes(&["a:1", "b:2"]), Some(Scheme::Http)));
        let e = split_schemes(nodes(&["https://a:1", "b:2"])).unwrap_err();
        assert!(e.to_string().contains("mix schemes"), "{e}");

        let default = ClientConfig::default();
        let tls = transport(&default, None).unwrap().expect("TLS by default");
        assert!(tls.ca_pem.is_none(), "no CA: the system's roots");
        let with_ca = ClientConfig {
            ca_pem: Some(b"pem".to_vec()),
            ..ClientConfig::default()
        };
        let tls = transport(&with_ca, Some(Scheme::Https)).unwrap().unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some(&b"pem"[..]));
        assert!(transport(&default, Some(Scheme::Http)).unwrap().is_none());
        let plaintext = ClientConfig {
            plaintext: true,
            ..ClientConfig::default()
        };
        assert!(transport(&plaintext, None).unwrap().is_none());
        assert!(transport(&plaintext, Some(Scheme::Https)).is_err());
        let e = transport(&with_ca, Some(Scheme::Http)).unwrap_err();
        assert!(e.to_string().contains("RAFTQ_CA_FILE"), "{e}");
    }
}
