//! A cluster with TLS on (certificates made by `raftq cert`): it elects a leader, replicates,
//! and serves a client and a runner that trust the cluster CA; a plaintext client, a client
//! that trusts only the system's roots and one that trusts another CA are refused, each told
//! the way out. The peer (Raft) service admits managers only:
//! a caller with the client token alone, one with another CA's certificate, one whose
//! certificate names no member, and a removed node are refused; a new node joins with TLS.

use raftq_client::{Auth, Client, ClientConfig, ClientError};
use raftq_proto::endpoint::{endpoint, Tls};
use raftq_proto::pb;
use raftq_proto::pb::raft_client::RaftClient;
use raftq_tests::*;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Identity;

/// A client of the whole cluster that gives up after 3 s, trusting `ca_pem` (None: the
/// system's roots), or plaintext.
fn short_client(cluster: &Cluster, ca_pem: Option<Vec<u8>>, plaintext: bool) -> Client {
    let config = ClientConfig {
        ca_pem,
        plaintext,
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(1),
        ..cluster.local.client_config()
    };
    Client::new(cluster.addrs(), config).expect("client")
}

/// The identity in `dir`'s `node-ID.pem` and `node-ID-key.pem`.
fn identity(dir: &Path, id: u64) -> Identity {
    let read = |name: String| std::fs::read(dir.join(name)).unwrap();
    Identity::from_pem(
        read(format!("node-{id}.pem")),
        read(format!("node-{id}-key.pem")),
    )
}

/// One `Raft.ReadIndex` call to `addr` as a peer would make it, with the cluster token,
/// trusting `ca_pem` and presenting `identity`.
async fn peer_call(
    cluster: &Cluster,
    addr: &str,
    ca_pem: &[u8],
    identity: Option<Identity>,
) -> Result<(), tonic::Status> {
    let tls = Tls {
        ca_pem: Some(ca_pem.to_vec()),
        identity,
    };
    let channel = endpoint(addr, Some(&tls)).unwrap().connect_lazy();
    let auth = Auth::new(Some(&cluster.local.token)).unwrap();
    let mut client = RaftClient::with_interceptor(channel, auth);
    let mut req = tonic::Request::new(pb::RaftBytes { data: vec![] });
    req.set_timeout(Duration::from_secs(5));
    client.read_index(req).await.map(|_| ())
}

