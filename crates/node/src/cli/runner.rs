//! `raftq runner`: reserve and run jobs until idle (or a job count, or a stop signal:
//! SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2).

use super::ClusterArg;
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
    /// Stop a job that runs past its time plus max(10%, 1 minute), as "command used too much
    /// time" (its time is raised for the retry). Off by default: a job's time is an estimate
    /// that learning corrects, not a limit.
    #[arg(long)]
    kill_over_time: bool,
}

pub(super) async fn run(a: RunnerArgs) -> anyhow::Result<()> {
    // First: a stop signal that arrives while the runner sets up is not a crash.
    let stop_rx = raftq_runner::stop_on_signals()?;
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
        kill_over_time: a.kill_over_time,
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
    let r = raftq_runner::Runner::new(client, reporter, config);
    let s = r.run(stop_rx).await?;
    eprintln!(
        "runner done: {} job(s), {} succeeded, {} failed",
        s.ran, s.succeeded, s.failed
    );
    Ok(())
}
