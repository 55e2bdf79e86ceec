//! The REST API on real nodes over real HTTP: the token is required; jobs added through a
//! follower (forwarded to the leader) as a JSON array of wr job objects, a bad one refused
//! with its field named and nothing added; listed by rep group, state and key, paged; removed
//! by rep group and state; info, version, the cluster (the leader's view, through the
//! follower) and the queue's mode.

use raftq_tests::http::{request_with, HttpResponse};
use raftq_tests::*;
use std::time::Duration;

struct Api {
    url: String,
    auth: String,
    /// The cluster CA, when the cluster has TLS (its HTTP port is then HTTPS).
    ca: Option<Vec<u8>>,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        request_with(
            self.ca.as_deref(),
            method,
            &self.url,
            path,
            &[
                ("Authorization", &self.auth),
                ("Content-Type", "application/json"),
            ],
            body.map(str::as_bytes),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// The call's JSON, asserting its status.
    async fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        want: u16,
    ) -> serde_json::Value {
        let r = self.call(method, path, body).await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
        r.json()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_adds_lists_and_removes_through_any_node() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let api = Api {
        url: cluster.http_url(follower),
        auth: format!("Bearer {}", cluster.local.token),
        ca: cluster.local.ca_pem.clone(),
    };

    // step 1: no token, or a wrong one: 401 with the way out, for REST and metrics alike
    for path in ["/rest/v1/jobs", "/rest/v1/info", "/metrics", "/events"] {
        let ca = api.ca.as_deref();
        let r = request_with(ca, "GET", &api.url, path, &[], None)
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.text().contains("Authorization: Bearer"), "{}", r.text());
        let r = request_with(
            ca,
            "GET",
            &api.url,
            path,
            &[("Authorization", "Bearer nope")],
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 401, "{path}");
        assert!(r.text().contains("wrong token"), "{}", r.text());
    }

