//! Reads of this node's replica of the queue, and the count of store errors.
//!
//! The state machine sits behind a std mutex that openraft's apply worker also takes, for one
//! entry at a time, and for a whole snapshot export or install. A read therefore never waits
//! for that mutex on an async worker thread (it would stall every task on that thread for as
//! long as an export runs): [`Replica::read`] runs on tokio's blocking pool. While it holds
//! the mutex, apply waits; each read is bounded (`queue_fsm::limits::MAX_QUERY_JOBS` jobs,
//! counts are O(groups × states)), so that wait is short.
//!
//! Every store error met on the read path is logged with what was being read, counted, and
//! the last one kept: `raftq cluster status` shows both ([`StoreHealth`]).

use queue_fsm::{Fsm, RocksStore, StoreError};
use raft_store::SharedFsm;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a read of the replica failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// An apply panicked while holding the state machine: this replica must not serve.
    #[error("state machine lock poisoned by an earlier panic")]
    Poisoned,
    #[error("{what}: {source}")]
    Store {
        what: &'static str,
        #[source]
        source: StoreError,
    },
    /// The blocking task did not finish (runtime shutting down).
    #[error("{what}: read task failed: {reason}")]
    Task { what: &'static str, reason: String },
}

/// Store errors seen on the read path.
#[derive(Debug, Default)]
pub struct StoreHealth {
    count: AtomicU64,
    last: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Logs, counts and keeps `e`.
    pub fn record(&self, e: &ReadError) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(error = %e, store_errors = n, "reading the state machine failed");
        // A poisoned table of the last error is replaced: the text is only a report.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(e.to_string());
    }

    /// (errors so far, the last one's text).
    pub fn snapshot(&self) -> (u64, Option<String>) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.count.load(Ordering::Relaxed), last)
    }
}

/// This node's replica of the queue, for reading.
#[derive(Clone)]
pub struct Replica {
    fsm: SharedFsm,
    health: Arc<StoreHealth>,
}

impl Replica {
    pub fn new(fsm: SharedFsm) -> Replica {
        Replica {
            fsm,
            health: Arc::new(StoreHealth::default()),
        }
    }

    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Runs `f` on the state machine (off the async threads, see the module header); a store
    /// error is recorded in [`StoreHealth`] and returned.
    pub async fn read<T, F>(&self, what: &'static str, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Fsm<RocksStore>) -> Result<T, StoreError> + Send + 'static,
    {
        let fsm = self.fsm.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut guard = fsm.lock().map_err(|_| ReadError::Poisoned)?;
            f(&mut guard).map_err(|source| ReadError::Store { what, source })
        })
        .await
        .unwrap_or_else(|e| {
            Err(ReadError::Task {
                what,
                reason: e.to_string(),
            })
        });
        if let Err(e) = &r {
            self.health.record(e);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::fake::FakeConsensus;

    #[tokio::test]
    async fn a_failed_read_is_counted_and_kept() {
        let fake = FakeConsensus::new();
        let replica = Replica::new(fake.fsm());
        assert_eq!(
            replica.read("clock", |f| Ok(f.clock_ms())).await.unwrap(),
            0
        );
        assert_eq!(replica.health().snapshot(), (0, None));
        // a store error reaches the caller and the count
        let e = replica
            .read("jobs", |_| -> Result<(), _> {
                Err(StoreError::Corrupt("bad job".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Store { what: "jobs", .. }), "{e:?}");
        let (n, last) = replica.health().snapshot();
        assert_eq!(n, 1);
        assert!(last.unwrap().starts_with("jobs: "));
        // an apply that panicked poisons the state machine: reads refuse, and are counted
        let fsm = fake.fsm();
        let _ = std::thread::spawn(move || {
            let _guard = fsm.lock().unwrap();
            panic!("apply panicked");
        })
        .join();
        let e = replica
            .read("clock", |f| Ok(f.clock_ms()))
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Poisoned), "{e:?}");
        assert_eq!(replica.health().snapshot().0, 2);
    }
}
