//! The runner scheduler: on the leader, turn ready jobs into runner processes.
//!
//! Every time jobs become ready (and at least once a second, at most every 50 ms) the leader
//! reads the queue ([`QueueView`]: ready and held jobs per scheduler group, limit groups,
//! whether reserving is open) and starts `raftq runner --group G` processes through a
//! [`Launcher`], as [`plan`] says:
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
//! [`bury_never_fit`]), logged once per group and batch, instead of leaving them ready.
//!
//! Runners are counted from a registry directory (one file per runner, named by its pid,
//! holding its group), not from memory: a new leader on the same host finds the runners the
//! old one started and adopts them instead of starting a second fleet. A round holds the
//! registry's lock ([`RegistryLock`]) while it counts and starts runners.
//!
//! ## Adding a scheduler
//! [`Launcher`] is the interface: `start(group, needs)` starts one runner for `group`
//! somewhere and returns an id for the registry; `alive(id)` says whether it still runs. The
//! local launcher forks processes; a batch-system launcher would run a command template such as
//! `sbatch --mem={ram_mb}M --cpus-per-task={cores} --wrap '{runner}'` and poll its job id.

use crate::node::Node;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// What one runner of a scheduler group needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub ram_mb: u64,
    pub cores_milli: u64,
}

/// What a runner of a scheduler group needs, read from the group
/// ([`queue_fsm::SchedGroup`]); a name that is not a group counts as no RAM and one core.
pub fn needs_of(group: &str) -> Needs {
    match queue_fsm::SchedGroup::parse(group) {
        Ok(g) => Needs {
            ram_mb: g.ram_mb,
            cores_milli: u64::from(g.cores_milli).max(1),
        },
        Err(_) => Needs {
            ram_mb: 0,
            cores_milli: 1000,
        },
    }
}

/// Why a runner could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("runner log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting a runner: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Starts runners somewhere and tells whether they still run.
pub trait Launcher: Send + Sync {
    /// Starts one runner for `group`; returns its id (a pid for local runners).
    fn start(&self, group: &str, needs: Needs) -> Result<u32, LaunchError>;
    fn alive(&self, id: u32) -> bool;
}

/// Forks `raftq runner` processes on this host.
pub struct LocalLauncher {
    pub exe: PathBuf,
    pub cluster: String,
    pub token_file: PathBuf,
    pub log_dir: PathBuf,
    pub idle_exit_s: u64,
    pub ttr_s: u64,
    pub kill_over_time: bool,
}

impl Launcher for LocalLauncher {
    fn start(&self, group: &str, _needs: Needs) -> Result<u32, LaunchError> {
        let path = self.log_dir.join("runners.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| LaunchError::Log {
                path: path.clone(),
                source,
            })?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("runner")
            .arg("--cluster")
            .arg(&self.cluster)
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--group")
            .arg(group)
            .arg("--idle-exit")
            .arg(format!("{}s", self.idle_exit_s))
            .arg("--ttr")
            .arg(format!("{}s", self.ttr_s))
            .args(self.kill_over_time.then_some("--kill-over-time"))
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|source| LaunchError::Log { path, source })?,
            )
            .stderr(log);
        {
            // Runners outlive the manager that started them (a new leader adopts them).
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(LaunchError::Spawn)?;
        let pid = child.id();
        // Reap it when it exits, so it does not linger as a zombie of this manager.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(pid)
    }

    fn alive(&self, id: u32) -> bool {
        // A zombie or a reused pid that is not a runner does not count. An empty command line
        // is a process in the middle of its exec: spawn() returns once the child has left the
        // parent's memory, before the kernel has set up its arguments, and for that moment
        // /proc/ID/cmdline reads empty. Counting such a runner as dead removed its entry
        // right after it started, and the next round started a second runner for its job.
        std::fs::read_to_string(format!("/proc/{id}/cmdline"))
            .map(|c| c.is_empty() || c.contains("runner"))
            .unwrap_or(false)
            && std::fs::read_to_string(format!("/proc/{id}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| !r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
    }
}

/// The runner registry's entries: (runner id, its file). A file `ID.runner` holds the
/// runner's scheduler group; anything else in the directory is not an entry.
pub fn registry_entries(dir: &Path) -> Vec<(u32, std::path::PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".runner")?.parse::<u32>().ok()?;
            Some((id, e.path()))
        })
        .collect()
}

