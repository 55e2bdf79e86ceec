//! A backup taken under load (`raftq backup`), refused when corrupt or truncated, restored
//! (`raftq restore`) into the first node of a fresh three-node cluster: every node of the new
//! cluster has the backup's counts, the seeded state has the backup's queue digest, the
//! reservations held at backup time come back through the lost-job rules, and its jobs run.

use raftq_proto::pb;
use raftq_tests::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FAST: &str =
    "[fsm]\nrelease_delay_ms = 300\nmax_release_delay_ms = 300\nlost_return_delay_ms = 300\n";
/// Jobs added before the backup, and per batch of the load running during it.
const JOBS: usize = 300;
const LOAD_BATCH: usize = 20;
/// TTR of the reservations held at backup time: long enough that the counts are compared
/// before they run out in the new cluster.
const HELD_TTR_MS: u64 = 20_000;
const HELD: usize = 5;

fn runnable(prefix: &str, n: usize) -> pb::AddRequest {
    runnable_add((0..n).map(|i| job(format!("true {prefix} {i}"))).collect())
}

/// `raftq ARGS` against `cluster` (its addresses and token in the environment).
fn raftq(cluster: &Cluster, args: &[&str]) -> Output {
    cluster.raftq().args(args).output().expect("run raftq")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The word after `label` in `s`.
fn after<'a>(s: &'a str, label: &str) -> &'a str {
    let rest = &s[s
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {s}"))
        + label.len()..];
    rest.split(|c: char| c.is_whitespace() || c == ',' || c == ')')
        .next()
        .unwrap()
}

/// What the backup file holds, read independently of the CLI: per-state counts and the
/// queue digest of the state, imported into an in-memory state machine.
fn backup_contents(file: &Path) -> (BTreeMap<String, u64>, String) {
    let data = raft_store::SnapshotData::open(file).unwrap();
    let mut reader = raft_store::snapshot::Reader::new(data.reader().unwrap()).unwrap();
    let chunks = std::iter::from_fn(|| {
        reader
            .next_chunk()
            .map_err(|e| queue_fsm::StoreError::Io(e.to_string()))
            .transpose()
    });
    let mut fsm = queue_fsm::Fsm::open(
        queue_fsm::MemStore::default(),
        queue_fsm::FsmConfig::default(),
    )
    .unwrap();
    fsm.import_streamed(chunks).unwrap();
    fsm.check_invariants().unwrap();
    let counts = fsm
        .stats()
        .unwrap()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    (counts, fsm.queue_digest().unwrap())
}

