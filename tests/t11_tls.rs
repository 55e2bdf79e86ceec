//! A cluster with TLS on (certificates made by `raftq cert`): it elects a leader, replicates,
//! and serves a client and a runner that trust the cluster CA; a plaintext client and a
//! client that trusts another CA are refused.

use raftq_client::{Client, ClientConfig, ClientError};
use raftq_tests::*;
use std::time::Duration;

/// A client of the whole cluster with `ca_pem` as its trust (None: plaintext) that gives up
/// after 3 s.
fn short_client(cluster: &Cluster, ca_pem: Option<Vec<u8>>) -> Client {
    let config = ClientConfig {
        ca_pem,
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(1),
        ..cluster.local.client_config()
    };
    Client::new(cluster.addrs(), config).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_clients_that_trust_its_ca_only() {
    let cluster = Cluster::start_tls(3, "");
    let certs = cluster.local.tls_dir().expect("tls on").to_path_buf();

    // step 1: a leader is elected over TLS and adds replicate to every node
    cluster.leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let r = client
        .add(add_request((0..50).map(|i| format!("echo tls {i}"))))
        .await
        .unwrap();
    assert_eq!(r.added, 50);
    cluster.converged(Duration::from_secs(30)).await;
    for id in 1..=3 {
        let s = cluster.client_of(id).stats(true).await.unwrap();
        assert_eq!(s.states.get("ready").copied(), Some(50), "node {id}: {s:?}");
    }

    // step 2: a runner given the CA (RAFTQ_CA_FILE) runs jobs
    client
        .add(runnable_add(
            (0..3).map(|i| job(format!("true run {i}"))).collect(),
        ))
        .await
        .unwrap();
    let mut runner = start_runner(&cluster, "tls", &["--idle-exit", "2s", "--max-jobs", "3"]);
    wait_for(
        "the runner's 3 jobs complete",
        Duration::from_secs(60),
        || {
            let c = &client;
            async move { (total(c, "complete").await == 3).then_some(()) }
        },
    )
    .await;
    let _ = runner.wait();

    // step 3: a plaintext client gets no answer (the TLS port closes its HTTP/2 connection)
    match short_client(&cluster, None).stats(true).await {
        Err(e @ (ClientError::Unavailable { .. } | ClientError::Status(_))) => {
            eprintln!("plaintext client: {e}")
        }
        other => panic!("a plaintext client of a TLS cluster: {other:?}"),
    }

    // step 4: a client trusting another CA refuses the nodes' certificates
    let other = cluster.dir.path().join("other-ca");
    let other_arg = other.display().to_string();
    cluster
        .local
        .raftq_cert(&["ca", "--dir", &other_arg])
        .unwrap();
    let other_ca = std::fs::read(other.join("ca.pem")).unwrap();
    match short_client(&cluster, Some(other_ca)).stats(true).await {
        Err(ClientError::Unavailable { last, .. }) => {
            assert!(last.to_lowercase().contains("certificate"), "{last}")
        }
        other => panic!("a client trusting another CA: {other:?}"),
    }
    // and the right CA still works
    let right = std::fs::read(certs.join("ca.pem")).unwrap();
    short_client(&cluster, Some(right))
        .stats(true)
        .await
        .unwrap();
}
