//! The runner scheduler: on the leader, turn ready jobs into runner processes.
//!
//! Every time jobs become ready (and at least once a second, at most every 50 ms) the leader
//! reads the queue ([`QueueView`]: ready and held jobs per scheduler group, limit groups,
//! whether reserving is open) and starts `raftq runner --group G` processes through a
//! [`Launcher`], as [`plan()`](plan::plan) says:
//! - only for groups that can run now: none while reserving is paused or draining, none for a
//!   group whose limit group is full or 0;
//! - at most one runner per ready job that no idle runner of the group will take;
//! - within a budget of cores and RAM, shared by the groups one runner at a time, fewest
//!   runners first (not in name order);
//! - a group whose runners exit early (paused queue, unreachable managers) is held off with a
//!   doubling backoff ([`Backoffs`]), so nothing loops.
//!
//! Idle runners: a runner waits `idle_exit_s` for a job of its group and then exits. While
//! another group waits for the cores or RAM that idle runners hold, the leader ends those
//! runners' waits at once ([`Node::set_yielding`]: their long polls return no job, and a
//! runner that gets no job exits), and starts the waiting group's runners in the next round.
//! Ending them is simpler than reusing them for another group: a runner is sized for its
//! group, and a wait that ends without a job interrupts nothing.
//!
//! Jobs that need more cores or RAM than the whole budget can never run here: the leader
//! buries them with [`queue_fsm::FailReason::Resource`] (through Raft, see
//! `bury_never_fit`), logged once per group and batch, instead of leaving them ready.
//!
//! Runners are counted from a registry directory (one file per runner, named by its pid,
//! holding its group), not from memory: a new leader on the same host finds the runners the
//! old one started and adopts them instead of starting a second fleet. A round holds the
//! registry's lock ([`RegistryLock`]) while it counts and starts runners.
//!
//! ## Layout
//! - [`plan`](mod@plan): what a round does, from what it read: [`plan()`](plan::plan), [`Backoffs`].
//! - [`registry`]: the [`Launcher`] interface, the local launcher, and the runner registry.
//! - this file: the settings and the leader-only loop that reads, plans, starts and buries.
//!
//! ## Adding a scheduler
//! [`Launcher`] is the interface: `start(group, needs)` starts one runner for `group`
//! somewhere and returns an id for the registry; `alive(id)` says whether it still runs. The
//! local launcher forks processes; a batch-system launcher would run a command template such as
//! `sbatch --mem={ram_mb}M --cpus-per-task={cores} --wrap '{runner}'` and poll its job id.

pub mod plan;
pub mod registry;

pub use plan::{needs_of, plan, Backoffs, Budget, Needs, Plan, QueueView};
pub use registry::{
    live_runners, register, registry_entries, LaunchError, Launcher, LocalLauncher, RegistryLock,
};

use crate::node::Node;
use registry::live_and_ended;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the local scheduler.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Start runners for ready jobs (off by default; `raftq up` turns it on).
    pub enabled: bool,
    /// Cores the runners may use together (default: all of this host's).
    pub max_cores: Option<u32>,
    /// RAM the runners' jobs may use together, MB (default: 90% of this host's).
    pub max_ram_mb: Option<u64>,
    /// Registry of live runners, shared by the managers of one host (default
    /// `DATA_DIR/runners`).
    pub runner_dir: Option<PathBuf>,
    /// A runner exits after waiting this long for a job.
    pub idle_exit_s: u64,
    /// Runners' TTR.
    pub ttr_s: u64,
    /// Runners stop jobs that run past their time (`raftq runner --kill-over-time`); off:
    /// a job's time is an estimate for scheduling, not a limit.
    pub kill_over_time: bool,
}