async fn counts(client: &raftq_client::Client, stale: bool) -> BTreeMap<String, u64> {
    client
        .stats(stale)
        .await
        .expect("stats")
        .states
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_into_a_new_cluster() {
    // step 1: a cluster with jobs, some of them reserved and held
    let old = Cluster::start_with(3, FAST);
    old.leader(Duration::from_secs(30)).await;
    let client = old.client();
    client.add(runnable("before", JOBS)).await.unwrap();
    for _ in 0..HELD {
        let r = client
            .reserve(pb::ReserveRequest {
                request_id: vec![],
                runner_id: runner_id(),
                sched_group: String::new(),
                ttr_ms: HELD_TTR_MS,
                wait_ms: 0,
            })
            .await
            .unwrap();
        assert!(r.job.is_some(), "a job to hold");
    }

    // step 2: a backup while adds go on
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (old.client(), stop.clone());
        tokio::spawn(async move {
            let mut batches = 0;
            while !stop.load(Ordering::Relaxed) {
                client
                    .add(runnable(&format!("load {batches}"), LOAD_BATCH))
                    .await
                    .expect("add under load");
                batches += 1;
            }
            batches
        })
    };
    // the load is running before the backup starts
    raftq_local::wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        let client = &client;
        async move {
            let n = total(client, "ready").await;
            if n > (JOBS - HELD) as u64 {
                Ok(())
            } else {
                Err(n)
            }
        }
    })
    .await
    .expect("the load adds jobs");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("queue.backup");
    let out = raftq(&old, &["backup", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "backup failed: {stdout}\n{stderr}");
    assert!(
        stderr.contains("applied index"),
        "progress on stderr: {stderr}"
    );
    let digest = after(&stdout, "queue digest ").to_string();
    stop.store(true, Ordering::Relaxed);
    let batches = load.await.unwrap();
    assert!(batches > 0);
    let again = raftq(&old, &["backup", file.to_str().unwrap()]);
    assert!(!again.status.success(), "a backup never overwrites a file");
    assert!(text(&again).1.contains("exists"), "{:?}", text(&again));

    // the file, read on its own, holds what the CLI reported, at one applied index
    let (expected, file_digest) = backup_contents(&file);
    assert_eq!(file_digest, digest);
    assert_eq!(
        expected.get("reserved"),
        Some(&(HELD as u64)),
        "{expected:?}"
    );
    let backed_up: u64 = expected.values().sum();
    assert!(
        backed_up > JOBS as u64,
        "the backup has jobs of the load: {expected:?}"
    );
    drop(old);

    // step 3: corrupt and truncated copies are refused, naming the file and the damage
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    let cases = [
        ("flipped.backup", flipped, ""),
        (
            "truncated.backup",
            bytes[..bytes.len() - 40].to_vec(),
            "truncated",
        ),
    ];
    for (name, content, says) in cases {
        let bad = work.path().join(name);
        std::fs::write(&bad, content).unwrap();
        let target = work.path().join(format!("{name}.dir"));
        let out = Command::new(raftq_bin())
            .args(["restore", bad.to_str().unwrap(), "--data-dir"])
            .arg(&target)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{name} restored");
        assert!(stderr.contains(bad.to_str().unwrap()), "{name}: {stderr}");
        assert!(
            stderr.contains("refused") && stderr.contains(says),
            "{name}: {stderr}"
        );
        assert!(!target.exists(), "{name}: the data dir was made anyway");
    }

    // step 4: restore into node 1 of a new cluster, start all three
    let mut new = Cluster::prepare(3, FAST);
    let out = Command::new(raftq_bin())
        .args(["restore", file.to_str().unwrap(), "--data-dir"])
        .arg(new.data_dir(1))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "restore failed: {stdout}\n{stderr}");
    assert_eq!(after(&stdout, "queue digest "), digest);
    new.local.start_all().expect("start the new cluster");
    new.leader(Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(new.dir.path().join("node-1.log")).unwrap();
    assert!(log.contains("seeded from the restored backup"), "{log}");
    assert!(
        log.contains(&digest),
        "node 1 seeded a state of another digest: {log}"
    );

    // step 5: every node has the backup's counts (the held reservations still held)
    new.converged(Duration::from_secs(60)).await;
    let nc = new.client();
    assert_eq!(counts(&nc, false).await, expected);
    for id in 1..=3 {
        assert_eq!(
            counts(&new.client_of(id), true).await,
            expected,
            "node {id}"
        );
    }

    // step 6: the held reservations' runners are gone: their leases run out, the jobs come
    // back; then a runner runs everything
    raftq_local::wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
        let nc = &nc;
        async move {
            let c = counts(nc, false).await;
            if !c.contains_key("reserved") && !c.contains_key("lost") {
                Ok(())
            } else {
                Err(c)
            }
        }
    })
    .await
    .expect("the reservations held at backup time come back");
    let mut runner = start_runner(&new, "restored", &["--idle-exit", "3s"]);
    let status = tokio::task::spawn_blocking(move || runner.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "runner exited with {status}");
    let done = counts(&nc, false).await;
    assert_eq!(
        done,
        BTreeMap::from([("complete".to_string(), backed_up)]),
        "every restored job ran"
    );
    new.converged(Duration::from_secs(60)).await;
}
