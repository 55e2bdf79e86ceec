//! With the scheduler on, the leader starts runners for ready jobs by itself, within its core
//! budget; after the leader dies, the new one adopts the runners that are still running.

use raftq_proto::pb;
use raftq_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_starts_and_new_leader_adopts_runners() {
    let runners = Registry::new();
    let settings = runners.settings("max_cores = 2\nidle_exit_s = 5\nttr_s = 10\n");
    let mut cluster = Cluster::start_with(3, &settings);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let work = cluster.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let client = cluster.client();

    // step 1: jobs that take a while; no runner is started by hand
    let jobs: Vec<pb::JobSpec> = (0..12)
        .map(|i| {
            let mut j = job(format!("sleep 0.5; echo {i}"));
            j.cwd = work.display().to_string();
            j
        })
        .collect();
    client.add(runnable_add(jobs)).await.unwrap();
    wait_for("runners to start", Duration::from_secs(30), || async {
        (!runners.live().is_empty()).then_some(())
    })
    .await;
    assert!(runners.live().len() <= 2, "over the 2-core budget");

    // step 2: the leader dies; the new leader counts the runners still alive
    cluster.kill(leader);
    cluster.leader(Duration::from_secs(30)).await;
    holds_for(
        "at most 2 runners (no second fleet)",
        Duration::from_secs(2),
        || async { runners.live().len() <= 2 },
    )
    .await;

    // step 3: everything completes
    wait_for("every job to complete", Duration::from_secs(90), || async {
        (total(&client, "complete").await == 12).then_some(())
    })
    .await;
    // runners exit by themselves once idle
    wait_for("idle runners to exit", Duration::from_secs(60), || async {
        runners.live().is_empty().then_some(())
    })
    .await;
}
