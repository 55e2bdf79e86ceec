//! openraft's storage conformance suite against the RocksDB log store and state machine, and
//! checks of what the suite cannot see (normal entries, snapshots of real queue state,
//! durability across reopen).

use super::*;
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use tempfile::TempDir;
use types::Proposal;

/// Both stores under `dir` with the default settings.
fn open_default(dir: &std::path::Path) -> std::io::Result<(LogStore, StateMachine)> {
    open(
        dir,
        queue_fsm::FsmConfig::default(),
        RocksOptions::default(),
    )
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let (log, sm) = open_default(dir.path())
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    TypeConfig::run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}

fn add_entry(index: u64, cmds: &[&str]) -> types::Entry {
    use openraft::entry::RaftEntry;
    let proposal = Proposal {
        stamp_ms: 1_000 + index,
        requests: vec![queue_fsm::Request::new(
            Some(queue_fsm::RequestId(index as u128)),
            queue_fsm::Command::Add(queue_fsm::AddJobs {
                jobs: cmds.iter().map(|c| queue_fsm::JobSpec::new(*c)).collect(),
                ..Default::default()
            }),
        )],
    };
    types::Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(1, 1, index),
        proposal,
    )
}

async fn apply_all(sm: &mut StateMachine, entries: Vec<types::Entry>) {
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await.unwrap();
}

fn digest(sm: &StateMachine) -> String {
    state_machine::lock(&sm.fsm()).unwrap().digest().unwrap()
}

#[test]
fn normal_entries_apply_and_survive_reopen() {
    TypeConfig::run(async {
        let dir = TempDir::new().unwrap();
        let (mut log, mut sm) = open_default(dir.path()).unwrap();
        let entries: Vec<_> = (1..=3)
            .map(|i| add_entry(i, &[&format!("job {i}"), "shared"]))
            .collect();
        openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries.clone())
            .await
            .unwrap();
        apply_all(&mut sm, entries).await;
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.unwrap().index, 3);
        let before = digest(&sm);
        {
            let shared = sm.fsm();
            let fsm = state_machine::lock(&shared).unwrap();
            assert_eq!(fsm.stats().unwrap()[&queue_fsm::StateName::Ready], 4);
            assert_eq!(fsm.clock_ms(), 1_003);
            fsm.check_invariants().unwrap();
        }
        drop((log, sm));

        let (mut log, mut sm) = open_default(dir.path()).unwrap();
        assert_eq!(digest(&sm), before);
        assert_eq!(sm.applied_state().await.unwrap().0.unwrap().index, 3);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.unwrap().index, 3);
    });
}

#[test]
fn snapshot_moves_queue_state_to_another_replica() {
    TypeConfig::run(async {
        let src_dir = TempDir::new().unwrap();
        let (_, mut src) = open_default(src_dir.path()).unwrap();
        let entries: Vec<_> = (1..=50)
            .map(|i| add_entry(i, &[&format!("a {i}"), &format!("b {i}")]))
            .collect();
        apply_all(&mut src, entries).await;
        let mut builder = src.get_snapshot_builder().await;
        let snap = builder.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.unwrap().index, 50);
        let current = src.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);

        let dst_dir = TempDir::new().unwrap();
        let (_, mut dst) = open_default(dst_dir.path()).unwrap();
        apply_all(&mut dst, vec![add_entry(1, &["stale"])]).await;
        dst.install_snapshot(&snap.meta, snap.snapshot.clone())
            .await
            .unwrap();
        assert_eq!(digest(&dst), digest(&src));
        assert_eq!(dst.applied_state().await.unwrap().0, snap.meta.last_log_id);
        state_machine::lock(&dst.fsm())
            .unwrap()
            .check_invariants()
            .unwrap();
        // both go on identically
        apply_all(&mut src, vec![add_entry(51, &["next"])]).await;
        apply_all(&mut dst, vec![add_entry(51, &["next"])]).await;
        assert_eq!(digest(&dst), digest(&src));
        // a snapshot whose data does not match its meta is refused (meta newer than the
        // snapshot file, so that the data check is what refuses it)
        let mut wrong = snap.meta.clone();
        wrong.last_log_id = Some(openraft::testing::log_id::<TypeConfig>(1, 1, 70));
        assert!(dst.install_snapshot(&wrong, snap.snapshot).await.is_err());
    });
}

/// openraft builds a snapshot in a task of its own from an export taken earlier; when that
/// build ends after a newer snapshot was installed, the snapshot file keeps the newer one. (A
/// file gone back behind the purged log made a node unable to restart after a power loss.)
#[test]
fn a_late_build_never_replaces_a_newer_snapshot_file() {
    TypeConfig::run(async {
        let src_dir = TempDir::new().unwrap();
        let (_, mut src) = open_default(src_dir.path()).unwrap();
        apply_all(
            &mut src,
            (1..=20)
                .map(|i| add_entry(i, &[&format!("s {i}")]))
                .collect(),
        )
        .await;
        let newer = src
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        let dir = TempDir::new().unwrap();
        let (_, mut sm) = open_default(dir.path()).unwrap();
        apply_all(
            &mut sm,
            (1..=5)
                .map(|i| add_entry(i, &[&format!("s {i}")]))
                .collect(),
        )
        .await;
        let mut late = sm.get_snapshot_builder().await;
        sm.install_snapshot(&newer.meta, newer.snapshot.clone())
            .await
            .unwrap();
        let built = late.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.unwrap().index, 5);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, newer.meta, "the snapshot file went back");

        // The file is read back as it is after a restart, and an older snapshot is refused
        // rather than installed over it.
        drop(sm);
        let (_, mut sm) = open_default(dir.path()).unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, newer.meta);
        let err = sm
            .install_snapshot(&built.meta, built.snapshot)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("snapshot file is newer"), "{err}");
        assert_eq!(digest(&sm), digest(&src));
    });
}
