//! Pod readiness and availability as Kubernetes' `podutil` judges them, and the DaemonSet status
//! `kubectl rollout status ds` reads (Kubernetes' `updateDaemonSetStatus`).
//!
//! Invariants:
//! - Each desired node counts once, by its oldest pod (scheduled pods before unscheduled ones).
//! - The status compares equal to the stored one after a JSON round trip: zero optional counters
//!   are dropped as Go's `omitempty` drops them.

use std::cmp::Ordering;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::DaemonSetStatus;
use k8s_openapi::api::core::v1::Pod;

use super::{Work, CONTROLLER_REVISION_HASH_LABEL, TEMPLATE_GENERATION_LABEL};
use crate::objects::{count, is_ready, omit_empty, omit_zero, ready_since};

impl Work<'_> {
    /// Computes the status from the pods as they were before this plan's writes, and when a ready
    /// pod will have become available.
    pub(super) fn update_status(&mut self) {
        let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
        let (mut ready, mut updated, mut available) = (0, 0, 0);
        for (node, placement) in &self.nodes {
            let oldest = self.by_node.get(node).and_then(|pods| pods.first());
            if !placement.should_run {
                misscheduled += usize::from(oldest.is_some());
                continue;
            }
            desired += 1;
            let Some(pod) = oldest else { continue };
            current += 1;
            if is_ready(pod) {
                ready += 1;
                available += usize::from(is_available(pod, self.min_ready, self.now));
            }
            updated += usize::from(is_updated(pod, &self.hash, self.generation));
        }
        let waits: Vec<SignedDuration> = self
            .by_node
            .values()
            .flatten()
            .filter_map(|pod| available_in(pod, self.min_ready, self.now))
            .collect();
        for wait in waits {
            self.recheck_in(wait);
        }

        let stored = self.ds.status.clone().unwrap_or_default();
        let status = DaemonSetStatus {
            collision_count: self.collision_count,
            conditions: stored.conditions.clone(),
            current_number_scheduled: count(current),
            desired_number_scheduled: count(desired),
            number_available: Some(count(available)),
            number_misscheduled: count(misscheduled),
            number_ready: count(ready),
            number_unavailable: Some(count(desired.saturating_sub(available))),
            observed_generation: self.ds.metadata.generation,
            updated_number_scheduled: Some(count(updated)),
        };
        let status = normalized(status);
        if status != normalized(stored) {
            self.out.status = Some(status);
        }
    }
}

/// Drops optional counters equal to zero, as a Go `omitempty` round trip through the API does.
fn normalized(mut status: DaemonSetStatus) -> DaemonSetStatus {
    omit_zero(&mut status.number_available);
    omit_zero(&mut status.number_unavailable);
    omit_zero(&mut status.updated_number_scheduled);
    omit_zero(&mut status.observed_generation);
    omit_empty(&mut status.conditions);
    status
}

pub(super) fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or_default()
}

/// `Succeeded` or `Failed` (Kubernetes' `IsPodTerminal`).
pub(super) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Ready, and for strictly more than `min_ready` (Kubernetes' `IsPodAvailable`).
pub(super) fn is_available(pod: &Pod, min_ready: SignedDuration, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready.is_zero() => true,
        Some(since) => since.is_some_and(|since| deadline(since, min_ready) < now),
    }
}

/// How long until a ready but not yet available pod becomes available, with a second of margin
/// for the wire's second precision.
fn available_in(pod: &Pod, min_ready: SignedDuration, now: Timestamp) -> Option<SignedDuration> {
    let since = ready_since(pod)??;
    if min_ready.is_zero() {
        return None;
    }
    let deadline = deadline(since, min_ready);
    (deadline >= now).then(|| now.duration_until(deadline) + SignedDuration::from_secs(1))
}

fn deadline(since: Timestamp, min_ready: SignedDuration) -> Timestamp {
    since.saturating_add(min_ready).unwrap_or(Timestamp::MAX)
}

pub(super) fn hash_label(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(CONTROLLER_REVISION_HASH_LABEL).map(String::as_str)
}

/// The pod was made from the current template: its hash, or its template generation, matches
/// (Kubernetes' `IsPodUpdated`).
pub(super) fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let generation_matches = generation.is_some_and(|generation| {
        pod.metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(TEMPLATE_GENERATION_LABEL))
            .is_some_and(|label| *label == generation.to_string())
    });
    (!hash.is_empty() && hash_label(pod) == Some(hash)) || generation_matches
}

/// Orders pods scheduled first, then oldest first, then by name (Kubernetes'
/// `podByCreationTimestampAndPhase`).
pub(super) fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let unscheduled = |pod: &Pod| {
        pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_none_or(str::is_empty)
    };
    let created = |pod: &Pod| pod.metadata.creation_timestamp.as_ref().map(|time| time.0);
    unscheduled(a)
        .cmp(&unscheduled(b))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}
