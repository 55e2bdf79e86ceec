//! raftq's own files on the lose-unsynced-writes filesystem: what a node acknowledged as
//! durable (a synced log append, the token file) is there after a power cut. Needs root and
//! /dev/fuse (CI runs as root).
//!
//! Found with this filesystem: the node's data directory was made without an fsync of its
//! parent, and a cut took the whole store away (the node came back empty); the token file was
//! written without an fsync.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::type_config::TypeConfigExt;
use raft_store::types::{Entry, LogId};
use raft_store::{RocksOptions, TypeConfig};
use std::path::Path;

mod common;

fn log_id(index: u64) -> LogId {
    openraft::testing::log_id::<TypeConfig>(1, 1, index)
}

fn blank(index: u64) -> Entry {
    use openraft::entry::RaftEntry;
    Entry::new_blank(log_id(index))
}

/// The node's two stores under `dir`.
fn open(dir: &Path) -> (raft_store::LogStore, raft_store::StateMachine) {
    raft_store::open(
        dir,
        queue_fsm::FsmConfig::default(),
        RocksOptions::default(),
    )
    .unwrap()
}

#[test]
fn a_synced_append_and_the_token_survive_a_cut() {
    let Some(common::Mounted {
        dir: _dir,
        options,
        mut mount,
    }) = common::mount_in_tempdir(3)
    else {
        return;
    };
    let node_dir = options.mountpoint.join("node1");

    let token = raftq_node::auth::ensure_token_file(&node_dir.join("token")).unwrap();
    TypeConfig::run(async {
        let (mut log, _sm) = open(&node_dir);
        log.blocking_append((0..=5).map(blank)).await.unwrap();
    });
    let report = mount.cut_and_remount().unwrap();
    assert!(report.contains("errors=0"), "{report}");

    assert_eq!(
        raftq_client::auth::read_token_file(&node_dir.join("token")).unwrap(),
        token,
        "the token file did not survive"
    );
    TypeConfig::run(async {
        let (mut log, _sm) = open(&node_dir);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(5)), "synced appends lost");
        let entries = log.try_get_log_entries(0..6).await.unwrap();
        assert_eq!(entries.len(), 6);
    });
    mount.stop().unwrap();
}
