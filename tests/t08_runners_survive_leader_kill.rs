//! 100 jobs, each appending its own id to one shared file, run by several runners while the
//! leader manager is killed -9 and restarted: every job completes and the file has exactly one
//! line per job (none ran twice, none was lost).

use raftq_proto::pb;
use raftq_tests::*;
use std::collections::BTreeMap;
use std::time::Duration;

const JOBS: usize = 100;
const RUNNERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_runs_exactly_once_across_a_leader_kill() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let work = cluster.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let shared = work.join("shared.txt");
    let client = cluster.client();

    // step 1: 100 short jobs that append their id
    let jobs: Vec<pb::JobSpec> = (0..JOBS)
        .map(|i| {
            let mut j = job(format!("sleep 0.05; echo {i} >> {}", shared.display()));
            j.cwd = work.display().to_string();
            j.retries = 3;
            j
        })
        .collect();
    let r = client.add(runnable_add(jobs)).await.unwrap();
    assert_eq!(r.added as usize, JOBS);

    // step 2: several runners work through them
    let mut runners: Vec<_> = (0..RUNNERS)
        .map(|n| {
            start_runner(
                &cluster,
                &n.to_string(),
                &["--idle-exit", "20s", "--ttr", "10s"],
            )
        })
        .collect();

    // step 3: once a third is done, the leader dies; it comes back a little later
    wait_for("a third of the jobs", Duration::from_secs(60), || async {
        (total(&client, "complete").await as usize >= JOBS / 3).then_some(())
    })
    .await;
    cluster.kill(leader);
    cluster.leader(Duration::from_secs(30)).await;
    cluster.start_node(leader);

    // step 4: all complete; each id appears exactly once
    wait_for(
        "every job to complete",
        Duration::from_secs(120),
        || async { (total(&client, "complete").await as usize == JOBS).then_some(()) },
    )
    .await;
    for r in &mut runners {
        let _ = r.kill();
        let _ = r.wait();
    }
    let text = std::fs::read_to_string(&shared).unwrap();
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for line in text.lines() {
        *seen.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
    assert_eq!(seen.len(), JOBS, "jobs that never ran");
    cluster.converged(Duration::from_secs(30)).await;
}
