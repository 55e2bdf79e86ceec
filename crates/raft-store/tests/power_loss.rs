//! The test-only power-loss simulation (`RocksOptions::power_loss_sim`): a node killed in that
//! mode loses every write it had not synced and keeps every synced one; killed without it, it
//! keeps both (the un-synced writes had reached the OS).
//!
//! Each case makes its writes in a child process, this test binary run again for `child`
//! alone, which ends with `abort()` (no destructor runs, as under SIGKILL). The parent then
//! reopens the stores through `raft_store::open` and looks.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder};
use openraft::storage::{RaftStateMachine, StorageHelper};
use openraft::type_config::TypeConfigExt;
use raft_store::types::{Entry, LogId, Vote};
use raft_store::{LogStore, Proposal, RocksOptions, StateMachine, TypeConfig};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

/// Set in the child: the data directory to write to.
const CHILD_DIR: &str = "RAFTQ_POWER_LOSS_TEST_DIR";
/// Set in the child: "1" to open the stores in power-loss simulation.
const CHILD_SIM: &str = "RAFTQ_POWER_LOSS_TEST_SIM";
/// Printed by the child just before it aborts.
const REACHED: &str = "power-loss child: writes done, aborting";
/// SIGABRT on Linux.
const SIGABRT: i32 = 6;

fn open(dir: &Path, power_loss_sim: bool) -> (LogStore, StateMachine) {
    raft_store::open(
        dir,
        queue_fsm::FsmConfig::default(),
        RocksOptions { power_loss_sim },
    )
    .unwrap()
}

fn log_id(index: u64) -> LogId {
    openraft::testing::log_id::<TypeConfig>(1, 1, index)
}

fn vote() -> Vote {
    Vote::new(7, 1)
}

/// Entry `index` of the test log: a blank one at 0 (a log starts at 0, as openraft's own
/// first entry does), then one job added per entry.
fn entry(index: u64) -> Entry {
    use openraft::entry::RaftEntry;
    if index == 0 {
        return Entry::new_blank(log_id(0));
    }
    let proposal = Proposal {
        stamp_ms: 1_000 + index,
        requests: vec![queue_fsm::Request::new(
            Some(queue_fsm::RequestId(index as u128)),
            queue_fsm::Command::Add(queue_fsm::AddJobs {
                jobs: vec![queue_fsm::JobSpec::new(format!("job {index}"))],
                ..Default::default()
            }),
        )],
    };
    Entry::new_normal(log_id(index), proposal)
}

async fn apply(sm: &mut StateMachine, indexes: std::ops::RangeInclusive<u64>) {
    let entries = indexes.map(|i| Ok((entry(i), None)));
    sm.apply(futures::stream::iter(entries)).await.unwrap();
}

fn digest(sm: &StateMachine) -> String {
    raft_store::state_machine::lock(&sm.fsm())
        .unwrap()
        .digest()
        .unwrap()
}

/// The child's writes, each store in its own directory so that each sync is checked alone (a
/// sync makes every earlier write durable too):
/// - `vote/`: committed = 1 (not synced); the vote (a write with `sync`); committed = 3 (not
///   synced).
/// - `append/`: committed = 1 (not synced); log entries 0-3 (`append` reports them flushed
///   after `flush_wal(true)`); committed = 3 (not synced).
/// - `log/`: log entries 0-3; the state machine (which never syncs) applies entries 0-2, a
///   snapshot of them is saved to `snapshots/current` (a plain file, fsynced), the log is
///   purged up to 1 (the purge point is a synced write); committed = 3 (not synced); entry 3
///   is applied.
#[test]
#[ignore = "helper: the other tests run it in a child process"]
fn child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let sim = std::env::var(CHILD_SIM).as_deref() == Ok("1");
    TypeConfig::run(async move {
        let (mut log, _) = open(&dir.join("vote"), sim);
        log.save_committed(Some(log_id(1))).await.unwrap();
        log.save_vote(&vote()).await.unwrap();
        log.save_committed(Some(log_id(3))).await.unwrap();

        let (mut log, _) = open(&dir.join("append"), sim);
        log.save_committed(Some(log_id(1))).await.unwrap();
        log.blocking_append((0..=3).map(entry)).await.unwrap();
        log.save_committed(Some(log_id(3))).await.unwrap();

        let (mut log, mut sm) = open(&dir.join("log"), sim);
        log.blocking_append((0..=3).map(entry)).await.unwrap();
        apply(&mut sm, 0..=2).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(log_id(1)).await.unwrap();
        log.save_committed(Some(log_id(3))).await.unwrap();
        apply(&mut sm, 3..=3).await;

        eprintln!("{REACHED}");
        std::process::abort();
    });
}

