//! Tests of `exec::run` with real commands.

use crate::exec::*;
use std::time::Duration;
use tokio::sync::watch;

fn spec(cmd: &str, dir: WorkDir) -> ExecSpec {
    ExecSpec {
        cmd: cmd.into(),
        shell: "bash".into(),
        dir,
        env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hello".into()],
        change_home: false,
        time_limit: None,
        ram_limit_mb: None,
        host_short_of_memory: None,
    }
}

async fn run_it(s: &ExecSpec) -> ExecResult {
    let (_tx, rx) = watch::channel(false);
    run(s, rx, |_| {}).await
}

#[tokio::test]
async fn success_output_and_environment() {
    let base = tempfile::tempdir().unwrap();
    let s = spec(
        "echo out $GREETING; echo err >&2; env | sort | grep -v '^_=' | grep -v '^SHLVL' | grep -v '^PWD' > env.txt",
        WorkDir::Unique {
            base: base.path().into(),
            unique: "job1".into(),
        },
    );
    let r = run_it(&s).await;
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "out hello\n");
    assert_eq!(r.stderr, "err\n");
    assert!(r.setup_error.is_none());
    // the unique directory sits under three hashed levels
    let rel = r.actual_cwd.strip_prefix(base.path()).unwrap();
    assert_eq!(rel.components().count(), 6, "{}", rel.display()); // raftq/aa/bb/cc/job1/cwd
                                                                  // exactly the job's environment, plus TMPDIR
    let env = std::fs::read_to_string(r.actual_cwd.join("env.txt")).unwrap();
    let keys: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(keys, vec!["GREETING", "PATH", "TMPDIR"], "{env}");
}

#[tokio::test]
async fn tmpdir_exists_during_the_run_and_is_removed_after() {
    let base = tempfile::tempdir().unwrap();
    let s = spec(
        "test -d \"$TMPDIR\" && echo $TMPDIR && touch $TMPDIR/x",
        WorkDir::Unique {
            base: base.path().into(),
            unique: "job2".into(),
        },
    );
    let r = run_it(&s).await;
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let tmp = std::path::PathBuf::from(r.stdout.trim());
    assert!(!tmp.exists(), "TMPDIR {} left behind", tmp.display());
    assert!(
        r.actual_cwd.exists(),
        "the working directory stays (cleanup is a behaviour)"
    );
}

#[tokio::test]
async fn pipefail_and_exit_codes() {
    let base = tempfile::tempdir().unwrap();
    let dir = || WorkDir::Exact(base.path().into());
    assert_eq!(
        run_it(&spec("false | true", dir())).await.exit_code,
        Some(1)
    );
    assert_eq!(run_it(&spec("exit 3", dir())).await.exit_code, Some(3));
    assert_eq!(
        run_it(&spec("no-such-command-xyz", dir())).await.exit_code,
        Some(127)
    );
    let r = run_it(&spec("kill -9 $$", dir())).await;
    assert_eq!((r.exit_code, r.signal), (None, Some(9)));
}

#[tokio::test]
async fn exact_cwd_and_change_home() {
    let base = tempfile::tempdir().unwrap();
    let r = run_it(&spec("pwd", WorkDir::Exact(base.path().into()))).await;
    assert_eq!(
        std::fs::canonicalize(r.stdout.trim()).unwrap(),
        std::fs::canonicalize(base.path()).unwrap()
    );
    let mut s = spec(
        "echo $HOME",
        WorkDir::Unique {
            base: base.path().into(),
            unique: "job3".into(),
        },
    );
    s.change_home = true;
    let r = run_it(&s).await;
    assert_eq!(r.stdout.trim(), r.actual_cwd.display().to_string());
    let missing = run_it(&spec("true", WorkDir::Exact(base.path().join("nope")))).await;
    assert!(missing.setup_error.unwrap().contains("does not exist"));
}

