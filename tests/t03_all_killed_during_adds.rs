//! kill -9 of every node while adds are in flight, then restart: nothing acknowledged is lost.

use raftq_tests::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_all_nodes_die() {
    let mut cluster = Cluster::start(3);
    cluster.leader(Duration::from_secs(30)).await;
    let client = Arc::new(cluster.client());

    // step 1: a writer adds batches until it fails; it keeps the acknowledged keys
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0.. {
                let cmds = (0..10).map(|i| format!("echo b{b} j{i}"));
                match tokio::time::timeout(Duration::from_secs(5), client.add(add_request(cmds)))
                    .await
                {
                    Ok(Ok(r)) => acked.extend(r.keys),
                    _ => break,
                }
            }
            acked
        })
    };
    wait_for(
        "500 adds (adds did not progress)",
        Duration::from_secs(60),
        || async { (total(&client, "ready").await >= 500).then_some(()) },
    )
    .await;

    // step 2: everything dies at once
    for id in 1..=3 {
        cluster.kill(id);
    }
    let acked = writer.await.unwrap();
    assert!(acked.len() >= 500);

    // step 3: restart all; every acknowledged job is there
    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster.leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let mut found = 0;
    for chunk in acked.chunks(2_000) {
        found += client
            .get(&raftq_tests::job_keys(chunk), false)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(
        found,
        acked.len(),
        "acknowledged jobs lost after a full crash"
    );
    cluster.converged(Duration::from_secs(30)).await;
}
