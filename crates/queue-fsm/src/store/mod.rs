//! Storage: ordered keyspaces with point reads, prefix scans and atomic batches.
//!
//! The state machine reaches storage only through [`StoreRead`] and [`Store`]. Two
//! implementations: [`MemStore`] (tests, property tests) and `RocksStore` (column families,
//! behind the `rocksdb` cargo feature).
//! [`txn::Txn`] layers the writes of the entry being applied over a store, so that commands
//! in one entry see each other's writes and one entry becomes one atomic batch.

mod mem;
#[cfg(feature = "rocksdb")]
mod rocks;
pub(crate) mod txn;

pub use mem::MemStore;
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksOptions, RocksStore};

/// The keyspaces (RocksDB column families). Layouts are in `keys.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// job key → job record (every state, complete jobs included).
    Jobs,
    /// (scheduler group, 255 − priority, seq) → job key: the next job is the first entry.
    Ready,
    /// scheduler group → count of ready jobs in it.
    SchedReady,
    /// (deadline ms, job key): leases, delays, lost-job returns; the first entry is the next
    /// deadline.
    Timers,
    /// (rep group, job serial) → job key.
    ByRep,
    /// (state, job serial) → job key, for dependent, buried and complete jobs (the other
    /// states are listed by `ready` and `timers`).
    ByState,
    /// (rep group, state) → count.
    Counts,
    /// (dep group, member job key).
    DepMembers,
    /// dep group → count of its incomplete members.
    GroupIncomplete,
    /// (target: dep group or job key, dependant job key).
    Dependants,
    /// content hash → reference count + compressed environment.
    Env,
    /// req group → recent resource samples and the recommendation from them.
    ReqStats,
    /// limit group → limit and slots held.
    Limits,
    /// request id → stored response.
    Requests,
    /// (expiry ms, request id): prunes `Requests`.
    RequestExpiry,
    /// singletons: the state machine's clock, counters, config; also free for the embedding
    /// layer (raft-store keeps its applied log id here, under keys starting with `raft/`).
    Meta,
}

impl Space {
    pub const ALL: [Space; 16] = [
        Space::Jobs,
        Space::Ready,
        Space::SchedReady,
        Space::Timers,
        Space::ByRep,
        Space::ByState,
        Space::Counts,
        Space::DepMembers,
        Space::GroupIncomplete,
        Space::Dependants,
        Space::Env,
        Space::ReqStats,
        Space::Limits,
        Space::Requests,
        Space::RequestExpiry,
        Space::Meta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Space::Jobs => "jobs",
            Space::Ready => "ready",
            Space::SchedReady => "sched_ready",
            Space::Timers => "timers",
            Space::ByRep => "by_rep",
            Space::ByState => "by_state",
            Space::Counts => "counts",
            Space::DepMembers => "dep_members",
            Space::GroupIncomplete => "group_incomplete",
            Space::Dependants => "dependants",
            Space::Env => "env",
            Space::ReqStats => "req_stats",
            Space::Limits => "limits",
            Space::Requests => "requests",
            Space::RequestExpiry => "request_expiry",
            Space::Meta => "meta",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<Space> {
        Space::ALL.get(c as usize).copied()
    }
}

/// Failure of the storage layer. Not a queue error: the node treats it as fatal for the
/// replica (it must not diverge from the others by skipping a write).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The state machine was opened with settings out of range (a setup error, not damage).
    #[error("invalid state machine config: {0}")]
    InvalidConfig(#[from] crate::fsm::ConfigError),
}

pub type Kv = (Vec<u8>, Vec<u8>);
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<Kv, StoreError>> + 'a>;

/// One write of a batch: `None` deletes.
pub type Write = (Space, Vec<u8>, Option<Vec<u8>>);

/// Read access to the keyspaces.
pub trait StoreRead {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries whose key starts with `prefix` and is `>= from`, in key order. `from` is
    /// clamped up to `prefix`.
    fn scan<'a>(&'a self, space: Space, prefix: &[u8], from: &[u8]) -> ScanIter<'a>;
}

/// Read and atomic write access.
pub trait Store: StoreRead {
    /// Applies all writes atomically, in order (a later write to a key wins). Not durable by
    /// itself: the Raft log is the durable record of applied entries (see [`Store::sync`]).
    fn write(&mut self, batch: Vec<Write>) -> Result<(), StoreError>;

    /// Makes every write so far durable (survives a power loss). A store in memory has
    /// nothing to do.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is no
/// such key (the prefix is empty or all 0xff). The RocksDB store bounds its scans with it.
#[cfg(feature = "rocksdb")]
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &mut dyn Store) {
        store
            .write(vec![
                (Space::Ready, b"a1".to_vec(), Some(b"x".to_vec())),
                (Space::Ready, b"a2".to_vec(), Some(b"y".to_vec())),
                (Space::Ready, b"b1".to_vec(), Some(b"z".to_vec())),
                (Space::Jobs, b"a1".to_vec(), Some(b"j".to_vec())),
            ])
            .unwrap();
        assert_eq!(store.get(Space::Ready, b"a2").unwrap(), Some(b"y".to_vec()));
        assert_eq!(store.get(Space::Timers, b"a2").unwrap(), None);
        let keys: Vec<Vec<u8>> = store
            .scan(Space::Ready, b"a", b"")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(keys, vec![b"a1".to_vec(), b"a2".to_vec()]);
        let keys: Vec<Vec<u8>> = store
            .scan(Space::Ready, b"a", b"a2")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(keys, vec![b"a2".to_vec()]);
        let all = store.scan(Space::Ready, b"", b"").count();
        assert_eq!(all, 3);
        store
            .write(vec![
                (Space::Ready, b"a1".to_vec(), None),
                (Space::Ready, b"a3".to_vec(), Some(b"w".to_vec())),
                (Space::Ready, b"a3".to_vec(), Some(b"v".to_vec())),
            ])
            .unwrap();
        let got: Vec<Kv> = store
            .scan(Space::Ready, b"a", b"")
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                (b"a2".to_vec(), b"y".to_vec()),
                (b"a3".to_vec(), b"v".to_vec())
            ]
        );
    }

    #[test]
    fn mem_store_contract() {
        exercise(&mut MemStore::default());
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocks_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&mut RocksStore::open(dir.path()).unwrap());
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn prefix_end_cases() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
