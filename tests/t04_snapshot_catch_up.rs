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
    cluster.stop(down);
    let client = cluster.client();
    for b in 0..400 {
        client
            .add(add_request((0..50).map(|i| format!("echo b{b} j{i}"))))
            .await
            .expect("add while a follower is down");
    }
    assert_eq!(total(&client, "ready").await, 20_000);

    // step 2: the leader purged its log past the stopped node (snapshots every 100 entries)
    let snap_dir = cluster
        .dir
        .path()
        .join(format!("node-{leader}/snapshots/current"));
    assert!(snap_dir.exists(), "the leader took a snapshot");

    // step 3: restart it; it converges
    cluster.start_node(down);
    cluster.converged(Duration::from_secs(60)).await;
    let r = cluster.client_of(down).stats(true).await.unwrap();
    assert_eq!(r.states["ready"], 20_000);
    let snap = cluster
        .dir
        .path()
        .join(format!("node-{down}/snapshots/current"));
    assert!(snap.exists(), "the restarted node installed a snapshot");
}
