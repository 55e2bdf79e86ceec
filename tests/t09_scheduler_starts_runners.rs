//! With the scheduler on, the leader starts runners for ready jobs by itself, within its core
//! budget; after the leader dies, the new one adopts the runners that are still running.

use raftq_proto::pb;
use raftq_tests::*;
use std::time::Duration;

fn live_runner_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".runner"))
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .trim_end_matches(".runner")
                        .parse()
                        .is_ok_and(process_alive)
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_starts_and_new_leader_adopts_runners() {
    let dir = tempfile::tempdir().unwrap();
    let runners = dir.path().join("runners");
    let settings = format!(
        "[scheduler]\nenabled = true\nmax_cores = 2\nidle_exit_s = 5\nttr_s = 10\nrunner_dir = {:?}\n",
        runners.display().to_string()
    );
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
        (live_runner_files(&runners) > 0).then_some(())
    })
    .await;
    assert!(live_runner_files(&runners) <= 2, "over the 2-core budget");

    // step 2: the leader dies; the new leader counts the runners still alive
    cluster.kill(leader);
    cluster.leader(Duration::from_secs(30)).await;
    for _ in 0..20 {
        assert!(
            live_runner_files(&runners) <= 2,
            "a second fleet was started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // step 3: everything completes
    wait_for("every job to complete", Duration::from_secs(90), || async {
        (total(&client, "complete").await == 12).then_some(())
    })
    .await;
    // runners exit by themselves once idle
    wait_for("idle runners to exit", Duration::from_secs(60), || async {
        (live_runner_files(&runners) == 0).then_some(())
    })
    .await;
}
