//! `raftq runner`: reserve and run jobs until idle (or a job count, or SIGINT/SIGTERM).

use super::{shutdown_signal, ClusterArg};
use clap::Args;
use raftq_client::{Client, ClientConfig};
use raftq_node::jobspec::parse_duration_s;
use std::time::Duration;

#[derive(Args)]
pub(super) struct RunnerArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Only jobs of this scheduler group.
    #[arg(long)]
    group: Option<String>,
    /// Exit after this many jobs.
    #[arg(long)]
    max_jobs: Option<u64>,
    /// Exit after waiting this long for a job (e.g. 30s, 5m).
    #[arg(long, default_value = "30s")]
    idle_exit: String,
    /// Shell that runs the commands (it must understand `set -o pipefail`).
    #[arg(long, default_value = "bash")]
    shell: String,
    /// Time-to-release of each reservation (touched every quarter of it).
    #[arg(long, default_value = "60s")]
    ttr: String,
}

pub(super) async fn run(a: RunnerArgs) -> anyhow::Result<()> {
    let secs = |field: &str, v: &str| -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(
            parse_duration_s(v).map_err(|e| anyhow::anyhow!("--{field}: {e}"))? as u64,
        ))
    };
    let config = raftq_runner::RunnerConfig {
        group: a.group.clone(),
        max_jobs: a.max_jobs,
        idle_exit: secs("idle-exit", &a.idle_exit)?,
        shell: a.shell.clone(),
        ttr: secs("ttr", &a.ttr)?.max(Duration::from_secs(1)),
        ..raftq_runner::RunnerConfig::default()
    };
    let base = a.cluster.config()?;
    let client = Client::from_list(&a.cluster.cluster, base.clone())?;
    // Touches and reports are retried for hours: a result is never lost to a manager outage.
    let reporter = Client::from_list(
        &a.cluster.cluster,
        ClientConfig {
            deadline: Duration::from_secs(6 * 3600),
            ..base
        },
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let r = raftq_runner::Runner::new(client, reporter, config);
    let s = r.run(stop_rx).await?;
    eprintln!(
        "runner done: {} job(s), {} succeeded, {} failed",
        s.ran, s.succeeded, s.failed
    );
    Ok(())
}
