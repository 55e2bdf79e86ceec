//! The Raft log and vote on RocksDB.
//!
//! Column families: `logs` (index, big-endian → entry) and `meta` (`vote`, `last_purged`,
//! `committed`). Every handle shares one `Arc<DB>`, so an append is visible to every reader at
//! once. Durability: `append` writes its batch without sync and then, off the async runtime,
//! syncs the WAL once for the batch before telling openraft the entries are flushed; the vote
//! is synced before `save_vote` returns. One WAL sync also covers every earlier write, so
//! completions that arrive out of order are harmless.

use crate::types::{decode, encode, io_err, Entry, LogId, TypeConfig, Vote};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use queue_fsm::RocksOptions;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn rerr(e: rocksdb::Error) -> io::Error {
    io_err("log store", e.into_string())
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

impl LogStore {
    pub fn open(path: &Path, options: RocksOptions) -> io::Result<LogStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        options.apply_to(&mut opts);
        let cfs = [CF_LOGS, CF_META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(rerr)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn cf(&self, name: &str) -> io::Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| io_err("log store", format!("column family {name} missing")))
    }

    fn get_meta<T: for<'de> serde::Deserialize<'de>>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.db.get_cf(self.cf(CF_META)?, key).map_err(rerr)? {
            Some(b) => Ok(Some(decode("log meta", &b)?)),
            None => Ok(None),
        }
    }

    /// Writes a meta value; `sync` makes it durable before returning.
    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T, sync: bool) -> io::Result<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(sync);
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META)?, key, encode("log meta", v)?);
        self.db.write_opt(wb, &wo).map_err(rerr)
    }

    /// Syncs the WAL on a blocking thread.
    async fn sync_wal(&self) -> io::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush_wal(true).map_err(rerr))
            .await
            .map_err(|e| io_err("wal sync task", e))?
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOGS)?, IteratorMode::End);
        match it.next() {
            Some(r) => {
                let (_, v) = r.map_err(rerr)?;
                let e: Entry = decode("log entry", &v)?;
                Ok(Some(e.log_id()))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self.cf(CF_LOGS)?;
        let mut out = Vec::new();
        for r in self.db.iterator_cf(
            cf,
            IteratorMode::From(&index_key(start), Direction::Forward),
        ) {
            let (k, v) = r.map_err(rerr)?;
            let idx = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| io_err("log store", "log key of wrong length"))?,
            );
            if !range.contains(&idx) {
                break;
            }
            out.push(decode("log entry", &v)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        // The purge point is synced before the entries behind it are deleted, and the delete is
        // not: after a power loss, entries at or below the purge point can come back. They are
        // not the log's end then (openraft refuses a log that ends before its purge point).
        let last = std::cmp::max(self.last_entry_log_id()?, last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.put_meta(KEY_VOTE, vote, true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not synced: a committed id that lags after a crash only delays re-applying.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = self.cf(CF_LOGS)?;
        let mut wb = WriteBatch::default();
        for e in entries {
            wb.put_cf(cf, index_key(e.index()), encode("log entry", &e)?);
        }
        self.db.write(wb).map_err(rerr)?;
        let db = self.db.clone();
        // The entries are readable now; they are durable once the WAL is synced.
        tokio::task::spawn_blocking(move || {
            let r = db.flush_wal(true).map_err(rerr);
            // Release the database before reporting, so that whoever waits for the flush can
            // close (and reopen) the store.
            drop(db);
            callback.io_completed(r);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.db
            .delete_range_cf(self.cf(CF_LOGS)?, index_key(from), index_key(u64::MAX))
            .map_err(rerr)?;
        self.sync_wal().await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // Record the purge point first, so that the log never shows a hole.
        self.put_meta(KEY_PURGED, &log_id, true)?;
        self.db
            .delete_range_cf(self.cf(CF_LOGS)?, index_key(0), index_key(log_id.index + 1))
            .map_err(rerr)
    }
}
