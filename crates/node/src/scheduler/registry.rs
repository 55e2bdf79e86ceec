//! Starting runners and knowing which still run: the [`Launcher`] interface, the launcher
//! that forks local `raftq runner` processes, and the registry directory (one file per
//! runner, `ID.runner`, holding its scheduler group) shared by the managers of a host.

use super::plan::Needs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
            .args(
                self.ca_file
                    .iter()
                    .flat_map(|ca| [std::ffi::OsStr::new("--ca-file"), ca.as_os_str()]),
            )
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
pub(super) fn live_and_ended(
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

#[cfg(test)]
mod tests {
    use super::*;

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
            ca_file: None,
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
            assert_eq!(
                live,
                BTreeMap::from([("g".to_string(), n)]),
                "a live runner is counted"
            );
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
