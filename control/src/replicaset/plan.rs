//! Decides what the ReplicaSet controller does for one ReplicaSet, as Kubernetes'
//! `pkg/controller/replicaset` does, without any IO.
//!
//! [`plan`] takes the ReplicaSet, every pod in its namespace and the current time, and returns a
//! [`Plan`]: how many pods to create, which to delete (most deletable first), which orphans to
//! adopt, which owned pods to release, and the status to write. The caller executes the plan and
//! tracks expectations for its own writes so a stale cache never makes it create twice.
//!
//! Invariants:
//! - Only active pods (not terminating, not `Succeeded`/`Failed`) are counted, adopted, released
//!   or deleted, as Kubernetes' `FilterActivePods` runs before claiming.
//! - A ReplicaSet being deleted neither creates, deletes, adopts nor releases; its status is still
//!   computed (Kubernetes skips `manageReplicas` and refuses to adopt or release for it).
//! - At most [`BURST`] pods are created or deleted per plan; slow-start batching of creates is the
//!   caller's business.

use std::cmp::Ordering;
use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::objects::{controller_of, count, later_or_missing_first, omit_empty, omit_zero};
use crate::selector::Selector;

#[cfg(test)]
mod tests;

/// Maximum number of pods created or deleted by one plan (Kubernetes' `BurstReplicas`).
pub const BURST: usize = 500;

/// Annotation whose integer value makes a pod cheaper (lower) or dearer (higher) to delete.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What the controller should do for one ReplicaSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Pods to create from the template (count already limited by [`BURST`]).
    pub create: usize,
    /// Names of pods to delete, most deletable first (Kubernetes' ranking: not assigned to a node <
    /// assigned; Pending < Unknown < Running; not ready < ready; lower deletion cost < higher;
    /// more replicas on the same node < fewer; ready for less time < longer; more restarts <
    /// fewer; newer < older).
    pub delete: Vec<String>,
    /// Orphan pods matching the selector to adopt (set [`owner_reference`] on them).
    pub adopt: Vec<String>,
    /// Owned pods that no longer match the selector, to release (drop the ownerReference).
    pub release: Vec<String>,
    /// The status to write if it differs from the current one.
    pub status: Option<ReplicaSetStatus>,
    /// Reconcile again after this long: a ready pod becomes available then (minReadySeconds),
    /// which no watch event announces.
    pub recheck_after: Option<SignedDuration>,
}

/// Why no plan could be made for a ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The selector is empty or malformed; an empty selector would match every pod.
    #[error("invalid selector: {reason}")]
    InvalidSelector { reason: String },
    /// A field the controller needs is absent.
    #[error("replicaset has no {field}")]
    MissingField { field: &'static str },
}

/// Returns what the controller should do for `rs`, given every pod in its namespace.
pub fn plan(rs: &ReplicaSet, pods: &[Pod], now: Timestamp) -> Result<Plan, PlanError> {
    let uid =
        rs.metadata.uid.as_deref().ok_or(PlanError::MissingField { field: "metadata.uid" })?;
    let spec = rs.spec.as_ref().ok_or(PlanError::MissingField { field: "spec" })?;
    let selector = Selector::parse(&spec.selector)
        .map_err(|e| PlanError::InvalidSelector { reason: e.reason })?;
    let being_deleted = rs.metadata.deletion_timestamp.is_some();

    let mut out = Plan::default();
    let mut owned: Vec<&Pod> = Vec::new();
    for pod in pods {
        if pod.metadata.namespace != rs.metadata.namespace || !is_active(pod) {
            continue;
        }
        let Some(name) = pod.metadata.name.as_deref() else { continue };
        let matches = selector.matches(pod.metadata.labels.as_ref());
        match controller_of(pod) {
            Some(reference) if reference.uid != uid => {}
            Some(_) if matches => owned.push(pod),
            // A ReplicaSet being deleted releases nothing, as Kubernetes' `ClaimObject`.
            Some(_) if !being_deleted => out.release.push(name.to_owned()),
            // Active pods are never terminating, so every matching orphan can be adopted.
            None if matches && !being_deleted => {
                out.adopt.push(name.to_owned());
                owned.push(pod);
            }
            Some(_) | None => {}
        }
    }

    if !being_deleted {
        let wanted = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        if owned.len() < wanted {
            out.create = (wanted - owned.len()).min(BURST);
        } else if owned.len() > wanted {
            let count = (owned.len() - wanted).min(BURST);
            out.delete = deletion_order(&owned).into_iter().take(count).collect();
        }
    }

    let (status, recheck_after) = status_of(rs, spec, &owned, now);
    out.recheck_after = recheck_after;
    if status != normalized(rs.status.clone().unwrap_or_default()) {
        out.status = Some(status);
    }
    Ok(out)
}

