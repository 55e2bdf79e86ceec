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
///   snapshot of them is saved to `snapshots/current` (a plain file, fsynced; the checkpoint
///   it is built from flushes the state machine's memtables), the log is
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

/// Runs the test `child` (or another child case) on `dir` in a new process and checks that it
/// made all its writes and died of the abort.
fn run_child(dir: &Path, sim: bool) {
    run_child_case("child", dir, sim)
}

fn run_child_case(case: &str, dir: &Path, sim: bool) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([case, "--exact", "--ignored", "--nocapture"])
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
        // The state machine never syncs, but the snapshot build's checkpoint flushed its
        // memtables (tables are synced files): it comes back at the snapshot's entry 2, and
        // what it applied after (entry 3) is gone. The snapshot file stays.
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(2)));
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));

        // openraft's start-up finds the state machine at the snapshot, which covers the purged
        // entries, and goes on from the log after it.
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

/// The cluster of the snapshot case: node 1 alone, so that a restarted node can elect itself
/// and serve.
fn single_member_entry(index: u64) -> Entry {
    use openraft::entry::RaftEntry;
    let voters = std::collections::BTreeSet::from([1u64]);
    let membership =
        openraft::Membership::<u64, openraft::BasicNode>::new_with_defaults(vec![voters], []);
    Entry::new_membership(log_id(index), membership)
}

/// The leader's log of the snapshot case: the membership at 1, then one job per entry.
fn leader_entry(index: u64) -> Entry {
    if index == 1 {
        single_member_entry(1)
    } else {
        entry(index)
    }
}

/// The node of the snapshot case, in `DIR/node`: it has applied entries 0-3 when openraft takes
/// a snapshot builder (its export is at 3), then installs the leader's snapshot at 10 (made in
/// `DIR/leader`), then the late build of the export at 3 finishes, then the log is purged up
/// to 10 (as openraft does once the install is done), then the power goes.
#[test]
#[ignore = "helper: the other tests run it in a child process"]
fn child_install() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let sim = std::env::var(CHILD_SIM).as_deref() == Ok("1");
    TypeConfig::run(async move {
        let (_, mut leader) = open(&dir.join("leader"), false);
        let entries = (0..=10).map(|i| Ok((leader_entry(i), None)));
        leader.apply(futures::stream::iter(entries)).await.unwrap();
        let snapshot = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        let (mut log, mut sm) = open(&dir.join("node"), sim);
        log.blocking_append((0..=3).map(leader_entry))
            .await
            .unwrap();
        let entries = (0..=3).map(|i| Ok((leader_entry(i), None)));
        sm.apply(futures::stream::iter(entries)).await.unwrap();
        let mut late = sm.get_snapshot_builder().await;
        sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        late.build_snapshot().await.unwrap();
        log.purge(log_id(10)).await.unwrap();

        eprintln!("{REACHED}");
        std::process::abort();
    });
}

/// A network for a cluster of one: nothing is ever sent.
struct NoPeers;

impl openraft::network::RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: u64, _node: &openraft::BasicNode) -> NoPeers {
        NoPeers
    }
}

fn no_peer<E: std::error::Error>() -> openraft::error::RPCError<TypeConfig, E> {
    let e = std::io::Error::other("a cluster of one has no peers");
    openraft::error::RPCError::Unreachable(openraft::error::Unreachable::new(&e))
}

impl openraft::network::v2::RaftNetworkV2<TypeConfig> for NoPeers {
    type SnapshotData = raft_store::types::SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: openraft::raft::AppendEntriesRequest<TypeConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<
        openraft::raft::AppendEntriesResponse<TypeConfig>,
        openraft::error::RPCError<TypeConfig>,
    > {
        Err(no_peer())
    }

    async fn vote(
        &mut self,
        _rpc: openraft::raft::VoteRequest<TypeConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::VoteResponse<TypeConfig>, openraft::error::RPCError<TypeConfig>>
    {
        Err(no_peer())
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: raft_store::types::Snapshot,
        _cancel: impl std::future::Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        _option: openraft::network::RPCOption,
    ) -> Result<
        openraft::raft::SnapshotResponse<TypeConfig>,
        openraft::error::StreamingError<TypeConfig>,
    > {
        let e = std::io::Error::other("a cluster of one has no peers");
        Err(openraft::error::StreamingError::Unreachable(
            openraft::error::Unreachable::new(&e),
        ))
    }
}

/// The power-loss bug of a node that had installed a snapshot: after the cut it found its
/// state machine older than the purged log and a snapshot file older still, and could never
/// start again. Now the install is durable before the purge, the file never goes back, and the
/// node starts, elects itself and takes writes.
#[test]
fn a_node_that_installed_a_snapshot_restarts_after_power_loss() {
    TypeConfig::run(async {
        let dir = tempfile::TempDir::new().unwrap();
        run_child_case("child_install", dir.path(), true);

        let (mut log, mut sm) = open(&dir.path().join("node"), true);
        let (_, purged) = log_entries(&mut log).await;
        assert_eq!(purged, Some(log_id(10)), "synced purge point lost");
        assert_eq!(
            sm.applied_state().await.unwrap().0,
            Some(log_id(10)),
            "the installed snapshot was not durable when the log was purged behind it"
        );
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(
            snap.meta.last_log_id,
            Some(log_id(10)),
            "the snapshot file went back to an older snapshot"
        );
        let (_, leader) = open(&dir.path().join("leader"), false);
        assert_eq!(digest(&sm), digest(&leader));

        // The node starts on these stores, elects itself (the snapshot's membership is node 1
        // alone) and commits a new entry.
        let config = openraft::Config {
            election_timeout_min: 150,
            election_timeout_max: 300,
            heartbeat_interval: 50,
            ..Default::default()
        };
        let fsm = sm.fsm();
        let raft = openraft::Raft::<TypeConfig, StateMachine>::new(
            1,
            std::sync::Arc::new(config),
            NoPeers,
            log,
            sm,
        )
        .await
        .expect("the node starts after the power loss");
        raft.wait(Some(std::time::Duration::from_secs(30)))
            .state(openraft::ServerState::Leader, "node 1 leads")
            .await
            .unwrap();
        let write = raft
            .client_write(entry(11).payload_proposal())
            .await
            .unwrap();
        assert!(write.log_id.index > 10);
        let stats = raft_store::state_machine::lock(&fsm)
            .unwrap()
            .stats()
            .unwrap();
        assert_eq!(
            stats[&queue_fsm::StateName::Ready],
            10,
            "jobs 2-10 and the new one"
        );
        raft.shutdown().await.unwrap();
    });
}

/// The proposal inside a normal test entry.
trait PayloadProposal {
    fn payload_proposal(self) -> Proposal;
}

impl PayloadProposal for Entry {
    fn payload_proposal(self) -> Proposal {
        match self.payload {
            openraft::EntryPayload::Normal(p) => p,
            _ => panic!("not a normal entry"),
        }
    }
}
