//! One test run: start the cluster, run the workload while the nemesis follows its schedule,
//! heal, drain, read the final state, check the history and write the report.

use crate::checker::{self, Validity};
use crate::db::{Cluster, NodeOptions};
use crate::history::{self, Kind, Op, NEMESIS};
use crate::nemesis;
use crate::report;
use crate::rng::Rng;
use crate::store::{git_revision, link_latest, utc_stamp, write_json};
use crate::workload::{self, Proc, Recorder, Settings};
use raftq_client::{Client, ClientConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    pub workload: String,
    pub nemeses: Vec<String>,
    pub time_limit: Duration,
    pub seed: u64,
    pub store: PathBuf,
    pub raftq_bin: PathBuf,
    /// How long the final phase may take to drain the queue.
    pub drain_timeout: Duration,
    /// Keep the nodes' data directories after a valid run.
    pub keep_data: bool,
    /// How the `power` nemesis loses data.
    pub power_mode: PowerMode,
    /// Log entries between snapshots ([`crate::db::node_config`]).
    pub snapshot_every: u64,
}

/// How a power cut of the `power` nemesis loses data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerMode {
    /// Every node's data directory on lossyfs: everything not fsynced is dropped at the cut.
    Fs { tear: bool },
    /// RocksDB's un-synced-WAL simulation (`raftq node --power-loss-sim`): the WAL only.
    Wal,
}

impl Options {
    /// The test's name: workload, nemeses and node count.
    pub fn name(&self) -> String {
        let nem = if self.nemeses.is_empty() {
            "none".to_string()
        } else {
            self.nemeses.join("+")
        };
        format!("{}-{}-n{}", self.workload, nem, self.nodes)
    }
}

/// What a run decided and where its report is.
#[derive(Debug)]
pub struct Outcome {
    pub valid: Validity,
    pub dir: PathBuf,
    pub summary: String,
}

/// A history client's settings: the cluster's token and CA (`base`), short timeouts.
fn client_config(base: &ClientConfig, deadline: Duration) -> ClientConfig {
    ClientConfig {
        deadline,
        attempt_timeout: Duration::from_secs(1),
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..base.clone()
    }
}

/// Runs the test; every error before the checkers is a harness error (exit code 2).
///
/// The phases, in order: write the plan, start the cluster, start the workload's clients,
/// follow the fault schedule until the time limit, then the final phase (heal, drain, final
/// read, digests), stop the nodes and judge the history. The seeded generator is forked in
/// that order too (schedule, clients, nemesis, coordinator), so a seed gives the same run.
pub async fn run(o: Options) -> Result<Outcome, String> {
    let mut rng = Rng::new(o.seed);
    let plan = Plan::write(&o, &mut rng)?;
    let power = o.nemeses.iter().any(|n| n == "power");
    let normal = NodeOptions {
        clock_offset_ms: 0,
        power_loss: power && o.power_mode == PowerMode::Wal,
    };
    let run = Run::start(&o, &plan.dir, normal).await?;
    let clients = Clients::spawn(&o, &run, &mut rng)?;
    let mut nem_rng = rng.fork(2);
    for step in &plan.schedule {
        run.inject(step, &mut nem_rng).await;
    }
    tokio::time::sleep(o.time_limit.saturating_sub(run.rec.elapsed())).await;
    let log_files = run.final_phase(&o, clients, rng.fork(3)).await?;
    let rec = run.stop()?;

    let events = rec.events();
    let f = std::fs::File::create(plan.dir.join("history.jsonl")).map_err(|e| e.to_string())?;
    history::write_jsonl(&events, std::io::BufWriter::new(f)).map_err(|e| e.to_string())?;
    let (valid, summary) = judge(&plan.dir, &events, &plan.test, &log_files)?;
    if valid == Validity::True && !o.keep_data {
        for i in 0..o.nodes {
            let _ = std::fs::remove_dir_all(plan.dir.join(format!("node-{}", i + 1)));
            let backing = crate::db::backing_dir(&plan.dir, i);
            let _ = std::fs::remove_dir_all(crate::lossyfs::trash_of(&backing));
            let _ = std::fs::remove_dir_all(backing);
        }
    }
    Ok(Outcome {
        valid,
        dir: plan.dir,
        summary,
    })
}

/// What a run settles before it starts anything: its directory (`store/latest` points at
/// it), the fault schedule, and `test.json` that records both.
struct Plan {
    dir: PathBuf,
    schedule: Vec<nemesis::Step>,
    test: serde_json::Value,
}