/// Returns the controller ownerReference pointing at `rs`, for created and adopted pods.
pub fn owner_reference(rs: &ReplicaSet) -> Result<OwnerReference, PlanError> {
    Ok(OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "ReplicaSet".to_owned(),
        name: rs.metadata.name.clone().ok_or(PlanError::MissingField { field: "metadata.name" })?,
        uid: rs.metadata.uid.clone().ok_or(PlanError::MissingField { field: "metadata.uid" })?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Returns a pod to create from the ReplicaSet's template (Kubernetes' `GetPodFromTemplate`).
pub fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, PlanError> {
    let owner = owner_reference(rs)?;
    let template = rs
        .spec
        .as_ref()
        .and_then(|spec| spec.template.as_ref())
        .ok_or(PlanError::MissingField { field: "spec.template" })?;
    let spec =
        template.spec.clone().ok_or(PlanError::MissingField { field: "spec.template.spec" })?;
    let template_meta = template.metadata.clone().unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name)),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Returns the status Kubernetes' `calculateStatus` would write, and when to look again because a
/// ready pod will have become available.
fn status_of(
    rs: &ReplicaSet,
    spec: &ReplicaSetSpec,
    owned: &[&Pod],
    now: Timestamp,
) -> (ReplicaSetStatus, Option<SignedDuration>) {
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|template| template.metadata.as_ref())
        .and_then(|meta| meta.labels.clone())
        .unwrap_or_default();
    let min_ready = SignedDuration::from_secs(i64::from(spec.min_ready_seconds.unwrap_or(0)));

    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    let mut recheck_after: Option<SignedDuration> = None;
    for pod in owned {
        let labels = pod.metadata.labels.as_ref();
        if template_labels.iter().all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
        {
            fully_labeled += 1;
        }
        let Some(readiness) = readiness(pod) else { continue };
        ready += 1;
        if min_ready.is_zero() {
            available += 1;
            continue;
        }
        // Kubernetes' `IsPodAvailable`: ready since strictly more than minReadySeconds.
        let Some(since) = readiness.since else { continue };
        let deadline = since.saturating_add(min_ready).unwrap_or(Timestamp::MAX);
        if deadline < now {
            available += 1;
        } else {
            // Timestamps have second precision on the wire; look again just past the deadline.
            let wait = now.duration_until(deadline) + SignedDuration::from_secs(1);
            recheck_after = Some(recheck_after.map_or(wait, |current| current.min(wait)));
        }
    }

    let current = rs.status.clone().unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: count(owned.len()),
        fully_labeled_replicas: Some(count(fully_labeled)),
        ready_replicas: Some(count(ready)),
        available_replicas: Some(count(available)),
        observed_generation: rs.metadata.generation,
        // ReplicaFailure is out of scope; existing conditions are kept as they are.
        conditions: current.conditions,
        // Only set behind the DeploymentReplicaSetTerminatingReplicas gate, which is off.
        terminating_replicas: None,
    };
    (normalized(status), recheck_after)
}

/// Drops optional counters equal to zero, as a Go `omitempty` round trip through the API does, so
/// a freshly computed status compares equal to the stored one.
fn normalized(mut status: ReplicaSetStatus) -> ReplicaSetStatus {
    omit_zero(&mut status.fully_labeled_replicas);
    omit_zero(&mut status.ready_replicas);
    omit_zero(&mut status.available_replicas);
    omit_zero(&mut status.terminating_replicas);
    omit_zero(&mut status.observed_generation);
    omit_empty(&mut status.conditions);
    status
}