impl SchedulerConfig {
    /// Each field within what a host and a runner can use; the error names the field.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let bad = |field: &str, problem: &str| crate::config::ConfigError::Invalid {
            field: format!("scheduler.{field}"),
            problem: problem.into(),
        };
        if self.max_cores == Some(0) {
            return Err(bad("max_cores", "must be at least 1 (or unset: all cores)"));
        }
        if self.max_ram_mb == Some(0) {
            return Err(bad(
                "max_ram_mb",
                "must be at least 1 (or unset: 90% of RAM)",
            ));
        }
        if !(1..=600).contains(&self.idle_exit_s) {
            return Err(bad(
                "idle_exit_s",
                "must be 1 to 600 (a runner's reserve waits 10 minutes at most)",
            ));
        }
        let (min, max) = (
            queue_fsm::limits::MIN_TTR_MS / 1000,
            queue_fsm::limits::MAX_TTR_MS / 1000,
        );
        if !(min..=max).contains(&self.ttr_s) {
            return Err(bad("ttr_s", &format!("must be {min} to {max}")));
        }
        Ok(())
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: false,
            max_cores: None,
            max_ram_mb: None,
            runner_dir: None,
            idle_exit_s: 30,
            ttr_s: 60,
            kill_over_time: false,
        }
    }
}

fn host_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn host_ram_mb() -> u64 {
    raftq_runner::exec::host_memory_kb().map_or(1024, |(total_kb, _)| total_kb / 1024)
}

/// What the scheduler did, for `/metrics`: runners it started per scheduler group since this
/// node started, and those live at its last round as leader (empty while it does not lead).
#[derive(Default)]
pub struct RunnerStats {
    counts: Mutex<RunnerCounts>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerCounts {
    pub started: BTreeMap<String, u64>,
    pub running: BTreeMap<String, u64>,
}

impl RunnerStats {
    pub fn snapshot(&self) -> RunnerCounts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_running(&self, running: BTreeMap<String, u64>) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running = running;
    }

    fn started(&self, group: &str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .started
            .entry(group.to_string())
            .or_default() += 1;
    }
}

/// Rounds start at most this often, however often jobs become ready: a burst of applied
/// entries cannot turn the loop into a busy one.
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(50);
/// A round runs at least this often (runners exit, budgets free up without an entry).
const MAX_ROUND_INTERVAL: Duration = Duration::from_secs(1);
/// Jobs that cannot fit buried per round (each costs a reserve and a bury).
const MAX_BURIES_PER_ROUND: usize = 1000;

/// The leader-only loop; returns when the node's Raft stops.
pub async fn run(
    node: Arc<Node>,
    cfg: SchedulerConfig,
    launcher: Arc<dyn Launcher>,
    dir: PathBuf,
    stats: Arc<RunnerStats>,
) {
    let budget = Budget {
        cores_milli: cfg.max_cores.unwrap_or_else(host_cores) as u64 * 1000,
        ram_mb: cfg.max_ram_mb.unwrap_or_else(|| host_ram_mb() * 9 / 10),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(error = %e, dir = %dir.display(), "scheduler: cannot create the runner registry");
        return;
    }
    let mut ready_rx = node.ready_changes();
    let mut views = node.view_changes();
    let mut backoffs = Backoffs::default();
    let mut yielding = BTreeSet::new();
    let idle_exit = Duration::from_secs(cfg.idle_exit_s);
    loop {
        let _ = *ready_rx.borrow_and_update();
        let _ = *views.borrow_and_update();
        let round_start = tokio::time::Instant::now();
        if node.view().leading {
            // A store error is recorded (logged, counted, shown by `cluster status`) by the
            // read; this round starts nothing and the next one reads again.
            if let Ok(q) = node.read("the scheduler's view", QueueView::read).await {
                let now = Instant::now();
                let lock = match RegistryLock::take(&dir) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, dir = %dir.display(), "scheduler: cannot lock the runner registry");
                        tokio::time::sleep(MAX_ROUND_INTERVAL).await;
                        continue;
                    }
                };
                let (running, ended) = live_and_ended(&dir, launcher.as_ref());
                for (group, lived) in ended {
                    // A runner asked to yield ended early on purpose.
                    if !yielding.contains(&group) {
                        backoffs.ended(&group, lived, idle_exit, now);
                    }
                }
                stats.set_running(running.clone());
                let p = plan(&q, &running, budget, &backoffs.held_off(now));
                if p.yielding != yielding && !p.yielding.is_empty() {
                    tracing::info!(groups = ?p.yielding, "idle runners of these groups make way for a group that waits");
                }
                yielding = p.yielding.clone();
                node.set_yielding(p.yielding);
                start_runners(&p.start, &dir, launcher.as_ref(), &stats);
                drop(lock);
                bury_never_fit(&node, &p.never_fit, budget).await;
            }
        } else {
            stats.set_running(BTreeMap::new());
            if !yielding.is_empty() {
                yielding.clear();
                node.set_yielding(BTreeSet::new());
            }
        }
        tokio::time::sleep_until(round_start + MIN_ROUND_INTERVAL).await;
        tokio::select! {
            r = ready_rx.changed() => if r.is_err() { return; },
            r = views.changed() => if r.is_err() { return; },
            _ = tokio::time::sleep(MAX_ROUND_INTERVAL) => {}
        }
    }
}

