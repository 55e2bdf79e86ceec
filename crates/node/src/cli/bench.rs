//! `raftq bench`: throughput, latency and failover of a cluster, measured from a client.
//!
//! Without `--cluster` it starts its own local cluster of node processes (in a temp dir, on
//! free ports), which also allows the failover trials (kill -9 of the leader under load).
//! Every loop is bounded by a count and by `--max-seconds` per phase.

use super::client_config;
use anyhow::{bail, Context};
use queue_fsm::JobKey;
use raftq_client::{request_id, Client, ClientConfig};
use raftq_local::{small_job as job, LocalCluster};
use raftq_proto::pb;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub(super) struct BenchArgs {
    /// Cluster to measure; without it, a local cluster is started for the run.
    #[arg(long, env = "RAFTQ_CLUSTER")]
    cluster: Option<String>,
    /// The cluster's token file, with --cluster.
    #[arg(long, env = "RAFTQ_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    /// The cluster CA (TLS), with --cluster.
    #[arg(long, env = "RAFTQ_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Run the local cluster without TLS (`raftq node --plaintext`), to measure what TLS
    /// costs.
    #[arg(long)]
    plaintext: bool,
    /// Jobs for the bulk add.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs per Add request in the bulk add.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrent clients in the bulk add.
    #[arg(long, default_value_t = 4)]
    adders: usize,
    /// add→reserve→archive cycles per worker count.
    #[arg(long, default_value_t = 10_000)]
    cycles: usize,
    /// Worker counts for the cycle test.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    workers: Vec<usize>,
    /// Sequential single-job adds for the latency test.
    #[arg(long, default_value_t = 2_000)]
    latency_samples: usize,
    /// `true` jobs run by real runner processes, per runner count (local cluster only).
    #[arg(long, default_value_t = 2_000)]
    runner_jobs: usize,
    /// Runner counts for the runner test.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    runners: Vec<usize>,
    /// Failover trials (local cluster only).
    #[arg(long, default_value_t = 5)]
    failover_trials: usize,
    /// Stop any phase after this long (at most a day).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_seconds: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn add_req(jobs: Vec<pb::JobSpec>) -> pb::AddRequest {
    pb::AddRequest {
        request_id: request_id(),
        jobs,
        env: Vec::new(),
        ignore_complete: false,
        return_keys: false,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A unique prefix so that repeated runs against one cluster add new jobs.
fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn bulk_add(client: &Arc<Client>, a: &BenchArgs, tag: &str) -> anyhow::Result<f64> {
    let per = a.jobs.div_ceil(a.adders.max(1));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.max_seconds);
    let mut tasks = Vec::new();
    for w in 0..a.adders.max(1) {
        let client = client.clone();
        let (batch, tag) = (a.batch.max(1), tag.to_string());
        let total = per.min(a.jobs.saturating_sub(w * per));
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            while done < total && Instant::now() < deadline {
                let n = batch.min(total - done);
                let jobs = (0..n)
                    .map(|i| job(format!("bench {tag} bulk {w} {}", done + i), "bench-bulk"))
                    .collect();
                client.add(add_req(jobs)).await?;
                done += n;
            }
            Ok::<usize, raftq_client::ClientError>(done)
        }));
    }
    let mut added = 0;
    for t in tasks {
        added += t.await??;
    }
    Ok(added as f64 / start.elapsed().as_secs_f64())
}

