//! The backoff between deletions of failed daemon pods on one node, as the `flowcontrol.Backoff`
//! Kubernetes' DaemonSet controller keeps in memory (1s doubling up to 15 minutes).
//!
//! A kubelet that keeps rejecting a daemon pod would otherwise make the controller delete and
//! recreate it in a hot loop. The state is plain data carried from one plan to the next: the
//! caller keeps the [`FailedPodBackoff`] a plan returns and passes it to the next plan for the
//! same DaemonSet; losing it (a restart, a new leader) only resets the delays, as in Kubernetes.
//!
//! Invariants:
//! - Entries are keyed by DaemonSet uid, observed generation and node, so a new template
//!   generation or a recreated DaemonSet starts without delay.
//! - An entry untouched for twice the maximum delay is forgotten.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

/// First delay after a failed pod is deleted.
pub const INITIAL_BACKOFF: SignedDuration = SignedDuration::from_secs(1);
/// Longest delay between two deletions of failed pods on one node.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(15 * 60);

/// Per-node delays between deletions of failed daemon pods, carried between plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedPodBackoff {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    delay: SignedDuration,
    updated: Timestamp,
}

impl FailedPodBackoff {
    /// Returns an empty backoff: every node may have its failed pod deleted at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns whether no node is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the key of `node` for a DaemonSet (Kubernetes' `failedPodsBackoffKey`).
    pub(super) fn key(uid: &str, observed_generation: i64, node: &str) -> String {
        format!("{uid}/{observed_generation}/{node}")
    }

    /// Returns how long deletions on `key` must still wait, if they must.
    pub(super) fn remaining(&self, key: &str, now: Timestamp) -> Option<SignedDuration> {
        let entry = self.entries.get(key)?;
        let since = entry.updated.duration_until(now);
        if expired(since) || since >= entry.delay {
            return None;
        }
        Some(entry.delay - since)
    }

    /// Records a deletion on `key` at `now`, doubling its delay (Kubernetes' `Backoff.Next`).
    pub(super) fn next(&mut self, key: &str, now: Timestamp) {
        let delay = match self.entries.get(key) {
            Some(entry) if !expired(entry.updated.duration_until(now)) => {
                entry.delay.saturating_mul(2).min(MAX_BACKOFF)
            }
            _ => INITIAL_BACKOFF,
        };
        self.entries.insert(key.to_owned(), Entry { delay, updated: now });
    }

    /// Forgets entries untouched for twice the maximum delay (Kubernetes' `Backoff.GC`).
    pub(super) fn forget_expired(&mut self, now: Timestamp) {
        self.entries.retain(|_, entry| !expired(entry.updated.duration_until(now)));
    }
}

fn expired(since_update: SignedDuration) -> bool {
    since_update > MAX_BACKOFF.saturating_mul(2)
}
