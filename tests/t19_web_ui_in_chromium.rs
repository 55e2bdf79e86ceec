//! The web UI in a real browser (Debian's headless Chromium through chromedriver): log in with
//! the token; counts change live after an add, with no reload; a failed job's page shows its
//! stderr; a running job killed from the page (with its confirmation) ends buried; the cluster
//! page names the leader, and the new one after the leader is killed. Over HTTPS (a TLS
//! cluster; the browser accepts the cluster CA's certificates).
//!
//! With `RAFTQ_SCREENSHOTS=DIR`, each page is saved as a PNG in DIR (docs/images/ holds the
//! ones of the operator guide).

use raftq_tests::raftq_proto::pb;
use raftq_tests::webdriver::Browser;
use raftq_tests::*;
use std::path::PathBuf;
use std::time::Duration;

/// Long enough for a loaded 2-core machine; every wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(60);

async fn shot(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("RAFTQ_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        b.screenshot(&dir.join(format!("{name}.png")))
            .await
            .expect("screenshot");
    }
}

fn spec(cmd: &str, rep_grp: &str) -> pb::JobSpec {
    let mut j = raftq_local::small_job(cmd.into(), rep_grp);
    j.cwd = "/tmp".into();
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_is_live_shows_jobs_kills_and_follows_the_leader() {
    let runners = Registry::new();
    // TLS: the page is served over HTTPS with the node's certificate.
    let mut cluster = Cluster::start_with(
        3,
        &runners.settings("ttr_s = 4\nmax_cores = 2\nidle_exit_s = 30\n"),
    );
    let leader = cluster.leader(Duration::from_secs(30)).await;
    // The browser uses a follower's port, which stays up when the leader is killed.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let url = cluster.http_url(follower);
    let client = cluster.client();
    let b = Browser::start(1280, 860).await.expect("browser");

    // step 1: the login form, then the page (a wrong token first: refused)
    b.goto(&format!("{url}/")).await.unwrap();
    b.click("#token", WAIT).await.unwrap();
    b.type_into("#token", "not-the-token").await.unwrap();
    b.click("#login-submit", WAIT).await.unwrap();
    b.wait_js(
        "const e = document.getElementById('login-failed'); return e && !e.hidden",
        WAIT,
    )
    .await
    .expect("a wrong token is refused");
    b.type_into("#token", &cluster.local.token).await.unwrap();
    shot(&b, "login").await;
    b.click("#login-submit", WAIT).await.unwrap();
    b.wait_js("return document.getElementById('counts') !== null", WAIT)
        .await
        .expect("the page after login");
    b.wait_js(
        "return document.getElementById('total-ready') !== null",
        WAIT,
    )
    .await
    .expect("counts drawn from the first event");
    // the token is in no URL, and the page's scripts cannot read the cookie
    let seen = b
        .js("return location.href + ' ' + document.cookie")
        .await
        .unwrap();
    assert!(
        !seen.as_str().unwrap().contains(&cluster.local.token),
        "{seen}"
    );
    b.js("window.__noReload = 1; return 1").await.unwrap();

    // step 2: jobs added through gRPC show up in the counts with no reload
    let mut req = runnable_add(vec![
        spec("echo to-stdout; echo the-error-text >&2; exit 7", "ui.fail"),
        spec("sleep 600", "ui.slow"),
    ]);
    req.return_keys = true;
    let keys = client.add(req).await.expect("add").keys;
    assert_eq!(keys.len(), 2);
    b.wait_text("#total-buried", "1", WAIT)
        .await
        .expect("the failed job counted as buried, live");
    b.wait_text("td[data-grp='ui.slow'][data-state='running']", "1", WAIT)
        .await
        .expect("the slow job counted as running, live");
    assert_eq!(b.js("return window.__noReload").await.unwrap(), 1);
    shot(&b, "counts").await;

    // step 3: the failed job in the list, and its page with its stderr
    b.js("location.hash = '#/jobs?rep_grp=ui.fail'; return 1")
        .await
        .unwrap();
    b.click("#jobs tbody tr a", WAIT).await.unwrap();
    let stderr = b
        .wait_text("#job-stderr", "the-error-text", WAIT)
        .await
        .expect("the failed job's stderr");
    assert!(!stderr.contains("to-stdout"), "{stderr}");
    b.wait_text("#job-exit-code", "7", WAIT).await.unwrap();
    b.wait_text("#job-stdout", "to-stdout", WAIT).await.unwrap();
    shot(&b, "job").await;
    b.js("document.getElementById('job-stdout').scrollIntoView(); return 1")
        .await
        .unwrap();
    shot(&b, "job-output").await;
    b.js("location.hash = '#/jobs'; return 1").await.unwrap();
    b.wait_js(
        "return document.querySelectorAll('#jobs tbody tr').length >= 1",
        WAIT,
    )
    .await
    .unwrap();
    shot(&b, "jobs").await;

    // step 4: the running job killed from its page, with the confirmation: it ends buried
    b.js(&format!("location.hash = '#/job/{}'; return 1", keys[1]))
        .await
        .unwrap();
    b.wait_text("#job-badge", "running", WAIT).await.unwrap();
    b.click("#act-kill", WAIT).await.unwrap();
    b.wait_js("return document.getElementById('confirm').open", WAIT)
        .await
        .unwrap();
    b.click("#confirm-ok", WAIT).await.unwrap();
    b.wait_text("#job-badge", "buried", WAIT)
        .await
        .expect("the killed job ends buried");
    let job = client
        .get(&job_keys(&keys[1..2]), false)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.state, pb::StateName::Buried as i32);
    assert!(job.fail_reason.contains("kill"), "{}", job.fail_reason);

    // the leader's scheduler started the runners, and /metrics says so per group
    let m = cluster
        .http("GET", leader, "/metrics", None)
        .await
        .unwrap()
        .text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("raftq_scheduler_runners_started{group=") && !l.ends_with(" 0")),
        "{m}"
    );

    // step 5: the cluster page names the leader; after the leader is killed, the new one
    b.js("location.hash = '#/cluster'; return 1").await.unwrap();
    b.wait_text("#leader", &format!("node {leader}"), WAIT)
        .await
        .unwrap();
    shot(&b, "cluster").await;
    cluster.kill(leader);
    let new_leader = cluster.leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    b.wait_text("#leader", &format!("node {new_leader}"), WAIT)
        .await
        .expect("the cluster page follows the leader change");
    assert_eq!(b.js("return window.__noReload").await.unwrap(), 1);
}
