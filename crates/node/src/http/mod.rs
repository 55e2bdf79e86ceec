//! The node's HTTP port (`http` in the config, `--http`): the web UI, the REST API shaped as
//! wr's, server-sent events for the live page, and `/metrics`. Over TLS with the node's
//! certificate when the node has TLS, plaintext otherwise; every route but the login page and
//! the page's static files needs the cluster token.
//!
//! ## Layout
//! - [`auth`]: the token check (an `Authorization: Bearer` header, or the login cookie) and
//!   the login form.
//! - [`rest`]: `/rest/v1/…`: jobs (list, add, remove, kill, retry), info, version, cluster,
//!   the queue's mode.
//! - [`metrics`]: the Prometheus registry, the Queue service's timers, `/metrics`.
//! - [`sse`]: `/events`, counts and cluster status pushed as they change.
//! - [`ui`]: the embedded page (`ui/index.html`, `app.js`, `style.css`).
//! - [`json`]: jobs and cluster status as JSON, with wr's field names where wr has one.
//! - this file: [`HttpState`], the router, the accept loop (TLS handshake, connection bound).
//!
//! The handlers call the same gRPC service code the Queue and Admin services run
//! ([`QueueService`], [`AdminService`]): the same conversion and validation, the same routing
//! to the leader (a follower forwards writes, reads go through a read index unless `stale`).

pub mod auth;
pub mod json;
pub mod metrics;
pub mod rest;
pub mod sse;
pub mod ui;

use crate::admin_service::AdminService;
use crate::auth::CheckToken;
use crate::node::Node;
use crate::queue_service::QueueService;
use crate::raft_net::RaftHandle;
use crate::tls::NodeTls;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use metrics::Metrics;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_HTTP_CONNECTIONS: usize = 256;
/// A TLS handshake that takes longer is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler reaches.
pub struct HttpState {
    pub node: Arc<Node>,
    pub raft: RaftHandle,
    pub queue: QueueService,
    pub admin: AdminService,
    pub metrics: Arc<Metrics>,
    /// The scheduler's runner counts (empty when it is off or this node does not lead).
    pub runners: Arc<crate::scheduler::RunnerStats>,
    pub check: CheckToken,
    /// A follower asks the leader for the cluster's status through it.
    pub leader_link: LeaderLink,
    /// The page is served over TLS (its cookie is then `Secure`).
    pub tls: bool,
    pub data_dir: PathBuf,
}

pub type Shared = Arc<HttpState>;

/// How long a follower waits for the leader's view of the cluster before showing its own.
const LEADER_VIEW_TIMEOUT: Duration = Duration::from_secs(2);

/// A follower's channel to the leader's Admin service (the peer link: its TLS and token),
/// kept while the leader's address stays the same.
pub struct LeaderLink {
    link: crate::raft_net::PeerLink,
    channel: std::sync::Mutex<Option<(String, tonic::transport::Channel)>>,
}

impl LeaderLink {
    pub fn new(link: crate::raft_net::PeerLink) -> LeaderLink {
        LeaderLink {
            link,
            channel: std::sync::Mutex::new(None),
        }
    }

    /// The cluster status as the node at `addr` (the leader) answers it.
    pub async fn cluster_status(
        &self,
        addr: &str,
    ) -> Result<raftq_proto::pb::ClusterStatusResponse, String> {
        let channel = {
            let mut c = self.channel.lock().unwrap_or_else(|p| p.into_inner());
            match &*c {
                Some((a, ch)) if a == addr => ch.clone(),
                _ => {
                    let ch = self.link.channel(addr).map_err(|e| e.to_string())?;
                    *c = Some((addr.to_string(), ch.clone()));
                    ch
                }
            }
        };
        let mut admin = raftq_proto::pb::admin_client::AdminClient::with_interceptor(
            channel,
            self.link.auth.clone(),
        );
        let call = admin.cluster_status(raftq_proto::pb::ClusterStatusRequest {});
        match tokio::time::timeout(LEADER_VIEW_TIMEOUT, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(e)) => Err(e.message().to_string()),
            Err(_) => Err(format!("no answer in {LEADER_VIEW_TIMEOUT:?}")),
        }
    }
}

