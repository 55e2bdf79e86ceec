//! Starting and stopping a manager node: open the stores, start Raft, initialise a new
//! cluster (once, from the lowest id in `peers`), serve gRPC until shutdown.

use crate::admin_service::AdminService;
use crate::config::NodeConfig;
use crate::limits::{MAX_QUEUE_MESSAGE_BYTES, MAX_RAFT_MESSAGE_BYTES};
use crate::node::Node;
use crate::proposer::Proposer;
use crate::queue_service::QueueService;
use crate::raft_net::{Network, RaftHandle, RaftService};
use anyhow::Context;
use openraft::BasicNode;
use raftq_proto::pb;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;

/// Runs a node until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish, and shuts Raft down.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let raft_config = config
        .raft_config()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let listener = TcpListener::bind(&config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is another node using it?)",
            config.listen
        )
    })?;

    let token = raftq_client::auth::ensure_token_file(&config.token_path())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let auth = raftq_client::Auth::new(Some(&token)).map_err(anyhow::Error::msg)?;
    let check = raftq_client::auth::CheckToken::new(&token);
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
    let (ready_tx, ready_rx) = watch::channel(0u64);
    let (applied_tx, applied_rx) = watch::channel(0u64);
    sm.set_effects_hook(Arc::new(move |effects: &queue_fsm::Effects| {
        applied_tx.send_modify(|v| *v = v.wrapping_add(1));
        if !effects.woken_groups.is_empty() {
            ready_tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }));
    let fsm = sm.fsm();
    let fresh = {
        use openraft::storage::RaftLogStorage;
        let st = log.get_log_state().await?;
        st.last_log_id.is_none()
    };
    let network = Network { auth: auth.clone() };
    let raft: RaftHandle = openraft::Raft::new(config.id, Arc::new(raft_config), network, log, sm)
        .await
        .context("starting raft")?;

    if fresh && config.peers.keys().next() == Some(&config.id) {
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

    let proposer = Proposer::start(
        raft.clone(),
        config.clock_offset_ms,
        config.max_batch_commands,
        config.max_inflight_entries,
    );
    let node = Arc::new(Node::new(
        config.clone(),
        raft.clone(),
        fsm,
        proposer,
        ready_rx,
        applied_rx,
        auth,
    ));
    let ticker = tokio::spawn(crate::ticker::run(node.clone()));
    let scheduler = if config.scheduler.enabled {
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
            log_dir: dir.clone(),
            idle_exit_s: config.scheduler.idle_exit_s,
            ttr_s: config.scheduler.ttr_s,
        };
        Some(tokio::spawn(crate::scheduler::run(
            node.clone(),
            Arc::new(launcher),
            dir,
        )))
    } else {
        None
    };

    tracing::info!(id = config.id, listen = %config.listen, "node serving");
    let incoming = tokio_stream_from(listener);
    let result = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(
            pb::queue_server::QueueServer::new(QueueService { node: node.clone() })
                .max_decoding_message_size(MAX_QUEUE_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_QUEUE_MESSAGE_BYTES),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::admin_server::AdminServer::new(AdminService { node: node.clone() }),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            pb::raft_server::RaftServer::new(RaftService { node: node.clone() })
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
            check,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    tracing::info!(id = config.id, "stopping");
    ticker.abort();
    if let Some(s) = scheduler {
        s.abort();
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    result.context("gRPC server failed")
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
