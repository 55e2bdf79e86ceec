//! The cluster token rotated without downtime: `raftq token rotate` puts a new token first in
//! the token file the nodes share, and they accept it beside the old one within seconds, no
//! restart; after `raftq token retire` only the new one opens the cluster. A runner that
//! holds a token file goes on running jobs through it all: refused once, it re-reads its
//! file and sends the new token. A runner token (`raftq token runner`) runs jobs and is
//! refused adds, kills and kicks.

use raftq_client::{Client, ClientConfig, ClientError};
use raftq_tests::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A client of the whole cluster sending `token`, giving up after 3 s.
fn client_with(cluster: &Cluster, token: &str) -> Client {
    let config = ClientConfig {
        token: Some(token.to_string()),
        deadline: Duration::from_secs(3),
        ..cluster.local.client_config()
    };
    Client::new(cluster.addrs(), config).expect("client")
}

/// Whether `token` opens the cluster now (Some(true)), is refused (Some(false)), or the
/// answer was something else (None).
async fn opens(cluster: &Cluster, token: &str) -> Option<bool> {
    match client_with(cluster, token).stats(true).await {
        Ok(_) => Some(true),
        Err(ClientError::Status(s)) if s.code() == tonic::Code::Unauthenticated => Some(false),
        Err(_) => None,
    }
}

/// Runs `raftq token ARGS --token-file FILE`, asserting success.
fn token_cmd(cluster: &Cluster, what: &str, file: &Path) {
    let out = cluster
        .raftq()
        .args(["token", what, "--token-file"])
        .arg(file)
        .output()
        .expect("run raftq token");
    assert!(
        out.status.success(),
        "raftq token {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_private(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy token file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_rotated_and_retired_while_a_runner_works() {
    let cluster = Cluster::start(3);
    cluster.leader(Duration::from_secs(30)).await;
    let shared = cluster.dir.path().join("token"); // the file every node reads
    let old = cluster.local.token.clone();

    // step 1: a runner with a token file of its own (a copy, as on a compute host)
    let runner_file = cluster.dir.path().join("runner-token");
    copy_private(&shared, &runner_file);
    let log = std::fs::File::create(cluster.dir.path().join("runner-rotation.log")).unwrap();
    let mut runner = cluster
        .raftq()
        .args(["runner", "--idle-exit", "120s"])
        .env_remove("RAFTQ_TOKEN")
        .env("RAFTQ_TOKEN_FILE", &runner_file)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn raftq runner");
    let admin = client_with(&cluster, &old);
    let add =
        |tag: &'static str| runnable_add((0..5).map(|i| job(format!("true {tag} {i}"))).collect());
    admin.add(add("before")).await.unwrap();
    wait_for(
        "the runner completes the first jobs",
        Duration::from_secs(60),
        || {
            let c = &admin;
            async move { (total(c, "complete").await >= 5).then_some(()) }
        },
    )
    .await;

    // step 2: rotate: the nodes accept the new token beside the old, without a restart
    token_cmd(&cluster, "rotate", &shared);
    let new = raftq_client::auth::read_token_file(&shared).unwrap();
    assert_ne!(new, old);
    wait_for(
        "the nodes accept the new token",
        Duration::from_secs(30),
        || {
            let (c, t) = (&cluster, new.clone());
            async move { (opens(c, &t).await == Some(true)).then_some(()) }
        },
    )
    .await;
    assert_eq!(opens(&cluster, &old).await, Some(true), "the old one too");
    let wrong = "0123456789abcdef0123456789abcdef";
    assert_eq!(opens(&cluster, wrong).await, Some(false));

    // step 3: the runner host gets the new file; then the old token is retired
    copy_private(&shared, &runner_file);
    token_cmd(&cluster, "retire", &shared);
    wait_for(
        "the nodes refuse the old token",
        Duration::from_secs(30),
        || {
            let (c, t) = (&cluster, old.clone());
            async move { (opens(c, &t).await == Some(false)).then_some(()) }
        },
    )
    .await;
    assert_eq!(opens(&cluster, &new).await, Some(true));

    // step 4: the runner, still sending the old token, is refused once, re-reads its file
    // and runs the jobs added with the new token
    let admin = client_with(&cluster, &new);
    admin.add(add("after")).await.unwrap();
    wait_for(
        "the runner completes the jobs added after the retirement",
        Duration::from_secs(60),
        || {
            let c = &admin;
            async move { (total(c, "complete").await >= 10).then_some(()) }
        },
    )
    .await;
    assert!(
        matches!(runner.try_wait(), Ok(None)),
        "the runner kept running through the rotation"
    );
    let _ = runner.kill();
    let _ = runner.wait();

    // step 5: a runner token reserves and reports, and can do nothing else
    let runner_only = cluster.dir.path().join("runner-only-token");
    let out = cluster
        .raftq()
        .args(["token", "runner", "--token-file"])
        .arg(&shared)
        .arg("--out")
        .arg(&runner_only)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = raftq_client::auth::read_token_file(&runner_only).unwrap();
    wait_for(
        "the nodes accept the runner token",
        Duration::from_secs(30),
        || {
            let (c, t) = (&cluster, token.clone());
            async move { (opens(c, &t).await == Some(true)).then_some(()) }
        },
    )
    .await;
    let limited = client_with(&cluster, &token);
    let denied = |r: Result<u64, ClientError>| match r {
        Err(ClientError::Status(s)) if s.code() == tonic::Code::PermissionDenied => {
            assert!(s.message().contains("a runner token may only"), "{s:?}")
        }
        other => panic!("a runner token was let do more than run jobs: {other:?}"),
    };
    denied(limited.add(add("by a runner")).await.map(|r| r.added));
    denied(limited.kill(&[]).await);
    denied(limited.kick(&[]).await);
    // ... and on the HTTP port it reads, and nothing else
    let url = cluster.local.http_urls()[0].clone();
    let ca = cluster.local.ca_pem.clone();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let http = |method: &'static str, path: &'static str| {
        let (url, ca, auth) = (url.clone(), ca.clone(), auth);
        async move {
            raftq_tests::http::request_with(ca.as_deref(), method, &url, path, &auth, None)
                .await
                .unwrap()
        }
    };
    assert_eq!(http("GET", "/rest/v1/info").await.status, 200);
    let r = http("DELETE", "/rest/v1/jobs?state=ready").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("runner token may only read"),
        "{}",
        r.text()
    );
    let log = std::fs::File::create(cluster.dir.path().join("runner-only.log")).unwrap();
    let mut runner = cluster
        .raftq()
        .args(["runner", "--idle-exit", "120s"])
        .env_remove("RAFTQ_TOKEN")
        .env("RAFTQ_TOKEN_FILE", &runner_only)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn raftq runner");
    admin.add(add("for the runner token")).await.unwrap();
    wait_for(
        "a runner with a runner token completes jobs",
        Duration::from_secs(60),
        || {
            let c = &admin;
            async move { (total(c, "complete").await >= 15).then_some(()) }
        },
    )
    .await;
    let _ = runner.kill();
    let _ = runner.wait();
}
