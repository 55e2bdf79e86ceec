//! `raftq-jepsen test ...`: runs raftq under faults and checks what happened.
//! `raftq-jepsen sim --seed N`: the same checks on a deterministic simulation.
//! Exit code 0: valid; 1: invalid; 2: unknown or harness error.

use clap::{Args, Parser, Subcommand};
use raftq_jepsen::checker::Validity;
use raftq_jepsen::{nemesis, run, sim, workload};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "raftq-jepsen",
    about = "Runs a raftq cluster under faults, records every operation and checks the history",
    after_help = after_help()
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one test: nodes in network namespaces (needs root), a workload, a nemesis.
    #[command(after_help = after_help())]
    Test(TestArgs),
    /// Checks a stored run again: reads DIR/history.jsonl and DIR/test.json, rewrites
    /// results.json and the report (no root needed).
    Check {
        /// A run's directory, e.g. store/latest.
        dir: PathBuf,
    },
    /// Runs a deterministic simulation: the queue state machine on simulated replicas under a
    /// simulated Raft, clients and a seeded fault schedule, in virtual time (no root, no
    /// processes, no network; openraft, gRPC and RocksDB are not in it). The same seed gives
    /// the same history byte for byte. Checks it like `test` and prints the verdicts.
    Sim(SimArgs),
    /// Removes namespaces, bridges and iptables rules left by runs that were killed before
    /// they could clean up, and their node processes (needs root). Runs in progress are left
    /// alone.
    Clean {
        /// Also remove runs in progress.
        #[arg(long)]
        force: bool,
    },
    /// Mounts a filesystem that passes through to BACKING and loses, on a `cut` sent to its
    /// control socket, every write and directory change not synced (needs root and
    /// /dev/fuse). The `power` nemesis runs each node's data directory on one.
    Lossyfs(LossyfsArgs),
}

#[derive(Args)]
struct LossyfsArgs {
    /// The directory that holds the data.
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount it.
    #[arg(long)]
    mountpoint: PathBuf,
    /// The control socket: one line `cut`, `stop` or `status` per connection.
    #[arg(long)]
    control: PathBuf,
    /// Seed of the tearing draws: the same seed and the same un-synced state lose the same.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// On a cut, keep a random prefix of each file's un-synced writes and tear the last one.
    #[arg(long)]
    tear: bool,
}

#[derive(Args)]
struct TestArgs {
    /// Managers (3 to 9; 3 or 5 in practice).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=9))]
    nodes: u64,
    /// The workload: queue, lease or ordering.
    #[arg(long, default_value = "queue", value_parser = ["queue", "lease", "ordering"])]
    workload: String,
    /// Faults, comma-separated (see below), or `all`, or `none`.
    #[arg(long, default_value = "kill,partition")]
    nemesis: String,
    /// Seconds of workload under faults (the final heal-and-drain phase comes after).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Seed of the fault schedule and of the workload's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where reports go: STORE/<test>/<time>/, and STORE/latest.
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// The raftq binary (default: `raftq` next to this program, built first when run through
    /// cargo).
    #[arg(long, env = "RAFTQ_BIN")]
    raftq_bin: Option<PathBuf>,
    /// Seconds the final phase may take to drain the queue.
    #[arg(long, default_value_t = 90)]
    drain_timeout: u64,
    /// Keep the nodes' data directories after a valid run.
    #[arg(long)]
    keep_data: bool,
    /// How the `power` nemesis loses data: `fs` runs every node's data directory on lossyfs
    /// and drops everything not fsynced (file data and directory entries) at each cut;
    /// `wal` runs the nodes in RocksDB's un-synced-WAL simulation (the WAL only).
    #[arg(long, default_value = "fs", value_parser = ["fs", "wal"])]
    power_mode: String,
    /// With `--power-mode fs`: at a cut, each file keeps a seeded random prefix of its
    /// un-synced writes, the last one torn at a random byte.
    #[arg(long)]
    power_tear: bool,
    /// Log entries between snapshots (the tests' default 3000); the log is purged up to a
    /// third of this (at most 1000 entries) behind each snapshot. Small values make snapshots, purges and installs
    /// happen many times in a short run.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..))]
    snapshot_every: u64,
}

#[derive(Args)]
struct SimArgs {
    /// Seed of everything: faults, delays, losses, the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events of the discrete-event loop in the workload phase (the final phase comes after).
    #[arg(long, default_value_t = sim::DEFAULT_STEPS)]
    steps: u64,
    /// Replicas.
    #[arg(long, default_value = "3", value_parser = ["3", "5"])]
    nodes: String,
    /// Write history.jsonl, results.json and test.json into this directory (`raftq-jepsen
    /// check DIR` then writes the report).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn after_help() -> String {
    let mut s = String::from("Workloads:\n");
    for (n, d) in workload::WORKLOADS {
        s.push_str(&format!("  {n:<12} {d}\n"));
    }
    s.push_str("Nemeses:\n");
    for (n, d) in nemesis::NEMESES {
        s.push_str(&format!("  {n:<12} {d}\n"));
    }
    s.push_str("Exit code: 0 valid, 1 invalid, 2 unknown or harness error.");
    s
}