/// Records runner `id` of `group` in the registry. The entry appears whole (written to a
/// temporary name, then renamed), so a concurrent scan never reads it empty.
pub fn register(dir: &Path, id: u32, group: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{id}.runner.tmp"));
    std::fs::write(&tmp, group)?;
    std::fs::rename(&tmp, dir.join(format!("{id}.runner")))
}

/// Exclusive use of a runner registry by one scheduler round: the managers of a host share
/// the registry, and for a moment two of them can both believe they lead. Without the lock
/// both would count the same runners and each start one for the same ready job; and one
/// could remove the entry of a dead runner just after the other registered a new runner that
/// got the same pid, so a live runner went uncounted. Released on drop.
pub struct RegistryLock {
    _file: std::fs::File,
}

impl RegistryLock {
    /// Waits for the lock of the registry in `dir`.
    pub fn take(dir: &Path) -> std::io::Result<RegistryLock> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RegistryLock { _file: file })
    }
}

/// Live runners per group, from the registry; entries of dead runners are removed.
pub fn live_runners(dir: &Path, launcher: &dyn Launcher) -> BTreeMap<String, u64> {
    live_and_ended(dir, launcher).0
}

/// Live runners per group, and the runners found dead (their entries removed): their group
/// and how long they lived (from the entry's age).
fn live_and_ended(
    dir: &Path,
    launcher: &dyn Launcher,
) -> (BTreeMap<String, u64>, Vec<(String, Duration)>) {
    let mut live = BTreeMap::new();
    let mut ended = Vec::new();
    for (id, path) in registry_entries(dir) {
        let group = std::fs::read_to_string(&path).unwrap_or_default();
        if launcher.alive(id) {
            *live.entry(group).or_default() += 1;
        } else {
            let lived = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if std::fs::remove_file(&path).is_ok() {
                ended.push((group, lived));
            }
        }
    }
    (live, ended)
}

fn host_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn host_ram_mb() -> u64 {
    raftq_runner::exec::host_memory_kb().map_or(1024, |(total_kb, _)| total_kb / 1024)
}

/// Rounds start at most this often, however often jobs become ready: a burst of applied
/// entries cannot turn the loop into a busy one.
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(50);
/// A round runs at least this often (runners exit, budgets free up without an entry).
const MAX_ROUND_INTERVAL: Duration = Duration::from_secs(1);
/// First and largest wait before a group whose runners exit early gets another runner.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Jobs that cannot fit buried per round (each costs a reserve and a bury).
const MAX_BURIES_PER_ROUND: usize = 1000;

/// What a round reads of the queue, in one read of the replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Reserving is open (not paused, not draining).
    pub open: bool,
    /// Ready jobs per scheduler group.
    pub ready: BTreeMap<String, u64>,
    /// Jobs held by runners per scheduler group (reserved, running, lost).
    pub held: BTreeMap<String, u64>,
    /// Limit groups: their limit and the slots their jobs hold.
    pub limits: BTreeMap<String, queue_fsm::LimitState>,
}

impl QueueView {
    fn read(
        f: &mut queue_fsm::Fsm<queue_fsm::RocksStore>,
    ) -> Result<QueueView, queue_fsm::StoreError> {
        Ok(QueueView {
            open: f.meta().reserving == queue_fsm::ReserveMode::Open,
            ready: f.ready_by_sched_group()?,
            held: f.held_by_sched_group()?,
            limits: f.limit_groups()?,
        })
    }
}

/// What the runners of this scheduler may use together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub cores_milli: u64,
    pub ram_mb: u64,
}

impl Budget {
    fn holds(&self, used: Needs, more: Needs) -> bool {
        used.cores_milli + more.cores_milli <= self.cores_milli
            && used.ram_mb + more.ram_mb <= self.ram_mb
    }
}

/// What one round does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Runners to start, one entry each.
    pub start: Vec<(String, Needs)>,
    /// Groups whose idle runners should exit now (their long polls end with no job), because
    /// another group waits for the cores or RAM they hold.
    pub yielding: BTreeSet<String>,
    /// Groups with ready jobs that need more than the whole budget: no runner here can ever
    /// take them, so they are buried with [`queue_fsm::FailReason::Resource`].
    pub never_fit: Vec<String>,
}