    // step 2: a bad job anywhere in the array: 400 naming jobs[i].field; nothing added
    let bad = r#"[{"cmd":"echo fine"},{"cmd":"echo bad","memory":"lots"}]"#;
    let e = api.ok("POST", "/rest/v1/jobs", Some(bad), 400).await;
    assert_eq!(e["field"], "jobs[1].memory", "{e}");
    let e = api
        .ok("POST", "/rest/v1/jobs", Some(r#"{"cmd":"x"}"#), 400)
        .await;
    assert!(e["error"].as_str().unwrap().contains("JSON array"), "{e}");
    let e = api
        .ok("POST", "/rest/v1/jobs?priorty=3", Some("[]"), 400)
        .await;
    assert_eq!(e["field"], "priorty", "{e}");
    let e = api.ok("GET", "/rest/v1/jobs?state=done", None, 400).await;
    assert_eq!(e["field"], "state", "{e}");
    let info = api.ok("GET", "/rest/v1/info", None, 200).await;
    assert_eq!(info["states"]["ready"], 0, "{info}");

    // step 3: 25 jobs through the follower (query parameters give the defaults), and again:
    // the second time they all exist already
    let jobs: Vec<serde_json::Value> = (0..25)
        .map(|i| serde_json::json!({ "cmd": format!("echo rest {i}"), "priority": i % 3 }))
        .collect();
    let body = serde_json::to_string(&jobs).unwrap();
    let added = api
        .ok(
            "POST",
            "/rest/v1/jobs?rep_grp=rest.a&memory=200M",
            Some(&body),
            201,
        )
        .await;
    assert_eq!(
        (added["added"].as_u64(), added["existed"].as_u64()),
        (Some(25), Some(0))
    );
    let keys: Vec<String> = added["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 25);
    let again = api
        .ok("POST", "/rest/v1/jobs?rep_grp=rest.a", Some(&body), 201)
        .await;
    assert_eq!(again["existed"], 25, "{again}");
    let other = r#"[{"cmd":"echo other","rep_grp":"rest.b","memory":"1G","cpus":2}]"#;
    api.ok("POST", "/rest/v1/jobs", Some(other), 201).await;

    // step 4: listed by rep group (exact and prefix), by state, by key; paged with the total
    // in X-Total-Count
    let r = api
        .call(
            "GET",
            "/rest/v1/jobs?rep_grp=rest.a&offset=20&count=10",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-total-count"], "25");
    let page = r.json();
    assert_eq!(page.as_array().unwrap().len(), 5, "{page}");
    assert_eq!(page[0]["state"], "ready");
    assert_eq!(page[0]["rep_grp"], "rest.a");
    assert_eq!(page[0]["asked"]["ram_mb"], 200, "{}", page[0]);
    let r = api
        .call(
            "GET",
            "/rest/v1/jobs?rep_grp=rest.&match=prefix&state=ready",
            None,
        )
        .await;
    assert_eq!(r.headers["x-total-count"], "26", "{}", r.text());
    let one = api
        .ok(
            "GET",
            &format!("/rest/v1/jobs?key={},{}", keys[0], keys[1]),
            None,
            200,
        )
        .await;
    assert_eq!(one.as_array().unwrap().len(), 2, "{one}");
    let job = api
        .ok("GET", &format!("/rest/v1/jobs/{}", keys[3]), None, 200)
        .await;
    assert_eq!(job["cmd"], "echo rest 3");
    let e = api.ok("GET", "/rest/v1/jobs/nope", None, 400).await;
    assert_eq!(e["field"], "key");
    let missing = "0".repeat(32);
    api.ok("GET", &format!("/rest/v1/jobs/{missing}"), None, 404)
        .await;
    // wr's similar grouping: one job shown per (state, fail reason, exit code), the rest
    // counted
    let similar = api
        .ok("GET", "/rest/v1/jobs?rep_grp=rest.a&limit=1", None, 200)
        .await;
    assert_eq!(similar.as_array().unwrap().len(), 1, "{similar}");
    assert_eq!(similar[0]["similar"], 24);

    // step 5: info and version; the cluster as the follower sees it names the leader
    let info = api.ok("GET", "/rest/v1/info", None, 200).await;
    assert_eq!(info["states"]["ready"], 26, "{info}");
    assert_eq!(info["rep_groups"]["rest.a"]["ready"], 25);
    assert_eq!(info["node"], follower);
    assert_eq!(info["leader"], leader);
    let v = api.ok("GET", "/rest/v1/version", None, 200).await;
    assert_eq!(v["api"], "v1");
    let c = api.ok("GET", "/rest/v1/cluster", None, 200).await;
    assert_eq!(c["leader"], leader, "{c}");
    assert_eq!(c["nodes"].as_array().unwrap().len(), 3);
    // the follower shows the leader's view, which knows every node's role and replication
    assert_eq!(c["answered_by"], leader, "{c}");
    assert_eq!(c["stale"], false, "{c}");
    for n in c["nodes"].as_array().unwrap() {
        assert_ne!(n["role"], "unknown", "{c}");
    }

    // step 6: the queue paused and resumed; a bad mode names the field
    let m = api
        .ok("PUT", "/rest/v1/queue", Some(r#"{"mode":"paused"}"#), 200)
        .await;
    assert_eq!(m["mode"], "paused");
    api.ok("PUT", "/rest/v1/queue", Some(r#"{"mode":"open"}"#), 200)
        .await;
    let e = api
        .ok("PUT", "/rest/v1/queue", Some(r#"{"mode":"shut"}"#), 400)
        .await;
    assert_eq!(e["field"], "mode");

    // step 7: remove: a selector is required, a state the action cannot take is refused;
    // by rep group and state, through the follower
    let e = api.ok("DELETE", "/rest/v1/jobs", None, 400).await;
    assert_eq!(e["field"], "rep_grp", "{e}");
    let e = api
        .ok("DELETE", "/rest/v1/jobs?state=complete", None, 400)
        .await;
    assert_eq!(e["field"], "state", "{e}");
    let d = api
        .ok(
            "DELETE",
            "/rest/v1/jobs?rep_grp=rest.a&state=ready",
            None,
            200,
        )
        .await;
    assert_eq!(d["deleted"], 25, "{d}");
    let d = api
        .ok(
            "DELETE",
            &format!("/rest/v1/jobs?key={}", keys[0]),
            None,
            200,
        )
        .await;
    assert_eq!(d["deleted"], 0, "{d}");
    assert_eq!(d["skipped"][0]["why"], "not_found", "{d}");
    let info = api.ok("GET", "/rest/v1/info", None, 200).await;
    assert_eq!(info["states"]["ready"], 1, "{info}");
    cluster.converged(Duration::from_secs(30)).await;
}
