//! The `raftq` command line.

use crate::config::NodeConfig;
use crate::local::LocalCluster;
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use raftq_client::jobline::{parse_duration_s, parse_line, parse_memory_mb, JobDefaults};
use raftq_client::{Client, ClientConfig};
use raftq_proto::pb;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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

#[derive(Args, Clone)]
struct ClusterArg {
    /// Manager addresses, HOST:PORT,HOST:PORT,... (or RAFTQ_CLUSTER; `raftq up` writes it to
    /// DIR/raftq.env)
    #[arg(long, env = "RAFTQ_CLUSTER")]
    cluster: String,
    /// The cluster's token file (or RAFTQ_TOKEN_FILE; `raftq up` writes it to DIR/raftq.env).
    #[arg(long, env = "RAFTQ_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one manager node.
    Node(NodeArgs),
    /// Start a local cluster of manager nodes on 127.0.0.1.
    Up(UpArgs),
    /// Stop a cluster started with `raftq up --detach`.
    Down {
        /// The directory given to `raftq up`.
        #[arg(long, default_value = "raftq-data")]
        dir: PathBuf,
    },
    /// Add jobs: one per line, a plain command or a JSON object with wr's field names.
    Add(AddArgs),
    /// Show job counts per rep group and state.
    Status(StatusArgs),
    /// Kill running jobs (they are buried once their runner notices).
    Kill(SelectArgs),
    /// Put buried jobs back in the queue.
    Retry(SelectArgs),
    /// Remove jobs that are not running and not complete.
    Remove(SelectArgs),
    /// Cluster administration.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Measure throughput, latency and failover (starts its own cluster without --cluster).
    Bench(crate::bench::BenchArgs),
    /// Reserve and run jobs until idle.
    Runner(RunnerArgs),
}

#[derive(Args)]
struct RunnerArgs {
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

#[derive(Args)]
struct NodeArgs {
    /// TOML file with node settings (flags and RAFTQ_* variables override it).
    #[arg(long, env = "RAFTQ_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id.
    #[arg(long, env = "RAFTQ_ID")]
    id: Option<u64>,
    /// HOST:PORT to serve gRPC on.
    #[arg(long, env = "RAFTQ_LISTEN")]
    listen: Option<String>,
    /// HOST:PORT reserved for the web UI and metrics.
    #[arg(long, env = "RAFTQ_HTTP")]
    http: Option<String>,
    /// Data directory.
    #[arg(long, env = "RAFTQ_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The cluster token file, the same on every node (default DATA_DIR/token, created if
    /// missing).
    #[arg(long, env = "RAFTQ_TOKEN_FILE")]
    token_file: Option<PathBuf>,
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
    power_loss_sim: bool,
}

#[derive(Args)]
struct UpArgs {
    /// Number of manager nodes (3 or 5 tolerate 1 or 2 failures).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory for the nodes' data, logs, pid files and raftq.env.
    #[arg(long, default_value = "raftq-data")]
    dir: PathBuf,
    /// Port of node 1; node N listens on base-port + N - 1.
    #[arg(long, default_value_t = 7701)]
    base_port: u16,
    /// Return once the cluster has a leader, leaving the nodes running.
    #[arg(long)]
    detach: bool,
}

#[derive(Args)]
struct AddArgs {
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

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    group: RepGroupArg,
    /// Print one JSON object (`states`, `rep_groups`).
    #[arg(long)]
    json: bool,
    /// List jobs (state, exit code, fail reason), at most --limit of each kind.
    #[arg(long)]
    details: bool,
    /// With --details: jobs shown per (state, fail reason, exit code).
    #[arg(long, default_value_t = 5)]
    limit: u32,
    /// Read from the node's replica without a leader round trip.
    #[arg(long)]
    stale: bool,
}

#[derive(Args)]
struct SelectArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    group: RepGroupArg,
    /// Jobs with these keys.
    #[arg(long = "key")]
    keys: Vec<String>,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Leader, term, and each node's role and log position.
    Status {
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long)]
        json: bool,
    },
    /// Ask every node to take a snapshot now (and so let it purge its log).
    Snapshot {
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Add a node: start it first with `raftq node --id ID --listen ADDR` (no --peers); it
    /// catches up as a learner, then becomes a voter.
    AddNode {
        #[command(flatten)]
        cluster: ClusterArg,
        /// The new node's id (unique in the cluster).
        #[arg(long)]
        id: u64,
        /// HOST:PORT the other nodes reach it at (its --listen address).
        #[arg(long)]
        addr: String,
        /// How long to wait for it to catch up, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Remove a voter from the cluster (then stop it; its data is no longer needed).
    RemoveNode {
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long)]
        id: u64,
    },
}

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
        Cmd::Node(a) => node(a).await,
        Cmd::Up(a) => up(a).await,
        Cmd::Down { dir } => down(&dir).await,
        Cmd::Add(a) => add(a).await,
        Cmd::Status(a) => status(a).await,
        Cmd::Kill(a) => select_and(a, Action::Kill).await,
        Cmd::Retry(a) => select_and(a, Action::Retry).await,
        Cmd::Remove(a) => select_and(a, Action::Remove).await,
        Cmd::Cluster(ClusterCmd::Status { cluster, json }) => cluster_status(cluster, json).await,
        Cmd::Cluster(ClusterCmd::Snapshot { cluster }) => {
            let client = client(&cluster)?;
            for (i, addr) in client.nodes().iter().enumerate() {
                match client.trigger_snapshot_of(i).await {
                    Ok(()) => println!("{addr}: snapshot started"),
                    Err(e) => println!("{addr}: {}", e.message()),
                }
            }
            Ok(())
        }
        Cmd::Cluster(ClusterCmd::AddNode {
            cluster,
            id,
            addr,
            timeout,
        }) => {
            let client = client(&cluster)?;
            eprintln!("adding node {id} at {addr}: it joins as a learner and catches up first");
            let voters = client
                .add_node(id, addr, Duration::from_secs(timeout))
                .await?;
            println!("node {id} added; voters: {voters:?}");
            Ok(())
        }
        Cmd::Cluster(ClusterCmd::RemoveNode { cluster, id }) => {
            let voters = client(&cluster)?.remove_node(id).await?;
            println!("node {id} removed; voters: {voters:?}");
            Ok(())
        }
        Cmd::Bench(a) => crate::bench::run(a).await,
        Cmd::Runner(a) => runner(a).await,
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

