//! The byte-level storage under the MVCC engine.
//!
//! A [`Backend`] is an ordered map of byte keys with atomic batch writes. The engine keeps its
//! revision records and its metadata in it; the in-memory backend serves tests and
//! single-process use, the sled backend serves masters. Both pass the same KV conformance suite.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::StoreError;

/// One atomic group of writes: `None` deletes the key.
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

pub type ScanItem = Result<(Vec<u8>, Vec<u8>), StoreError>;

/// An ordered byte map with atomic batches.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Returns every entry whose key starts with `prefix` and is at least `from`, in key order.
    fn scan(&self, prefix: &[u8], from: &[u8]) -> Box<dyn Iterator<Item = ScanItem> + '_>;

    /// Applies every operation of the batch or none of them. It need not be on disk when this
    /// returns: the Raft log is the durable record, and the state machine's applied index is
    /// written in the same batch, so a crash replays what was lost.
    fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Removes every key.
    fn clear(&self) -> Result<(), StoreError>;

    /// Returns the bytes the backend occupies (on disk where it has a disk).
    fn size_bytes(&self) -> u64;
}

/// A backend held in memory.
#[derive(Default)]
pub struct MemBackend {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written: every mutation
        // below is a single call on the map.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], from: &[u8]) -> Box<dyn Iterator<Item = ScanItem> + '_> {
        let start = if from > prefix { from.to_vec() } else { prefix.to_vec() };
        let items: Vec<ScanItem> = self
            .map()
            .range(start..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        Box::new(items.into_iter())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut map = self.map();
        for (key, value) in batch.ops {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.map().clear();
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.map().iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}

/// A backend in one sled tree.
pub struct SledBackend {
    db: sled::Db,
    tree: sled::Tree,
}

impl SledBackend {
    pub fn open(db: &sled::Db, tree_name: &str) -> Result<Self, StoreError> {
        let tree = db.open_tree(tree_name).map_err(StoreError::storage)?;
        Ok(SledBackend { db: db.clone(), tree })
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(StoreError::storage)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], from: &[u8]) -> Box<dyn Iterator<Item = ScanItem> + '_> {
        let start = if from > prefix { from.to_vec() } else { prefix.to_vec() };
        let prefix = prefix.to_vec();
        Box::new(
            self.tree
                .range(start..)
                .take_while(move |item| match item {
                    Ok((k, _)) => k.starts_with(&prefix),
                    Err(_) => true,
                })
                .map(|item| {
                    item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::storage)
                }),
        )
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.ops {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        self.tree.apply_batch(sled_batch).map_err(StoreError::storage)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear().map_err(StoreError::storage)
    }

    fn size_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
