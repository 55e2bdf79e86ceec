//! A node that was down while 20,000 jobs were added (and the log was purged past it) catches
//! up by snapshot after restart; all replicas end with equal state digests.

use raftq_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(
        3,
        "snapshot_every_entries = 100\nlogs_kept_after_snapshot = 20\n",
    );
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let down = (1..=3).find(|id| *id != leader).unwrap();

    // step 1: stop a follower, add 20,000 jobs in 400 entries
    let client = cluster.client();
    let down_index = {
        let s = client.cluster_status_of(down as usize - 1).await.unwrap();
        s.nodes.iter().find(|n| n.id == down).unwrap().applied_index
    };
    cluster.stop(down);
    for b in 0..400 {
        client
            .add(add_request((0..50).map(|i| format!("echo b{b} j{i}"))))
            .await
            .expect("add while a follower is down");
    }
    assert_eq!(total(&client, "ready").await, 20_000);

    // step 2: the leader purges its log past the stopped node (snapshots every 100 entries;
    // it may wait for the stalled replication stream to give up first)
    let purged = raftq_local::wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
        let client = &client;
        async move {
            let s = client.cluster_status_of(leader as usize - 1).await.unwrap();
            let me = s.nodes.iter().find(|n| n.id == leader).unwrap();
            let seen = (me.snapshot_index, me.purged_index);
            if me.purged_index > down_index {
                Ok(seen)
            } else {
                Err(seen)
            }
        }
    })
    .await;
    if let Err((snapshot, purged)) = purged {
        panic!("leader did not purge past {down_index}: snapshot {snapshot} purged {purged}");
    }

    // step 3: restart it; it converges
    cluster.start_node(down);
    cluster.converged(Duration::from_secs(60)).await;
    let r = cluster.client_of(down).stats(true).await.unwrap();
    assert_eq!(r.states["ready"], 20_000);
    let log = std::fs::read_to_string(cluster.dir.path().join(format!("node-{down}.log"))).unwrap();
    assert!(
        log.contains("installed snapshot from the leader"),
        "node {down} caught up without a snapshot"
    );
}