/// Returns whether the pod counts (Kubernetes' `IsPodActive` plus not terminating).
fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod's Ready condition when it is `True`.
struct Readiness {
    since: Option<Timestamp>,
}

fn readiness(pod: &Pod) -> Option<Readiness> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|condition| condition.type_ == "Ready")?;
    (ready.status == "True")
        .then(|| Readiness { since: ready.last_transition_time.as_ref().map(|time| time.0) })
}

/// What Kubernetes' `ActivePodsWithRanks` compares, for one pod.
struct DeletionRank<'a> {
    name: &'a str,
    assigned: bool,
    phase: u8,
    ready: bool,
    cost: i32,
    /// Owned pods on the same node, this one included (Kubernetes' rank by related pods; for a
    /// ReplicaSet not owned by a Deployment the related pods are its own).
    colocated: usize,
    ready_since: Option<Timestamp>,
    restarts: i32,
    created: Option<Timestamp>,
}

/// Returns the names of `pods`, most deletable first.
///
/// Times are compared exactly, as Kubernetes does without the LogarithmicScaleDown gate; the
/// logarithmic buckets it uses with the gate are left out for simplicity.
fn deletion_order(pods: &[&Pod]) -> Vec<String> {
    let node_of = |pod: &Pod| pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
    let mut per_node: HashMap<Option<String>, usize> = HashMap::new();
    for pod in pods {
        *per_node.entry(node_of(pod)).or_default() += 1;
    }
    let mut ranks: Vec<DeletionRank<'_>> = pods
        .iter()
        .map(|pod| {
            let node = node_of(pod);
            let status = pod.status.as_ref();
            let readiness = readiness(pod);
            DeletionRank {
                name: pod.metadata.name.as_deref().unwrap_or_default(),
                assigned: node.as_deref().is_some_and(|node| !node.is_empty()),
                // Kubernetes' `podPhaseToOrdinal`; phases it does not list count as Pending.
                phase: match status.and_then(|status| status.phase.as_deref()) {
                    Some("Unknown") => 1,
                    Some("Running") => 2,
                    _ => 0,
                },
                ready: readiness.is_some(),
                cost: pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|annotations| annotations.get(POD_DELETION_COST_ANNOTATION))
                    .and_then(|cost| cost.parse().ok())
                    .unwrap_or(0),
                colocated: per_node.get(&node).copied().unwrap_or(0),
                ready_since: readiness.and_then(|readiness| readiness.since),
                restarts: status
                    .and_then(|status| status.container_statuses.as_ref())
                    .and_then(|containers| containers.iter().map(|c| c.restart_count).max())
                    .unwrap_or(0),
                created: pod.metadata.creation_timestamp.as_ref().map(|time| time.0),
            }
        })
        .collect();
    ranks.sort_by(more_deletable_first);
    ranks.into_iter().map(|rank| rank.name.to_owned()).collect()
}

/// Orders `a` before `b` when `a` should be deleted first (Kubernetes' `ActivePodsWithRanks.Less`,
/// with the name as a final tie-break so plans are deterministic).
fn more_deletable_first(a: &DeletionRank<'_>, b: &DeletionRank<'_>) -> Ordering {
    a.assigned
        .cmp(&b.assigned)
        .then(a.phase.cmp(&b.phase))
        .then(a.ready.cmp(&b.ready))
        .then(a.cost.cmp(&b.cost))
        .then(b.colocated.cmp(&a.colocated))
        .then_with(|| {
            if a.ready && b.ready {
                later_or_missing_first(a.ready_since, b.ready_since)
            } else {
                Ordering::Equal
            }
        })
        .then(b.restarts.cmp(&a.restarts))
        .then_with(|| later_or_missing_first(a.created, b.created))
        .then_with(|| a.name.cmp(b.name))
}