/// The cluster as the leader sees it (it knows every follower's replication): asked here on
/// the leader, of the leader by a follower; a follower that cannot reach it shows its own
/// view, marked `stale`, with the reason.
pub async fn cluster_view(s: &HttpState) -> Result<serde_json::Value, tonic::Status> {
    use raftq_proto::pb::admin_server::Admin;
    let local = s
        .admin
        .cluster_status(tonic::Request::new(
            raftq_proto::pb::ClusterStatusRequest {},
        ))
        .await?
        .into_inner();
    let me = s.node.id();
    if local.leader == 0 || local.leader == me {
        let mut v = json::cluster_json(&local);
        v["stale"] = serde_json::json!(local.leader == 0);
        return Ok(v);
    }
    let addr = local
        .nodes
        .iter()
        .find(|n| n.id == local.leader)
        .map(|n| n.addr.clone());
    let answer = match addr {
        Some(a) => s.leader_link.cluster_status(&a).await,
        None => Err("the leader is not in this node's membership".into()),
    };
    Ok(match answer {
        Ok(c) if c.leader == local.leader => {
            let mut v = json::cluster_json(&c);
            v["stale"] = serde_json::json!(false);
            v
        }
        Ok(_) => {
            let mut v = json::cluster_json(&local);
            v["stale"] = serde_json::json!(true);
            v["stale_reason"] = serde_json::json!("the leader changed while asking it");
            v
        }
        Err(e) => {
            let mut v = json::cluster_json(&local);
            v["stale"] = serde_json::json!(true);
            v["stale_reason"] = serde_json::json!(format!(
                "node {me}'s own view: the leader (node {}) did not answer: {e}",
                local.leader
            ));
            v
        }
    })
}

/// Every route: the page and its login (open), then the token-checked ones.
pub fn router(state: Shared) -> Router {
    let checked = Router::new()
        .merge(rest::routes())
        .merge(sse::routes())
        .route("/metrics", axum::routing::get(metrics_route))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(ui::routes())
        .merge(auth::routes())
        .merge(checked)
        .fallback(no_route)
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::limits::MAX_QUEUE_MESSAGE_BYTES,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// A path no route serves: 404 with the way to the API's index.
async fn no_route(uri: axum::http::Uri) -> Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": format!(
                "no route {}: the API is under /rest/v1 (jobs, jobs/KEY, jobs/kill, jobs/retry, \
                 info, version, cluster, queue), the page at /, metrics at /metrics",
                uri.path()
            ),
        })),
    )
        .into_response()
}

/// Counts every request by route and status (`raftq_http_requests_total`).
async fn count(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    s.metrics.http_request(&route, resp.status().as_u16());
    resp
}

async fn metrics_route(State(s): State<Shared>) -> Response {
    use axum::response::IntoResponse;
    let snap = sse::metrics_snapshot(&s).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(&snap),
    )
        .into_response()
}

/// The rustls server configuration of the HTTP port: the node's certificate, HTTP/2 and 1.1.
/// No client certificate is asked for (browsers log in with the token).
pub fn tls_acceptor(tls: &NodeTls) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("tls_cert_file: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
        .map_err(|e| anyhow::anyhow!("tls_key_file: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("TLS settings of the HTTP port: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("tls_cert_file / tls_key_file: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `shutdown`: each connection on its own task (after its TLS
/// handshake when `tls` is given), at most [`MAX_HTTP_CONNECTIONS`] at once. Connections still
/// open at shutdown end with the process.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "http accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let served = match tls {
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    builder.serve_connection_with_upgrades(io, service).await
                }
                Some(acceptor) => {
                    let shake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let stream = match shake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "http TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "http TLS handshake timed out");
                            return;
                        }
                    };
                    let io = hyper_util::rt::TokioIo::new(stream);
                    builder.serve_connection_with_upgrades(io, service).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The HTTP port over TLS: a client trusting the cluster CA gets the page's answer over
    /// HTTPS with the node's certificate; a plaintext request on the same port gets nothing.
    #[tokio::test]
    async fn http_port_serves_https_with_the_node_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::make_ca(dir.path(), 30, false).unwrap();
        let node = crate::tls::make_node_cert(
            dir.path(),
            &crate::tls::NodeCert {
                id: 1,
                hosts: vec!["127.0.0.1".into()],
                days: 30,
            },
        )
        .unwrap();
        let tls = NodeTls::load(&node.cert, &node.key, &ca.cert).unwrap();
        let acceptor = tls_acceptor(&tls).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/rest/v1/version", axum::routing::get(|| async { "v1" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, Some(acceptor), async {
            let _ = stopped.await;
        }));

        // HTTPS, trusting the cluster CA
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&tls.ca_pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut s = connector.connect(name, tcp).await.expect("TLS handshake");
        s.write_all(b"GET /rest/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("v1"), "{text}");

        // plaintext on the TLS port: no HTTP answer
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /rest/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
        assert!(!String::from_utf8_lossy(&out).contains("200 OK"));

        let _ = stop.send(());
        server.await.unwrap();
    }
}
