//! RocksDB store: one column family per keyspace.
//!
//! Writes go through the WAL but are not synced: the Raft log is the durable record, and a
//! state machine that loses its last unsynced batches on power loss replays them from the log
//! (the applied log id is written in the same batch, so the two never disagree). The exception
//! is a snapshot install ([`Store::sync`] after the import), because the log behind it is
//! purged.
//!
//! [`RocksOptions`] is shared with raft-store's log store, so that both databases of a node are
//! opened the same way.

use super::{prefix_end, ScanIter, Space, Store, StoreError, StoreRead, Write};
use rocksdb::{ColumnFamily, Direction, IteratorMode, Options, ReadOptions, WriteBatch, DB};
use std::path::{Path, PathBuf};

/// How a node's RocksDB databases are opened: this state machine store and raft-store's log
/// store take the same options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RocksOptions {
    /// Test only (Jepsen): a SIGKILL loses every write that was not synced, as a power loss
    /// would, so that a missing fsync shows up as lost data. Never use it in production.
    ///
    /// How: `manual_wal_flush` keeps each WAL record in RocksDB's in-process file buffer
    /// (`WritableFileWriter`) instead of writing it to the file after every write, and a
    /// [`POWER_LOSS_SIM_BUFFER_BYTES`](Self::POWER_LOSS_SIM_BUFFER_BYTES) buffer bound lets the
    /// buffer hold it. A sync, i.e. a write with `WriteOptions::set_sync(true)` or
    /// `DB::flush_wal(true)`, writes the buffer to the file and fsyncs it
    /// (`WritableFileWriter::Sync` flushes first; `FlushWAL(true)` is `WriteBuffer` +
    /// `SyncWAL`), so it covers every earlier write. A SIGKILL drops the buffer, and on reopen
    /// point-in-time WAL recovery ends at the last record that reached the file. What the log
    /// store acknowledges stays durable (it syncs each append batch, the vote and the purge
    /// point); the state machine store syncs only after installing a snapshot, so a killed node restarts it from where it
    /// was at the last memtable switch (usually: when the node started) and openraft brings it
    /// up to date from `snapshots/current` and the log, as after a real power loss.
    ///
    /// Limits: what a real power loss can lose but this does not.
    /// - Data RocksDB already handed to the OS without fsync: the WAL buffer is written out
    ///   (not synced) at every memtable switch, i.e. before every memtable flush (the flush
    ///   then fsyncs the closed WALs, as these databases have several column families); when
    ///   un-synced WAL fills the 256 MiB buffer (it is written out whole and refills, so a kill
    ///   loses only what came after); and when the database is closed, so only a SIGKILL (or
    ///   abort) tests anything, not a clean stop.
    /// - Every file other than the WAL. Plain files (the snapshot `snapshots/current`, the
    ///   token file, runner logs) reach the OS at once, so a missing fsync of them, or of a
    ///   directory after a create or rename, goes unnoticed. RocksDB's own SST, MANIFEST and
    ///   CURRENT files are synced by RocksDB before it relies on them; a kill only drops a
    ///   half-written SST that no MANIFEST names.
    /// - Loss shapes other than a clean cut at the end of the WAL: a power loss can keep later
    ///   pages and not earlier ones, tear a page, leave zeros or garbage after the last
    ///   record, and a disk can acknowledge an fsync it has not done.
    ///
    /// Cost: every RocksDB file writer (the WAL, and SSTs written by flushes and compactions
    /// until they are synced) may grow its buffer up to 256 MiB of memory.
    pub power_loss_sim: bool,
}

impl RocksOptions {
    /// Bound of RocksDB's in-process file buffer under
    /// [`power_loss_sim`](Self::power_loss_sim): the un-synced WAL it holds at most.
    pub const POWER_LOSS_SIM_BUFFER_BYTES: u64 = 256 << 20;

    /// Sets these options on a database's `rocksdb::Options` (before it is opened).
    pub fn apply_to(&self, opts: &mut Options) {
        if self.power_loss_sim {
            opts.set_manual_wal_flush(true);
            opts.set_writable_file_max_buffer_size(Self::POWER_LOSS_SIM_BUFFER_BYTES);
        }
    }
}

pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

fn io(e: rocksdb::Error) -> StoreError {
    StoreError::Io(e.into_string())
}

fn cf_options() -> Options {
    let mut o = Options::default();
    // Point lookups of absent keys (the "does this job exist" check of every add) skip the
    // data blocks with a bloom filter.
    let mut block = rocksdb::BlockBasedOptions::default();
    block.set_bloom_filter(10.0, false);
    o.set_block_based_table_factory(&block);
    o
}

impl RocksStore {
    /// Opens (creating if needed) a store at `path`.
    pub fn open(path: &Path) -> Result<RocksStore, StoreError> {
        Self::open_with(path, RocksOptions::default())
    }

    /// Opens (creating if needed) a store at `path` with `options`.
    pub fn open_with(path: &Path, options: RocksOptions) -> Result<RocksStore, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        options.apply_to(&mut opts);
        let cfs = Space::ALL
            .iter()
            .map(|s| rocksdb::ColumnFamilyDescriptor::new(s.name(), cf_options()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(io)?;
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Opens, read only, a store that [`checkpoint`](Self::checkpoint) made (or any store no
    /// process has open for writing): what a snapshot build iterates.
    pub fn open_read_only(path: &Path) -> Result<RocksStore, StoreError> {
        let opts = Options::default();
        let cfs = Space::ALL
            .iter()
            .map(|s| rocksdb::ColumnFamilyDescriptor::new(s.name(), cf_options()));
        let db = DB::open_cf_descriptors_read_only(&opts, path, cfs, false).map_err(io)?;
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
        })
    }

    /// A point-in-time copy of the whole store at `dir` (which must not exist yet), made of
    /// hard links to the store's table files after a flush of its memtables: cheap in time and
    /// memory whatever the store's size, and consistent at one write batch, so whatever the
    /// batch stored beside the queue changes (the applied log id) is the copy's own. `dir` must
    /// be on the store's file system.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| StoreError::Io(format!("checkpoint at {}: {e}", dir.display())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every keyspace's column family is created in `open`; a missing one means the store
    /// was damaged or opened by something else.
    fn cf(&self, space: Space) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(space.name()).ok_or_else(|| {
            StoreError::Corrupt(format!("column family {} is missing", space.name()))
        })
    }
}

impl StoreRead for RocksStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(space)?, key).map_err(io)
    }

    fn scan<'a>(&'a self, space: Space, prefix: &[u8], from: &[u8]) -> ScanIter<'a> {
        let start = if from > prefix { from } else { prefix }.to_vec();
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            // Bounds the iterator so that it never walks tombstones past the prefix.
            ro.set_iterate_upper_bound(end);
        }
        let cf = match self.cf(space) {
            Ok(cf) => cf,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let it = self
            .db
            .iterator_cf_opt(cf, ro, IteratorMode::From(&start, Direction::Forward));
        let prefix = prefix.to_vec();
        Box::new(
            it.map(|r| r.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(io))
                .take_while(move |r| match r {
                    Ok((k, _)) => k.starts_with(&prefix),
                    Err(_) => true,
                }),
        )
    }
}

impl Store for RocksStore {
    fn write(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (space, key, value) in &batch {
            let cf = self.cf(*space)?;
            match value {
                Some(v) => wb.put_cf(cf, key, v),
                None => wb.delete_cf(cf, key),
            }
        }
        self.db.write(wb).map_err(io)
    }

    /// Writes the WAL out and fsyncs it, which covers every earlier write.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(io)
    }
}