fn assert_denied(r: Result<(), tonic::Status>, says: &str) {
    match r {
        Err(s) if s.code() == tonic::Code::PermissionDenied => {
            assert!(s.message().contains(says), "{s:?}")
        }
        other => panic!("a peer call that should be denied ({says}): {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_clients_that_trust_its_ca_only() {
    let mut cluster = Cluster::start(3);
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

    // step 3: a plaintext client gets no answer (the TLS port closes its HTTP/2 connection),
    // and is told at once that the nodes speak TLS; a TLS client that trusts only the
    // system's roots is told to give the cluster CA
    match short_client(&cluster, None, true).stats(true).await {
        Err(ClientError::Config(e)) => assert!(e.contains("the node speaks TLS"), "{e}"),
        other => panic!("a plaintext client of a TLS cluster: {other:?}"),
    }
    match short_client(&cluster, None, false).stats(true).await {
        Err(ClientError::Config(e)) => assert!(e.contains("RAFTQ_CA_FILE"), "{e}"),
        other => panic!("a client trusting the system's roots only: {other:?}"),
    }

    // step 4: a client trusting another CA refuses the nodes' certificates
    let other = cluster.dir.path().join("other-ca");
    let other_arg = other.display().to_string();
    cluster
        .local
        .raftq_cert(&["ca", "--dir", &other_arg])
        .unwrap();
    let other_ca = std::fs::read(other.join("ca.pem")).unwrap();
    match short_client(&cluster, Some(other_ca), false)
        .stats(true)
        .await
    {
        Err(ClientError::Config(e)) => assert!(e.contains("invalid peer certificate"), "{e}"),
        other => panic!("a client trusting another CA: {other:?}"),
    }
    // and the right CA still works
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();
    short_client(&cluster, Some(ca.clone()), false)
        .stats(true)
        .await
        .unwrap();

    // step 5: the peer service: a member's certificate is admitted ...
    let addr1 = cluster.addr(1);
    peer_call(&cluster, &addr1, &ca, Some(identity(&certs, 2)))
        .await
        .unwrap();
    // ... the client token alone is not
    assert_denied(peer_call(&cluster, &addr1, &ca, None).await, "token alone");
    // ... nor a certificate of the cluster CA that names no member
    let certs_arg = certs.display().to_string();
    let issue = |dir: &str, id: &str| {
        cluster
            .local
            .raftq_cert(&["node", "--dir", dir, "--id", id, "--host", "127.0.0.1"])
            .unwrap()
    };
    issue(&certs_arg, "9");
    assert_denied(
        peer_call(&cluster, &addr1, &ca, Some(identity(&certs, 9))).await,
        "node 9 is not a member",
    );
    // ... and a certificate from another CA fails the TLS handshake
    issue(&other_arg, "2");
    match peer_call(&cluster, &addr1, &ca, Some(identity(&other, 2))).await {
        Err(s) => eprintln!("a peer with another CA's certificate: {s:?}"),
        Ok(()) => panic!("a peer call with another CA's certificate was admitted"),
    }

    // step 6: node 3 is removed; its certificate no longer opens the peer service
    let voters = client.remove_node(3).await.unwrap();
    assert_eq!(voters, vec![1, 2]);
    for id in [1, 2] {
        let addr = cluster.addr(id);
        let (c, ca, certs) = (&cluster, &ca, &certs);
        let denied = wait_for(
            "the removed node's certificate refused",
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move {
                    match peer_call(c, &addr, ca, Some(identity(certs, 3))).await {
                        Err(s) if s.code() == tonic::Code::PermissionDenied => Some(s),
                        _ => None,
                    }
                }
            },
        )
        .await;
        assert!(
            denied.message().contains("node 3 is not a member"),
            "{denied:?}"
        );
    }
    // the two that are left go on taking writes
    let rest = Client::new(
        vec![cluster.addr(1), cluster.addr(2)],
        cluster.local.client_config(),
    )
    .unwrap();
    let r = rest
        .add(add_request((0..10).map(|i| format!("echo after {i}"))))
        .await
        .unwrap();
    assert_eq!(r.added, 10);

    // step 7: a new node joins with a certificate of the cluster CA (it has no membership
    // yet, so it admits the leader's certified calls) and catches up
    cluster.stop(3);
    let new = cluster.local.add_joiner().unwrap();
    cluster.start_node(new);
    let voters = rest
        .add_node(new, cluster.addr(new), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(voters, vec![1, 2, new]);
    cluster.converged(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_served_only_when_asked_for_and_said_so() {
    // without TLS files or --plaintext, a node refuses to start and names both ways
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(raftq_bin())
        .args(["node", "--id", "1", "--listen", "127.0.0.1:1", "--data-dir"])
        .arg(dir.path().join("n1"))
        .env_remove("RAFTQ_PLAINTEXT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("TLS is on by default") && err.contains("--plaintext"),
        "{err}"
    );

    // with --plaintext it serves, warning in its log; plaintext clients are served ...
    let cluster = Cluster::start_plaintext(3, "");
    cluster.leader(Duration::from_secs(30)).await;
    let r = cluster
        .client()
        .add(add_request((0..5).map(|i| format!("echo plain {i}"))))
        .await
        .unwrap();
    assert_eq!(r.added, 5);
    let log = std::fs::read_to_string(cluster.local.log_path(1)).unwrap();
    assert!(log.contains("PLAINTEXT (--plaintext)"), "{log}");
    // ... through http:// addresses too, as the CLI takes them
    let out = cluster
        .raftq()
        .args(["status", "-o", "counts"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and a TLS client is told the node does not speak TLS
    let config = ClientConfig {
        deadline: Duration::from_secs(3),
        ..ClientConfig::default()
    };
    match Client::new(cluster.addrs(), config)
        .unwrap()
        .stats(true)
        .await
    {
        Err(ClientError::Config(e)) => assert!(e.contains("does not speak TLS"), "{e}"),
        other => panic!("a TLS client of a plaintext cluster: {other:?}"),
    }
}
