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
        dst.install_snapshot(&snap.meta, snap.snapshot.try_clone().unwrap())
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
        sm.install_snapshot(&newer.meta, newer.snapshot.try_clone().unwrap())
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

/// A replica of 40 entries (80 jobs) and its snapshot file; `dir` holds both.
async fn source_with_snapshot(dir: &std::path::Path) -> (StateMachine, types::Snapshot) {
    let (_, mut src) = open_default(dir).unwrap();
    let entries: Vec<_> = (1..=40)
        .map(|i| add_entry(i, &[&format!("a {i}"), &format!("b {i}")]))
        .collect();
    apply_all(&mut src, entries).await;
    let snap = src
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    (src, snap)
}

/// How a test spoils a snapshot file's bytes.
type Damage = Box<dyn FnOnce(&mut Vec<u8>)>;

/// A copy of `snap`'s file at `path`, changed by `damage`, as a snapshot to install.
fn damaged_copy(
    snap: &types::Snapshot,
    path: &std::path::Path,
    damage: impl FnOnce(&mut Vec<u8>),
) -> SnapshotData {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut snap.snapshot.reader().unwrap(), &mut bytes).unwrap();
    damage(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    SnapshotData::open(path).unwrap()
}

#[test]
fn snapshot_file_round_trip_reports_what_it_holds() {
    TypeConfig::run(async {
        let dir = TempDir::new().unwrap();
        let (src, snap) = source_with_snapshot(dir.path()).await;
        let summary = snap.snapshot.verify().unwrap();
        assert_eq!(summary.meta, snap.meta);
        assert_eq!(summary.bytes, snap.snapshot.len().unwrap());
        // every key of every keyspace, counted by the reader
        let shared = src.fsm();
        let fsm = state_machine::lock(&shared).unwrap();
        let keys: u64 = queue_fsm::Space::ALL
            .iter()
            .map(|s| queue_fsm::StoreRead::scan(fsm.store(), *s, b"", b"").count() as u64)
            .sum();
        assert_eq!(summary.entries, keys);
        // nothing staged is left behind: the checkpoint and the staged file are gone
        let left: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["current".to_string()]);
    });
}

/// A corrupt, truncated or mislabelled snapshot is refused before the old state is touched:
/// the replica keeps its digest, its applied log id and its snapshot file.
#[test]
fn a_bad_snapshot_is_refused_and_the_old_state_kept() {
    TypeConfig::run(async {
        let src_dir = TempDir::new().unwrap();
        let (src, snap) = source_with_snapshot(src_dir.path()).await;

        let dir = TempDir::new().unwrap();
        let (_, mut dst) = open_default(dir.path()).unwrap();
        apply_all(&mut dst, vec![add_entry(1, &["the old state"])]).await;
        let before = digest(&dst);
        let applied_before = dst.applied_state().await.unwrap().0;
        let scratch = TempDir::new().unwrap();

        let cases: Vec<(&str, Damage, &str)> = vec![
            (
                "a flipped byte",
                Box::new(|b: &mut Vec<u8>| {
                    let mid = b.len() / 2;
                    b[mid] ^= 0x40;
                }),
                "",
            ),
            (
                "a flipped trailer byte",
                Box::new(|b: &mut Vec<u8>| {
                    let last = b.len() - 1;
                    b[last] ^= 1;
                }),
                "checksum mismatch",
            ),
            (
                "cut short",
                Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 100)),
                "truncated",
            ),
            (
                "cut in the trailer",
                Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 5)),
                "truncated",
            ),
            ("empty", Box::new(|b: &mut Vec<u8>| b.clear()), "truncated"),
            (
                "a frame length far past the end",
                Box::new(|b: &mut Vec<u8>| {
                    // magic, format, meta length, meta: then the first frame's length
                    let meta_len = u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize;
                    let at = 16 + meta_len;
                    b[at..at + 4].copy_from_slice(&(200u32 << 20).to_be_bytes());
                }),
                "truncated",
            ),
            (
                "extra bytes",
                Box::new(|b: &mut Vec<u8>| b.extend_from_slice(b"more")),
                "after the checksum trailer",
            ),
        ];
        for (i, (what, damage, says)) in cases.into_iter().enumerate() {
            let path = scratch.path().join(format!("bad-{i}"));
            let bad = damaged_copy(&snap, &path, damage);
            let err = dst.install_snapshot(&snap.meta, bad).await.unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
            assert!(msg.contains(says), "{what}: {msg}");
            assert_eq!(digest(&dst), before, "{what}: the old state changed");
            assert_eq!(
                dst.applied_state().await.unwrap().0,
                applied_before,
                "{what}"
            );
            assert!(
                dst.get_current_snapshot().await.unwrap().is_none(),
                "{what}"
            );
        }
        // a whole file whose meta is not the one asked for
        let mut other = snap.meta.clone();
        other.last_log_id = Some(openraft::testing::log_id::<TypeConfig>(1, 1, 39));
        let err = dst
            .install_snapshot(&other, snap.snapshot.try_clone().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("asked for"), "{err}");
        assert_eq!(digest(&dst), before);

        // and the good one goes in
        dst.install_snapshot(&snap.meta, snap.snapshot.try_clone().unwrap())
            .await
            .unwrap();
        assert_eq!(digest(&dst), digest(&src));
    });
}

