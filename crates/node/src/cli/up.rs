//! `raftq up`: a local cluster of manager nodes on 127.0.0.1, with the scheduler on and one
//! runner registry, its pid files and `raftq.env` (RAFTQ_CLUSTER, RAFTQ_TOKEN_FILE, and
//! RAFTQ_HTTP: each node's web address) in one directory; in the foreground until
//! Ctrl-C, or left running with `--detach` (then `raftq down`).

use super::down::{pid_path, process_alive, stop_runners, MAX_NODES};
use super::shutdown_signal;
use anyhow::{bail, Context};
use clap::Args;
use raftq_local::LocalCluster;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub(super) struct UpArgs {
    /// Number of manager nodes (3 or 5 tolerate 1 or 2 failures).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory for the nodes' data, logs, pid files and raftq.env.
    #[arg(long, default_value = "raftq-data")]
    dir: PathBuf,
    /// Port of node 1; node N listens on base-port + N - 1, and serves its web UI, REST
    /// and /metrics on base-port + 100 + N - 1.
    #[arg(long, default_value_t = 7701)]
    base_port: u16,
    /// Return once the cluster has a leader, leaving the nodes running.
    #[arg(long)]
    detach: bool,
}

/// A node's HTTP port is its gRPC port plus this.
const HTTP_PORT_OFFSET: u64 = 100;

pub(super) async fn run(a: UpArgs) -> anyhow::Result<()> {
    if a.nodes == 0 || a.nodes > MAX_NODES {
        bail!("--nodes: give 1 to {MAX_NODES} (3 or 5 for fault tolerance)");
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    refuse_if_running(&dir, a.nodes)?;
    let port = |offset: u64, i: u64| format!("127.0.0.1:{}", a.base_port as u64 + offset + i);
    let addrs: Vec<String> = (0..a.nodes).map(|i| port(0, i)).collect();
    let http: Vec<String> = (0..a.nodes).map(|i| port(HTTP_PORT_OFFSET, i)).collect();
    for addr in addrs.iter().chain(&http) {
        if std::net::TcpListener::bind(addr).is_err() {
            bail!("{addr} is in use; choose other ports with --base-port");
        }
    }
    let mut cluster = start(&dir, addrs, http, a.detach)?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    print_usage(&dir, &cluster, leader, a.detach);
    if a.detach {
        cluster.release();
        return Ok(());
    }
    println!();
    println!("Ctrl-C stops the cluster.");
    shutdown_signal().await;
    println!("stopping...");
    stop_runners(&dir);
    cluster.stop_all();
    for id in 1..=a.nodes {
        let _ = std::fs::remove_file(pid_path(&dir, id));
    }
    Ok(())
}

/// Fails if a node of an earlier `raftq up` in `dir` still runs.
fn refuse_if_running(dir: &Path, nodes: u64) -> anyhow::Result<()> {
    for id in 1..=nodes {
        if let Ok(pid) = std::fs::read_to_string(pid_path(dir, id)) {
            if pid.trim().parse().is_ok_and(process_alive) {
                bail!(
                    "node {id} of {} is already running (pid {}); use `raftq down --dir {}`",
                    dir.display(),
                    pid.trim(),
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Starts the nodes at `addrs`, and writes their pid files and `DIR/raftq.env`.
fn start(
    dir: &Path,
    addrs: Vec<String>,
    http: Vec<String>,
    detach: bool,
) -> anyhow::Result<LocalCluster> {
    let exe = std::env::current_exe().context("finding the raftq executable")?;
    // The nodes share one runner registry, so a new leader adopts the runners already running.
    let settings = format!(
        "[scheduler]\nenabled = true\nrunner_dir = {:?}\n",
        dir.join("runners").display().to_string()
    );
    let mut cluster = LocalCluster::new(exe, dir, addrs, &settings)?;
    for (n, h) in cluster.nodes.iter_mut().zip(http) {
        n.http_addr = h;
    }
    cluster.detach = detach;
    cluster.start_all().context("starting the nodes")?;
    for n in &cluster.nodes {
        if let Some(pid) = n.pid() {
            std::fs::write(pid_path(dir, n.id), pid.to_string())?;
        }
    }
    let ca = ca_file(&cluster)?;
    std::fs::write(
        dir.join("raftq.env"),
        format!(
            "export RAFTQ_CLUSTER={}\nexport RAFTQ_TOKEN_FILE={}\nexport RAFTQ_CA_FILE={}\n\
             export RAFTQ_HTTP={}\n",
            cluster.addrs().join(","),
            dir.join("token").display(),
            ca.display(),
            cluster.http_urls().join(",")
        ),
    )?;
    Ok(cluster)
}

/// The cluster CA's certificate, which clients trust (`DIR/certs/ca.pem`).
fn ca_file(cluster: &LocalCluster) -> anyhow::Result<std::path::PathBuf> {
    let dir = cluster
        .tls_dir()
        .context("the local cluster has no certificate directory")?;
    Ok(dir.join(raftq_node::tls::CA_CERT_FILE))
}

fn print_usage(dir: &Path, cluster: &LocalCluster, leader: u64, detach: bool) {
    println!(
        "raftq cluster of {} nodes is up; leader: node {leader}",
        cluster.nodes.len()
    );
    println!("  nodes:   {}", cluster.addrs().join(","));
    for (n, url) in cluster.nodes.iter().zip(cluster.http_urls()) {
        println!(
            "  web:     {url}/  (node {}; log in with the token in {}/token)",
            n.id,
            dir.display()
        );
    }
    println!("  data:    {}", dir.display());
    if let Some(certs) = cluster.tls_dir() {
        println!(
            "  TLS:     on; cluster CA and node certificates in {}",
            certs.display()
        );
    }
    println!("  logs:    {}/node-N.log", dir.display());
    println!();
    println!("Use it from another shell:");
    println!("  source {}/raftq.env", dir.display());
    println!("  echo 'echo hello' | raftq add");
    println!("  raftq status");
    if detach {
        println!("  raftq down --dir {}", dir.display());
    }
}
