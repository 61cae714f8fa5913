//! What the Job controller reads from one of its pods: phase, deletion, readiness, completion
//! index, failure counts, when it finished, and which active pods to delete first.

use std::cmp::Ordering;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;

use super::{
    COMPLETION_INDEX_ANNOTATION, INDEX_FAILURE_COUNT_ANNOTATION,
    INDEX_IGNORED_FAILURE_COUNT_ANNOTATION, TRACKING_FINALIZER,
};
use crate::objects::{later_or_missing_first, ready_since};

/// A pod phase as the controller distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Succeeded,
    Failed,
    /// Pending (and phases Kubernetes does not list), Unknown and Running, ranked 0, 1, 2 as
    /// upstream's `podPhaseToOrdinal` ranks them for deletion.
    Live(u8),
}

/// One pod controlled by the Job, with what the controller reads from it.
#[derive(Debug, Clone)]
pub(super) struct PodView<'a> {
    pub pod: &'a Pod,
    pub name: &'a str,
    pub uid: &'a str,
    pub resource_version: &'a str,
    /// Whether the pod carries the tracking finalizer (or will, being adopted by this plan).
    pub has_finalizer: bool,
    pub phase: Phase,
    /// Whether the pod has a deletionTimestamp.
    pub deleted: bool,
    pub ready: bool,
    /// The completion index annotation, when it is a non-negative integer.
    pub index: Option<usize>,
}

impl<'a> PodView<'a> {
    /// Returns the view of a pod with a name and uid; `adopted` pods count as finalized.
    pub(super) fn new(pod: &'a Pod, adopted: bool) -> Option<PodView<'a>> {
        let name = pod.metadata.name.as_deref()?;
        let uid = pod.metadata.uid.as_deref()?;
        let status = pod.status.as_ref();
        let phase = match status.and_then(|status| status.phase.as_deref()) {
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            Some("Unknown") => Phase::Live(1),
            Some("Running") => Phase::Live(2),
            _ => Phase::Live(0),
        };
        let has_finalizer = adopted
            || pod
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|finalizer| finalizer == TRACKING_FINALIZER);
        Some(PodView {
            pod,
            name,
            uid,
            resource_version: pod.metadata.resource_version.as_deref().unwrap_or_default(),
            has_finalizer,
            phase,
            deleted: pod.metadata.deletion_timestamp.is_some(),
            ready: ready_since(pod).is_some(),
            index: annotation(pod, COMPLETION_INDEX_ANNOTATION)
                .and_then(|value| value.parse::<i64>().ok())
                .and_then(|index| usize::try_from(index).ok()),
        })
    }

    /// Not terminal and not being deleted (upstream's `FilterActivePods`).
    pub(super) fn active(&self) -> bool {
        matches!(self.phase, Phase::Live(_)) && !self.deleted
    }

    /// Being deleted but not terminal yet (upstream's `CountTerminatingPods`).
    pub(super) fn terminating(&self) -> bool {
        matches!(self.phase, Phase::Live(_)) && self.deleted
    }

    /// The `job-index-failure-count` annotation (0 when absent or invalid).
    pub(super) fn index_failures(&self) -> i32 {
        count_annotation(self.pod, INDEX_FAILURE_COUNT_ANNOTATION)
    }

    /// The `job-index-ignored-failure-count` annotation (0 when absent or invalid).
    pub(super) fn index_ignored_failures(&self) -> i32 {
        count_annotation(self.pod, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION)
    }

    /// When the pod finished (upstream's `getFinishedTime`): the last container termination if
    /// every container terminated, else when Ready turned False, else the deletion time less the
    /// grace period, else the creation time.
    pub(super) fn finished_at(&self) -> Timestamp {
        let pod = self.pod;
        let status = pod.status.as_ref();
        let containers =
            status.and_then(|status| status.container_statuses.as_deref()).unwrap_or(&[]);
        let terminations: Option<Vec<Timestamp>> = containers
            .iter()
            .map(|container| {
                container
                    .state
                    .as_ref()?
                    .terminated
                    .as_ref()?
                    .finished_at
                    .as_ref()
                    .map(|time| time.0)
            })
            .collect();
        if let Some(latest) = terminations.and_then(|times| times.into_iter().max()) {
            return latest;
        }
        let not_ready = status
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "Ready"))
            .filter(|condition| condition.status == "False")
            .and_then(|condition| condition.last_transition_time.as_ref());
        if let Some(time) = not_ready {
            return time.0;
        }
        if let Some(deleted) = &pod.metadata.deletion_timestamp {
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            return deleted.0 - SignedDuration::from_secs(grace);
        }
        pod.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |time| time.0)
    }

    /// Sum of container restarts (init containers included) for running or pending pods, which
    /// `restartPolicy: OnFailure` counts against the backoff limit.
    pub(super) fn restarts(&self) -> i32 {
        if !matches!(self.phase, Phase::Live(0 | 2)) {
            return 0;
        }
        let Some(status) = self.pod.status.as_ref() else { return 0 };
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .map(|container| container.restart_count)
            .fold(0, i32::saturating_add)
    }
}

/// Orders `a` before `b` when `a` should be deleted first (upstream's `ActivePods.Less`:
/// unscheduled, then Pending < Unknown < Running, not ready, ready for less time, more restarts,
/// newer), with the name as a final tie-break so plans are deterministic.
pub(super) fn delete_first(a: &PodView<'_>, b: &PodView<'_>) -> Ordering {
    let node = |pod: &PodView<'_>| {
        pod.pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let rank = |pod: &PodView<'_>| match pod.phase {
        Phase::Live(rank) => rank,
        _ => 0,
    };
    let max_restarts = |pod: &PodView<'_>| {
        pod.pod
            .status
            .as_ref()
            .and_then(|status| status.container_statuses.as_ref())
            .and_then(|containers| containers.iter().map(|c| c.restart_count).max())
            .unwrap_or(0)
    };
    node(a)
        .cmp(&node(b))
        .then(rank(a).cmp(&rank(b)))
        .then(a.ready.cmp(&b.ready))
        .then_with(|| {
            if a.ready && b.ready {
                later_or_missing_first(ready_since(a.pod).flatten(), ready_since(b.pod).flatten())
            } else {
                Ordering::Equal
            }
        })
        .then(max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            let created =
                |pod: &PodView<'_>| pod.pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
            later_or_missing_first(created(a), created(b))
        })
        .then_with(|| a.name.cmp(b.name))
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// An annotation holding a count in `0..=i32::MAX`; anything else reads as 0, as upstream does.
fn count_annotation(pod: &Pod, key: &str) -> i32 {
    annotation(pod, key)
        .and_then(|value| value.parse::<i32>().ok())
        .filter(|count| *count >= 0)
        .unwrap_or(0)
}
