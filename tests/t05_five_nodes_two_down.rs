//! Five nodes keep serving with two of them down.

use raftq_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_serve_with_two_down() {
    let mut cluster = Cluster::start(5);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    client
        .add(add_request(["echo before".to_string()]))
        .await
        .unwrap();

    // step 1: stop the leader and one follower
    let follower = (1..=5).find(|id| *id != leader).unwrap();
    cluster.kill(leader);
    cluster.kill(follower);

    // step 2: the other three elect a leader and take writes and reads
    let new_leader = cluster.leader(Duration::from_secs(30)).await;
    assert!(new_leader != leader && new_leader != follower);
    let r = client
        .add(add_request((0..100).map(|i| format!("echo after {i}"))))
        .await
        .unwrap();
    assert_eq!(r.added, 100);
    assert_eq!(total(&client, "ready").await, 101);
    cluster.converged(Duration::from_secs(30)).await;
}