/// Free slots per limit group for new runners: a group's limit less what its jobs hold or
/// its live runners could take, whichever is more (an idle runner will take a slot as soon
/// as a job is ready). Unlimited groups are absent.
fn free_slots(q: &QueueView, running: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut live: BTreeMap<&str, u64> = BTreeMap::new();
    for (g, n) in running {
        for l in limits_of(g) {
            if let Some((name, _)) = q.limits.get_key_value(&l) {
                *live.entry(name.as_str()).or_default() += n;
            }
        }
    }
    q.limits
        .iter()
        .filter(|(_, s)| s.limit >= 0)
        .map(|(name, s)| {
            let taken = s.held.max(live.get(name.as_str()).copied().unwrap_or(0));
            (name.clone(), (s.limit as u64).saturating_sub(taken))
        })
        .collect()
}

fn limits_of(group: &str) -> Vec<String> {
    queue_fsm::SchedGroup::parse(group)
        .map(|g| g.limit_grps)
        .unwrap_or_default()
}

/// A group that wants runners this round.
struct Want {
    group: String,
    need: Needs,
    limits: Vec<String>,
    /// Runners still to start.
    more: u64,
    /// Runners it has (live ones and those planned so far): fewer goes first.
    share: u64,
}

/// How many runners to start per group, given what is ready, what runs, and the budget.
///
/// - Nothing while reserving is paused or draining (a runner would exit at once).
/// - A group gets at most one runner per ready job that no idle runner of its own will take
///   (idle runners = live runners − held jobs), and none while a limit group of it has no
///   free slot ([`free_slots`]).
/// - Freed capacity goes one runner at a time to the group with the fewest runners (ties by
///   name), so groups share it instead of the first name taking all. A group that does not
///   fit in what is left is passed over for smaller ones (backfill).
/// - `held_off` groups (backing off, see [`Backoffs`]) get none this round.
/// - When a group still waits for cores or RAM, the groups whose runners are idle with no
///   job they could take are asked to yield.
pub fn plan(
    q: &QueueView,
    running: &BTreeMap<String, u64>,
    budget: Budget,
    held_off: &BTreeSet<String>,
) -> Plan {
    let mut out = Plan::default();
    if !q.open {
        return out;
    }
    let mut used = Needs::default();
    for (g, n) in running {
        let need = needs_of(g);
        used.cores_milli += need.cores_milli * n;
        used.ram_mb += need.ram_mb * n;
    }
    let mut free = free_slots(q, running);
    let mut wants = Vec::new();
    for (g, n_ready) in &q.ready {
        let need = needs_of(g);
        if need.cores_milli > budget.cores_milli || need.ram_mb > budget.ram_mb {
            // Buried when one can be reserved: a limit-blocked group waits (no write per round).
            if takeable(q, g) {
                out.never_fit.push(g.clone());
            }
            continue;
        }
        let have = running.get(g).copied().unwrap_or(0);
        let idle = have.saturating_sub(q.held.get(g).copied().unwrap_or(0));
        let more = n_ready.saturating_sub(idle);
        if more > 0 && !held_off.contains(g) {
            wants.push(Want {
                group: g.clone(),
                need,
                limits: limits_of(g),
                more,
                share: have,
            });
        }
    }
    let slots_free =
        |free: &BTreeMap<String, u64>, w: &Want| w.limits.iter().all(|l| free.get(l) != Some(&0));
    loop {
        let next = wants
            .iter_mut()
            .filter(|w| w.more > 0 && slots_free(&free, w) && budget.holds(used, w.need))
            .min_by(|a, b| (a.share, &a.group).cmp(&(b.share, &b.group)));
        let Some(w) = next else { break };
        w.more -= 1;
        w.share += 1;
        used.cores_milli += w.need.cores_milli;
        used.ram_mb += w.need.ram_mb;
        for l in &w.limits {
            if let Some(n) = free.get_mut(l) {
                *n -= 1;
            }
        }
        out.start.push((w.group.clone(), w.need));
    }
    let waiting = wants.iter().any(|w| w.more > 0 && slots_free(&free, w));
    if waiting {
        out.yielding = running
            .iter()
            .filter(|(g, n)| **n > q.held.get(*g).copied().unwrap_or(0) && !takeable(q, g))
            .map(|(g, _)| g.clone())
            .collect();
    }
    out
}