async fn cycles(
    client: &Arc<Client>,
    workers: usize,
    a: &BenchArgs,
    tag: &str,
) -> anyhow::Result<f64> {
    let per = a.cycles.div_ceil(workers.max(1));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.max_seconds);
    let rep = format!("bench-cycle-{tag}-{workers}");
    let mut tasks = Vec::new();
    for w in 0..workers.max(1) {
        let client = client.clone();
        let rep = rep.clone();
        tasks.push(tokio::spawn(async move {
            let runner = request_id();
            let mut done = 0usize;
            while done < per && Instant::now() < deadline {
                client
                    .add(add_req(vec![job(format!("{rep} {w} {done}"), &rep)]))
                    .await?;
                let r = client
                    .reserve(pb::ReserveRequest {
                        request_id: request_id(),
                        runner_id: runner.clone(),
                        sched_group: String::new(),
                        ttr_ms: 60_000,
                        wait_ms: 1_000,
                    })
                    .await?;
                let Some(j) = r.job else { continue };
                client
                    .archive(pb::ArchiveRequest {
                        request_id: request_id(),
                        job: Some(pb::JobRef {
                            key: j.key,
                            fence: j.fence,
                        }),
                        report: Some(pb::RunReport {
                            exited: true,
                            ..Default::default()
                        }),
                    })
                    .await?;
                done += 1;
            }
            Ok::<usize, raftq_client::ClientError>(done)
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn latency(client: &Client, a: &BenchArgs, tag: &str) -> anyhow::Result<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let mut ms = Vec::with_capacity(a.latency_samples);
    for i in 0..a.latency_samples {
        if Instant::now() >= deadline {
            break;
        }
        let t = Instant::now();
        client
            .add(add_req(vec![job(
                format!("bench {tag} latency {i}"),
                "bench-latency",
            )]))
            .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|x, y| x.total_cmp(y));
    Ok((percentile(&ms, 50.0), percentile(&ms, 99.0)))
}

/// Adds `n` `true` jobs, starts `runners` runner processes, and returns jobs/s from the add
/// to the last archive.
async fn runner_phase(
    cluster: &LocalCluster,
    client: &Client,
    n: usize,
    runners: usize,
    a: &BenchArgs,
    tag: &str,
) -> anyhow::Result<f64> {
    let rep = format!("bench-runner-{tag}-{runners}");
    let work = cluster.dir.join("work");
    std::fs::create_dir_all(&work)?;
    let jobs: Vec<pb::JobSpec> = (0..n)
        .map(|i| {
            let mut j = job(format!("true {rep} {i}"), &rep);
            j.cwd = work.display().to_string();
            // A scheduler group of their own (see `add_in_own_group`): RAM no other phase
            // asks for, and the user's values, not learned ones (learning from the first
            // runner phase made the next phase's `true` jobs 100 MB, the group of the bulk
            // add's 30,000 leftover jobs, so its runners worked through those first: the
            // stall of issue 11's item 8).
            if let Some(r) = j.requirements.as_mut() {
                r.ram_mb = 150 + runners as u32;
            }
            j.r#override = 2;
            j
        })
        .collect();
    let start = Instant::now();
    let group = add_in_own_group(client, &jobs).await?;
    let mut children = Vec::new();
    for _ in 0..runners {
        children.push(spawn_runner(cluster, &group)?);
    }
    let deadline = start + Duration::from_secs(a.max_seconds);
    let done = wait_completed(client, &rep, n, deadline).await;
    let secs = start.elapsed().as_secs_f64();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let done = done?;
    if done < n {
        bail!(
            "runner phase: only {done} of {n} jobs completed in {} s",
            a.max_seconds
        );
    }
    Ok(n as f64 / secs)
}

/// Adds `jobs` and returns their scheduler group, so that the runners take only these jobs
/// (not those the other phases left behind).
async fn add_in_own_group(client: &Client, jobs: &[pb::JobSpec]) -> anyhow::Result<String> {
    let mut first_key = None;
    for chunk in jobs.chunks(1_000) {
        let mut req = add_req(chunk.to_vec());
        req.return_keys = first_key.is_none();
        let r = client.add(req).await?;
        first_key = first_key.or_else(|| r.keys.first().cloned());
    }
    Ok(match first_key {
        Some(k) => client
            .get(
                &[JobKey::parse(&k).ok_or_else(|| anyhow::anyhow!("bad job key {k:?}"))?],
                false,
            )
            .await?
            .first()
            .map(|j| j.sched_group.clone())
            .unwrap_or_default(),
        None => String::new(),
    })
}

/// A `raftq runner` process for scheduler group `group` that exits when idle for 2 s.
fn spawn_runner(cluster: &LocalCluster, group: &str) -> anyhow::Result<std::process::Child> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cluster.point_at(&mut cmd);
    Ok(cmd
        .args(["runner", "--idle-exit", "2s", "--group", group])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?)
}

/// Completed jobs of rep group `rep` once there are `n`, or at `deadline`.
async fn wait_completed(
    client: &Client,
    rep: &str,
    n: usize,
    deadline: Instant,
) -> anyhow::Result<usize> {
    let mut done = 0;
    while Instant::now() < deadline {
        // Counts per rep group cost O(groups), not O(jobs): polling does not slow the run.
        let stats = client.stats(true).await?;
        done = stats
            .rep_groups
            .get(rep)
            .and_then(|c| c.counts.get("complete"))
            .copied()
            .unwrap_or(0) as usize;
        if done >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(done)
}

/// Kills the leader while a writer adds jobs; returns the seconds from the kill to the first
/// add that succeeded after it.
async fn failover_trial(
    cluster: &mut LocalCluster,
    trial: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let client = Arc::new(Client::new(
        cluster.addrs(),
        ClientConfig {
            attempt_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..cluster.client_config()
        },
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let writer = {
        let (client, stop, killed_at, tag) = (
            client.clone(),
            stop.clone(),
            killed_at.clone(),
            tag.to_string(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sent = epoch.elapsed().as_micros() as u64;
                let r = client
                    .add(add_req(vec![job(
                        format!("bench {tag} failover {trial} {i}"),
                        "bench-failover",
                    )]))
                    .await;
                let k = killed_at.load(Ordering::Relaxed);
                if r.is_ok() && k != 0 && sent > k {
                    return Some(epoch.elapsed().as_micros() as u64 - k);
                }
            }
            None
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    killed_at.store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    cluster.kill(leader);
    let gap = tokio::time::timeout(Duration::from_secs(60), writer).await;
    stop.store(true, Ordering::Relaxed);
    let gap = match gap {
        Ok(Ok(Some(us))) => us as f64 / 1e6,
        _ => bail!("writes did not resume within 60 s of killing the leader"),
    };
    cluster.start(leader)?;
    Ok(gap)
}

/// The cluster under measurement: the one `--cluster` names, or a local one started for the
/// run in a temp dir.
struct Target {
    addrs: String,
    config: ClientConfig,
    /// Dropped (its nodes killed) before `_dir` removes its directory.
    local: Option<LocalCluster>,
    _dir: Option<TempDirGuard>,
}

async fn target(a: &BenchArgs) -> anyhow::Result<Target> {
    if let Some(c) = &a.cluster {
        return Ok(Target {
            addrs: c.clone(),
            config: client_config(a.token_file.as_deref(), a.ca_file.as_deref())?,
            local: None,
            _dir: None,
        });
    }
    let dir = tempfile_dir()?;
    let guard = TempDirGuard(dir.clone());
    let exe = std::env::current_exe().context("finding the raftq executable")?;
    let mut c = LocalCluster::on_free_ports(exe, &dir, a.nodes, "")?;
    if a.plaintext {
        c.use_plaintext();
    }
    c.start_all()?;
    c.wait_leader(Duration::from_secs(30)).await?;
    eprintln!(
        "started a local cluster of {} nodes in {} ({})",
        a.nodes,
        dir.display(),
        if a.plaintext { "plaintext" } else { "TLS" }
    );
    Ok(Target {
        addrs: c.addrs().join(","),
        config: c.client_config(),
        local: Some(c),
        _dir: Some(guard),
    })
}

pub(super) async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let tag = run_tag();
    let mut target = target(&a).await?;
    let client = Arc::new(Client::from_list(&target.addrs, target.config.clone())?);
    let mut out = serde_json::Map::new();
    out.insert("nodes".into(), target.addrs.split(',').count().into());
    client_phases(&client, &a, &tag, &mut out).await?;
    if let Some(cluster) = target.local.as_mut() {
        local_phases(cluster, &client, &a, &tag, &mut out).await?;
    } else if a.failover_trials > 0 {
        println!(
            "failover: skipped (needs the local cluster this command starts without --cluster)"
        );
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::Value::Object(out).to_string())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(mut c) = target.local.take() {
        c.stop_all();
    }
    Ok(())
}

type Results = serde_json::Map<String, serde_json::Value>;

/// The phases any cluster allows: bulk add, add→reserve→archive cycles, single-add latency.
async fn client_phases(
    client: &Arc<Client>,
    a: &BenchArgs,
    tag: &str,
    out: &mut Results,
) -> anyhow::Result<()> {
    let rate = bulk_add(client, a, tag).await?;
    println!(
        "bulk add: {rate:.0} jobs/s ({} jobs, {} per request, {} clients)",
        a.jobs, a.batch, a.adders
    );
    out.insert("bulk_add_jobs_per_s".into(), rate.round().into());

    for &w in &a.workers {
        let rate = cycles(client, w, a, tag).await?;
        println!("add→reserve→archive, {w} worker(s): {rate:.0} cycles/s");
        out.insert(format!("cycles_per_s_{w}_workers"), rate.round().into());
    }

    let (p50, p99) = latency(client, a, tag).await?;
    println!(
        "single add latency: p50 {p50:.2} ms, p99 {p99:.2} ms ({} sequential adds)",
        a.latency_samples
    );
    out.insert(
        "add_latency_p50_ms".into(),
        ((p50 * 100.0).round() / 100.0).into(),
    );
    out.insert(
        "add_latency_p99_ms".into(),
        ((p99 * 100.0).round() / 100.0).into(),
    );
    Ok(())
}

/// The phases that need a cluster this command started: runner processes, and failover
/// trials (which kill its leader).
async fn local_phases(
    cluster: &mut LocalCluster,
    client: &Client,
    a: &BenchArgs,
    tag: &str,
    out: &mut Results,
) -> anyhow::Result<()> {
    for &r in &a.runners {
        if a.runner_jobs == 0 {
            break;
        }
        let rate = runner_phase(cluster, client, a.runner_jobs, r, a, tag).await?;
        println!(
            "runners: {r} runner(s) ran {} `true` jobs at {rate:.0} jobs/s ({:.2} ms/job, add to archive)",
            a.runner_jobs,
            1000.0 / rate
        );
        out.insert(
            format!("runner_jobs_per_s_{r}_runners"),
            rate.round().into(),
        );
    }
    let mut gaps = Vec::new();
    for t in 0..a.failover_trials {
        let g = failover_trial(cluster, t, tag).await?;
        println!(
            "failover trial {}: writes resumed {g:.3} s after kill -9 of the leader",
            t + 1
        );
        gaps.push((g * 1000.0).round() / 1000.0);
    }
    out.insert("failover_s".into(), gaps.into());
    Ok(())
}

struct TempDirGuard(std::path::PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("raftq-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
