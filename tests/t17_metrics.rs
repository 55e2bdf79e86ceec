//! `/metrics` on real nodes, over HTTPS (a TLS cluster: the HTTP port serves the node's
//! certificate): Prometheus text behind the token; jobs by state, the jobs each node's Queue
//! service moved, per-RPC latency histograms, the proposer's entries, and Raft's view (term,
//! leader, indexes, replication lag per peer on the leader) agreeing across nodes.

use raftq_tests::http::request_with;
use raftq_tests::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// The samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

async fn scrape(cluster: &Cluster, id: u64) -> BTreeMap<String, f64> {
    let r = cluster
        .http("GET", id, "/metrics", None)
        .await
        .expect("scrape");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers["content-type"].starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers
    );
    let text = r.text();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    samples(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_rpcs_and_raft_on_every_node() {
    let cluster = Cluster::start_with(3, "");
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");

    // step 1: no token: refused
    assert!(cluster.http_url(leader).starts_with("https://"));
    let ca = cluster.local.ca_pem.as_deref();
    let r = request_with(ca, "GET", &cluster.http_url(leader), "/metrics", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // plaintext to the TLS port gets no HTTP answer
    let plain = cluster.http_url(leader).replace("https://", "http://");
    let r = raftq_tests::http::request("GET", &plain, "/metrics", &[], None).await;
    assert!(r.is_err() || r.is_ok_and(|r| r.status != 200));

    // step 2: 40 jobs added through the leader's gRPC port, 3 through the follower's
    let on_leader = cluster.client_of(leader);
    let cmds = (0..40).map(|i| format!("echo metric {i}"));
    assert_eq!(on_leader.add(add_request(cmds)).await.unwrap().added, 40);
    let on_follower = cluster.client_of(follower);
    let cmds = (0..3).map(|i| format!("echo follower {i}"));
    assert_eq!(on_follower.add(add_request(cmds)).await.unwrap().added, 3);
    cluster.converged(Duration::from_secs(30)).await;

    // step 3: the leader's numbers
    let m = scrape(&cluster, leader).await;
    assert_eq!(m["raftq_jobs{state=\"ready\"}"], 43.0, "{m:?}");
    assert_eq!(m["raftq_jobs{state=\"buried\"}"], 0.0);
    // (a client that timed out on a loaded host retries with the same request id: the node
    // serves, and counts, the call again, with the stored outcome)
    let calls = m["raftq_rpc_calls_total{rpc=\"add\",result=\"ok\"}"];
    assert!(calls >= 1.0, "{m:?}");
    assert_eq!(m["raftq_job_events_total{event=\"added\"}"], 40.0 * calls);
    assert!(m["raftq_rpc_duration_seconds_count{rpc=\"add\"}"] >= calls);
    assert!(m["raftq_rpc_duration_seconds_sum{rpc=\"add\"}"] > 0.0);
    assert_eq!(m["raftq_raft_is_leader"], 1.0);
    assert_eq!(m["raftq_raft_leader"], leader as f64);
    assert!(m["raftq_raft_term"] >= 1.0);
    assert!(m["raftq_raft_applied_index"] >= 2.0, "{m:?}");
    assert!(m["raftq_raft_committed_index"] >= m["raftq_raft_applied_index"] - 0.5);
    assert!(m["raftq_store_bytes"] > 0.0);
    // the proposer's entries: at least the two adds, each of one command here
    assert!(m["raftq_proposer_batch_commands_count"] >= 2.0, "{m:?}");
    assert!(
        m["raftq_proposer_entry_write_seconds_count"] >= 2.0,
        "{m:?}"
    );
    for peer in (1..=3).filter(|p| *p != leader) {
        let lag = format!("raftq_raft_replication_lag_entries{{peer=\"{peer}\"}}");
        assert!(m.contains_key(&lag), "{lag} missing: {m:?}");
    }

    // step 4: the follower's: the same jobs and leader, its own add counted, not leading
    let f = scrape(&cluster, follower).await;
    assert_eq!(f["raftq_jobs{state=\"ready\"}"], 43.0, "{f:?}");
    let calls = f["raftq_rpc_calls_total{rpc=\"add\",result=\"ok\"}"];
    assert_eq!(
        f["raftq_job_events_total{event=\"added\"}"],
        3.0 * calls,
        "{f:?}"
    );
    assert_eq!(f["raftq_raft_is_leader"], 0.0);
    assert_eq!(f["raftq_raft_leader"], leader as f64);
    assert_eq!(f["raftq_raft_term"], m["raftq_raft_term"]);
    assert!(
        !f.keys()
            .any(|k| k.starts_with("raftq_raft_replication_lag")),
        "only the leader knows replication: {f:?}"
    );

    // step 5: HTTP requests are counted by route and status
    let again = scrape(&cluster, leader).await;
    assert!(
        again["raftq_http_requests_total{route=\"/metrics\",status=\"200\"}"] >= 1.0,
        "{again:?}"
    );
}
