//! The Raft storage on sled: openraft's storage conformance suite, and checksum verification of
//! the log when it is opened.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_store::mvcc::{Mvcc, SledBackend};
use flotilla_store::raft::{LogStore, MemberNode, NodeId, PeerChannels, StateMachine, TypeConfig};
use flotilla_store::types::{Command, PutRequest};
use flotilla_store::Shared;
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, EntryPayload, Raft, RaftLogReader, ServerState, StorageError, StorageIOError, Vote,
};
use tempfile::TempDir;

fn storage_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

/// Opens the state machine over the `kv` tree of `db`, keeping snapshots in `dir`.
// The error type is the one openraft's `StoreBuilder` returns.
#[allow(clippy::result_large_err)]
fn open_state_machine(db: &sled::Db, dir: &Path) -> Result<StateMachine, StorageError<NodeId>> {
    let backend = SledBackend::open(db, "kv").map_err(storage_error)?;
    let engine = Mvcc::open(Box::new(backend)).map_err(storage_error)?;
    StateMachine::open(Arc::new(Shared::new(engine)), dir)
}

/// Builds a fresh log and state machine on a temporary sled database; the guard is the
/// directory that holds the snapshot file.
struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(storage_error)?;
        let db = sled::Config::new().temporary(true).open().map_err(storage_error)?;
        let log = LogStore::open(&db)?;
        let state_machine = open_state_machine(&db, dir.path())?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite_on_sled() {
    eprintln!("--- run openraft's storage suite against LogStore and StateMachine");
    if let Err(err) = Suite::test_all(SledStoreBuilder) {
        panic!("openraft storage suite failed: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_log_entry_is_refused_on_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new().temporary(true).open()?;
    let key = b"corrupt/key";

    eprintln!("--- write an entry through a single-node raft");
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    }
    .validate()?;
    // A single voter never talks to a peer, so the transport's TLS settings are never used.
    let network = PeerChannels::new(tonic::transport::ClientTlsConfig::new());
    // A clone shares the trees, so the entry can be read back without reopening the log.
    let mut log = LogStore::open(&db)?;
    let raft = Raft::<TypeConfig>::new(
        1,
        Arc::new(config),
        network,
        log.clone(),
        open_state_machine(&db, dir.path())?,
    )
    .await?;
    raft.initialize(BTreeMap::from([(1, MemberNode::default())])).await?;
    raft.wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "the single node to lead")
        .await
        .context("waiting for the single node to become leader")?;
    let written = raft.client_write(Command::Put(PutRequest::new(key.as_slice(), "value"))).await?;
    let index = written.log_id.index;
    raft.shutdown().await?;

    eprintln!("--- the log holds the entry");
    let entries = log.try_get_log_entries(index..=index).await?;
    assert!(
        matches!(entries.as_slice(), [e] if matches!(&e.payload, EntryPayload::Normal(Command::Put(p)) if p.key == key)),
        "log entry {index} is the put: {entries:?}"
    );
    drop(log);

    eprintln!("--- flip one bit of the key inside the stored entry");
    let tree = db.open_tree("raft_log")?;
    let mut bytes =
        tree.get(index.to_be_bytes())?.context("the entry is stored under its index")?.to_vec();
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .context("the stored entry contains the key")?;
    // 'k' becomes 'j': still a well-formed entry, so only the checksum can notice.
    bytes[at + key.len() - 1] ^= 0x01;
    tree.insert(index.to_be_bytes(), bytes)?;
    tree.flush()?;

    // Entries are verified before the metadata, so this holds whatever the metadata is.
    eprintln!("--- opening the log refuses the corrupt entry");
    match LogStore::open(&db) {
        Ok(_) => panic!("LogStore::open accepted a log whose entry {index} was corrupted"),
        Err(err) => {
            let message = format!("{err} / {err:?}");
            assert!(
                message.contains("checksum mismatch"),
                "unexpected error for a corrupt entry: {message}"
            );
        }
    }
    Ok(())
}

/// A master reopens its log on every start, after it has voted at least once.
#[tokio::test]
async fn log_reopens_with_its_vote_and_commit_index() -> Result<()> {
    let db = sled::Config::new().temporary(true).open()?;
    eprintln!("--- save a vote and a commit index");
    let mut log = LogStore::open(&db)?;
    let vote = Vote::new_committed(3, 1);
    let committed = Some(openraft::testing::log_id(3, 1, 7));
    log.save_vote(&vote).await?;
    log.save_committed(committed).await?;
    drop(log);

    eprintln!("--- reopen the log");
    let mut log = LogStore::open(&db)
        .context("LogStore::open refused a log holding only a valid vote and commit index")?;
    assert_eq!(log.read_vote().await?, Some(vote));
    assert_eq!(log.read_committed().await?, committed);
    Ok(())
}
