//! `raftq down`: stop a cluster that `raftq up --detach` left running, by the pid files in its
//! directory (runners first, then nodes). Also the pid-file helpers `raftq up` writes with.

use anyhow::bail;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub(super) struct DownArgs {
    /// The directory given to `raftq up`.
    #[arg(long, default_value = "raftq-data")]
    dir: PathBuf,
}

/// The most nodes `raftq up` starts (so the most pid files to look for).
pub(super) const MAX_NODES: u64 = 9;

pub(super) async fn run(a: DownArgs) -> anyhow::Result<()> {
    let dir = &a.dir;
    if !dir.exists() {
        bail!(
            "{} does not exist; give the --dir used with `raftq up`",
            dir.display()
        );
    }
    let n = stop_nodes(dir, MAX_NODES).await;
    if n == 0 {
        println!("no running nodes found in {}", dir.display());
    } else {
        println!("stopped {n} node(s)");
    }
    Ok(())
}

/// `DIR/node-ID.pid`, written by `raftq up`.
pub(super) fn pid_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.pid"))
}

pub(super) fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists; no memory is touched.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn signal_pid(pid: i32, sig: i32) {
    // SAFETY: sends a signal to a process id we started; no memory is touched.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Stops the runners the local scheduler started (SIGTERM: each releases its job and exits).
pub(super) fn stop_runners(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for (id, path) in raftq_node::scheduler::registry_entries(&dir.join("runners")) {
        // Registry ids are the pids of the runners this host's scheduler started.
        let pid = id as i32;
        if process_alive(pid) {
            signal_pid(pid, libc::SIGTERM);
            pids.push(pid);
        }
        let _ = std::fs::remove_file(path);
    }
    pids
}

/// Waits up to 10 s for `pids` to exit.
async fn wait_exited(pids: &[i32]) {
    let all_exited = || async {
        match pids.iter().any(|p| process_alive(*p)) {
            true => Err(()),
            false => Ok(()),
        }
    };
    // Those still alive after it are the caller's to handle.
    let _ = raftq_local::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        all_exited,
    )
    .await;
}

/// Stops the runners, then SIGTERM to the nodes named by pid files 1..=max_id (SIGKILL after
/// 10 s); returns how many nodes were running.
async fn stop_nodes(dir: &Path, max_id: u64) -> usize {
    // Runners first, while the nodes can still take their releases.
    wait_exited(&stop_runners(dir)).await;
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
    wait_exited(&pids).await;
    for p in &pids {
        if process_alive(*p) {
            signal_pid(*p, libc::SIGKILL);
        }
    }
    pids.len()
}