/// Starts the runners of a plan, and registers each.
fn start_runners(
    start: &[(String, Needs)],
    dir: &Path,
    launcher: &dyn Launcher,
    stats: &RunnerStats,
) {
    for (group, needs) in start {
        match launcher.start(group, *needs) {
            Ok(id) => {
                stats.started(group);
                match register(dir, id, group) {
                    Ok(()) => tracing::info!(group = %group, id, "started a runner"),
                    Err(e) => {
                        tracing::warn!(group = %group, id, error = %e, "started a runner but cannot register it")
                    }
                }
            }
            Err(e) => tracing::warn!(group = %group, error = %e, "cannot start a runner"),
        }
    }
}

/// Buries the ready jobs of groups that need more than the whole budget, with the resource
/// fail reason: through Raft, as a reserve of the group's first job (the leader acting as a
/// runner) and a bury of that reservation, so the queue's rules stay the queue's. A leader
/// that dies between the two leaves a reservation that expires; the next leader buries the
/// job then.
async fn bury_never_fit(node: &Node, groups: &[String], budget: Budget) {
    use queue_fsm::{Command, FailReason, HandBack, Request, Response, RunnerId};
    let mut left = MAX_BURIES_PER_ROUND;
    for group in groups {
        let mut buried = 0u64;
        while left > 0 {
            left -= 1;
            let reserve = Command::Reserve {
                runner: RunnerId(0),
                group: Some(group.clone()),
                ttr_ms: queue_fsm::limits::MIN_TTR_MS * 60,
            };
            let (key, fence) = match node.propose(Request::new(None, reserve)).await {
                Ok(Ok(Response::Reserved { job, fence })) => (job.key, fence),
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(group = %group, error = %e, "cannot reserve a job to bury it");
                    break;
                }
            };
            let bury = Command::Bury(HandBack {
                key,
                fence,
                report: None,
                reason: FailReason::Resource.as_str().into(),
            });
            match node.propose(Request::new(None, bury)).await {
                Ok(Ok(_)) => buried += 1,
                Ok(Err(e)) => {
                    tracing::warn!(key = %key, error = %e, "cannot bury a job that cannot fit")
                }
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot bury a job that cannot fit");
                    break;
                }
            }
        }
        if buried > 0 {
            let need = needs_of(group);
            tracing::warn!(
                group = %group,
                buried,
                ram_mb = need.ram_mb,
                cores_milli = need.cores_milli,
                budget_ram_mb = budget.ram_mb,
                budget_cores_milli = budget.cores_milli,
                "buried jobs that need more than this host's runners may use: {}",
                FailReason::Resource
            );
        }
    }
}
