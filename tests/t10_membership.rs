//! Membership changes under a running cluster: a fourth node joins (learner, catches up, then
//! voter), then the leader is removed and stopped; the cluster goes on taking writes and the
//! remaining replicas converge. Bad requests are refused with the field named.

use raftq_client::ClientError;
use raftq_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_and_the_leader_leaves() {
    let mut cluster = Cluster::start(3);
    cluster.leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let r = client
        .add(add_request((0..200).map(|i| format!("echo before {i}"))))
        .await
        .unwrap();
    assert_eq!(r.added, 200);

    // step 1: node 4 starts without peers and is added
    let new = cluster.local.add_joiner().unwrap();
    cluster.start_node(new);
    let voters = client
        .add_node(new, cluster.addr(new), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(voters, vec![1, 2, 3, 4]);
    // adding it again changes nothing
    let again = client
        .add_node(new, cluster.addr(new), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again, voters);
    cluster.converged(Duration::from_secs(30)).await;
    let seen_by_new = cluster.client_of(new).cluster_status_of(0).await.unwrap();
    assert_eq!(seen_by_new.nodes.iter().filter(|n| n.voter).count(), 4);

    // step 2: the leader is removed, then stopped; the other three go on
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let voters = client.remove_node(leader).await.unwrap();
    assert!(!voters.contains(&leader) && voters.len() == 3, "{voters:?}");
    // the removed node knows no leader any more and serves nothing
    let removed = cluster
        .client_of(leader)
        .cluster_status_of(0)
        .await
        .unwrap();
    assert_eq!(removed.leader, 0, "{removed:?}");
    let short = raftq_client::ClientConfig {
        deadline: Duration::from_secs(2),
        ..cluster.local.client_config()
    };
    let only_removed = raftq_client::Client::new(vec![cluster.addr(leader)], short).unwrap();
    match only_removed.add(add_request(["echo x".to_string()])).await {
        Err(ClientError::Unavailable { last, .. }) => {
            assert!(last.contains("not a member of the cluster"), "{last}")
        }
        other => panic!("a write to a removed node: {other:?}"),
    }
    cluster.stop(leader);
    let rest: Vec<String> = (1..=4)
        .filter(|id| *id != leader)
        .map(|id| cluster.addr(id))
        .collect();
    let rest_client = raftq_client::Client::new(rest, cluster.local.client_config()).unwrap();
    let r = rest_client
        .add(add_request((0..100).map(|i| format!("echo after {i}"))))
        .await
        .unwrap();
    assert_eq!(r.added, 100);
    // "echo x" above was refused: 300 jobs
    assert_eq!(total(&rest_client, "ready").await, 300);
    cluster.converged(Duration::from_secs(30)).await;

    // step 3: refusals name what is wrong
    match rest_client.remove_node(9).await {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code(), tonic::Code::NotFound);
            assert!(s.message().contains("node 9 is not a voter"), "{s:?}");
        }
        other => panic!("removing an unknown node: {other:?}"),
    }
    match rest_client
        .add_node(5, "no-port".into(), Duration::from_secs(5))
        .await
    {
        Err(ClientError::Invalid(m)) => assert!(m.starts_with("addr:"), "{m}"),
        other => panic!("adding a node with a bad address: {other:?}"),
    }
}
