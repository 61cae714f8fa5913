//! Elections among processes that share a store, run the way etcd's `concurrency` package
//! runs them.
//!
//! A candidate opens a [`Session`]: a store lease it keeps alive. An office is a key; the
//! candidate whose transaction creates it, bound to its session's lease, holds the office (a
//! [`Tenure`]) until the key goes: the holder resigned, its session expired, or someone deleted
//! the key. Expiry is decided by the store's leader and committed through the log, so a paused
//! or partitioned holder cannot keep an office; and a holder always knows it lost its session
//! before anyone can take its office, because it counts each renewal from when it sent it and
//! the leader counts from when it received it.
//!
//! Keeping a session alive writes nothing: the leader keeps lease deadlines in memory (see
//! `lessor`). An office costs one write when it is taken and one when it falls vacant.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lessor::ttl_duration;
use crate::store::KvStore;
use crate::types::*;
use crate::StoreError;

/// How soon a session tries again after a renewal failed (no leader, a leader change).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A store lease kept alive by this process until it is closed, dropped or lost.
pub struct Session {
    lease: i64,
    lost: CancellationToken,
    keeper: JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl` seconds and renews it four times per TTL. The session is lost
    /// when the store says the lease is gone, or when a whole TTL passes, counted from the
    /// last renewal that succeeded, without another one succeeding.
    pub async fn open<S: KvStore>(store: S, ttl: i64) -> Result<Session, StoreError> {
        let sent = Instant::now();
        let granted = store.lease_grant(0, ttl).await?;
        let ttl = ttl_duration(granted.ttl);
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(store, granted.id, sent + ttl, ttl / 4, lost.clone()));
        Ok(Session { lease: granted.id, lost, keeper })
    }

    /// The store lease this session keeps alive.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Resolves once the session is lost.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Ends the session: stops renewing and revokes its lease, which deletes every key bound
    /// to it, so each office it held falls vacant at once instead of after a TTL.
    pub async fn close<S: KvStore>(self, store: &S) -> Result<(), StoreError> {
        self.keeper.abort();
        self.lost.cancel();
        match store.lease_revoke(self.lease).await {
            Ok(_) | Err(StoreError::LeaseNotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl Drop for Session {
    /// A session dropped without [`Session::close`] stops renewing, as if its process had
    /// died: its lease expires after its TTL.
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Renews `lease` every `every` until `deadline` passes without a renewal that succeeded, or
/// the store answers that the lease is gone; then marks the session `lost`.
async fn keep_alive<S: KvStore>(
    store: S,
    lease: i64,
    mut deadline: Instant,
    every: Duration,
    lost: CancellationToken,
) {
    let mut pause = every;
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(pause) => {}
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(deadline, store.lease_keep_alive(lease)).await {
            Ok(Ok(ttl)) if ttl > 0 => {
                deadline = sent + ttl_duration(ttl);
                pause = every;
            }
            Ok(Ok(_) | Err(StoreError::LeaseNotFound)) | Err(_) => break,
            Ok(Err(err)) => {
                tracing::debug!(lease, error = %err, "lease renewal failed; retrying");
                pause = RETRY_PAUSE;
            }
        }
    }
    tracing::info!(lease, "session lost");
    lost.cancel();
}

/// An office held under a session: its key as this holder created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    key: Vec<u8>,
    /// The revision that created the key.
    revision: i64,
}

impl Tenure {
    /// The store revision at which this tenure began.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Resolves when the tenure ends: the office's key was deleted (the session was closed or
    /// expired, or someone deleted the key) or written by anyone, or the store stopped.
    pub async fn ended<S: KvStore>(&self, store: &S) {
        let mut from = self.revision + 1;
        loop {
            match next_change(store, &self.key, from).await {
                Ok(Change::Written) | Err(_) => return,
                Ok(Change::Unknown) => {}
            }
            // History was compacted under the watch: read the key to learn whether it is
            // still the one this tenure created, and watch again from that read.
            match store.range(RangeRequest::new(KeyRange::single(self.key.clone()))).await {
                Ok(read) if read.kvs.first().is_some_and(|kv| self.is_mine(kv)) => {
                    from = read.revision + 1;
                }
                Ok(_) => return,
                Err(err) => {
                    tracing::debug!(error = %err, "reading the office failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    fn is_mine(&self, kv: &KeyValue) -> bool {
        kv.create_revision == self.revision && kv.mod_revision == self.revision
    }
}

/// Waits until `session` holds the office `key`, creating the key with `value` (by convention
/// the holder's name) bound to the session's lease. While someone else holds it, watches the
/// key and tries again when it changes. Fails with [`StoreError::LeaseNotFound`] once the
/// session is lost, and with the store's error when a write or read fails.
pub async fn campaign<S: KvStore>(
    store: &S,
    session: &Session,
    key: &[u8],
    value: &[u8],
) -> Result<Tenure, StoreError> {
    let office = KeyRange::single(key);
    loop {
        if session.is_lost() {
            return Err(StoreError::LeaseNotFound);
        }
        let take = TxnRequest {
            compare: vec![Compare {
                range: office.clone(),
                result: CompareResult::Equal,
                target: CompareTarget::Create(0),
            }],
            success: vec![TxnOp::Put(PutRequest {
                lease: session.lease,
                ..PutRequest::new(key, value)
            })],
            failure: vec![TxnOp::Range(RangeRequest::new(office.clone()))],
        };
        let answer = store.txn(take).await?;
        if answer.succeeded {
            return Ok(Tenure { key: key.to_vec(), revision: answer.revision });
        }
        let holder = answer.responses.into_iter().find_map(|response| match response {
            TxnOpResponse::Range(read) => read.kvs.into_iter().next(),
            _ => None,
        });
        if let Some(kv) = holder.filter(|kv| kv.lease == session.lease) {
            // Taken by this very session earlier (a campaign that was interrupted after its
            // write): the tenure is the one that write began.
            return Ok(Tenure { key: key.to_vec(), revision: kv.create_revision });
        }
        tokio::select! {
            _ = session.lost() => return Err(StoreError::LeaseNotFound),
            change = next_change(store, key, answer.revision + 1) => { change?; }
        }
    }
}

enum Change {
    /// The key was written or deleted.
    Written,
    /// History from the requested revision is gone: whether the key changed is unknown.
    Unknown,
}

/// Waits for the first change to `key` at revision `from` or later.
async fn next_change<S: KvStore>(store: &S, key: &[u8], from: i64) -> Result<Change, StoreError> {
    let request =
        WatchRequest { range: KeyRange::single(key), start_revision: from, ..Default::default() };
    let mut watcher = match store.watch(request) {
        Ok(watcher) => watcher,
        Err(StoreError::Compacted { .. }) => return Ok(Change::Unknown),
        Err(err) => return Err(err),
    };
    match watcher.next().await {
        Some(Ok(_)) => Ok(Change::Written),
        Some(Err(StoreError::Compacted { .. })) => Ok(Change::Unknown),
        Some(Err(err)) => Err(err),
        None => Err(StoreError::Stopped),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::mvcc::MemBackend;
    use crate::LocalStore;

    const OFFICE: &[u8] = b"/elections/office";

    fn store() -> LocalStore {
        LocalStore::open_local(Box::new(MemBackend::new())).unwrap()
    }

    async fn delete_office(store: &LocalStore) {
        store
            .delete(DeleteRequest { range: KeyRange::single(OFFICE), prev_kv: false })
            .await
            .unwrap();
    }

    async fn holder(store: &LocalStore) -> Option<String> {
        let read = store.range(RangeRequest::new(KeyRange::single(OFFICE))).await.unwrap();
        read.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// Whether `campaign` is still running after `wait`.
    async fn still_waiting<F: std::future::Future>(campaign: F, wait: Duration) -> bool {
        tokio::time::timeout(wait, campaign).await.is_err()
    }

    #[tokio::test]
    async fn the_first_candidate_wins_and_the_next_waits_until_it_resigns() {
        let store = store();
        let a = Session::open(store.clone(), 1).await.unwrap();
        let b = Session::open(store.clone(), 1).await.unwrap();
        let tenure = campaign(&store, &a, OFFICE, b"a").await.unwrap();
        assert_eq!(holder(&store).await.as_deref(), Some("a"));
        let revision = store.current_revision();

        let waiting = campaign(&store, &b, OFFICE, b"b");
        tokio::pin!(waiting);
        // a keeps its session alive for longer than its TTL: b keeps waiting, and keeping the
        // session alive wrote nothing.
        assert!(still_waiting(&mut waiting, Duration::from_millis(2500)).await);
        assert_eq!(store.current_revision(), revision, "renewals write nothing");
        assert!(!a.is_lost());

        let resigned = Instant::now();
        a.close(&store).await.unwrap();
        tenure.ended(&store).await;
        let won = waiting.await.unwrap();
        assert!(resigned.elapsed() < Duration::from_millis(500), "{:?}", resigned.elapsed());
        assert_eq!(holder(&store).await.as_deref(), Some("b"));
        assert!(won.revision() > tenure.revision());
        // Taken, vacated by the revocation, taken again: three writes in all.
        assert_eq!(store.current_revision(), revision + 2);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_holder_that_stops_renewing_loses_the_office_after_its_ttl() {
        let store = store();
        let a = Session::open(store.clone(), 1).await.unwrap();
        let b = Session::open(store.clone(), 1).await.unwrap();
        let tenure = campaign(&store, &a, OFFICE, b"a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert!(!a.is_lost());
        // The holder's process dies: nothing renews its lease any more.
        let died = Instant::now();
        drop(a);
        let won = campaign(&store, &b, OFFICE, b"b").await.unwrap();
        let takeover = died.elapsed();
        // Never before a TTL from the last renewal, made at most a quarter TTL before the
        // death; soon after (a TTL and one pass of the leader's lease-expiry worker, 1.1 s,
        // with room for a loaded machine).
        assert!(takeover >= Duration::from_millis(750), "{takeover:?}");
        assert!(takeover <= Duration::from_secs(3), "{takeover:?}");
        tenure.ended(&store).await;
        assert_eq!(holder(&store).await.as_deref(), Some("b"));
        assert!(won.revision() > tenure.revision());
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_session_whose_lease_is_revoked_is_lost_and_cannot_campaign() {
        let store = store();
        let a = Session::open(store.clone(), 1).await.unwrap();
        let tenure = campaign(&store, &a, OFFICE, b"a").await.unwrap();
        store.lease_revoke(a.lease()).await.unwrap();
        tenure.ended(&store).await;
        tokio::time::timeout(Duration::from_secs(1), a.lost()).await.unwrap();
        assert_eq!(campaign(&store, &a, OFFICE, b"a").await, Err(StoreError::LeaseNotFound));
        assert_eq!(holder(&store).await, None);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_deleted_or_overwritten_office_ends_the_tenure_and_can_be_won_again() {
        let store = store();
        let a = Session::open(store.clone(), 1).await.unwrap();
        for intrusion in ["delete", "overwrite"] {
            let tenure = campaign(&store, &a, OFFICE, b"a").await.unwrap();
            match intrusion {
                "delete" => delete_office(&store).await,
                _ => {
                    store.put(PutRequest::new(OFFICE, "intruder")).await.unwrap();
                }
            }
            tokio::time::timeout(Duration::from_secs(1), tenure.ended(&store))
                .await
                .unwrap_or_else(|_| panic!("the tenure survived a {intrusion}"));
            if intrusion == "overwrite" {
                // The key now belongs to no session: the campaign waits until it goes.
                let waiting = campaign(&store, &a, OFFICE, b"a");
                tokio::pin!(waiting);
                assert!(still_waiting(&mut waiting, Duration::from_millis(1500)).await);
                delete_office(&store).await;
                waiting.await.unwrap();
                assert_eq!(holder(&store).await.as_deref(), Some("a"));
            }
        }
        assert!(!a.is_lost());
        store.shutdown().await;
    }

    #[tokio::test]
    async fn campaigning_again_with_the_holding_session_returns_the_same_tenure() {
        let store = store();
        let a = Session::open(store.clone(), 1).await.unwrap();
        let first = campaign(&store, &a, OFFICE, b"a").await.unwrap();
        let again = campaign(&store, &a, OFFICE, b"a").await.unwrap();
        assert_eq!(first, again);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_tenure_outlives_a_compaction_of_its_history() {
        let store = store();
        let a = Session::open(store.clone(), 1).await.unwrap();
        let tenure = campaign(&store, &a, OFFICE, b"a").await.unwrap();
        for n in 0..3 {
            store.put(PutRequest::new(format!("/other/{n}"), "x")).await.unwrap();
        }
        store.compact(store.current_revision()).await.unwrap();
        let ended = tenure.ended(&store);
        tokio::pin!(ended);
        assert!(
            still_waiting(&mut ended, Duration::from_millis(1500)).await,
            "ended on compaction"
        );
        a.close(&store).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), ended).await.unwrap();
        store.shutdown().await;
    }
}
