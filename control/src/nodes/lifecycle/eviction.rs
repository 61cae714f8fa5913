//! The taint manager's decisions for one pod, without IO: how long it tolerates its node's
//! `NoExecute` taints, and the pod conditions written before it is evicted or when its node is
//! unreachable.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::nodes::tolerates;

/// The condition, reason and message Kubernetes' taint manager adds to a pod it evicts.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const DISRUPTION_REASON: &str = "DeletionByTaintManager";
pub const DISRUPTION_MESSAGE: &str = "Taint manager: deleting due to NoExecute taint";

/// How long a pod may stay on a node with `NoExecute` taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerated {
    /// Some taint is tolerated by none of the pod's tolerations: evict now.
    Not,
    /// Every taint is tolerated, and none of the tolerations used has `tolerationSeconds`.
    Forever,
    /// Every taint is tolerated until this time: evict then.
    Until(Timestamp),
}

/// How long `pod` tolerates `taints` (its node's `NoExecute` taints, at least one), as
/// Kubernetes' taint manager decides it: each taint is tolerated by the first of the pod's
/// tolerations that matches it; the pod stays until the earliest time one of those tolerations
/// runs out, counting each taint's `tolerationSeconds` (negative ones as zero) from the taint's
/// `timeAdded`, or from `first_seen` (when the pod was first seen under these taints) for a taint
/// without one.
pub fn tolerated(taints: &[&Taint], pod: &Pod, first_seen: Timestamp) -> Tolerated {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let mut until: Option<Timestamp> = None;
    for taint in taints {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Tolerated::Not;
        };
        let Some(seconds) = used.toleration_seconds else { continue };
        let start = taint.time_added.as_ref().map_or(first_seen, |time| time.0);
        // A deadline past the end of time is as good as none.
        let Ok(deadline) = start.checked_add(SignedDuration::from_secs(seconds.max(0))) else {
            continue;
        };
        until = Some(until.map_or(deadline, |until| until.min(deadline)));
    }
    until.map_or(Tolerated::Forever, Tolerated::Until)
}

/// Whether the pod has finished (phase Succeeded or Failed).
pub fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Sets the Ready condition in `conditions` to False (transition now), as Kubernetes'
/// `MarkPodsNotReady` does: only a pod that has a Ready condition, not False already. Returns
/// whether it changed.
pub fn mark_not_ready(conditions: &mut Option<Vec<PodCondition>>, now: Timestamp) -> bool {
    let ready = conditions.iter_mut().flatten().find(|c| c.type_ == "Ready");
    match ready {
        Some(ready) if ready.status != "False" => {
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(now));
            true
        }
        _ => false,
    }
}

/// Sets the `DisruptionTarget` condition in `conditions` to True with the taint manager's reason
/// and message (transition now, unless it was True already). Returns whether it changed.
pub fn mark_disruption_target(conditions: &mut Option<Vec<PodCondition>>, now: Timestamp) -> bool {
    let wanted = PodCondition {
        type_: DISRUPTION_TARGET.into(),
        status: "True".into(),
        reason: Some(DISRUPTION_REASON.into()),
        message: Some(DISRUPTION_MESSAGE.into()),
        last_transition_time: Some(Time(now)),
        ..PodCondition::default()
    };
    let list = conditions.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|c| c.type_ == DISRUPTION_TARGET) {
        None => {
            list.push(wanted);
            true
        }
        Some(existing) => {
            let transition = if existing.status == "True" {
                existing.last_transition_time.clone()
            } else {
                wanted.last_transition_time.clone()
            };
            let next = PodCondition { last_transition_time: transition, ..wanted };
            let changed = *existing != next;
            *existing = next;
            changed
        }
    }
}
