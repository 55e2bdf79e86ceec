//! Starting and stopping a manager node: open the stores, start Raft, initialise a new
//! cluster (once, from the lowest id in `peers`), serve gRPC (and HTTP) until shutdown.
//!
//! [`run`] is the steps in order: `check_config`, `bind`, `load_token`, `load_tls`, `open_raft`,
//! `initialise_if_first`, `start_shell` (node, ticker, scheduler), `start_http` (the web UI,
//! REST and metrics, when `http` is set), `serve`, and the shutdown.

use crate::admin_service::AdminService;
use crate::auth::{CheckPeer, CheckToken, Membership, MembershipOf};
use crate::clock::WallClock;
use crate::config::NodeConfig;
use crate::http::metrics::Metrics;
use crate::http::HttpState;
use crate::limits::{MAX_QUEUE_MESSAGE_BYTES, MAX_RAFT_MESSAGE_BYTES};
use crate::node::{AppliedWatches, Node, RaftConsensus, Replica};
use crate::queue_service::QueueService;
use crate::raft_net::{Network, PeerLink, RaftHandle, RaftService};
use crate::tls::NodeTls;
use anyhow::Context;
use openraft::BasicNode;
use raft_store::SharedFsm;
use raftq_proto::pb;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

/// Runs a node until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish, and shuts Raft down.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let raft_config = check_config(&config)?;
    let listener = bind(&config).await?;
    let http_listener = bind_http(&config).await?;
    let (auth, check) = load_token(&config)?;
    let tls = load_tls(&config)?;
    let link = PeerLink {
        auth: auth.clone(),
        tls: tls.as_ref().map(NodeTls::peer_tls),
    };
    let opened = open_raft(&config, raft_config, link.clone()).await?;
    let raft = opened.raft.clone();
    let inbox = opened.inbox.clone();
    let backup = opened.backup.clone();
    if opened.fresh {
        initialise_if_first(&config, &raft).await;
    }
    let mut shell = start_shell(&config, opened, link.clone())?;
    shell.tasks.push(tokio::spawn(follow_token_file(
        config.token_path(),
        auth.clone(),
        check.clone(),
    )));
    let metrics = Arc::new(Metrics::new());
    shell.node.observe_entries(metrics.entry_observer());
    let admin = AdminService {
        node: shell.node.clone(),
        raft: raft.clone(),
        backup,
        backups: Arc::new(tokio::sync::Semaphore::new(1)),
    };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = match http_listener {
        Some(l) => Some(start_http(
            &config,
            l,
            &shell,
            &raft,
            &admin,
            &check,
            &metrics,
            &link,
            tls.as_ref(),
            http_stopped,
        )?),
        None => None,
    };
    tracing::info!(id = config.id, listen = %config.listen, tls = tls.is_some(), "node serving");
    let result = serve(
        listener,
        &shell.node,
        &raft,
        Parts {
            inbox,
            admin,
            metrics,
        },
        check,
        tls.as_ref(),
        shutdown,
    )
    .await;
    let _ = stop_http.send(());
    if let Some(t) = http_task {
        t.abort();
    }
    tracing::info!(id = config.id, "stopping");
    for task in shell.tasks {
        task.abort();
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    result.context("gRPC server failed")
}

/// The settings checked, and the openraft configuration they make.
fn check_config(config: &NodeConfig) -> anyhow::Result<openraft::Config> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    config
        .raft_config()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

async fn bind(config: &NodeConfig) -> anyhow::Result<TcpListener> {
    TcpListener::bind(&config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is another node using it?)",
            config.listen
        )
    })
}

/// The HTTP port's listener, when `http` is set.
async fn bind_http(config: &NodeConfig) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = &config.http else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .with_context(|| format!("http: cannot listen on {addr} (is another node using it?)"))
}

