//! `raftq add`: jobs from lines of text (a command, or a JSON object with wr's field names),
//! all parsed before any is sent, then added in batches.

use super::ClusterArg;
use anyhow::{bail, Context};
use clap::Args;
use raftq_client::Client;
use raftq_node::jobspec::{parse_duration_s, parse_line, parse_memory_mb, JobDefaults};
use raftq_proto::pb;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args)]
pub(super) struct AddArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    /// Read jobs from FILE ('-' or absent: standard input).
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Default working directory.
    #[arg(long, default_value = "/tmp")]
    cwd: String,
    /// Run in cwd itself, and make cwd part of what makes a job unique.
    #[arg(long)]
    cwd_matters: bool,
    /// Set HOME to the job's working directory.
    #[arg(long)]
    change_home: bool,
    /// Default rep group (for reporting).
    #[arg(short = 'i', long, default_value = "manually_added")]
    rep_grp: String,
    /// Default req group (jobs with similar resource needs).
    #[arg(long, default_value = "")]
    req_grp: String,
    /// Default memory, e.g. 500M, 2G.
    #[arg(long, default_value = "1G")]
    memory: String,
    /// Default time, e.g. 30m, 2h.
    #[arg(long, default_value = "1h")]
    time: String,
    /// Default cores.
    #[arg(long, default_value_t = 1.0)]
    cpus: f64,
    /// Default disk, GB.
    #[arg(long, default_value_t = 0)]
    disk: u32,
    /// 0: learned resource values win; 1: learned if higher; 2: yours.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2))]
    r#override: u32,
    /// Default priority, 0-255 (higher first).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=255))]
    priority: u32,
    /// Default retries after a failed run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=255))]
    retries: u32,
    /// Default dep groups (comma separated).
    #[arg(long, value_delimiter = ',')]
    dep_grps: Vec<String>,
    /// Default dependencies on dep groups (comma separated).
    #[arg(long, value_delimiter = ',')]
    deps: Vec<String>,
    /// Default limit groups (comma separated, name or name:n).
    #[arg(long, value_delimiter = ',')]
    limit_grps: Vec<String>,
    /// Count completed jobs with the same command as existing instead of running them again.
    #[arg(long)]
    ignore_complete: bool,
}

/// Jobs per Add request.
const ADD_BATCH: usize = 10_000;

pub(super) async fn run(a: AddArgs) -> anyhow::Result<()> {
    let defaults = defaults(&a)?;
    // Parse everything first: a bad line adds nothing.
    let jobs = read_jobs(a.file.as_deref(), &defaults)?;
    if jobs.is_empty() {
        bail!("no jobs given (one command or JSON object per line on stdin or -f FILE)");
    }
    let client = a.cluster.client()?;
    let (added, existed) = send(&client, &jobs, a.ignore_complete).await?;
    println!("added {added} job(s); {existed} already existed");
    Ok(())
}

/// The values a line does not give, from the flags.
fn defaults(a: &AddArgs) -> anyhow::Result<JobDefaults> {
    Ok(JobDefaults {
        cwd: a.cwd.clone(),
        cwd_matters: a.cwd_matters,
        change_home: a.change_home,
        rep_grp: a.rep_grp.clone(),
        req_grp: a.req_grp.clone(),
        memory_mb: parse_memory_mb(&a.memory).map_err(|e| anyhow::anyhow!("--memory: {e}"))?,
        time_s: parse_duration_s(&a.time).map_err(|e| anyhow::anyhow!("--time: {e}"))?,
        cores_milli: if a.cpus.is_finite() && (0.0..=4096.0).contains(&a.cpus) {
            (a.cpus * 1000.0).round() as u32
        } else {
            bail!("--cpus: {} is not in 0..=4096", a.cpus)
        },
        disk_gb: a.disk,
        override_mode: a.r#override,
        priority: a.priority,
        retries: a.retries,
        dep_grps: a.dep_grps.clone(),
        deps: a.deps.clone(),
        limit_grps: a.limit_grps.clone(),
    })
}

/// Every job of `file` (standard input for `-` or none); the first bad line is an error.
fn read_jobs(file: Option<&str>, defaults: &JobDefaults) -> anyhow::Result<Vec<pb::JobSpec>> {
    let reader: Box<dyn BufRead> = match file {
        None | Some("-") => Box::new(std::io::BufReader::new(std::io::stdin())),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {p}"))?,
        )),
    };
    let mut jobs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        if let Some(j) = parse_line(i + 1, &line, defaults)? {
            jobs.push(j);
        }
    }
    Ok(jobs)
}

/// Adds `jobs` in batches of [`ADD_BATCH`] with this process's environment, showing progress
/// on a terminal; returns (added, already existed).
async fn send(
    client: &Client,
    jobs: &[pb::JobSpec],
    ignore_complete: bool,
) -> anyhow::Result<(u64, u64)> {
    let (env, skipped) = raftq_client::process_env();
    if let Some(name) = skipped.first() {
        anyhow::bail!(
            "environment variable {name:?} is not UTF-8, and jobs get this environment as \
             text: unset it (env -u {name} raftq add ...) or fix its value"
        );
    }
    let total = jobs.len();
    let show = std::io::stderr().is_terminal() && total > ADD_BATCH;
    let (mut added, mut existed) = (0u64, 0u64);
    for (n, chunk) in jobs.chunks(ADD_BATCH).enumerate() {
        let r = client
            .add(pb::AddRequest {
                request_id: Vec::new(),
                jobs: chunk.to_vec(),
                env: env.clone(),
                ignore_complete,
                return_keys: false,
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e}{}",
                    if n > 0 {
                        format!(" (the first {} jobs were added)", n * ADD_BATCH)
                    } else {
                        String::new()
                    }
                )
            })?;
        added += r.added;
        existed += r.existed;
        if show {
            let done = (n * ADD_BATCH + chunk.len()).min(total);
            eprint!("\r{} {done}/{total} jobs", progress_bar(done, total));
            let _ = std::io::stderr().flush();
        }
    }
    if show {
        eprintln!();
    }
    Ok((added, existed))
}

fn progress_bar(done: usize, total: usize) -> String {
    let width = 30;
    let filled = done * width / total.max(1);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}
