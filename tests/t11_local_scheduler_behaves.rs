//! The local scheduler behaves: runners only for groups that can run now (limits, pause,
//! drain), one runner per ready job, idle runners make way for a group that waits, and a
//! job that can never fit this host is buried with the resource fail reason.

use raftq_proto::pb;
use raftq_tests::*;
use std::time::{Duration, Instant};

const STARTED: &str = "started a runner";

/// A job of `cmd` in `work` needing `ram_mb` and `cores_milli` (its scheduler group), in a
/// req group of its size (so that learning from one size's runs leaves the others alone).
fn sized(cmd: &str, work: &std::path::Path, ram_mb: u32, cores_milli: u32) -> pb::JobSpec {
    let mut j = job(cmd);
    j.cwd = work.display().to_string();
    j.req_grp = format!("{ram_mb}MB-{cores_milli}mcores");
    let r = j.requirements.get_or_insert_with(Default::default);
    r.ram_mb = ram_mb;
    r.cores_milli = cores_milli;
    j
}

async fn state_of(client: &raftq_client::Client, key: &str) -> pb::Job {
    client.get(&[job_key(key)], false).await.unwrap().remove(0)
}

async fn add(client: &raftq_client::Client, jobs: Vec<pb::JobSpec>) -> Vec<String> {
    let mut req = runnable_add(jobs);
    req.return_keys = true;
    client.add(req).await.unwrap().keys
}

/// Starts a three-node cluster whose scheduler uses `runners` and `extra` settings.
async fn cluster_with(runners: &Registry, extra: &str) -> (Cluster, std::path::PathBuf) {
    let cluster = Cluster::start_with(3, &runners.settings(extra));
    cluster.leader(Duration::from_secs(30)).await;
    let work = cluster.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    (cluster, work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_blocked_groups_get_no_runners() {
    let runners = Registry::new();
    let (cluster, work) = cluster_with(&runners, "max_cores = 2\nidle_exit_s = 30\n").await;
    let client = cluster.client();

    // step 1: jobs of a group whose limit is 0, and of one whose limit (1) a job holds
    let mut blocked: Vec<pb::JobSpec> = (0..3)
        .map(|i| {
            let mut j = sized(&format!("echo blocked {i}"), &work, 100, 1000);
            j.limit_grps = vec!["hold0:0".into()];
            j
        })
        .collect();
    for i in 0..3 {
        let mut j = sized(&format!("sleep 60; echo {i}"), &work, 100, 1000);
        j.limit_grps = vec!["hold1:1".into()];
        blocked.push(j);
    }
    add(&client, blocked).await;
    wait_for(
        "one job of the limit-1 group to run",
        Duration::from_secs(30),
        || async { (total(&client, "running").await == 1).then_some(()) },
    )
    .await;

    // step 2: a job of another group starts on the free core; the blocked groups get no
    // runner meanwhile
    let keys = add(&client, vec![sized("sleep 30", &work, 200, 1000)]).await;
    let start = Instant::now();
    wait_for(
        "the other group's job to run",
        Duration::from_secs(20),
        || async {
            let live = runners.live();
            assert!(
                !live.iter().any(|(_, g)| g.contains("hold0")),
                "a runner for a group with limit 0: {live:?}"
            );
            assert!(
                live.iter().filter(|(_, g)| g.contains("hold1")).count() <= 1,
                "more runners than the limit allows: {live:?}"
            );
            (state_of(&client, &keys[0]).await.state == pb::StateName::Running as i32).then_some(())
        },
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        log_lines_all(&cluster, STARTED),
        2,
        "one runner per job that can run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_drain_start_no_runners() {
    let runners = Registry::new();
    let (cluster, work) = cluster_with(&runners, "max_cores = 2\nidle_exit_s = 30\n").await;
    let client = cluster.client();
    let mode = |m: pb::set_reserving_request::Mode| pb::SetReservingRequest {
        request_id: raftq_client::request_id(),
        mode: m as i32,
    };

    // step 1: paused, then draining, with a job ready: no runner is started
    for m in [
        pb::set_reserving_request::Mode::Paused,
        pb::set_reserving_request::Mode::Draining,
    ] {
        client.set_reserving(mode(m)).await.unwrap();
        add(
            &client,
            vec![sized(&format!("echo {m:?}"), &work, 100, 1000)],
        )
        .await;
        holds_for(
            "no runner while reserving is closed",
            Duration::from_secs(3),
            || async { log_lines_all(&cluster, STARTED) == 0 },
        )
        .await;
    }

    // step 2: open again: the two jobs run, one runner each at most
    client
        .set_reserving(mode(pb::set_reserving_request::Mode::Open))
        .await
        .unwrap();
    wait_for("both jobs to complete", Duration::from_secs(30), || async {
        (total(&client, "complete").await == 2).then_some(())
    })
    .await;
    let started = log_lines_all(&cluster, STARTED);
    assert!((1..=2).contains(&started), "{started} runners for 2 jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_makes_way_for_another_group() {
    let runners = Registry::new();
    // one core; idle runners would wait a minute for work
    let (cluster, work) = cluster_with(&runners, "max_cores = 1\nidle_exit_s = 60\n").await;
    let client = cluster.client();

    // step 1: a job of group A runs; its runner stays, idle
    add(&client, vec![sized("echo A", &work, 100, 1000)]).await;
    wait_for(
        "group A's job to complete",
        Duration::from_secs(30),
        || async { (total(&client, "complete").await == 1).then_some(()) },
    )
    .await;
    assert_eq!(runners.live().len(), 1, "the idle runner of group A");

    // step 2: a job of group B starts well before A's runner would have timed out
    let start = Instant::now();
    add(&client, vec![sized("echo B", &work, 200, 1000)]).await;
    wait_for(
        "group B's job to complete",
        Duration::from_secs(30),
        || async { (total(&client, "complete").await == 2).then_some(()) },
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "B waited {:?} for A's idle runner",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_fit_is_buried() {
    let runners = Registry::new();
    let (cluster, work) = cluster_with(
        &runners,
        "max_cores = 2\nmax_ram_mb = 4000\nidle_exit_s = 5\n",
    )
    .await;
    let client = cluster.client();

    // three cores on a two-core budget, 100 GB on a 4 GB one, and one that fits
    let keys = add(
        &client,
        vec![
            sized("echo too many cores", &work, 100, 3000),
            sized("echo too much memory", &work, 100 * 1024, 1000),
            sized("echo fits", &work, 100, 1000),
        ],
    )
    .await;
    for key in &keys[..2] {
        let j = wait_for("the job to be buried", Duration::from_secs(30), || async {
            let j = state_of(&client, key).await;
            (j.state == pb::StateName::Buried as i32).then_some(j)
        })
        .await;
        assert_eq!(j.fail_reason, "resource requirements cannot be met");
    }
    wait_for(
        "the job that fits to complete",
        Duration::from_secs(30),
        || async {
            (state_of(&client, &keys[2]).await.state == pb::StateName::Complete as i32)
                .then_some(())
        },
    )
    .await;
    // logged once per group, not once per round
    holds_for("one log line per group", Duration::from_secs(2), || async {
        log_lines_all(&cluster, "buried jobs that need more") == 2
    })
    .await;
}
