//! The store as its users see it: [`KvStore`], implemented once by [`Store`] over any
//! [`Consensus`] (a single process, or Raft across masters).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lessor::Lessor;
use crate::shared::Shared;
use crate::types::*;
use crate::watch::{self, Watcher};
use crate::StoreError;

/// How often the leader looks for expired leases.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A question only the leader can answer, because lease deadlines live on the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderQuery {
    /// Renews a lease; answers its TTL.
    KeepAlive(i64),
    /// Answers a lease's remaining seconds.
    Remaining(i64),
}

/// How commands reach agreement. A single process applies them at once; Raft replicates them.
pub trait Consensus: Send + Sync + 'static {
    /// Replicates a command and applies it; returns its result once applied locally.
    fn propose(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandResponse, StoreError>> + Send;

    /// Replicates a command only while this replica leads in `term`, and never forwards it:
    /// a decision only the leader may take (a lease's expiry) must not outlive the leadership
    /// it was taken under. Fails with `NotLeader` otherwise.
    fn propose_as_leader(
        &self,
        term: u64,
        command: Command,
    ) -> impl Future<Output = Result<CommandResponse, StoreError>> + Send;

    /// Waits until this replica has applied every command committed before the call, so that a
    /// local read after it is linearizable.
    fn read_barrier(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Returns the current term when this replica is the leader.
    fn leader_term(&self) -> Option<u64>;

    /// Sends a lease question to the leader (called only when this replica does not lead).
    /// Fails with `LeaderChanged` if this replica is elected meanwhile: it must answer itself.
    fn ask_leader(
        &self,
        query: LeaderQuery,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// The operations the Kubernetes API server and the etcd gRPC layer need.
pub trait KvStore: Clone + Send + Sync + 'static {
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, StoreError>> + Send;
    fn put(&self, req: PutRequest) -> impl Future<Output = Result<PutResponse, StoreError>> + Send;
    fn delete(
        &self,
        req: DeleteRequest,
    ) -> impl Future<Output = Result<DeleteResponse, StoreError>> + Send;
    fn txn(&self, req: TxnRequest) -> impl Future<Output = Result<TxnResponse, StoreError>> + Send;
    /// Compacts history before `revision`; returns the current revision.
    fn compact(&self, revision: i64) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn watch(&self, req: WatchRequest) -> Result<Watcher, StoreError>;
    /// Grants a lease of `ttl` seconds (at least 1), or refuses a TTL over etcd's maximum.
    fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
    ) -> impl Future<Output = Result<LeaseGrantResponse, StoreError>> + Send;
    /// Revokes a lease and deletes its keys; returns the revision.
    fn lease_revoke(&self, id: i64) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Renews a lease; returns its TTL.
    fn lease_keep_alive(&self, id: i64) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> impl Future<Output = Result<LeaseTimeToLive, StoreError>> + Send;
    fn lease_ids(&self) -> Vec<i64>;
    fn current_revision(&self) -> i64;
}

/// A store replica over a consensus implementation.
pub struct Store<C> {
    inner: Arc<StoreInner<C>>,
}

impl<C> Clone for Store<C> {
    fn clone(&self) -> Self {
        Store { inner: self.inner.clone() }
    }
}

struct StoreInner<C> {
    shared: Arc<Shared>,
    consensus: C,
    lessor: Lessor,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl<C: Consensus> Store<C> {
    /// Builds the store and starts its lease-expiry worker (it runs while this replica leads).
    pub fn new(shared: Arc<Shared>, consensus: C) -> Self {
        let inner = Arc::new(StoreInner {
            shared,
            consensus,
            lessor: Lessor::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        let store = Store { inner };
        let worker = store.clone();
        store.inner.tasks.spawn(async move { worker.expire_leases().await });
        store
    }

    pub fn consensus(&self) -> &C {
        &self.inner.consensus
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Stops the lease worker and every watcher, and waits for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    async fn expire_leases(&self) {
        let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(term) = self.inner.consensus.leader_term() else { continue };
            let leases = self.inner.shared.read_engine().leases();
            let expired = self.inner.lessor.expired(term, &leases, tokio::time::Instant::now());
            for id in expired {
                // Only as the leader whose deadlines these are: a leader paused past its
                // followers' election wakes up with stale deadlines, and a revocation it
                // forwarded to its successor would commit.
                let revoke = Command::LeaseRevoke { id };
                match self.inner.consensus.propose_as_leader(term, revoke).await {
                    Ok(_) => tracing::info!(lease = id, "lease expired"),
                    Err(StoreError::LeaseNotFound) => {}
                    Err(StoreError::NotLeader | StoreError::LeaderChanged) => break,
                    Err(err) => tracing::warn!(lease = id, error = %err, "expiring lease failed"),
                }
            }
        }
    }

    /// Answers a lease question as the leader; refuses when this replica does not lead.
    pub async fn answer_leader_query(&self, query: LeaderQuery) -> Result<i64, StoreError> {
        let term = self.inner.consensus.leader_term().ok_or(StoreError::NoLeader)?;
        let now = tokio::time::Instant::now();
        let (LeaderQuery::KeepAlive(id) | LeaderQuery::Remaining(id)) = query;
        let ttl = self.inner.shared.read_engine().lease(id).ok_or(StoreError::LeaseNotFound)?.0;
        Ok(match query {
            LeaderQuery::KeepAlive(_) => self.inner.lessor.keep_alive(term, id, ttl, now),
            LeaderQuery::Remaining(_) => self.inner.lessor.remaining(term, id, ttl, now),
        })
    }

    async fn leader_query(&self, query: LeaderQuery) -> Result<i64, StoreError> {
        loop {
            if self.inner.consensus.leader_term().is_some() {
                return self.answer_leader_query(query).await;
            }
            match self.inner.consensus.ask_leader(query).await {
                // This replica was elected while asking: it answers itself.
                Err(StoreError::LeaderChanged) if self.inner.consensus.leader_term().is_some() => {}
                answer => return answer,
            }
        }
    }

    async fn propose(&self, command: Command) -> Result<CommandResponse, StoreError> {
        if command_size(&command) > MAX_REQUEST_BYTES {
            return Err(StoreError::RequestTooLarge);
        }
        self.inner.consensus.propose(command).await
    }
}

/// Returns the bytes of keys and values a command carries, the part that can be large.
pub(crate) fn command_size(command: &Command) -> usize {
    fn ops_size(ops: &[TxnOp]) -> usize {
        ops.iter()
            .map(|op| match op {
                TxnOp::Put(put) => put.key.len() + put.value.len(),
                TxnOp::Range(range) => range.range.key.len() + range.range.range_end.len(),
                TxnOp::Delete(delete) => delete.range.key.len() + delete.range.range_end.len(),
                TxnOp::Txn(txn) => txn_size(txn),
            })
            .sum()
    }
    fn txn_size(txn: &TxnRequest) -> usize {
        let compares: usize = txn
            .compare
            .iter()
            .map(|c| {
                let value = if let CompareTarget::Value(v) = &c.target { v.len() } else { 0 };
                c.range.key.len() + c.range.range_end.len() + value
            })
            .sum();
        compares + ops_size(&txn.success) + ops_size(&txn.failure)
    }
    match command {
        Command::Put(put) => put.key.len() + put.value.len(),
        Command::Delete(delete) => delete.range.key.len() + delete.range.range_end.len(),
        Command::Txn(txn) => txn_size(txn),
        Command::Batch(commands) => commands.iter().map(command_size).sum(),
        Command::Compact { .. } | Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => 0,
    }
}

fn unexpected(response: CommandResponse) -> StoreError {
    StoreError::Storage(format!("state machine answered with the wrong kind: {response:?}"))
}

impl<C: Consensus> KvStore for Store<C> {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        if req.range.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if !req.serializable {
            self.inner.consensus.read_barrier().await?;
        }
        self.inner.shared.read_engine().range(&req)
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, StoreError> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        match self.propose(Command::Put(req)).await? {
            CommandResponse::Put(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, StoreError> {
        if req.range.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        match self.propose(Command::Delete(req)).await? {
            CommandResponse::Delete(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        crate::mvcc::validate_txn(&req)?;
        if req.is_read_only() {
            // A read-only transaction needs no log entry: it runs on the local replica after a
            // read barrier, as etcd does.
            let serializable = req.is_serializable();
            if !serializable {
                self.inner.consensus.read_barrier().await?;
            }
            return self.inner.shared.read_engine().read_txn(&req);
        }
        match self.propose(Command::Txn(req)).await? {
            CommandResponse::Txn(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self, revision: i64) -> Result<i64, StoreError> {
        match self.propose(Command::Compact { revision }).await? {
            CommandResponse::Compact { revision } => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    fn watch(&self, req: WatchRequest) -> Result<Watcher, StoreError> {
        watch::start(self.inner.shared.clone(), req, &self.inner.tasks, self.inner.shutdown.clone())
    }

    async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, StoreError> {
        if ttl > MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        // A lease shorter than a second would expire before its first renewal; the etcd
        // service raises short TTLs further, to etcd's minimum.
        let ttl = ttl.max(1);
        // etcd picks a random positive id when the client leaves it to the server.
        let id = if id == 0 { (rand::random::<i64>() & i64::MAX) | 1 } else { id };
        match self.propose(Command::LeaseGrant { id, ttl }).await? {
            CommandResponse::LeaseGrant(resp) => Ok(resp),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(&self, id: i64) -> Result<i64, StoreError> {
        match self.propose(Command::LeaseRevoke { id }).await? {
            CommandResponse::LeaseRevoke { revision } => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64, StoreError> {
        self.leader_query(LeaderQuery::KeepAlive(id)).await
    }

    async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLive, StoreError> {
        let remaining = match self.leader_query(LeaderQuery::Remaining(id)).await {
            Ok(remaining) => remaining,
            Err(StoreError::LeaseNotFound) => {
                return Ok(LeaseTimeToLive {
                    id,
                    ttl: -1,
                    revision: self.current_revision(),
                    ..Default::default()
                })
            }
            Err(err) => return Err(err),
        };
        // The granted TTL and the keys come from the local replica: bring it up to date first.
        self.inner.consensus.read_barrier().await?;
        let engine = self.inner.shared.read_engine();
        let (granted_ttl, lease_keys) = engine.lease(id).unwrap_or((0, Vec::new()));
        Ok(LeaseTimeToLive {
            id,
            ttl: remaining,
            granted_ttl,
            keys: if keys { lease_keys } else { Vec::new() },
            revision: engine.current_revision(),
        })
    }

    fn lease_ids(&self) -> Vec<i64> {
        self.inner.shared.read_engine().leases().into_iter().map(|(id, _)| id).collect()
    }

    fn current_revision(&self) -> i64 {
        self.inner.shared.read_engine().current_revision()
    }
}
