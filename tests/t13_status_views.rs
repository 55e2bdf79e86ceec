//! `raftq status` views against a real cluster: jobs looked up by key and by command, listed
//! by state as tab-separated lines, and as JSON with details; totals on one line.

use raftq_tests::*;
use std::time::Duration;

/// Runs `raftq status ARGS` against `cluster`; returns stdout, asserting success.
fn status(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster
        .raftq()
        .arg("status")
        .args(args)
        .output()
        .expect("run raftq status");
    assert!(
        out.status.success(),
        "raftq status {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_finds_jobs_by_key_command_and_state() {
    let cluster = Cluster::start(1);
    cluster.leader(Duration::from_secs(30)).await;
    let mut req = add_request(["echo one".to_string(), "echo two".to_string()]);
    for j in &mut req.jobs {
        j.rep_grp = "views".into();
    }
    assert_eq!(cluster.client().add(req).await.expect("add").added, 2);

    // totals on one line
    assert_eq!(status(&cluster, &["-o", "summary"]).trim(), "ready 2");

    // every ready job as a tab-separated line: key, rep group, state, exit, reason, cmd
    let plain = status(&cluster, &["--state", "ready", "-o", "plain"]);
    let mut rows: Vec<Vec<&str>> = plain.lines().map(|l| l.split('\t').collect()).collect();
    rows.sort_by_key(|r| r[5]);
    assert_eq!(rows.len(), 2, "{plain}");
    assert_eq!(&rows[0][1..], ["views", "ready", "-", "-", "echo one"]);
    let key_one = rows[0][0].to_string();

    // by command (its key as `raftq add` makes it), as JSON with the job in it
    let v: serde_json::Value =
        serde_json::from_str(&status(&cluster, &["--cmd", "echo one", "-o", "json"]))
            .expect("json");
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["jobs"][0]["key"], key_one.as_str());
    assert_eq!(v["jobs"][0]["rep_grp"], "views");
    assert_eq!(v["states"]["ready"], 2);

    // by key, in text: the job's line and what is known of it
    let text = status(&cluster, &["--key", &key_one]);
    assert!(
        text.contains(&format!("{key_one} ready: echo one")),
        "{text}"
    );
    assert!(text.contains("rep group views; attempts 0"), "{text}");

    // --json --details keeps the details (it used to drop them)
    let v: serde_json::Value =
        serde_json::from_str(&status(&cluster, &["--json", "--details"])).expect("json");
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(2), "{v}");

    // a command no job has
    assert!(status(&cluster, &["--cmd", "echo three"]).contains("no job with that key"));
}