/// `raftq` next to this executable; when run through cargo, (re)built first with the same
/// profile so that it is never stale.
fn default_raftq_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for this executable")?;
    let bin = dir.join("raftq");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "raftq-node", "--bin", "raftq"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        eprintln!("jepsen: building raftq ({})", bin.display());
        let st = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
        if !st.success() {
            return Err("cargo build -p raftq-node failed".into());
        }
    }
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p raftq-node) or pass --raftq-bin",
            bin.display()
        ));
    }
    Ok(bin)
}

fn exit_code(v: Validity) -> u8 {
    match v {
        Validity::True => 0,
        Validity::False => 1,
        Validity::Unknown => 2,
    }
}

/// Resolves on SIGTERM (so that a run stopped that way still removes what it created).
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let a = match cli.cmd {
        Cmd::Test(a) => a,
        Cmd::Check { dir } => {
            return ExitCode::from(match run::recheck(&dir) {
                Ok(out) => {
                    eprintln!("{}", out.summary.trim_end());
                    eprintln!(
                        "jepsen: valid: {:?}; report: {}",
                        out.valid,
                        out.dir.join("index.html").display()
                    );
                    exit_code(out.valid)
                }
                Err(e) => {
                    eprintln!("jepsen: error: {e}");
                    2
                }
            })
        }
        Cmd::Sim(a) => return ExitCode::from(simulate(a)),
        Cmd::Clean { force } => {
            let (mut removed, kept) = raftq_jepsen::net::clean_all(force);
            removed.extend(raftq_jepsen::lossyfs::clean_stale(force));
            for r in &removed {
                eprintln!("removed {r}");
            }
            for k in &kept {
                eprintln!("kept {k}");
            }
            eprintln!(
                "jepsen: clean: removed {}, kept {} (--force removes runs in progress too)",
                removed.len(),
                kept.len()
            );
            return ExitCode::SUCCESS;
        }
        Cmd::Lossyfs(a) => {
            let options = raftq_jepsen::lossyfs::Options {
                backing: a.backing,
                mountpoint: a.mountpoint,
                control: a.control,
                seed: a.seed,
                tear: a.tear,
            };
            return match raftq_jepsen::lossyfs::serve(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lossyfs: error: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    let code = match test(a) {
        Ok(v) => exit_code(v),
        Err(e) => {
            eprintln!("jepsen: error: {e}");
            2
        }
    };
    ExitCode::from(code)
}

fn simulate(a: SimArgs) -> u8 {
    let nodes = match a.nodes.parse::<usize>() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("jepsen: error: --nodes: {e}");
            return 2;
        }
    };
    let opts = sim::SimOptions::new(a.seed, nodes, a.steps);
    let out = match sim::run(&opts) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("jepsen: error: {e}");
            return 2;
        }
    };
    eprintln!(
        "jepsen: sim seed {} on {} nodes: {}",
        opts.seed,
        opts.nodes,
        sim::stats_line(&out.stats)
    );
    eprintln!("{}", sim::summary(&out).trim_end());
    if let Some(dir) = &a.out {
        if let Err(e) = sim::write_outputs(dir, &opts, &out) {
            eprintln!("jepsen: error: {e}");
            return 2;
        }
        eprintln!("jepsen: history and results in {}", dir.display());
    }
    eprintln!("jepsen: valid: {:?}", out.valid);
    exit_code(out.valid)
}

fn test(a: TestArgs) -> Result<Validity, String> {
    let nemeses = nemesis::parse(&a.nemesis)?;
    if !raftq_jepsen::net::is_root() {
        return Err(
            "the nodes run in network namespaces and faults use iptables: run as root".into(),
        );
    }
    let raftq_bin = match a.raftq_bin {
        Some(p) => p,
        None => default_raftq_bin()?,
    };
    let opts = run::Options {
        nodes: a.nodes as usize,
        workload: a.workload,
        nemeses,
        time_limit: Duration::from_secs(a.time_limit),
        seed: a.seed,
        store: a.store,
        raftq_bin,
        drain_timeout: Duration::from_secs(a.drain_timeout),
        keep_data: a.keep_data,
        power_mode: if a.power_mode == "wal" {
            run::PowerMode::Wal
        } else {
            run::PowerMode::Fs { tear: a.power_tear }
        },
        snapshot_every: a.snapshot_every,
    };
    // every run stops by itself: the workload, the drain and at most 3 minutes more
    let bound = opts.time_limit + opts.drain_timeout + Duration::from_secs(180);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        tokio::select! {
            r = tokio::time::timeout(bound, run::run(opts)) => match r {
                Ok(Ok(out)) => {
                    eprintln!("{}", out.summary.trim_end());
                    eprintln!("jepsen: valid: {:?}; report: {}", out.valid, out.dir.join("index.html").display());
                    Ok(out.valid)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("the run did not end within {} s", bound.as_secs())),
            },
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = terminated() => Err("terminated".into()),
        }
    })
}