/// Runs `child` on `dir` in a new process and checks that it made all its writes and died of
/// the abort.
fn run_child(dir: &Path, sim: bool) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_SIM, if sim { "1" } else { "0" })
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(REACHED) && out.status.signal() == Some(SIGABRT),
        "the child did not abort after its writes: {:?}\n{stderr}",
        out.status
    );
}

/// Indexes of the log entries after the purge point, and the purge point.
async fn log_entries(log: &mut LogStore) -> (Vec<u64>, Option<LogId>) {
    use openraft::entry::RaftEntry;
    let purged = log.get_log_state().await.unwrap().last_purged_log_id;
    let from = purged.map_or(0, |p| p.index + 1);
    let entries = log.try_get_log_entries(from..100).await.unwrap();
    (entries.iter().map(|e| e.index()).collect(), purged)
}

#[test]
fn power_loss_sim_drops_unsynced_writes_on_kill() {
    TypeConfig::run(async {
        let dir = tempfile::TempDir::new().unwrap();
        run_child(dir.path(), true);

        let (mut log, _) = open(&dir.path().join("vote"), true);
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(vote()),
            "synced vote lost"
        );
        // committed = 1 was made durable by the vote's sync; committed = 3 was never synced.
        let committed = log.read_committed().await.unwrap();
        assert_eq!(
            committed,
            Some(log_id(1)),
            "un-synced write survived the kill"
        );

        let (mut log, _) = open(&dir.path().join("append"), true);
        let entries = log_entries(&mut log).await;
        assert_eq!(entries, (vec![0, 1, 2, 3], None), "synced log append lost");
        // committed = 1 was made durable by the append's sync; committed = 3 was never synced.
        let committed = log.read_committed().await.unwrap();
        assert_eq!(
            committed,
            Some(log_id(1)),
            "un-synced write survived the kill"
        );

        let (mut log, mut sm) = open(&dir.path().join("log"), true);
        let entries = log_entries(&mut log).await;
        assert_eq!(
            entries,
            (vec![2, 3], Some(log_id(1))),
            "synced purge point lost"
        );
        let committed = log.read_committed().await.unwrap();
        assert_eq!(committed, None, "un-synced write survived the kill");
        // The state machine never syncs: all it applied is gone; the snapshot file stays.
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));

        // openraft's start-up restores the state machine from the snapshot, which covers the
        // purged entries: the state machine need not sync before the log is purged.
        StorageHelper::new(&mut log, &mut sm)
            .with_id(1)
            .get_initial_state()
            .await
            .unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(2)));
        let reference = tempfile::TempDir::new().unwrap();
        let (_, mut expected) = open(reference.path(), false);
        apply(&mut expected, 0..=2).await;
        assert_eq!(digest(&sm), digest(&expected));
    });
}

#[test]
fn without_power_loss_sim_a_kill_keeps_unsynced_writes() {
    TypeConfig::run(async {
        let dir = tempfile::TempDir::new().unwrap();
        run_child(dir.path(), false);

        let (mut log, _) = open(&dir.path().join("vote"), false);
        assert_eq!(log.read_vote().await.unwrap(), Some(vote()));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3)));

        let (mut log, _) = open(&dir.path().join("append"), false);
        assert_eq!(log_entries(&mut log).await, (vec![0, 1, 2, 3], None));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3)));

        let (mut log, mut sm) = open(&dir.path().join("log"), false);
        assert_eq!(log_entries(&mut log).await, (vec![2, 3], Some(log_id(1))));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3)));
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(3)));
    });
}