impl Plan {
    fn write(o: &Options, rng: &mut Rng) -> Result<Plan, String> {
        let started = SystemTime::now();
        let dir = o.store.join(o.name()).join(utc_stamp(started));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        link_latest(&o.store, &dir);
        let schedule = nemesis::schedule(
            &o.nemeses,
            o.nodes,
            o.time_limit.as_millis() as u64,
            &mut rng.fork(1),
        );
        let test = json!({
            "name": o.name(),
            "nodes": o.nodes,
            "workload": o.workload,
            "nemesis": o.nemeses,
            "time_limit_s": o.time_limit.as_secs_f64(),
            "seed": o.seed,
            "power_mode": match o.power_mode {
                PowerMode::Fs { tear: false } => "fs",
                PowerMode::Fs { tear: true } => "fs+tear",
                PowerMode::Wal => "wal",
            },
            "git_revision": git_revision(),
            "raftq_bin": o.raftq_bin.display().to_string(),
            "started_unix_ms": started.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "node_config": crate::db::node_config(o.snapshot_every),
            "schedule": schedule,
        });
        write_json(&dir.join("test.json"), &test)?;
        eprintln!(
            "jepsen: {} seed {} for {} s, {} faults scheduled; report in {}",
            o.name(),
            o.seed,
            o.time_limit.as_secs(),
            schedule.len(),
            dir.display()
        );
        Ok(Plan {
            dir,
            schedule,
            test,
        })
    }
}

/// What the phases of a run share: the cluster (the nemesis and the final phase take turns
/// with it), the recorder of the history, and how to reach the nodes.
struct Run {
    cluster: Arc<Mutex<Cluster>>,
    rec: Arc<Recorder>,
    /// How nodes run when no fault is in force.
    normal: NodeOptions,
    /// The cluster's token and CA.
    client_base: ClientConfig,
    addrs: Vec<String>,
}

impl Run {
    /// Starts the nodes and waits for a leader; the history's clock starts then.
    async fn start(o: &Options, dir: &Path, normal: NodeOptions) -> Result<Run, String> {
        let tag = (std::process::id() ^ (o.seed as u32).wrapping_mul(2_654_435_761)) % 100_000;
        let lossy = match o.power_mode {
            PowerMode::Fs { tear } if o.nemeses.iter().any(|n| n == "power") => {
                Some(crate::db::Lossy {
                    exe: std::env::current_exe().map_err(|e| format!("finding myself: {e}"))?,
                    tear,
                    seed: o.seed,
                })
            }
            _ => None,
        };
        let config = crate::db::node_config(o.snapshot_every);
        let cluster = Cluster::start(
            o.nodes,
            tag,
            dir,
            &o.raftq_bin,
            &config,
            normal.clone(),
            lossy,
        )?;
        let client_base = cluster.client_config();
        let addrs = cluster.addrs();
        if cluster
            .wait_for_leader(Duration::from_secs(60))
            .await
            .is_none()
        {
            return Err("no leader within 60 s of starting the cluster; see the node logs".into());
        }
        Ok(Run {
            cluster: Arc::new(Mutex::new(cluster)),
            rec: Arc::new(Recorder::new()),
            normal,
            client_base,
            addrs,
        })
    }

    /// A client process of the history, talking to the nodes at `addrs`.
    fn proc_(
        &self,
        id: u64,
        node: u64,
        addrs: Vec<String>,
        deadline: Duration,
        rng: Rng,
    ) -> Result<Proc, String> {
        Ok(Proc {
            id,
            node,
            client: Client::new(addrs, client_config(&self.client_base, deadline))
                .map_err(|e| e.to_string())?,
            rec: self.rec.clone(),
            rng,
        })
    }

    /// An event of the nemesis' fault `name`.
    fn fault(&self, kind: Kind, name: &str, action: &str, detail: String, error: Option<String>) {
        record_fault(&self.rec, kind, name, action, detail, error);
    }

    /// One step of the schedule: waits for its time, starts the fault, keeps it for its
    /// duration and stops it (a fault that failed to start has nothing to stop).
    async fn inject(&self, step: &nemesis::Step, rng: &mut Rng) {
        let at = Duration::from_millis(step.at_ms);
        tokio::time::sleep(at.saturating_sub(self.rec.elapsed())).await;
        let name = step.fault.name();
        self.fault(Kind::Invoke, name, "start", String::new(), None);
        let mut c = self.cluster.lock().await;
        let active = match nemesis::start(&mut c, &step.fault, rng).await {
            Ok((active, detail)) => {
                eprintln!(
                    "jepsen: {:>6.1} s {name}: {detail}",
                    self.rec.elapsed().as_secs_f64()
                );
                self.fault(Kind::Ok, name, "start", detail, None);
                Some(active)
            }
            Err(e) => {
                self.fault(Kind::Fail, name, "start", String::new(), Some(e));
                None
            }
        };
        record_exits(&self.rec, &mut c);
        drop(c);
        tokio::time::sleep(Duration::from_millis(step.duration_ms)).await;
        if let Some(active) = active {
            self.fault(Kind::Invoke, name, "stop", String::new(), None);
            let mut c = self.cluster.lock().await;
            match nemesis::stop(&mut c, active, &self.normal).await {
                Ok(detail) => self.fault(Kind::Ok, name, "stop", detail, None),
                Err(e) => self.fault(Kind::Fail, name, "stop", String::new(), Some(e)),
            }
            record_exits(&self.rec, &mut c);
        }
    }

