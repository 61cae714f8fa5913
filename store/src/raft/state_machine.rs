//! The Raft state machine: applies committed entries to the shared MVCC engine on sled.
//!
//! The applied log id and membership are written in the same atomic batch as the changes they
//! describe, so after a crash the engine and its applied index agree and openraft replays
//! exactly the entries that were not applied.
//!
//! Snapshots are the engine's whole backend content, written to `snapshot.bin` in the data
//! directory as `magic || crc32 || bincode`; a corrupt file is refused on start.
// openraft's storage traits require its `StorageError`, which is large; boxing it in the
// helpers here would only be undone at the trait boundary.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{MemberNode, NodeId, TypeConfig};
use crate::shared::Shared;
use crate::types::ApplyResult;

const APPLIED_KEY: &[u8] = b"raft/applied";
const MEMBERSHIP_KEY: &[u8] = b"raft/membership";
const SNAPSHOT_MAGIC: &[u8; 8] = b"FLOSNAP1";
const SNAPSHOT_FILE: &str = "snapshot.bin";

type Membership = StoredMembership<NodeId, MemberNode>;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, MemberNode>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

pub struct StateMachine {
    shared: Arc<Shared>,
    dir: PathBuf,
}

fn sm_read(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::error(e.to_string())).into()
}

fn sm_write(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Opens the state machine; verifies the stored snapshot if there is one.
    pub fn open(shared: Arc<Shared>, dir: &Path) -> Result<Self, StorageError<NodeId>> {
        let machine = StateMachine { shared, dir: dir.to_path_buf() };
        machine.read_snapshot_file()?;
        Ok(machine)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    fn read_snapshot_file(&self) -> Result<Option<(SnapshotFile, Vec<u8>)>, StorageError<NodeId>> {
        let bytes = match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(sm_read(e)),
        };
        let file = decode_snapshot(&bytes)
            .map_err(|e| sm_read(format!("{}: {e}", self.snapshot_path().display())))?;
        Ok(Some((file, bytes)))
    }

    fn write_snapshot_file(&self, bytes: &[u8]) -> Result<(), StorageError<NodeId>> {
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.snapshot_path())?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(sm_write)
    }
}

fn encode_snapshot(file: &SnapshotFile) -> Result<Vec<u8>, bincode::Error> {
    let body = bincode::serialize(file)?;
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotFile, String> {
    if bytes.len() < 12 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err("not a flotilla snapshot".into());
    }
    let expected = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let body = &bytes[12..];
    if crc32fast::hash(body) != expected {
        return Err("snapshot checksum mismatch: snapshot is corrupt".into());
    }
    bincode::deserialize(body).map_err(|e| e.to_string())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let engine = self.shared.read_engine();
        let applied = match engine.read_meta(APPLIED_KEY).map_err(sm_read)? {
            Some(bytes) => bincode::deserialize(&bytes).map_err(sm_read)?,
            None => None,
        };
        let membership = match engine.read_meta(MEMBERSHIP_KEY).map_err(sm_read)? {
            Some(bytes) => bincode::deserialize(&bytes).map_err(sm_read)?,
            None => Membership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else { return Ok(Vec::new()) };
        let mut membership = None;
        let commands = entries.iter().map(|entry| match &entry.payload {
            EntryPayload::Normal(command) => Some(command),
            EntryPayload::Membership(m) => {
                membership = Some(Membership::new(Some(entry.log_id), m.clone()));
                None
            }
            EntryPayload::Blank => None,
        });
        let commands: Vec<_> = commands.collect();
        let applied = bincode::serialize(&Some(last)).map_err(sm_write)?;
        let membership =
            membership.map(|m| bincode::serialize(&m)).transpose().map_err(sm_write)?;
        let results = self
            .shared
            .apply_batch(commands, |engine| {
                engine.stage_meta(APPLIED_KEY, applied);
                if let Some(membership) = membership {
                    engine.stage_meta(MEMBERSHIP_KEY, membership);
                }
            })
            .map_err(|e| {
                tracing::error!(error = %e, "applying committed entries failed; stopping");
                StorageError::from(StorageIOError::apply(last, AnyError::error(e.to_string())))
            })?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { shared: self.shared.clone(), dir: self.dir.clone() }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file = decode_snapshot(&bytes).map_err(sm_read)?;
        if file.meta.last_log_id != meta.last_log_id {
            return Err(sm_read("received snapshot does not match its metadata"));
        }
        self.shared.write_engine().import(file.entries).map_err(sm_write)?;
        self.write_snapshot_file(&bytes)?;
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.read_snapshot_file()?.map(|(file, bytes)| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (entries, applied, membership) = {
            let engine = self.shared.read_engine();
            let entries = engine.export().map_err(sm_read)?;
            let applied: Option<LogId<NodeId>> =
                match engine.read_meta(APPLIED_KEY).map_err(sm_read)? {
                    Some(bytes) => bincode::deserialize(&bytes).map_err(sm_read)?,
                    None => None,
                };
            let membership: Membership = match engine.read_meta(MEMBERSHIP_KEY).map_err(sm_read)? {
                Some(bytes) => bincode::deserialize(&bytes).map_err(sm_read)?,
                None => Membership::default(),
            };
            (entries, applied, membership)
        };
        let snapshot_id = match applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, rand::random::<u32>()),
            None => format!("0-0-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        let file = SnapshotFile { meta: meta.clone(), entries };
        let bytes = encode_snapshot(&file).map_err(sm_write)?;
        let machine = StateMachine { shared: self.shared.clone(), dir: self.dir.clone() };
        machine.write_snapshot_file(&bytes)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}