#[tokio::test]
async fn kill_stops_the_whole_process_group() {
    let base = tempfile::tempdir().unwrap();
    let marker = base.path().join("grandchild.pid");
    let s = spec(
        &format!("sleep 300 & echo $! > {}; wait", marker.display()),
        WorkDir::Exact(base.path().into()),
    );
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move { run(&s, rx, |_| {}).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "command did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("stopped in time")
        .unwrap();
    assert_eq!(r.stopped, Some(StopReason::Requested));
    let pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Dead means gone or a zombie (whoever inherited it may not have reaped it yet).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .is_some_and(|zombie| !zombie)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background sleep survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn time_limit_stops_the_command() {
    let base = tempfile::tempdir().unwrap();
    let mut s = spec("sleep 30", WorkDir::Exact(base.path().into()));
    s.time_limit = Some(Duration::from_millis(300));
    let r = tokio::time::timeout(Duration::from_secs(20), run_it(&s))
        .await
        .expect("stopped in time");
    assert_eq!(r.stopped, Some(StopReason::Time));
    assert!(r.wall_ms >= 300);
}

#[tokio::test]
async fn peak_ram_of_a_200_mb_job_is_measured() {
    if std::process::Command::new("python3")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("python3 not found; using bash to hold memory");
    }
    let base = tempfile::tempdir().unwrap();
    // Holds 200 MiB of touched memory for a second.
    let s = spec(
        "python3 -c 'import time; b = bytearray(200*1024*1024); time.sleep(1.5)'",
        WorkDir::Exact(base.path().into()),
    );
    let r = run_it(&s).await;
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let mb = r.peak_ram_mb as f64;
    eprintln!("peak RAM of the 200 MiB job: {mb} MB, cpu {} ms", r.cpu_ms);
    assert!(
        (200.0 * 0.8..=200.0 * 1.2 + 20.0).contains(&mb),
        "peak {mb} MB"
    );
    assert!(r.cpu_ms > 0);
}

#[tokio::test]
async fn over_its_ram_while_the_host_is_short_the_command_is_stopped() {
    let base = tempfile::tempdir().unwrap();
    let cmd = "python3 -c 'import time; b = bytearray(200*1024*1024); time.sleep(30)'";
    let mut s = spec(cmd, WorkDir::Exact(base.path().into()));
    s.ram_limit_mb = Some(100);
    // Plenty of memory: over its request, it may go on (it is stopped by the time limit).
    s.host_short_of_memory = Some(false);
    s.time_limit = Some(Duration::from_secs(2));
    let r = run_it(&s).await;
    assert_eq!(r.stopped, Some(StopReason::Time));
    // Short of memory: stopped for RAM.
    s.host_short_of_memory = Some(true);
    s.time_limit = None;
    let r = tokio::time::timeout(Duration::from_secs(20), run_it(&s))
        .await
        .expect("stopped in time");
    assert_eq!(r.stopped, Some(StopReason::Ram));
    assert!(r.peak_ram_mb > 100);
}

#[test]
fn unique_dirs_spread_over_hashed_levels() {
    let a = unique_dir(std::path::Path::new("/w"), "k1");
    let b = unique_dir(std::path::Path::new("/w"), "k2");
    assert_ne!(a.parent(), b.parent());
    assert!(a.ends_with("k1"));
}

/// Not a test: how long running `true` takes through `exec::run` (run with --ignored).
#[tokio::test]
#[ignore = "measurement"]
async fn overhead_of_a_true_command() {
    let base = tempfile::tempdir().unwrap();
    let s = spec(
        "true",
        WorkDir::Unique {
            base: base.path().into(),
            unique: "x".into(),
        },
    );
    let n = 50;
    let t = std::time::Instant::now();
    for i in 0..n {
        let mut s = s.clone();
        s.dir = WorkDir::Unique {
            base: base.path().into(),
            unique: format!("x{i}"),
        };
        run_it(&s).await;
    }
    eprintln!(
        "exec of `true`: {:.2} ms each",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}

#[tokio::test]
async fn binary_output_is_kept_as_text_the_queue_takes() {
    let base = tempfile::tempdir().unwrap();
    // NUL bytes (find -print0) and invalid UTF-8, far more than is kept
    let s = spec(
        "printf 'a\\0b\\n'; head -c 300000 /dev/urandom; printf 'end\\0'",
        WorkDir::Unique {
            base: base.path().into(),
            unique: "binary".into(),
        },
    );
    let r = run_it(&s).await;
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("a\\0b\n"), "{:?}", &r.stdout[..10]);
    assert!(
        r.stdout.ends_with("end\\0"),
        "{:?}",
        &r.stdout[r.stdout.len() - 10..]
    );
    assert!(!r.stdout.contains('\0'));
    assert!(r.stdout.contains("bytes left out"));
    assert!(
        r.stdout.len() <= queue_fsm::limits::MAX_OUTPUT_BYTES,
        "{} bytes",
        r.stdout.len()
    );
}
