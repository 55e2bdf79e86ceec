//! `raftq node`: run one manager node until SIGINT or SIGTERM.

use super::shutdown_signal;
use anyhow::Context;
use clap::Args;
use raftq_node::config::NodeConfig;
use std::path::PathBuf;

#[derive(Args)]
pub(super) struct NodeArgs {
    /// TOML file with node settings (flags and RAFTQ_* variables override it).
    #[arg(long, env = "RAFTQ_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id.
    #[arg(long, env = "RAFTQ_ID")]
    id: Option<u64>,
    /// HOST:PORT to serve gRPC on.
    #[arg(long, env = "RAFTQ_LISTEN")]
    listen: Option<String>,
    /// HOST:PORT to serve the web UI, the REST API and /metrics on (HTTPS when the node has
    /// TLS). RAFTQ_HTTP_LISTEN, not RAFTQ_HTTP: that one is the clients' list of base URLs
    /// (raftq.env).
    #[arg(long, env = "RAFTQ_HTTP_LISTEN")]
    http: Option<String>,
    /// Data directory.
    #[arg(long, env = "RAFTQ_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The cluster token file, the same on every node (default DATA_DIR/token, created if
    /// missing).
    #[arg(long, env = "RAFTQ_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// This node's TLS certificate (PEM, from `raftq cert node`); with --tls-key-file and
    /// --tls-ca-file the gRPC port speaks TLS. They are required unless --plaintext.
    #[arg(long, env = "RAFTQ_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file.
    #[arg(long, env = "RAFTQ_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// The cluster CA (ca.pem of `raftq cert ca`): peers must present a certificate it signed.
    #[arg(long, env = "RAFTQ_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Serve without TLS, for tests and local experiments only: traffic and the token travel
    /// in the clear and peers are not authenticated (warned at start).
    #[arg(long, env = "RAFTQ_PLAINTEXT")]
    plaintext: bool,
    /// The nodes of a new cluster: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT (same on every node;
    /// ignored after the first start).
    #[arg(long, env = "RAFTQ_PEERS")]
    peers: Option<String>,
    /// Test only: shift this node's clock by this many milliseconds.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    clock_offset_ms: Option<i64>,
    /// Test only: lose every un-synced write on SIGKILL, as on power loss (see
    /// `NodeConfig::power_loss_sim`).
    #[arg(long, hide = true)]
    pub(super) power_loss_sim: bool,
}

pub(super) async fn run(a: NodeArgs) -> anyhow::Result<()> {
    let config = config(a)?;
    raftq_node::server::run(config, shutdown_signal()).await
}

/// The node's settings: the TOML file, then RAFTQ_* variables, then flags, each overriding
/// the one before.
fn config(a: NodeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &a.config {
        Some(p) => NodeConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .map_err(anyhow::Error::msg)?,
        None => NodeConfig::default(),
    };
    let mut vars = Vec::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => vars.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with("RAFTQ_") => {
                anyhow::bail!("{k}: the value is not UTF-8")
            }
            _ => {} // not ours
        }
    }
    config.apply_env(vars).map_err(anyhow::Error::msg)?;
    if let Some(v) = a.id {
        config.id = v;
    }
    if let Some(v) = a.listen {
        config.listen = v;
    }
    if let Some(v) = a.http {
        config.http = Some(v);
    }
    if let Some(v) = a.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = a.token_file {
        config.token_file = Some(v);
    }
    if let Some(v) = a.tls_cert_file {
        config.tls_cert_file = Some(v);
    }
    if let Some(v) = a.tls_key_file {
        config.tls_key_file = Some(v);
    }
    if let Some(v) = a.tls_ca_file {
        config.tls_ca_file = Some(v);
    }
    if a.plaintext {
        config.plaintext = true;
    }
    if let Some(v) = a.peers {
        config.peers = NodeConfig::parse_peers(&v).map_err(anyhow::Error::msg)?;
    }
    if let Some(v) = a.clock_offset_ms {
        config.clock_offset_ms = v;
    }
    if a.power_loss_sim {
        config.power_loss_sim = true;
    }
    Ok(config)
}