/// Serves the HTTP port (web UI, REST, events, metrics) until `stopped` resolves.
#[allow(clippy::too_many_arguments)]
fn start_http(
    config: &NodeConfig,
    listener: TcpListener,
    shell: &Shell,
    raft: &RaftHandle,
    admin: &AdminService,
    check: &CheckToken,
    metrics: &Arc<Metrics>,
    link: &PeerLink,
    tls: Option<&NodeTls>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<JoinHandle<()>> {
    let acceptor = tls.map(crate::http::tls_acceptor).transpose()?;
    let node = &shell.node;
    let state = Arc::new(HttpState {
        runners: shell.runners.clone(),
        node: node.clone(),
        raft: raft.clone(),
        queue: QueueService {
            node: node.clone(),
            metrics: metrics.clone(),
        },
        admin: admin.clone(),
        metrics: metrics.clone(),
        check: check.clone(),
        leader_link: crate::http::LeaderLink::new(link.clone()),
        tls: acceptor.is_some(),
        data_dir: config.data_dir.clone(),
    });
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(id = config.id, url = %format!("{scheme}://{addr}"), "web UI, REST and /metrics serving");
    let app = crate::http::router(state);
    Ok(tokio::spawn(async move {
        crate::http::serve(listener, app, acceptor, async {
            let _ = stopped.await;
        })
        .await
    }))
}

/// The cluster token (created on first start): what this node sends (the file's first
/// token), and what it checks (every token of the file).
fn load_token(config: &NodeConfig) -> anyhow::Result<(raftq_client::Auth, CheckToken)> {
    let path = config.token_path();
    crate::auth::ensure_token_file(&path)?;
    let tokens = crate::auth::read_tokens(&path)?;
    let auth = raftq_client::Auth::new(Some(sent_token(&path, &tokens)?))?;
    let check = CheckToken::new(&tokens);
    Ok((auth, check))
}

/// The token a node sends its peers: the file's first full token (not a runner token).
fn sent_token<'a>(
    path: &std::path::Path,
    tokens: &'a [crate::auth::Token],
) -> anyhow::Result<&'a str> {
    tokens
        .iter()
        .find(|t| t.role == crate::auth::Role::Full)
        .map(|t| t.secret.as_str())
        .with_context(|| {
            format!(
                "token file {}: only runner tokens; a node needs the cluster token (a line \
                 without `runner `)",
                path.display()
            )
        })
}