/// An install cut short (a crash in the middle of the streamed import) leaves the import
/// marker: the replica then reports no applied state, so openraft installs the snapshot file
/// (made current before the import began) again at start-up, and that repairs it.
#[test]
fn a_cut_short_install_is_installed_again_from_the_file() {
    TypeConfig::run(async {
        let src_dir = TempDir::new().unwrap();
        let (src, snap) = source_with_snapshot(src_dir.path()).await;
        let dir = TempDir::new().unwrap();
        {
            let (_, mut dst) = open_default(dir.path()).unwrap();
            dst.install_snapshot(&snap.meta, snap.snapshot.try_clone().unwrap())
                .await
                .unwrap();
        }
        {
            // what a crash half way leaves: the marker, and part of the state (here: the
            // jobs keyspace is gone)
            use queue_fsm::{Space, Store, StoreRead};
            let mut store = queue_fsm::RocksStore::open(&dir.path().join("fsm")).unwrap();
            let mut batch = vec![(
                Space::Meta,
                queue_fsm::snapshot::IMPORT_MARKER.to_vec(),
                Some(vec![1]),
            )];
            for r in store.scan(Space::Jobs, b"", b"") {
                batch.push((Space::Jobs, r.unwrap().0, None));
            }
            store.write(batch).unwrap();
        }
        let (_, mut dst) = open_default(dir.path()).unwrap();
        assert_eq!(dst.applied_state().await.unwrap().0, None);
        let current = dst.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        dst.install_snapshot(&current.meta, current.snapshot)
            .await
            .unwrap();
        assert_eq!(dst.applied_state().await.unwrap().0, snap.meta.last_log_id);
        assert_eq!(digest(&dst), digest(&src));
        state_machine::lock(&dst.fsm())
            .unwrap()
            .check_invariants()
            .unwrap();
    });
}

/// A `snapshots/current` in the format before streaming (one postcard record) is rewritten in
/// the stream format when the node opens, and installs as before.
#[test]
fn a_pre_stream_snapshot_file_is_upgraded_at_open() {
    TypeConfig::run(async {
        let src_dir = TempDir::new().unwrap();
        let (src, snap) = source_with_snapshot(src_dir.path()).await;
        let chunks: Vec<queue_fsm::snapshot::Chunk> = {
            let shared = src.fsm();
            let fsm = state_machine::lock(&shared).unwrap();
            fsm.export(4096).collect::<Result<_, _>>().unwrap()
        };
        #[derive(serde::Serialize)]
        struct LegacyRecord {
            meta: types::SnapshotMeta,
            data: Vec<u8>,
        }
        let legacy = LegacyRecord {
            meta: snap.meta.clone(),
            data: postcard::to_allocvec(&chunks).unwrap(),
        };
        let dir = TempDir::new().unwrap();
        durable::create_dir_all(&dir.path().join("snapshots")).unwrap();
        std::fs::write(
            dir.path().join("snapshots/current"),
            postcard::to_allocvec(&legacy).unwrap(),
        )
        .unwrap();
        let (_, mut dst) = open_default(dir.path()).unwrap();
        let current = dst.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        dst.install_snapshot(&current.meta, current.snapshot)
            .await
            .unwrap();
        assert_eq!(digest(&dst), digest(&src));
    });
}
