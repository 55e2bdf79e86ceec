//! # The `raftq` command line
//!
//! The binary's modules, not the server library's: `raftq_node` (the library) knows nothing of
//! clap. Each subcommand has a file with its arguments and its `run`, as mini-redis keeps one
//! command per file in `src/cmd/`; this module holds the clap top level, the options several
//! commands share (the cluster to talk to, the rep-group selection) and the runtime set-up.
//!
//! ## Layout
//! - [`node`]: `raftq node`, one manager node.
//! - [`up`]: `raftq up`, a local cluster on 127.0.0.1 (pid files, `raftq.env`).
//! - [`down`]: `raftq down`, stopping what `raftq up --detach` left running.
//! - [`add`]: `raftq add`, jobs from lines of text or JSON.
//! - [`status`]: `raftq status`, job counts per rep group and state, and job details.
//! - [`select`]: `raftq kill`, `retry` and `remove` of jobs chosen by key or rep group.
//! - [`cluster`]: `raftq cluster status|snapshot|add-node|remove-node`.
//! - [`cert`]: `raftq cert ca|node`, the cluster CA and node certificates.
//! - [`token`]: `raftq token rotate|retire`, the cluster token rotated without downtime.
//! - [`bench`]: `raftq bench`, throughput, latency and failover.
//! - [`runner`]: `raftq runner`, reserve and run jobs until idle.

mod add;
mod backup;
mod bench;
mod cert;
mod cluster;
mod down;
mod node;
mod runner;
mod select;
mod status;
mod token;
mod up;

use clap::{Args, Parser, Subcommand};
use raftq_client::{Client, ClientConfig};
use raftq_proto::pb;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "raftq",
    version,
    about = "A highly available job queue for batch compute"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one manager node.
    Node(node::NodeArgs),
    /// Start a local cluster of manager nodes on 127.0.0.1.
    Up(up::UpArgs),
    /// Stop a cluster started with `raftq up --detach`.
    Down(down::DownArgs),
    /// Add jobs: one per line, a plain command or a JSON object with wr's field names.
    Add(add::AddArgs),
    /// Show job counts per rep group and state.
    Status(status::StatusArgs),
    /// Kill running jobs (they are buried once their runner notices).
    Kill(select::SelectArgs),
    /// Put buried jobs back in the queue.
    Retry(select::SelectArgs),
    /// Remove jobs that are not running and not complete.
    Remove(select::SelectArgs),
    /// Cluster administration.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Make the cluster CA and node certificates (TLS).
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Rotate the cluster token without downtime (the token file's tokens).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Measure throughput, latency and failover (starts its own cluster without --cluster).
    Bench(bench::BenchArgs),
    /// Reserve and run jobs until idle.
    Runner(runner::RunnerArgs),
    /// Write a backup of the queue (one applied index, with a checksum) from any node.
    Backup(backup::BackupArgs),
    /// Check a backup and seed the data directory of a new cluster's first node with it.
    Restore(backup::RestoreArgs),
}

/// The cluster a command talks to.
#[derive(Args, Clone)]
struct ClusterArg {
    /// Manager addresses, HOST:PORT,HOST:PORT,... (TLS; http://HOST:PORT,... for nodes run
    /// with --plaintext) (or RAFTQ_CLUSTER; `raftq up` writes it to DIR/raftq.env)
    #[arg(long, env = "RAFTQ_CLUSTER")]
    cluster: String,
    /// The cluster's token file (or RAFTQ_TOKEN_FILE; `raftq up` writes it to DIR/raftq.env).
    #[arg(long, env = "RAFTQ_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The cluster CA (ca.pem of `raftq cert ca`, or RAFTQ_CA_FILE; `raftq up` writes it to
    /// DIR/raftq.env): trust only managers whose certificate it signed. Without it: the
    /// system's trusted roots. Clients talk TLS unless the addresses are http://HOST:PORT.
    #[arg(long, env = "RAFTQ_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl ClusterArg {
    /// The client settings these name: token and CA.
    fn config(&self) -> anyhow::Result<ClientConfig> {
        client_config(self.token_file.as_deref(), self.ca_file.as_deref())
    }