/// Whether a runner of `group` could reserve a job now: one is ready and no limit group of
/// it is full (the queue's own rule at reserve).
fn takeable(q: &QueueView, group: &str) -> bool {
    q.ready.get(group).is_some_and(|n| *n > 0)
        && limits_of(group).iter().all(|l| {
            q.limits
                .get(l)
                .is_none_or(|s| s.limit < 0 || s.held < s.limit as u64)
        })
}

/// Per-group backoff for runners that exit early. A runner that ends before its idle time
/// is up without being asked to (it found the queue paused or draining, could not reach a
/// manager, or crashed) makes its group wait before the next start, twice as long each time
/// up to [`BACKOFF_MAX`]; one that lived its idle time out resets it. So a condition that
/// makes runners exit at once costs one start per backoff period, never a fork storm.
#[derive(Debug, Default)]
pub struct Backoffs {
    groups: BTreeMap<String, (Duration, Instant)>,
}

impl Backoffs {
    /// A runner of `group` ended after `lived`; `idle_exit` is how long an idle runner waits.
    pub fn ended(&mut self, group: &str, lived: Duration, idle_exit: Duration, now: Instant) {
        if lived >= idle_exit {
            self.groups.remove(group);
            return;
        }
        let delay = match self.groups.get(group) {
            Some((d, _)) => (*d * 2).min(BACKOFF_MAX),
            None => BACKOFF_MIN,
        };
        self.groups.insert(group.to_string(), (delay, now + delay));
    }

    /// Groups that must not get a runner at `now`.
    pub fn held_off(&self, now: Instant) -> BTreeSet<String> {
        self.groups
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(g, _)| g.clone())
            .collect()
    }
}

