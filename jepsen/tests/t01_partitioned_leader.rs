//! Three managers in their own network namespaces: the leader is cut off from the others with
//! iptables; the majority elects a new leader and takes writes; after healing, all three
//! converge. Needs root (skipped otherwise, with a message). The nodes are started by the
//! harness's own `db::Cluster`, so this also tests the harness.

use raftq_client::Client;
use raftq_jepsen::db::{Cluster, NodeOptions};
use raftq_jepsen::net::is_root;
use raftq_local::wait_for;
use raftq_proto::pb;
use std::time::Duration;

/// The leader all of `nodes` name, once they agree on one that is not `not`.
async fn leader_seen_by(client: &Client, nodes: &[usize], not: u64, timeout: Duration) -> u64 {
    let agreed = || async move {
        let mut seen = Vec::new();
        for &i in nodes {
            if let Ok(s) = client.cluster_status_of(i).await {
                seen.push(s.leader);
            }
        }
        if seen.len() == nodes.len()
            && seen[0] != 0
            && seen[0] != not
            && seen.iter().all(|l| *l == seen[0])
        {
            Ok(seen[0])
        } else {
            Err(seen)
        }
    };
    wait_for(timeout, Duration::from_millis(100), agreed)
        .await
        .unwrap_or_else(|seen| panic!("no agreed leader: {seen:?}"))
}

fn add(n: usize, tag: &str) -> pb::AddRequest {
    pb::AddRequest {
        request_id: raftq_client::request_id(),
        jobs: (0..n)
            .map(|i| pb::JobSpec {
                cmd: format!("echo {tag} {i}"),
                rep_grp: "netns".into(),
                ..Default::default()
            })
            .collect(),
        env: vec![],
        ignore_complete: false,
        return_keys: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_replaced_and_rejoins() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // step 1: one node per namespace (the harness's own cluster code)
    let cluster = Cluster::start(
        3,
        std::process::id(),
        dir.path(),
        &raftq_local::raftq_for_tests().unwrap_or_else(|e| panic!("{e}")),
        raftq_jepsen::db::NODE_CONFIG,
        NodeOptions::default(),
        None,
    )
    .expect("namespaces and nodes");
    let net = &cluster.net;
    let addrs = cluster.addrs();
    let config = cluster.client_config();
    let client = Client::new(addrs.clone(), config.clone()).unwrap();
    let leader = leader_seen_by(&client, &[0, 1, 2], 0, Duration::from_secs(30)).await;
    client.add(add(10, "before")).await.unwrap();

    // step 2: cut the leader off from both others
    let l = leader as usize - 1;
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    for &o in &others {
        net.partition(l, o).unwrap();
    }
    let new_leader = leader_seen_by(&client, &others, leader, Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    let majority = Client::new(others.iter().map(|i| addrs[*i].clone()).collect(), config).unwrap();
    let r = majority.add(add(10, "during")).await.unwrap();
    assert_eq!(r.added, 10);

    // step 3: heal; all three converge on the same state
    net.heal().unwrap();
    let converged = || async {
        let mut digests = Vec::new();
        for i in 0..3 {
            digests.push(client.digest_of(i).await.ok().map(|d| d.digest));
        }
        if digests[0].is_some() && digests.iter().all(|d| d == &digests[0]) {
            Ok(())
        } else {
            Err(digests)
        }
    };
    if let Err(digests) = wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        converged,
    )
    .await
    {
        panic!("no convergence: {digests:?}");
    }
    let stats = client.stats(false).await.unwrap();
    assert_eq!(stats.states["ready"], 20);
    drop(cluster);
}