    /// A client of the cluster's nodes, with its token (and CA).
    fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::from_list(&self.cluster, self.config()?)?)
    }
}

/// How `-i` matches rep group names.
#[derive(Clone, Copy, clap::ValueEnum)]
enum MatchArg {
    Exact,
    Prefix,
    Substring,
}

impl From<MatchArg> for pb::search_request::Match {
    fn from(m: MatchArg) -> Self {
        match m {
            MatchArg::Exact => pb::search_request::Match::Exact,
            MatchArg::Prefix => pb::search_request::Match::Prefix,
            MatchArg::Substring => pb::search_request::Match::Substring,
        }
    }
}

/// Selecting jobs by rep group (status, kill, retry, remove).
#[derive(Args)]
struct RepGroupArg {
    /// Only jobs of this rep group (see --match).
    #[arg(short = 'i', long)]
    rep_grp: Option<String>,
    /// How -i matches.
    #[arg(long, value_enum, default_value_t = MatchArg::Exact)]
    r#match: MatchArg,
}

/// Parses the command line, sets up logging and the runtime, and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTQ_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(match cli.cmd {
            Cmd::Node(_) => "info,openraft=warn",
            _ => "warn",
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftq: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Node(a) => node::run(a).await,
        Cmd::Up(a) => up::run(a).await,
        Cmd::Down(a) => down::run(a).await,
        Cmd::Add(a) => add::run(a).await,
        Cmd::Status(a) => status::run(a).await,
        Cmd::Kill(a) => select::run(a, select::Action::Kill).await,
        Cmd::Retry(a) => select::run(a, select::Action::Retry).await,
        Cmd::Remove(a) => select::run(a, select::Action::Remove).await,
        Cmd::Cluster(c) => cluster::run(c).await,
        Cmd::Cert(c) => cert::run(c),
        Cmd::Token(c) => token::run(c),
        // Interrupted, the run is dropped, and with it the local cluster it started (its
        // nodes are killed): a killed bench used to leave three nodes running.
        Cmd::Bench(a) => tokio::select! {
            r = bench::run(a) => r,
            _ = shutdown_signal() => anyhow::bail!("interrupted; the local cluster was stopped"),
        },
        Cmd::Runner(a) => runner::run(a).await,
        Cmd::Backup(a) => backup::run_backup(a).await,
        Cmd::Restore(a) => backup::run_restore(a).await,
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Client settings: the token from `--token-file`/`RAFTQ_TOKEN_FILE`, else `RAFTQ_TOKEN`; the
/// CA from `--ca-file`/`RAFTQ_CA_FILE`, else none (the system's roots).
fn client_config(
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> anyhow::Result<ClientConfig> {
    let token = match token_file {
        Some(p) => Some(raftq_client::auth::read_token_file(p)?),
        None => std::env::var("RAFTQ_TOKEN").ok(),
    };
    let ca_pem = match ca_file {
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", p.display()))?)
        }
        None => None,
    };
    Ok(ClientConfig {
        token,
        token_file: token_file.map(Path::to_path_buf),
        ca_pem,
        ..ClientConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn power_loss_sim_is_a_hidden_node_flag() {
        let parsed = |args: &[&str]| match Cli::try_parse_from(args).unwrap().cmd {
            Cmd::Node(a) => a.power_loss_sim,
            _ => unreachable!("not the node command"),
        };
        assert!(parsed(&["raftq", "node", "--power-loss-sim"]));
        assert!(!parsed(&["raftq", "node"]));
        let help = Cli::command()
            .find_subcommand_mut("node")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("power-loss"), "{help}");
    }

    #[test]
    fn the_ca_file_is_read_into_the_client_config() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let c = client_config(None, Some(&ca)).unwrap();
        assert_eq!(
            c.ca_pem.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        assert!(client_config(None, None).unwrap().ca_pem.is_none());
        let e = client_config(None, Some(&dir.path().join("none.pem"))).unwrap_err();
        assert!(e.to_string().starts_with("--ca-file"), "{e}");
        let parsed =
            Cli::try_parse_from(["raftq", "status", "--cluster", "a:1", "--ca-file", "x.pem"]);
        assert!(parsed.is_ok());
    }
}
