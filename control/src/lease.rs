//! Leader election through a `coordination.k8s.io/v1` Lease in `kube-system`, as
//! kube-controller-manager does it, with shorter times.
//!
//! A candidate takes the lease only after watching it unchanged for a whole lease duration
//! (measured on its own clock, so clocks need not agree), and only by a write conditional on
//! the resourceVersion it watched. The holder renews often and stops its work the moment a
//! renewal fails or a renewal deadline passes, which is well before any candidate may take
//! over. The lease alone is not trusted for correctness: controllers' writes are conditional
//! on the resourceVersion of what they read.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The lease the controllers run under.
pub const LEASE_NAME: &str = "flotilla-controller-manager";
const NAMESPACE: &str = "kube-system";
/// How long the work gets to stop once the lease is lost before it is aborted: a controller
/// that waits for something that never comes (seen with a thousand nodes starting) would keep
/// this master out of the election for good, and with every master so, nothing would run.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lease timing. The holder must renew within `renew_deadline`, which is shorter than
/// `duration`, the time a candidate waits after the last change it saw.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub renew_every: Duration,
    pub retry_every: Duration,
}

impl Default for LeaseConfig {
    /// Takeover about 1.5 s after the holder dies.
    fn default() -> Self {
        LeaseConfig {
            duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_millis(1000),
            renew_every: Duration::from_millis(250),
            retry_every: Duration::from_millis(200),
        }
    }
}

impl LeaseConfig {
    /// Checks that the holder always gives up before a candidate may take over.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.duration {
            return Err("the renew deadline must be shorter than the lease duration".into());
        }
        if self.renew_every >= self.renew_deadline {
            return Err("renewals must come more often than the renew deadline".into());
        }
        Ok(())
    }
}

pub struct Elector {
    leases: Api<Lease>,
    identity: String,
    config: LeaseConfig,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, identity: String, config: LeaseConfig) -> Self {
        Elector { leases: Api::namespaced(client, NAMESPACE), identity, config }
    }

    /// Competes for the lease until `shutdown`; while it is held, runs `work` with a token
    /// that is cancelled the instant leadership is in doubt, and waits for the work to end
    /// before competing again.
    pub async fn lead<W, F>(self, shutdown: CancellationToken, work: W)
    where
        W: Fn(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        while let Some(lease) = self.acquire(&shutdown).await {
            let started = Instant::now();
            let term = shutdown.child_token();
            tracing::info!(holder = %self.identity, lease = LEASE_NAME, "leading");
            let mut running = tokio::spawn(work(term.clone()));
            self.renew(lease, started, &term).await;
            term.cancel();
            if tokio::time::timeout(STOP_GRACE, &mut running).await.is_err() {
                tracing::warn!(holder = %self.identity, grace = ?STOP_GRACE, "work did not stop in time; aborted");
                running.abort();
                let _ = running.await;
            }
            if shutdown.is_cancelled() {
                return;
            }
            tracing::warn!(holder = %self.identity, lease = LEASE_NAME, "lost the lease; work stopped");
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: acquired.or_else(|| Some(now())),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Waits until the lease is ours; None on shutdown.
    async fn acquire(&self, shutdown: &CancellationToken) -> Option<Lease> {
        // (resourceVersion last seen, when it was first seen)
        let mut observed: Option<(String, Instant)> = None;
        loop {
            match self.try_acquire(&mut observed).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "lease not acquired"),
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(self.config.retry_every) => {}
            }
        }
    }

    async fn try_acquire(
        &self,
        observed: &mut Option<(String, Instant)>,
    ) -> Result<Option<Lease>, kube::Error> {
        let Some(current) = self.leases.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(lease) => Ok(Some(lease)),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                Err(err) => Err(err),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let version = current.metadata.resource_version.clone().unwrap_or_default();
        let expired = match observed {
            Some((seen, since)) if *seen == version => since.elapsed() >= self.config.duration,
            _ => {
                *observed = Some((version, Instant::now()));
                false
            }
        };
        if !(holder.is_empty() || holder == self.identity || expired) {
            return Ok(None);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        let mut taken = current.clone();
        taken.spec = Some(self.spec(transitions, None));
        // Conditional on the version watched: if the holder renewed meanwhile, this fails.
        match self.leases.replace(LEASE_NAME, &PostParams::default(), &taken).await {
            Ok(lease) => {
                if !holder.is_empty() && holder != self.identity {
                    tracing::info!(previous = %holder, "took over the lease");
                }
                Ok(Some(lease))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Renews until a renewal fails, the deadline passes, or the term ends.
    async fn renew(&self, mut lease: Lease, mut renewed: Instant, term: &CancellationToken) {
        loop {
            let deadline = renewed + self.config.renew_deadline;
            tokio::select! {
                biased;
                _ = term.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep(self.config.renew_every) => {}
            }
            let attempt = Instant::now();
            let mut next = lease.clone();
            let acquired = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
            let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
            next.spec = Some(self.spec(transitions, acquired));
            let outcome = tokio::time::timeout(
                deadline.saturating_duration_since(attempt),
                self.leases.replace(LEASE_NAME, &PostParams::default(), &next),
            )
            .await;
            match outcome {
                Ok(Ok(updated)) => {
                    lease = updated;
                    // The renewal counts from when it was sent, not when it was answered.
                    renewed = attempt;
                }
                // Someone else wrote the lease: it is not ours any more.
                Ok(Err(kube::Error::Api(status))) if status.code == 409 => return,
                Ok(Err(err)) => tracing::debug!(error = %err, "lease renewal failed"),
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_gives_up_before_a_candidate_may_take_over() {
        assert!(LeaseConfig::default().validate().is_ok());
        let late = LeaseConfig { renew_deadline: Duration::from_secs(2), ..LeaseConfig::default() };
        assert!(late.validate().is_err());
        let slow = LeaseConfig { renew_every: Duration::from_secs(1), ..LeaseConfig::default() };
        assert!(slow.validate().is_err());
    }
}
