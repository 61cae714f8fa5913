//! The single-process store: the KV suite over the in-memory and sled backends, durability
//! across a restart on sled, and shutdown.

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_store::mvcc::{MemBackend, SledBackend};
use flotilla_store::types::*;
use flotilla_store::{KvStore, LocalStore, StoreError};

use crate::kv_suite;
use crate::support::next_batch;

fn open_sled_store(db: &sled::Db) -> Result<LocalStore> {
    let backend = SledBackend::open(db, "kv")?;
    Ok(LocalStore::open_local(Box::new(backend))?)
}

async fn get(store: &LocalStore, key: &str) -> Result<Option<KeyValue>> {
    Ok(store.range(RangeRequest::new(KeyRange::single(key))).await?.kvs.into_iter().next())
}

#[tokio::test]
async fn kv_suite_on_memory_backend() -> Result<()> {
    eprintln!("--- open a local store in memory");
    let store = LocalStore::open_local(Box::new(MemBackend::new()))?;
    kv_suite::run_all(&store).await?;
    eprintln!("--- shut down");
    store.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn kv_suite_on_sled_backend() -> Result<()> {
    eprintln!("--- open a local store on a temporary sled database");
    let db = sled::Config::new().temporary(true).open()?;
    let store = open_sled_store(&db)?;
    kv_suite::run_all(&store).await?;
    eprintln!("--- shut down");
    store.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sled_store_survives_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");

    eprintln!("--- write keys, a lease and a compaction");
    let (a_before, b_before, lease, head, r1, r2, r3, r4, r5) = {
        let db = sled::Config::new().path(&path).open()?;
        let store = open_sled_store(&db)?;
        let r1 = store.put(PutRequest::new("a", "v1")).await?.revision;
        let r2 = store.put(PutRequest::new("a", "v2")).await?.revision;
        let lease = store.lease_grant(0, 600).await?.id;
        let r3 = store.put(PutRequest { lease, ..PutRequest::new("b", "leased") }).await?.revision;
        let r4 = store.put(PutRequest::new("c", "gone soon")).await?.revision;
        let r5 = store
            .delete(DeleteRequest { range: KeyRange::single("c"), prev_kv: false })
            .await?
            .revision;
        store.compact(r2).await?;
        let a = get(&store, "a").await?.context("a before restart")?;
        let b = get(&store, "b").await?.context("b before restart")?;
        let head = store.current_revision();
        assert_eq!(head, r5);

        eprintln!("--- shut the store down and close the database");
        store.shutdown().await;
        drop(store);
        db.flush_async().await?;
        drop(db);
        (a, b, lease, head, r1, r2, r3, r4, r5)
    };

    eprintln!("--- reopen the same database");
    let db = sled::Config::new().path(&path).open().context("reopen sled after the restart")?;
    let store = open_sled_store(&db)?;

    assert_eq!(store.current_revision(), head, "the revision survives");
    assert_eq!(get(&store, "a").await?.as_ref(), Some(&a_before), "a survives with its metadata");
    assert_eq!(get(&store, "b").await?.as_ref(), Some(&b_before), "b survives with its lease");
    assert_eq!(get(&store, "c").await?, None, "the delete survives");
    let at_r2 = store
        .range(RangeRequest { revision: r2, ..RangeRequest::new(KeyRange::single("a")) })
        .await?;
    assert_eq!(at_r2.kvs[0].value, b"v2", "history at the compaction point survives");
    let at_r1 = store
        .range(RangeRequest { revision: r1, ..RangeRequest::new(KeyRange::single("a")) })
        .await;
    assert_eq!(
        at_r1.map(|r| r.kvs),
        Err(StoreError::Compacted { compact_revision: r2 }),
        "the compaction survives"
    );

    assert!(store.lease_ids().contains(&lease), "the lease survives");
    let ttl = store.lease_time_to_live(lease, true).await?;
    assert_eq!((ttl.granted_ttl, ttl.keys), (600, vec![b"b".to_vec()]), "the lease keeps its key");

    eprintln!("--- history replays from before the restart");
    let mut watcher = store.watch(WatchRequest {
        range: KeyRange::from_key("a"),
        start_revision: r3,
        ..Default::default()
    })?;
    for (revision, kind) in [(r3, EventKind::Put), (r4, EventKind::Put), (r5, EventKind::Delete)] {
        let batch = next_batch(&mut watcher, &format!("replayed revision {revision}")).await?;
        assert_eq!((batch.revision, batch.events[0].kind), (revision, kind));
    }

    eprintln!("--- writes continue from the stored revision");
    let next = store.put(PutRequest::new("d", "after restart")).await?.revision;
    assert_eq!(next, head + 1);
    let revoked = store.lease_revoke(lease).await?;
    assert_eq!(revoked, head + 2, "revoking the restored lease deletes its key");
    assert_eq!(get(&store, "b").await?, None);
    drop(watcher);
    store.shutdown().await;
    Ok(())
}

/// etcd's request size limit counts keys and values; a request exactly at it is accepted.
#[tokio::test]
async fn requests_up_to_the_size_limit() -> Result<()> {
    let store = LocalStore::open_local(Box::new(MemBackend::new()))?;
    let key = "limit/key";
    let at_limit = vec![b'x'; MAX_REQUEST_BYTES - key.len()];
    eprintln!("--- a put of exactly {MAX_REQUEST_BYTES} bytes");
    let put =
        store.put(PutRequest::new(key, at_limit.clone())).await.context("a put at the limit")?;
    let stored = get(&store, key).await?.context("the value at the limit")?;
    assert!(stored.value == at_limit, "the value came back with {} bytes", stored.value.len());

    eprintln!("--- one byte more is refused and writes nothing");
    let over = [at_limit, vec![b'y']].concat();
    assert_eq!(
        store.put(PutRequest::new(key, over.clone())).await,
        Err(StoreError::RequestTooLarge),
        "a put one byte over the limit"
    );
    let txn =
        TxnRequest { success: vec![TxnOp::Put(PutRequest::new(key, over))], ..Default::default() };
    assert_eq!(
        store.txn(txn).await,
        Err(StoreError::RequestTooLarge),
        "a txn one byte over the limit"
    );
    assert_eq!(store.current_revision(), put.revision, "refused requests write nothing");
    store.shutdown().await;
    Ok(())
}

/// `Store::shutdown` promises to stop every watcher and wait for them, and `Watcher::next`
/// promises `None` once the store has shut down.
#[tokio::test]
async fn shutdown_ends_open_watches() -> Result<()> {
    let store = LocalStore::open_local(Box::new(MemBackend::new()))?;
    eprintln!("--- open a watch and keep it");
    let mut watcher =
        store.watch(WatchRequest { range: KeyRange::prefix("w/"), ..Default::default() })?;
    let rev = store.put(PutRequest::new("w/a", "1")).await?.revision;
    assert_eq!(next_batch(&mut watcher, "the put before shutdown").await?.revision, rev);

    eprintln!("--- shut down while the watch is open");
    tokio::time::timeout(Duration::from_secs(2), store.shutdown()).await.context(
        "Store::shutdown did not return within 2 s while a Watcher was open: \
         the watcher task never observes the shutdown",
    )?;
    let end = tokio::time::timeout(Duration::from_secs(2), watcher.next())
        .await
        .context("Watcher::next did not end within 2 s of shutdown")?;
    assert!(end.is_none(), "the watch ends with None after shutdown, got {end:?}");
    Ok(())
}
