//! Compaction of the store's history, as the Kubernetes API server does it against etcd:
//! each interval, a master that wins a compare-and-swap on a marker key compacts to the
//! revision recorded one interval before, so watches and list continuations can resume
//! from anything newer than one interval.

use std::sync::Arc;
use std::time::Duration;

use flotilla_store::types::{
    Compare, CompareResult, CompareTarget, KeyRange, PutRequest, RangeRequest, TxnOp,
    TxnOpResponse, TxnRequest,
};
use flotilla_store::{KvStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// The marker key; its version counts compaction rounds.
const COMPACT_KEY: &str = "compact_rev_key";

pub async fn run<S: KvStore>(
    registry: Arc<Registry<S>>,
    shutdown: CancellationToken,
    interval: Duration,
) {
    let store = registry.objects.store();
    let mut version = 0;
    let mut previous = 0;
    while super::pause(&shutdown, interval).await {
        match round(store, version, previous).await {
            Ok((next_version, recorded)) => {
                version = next_version;
                previous = recorded;
            }
            Err(err) => tracing::debug!(error = %err, "compaction round failed"),
        }
    }
}

/// One round: records the current revision if the marker is still at `version`, and then
/// compacts to the revision the previous round recorded. Returns the marker's new version
/// and the revision it now holds.
async fn round<S: KvStore>(
    store: &S,
    version: i64,
    previous: i64,
) -> Result<(i64, i64), StoreError> {
    let current = store.current_revision();
    let key = COMPACT_KEY.as_bytes().to_vec();
    let response = store
        .txn(TxnRequest {
            compare: vec![Compare {
                range: KeyRange::single(key.clone()),
                result: CompareResult::Equal,
                target: CompareTarget::Version(version),
            }],
            success: vec![TxnOp::Put(PutRequest::new(key.clone(), current.to_string()))],
            failure: vec![TxnOp::Range(RangeRequest::new(KeyRange::single(key)))],
        })
        .await?;
    if response.succeeded {
        if previous > 0 {
            match store.compact(previous).await {
                Ok(_) => tracing::info!(revision = previous, "compacted the store"),
                // Another master got there first.
                Err(StoreError::Compacted { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        return Ok((version + 1, current));
    }
    // Another master moved the marker: follow it.
    let marker = match response.responses.first() {
        Some(TxnOpResponse::Range(range)) => range.kvs.first().cloned(),
        _ => None,
    };
    Ok(marker
        .map(|kv| {
            let recorded = String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
            (kv.version, recorded)
        })
        .unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_store::mvcc::MemBackend;
    use flotilla_store::LocalStore;

    #[tokio::test]
    async fn rounds_compact_one_interval_behind_and_follow_other_masters() {
        let store = LocalStore::open_local(Box::new(MemBackend::new())).unwrap();
        for i in 0..5 {
            store.put(PutRequest::new(format!("k{i}"), "v")).await.unwrap();
        }
        let (version, recorded) = round(&store, 0, 0).await.unwrap();
        assert_eq!(version, 1);
        for i in 0..5 {
            store.put(PutRequest::new(format!("k{i}"), "w")).await.unwrap();
        }
        // A second master that saw nothing yet loses the compare and follows the marker.
        let (other_version, other_recorded) = round(&store, 0, 0).await.unwrap();
        assert_eq!((other_version, other_recorded), (version, recorded));
        round(&store, version, recorded).await.unwrap();
        let mut old = RangeRequest::new(KeyRange::single(b"k0".to_vec()));
        old.revision = recorded - 1;
        assert!(matches!(store.range(old).await, Err(StoreError::Compacted { .. })));
    }
}