/// The leader-only loop; returns when the node's Raft stops.
pub async fn run(node: Arc<Node>, cfg: SchedulerConfig, launcher: Arc<dyn Launcher>, dir: PathBuf) {
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
                let p = plan(&q, &running, budget, &backoffs.held_off(now));
                if p.yielding != yielding && !p.yielding.is_empty() {
                    tracing::info!(groups = ?p.yielding, "idle runners of these groups make way for a group that waits");
                }
                yielding = p.yielding.clone();
                node.set_yielding(p.yielding);
                start_runners(&p.start, &dir, launcher.as_ref());
                drop(lock);
                bury_never_fit(&node, &p.never_fit, budget).await;
            }
        } else if !yielding.is_empty() {
            yielding.clear();
            node.set_yielding(BTreeSet::new());
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
fn start_runners(start: &[(String, Needs)], dir: &Path, launcher: &dyn Launcher) {
    for (group, needs) in start {
        match launcher.start(group, *needs) {
            Ok(id) => match register(dir, id, group) {
                Ok(()) => tracing::info!(group = %group, id, "started a runner"),
                Err(e) => {
                    tracing::warn!(group = %group, id, error = %e, "started a runner but cannot register it")
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_come_from_the_group_name() {
        assert_eq!(
            needs_of("2000:60:1500:0~db"),
            Needs {
                ram_mb: 2000,
                cores_milli: 1500
            }
        );
        assert_eq!(needs_of("100:30:0:0").cores_milli, 1);
    }

    fn map(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
        entries.iter().map(|(g, n)| (g.to_string(), *n)).collect()
    }

    fn open(ready: &[(&str, u64)]) -> QueueView {
        QueueView {
            open: true,
            ready: map(ready),
            ..QueueView::default()
        }
    }

    fn limit(limit: i64, held: u64) -> queue_fsm::LimitState {
        queue_fsm::LimitState { limit, held }
    }

    const CORES_4: Budget = Budget {
        cores_milli: 4000,
        ram_mb: 8000,
    };

    fn started(p: &Plan, prefix: &str) -> usize {
        p.start
            .iter()
            .filter(|(g, _)| g.starts_with(prefix))
            .count()
    }

    #[test]
    fn plan_respects_ready_running_and_budget() {
        let mut q = open(&[("1000:60:1000:0", 5), ("4000:60:2000:0", 3)]);
        let running = map(&[("1000:60:1000:0", 1)]);
        let none = BTreeSet::new();
        // 4 cores, 8 GB, one small runner idle (it holds no job): it takes one of the 5, so
        // 4 more small ones are wanted; the big group (fewer runners) goes first
        let p = plan(&q, &running, CORES_4, &none);
        assert_eq!(started(&p, "4000:"), 1);
        assert_eq!(started(&p, "1000:"), 1, "3 cores left: one big, one small");
        // the idle runner is busy after all: one more small one is wanted
        q.held = map(&[("1000:60:1000:0", 1)]);
        let p = plan(&q, &running, CORES_4, &none);
        assert_eq!((started(&p, "4000:"), started(&p, "1000:")), (1, 1));
        // nothing ready → nothing started
        assert!(plan(&open(&[]), &running, CORES_4, &none).start.is_empty());
        // never more runners than ready jobs
        let big = Budget {
            cores_milli: 100_000,
            ram_mb: 100_000,
        };
        assert_eq!(plan(&q, &BTreeMap::new(), big, &none).start.len(), 8);
    }

    #[test]
    fn one_ready_job_gets_one_runner_across_rounds() {
        let q = open(&[("100:30:1000:0", 1)]);
        let none = BTreeSet::new();
        let p = plan(&q, &BTreeMap::new(), CORES_4, &none);
        assert_eq!(p.start.len(), 1);
        // next round: the runner is registered but has not reserved yet
        let running = map(&[("100:30:1000:0", 1)]);
        assert!(plan(&q, &running, CORES_4, &none).start.is_empty());
    }

    #[test]
    fn plan_starts_nothing_while_paused_or_draining() {
        let mut q = open(&[("100:30:1000:0", 3)]);
        q.open = false;
        assert_eq!(
            plan(&q, &BTreeMap::new(), CORES_4, &BTreeSet::new()),
            Plan::default()
        );
    }

    #[test]
    fn limit_blocked_groups_get_no_runners_and_others_share_fairly() {
        // the case: two groups blocked by their limits, sorted before the others
        let mut q = open(&[
            ("100:30:1000:0~hold0", 4),
            ("100:30:1000:0~hold2", 4),
            ("100:30:1000:0~free", 4),
            ("200:30:1000:0", 4),
        ]);
        q.limits = [
            ("hold0".to_string(), limit(0, 0)),
            ("hold2".to_string(), limit(2, 2)),
            ("free".to_string(), limit(-1, 0)),
        ]
        .into();
        q.held = map(&[("100:30:1000:0~hold2", 2)]);
        let running = map(&[("100:30:1000:0~hold2", 2)]);
        let p = plan(&q, &running, CORES_4, &BTreeSet::new());
        assert_eq!(started(&p, "100:30:1000:0~hold"), 0, "{p:?}");
        assert_eq!(started(&p, "100:30:1000:0~free"), 1);
        assert_eq!(
            started(&p, "200:"),
            1,
            "the two free groups share the two cores"
        );
        // a limit of 3 with 1 held and 1 idle runner leaves room for one more runner
        q.limits.insert("hold2".into(), limit(3, 1));
        q.held = map(&[("100:30:1000:0~hold2", 1)]);
        let p = plan(&q, &running, CORES_4, &BTreeSet::new());
        assert_eq!(
            started(&p, "100:30:1000:0~hold2"),
            0,
            "the idle runner takes the slot"
        );
        let many = Budget {
            cores_milli: 100_000,
            ram_mb: 100_000,
        };
        let p = plan(&q, &BTreeMap::new(), many, &BTreeSet::new());
        assert_eq!(started(&p, "100:30:1000:0~hold2"), 2, "3 - 1 held");
    }

    #[test]
    fn freed_capacity_goes_to_the_group_with_fewest_runners() {
        let q = open(&[("100:30:1000:0~a", 10), ("100:30:1000:0~b", 10)]);
        let running = map(&[("100:30:1000:0~a", 3)]);
        let mut q2 = q.clone();
        q2.held = running.clone();
        let p = plan(&q2, &running, CORES_4, &BTreeSet::new());
        assert_eq!(
            p.start,
            vec![("100:30:1000:0~b".to_string(), needs_of("100:30:1000:0~b"))]
        );
    }

    #[test]
    fn idle_runners_yield_when_another_group_waits() {
        // two idle runners of a group with nothing ready hold both cores
        let mut q = open(&[("100:30:1000:0~b", 1)]);
        let running = map(&[("100:30:1000:0~a", 2)]);
        let two = Budget {
            cores_milli: 2000,
            ram_mb: 8000,
        };
        let p = plan(&q, &running, two, &BTreeSet::new());
        assert!(p.start.is_empty());
        assert_eq!(p.yielding, ["100:30:1000:0~a".to_string()].into());
        // busy runners do not yield
        q.held = map(&[("100:30:1000:0~a", 2)]);
        assert!(plan(&q, &running, two, &BTreeSet::new())
            .yielding
            .is_empty());
        // nobody waits: idle runners stay for their idle time
        let q = open(&[]);
        assert!(plan(&q, &running, two, &BTreeSet::new())
            .yielding
            .is_empty());
    }

    #[test]
    fn jobs_bigger_than_the_budget_never_fit() {
        let q = open(&[
            ("100000:30:1000:0", 1),
            ("100:30:3000:0", 1),
            ("100:30:1000:0", 1),
        ]);
        let two = Budget {
            cores_milli: 2000,
            ram_mb: 8000,
        };
        let p = plan(&q, &BTreeMap::new(), two, &BTreeSet::new());
        assert_eq!(
            p.never_fit,
            vec!["100000:30:1000:0".to_string(), "100:30:3000:0".to_string()]
        );
        assert_eq!(p.start.len(), 1);
        // one whose limit group is full is left until a job of it can be reserved
        let mut q = open(&[("100:30:3000:0~l", 1)]);
        q.limits
            .insert("l".into(), queue_fsm::LimitState { limit: 1, held: 1 });
        assert!(plan(&q, &BTreeMap::new(), two, &BTreeSet::new())
            .never_fit
            .is_empty());
    }

    #[test]
    fn early_exits_back_off_and_a_full_idle_time_resets() {
        let mut b = Backoffs::default();
        let t0 = Instant::now();
        let idle = Duration::from_secs(30);
        b.ended("g", Duration::from_millis(5), idle, t0);
        assert!(b.held_off(t0).contains("g"));
        assert!(!b.held_off(t0 + BACKOFF_MIN).contains("g"));
        b.ended("g", Duration::from_millis(5), idle, t0);
        assert!(b.held_off(t0 + BACKOFF_MIN).contains("g"), "doubled");
        for _ in 0..20 {
            b.ended("g", Duration::from_millis(5), idle, t0);
        }
        assert!(!b.held_off(t0 + BACKOFF_MAX).contains("g"), "capped");
        b.ended("g", idle, idle, t0);
        assert!(b.held_off(t0).is_empty());
        // the held-off group gets no runner
        let q = open(&[("g", 1)]);
        let p = plan(&q, &BTreeMap::new(), CORES_4, &["g".to_string()].into());
        assert!(p.start.is_empty());
    }

    #[test]
    fn a_started_runner_is_counted_at_once_and_its_entry_kept_while_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("fake-raftq");
        std::fs::write(&exe, "#!/bin/sh\nsleep 30\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let launcher = LocalLauncher {
            exe,
            cluster: "127.0.0.1:1".into(),
            token_file: dir.path().join("token"),
            log_dir: dir.path().to_path_buf(),
            idle_exit_s: 30,
            ttr_s: 60,
            kill_over_time: false,
        };
        let reg = dir.path().join("runners");
        std::fs::create_dir_all(&reg).unwrap();
        // the check right after each start is the one that once failed (a runner mid-exec)
        let mut ids = Vec::new();
        for n in 1..=10 {
            let id = launcher.start("g", Needs::default()).unwrap();
            register(&reg, id, "g").unwrap();
            ids.push(id);
            let (live, ended) = live_and_ended(&reg, &launcher);
            assert_eq!(live, map(&[("g", n)]), "a live runner is counted");
            assert!(ended.is_empty());
        }
        for id in &ids {
            // SAFETY: a signal to a process group this test started (the runner leads it).
            unsafe { libc::kill(-(*id as i32), libc::SIGKILL) };
        }
        let mut ended = 0;
        for _ in 0..200 {
            ended += live_and_ended(&reg, &launcher).1.len();
            if ended == ids.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ended, ids.len());
        assert!(
            registry_entries(&reg).is_empty(),
            "a dead runner's entry goes"
        );
    }
}
