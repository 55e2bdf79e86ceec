//! The launcher with a fake `raftq`: the command line it builds, the wrapper, joiners,
//! restarts with other arguments, and the signals (no raftq build needed).

use raftq_local::{wait_for, LaunchError, LocalCluster};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// A cluster whose "nodes" are a shell script that records its arguments and sleeps, so
/// that the command line, the wrapper and the signals can be checked without a raftq
/// build. As `raftq cert ca|node --dir DIR ...` it writes a placeholder CA file and succeeds.
fn fake(dir: &Path) -> LocalCluster {
    let exe = dir.join("fake-raftq");
    std::fs::write(
        &exe,
        "#!/bin/sh\nif [ \"$1\" = cert ]; then mkdir -p \"$4\" && echo fake > \"$4/ca.pem\"; \
         exit; fi\necho \"args: $*\"\nexec sleep 60\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let addrs = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
    LocalCluster::new(exe, dir, addrs, "heartbeat_ms = 100\n").unwrap()
}

/// The node's log once the fake wrote its arguments there.
async fn log_of(c: &LocalCluster, id: u64) -> String {
    let path = c.log_path(id);
    wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        async move {
            if log.contains("args:") {
                Ok(log)
            } else {
                Err(log)
            }
        }
    })
    .await
    .unwrap_or_else(|log| panic!("node {id} wrote no arguments: {log:?}"))
}

#[tokio::test]
async fn start_passes_identity_settings_peers_and_extra_args() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = fake(dir.path());
    c.node_mut(2).unwrap().args = vec!["--power-loss-sim".into()];
    c.start_all().unwrap();
    let config = std::fs::read_to_string(dir.path().join("node.toml")).unwrap();
    assert!(config.starts_with("token_file = "), "{config}");
    assert!(config.ends_with("heartbeat_ms = 100\n"), "{config}");
    let log = log_of(&c, 2).await;
    assert!(log.contains("node --config "), "{log}");
    assert!(
        log.contains(" --id 2 --listen 127.0.0.1:2 --http 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains(" --data-dir "), "{log}");
    assert!(log.contains(" --tls-cert-file="), "TLS by default: {log}");
    assert!(
        log.contains("--power-loss-sim --peers 1=127.0.0.1:1,2=127.0.0.1:2"),
        "{log}"
    );
    assert!(!log_of(&c, 1).await.contains("--power-loss-sim"));
}

#[tokio::test]
async fn a_joiner_gets_no_peers_and_a_wrapper_runs_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = fake(dir.path());
    let id = c.add_joiner().unwrap();
    assert_eq!(id, 3);
    // `env` execs its arguments, as `ip netns exec NS` does.
    c.node_mut(id).unwrap().wrapper = vec!["env".into(), "RAFTQ_FAKE=1".into()];
    c.start(id).unwrap();
    let log = log_of(&c, id).await;
    assert!(log.contains(" --id 3 "), "{log}");
    assert!(!log.contains("--peers"), "{log}");
}

#[tokio::test]
async fn start_twice_is_an_error_and_restart_changes_the_args() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = fake(dir.path());
    c.start(1).unwrap();
    assert!(matches!(c.start(1), Err(LaunchError::AlreadyRunning(1))));
    assert!(matches!(c.start(9), Err(LaunchError::NoNode(9))));
    let first = c.node(1).unwrap().pid();
    c.restart_with(1, vec!["--clock-offset-ms=-5".into()])
        .unwrap();
    assert_ne!(c.node(1).unwrap().pid(), first);
    assert_eq!(c.node(1).unwrap().args, vec!["--clock-offset-ms=-5"]);
}

#[tokio::test]
async fn pause_resume_kill_and_reap() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = fake(dir.path());
    c.start_all().unwrap();
    c.pause(1);
    assert!(c.node(1).unwrap().paused());
    c.resume(1);
    assert!(!c.node(1).unwrap().paused());
    c.pause(1);
    c.kill(1);
    assert!(!c.node(1).unwrap().running() && !c.node(1).unwrap().paused());
    assert!(c.reap_exits().is_empty(), "a killed node is not a crash");
    // Node 2 dies by itself: reaped and reported once.
    let pid = c.node(2).unwrap().pid().unwrap();
    // SAFETY: the pid of a child of this test, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let exits = wait_reaped(&mut c).await;
    assert_eq!(exits.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2]);
    assert!(!c.node(2).unwrap().running());
    assert!(c.reap_exits().is_empty());
}

async fn wait_reaped(c: &mut LocalCluster) -> Vec<(u64, ExitStatus)> {
    wait_for(Duration::from_secs(10), Duration::from_millis(10), || {
        let exits = c.reap_exits();
        async move {
            if exits.is_empty() {
                Err(())
            } else {
                Ok(exits)
            }
        }
    })
    .await
    .expect("the node that died is reaped")
}
