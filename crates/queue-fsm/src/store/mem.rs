//! In-memory store: one ordered map per keyspace.

use super::{ScanIter, Space, Store, StoreError, StoreRead, Write};
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Clone, Debug, Default)]
pub struct MemStore {
    spaces: BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl StoreRead for MemStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.spaces.get(&space).and_then(|m| m.get(key).cloned()))
    }

    fn scan<'a>(&'a self, space: Space, prefix: &[u8], from: &[u8]) -> ScanIter<'a> {
        let Some(map) = self.spaces.get(&space) else {
            return Box::new(std::iter::empty());
        };
        let start = if from > prefix { from } else { prefix }.to_vec();
        let prefix = prefix.to_vec();
        Box::new(
            map.range::<Vec<u8>, _>((Bound::Included(start), Bound::Unbounded))
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        )
    }
}

impl Store for MemStore {
    fn write(&mut self, batch: Vec<Write>) -> Result<(), StoreError> {
        for (space, key, value) in batch {
            let map = self.spaces.entry(space).or_default();
            match value {
                Some(v) => {
                    map.insert(key, v);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }
}