    /// Heals the network and every node (as the `heal` fault's start) and waits for a leader.
    async fn heal(&self) -> Result<(), String> {
        self.fault(Kind::Invoke, "heal", "start", String::new(), None);
        {
            let mut c = self.cluster.lock().await;
            c.net.heal()?;
            c.heal_processes(&self.normal)?;
            c.readd_removed().await?;
            record_exits(&self.rec, &mut c);
        }
        self.fault(
            Kind::Ok,
            "heal",
            "start",
            "network healed, every node running".into(),
            None,
        );
        let leader = self
            .cluster
            .lock()
            .await
            .wait_for_leader(Duration::from_secs(60))
            .await;
        if leader.is_none() {
            eprintln!("jepsen: no leader 60 s after healing");
        }
        Ok(())
    }

    /// The final phase: stop adding, heal, drain (kicking buried jobs) while the workers
    /// finish, read the final state and the replicas' digests. Returns the names of the node
    /// logs.
    async fn final_phase(
        &self,
        o: &Options,
        clients: Clients,
        rng: Rng,
    ) -> Result<Vec<String>, String> {
        clients.stop_adds.store(true, Ordering::Relaxed);
        for t in clients.add_tasks {
            let _ = t.await;
        }
        eprintln!(
            "jepsen: {:>6.1} s final phase: heal, kick, drain",
            self.rec.elapsed().as_secs_f64()
        );
        self.heal().await?;
        let coord = self.proc_(
            clients.procs as u64 + 1,
            0,
            self.addrs.clone(),
            Duration::from_secs(5),
            rng,
        )?;
        let drained = drain(&coord, o.drain_timeout).await;
        clients.stop_work.store(true, Ordering::Relaxed);
        for t in clients.work_tasks {
            let _ = t.await;
        }
        let outcome = if drained {
            "drained"
        } else {
            "drain timed out"
        };
        self.fault(Kind::Ok, "heal", "stop", outcome.into(), None);
        eprintln!(
            "jepsen: {:>6.1} s {outcome}; final read",
            self.rec.elapsed().as_secs_f64()
        );
        let mut read_ok = false;
        for _ in 0..5 {
            if workload::final_read(&coord).await.is_ok() {
                read_ok = true;
                break;
            }
        }
        if !read_ok {
            eprintln!("jepsen: the final read failed five times");
        }
        let digests = self.converged_digests().await;
        self.rec
            .record(NEMESIS, 0, Kind::Ok, Op::Digests { nodes: digests }, None);
        Ok(self.log_files().await)
    }

