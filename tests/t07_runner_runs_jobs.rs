//! `raftq runner` against a real cluster: wr's execution semantics, kill, and a runner that
//! dies mid-job.

use raftq_proto::pb;
use raftq_tests::*;
use std::time::Duration;

const FAST: &str =
    "[fsm]\nrelease_delay_ms = 300\nmax_release_delay_ms = 300\nlost_return_delay_ms = 300\n";

fn spec(cmd: &str, cwd: &std::path::Path, retries: u32) -> pb::JobSpec {
    let mut j = job(cmd);
    j.cwd = cwd.display().to_string();
    j.retries = retries;
    j
}

async fn add(cluster: &Cluster, jobs: Vec<pb::JobSpec>) -> Vec<String> {
    let r = cluster
        .client()
        .add(pb::AddRequest {
            request_id: raftq_client::request_id(),
            jobs,
            env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=hello".into()],
            ignore_complete: false,
            return_keys: true,
        })
        .await
        .unwrap();
    r.keys
}

async fn job_of(cluster: &Cluster, key: &str) -> pb::Job {
    cluster
        .client()
        .get(&[raftq_tests::job_key(key)], false)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_follows_wr_semantics() {
    let cluster = Cluster::start_with(3, FAST);
    cluster.leader(Duration::from_secs(30)).await;
    let work = cluster.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = |name: &str| out.join(name).display().to_string();

    // step 1: a mix of jobs
    let mut home = spec(&format!("echo $HOME > {}", o("home")), &work, 0);
    home.change_home = true;
    let mut env = spec(&format!("echo $GREETING $X > {}", o("env")), &work, 0);
    env.env_override = vec!["X=over".into()];
    use pb::behaviour::{Action, When};
    let b = |when: When, action: Action| pb::Behaviour {
        when: when as i32,
        action: Some(action),
    };
    let mut behaved = spec("echo work > result", &work, 0);
    behaved.behaviours = vec![
        b(
            When::OnSuccess,
            Action::Run(format!("echo after > {}", o("ran"))),
        ),
        b(When::OnExit, Action::CleanupAll(true)),
    ];
    let mut removed = spec("exit 1", &work, 0);
    removed.behaviours = vec![
        b(
            When::OnFailure,
            Action::Run(format!("echo on failure > {}", o("failed"))),
        ),
        b(When::OnFailure, Action::Remove(true)),
    ];
    let keys = add(
        &cluster,
        vec![
            spec(
                &format!("echo $TMPDIR > {}; touch $TMPDIR/t", o("tmp")),
                &work,
                0,
            ),
            spec("exit 3", &work, 1),
            spec("no-such-command-xyz", &work, 3),
            spec("false | true", &work, 0),
            home,
            env,
            behaved,
            removed,
        ],
    )
    .await;

    // step 2: one runner runs them until idle
    let mut runner = start_runner(&cluster, "a", &["--idle-exit", "3s"]);
    let status = tokio::task::spawn_blocking(move || runner.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "runner exited with {status}");

    // step 3: each ended as wr would have it
    let tmp = job_of(&cluster, &keys[0]).await;
    assert_eq!(tmp.state, pb::StateName::Complete as i32);
    let tmpdir = std::fs::read_to_string(o("tmp")).unwrap();
    assert!(
        !std::path::Path::new(tmpdir.trim()).exists(),
        "TMPDIR left behind"
    );
    let cwd = tmp.last_run.unwrap().actual_cwd;
    assert!(
        cwd.starts_with(&work.join("raftq").display().to_string()),
        "{cwd}"
    );

    let failing = job_of(&cluster, &keys[1]).await;
    assert_eq!(failing.state, pb::StateName::Buried as i32);
    assert_eq!(failing.attempts, 2, "retried once, then buried");
    assert_eq!(failing.fail_reason, "command exited non-zero");

    let missing = job_of(&cluster, &keys[2]).await;
    assert_eq!(missing.state, pb::StateName::Buried as i32);
    assert_eq!(missing.attempts, 1, "buried at once despite its retries");
    assert_eq!(missing.fail_reason, "command not found");

    let pipe = job_of(&cluster, &keys[3]).await;
    let behaved = job_of(&cluster, &keys[6]).await;
    assert_eq!(behaved.state, pb::StateName::Complete as i32);
    let root = std::path::Path::new(&behaved.last_run.unwrap().actual_cwd)
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(!root.exists(), "cleanup_all left {}", root.display());
    assert_eq!(std::fs::read_to_string(o("ran")).unwrap().trim(), "after");
    let removed = cluster
        .client()
        .get(&[raftq_tests::job_key(&keys[7])], false)
        .await
        .unwrap();
    assert!(
        removed.is_empty(),
        "the failed job with 'remove' is still queued"
    );
    assert_eq!(
        std::fs::read_to_string(o("failed")).unwrap().trim(),
        "on failure"
    );
    assert_eq!(pipe.state, pb::StateName::Buried as i32, "pipefail");

    let home = job_of(&cluster, &keys[4]).await;
    let home_cwd = home.last_run.unwrap().actual_cwd;
    assert_eq!(std::fs::read_to_string(o("home")).unwrap().trim(), home_cwd);
    assert_eq!(
        std::fs::read_to_string(o("env")).unwrap().trim(),
        "hello over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_a_dying_runner() {
    let cluster = Cluster::start_with(3, FAST);
    cluster.leader(Duration::from_secs(30)).await;
    let work = cluster.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let client = cluster.client();

    // step 1: kill requested while running → the process group dies, the job is buried
    let pidfile = work.join("sleeper.pid");
    let (keys, mut runner) = sleeper_running(&cluster, &work, &pidfile, "k").await;
    assert_eq!(client.kill(&raftq_tests::job_keys(&keys)).await.unwrap(), 1);
    wait_for("the job to be buried", Duration::from_secs(30), || async {
        let j = job_of(&cluster, &keys[0]).await;
        (j.state == pb::StateName::Buried as i32).then_some(j)
    })
    .await;
    assert_eq!(
        job_of(&cluster, &keys[0]).await.fail_reason,
        "killed by user request"
    );
    assert!(
        !process_alive(pid_in(&pidfile)),
        "the job's background process survived the kill"
    );
    let _ = runner.wait();

    // step 2: a runner killed -9 mid-job → lease expires → job lost → another runner runs it
    let done = work.join("done");
    let keys = add(
        &cluster,
        vec![spec(
            &format!("sleep 2; echo ran >> {}", done.display()),
            &work,
            3,
        )],
    )
    .await;
    let mut doomed = start_runner(&cluster, "doomed", &["--idle-exit", "2s", "--ttr", "2s"]);
    wait_for("the job to run", Duration::from_secs(30), || async {
        (job_of(&cluster, &keys[0]).await.state == pb::StateName::Running as i32).then_some(())
    })
    .await;
    doomed.kill().unwrap();
    let _ = doomed.wait();
    let mut rescuer = start_runner(&cluster, "rescuer", &["--idle-exit", "15s", "--ttr", "2s"]);
    let j = wait_for("the job to complete", Duration::from_secs(60), || async {
        let j = job_of(&cluster, &keys[0]).await;
        (j.state == pb::StateName::Complete as i32).then_some(j)
    })
    .await;
    assert!(j.attempts >= 2, "it ran again after its runner died");
    let _ = rescuer.kill();
    let _ = rescuer.wait();

    // step 3: a stop signal to a runner mid-job (SIGTERM, and the ones batch systems send
    // before a kill): it kills the command's process group, releases the job with reason
    // "signal", and exits cleanly
    for (sig, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGINT, "INT"),
    ] {
        let pidfile = work.join(format!("{name}.pid"));
        let (keys, mut polite) = sleeper_running(&cluster, &work, &pidfile, name).await;
        // SAFETY: signals a child process this test started.
        unsafe {
            libc::kill(polite.id() as i32, sig);
        }
        let status = tokio::task::spawn_blocking(move || polite.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "SIG{name}: runner exited with {status}");
        let j = job_of(&cluster, &keys[0]).await;
        assert_eq!(
            j.fail_reason, "runner received a signal to stop",
            "SIG{name}"
        );
        assert!(
            j.state == pb::StateName::Delayed as i32 || j.state == pb::StateName::Ready as i32,
            "SIG{name}: released, not {:?}",
            j.state
        );
        assert!(
            !process_alive(pid_in(&pidfile)),
            "SIG{name}: the job's process outlived its runner"
        );
        // out of the way of the next runner
        client.delete(&raftq_tests::job_keys(&keys)).await.unwrap();
    }
}

/// Adds a job that sleeps in a background process (its pid written to `pidfile`), starts a
/// runner `name`, and waits until the job runs; returns the job's keys and the runner.
async fn sleeper_running(
    cluster: &Cluster,
    work: &std::path::Path,
    pidfile: &std::path::Path,
    name: &str,
) -> (Vec<String>, std::process::Child) {
    let cmd = format!("sleep 120 & echo $! > {}; wait", pidfile.display());
    let keys = add(cluster, vec![spec(&cmd, work, 3)]).await;
    let runner = start_runner(cluster, name, &["--idle-exit", "2s", "--ttr", "2s"]);
    wait_for("the job to run", Duration::from_secs(30), || async {
        (pidfile.exists() && job_of(cluster, &keys[0]).await.state == pb::StateName::Running as i32)
            .then_some(())
    })
    .await;
    (keys, runner)
}

/// The pid a sleeper job wrote.
fn pid_in(pidfile: &std::path::Path) -> u32 {
    std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
