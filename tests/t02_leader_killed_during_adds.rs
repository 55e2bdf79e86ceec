//! 10,000 jobs added by concurrent clients while the leader is killed with SIGKILL: every
//! acknowledged add is present exactly once, and a new leader keeps serving.

use raftq_tests::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const CLIENTS: usize = 4;
const BATCHES: usize = 125;
const PER_BATCH: usize = 20; // 4 × 125 × 20 = 10,000 jobs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_adds_survive_leader_kill() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let client = Arc::new(cluster.client());

    // step 1: clients add in batches; each remembers which jobs were acknowledged
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut unknown = Vec::new();
            for b in 0..BATCHES {
                let cmds: Vec<String> = (0..PER_BATCH)
                    .map(|i| format!("echo c{c} b{b} j{i}"))
                    .collect();
                match client.add(add_request(cmds.clone())).await {
                    Ok(r) => {
                        assert_eq!(r.added as usize + r.existed as usize, PER_BATCH);
                        acked.extend(r.keys);
                    }
                    Err(_) => unknown.extend(cmds),
                }
            }
            (acked, unknown)
        }));
    }

    // step 2: once some adds went through, kill the leader
    wait_for(
        "2,000 adds (adds did not progress)",
        Duration::from_secs(60),
        || async { (total(&client, "ready").await >= 2_000).then_some(()) },
    )
    .await;
    cluster.kill(leader);

    let mut acked = BTreeSet::new();
    let mut unknown = 0;
    for t in tasks {
        let (a, u) = t.await.unwrap();
        for k in a {
            assert!(acked.insert(k), "a key acknowledged twice");
        }
        unknown += u.len();
    }

    // step 3: a new leader serves; every acknowledged job is there once
    let new_leader = cluster.leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    let keys: Vec<String> = acked.iter().cloned().collect();
    let mut found = 0;
    for chunk in keys.chunks(2_000) {
        found += client
            .get(&raftq_tests::job_keys(chunk), false)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(found, acked.len(), "acknowledged jobs lost");
    let ready = total(&client, "ready").await as usize;
    assert!(
        ready >= acked.len() && ready <= acked.len() + unknown,
        "ready {ready}, acked {}, unknown {unknown}",
        acked.len()
    );
    eprintln!("acked {} unknown {unknown} present {ready}", acked.len());
    // the cluster still takes writes
    client
        .add(add_request(["echo after".to_string()]))
        .await
        .unwrap();
    cluster.converged(Duration::from_secs(30)).await;
}
