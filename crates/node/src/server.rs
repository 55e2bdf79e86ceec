//! Starting and stopping a manager node: open the stores, start Raft, initialise a new
//! cluster (once, from the lowest id in `peers`), serve gRPC until shutdown.
//!
//! [`run`] is the steps in order: `check_config`, `bind`, `load_token`, `load_tls`, `open_raft`,
//! `initialise_if_first`, `start_shell` (node, ticker, scheduler), `serve`, and the shutdown.

use crate::admin_service::AdminService;
use crate::auth::{CheckPeer, CheckToken, Membership, MembershipOf};
use crate::clock::WallClock;
use crate::config::NodeConfig;
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
    let (auth, check) = load_token(&config)?;
    let tls = load_tls(&config)?;
    let link = PeerLink {
        auth,
        tls: tls.as_ref().map(NodeTls::peer_tls),
    };
    let opened = open_raft(&config, raft_config, link.clone()).await?;
    let raft = opened.raft.clone();
    let inbox = opened.inbox.clone();
    let backup = opened.backup.clone();
    if opened.fresh {
        initialise_if_first(&config, &raft).await;
    }
    let shell = start_shell(&config, opened, link)?;
    tracing::info!(id = config.id, listen = %config.listen, tls = tls.is_some(), "node serving");
    let result = serve(
        listener,
        &shell.node,
        &raft,
        (inbox, backup),
        check,
        tls.as_ref(),
        shutdown,
    )
    .await;
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

/// The cluster token (created on first start): what this node sends, and what it checks.
fn load_token(config: &NodeConfig) -> anyhow::Result<(raftq_client::Auth, CheckToken)> {
    let token = crate::auth::ensure_token_file(&config.token_path())?;
    let auth = raftq_client::Auth::new(Some(&token))?;
    let check = CheckToken::new(&token);
    Ok((auth, check))
}

/// The node's certificate, key and CA when TLS is configured (its certificate must name this
/// node's id); without them, a warning that every byte on the port travels in the clear.
fn load_tls(config: &NodeConfig) -> anyhow::Result<Option<NodeTls>> {
    let Some((cert, key, ca)) = config.tls_files() else {
        tracing::warn!(
            id = config.id,
            listen = %config.listen,
            "TLS is off: clients', runners' and peers' traffic (and the token) travels \
             unencrypted, and peers are not authenticated; for TLS set tls_cert_file, \
             tls_key_file and tls_ca_file (made by `raftq cert`)"
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
    if config.scheduler.enabled {
        tasks.push(start_scheduler(config, node.clone())?);
    }
    Ok(Shell { node, tasks })
}

/// The scheduler with the local launcher (runners of this host's `raftq` executable).
fn start_scheduler(config: &NodeConfig, node: Arc<Node>) -> anyhow::Result<JoinHandle<()>> {
    let dir = config
        .scheduler
        .runner_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("runners"));
    let cluster = if config.peers.is_empty() {
        config.listen.clone()
    } else {
        config.peers.values().cloned().collect::<Vec<_>>().join(",")
    };
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
    )))
}

/// Serves the Queue, Admin and Raft services (each checking the token) until `shutdown`, over
/// TLS when `tls` is given.
async fn serve(
    listener: TcpListener,
    node: &Arc<Node>,
    raft: &RaftHandle,
    (inbox, backup): (raft_store::SnapshotInbox, raft_store::BackupSource),
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
            pb::queue_server::QueueServer::new(QueueService { node: node.clone() })
                .max_decoding_message_size(MAX_QUEUE_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_QUEUE_MESSAGE_BYTES),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::admin_server::AdminServer::new(AdminService {
                node: node.clone(),
                raft: raft.clone(),
                backup,
                backups: Arc::new(tokio::sync::Semaphore::new(1)),
            }),
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
