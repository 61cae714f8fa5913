//! Leader election for the controllers: one master at a time holds the office
//! `flotilla-controller-manager`, and the Lease of that name in `kube-system` records which.
//!
//! The office is decided in the store (`flotilla_store::election`): every master keeps a store
//! session alive, and the one whose transaction creates the office's key under its session
//! holds it until that session ends. Keeping a session alive writes nothing (the store's
//! leader keeps lease deadlines in memory), so a cluster whose controller manager stays put
//! writes nothing to show it is alive; kube-controller-manager rewrites its Lease every 2 s.
//!
//! The winner records itself in the Lease (holderIdentity, acquireTime, leaseTransitions)
//! before any controller starts, so `kubectl get lease -n kube-system` names the master that
//! acts. Controllers run only while the session and the tenure last and stop the instant
//! either ends, which always comes before another master can win: the holder counts its TTL
//! from when it sent each renewal, the store's leader from when it received it. The lease is
//! not what keeps writes safe: controllers' writes are conditional on what they read.

use std::future::Future;
use std::time::Duration;

use flotilla_store::election::{campaign, Session, Tenure};
use flotilla_store::{KvStore, StoreError};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// The lease the controllers run under.
pub const LEASE_NAME: &str = "flotilla-controller-manager";
const NAMESPACE: &str = "kube-system";
/// The store key of the office (outside `/registry`, so the API does not serve it; `etcdctl
/// get` shows the holder).
const OFFICE: &str = "/flotilla/elections/kube-system/flotilla-controller-manager";
/// How long the work gets to stop once the lease is lost before it is aborted: a controller
/// that waits for something that never comes (seen with a thousand nodes starting) would keep
/// this master out of the election for good, and with every master so, nothing would run.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Election timing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// The TTL of each master's store session, in whole seconds: another master takes over
    /// this long after the holder's last renewal (renewals go four times per TTL).
    pub ttl_seconds: i64,
    /// How soon to try again after the store or the API failed.
    pub retry_every: Duration,
}

impl Default for LeaseConfig {
    /// Takeover about a second after the holder dies (1.5 s when it also led the store).
    fn default() -> Self {
        LeaseConfig { ttl_seconds: 1, retry_every: Duration::from_millis(200) }
    }
}

impl LeaseConfig {
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds.max(1) as u64)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.ttl_seconds < 1 {
            return Err("the lease TTL must be at least one second".into());
        }
        Ok(())
    }
}

pub struct Elector<S> {
    store: S,
    leases: Api<Lease>,
    identity: String,
    config: LeaseConfig,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl<S: KvStore> Elector<S> {
    pub fn new(store: S, client: kube::Client, identity: String, config: LeaseConfig) -> Self {
        Elector { store, leases: Api::namespaced(client, NAMESPACE), identity, config }
    }

    /// Competes for the office until `shutdown`; while it is held, runs `work` with a token
    /// that is cancelled the instant leadership ends, and waits for the work to end before
    /// competing again. On shutdown the session is closed, so another master takes over at
    /// once.
    pub async fn lead<W, F>(self, shutdown: CancellationToken, work: W)
    where
        W: Fn(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        while let Some(session) = self.open_session(&shutdown).await {
            self.serve(&session, &shutdown, &work).await;
            // The work has stopped. Ending the session (on shutdown, or once it is lost while
            // its lease may still live) vacates its office now rather than after a TTL.
            // Without a quorum the revocation would wait for one; the lease expires by itself
            // within its TTL anyway.
            match tokio::time::timeout(self.config.ttl(), session.close(&self.store)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "closing the election session failed")
                }
                Err(_) => tracing::debug!("closing the election session timed out"),
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Waits until the store grants a session; None on shutdown.
    async fn open_session(&self, shutdown: &CancellationToken) -> Option<Session> {
        loop {
            match Session::open(self.store.clone(), self.config.ttl_seconds).await {
                Ok(session) => return Some(session),
                Err(err) => tracing::debug!(error = %err, "no election session yet"),
            }
            if !self.pause(shutdown).await {
                return None;
            }
        }
    }

    /// Sleeps `retry_every`; false if shutdown came first.
    async fn pause(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.config.retry_every) => true,
        }
    }

    /// Campaigns under `session` and leads whenever it wins, until the session is lost or
    /// shutdown.
    async fn serve<W, F>(&self, session: &Session, shutdown: &CancellationToken, work: &W)
    where
        W: Fn(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let office = OFFICE.as_bytes();
        while !shutdown.is_cancelled() && !session.is_lost() {
            let won = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                won = campaign(&self.store, session, office, self.identity.as_bytes()) => won,
            };
            match won {
                Ok(tenure) => self.hold(session, &tenure, shutdown, work).await,
                Err(StoreError::LeaseNotFound) => return,
                Err(err) => {
                    tracing::debug!(error = %err, "campaign failed; retrying");
                    if !self.pause(shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Records the tenure in the Lease, then runs the work until the tenure, the session or
    /// the process ends.
    async fn hold<W, F>(
        &self,
        session: &Session,
        tenure: &Tenure,
        shutdown: &CancellationToken,
        work: &W,
    ) where
        W: Fn(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let term = shutdown.child_token();
        let over = async {
            tokio::select! {
                _ = term.cancelled() => {}
                _ = session.lost() => {}
                _ = tenure.ended(&self.store) => {}
            }
        };
        tokio::pin!(over);
        tokio::select! {
            biased;
            _ = &mut over => return,
            _ = self.record(shutdown) => {}
        }
        if term.is_cancelled() {
            return;
        }
        tracing::info!(holder = %self.identity, lease = LEASE_NAME, "leading");
        let mut running = tokio::spawn(work(term.clone()));
        over.await;
        term.cancel();
        if tokio::time::timeout(STOP_GRACE, &mut running).await.is_err() {
            tracing::warn!(holder = %self.identity, grace = ?STOP_GRACE, "work did not stop in time; aborted");
            running.abort();
            let _ = running.await;
        }
        if !shutdown.is_cancelled() {
            tracing::warn!(holder = %self.identity, lease = LEASE_NAME, "lost the lease; work stopped");
        }
    }

    fn spec(&self, transitions: i32) -> LeaseSpec {
        let taken = now();
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                self.config.ttl_seconds.clamp(1, i64::from(i32::MAX)) as i32
            ),
            acquire_time: Some(taken.clone()),
            renew_time: Some(taken),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Names this master as the holder in the Lease, trying until it succeeds.
    async fn record(&self, shutdown: &CancellationToken) {
        loop {
            match self.try_record().await {
                Ok(()) => return,
                Err(err) => tracing::debug!(error = %err, "recording the lease holder failed"),
            }
            if !self.pause(shutdown).await {
                return;
            }
        }
    }

    async fn try_record(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.leases.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0)),
            };
            self.leases.create(&PostParams::default(), &lease).await?;
            return Ok(());
        };
        let previous = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0)
            + i32::from(previous.as_deref() != Some(self.identity.as_str()));
        lease.spec = Some(self.spec(transitions));
        // Conditional on the resourceVersion just read.
        self.leases.replace(LEASE_NAME, &PostParams::default(), &lease).await?;
        if let Some(previous) = previous.filter(|p| !p.is_empty() && *p != self.identity) {
            tracing::info!(%previous, "took over the lease");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_at_least_a_second() {
        assert!(LeaseConfig::default().validate().is_ok());
        let none = LeaseConfig { ttl_seconds: 0, ..LeaseConfig::default() };
        assert!(none.validate().is_err());
    }
}