async fn node(a: NodeArgs) -> anyhow::Result<()> {
    let mut config = match &a.config {
        Some(p) => NodeConfig::from_toml(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .map_err(anyhow::Error::msg)?,
        None => NodeConfig::default(),
    };
    config
        .apply_env(std::env::vars())
        .map_err(anyhow::Error::msg)?;
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
    if let Some(v) = a.peers {
        config.peers = NodeConfig::parse_peers(&v).map_err(anyhow::Error::msg)?;
    }
    if let Some(v) = a.clock_offset_ms {
        config.clock_offset_ms = v;
    }
    if a.power_loss_sim {
        config.power_loss_sim = true;
    }
    crate::server::run(config, shutdown_signal()).await
}

/// Client settings: the token from `--token-file`/`RAFTQ_TOKEN_FILE`, else `RAFTQ_TOKEN`.
pub fn client_config(token_file: Option<&Path>) -> anyhow::Result<ClientConfig> {
    let token = match token_file {
        Some(p) => Some(raftq_client::auth::read_token_file(p).map_err(anyhow::Error::msg)?),
        None => std::env::var("RAFTQ_TOKEN").ok(),
    };
    Ok(ClientConfig {
        token,
        ..ClientConfig::default()
    })
}

fn client(c: &ClusterArg) -> anyhow::Result<Client> {
    Ok(Client::from_list(
        &c.cluster,
        client_config(c.token_file.as_deref())?,
    )?)
}

// ---- up / down -------------------------------------------------------------------------

fn pid_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.pid"))
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists; no memory is touched.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn signal_pid(pid: i32, sig: i32) {
    // SAFETY: sends a signal to a process id we started; no memory is touched.
    unsafe {
        libc::kill(pid, sig);
    }
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    if a.nodes == 0 || a.nodes > 9 {
        bail!("--nodes: give 1 to 9 (3 or 5 for fault tolerance)");
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    for id in 1..=a.nodes {
        if let Ok(pid) = std::fs::read_to_string(pid_path(&dir, id)) {
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
    let addrs: Vec<String> = (0..a.nodes)
        .map(|i| format!("127.0.0.1:{}", a.base_port as u64 + i))
        .collect();
    for addr in &addrs {
        if std::net::TcpListener::bind(addr).is_err() {
            bail!("{addr} is in use; choose other ports with --base-port");
        }
    }
    let exe = std::env::current_exe().context("finding the raftq executable")?;
    // The nodes share one runner registry, so a new leader adopts the runners already running.
    let settings = format!(
        "[scheduler]\nenabled = true\nrunner_dir = {:?}\n",
        dir.join("runners").display().to_string()
    );
    let mut cluster = LocalCluster::new(exe, &dir, addrs.clone(), &settings)?;
    cluster.detach = a.detach;
    cluster.start_all().context("starting the nodes")?;
    for n in &cluster.nodes {
        if let Some(pid) = n.pid() {
            std::fs::write(pid_path(&dir, n.id), pid.to_string())?;
        }
    }
    let cluster_list = addrs.join(",");
    std::fs::write(
        dir.join("raftq.env"),
        format!(
            "export RAFTQ_CLUSTER={cluster_list}\nexport RAFTQ_TOKEN_FILE={}\n",
            dir.join("token").display()
        ),
    )?;
    let leader = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "raftq cluster of {} nodes is up; leader: node {leader}",
        a.nodes
    );
    println!("  nodes:   {cluster_list}");
    println!("  data:    {}", dir.display());
    println!("  logs:    {}/node-N.log", dir.display());
    println!();
    println!("Use it from another shell:");
    println!("  source {}/raftq.env", dir.display());
    println!("  echo 'echo hello' | raftq add");
    println!("  raftq status");
    if a.detach {
        println!("  raftq down --dir {}", dir.display());
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

/// Stops the runners the local scheduler started (SIGTERM: each releases its job and exits).
fn stop_runners(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("runners")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_suffix(".runner")
                .and_then(|p| p.parse::<i32>().ok())
            {
                if process_alive(pid) {
                    signal_pid(pid, libc::SIGTERM);
                    pids.push(pid);
                }
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    pids
}

async fn stop_nodes(dir: &Path, max_id: u64) -> usize {
    // Runners first, while the nodes can still take their releases.
    let runners = stop_runners(dir);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runners.iter().any(|p| process_alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pids = Vec::new();
    for id in 1..=max_id {
        let p = pid_path(dir, id);
        if let Ok(s) = std::fs::read_to_string(&p) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                if process_alive(pid) {
                    signal_pid(pid, libc::SIGTERM);
                    pids.push(pid);
                }
            }
            let _ = std::fs::remove_file(&p);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| process_alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in &pids {
        if process_alive(*p) {
            signal_pid(*p, libc::SIGKILL);
        }
    }
    pids.len()
}

async fn down(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        bail!(
            "{} does not exist; give the --dir used with `raftq up`",
            dir.display()
        );
    }
    let n = stop_nodes(dir, 9).await;
    if n == 0 {
        println!("no running nodes found in {}", dir.display());
    } else {
        println!("stopped {n} node(s)");
    }
    Ok(())
}

// ---- add -------------------------------------------------------------------------------

/// Jobs per Add request.
const ADD_BATCH: usize = 10_000;

async fn add(a: AddArgs) -> anyhow::Result<()> {
    let defaults = JobDefaults {
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
    };
    let reader: Box<dyn BufRead> = match a.file.as_deref() {
        None | Some("-") => Box::new(std::io::BufReader::new(std::io::stdin())),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {p}"))?,
        )),
    };
    // Parse everything first: a bad line adds nothing.
    let mut jobs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        if let Some(j) = parse_line(i + 1, &line, &defaults)? {
            jobs.push(j);
        }
    }
    if jobs.is_empty() {
        bail!("no jobs given (one command or JSON object per line on stdin or -f FILE)");
    }
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let client = client(&a.cluster)?;
    let total = jobs.len();
    let show = std::io::stderr().is_terminal() && total > ADD_BATCH;
    let (mut added, mut existed) = (0u64, 0u64);
    for (n, chunk) in jobs.chunks(ADD_BATCH).enumerate() {
        let r = client
            .add(pb::AddRequest {
                request_id: Vec::new(),
                jobs: chunk.to_vec(),
                env: env.clone(),
                ignore_complete: a.ignore_complete,
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
    println!("added {added} job(s); {existed} already existed");
    Ok(())
}

fn progress_bar(done: usize, total: usize) -> String {
    let width = 30;
    let filled = done * width / total.max(1);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

// ---- status ----------------------------------------------------------------------------

const STATE_ORDER: [&str; 8] = [
    "dependent",
    "delayed",
    "ready",
    "reserved",
    "running",
    "lost",
    "buried",
    "complete",
];

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let client = client(&a.cluster)?;
    let how = pb::search_request::Match::from(a.group.r#match);
    let stats = client.stats(a.stale).await?;
    let matches = |g: &str| match &a.group.rep_grp {
        None => true,
        Some(p) => match how {
            pb::search_request::Match::Exact => g == p,
            pb::search_request::Match::Prefix => g.starts_with(p.as_str()),
            pb::search_request::Match::Substring => g.contains(p.as_str()),
        },
    };
    let groups: BTreeMap<&String, &pb::StateCounts> = stats
        .rep_groups
        .iter()
        .filter(|(g, _)| matches(g))
        .collect();
    let mut states: BTreeMap<String, u64> =
        STATE_ORDER.iter().map(|s| (s.to_string(), 0)).collect();
    for c in groups.values() {
        for (s, n) in &c.counts {
            *states.entry(s.clone()).or_default() += n;
        }
    }
    if a.json {
        let rep: BTreeMap<&String, &std::collections::HashMap<String, u64>> =
            groups.iter().map(|(g, c)| (*g, &c.counts)).collect();
        let v = serde_json::json!({ "states": states, "rep_groups": rep });
        println!("{v}");
        return Ok(());
    }
    if groups.is_empty() {
        println!(
            "no jobs{}",
            a.group
                .rep_grp
                .as_deref()
                .map(|g| format!(" in rep group {g:?}"))
                .unwrap_or_default()
        );
    } else {
        for (g, c) in &groups {
            let parts: Vec<String> = STATE_ORDER
                .iter()
                .filter_map(|s| {
                    c.counts
                        .get(*s)
                        .filter(|n| **n > 0)
                        .map(|n| format!("{s} {n}"))
                })
                .collect();
            println!("{g}: {}", parts.join(", "));
        }
        let parts: Vec<String> = STATE_ORDER
            .iter()
            .filter(|s| states[**s] > 0)
            .map(|s| format!("{s} {}", states[*s]))
            .collect();
        println!("total: {}", parts.join(", "));
    }
    if a.details {
        let jobs = client
            .search(pb::SearchRequest {
                rep_grp: a.group.rep_grp.clone().unwrap_or_default(),
                r#match: how as i32,
                state: None,
                limit: a.limit,
                incomplete_only: a.group.rep_grp.is_none(),
                stale: a.stale,
            })
            .await?;
        for j in jobs {
            let state = pb::JobState::try_from(j.state)
                .map(|s| s.as_str_name().to_lowercase())
                .unwrap_or_else(|_| "?".into());
            let exit = j
                .last_run
                .as_ref()
                .filter(|r| r.exited)
                .map(|r| format!(" exit {}", r.exit_code))
                .unwrap_or_default();
            let reason = if j.fail_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", j.fail_reason)
            };
            let similar = if j.similar > 0 {
                format!(" [+{} similar]", j.similar)
            } else {
                String::new()
            };
            let cmd = j.spec.as_ref().map(|s| s.cmd.as_str()).unwrap_or("");
            println!("{} {state}{exit}{reason}{similar}: {cmd}", j.key);
        }
    }
    Ok(())
}

// ---- runner ----------------------------------------------------------------------------

async fn runner(a: RunnerArgs) -> anyhow::Result<()> {
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
    let base = client_config(a.cluster.token_file.as_deref())?;
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

// ---- kill / retry / remove -------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Kill,
    Retry,
    Remove,
}

async fn select_and(a: SelectArgs, action: Action) -> anyhow::Result<()> {
    let client = client(&a.cluster)?;
    let mut keys = a.keys.clone();
    if let Some(g) = &a.group.rep_grp {
        let want: &[pb::JobState] = match action {
            Action::Kill => &[
                pb::JobState::Running,
                pb::JobState::Reserved,
                pb::JobState::Lost,
            ],
            Action::Retry => &[pb::JobState::Buried],
            Action::Remove => &[
                pb::JobState::Dependent,
                pb::JobState::Delayed,
                pb::JobState::Ready,
                pb::JobState::Buried,
            ],
        };
        let jobs = client
            .search(pb::SearchRequest {
                rep_grp: g.clone(),
                r#match: pb::search_request::Match::from(a.group.r#match) as i32,
                state: None,
                limit: 0,
                incomplete_only: true,
                stale: false,
            })
            .await?;
        keys.extend(
            jobs.into_iter()
                .filter(|j| want.iter().any(|s| *s as i32 == j.state))
                .map(|j| j.key),
        );
    } else if keys.is_empty() {
        bail!("say which jobs: -i REPGRP or --key KEY");
    }
    if keys.is_empty() {
        println!("no matching jobs");
        return Ok(());
    }
    match action {
        Action::Kill => println!("{} job(s) will be killed", client.kill(keys).await?),
        Action::Retry => println!("{} job(s) put back in the queue", client.kick(keys).await?),
        Action::Remove => {
            let r = client.delete(keys).await?;
            println!("removed {} job(s)", r.deleted);
            for s in r.skipped {
                let why = pb::skipped::Why::try_from(s.why)
                    .map(|w| w.as_str_name().to_lowercase())
                    .unwrap_or_default();
                println!("  kept {}: {why} {}", s.key, s.detail);
            }
        }
    }
    Ok(())
}

// ---- cluster status --------------------------------------------------------------------

async fn cluster_status(c: ClusterArg, json: bool) -> anyhow::Result<()> {
    let client = client(&c)?;
    let n = client.nodes().len();
    let mut views = Vec::new();
    for i in 0..n {
        views.push(client.cluster_status_of(i).await);
    }
    // The leader's view has every node's replication; each node knows its own applied index.
    let leader_view = views
        .iter()
        .flatten()
        .find(|v| v.leader != 0 && v.leader == v.answered_by)
        .or_else(|| views.iter().flatten().find(|v| v.leader != 0))
        .cloned();
    let Some(base) = leader_view.or_else(|| views.iter().flatten().next().cloned()) else {
        bail!("no node answered at {}", client.nodes().join(","));
    };
    let mut nodes: BTreeMap<u64, pb::NodeStatus> =
        base.nodes.iter().map(|n| (n.id, n.clone())).collect();
    // Members the address list does not name (added later) are asked too.
    let config = client_config(c.token_file.as_deref())?;
    for n in &base.nodes {
        if n.addr.is_empty() || client.nodes().contains(&n.addr) {
            continue;
        }
        if let Ok(one) = Client::new(vec![n.addr.clone()], config.clone()) {
            views.push(one.cluster_status_of(0).await);
        }
    }
    let answered: Vec<u64> = views.iter().flatten().map(|v| v.answered_by).collect();
    for v in views.iter().flatten() {
        if let Some(own) = v.nodes.iter().find(|n| n.id == v.answered_by) {
            let e = nodes.entry(own.id).or_insert_with(|| own.clone());
            e.role = own.role.clone();
            e.applied_index = own.applied_index;
            e.last_log_index = own.last_log_index;
            e.term = own.term;
            e.store_errors = own.store_errors;
            e.last_store_error = own.last_store_error.clone();
        }
    }
    for (id, n) in nodes.iter_mut() {
        if !answered.contains(id) && !n.addr.is_empty() {
            n.role = "unreachable".into();
        }
    }
    if json {
        let list: Vec<serde_json::Value> = nodes
            .values()
            .map(|n| {
                serde_json::json!({
                    "id": n.id, "addr": n.addr, "role": n.role, "term": n.term,
                    "last_log_index": n.last_log_index, "applied_index": n.applied_index,
                    "voter": n.voter, "store_errors": n.store_errors,
                    "last_store_error": n.last_store_error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "leader": base.leader, "term": base.term, "nodes": list })
        );
        return Ok(());
    }
    println!(
        "leader: {}  term: {}",
        if base.leader == 0 {
            "none".to_string()
        } else {
            format!("node {}", base.leader)
        },
        base.term
    );
    println!(
        "{:>4}  {:<22} {:<11} {:>10} {:>10}",
        "id", "address", "role", "last log", "applied"
    );
    for n in nodes.values() {
        println!(
            "{:>4}  {:<22} {:<11} {:>10} {:>10}",
            n.id, n.addr, n.role, n.last_log_index, n.applied_index
        );
        if n.store_errors > 0 {
            println!(
                "      store errors: {} (last: {})",
                n.store_errors, n.last_store_error
            );
        }
    }
    Ok(())
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
}