/// How often a running node re-reads its token file.
const TOKEN_FILE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Re-reads the token file every [`TOKEN_FILE_POLL`] and takes up what changed (a rotation,
/// a retirement: `raftq token`); a file that cannot be read is reported and the tokens in
/// force are kept.
async fn follow_token_file(path: std::path::PathBuf, auth: raftq_client::Auth, check: CheckToken) {
    let mut failing = false;
    loop {
        tokio::time::sleep(TOKEN_FILE_POLL).await;
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::auth::read_tokens(&path)).await
        };
        match read {
            Ok(Ok(tokens)) => {
                let Ok(first) = sent_token(&path, &tokens) else {
                    if !failing {
                        tracing::warn!(file = %path.display(), "the token file holds only runner tokens; the tokens in force are kept");
                    }
                    failing = true;
                    continue;
                };
                let sent = auth.set(first).unwrap_or(false);
                if check.set(&tokens) || sent {
                    tracing::info!(
                        file = %path.display(),
                        accepted = tokens.len(),
                        "token file changed: now accepting its {} token(s), sending its first full one",
                        tokens.len()
                    );
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                tracing::warn!(error = %e, "re-reading the token file failed; the tokens in force are kept");
                failing = true;
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

/// The node's certificate, key and CA (its certificate must name this node's id); with
/// plaintext asked for (validated: no files then), a warning that every byte on the port
/// travels in the clear.
fn load_tls(config: &NodeConfig) -> anyhow::Result<Option<NodeTls>> {
    let Some((cert, key, ca)) = config.tls_files() else {
        tracing::warn!(
            id = config.id,
            listen = %config.listen,
            "PLAINTEXT (--plaintext): clients', runners' and peers' traffic (and the token) \
             travels unencrypted, and peers are not authenticated; for anything but tests \
             and local experiments set tls_cert_file, tls_key_file and tls_ca_file (made by \
             `raftq cert`)"
        );
        return Ok(None);
    };
    let tls = NodeTls::load(cert, key, ca)?;
    let named = tls
        .own_id()
        .map_err(|e| anyhow::anyhow!("tls_cert_file {}: {e}", cert.display()))?;
    if named != config.id {
        anyhow::bail!(
            "tls_cert_file {}: the certificate is node {named}'s, this node is {}",
            cert.display(),
            config.id
        );
    }
    Ok(Some(tls))
}

/// Raft started over the stores of the data directory.
struct Opened {
    raft: RaftHandle,
    fsm: SharedFsm,
    watches: AppliedWatches,
    /// Where the Raft service stages the snapshots it receives.
    inbox: raft_store::SnapshotInbox,
    /// Where the Admin service takes backups from.
    backup: raft_store::BackupSource,
    /// The log was empty: this node never was part of a cluster.
    fresh: bool,
}

/// Opens the stores, hooks apply's effects to the watches the shell waits on, starts Raft.
async fn open_raft(
    config: &NodeConfig,
    raft_config: openraft::Config,
    link: PeerLink,
) -> anyhow::Result<Opened> {
    if config.power_loss_sim {
        tracing::warn!(
            id = config.id,
            "power-loss simulation mode (test only): writes not yet synced to disk are lost \
             if this node is killed"
        );
    }
    let (mut log, mut sm) =
        raft_store::open(&config.data_dir, config.fsm.clone(), config.rocks_options())
            .with_context(|| {
                format!(
                    "cannot open the data directory {}",
                    config.data_dir.display()
                )
            })?;
    seed_if_restored(config, &mut log, &mut sm).await?;
    let (ready_tx, ready) = watch::channel(0u64);
    let (applied_tx, applied) = watch::channel(0u64);
    sm.set_effects_hook(Arc::new(move |effects: &queue_fsm::Effects| {
        applied_tx.send_modify(|v| *v = v.wrapping_add(1));
        if !effects.woken_groups.is_empty() {
            ready_tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }));
    let fsm = sm.fsm();
    let inbox = sm.snapshot_inbox();
    let backup = sm.backup_source();
    let fresh = {
        use openraft::storage::RaftLogStorage;
        let st = log.get_log_state().await?;
        st.last_log_id.is_none()
    };
    let network = Network { link };
    let raft: RaftHandle = openraft::Raft::new(config.id, Arc::new(raft_config), network, log, sm)
        .await
        .context("starting raft")?;
    Ok(Opened {
        raft,
        fsm,
        watches: AppliedWatches { ready, applied },
        inbox,
        backup,
        fresh,
    })
}

/// A data directory made by `raftq restore` holds a checked backup: at the node's first start
/// its stores are seeded from it, with the members of `--peers` as the new cluster's (see
/// `raft_store::backup`), and the backup file is removed. A crash after the seed and before
/// the removal leaves used stores and the file: the file is then only removed.
async fn seed_if_restored(
    config: &NodeConfig,
    log: &mut raft_store::LogStore,
    sm: &mut raft_store::StateMachine,
) -> anyhow::Result<()> {
    let seed = config.data_dir.join(raft_store::backup::SEED_FILE);
    if !seed.exists() {
        return Ok(());
    }
    if raft_store::backup::is_pristine(log, sm).await? {
        if !config.peers.contains_key(&config.id) {
            anyhow::bail!(
                "{} was restored from a backup: start it with --peers naming the new cluster's \
                 nodes, this one (id {}) included",
                config.data_dir.display(),
                config.id
            );
        }
        let members: BTreeMap<u64, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        let (summary, digest) =
            raft_store::backup::seed_from_backup(log, sm, &seed, config.id, members)
                .await
                .with_context(|| format!("cannot seed from the backup {}", seed.display()))?;
        tracing::info!(
            entries = summary.entries,
            old_applied_index = summary.meta.last_log_id.map_or(0, |l| l.index),
            queue_digest = %digest,
            "seeded from the restored backup"
        );
    }
    std::fs::remove_file(&seed).with_context(|| format!("cannot remove {}", seed.display()))?;
    if let Some(dir) = seed.parent() {
        raft_store::durable::sync_dir(dir)?;
    }
    Ok(())
}

/// A new cluster is initialised once, by the lowest id of `peers`.
async fn initialise_if_first(config: &NodeConfig, raft: &RaftHandle) {
    if config.peers.keys().next() != Some(&config.id) {
        return;
    }
    let members: BTreeMap<u64, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(nodes = config.peers.len(), "initialised a new cluster"),
        Err(e) => tracing::info!(error = %e, "cluster already initialised"),
    }
}

/// The node shell and its leader-only tasks.
struct Shell {
    node: Arc<Node>,
    tasks: Vec<JoinHandle<()>>,
    /// The scheduler's runner counts (empty when it is off), for `/metrics`.
    runners: Arc<crate::scheduler::RunnerStats>,
}

fn start_shell(config: &NodeConfig, opened: Opened, link: PeerLink) -> anyhow::Result<Shell> {
    let consensus = Arc::new(RaftConsensus::new(opened.raft, link));
    let node = Arc::new(Node::new(
        consensus,
        Replica::new(opened.fsm),
        Arc::new(WallClock {
            offset_ms: config.clock_offset_ms,
        }),
        opened.watches,
        config.max_batch_commands,
        config.max_inflight_entries,
    ));
    let mut tasks = vec![tokio::spawn(crate::ticker::run(node.clone()))];
    let runners = Arc::new(crate::scheduler::RunnerStats::default());
    if config.scheduler.enabled {
        tasks.push(start_scheduler(config, node.clone(), runners.clone())?);
    }
    Ok(Shell {
        node,
        tasks,
        runners,
    })
}

/// The scheduler with the local launcher (runners of this host's `raftq` executable).
fn start_scheduler(
    config: &NodeConfig,
    node: Arc<Node>,
    stats: Arc<crate::scheduler::RunnerStats>,
) -> anyhow::Result<JoinHandle<()>> {
    let dir = config
        .scheduler
        .runner_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("runners"));
    let addrs: Vec<&String> = if config.peers.is_empty() {
        vec![&config.listen]
    } else {
        config.peers.values().collect()
    };
    // Runners of a plaintext node are told so by the scheme (`raftq runner` talks TLS else).
    let scheme = if config.plaintext { "http://" } else { "" };
    let cluster = addrs
        .iter()
        .map(|a| format!("{scheme}{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let launcher = crate::scheduler::LocalLauncher {
        exe: std::env::current_exe().context("finding the raftq executable")?,
        cluster,
        token_file: config.token_path(),
        ca_file: config.tls_ca_file.clone(),
        log_dir: dir.clone(),
        idle_exit_s: config.scheduler.idle_exit_s,
        ttr_s: config.scheduler.ttr_s,
        kill_over_time: config.scheduler.kill_over_time,
    };
    Ok(tokio::spawn(crate::scheduler::run(
        node,
        config.scheduler.clone(),
        Arc::new(launcher),
        dir,
        stats,
    )))
}

/// Serves the Queue, Admin and Raft services (each checking the token) until `shutdown`, over
/// TLS when `tls` is given.
/// What `serve` puts behind the gRPC port besides the node: the snapshot inbox (peer
/// service), the Admin service, and the metrics the Queue service records.
struct Parts {
    inbox: raft_store::SnapshotInbox,
    admin: AdminService,
    metrics: Arc<Metrics>,
}

async fn serve(
    listener: TcpListener,
    node: &Arc<Node>,
    raft: &RaftHandle,
    Parts {
        inbox,
        admin,
        metrics,
    }: Parts,
    check: CheckToken,
    tls: Option<&NodeTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream_from(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls.server_config())?;
    }
    let check_peer = CheckPeer::new(check.clone(), tls.map(|_| membership_of(raft)));
    server
        .add_service(InterceptedService::new(
            pb::queue_server::QueueServer::new(QueueService {
                node: node.clone(),
                metrics,
            })
            .max_decoding_message_size(MAX_QUEUE_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_QUEUE_MESSAGE_BYTES),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::admin_server::AdminServer::new(admin),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::raft_server::RaftServer::new(RaftService {
                node: node.clone(),
                raft: raft.clone(),
                inbox,
            })
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
            check_peer,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Whether a node id is in this node's current membership (voters, learners, both halves of
/// a joint configuration), from Raft's metrics.
fn membership_of(raft: &RaftHandle) -> MembershipOf {
    use openraft::async_runtime::WatchReceiver;
    let metrics = raft.metrics();
    Arc::new(move |id| {
        let m = metrics.borrow_watched();
        let members = m.membership_config.membership();
        if members.nodes().next().is_none() {
            Membership::None
        } else if members.get_node(&id).is_some() {
            Membership::Member
        } else {
            Membership::NotMember
        }
    })
}

/// Accepted connections of `listener` as the stream tonic serves.
fn tokio_stream_from(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}
