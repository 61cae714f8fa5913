//! The Raft log and vote on sled.
//!
//! Durability contract (openraft's): an append or a vote is on disk before it is acknowledged;
//! `append` flushes before calling back and `save_vote` flushes before returning. Any IO error is
//! returned as a `StorageError`, which stops the Raft node: nothing is retried.
//!
//! Every entry and the vote are stored as `crc32 || bincode`; [`LogStore::open`] verifies every
//! checksum, so a corrupt log is found when the master starts, not served later.
// openraft's storage traits require its `StorageError`, which is large; boxing it in the
// helpers here would only be undone at the trait boundary.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, OnceLock};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::mpsc;

use super::{NodeId, TypeConfig};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

/// The Raft log of one master. Cloning shares the same trees and flusher.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: Arc<OnceLock<mpsc::Sender<LogFlushed<TypeConfig>>>>,
}

/// Group commit: appends write their entries and queue their callback; the flusher thread takes
/// every queued callback, makes one flush, and completes them all. A callback is completed only
/// by a flush that started after its entries were written. The thread is the flusher's own
/// (sled's `flush_async` would hand each flush to sled's shared pool first, one more thread
/// wake-up per write on the path every write waits for). It ends when the last handle (every
/// clone of the store) is dropped.
fn flush_worker(db: sled::Db, queue: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = queue.recv() {
        let mut waiting = vec![first];
        waiting.extend(queue.try_iter());
        let flushed = db.flush();
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "flushing the raft log failed; the node stops");
        }
        for callback in waiting {
            let result = match &flushed {
                Ok(_) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            callback.log_io_completed(result);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ChecksumError(String);

/// Encodes a value as `crc32 || bincode`.
pub(crate) fn encode_checked<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    let body = bincode::serialize(value)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Returns the body of a `crc32 || body` record, refusing a checksum mismatch.
fn checked_body(bytes: &[u8]) -> Result<&[u8], AnyError> {
    if bytes.len() < 4 {
        return Err(AnyError::new(&ChecksumError("record shorter than its checksum".into())));
    }
    let (sum, body) = bytes.split_at(4);
    let expected = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if crc32fast::hash(body) != expected {
        return Err(AnyError::new(&ChecksumError("checksum mismatch: record is corrupt".into())));
    }
    Ok(body)
}

/// Decodes `crc32 || bincode`, refusing a checksum mismatch.
pub(crate) fn decode_checked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AnyError> {
    bincode::deserialize(checked_body(bytes)?).map_err(|e| AnyError::new(&e))
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// Opens the log in `db` and verifies every stored checksum.
    pub fn open(db: &sled::Db) -> Result<Self, StorageError<NodeId>> {
        let log = db.open_tree("raft_log").map_err(read_err)?;
        let meta = db.open_tree("raft_meta").map_err(read_err)?;
        let store = LogStore { db: db.clone(), log, meta, flusher: Arc::default() };
        store.verify()?;
        Ok(store)
    }

    fn verify(&self) -> Result<(), StorageError<NodeId>> {
        for item in self.log.iter() {
            let (key, value) = item.map_err(read_err)?;
            decode_checked::<Entry<TypeConfig>>(&value).map_err(|e| {
                StorageIOError::read_logs(AnyError::error(format!("raft log entry {key:?}: {e}")))
            })?;
        }
        for key in [VOTE_KEY, COMMITTED_KEY, LAST_PURGED_KEY] {
            if let Some(value) = self.meta.get(key).map_err(read_err)? {
                checked_body(&value).map_err(|e| {
                    StorageIOError::read_logs(AnyError::error(format!(
                        "raft metadata {}: {e}",
                        String::from_utf8_lossy(key)
                    )))
                })?;
            }
        }
        Ok(())
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_checked(&bytes).map_err(StorageIOError::read_logs)?)),
        }
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<NodeId>> {
        let bytes = encode_checked(value).map_err(write_err)?;
        self.meta.insert(key, bytes).map_err(write_err)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageError<NodeId>> {
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                StorageIOError::read_logs(AnyError::error("malformed raft log key"))
            })?);
            if !range.contains(&index) {
                break;
            }
            entries.push(decode_checked(&value).map_err(StorageIOError::read_logs)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(LAST_PURGED_KEY)?;
        let last_log_id = match self.log.last().map_err(read_err)? {
            Some((_, value)) => {
                let entry: Entry<TypeConfig> =
                    decode_checked(&value).map_err(StorageIOError::read_logs)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(VOTE_KEY, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed: losing it only means re-learning the commit index from the leader.
        self.write_meta(COMMITTED_KEY, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.read_meta::<Option<LogId<NodeId>>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode_checked(&entry).map_err(write_err)?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        let db = self.db.clone();
        let flusher = self.flusher.get_or_init(|| {
            let (sender, queue) = mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("raft-log-flush".into())
                .spawn(move || flush_worker(db, queue));
            if let Err(e) = spawned {
                // The send below then fails and the append flushes inline.
                tracing::warn!(error = %e, "no raft log flusher thread; flushing inline");
            }
            sender
        });
        if let Err(unsent) = flusher.send(callback) {
            // Only when the flusher thread could not be started: it ends only once every
            // handle is gone. Flush inline rather than lose the acknowledgement.
            let flushed = self.db.flush_async().await.map(|_| ());
            unsent.0.log_io_completed(flushed.map_err(|e| std::io::Error::other(e.to_string())));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(LAST_PURGED_KEY, &log_id)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
