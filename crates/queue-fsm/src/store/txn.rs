//! A write overlay over a store, with two layers: `base` holds the writes of the commands of
//! this entry that succeeded; `top` holds the writes of the command being applied. A command
//! that fails drops `top`, so that a refused command leaves nothing behind.

use super::{ScanIter, Space, StoreError, StoreRead, Write};
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;

type Layer = BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>;
type Item = Result<(Vec<u8>, Option<Vec<u8>>), StoreError>;

pub(crate) struct Txn<'s> {
    store: &'s dyn StoreRead,
    base: Layer,
    top: Layer,
}

impl<'s> Txn<'s> {
    pub fn new(store: &'s dyn StoreRead) -> Txn<'s> {
        Txn {
            store,
            base: Layer::new(),
            top: Layer::new(),
        }
    }

    pub fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = (space, key.to_vec());
        if let Some(v) = self.top.get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.base.get(&k) {
            return Ok(v.clone());
        }
        self.store.get(space, key)
    }

    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.top.insert((space, key), Some(value));
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.top.insert((space, key), None);
    }

    /// Keeps the current command's writes.
    pub fn commit_command(&mut self) {
        let top = std::mem::take(&mut self.top);
        self.base.extend(top);
    }

    /// Drops the current command's writes.
    pub fn discard_command(&mut self) {
        self.top.clear();
    }

    /// The entry's writes, as one batch.
    pub fn into_batch(mut self) -> Vec<Write> {
        self.commit_command();
        self.base.into_iter().map(|((s, k), v)| (s, k, v)).collect()
    }

    /// Entries with `prefix` and key `>= from`, the overlay's writes merged over the store's.
    pub fn scan<'a>(&'a self, space: Space, prefix: &[u8], from: &[u8]) -> ScanIter<'a> {
        let store = self
            .store
            .scan(space, prefix, from)
            .map(|r| r.map(|(k, v)| (k, Some(v))));
        let merged = Merge::new(
            Merge::new(store, layer_range(&self.base, space, prefix, from)),
            layer_range(&self.top, space, prefix, from),
        );
        Box::new(merged.filter_map(|r| match r {
            Ok((k, Some(v))) => Some(Ok((k, v))),
            Ok((_, None)) => None,
            Err(e) => Some(Err(e)),
        }))
    }
}

fn layer_range<'a>(
    layer: &'a Layer,
    space: Space,
    prefix: &[u8],
    from: &[u8],
) -> impl Iterator<Item = Item> + 'a {
    let start = if from > prefix { from } else { prefix }.to_vec();
    let prefix = prefix.to_vec();
    layer
        .range((Bound::Included((space, start)), Bound::Unbounded))
        .take_while(move |((s, k), _)| *s == space && k.starts_with(&prefix))
        .map(|((_, k), v)| Ok((k.clone(), v.clone())))
}

/// Merges two key-ordered streams; on equal keys the second one wins.
struct Merge<A: Iterator<Item = Item>, B: Iterator<Item = Item>> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<A: Iterator<Item = Item>, B: Iterator<Item = Item>> Merge<A, B> {
    fn new(a: A, b: B) -> Self {
        Merge {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<A: Iterator<Item = Item>, B: Iterator<Item = Item>> Iterator for Merge<A, B> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        use std::cmp::Ordering;
        let order = match (self.a.peek(), self.b.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => Ordering::Less,
            (_, Some(Err(_))) | (None, Some(_)) => Ordering::Greater,
            (Some(Ok((ka, _))), Some(Ok((kb, _)))) => ka.cmp(kb),
        };
        match order {
            Ordering::Less => self.a.next(),
            Ordering::Greater => self.b.next(),
            Ordering::Equal => {
                self.a.next();
                self.b.next()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, Store};

    #[test]
    fn overlay_merges_and_discards() {
        let mut store = MemStore::default();
        store
            .write(vec![
                (Space::Ready, b"a1".to_vec(), Some(b"s1".to_vec())),
                (Space::Ready, b"a3".to_vec(), Some(b"s3".to_vec())),
                (Space::Ready, b"b1".to_vec(), Some(b"s4".to_vec())),
            ])
            .unwrap();
        let mut tx = Txn::new(&store);
        tx.put(Space::Ready, b"a2".to_vec(), b"o2".to_vec());
        tx.delete(Space::Ready, b"a3".to_vec());
        tx.commit_command();
        tx.put(Space::Ready, b"a0".to_vec(), b"t0".to_vec());
        tx.put(Space::Ready, b"a1".to_vec(), b"t1".to_vec());
        let got: Vec<_> = tx
            .scan(Space::Ready, b"a", b"")
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                (b"a0".to_vec(), b"t0".to_vec()),
                (b"a1".to_vec(), b"t1".to_vec()),
                (b"a2".to_vec(), b"o2".to_vec()),
            ]
        );
        tx.discard_command();
        assert_eq!(tx.get(Space::Ready, b"a1").unwrap(), Some(b"s1".to_vec()));
        assert_eq!(tx.get(Space::Ready, b"a3").unwrap(), None);
        let got: Vec<_> = tx
            .scan(Space::Ready, b"a", b"a15")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(got, vec![b"a2".to_vec()]);
        let batch = tx.into_batch();
        assert_eq!(batch.len(), 2);
        store.write(batch).unwrap();
        let keys: Vec<_> = store
            .scan(Space::Ready, b"", b"")
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(keys, vec![b"a1".to_vec(), b"a2".to_vec(), b"b1".to_vec()]);
    }
}