    /// The replicas' state digests once they agree, or as they are after 30 s: replicas
    /// converge once every node has applied the same log.
    async fn converged_digests(&self) -> Vec<(u64, Option<String>)> {
        let digest_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let d = self.cluster.lock().await.digests().await;
            let same = d.iter().all(|(_, x)| x.is_some() && *x == d[0].1);
            if same || tokio::time::Instant::now() >= digest_deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The names of the node logs.
    async fn log_files(&self) -> Vec<String> {
        let c = self.cluster.lock().await;
        (0..c.len())
            .map(|i| format!("node-{}.log", i + 1))
            .collect()
    }

    /// Stops the nodes and removes the namespaces (before checking); the history stays.
    fn stop(self) -> Result<Arc<Recorder>, String> {
        match Arc::try_unwrap(self.cluster) {
            Ok(c) => {
                // A node that died since it was last touched (e.g. one that could not start
                // again after the heal) is a crash too.
                let mut c = c.into_inner();
                record_exits(&self.rec, &mut c);
                drop(c)
            }
            Err(_) => return Err("cluster still in use after the run".into()),
        }
        Ok(self.rec)
    }
}

/// The workload's client tasks and the flags that stop them: adders first, then workers.
struct Clients {
    stop_adds: Arc<AtomicBool>,
    stop_work: Arc<AtomicBool>,
    add_tasks: Vec<tokio::task::JoinHandle<()>>,
    work_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// How many client processes there are (the coordinator is the next one).
    procs: usize,
}

impl Clients {
    /// Spawns the adders and workers, spread over the nodes; each gets its own generator.
    fn spawn(o: &Options, run: &Run, rng: &mut Rng) -> Result<Clients, String> {
        let settings = Settings::for_workload(&o.workload);
        let (adders, workers) = match o.workload.as_str() {
            "ordering" => (1, 1),
            "lease" => (2, o.nodes + 1),
            _ => (o.nodes, o.nodes),
        };
        let mut c = Clients {
            stop_adds: Arc::new(AtomicBool::new(false)),
            stop_work: Arc::new(AtomicBool::new(false)),
            add_tasks: Vec::new(),
            work_tasks: Vec::new(),
            procs: adders + workers,
        };
        for p in 0..adders + workers {
            let node = p % o.nodes;
            let proc_ = run.proc_(
                p as u64 + 1,
                node as u64 + 1,
                vec![run.addrs[node].clone()],
                Duration::from_secs(2),
                rng.fork(100 + p as u64),
            )?;
            if p < adders {
                c.add_tasks.push(tokio::spawn(workload::adder(
                    proc_,
                    settings,
                    c.stop_adds.clone(),
                )));
            } else {
                c.work_tasks.push(tokio::spawn(workload::worker(
                    proc_,
                    settings,
                    c.stop_work.clone(),
                    c.stop_adds.clone(),
                )));
            }
        }
        Ok(c)
    }
}

/// Kicks buried jobs until nothing is incomplete, or `timeout` passes; whether it drained.
async fn drain(coord: &Proc, timeout: Duration) -> bool {
    let drain_deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < drain_deadline {
        let _ = workload::kick_buried(coord).await;
        if let Ok(0) = workload::incomplete(coord).await {
            return true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

/// Records an event of the nemesis' fault `name`.
fn record_fault(
    rec: &Recorder,
    kind: Kind,
    name: &str,
    action: &str,
    detail: String,
    error: Option<String>,
) {
    let op = Op::Fault {
        name: name.into(),
        action: action.into(),
        detail,
    };
    rec.record(NEMESIS, 0, kind, op, error);
}

/// Records nodes that exited by themselves (crashes) as `crash` events of the nemesis.
fn record_exits(rec: &Recorder, c: &mut Cluster) {
    c.reap_exits();
    for detail in c.exits.drain(..) {
        eprintln!("jepsen: {:>6.1} s {detail}", rec.elapsed().as_secs_f64());
        record_fault(rec, Kind::Info, "crash", "detected", detail, None);
    }
}

/// Runs the checkers on `events` and writes `results.json` and the report into `dir`; returns
/// the verdict and a line per checker.
fn judge(
    dir: &Path,
    events: &[history::Event],
    test: &serde_json::Value,
    log_files: &[String],
) -> Result<(Validity, String), String> {
    let results = checker::check_all(events, true);
    let valid = checker::overall(&results);
    write_json(
        &dir.join("results.json"),
        &json!({ "valid": valid, "checkers": results }),
    )?;
    report::write(dir, events, &results, test, log_files).map_err(|e| e.to_string())?;
    let mut summary = String::new();
    for (name, v) in &results {
        summary.push_str(&format!("  {name:<22} {:?}\n", v.valid));
    }
    Ok((valid, summary))
}

/// Checks a stored run again (after a checker changed): reads `history.jsonl` and `test.json`
/// in `dir`, rewrites `results.json` and the report.
pub fn recheck(dir: &Path) -> Result<Outcome, String> {
    let open = |name: &str| {
        std::fs::File::open(dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let events = history::read_jsonl(std::io::BufReader::new(open("history.jsonl")?))
        .map_err(|e| e.to_string())?;
    let test: serde_json::Value =
        serde_json::from_reader(open("test.json")?).map_err(|e| format!("test.json: {e}"))?;
    let mut log_files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("node-") && n.ends_with(".log"))
        .collect();
    log_files.sort();
    let (valid, summary) = judge(dir, &events, &test, &log_files)?;
    Ok(Outcome {
        valid,
        dir: dir.to_path_buf(),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_run_is_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recheck(dir.path()).unwrap_err().contains("history.jsonl"));
        let events = vec![crate::checker::testkit::event(
            1,
            Kind::Invoke,
            crate::checker::testkit::add_op("a"),
            0,
        )];
        let f = std::fs::File::create(dir.path().join("history.jsonl")).unwrap();
        history::write_jsonl(&events, f).unwrap();
        write_json(&dir.path().join("test.json"), &json!({"name": "t"})).unwrap();
        std::fs::write(dir.path().join("node-1.log"), "").unwrap();
        let out = recheck(dir.path()).unwrap();
        // no final read: unknown
        assert_eq!(out.valid, Validity::Unknown);
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(r["valid"], "unknown");
        let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(html.contains("node-1.log"));
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_902_301); // 2026-11-28 21:45:01
        assert_eq!(utc_stamp(t), "20261128T214501Z");
    }
}
