//! The runner scheduler: on the leader, turn ready jobs into runner processes.
//!
//! Every time jobs become ready (and at least once a second) the leader reads how many jobs are
//! ready per scheduler group and starts `raftq runner --group G` processes through a
//! [`Launcher`], within a budget of cores and RAM, at most one runner per ready job. Runners
//! exit by themselves when idle.
//!
//! Runners are counted from a registry directory (one file per runner, named by its pid,
//! holding its group), not from memory: a new leader on the same host finds the runners the
//! old one started and adopts them instead of starting a second fleet.
//!
//! ## Adding a scheduler
//! [`Launcher`] is the interface: `start(group, needs)` starts one runner for `group`
//! somewhere and returns an id for the registry; `alive(id)` says whether it still runs. The
//! local launcher forks processes; a batch-system launcher would run a command template such as
//! `sbatch --mem={ram_mb}M --cpus-per-task={cores} --wrap '{runner}'` and poll its job id.

use crate::node::Node;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// The cluster CA the runners trust (`--ca-file`) when the managers speak TLS.
    pub ca_file: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub idle_exit_s: u64,
    pub ttr_s: u64,
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
            .arg(&self.token_file);
        if let Some(ca) = &self.ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd.arg("--group")
            .arg(group)
            .arg("--idle-exit")
            .arg(format!("{}s", self.idle_exit_s))
            .arg("--ttr")
            .arg(format!("{}s", self.ttr_s))
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
        // A zombie or a reused pid that is not a runner does not count.
        std::fs::read_to_string(format!("/proc/{id}/cmdline"))
            .map(|c| c.contains("runner"))
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

/// Live runners per group, from the registry; entries of dead runners are removed.
pub fn live_runners(dir: &Path, launcher: &dyn Launcher) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (id, path) in registry_entries(dir) {
        if launcher.alive(id) {
            let group = std::fs::read_to_string(&path).unwrap_or_default();
            *out.entry(group).or_default() += 1;
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    out
}

fn host_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn host_ram_mb() -> u64 {
    raftq_runner::exec::host_memory_kb().map_or(1024, |(total_kb, _)| total_kb / 1024)
}

/// How many runners to start per group, given what is ready, what runs, and the budget.
pub fn plan(
    ready: &BTreeMap<String, u64>,
    running: &BTreeMap<String, u64>,
    max_cores_milli: u64,
    max_ram_mb: u64,
) -> Vec<(String, Needs)> {
    let mut used = Needs::default();
    for (g, n) in running {
        let need = needs_of(g);
        used.cores_milli += need.cores_milli * n;
        used.ram_mb += need.ram_mb * n;
    }
    let mut out = Vec::new();
    for (g, n_ready) in ready {
        let need = needs_of(g);
        let mut have = running.get(g).copied().unwrap_or(0);
        while have < *n_ready
            && used.cores_milli + need.cores_milli <= max_cores_milli
            && used.ram_mb + need.ram_mb <= max_ram_mb
        {
            used.cores_milli += need.cores_milli;
            used.ram_mb += need.ram_mb;
            have += 1;
            out.push((g.clone(), need));
        }
    }
    out
}

/// The leader-only loop; returns when the node's Raft stops.
pub async fn run(node: Arc<Node>, cfg: SchedulerConfig, launcher: Arc<dyn Launcher>, dir: PathBuf) {
    let max_cores_milli = cfg.max_cores.unwrap_or_else(host_cores) as u64 * 1000;
    let max_ram_mb = cfg.max_ram_mb.unwrap_or_else(|| host_ram_mb() * 9 / 10);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(error = %e, dir = %dir.display(), "scheduler: cannot create the runner registry");
        return;
    }
    let mut ready_rx = node.ready_changes();
    let mut views = node.view_changes();
    loop {
        let _ = *ready_rx.borrow_and_update();
        let _ = *views.borrow_and_update();
        if node.view().leading {
            // A store error is recorded (logged, counted, shown by `cluster status`) by the
            // read; this round starts nothing and the next one reads again.
            let ready = node
                .read("ready jobs per scheduler group", |f| {
                    f.ready_by_sched_group()
                })
                .await
                .unwrap_or_default();
            if !ready.is_empty() {
                start_runners(&ready, &dir, launcher.as_ref(), max_cores_milli, max_ram_mb);
            }
        }
        tokio::select! {
            r = ready_rx.changed() => if r.is_err() { return; },
            r = views.changed() => if r.is_err() { return; },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Starts what [`plan`] says for `ready`, and registers each runner started.
fn start_runners(
    ready: &BTreeMap<String, u64>,
    dir: &Path,
    launcher: &dyn Launcher,
    max_cores_milli: u64,
    max_ram_mb: u64,
) {
    let running = live_runners(dir, launcher);
    for (group, needs) in plan(ready, &running, max_cores_milli, max_ram_mb) {
        match launcher.start(&group, needs) {
            Ok(id) => {
                let _ = std::fs::write(dir.join(format!("{id}.runner")), &group);
                tracing::info!(group = %group, id, "started a runner");
            }
            Err(e) => tracing::warn!(group = %group, error = %e, "cannot start a runner"),
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

    #[test]
    fn plan_respects_ready_running_and_budget() {
        let ready: BTreeMap<String, u64> = [
            ("1000:60:1000:0".to_string(), 5),
            ("4000:60:2000:0".to_string(), 3),
        ]
        .into();
        let running: BTreeMap<String, u64> = [("1000:60:1000:0".to_string(), 1)].into();
        // 4 cores, 8 GB: one small runs (1 core, 1 GB); room for 3 more cores
        let p = plan(&ready, &running, 4000, 8000);
        let small = p.iter().filter(|(g, _)| g.starts_with("1000:")).count();
        assert_eq!(small, 3);
        assert_eq!(p.len(), 3, "no room left for a 2-core runner");
        // nothing ready → nothing started
        assert!(plan(&BTreeMap::new(), &running, 4000, 8000).is_empty());
        // never more runners than ready jobs
        let p = plan(&ready, &BTreeMap::new(), 100_000, 100_000);
        assert_eq!(p.len(), 8);
    }
}
