//! RocksDB store: one column family per keyspace.
//!
//! Writes go through the WAL but are not synced: the Raft log is the durable record, and a
//! state machine that loses its last unsynced batches on power loss replays them from the log
//! (the applied log id is written in the same batch, so the two never disagree).

use super::{prefix_end, ScanIter, Space, Store, StoreError, StoreRead, Write};
use rocksdb::{ColumnFamily, Direction, IteratorMode, Options, ReadOptions, WriteBatch, DB};
use std::path::{Path, PathBuf};

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
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        let cfs = Space::ALL
            .iter()
            .map(|s| rocksdb::ColumnFamilyDescriptor::new(s.name(), cf_options()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(io)?;
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
        })
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
}
