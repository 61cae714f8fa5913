//! Decides what the StatefulSet controller does for one StatefulSet, as Kubernetes'
//! `pkg/controller/statefulset` does, without any IO.
//!
//! [`plan`] takes the StatefulSet, every pod and PersistentVolumeClaim in its namespace, the
//! ControllerRevisions it owns and the current time, and returns a [`Plan`].
//!
//! What a StatefulSet guarantees, and this module keeps:
//! - Identity: the pod with ordinal `n` is named `<set>-<n>` (ordinals start at
//!   `spec.ordinals.start`), has hostname `<set>-<n>` and subdomain `spec.serviceName`, and is
//!   labelled `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//!   `controller-revision-hash`.
//! - Storage: each `volumeClaimTemplates` entry `t` gives the pod a volume `t` bound to the claim
//!   `t-<set>-<n>`, created before the pod and kept (or handed to the garbage collector) as
//!   `persistentVolumeClaimRetentionPolicy` says.
//! - Ordering (`podManagementPolicy: OrderedReady`, the default): pod `n` is created only when
//!   every pod below it is Running, Ready and available (ready for more than
//!   `minReadySeconds`); scaling down removes the highest ordinal first, only when every other pod
//!   is healthy; at most one pod is created or deleted per plan. `Parallel` creates and deletes
//!   every pod at once, without waiting.
//! - Updates (`updateStrategy`): `RollingUpdate` deletes, from the highest ordinal down to
//!   `partition` (counted from the start ordinal), one pod not at the update revision at a time,
//!   waiting for each replacement to be healthy; `OnDelete` only gives pods the user deletes the
//!   new template.
//! - A pod that has failed or succeeded is deleted and recreated under the same name.
//!
//! **OrderedReady is step by step.** A plan makes at most one ordered step (one pod created or
//! deleted) and then stops, exactly as Kubernetes' sync does. The caller executes the plan, then
//! plans again once the world has changed (pod events, or [`Plan::recheck_after`]); plans must
//! never be queued or batched, since each step depends on what the previous one produced.
//!
//! The caller executes a plan in this order, stopping at the first failure and requeueing:
//! 1. [`Plan::create_revision`] / [`Plan::renumber_revision`] (the plan's pods carry its name).
//!    If the create fails with AlreadyExists, read the existing revision: if the set controls
//!    it and its data equals the new one, carry on; otherwise write the status with
//!    `collisionCount` one higher than [`Plan`]'s and requeue.
//! 2. [`Plan::create_claims`] (AlreadyExists is fine: the claim is reused), then
//!    [`Plan::patch_claims`].
//! 3. [`Plan::adopt_pods`], [`Plan::release_pods`], [`Plan::patch_pods`].
//! 4. [`Plan::create_pods`] in order, then [`Plan::delete_pods`] in order.
//! 5. [`Plan::delete_revisions`], then [`Plan::status`].
//!
//! Events the caller records on the set, as Kubernetes does (`Normal`, or `Warning` with
//! `Failed<Verb>` and `... failed error: <err>`): `SuccessfulCreate` "create Claim <claim> Pod
//! <pod> in StatefulSet <set> success", `SuccessfulCreate` "create Pod <pod> in StatefulSet <set>
//! successful", `SuccessfulUpdate` "update Pod <pod> in StatefulSet <set> successful",
//! `SuccessfulDelete` "delete Pod <pod> in StatefulSet <set> successful".

use std::collections::BTreeMap;

use crate::objects::controller_of;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

mod claims;
mod pass;
mod pods;
mod revisions;
#[cfg(test)]
mod tests;

use crate::selector::Selector;
use claims::RetentionPolicy;
use pass::{Pass, Replica, Slot};
use pods::{is_created, is_running_and_ready, is_terminating, name_of, ordinal_of, revision_of};
use revisions::Revisions;

/// Label holding a member pod's name, so a Service can select exactly one pod.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label holding a member pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label holding the name of the ControllerRevision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// How soon to look again when a step waits on something no watched event announces: a claim
/// being deleted, or a claim the garbage collector is about to delete. (Kubernetes requeues with
/// backoff for the first and, not watching claims, waits for the next resync for the second.)
pub const CLAIM_RETRY: SignedDuration = SignedDuration::from_secs(5);
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// What the controller should do for one StatefulSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The update revision to create, when no revision records the current template.
    pub create_revision: Option<ControllerRevision>,
    /// An older revision equal to the template (a rollback) to renumber as the newest.
    pub renumber_revision: Option<RevisionRenumber>,
    /// Claims to create, before the pods that mount them.
    pub create_claims: Vec<PersistentVolumeClaim>,
    /// Existing claims whose ownerReferences must change for the retention policy.
    pub patch_claims: Vec<ClaimPatch>,
    /// Orphan member pods to adopt: add [`owner_reference`] to their ownerReferences, with the
    /// pod's uid as precondition.
    pub adopt_pods: Vec<PodRef>,
    /// Controlled pods that no longer match (selector or name) to release: remove the set's
    /// ownerReference, with the pod's uid as precondition.
    pub release_pods: Vec<PodRef>,
    /// Member pods whose identity labels must be fixed.
    pub patch_pods: Vec<PodPatch>,
    /// Pods to create (full objects, the set as controller), lowest ordinal first.
    pub create_pods: Vec<Pod>,
    /// Pods to delete, in order, each with its uid as precondition.
    pub delete_pods: Vec<PodRef>,
    /// Names of old revisions to delete (beyond `revisionHistoryLimit`, oldest first).
    pub delete_revisions: Vec<String>,
    /// The status to write (whole `status` subresource), or `None` when it has not changed.
    pub status: Option<StatefulSetStatus>,
    /// Plan again after this long even without events: a ready pod becomes available then
    /// (minReadySeconds), or a claim may have been deleted ([`CLAIM_RETRY`]).
    pub recheck_after: Option<SignedDuration>,
}

/// A revision to renumber: set `revision` with `resourceVersion` as precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRenumber {
    pub name: String,
    pub resource_version: Option<String>,
    pub revision: i64,
}

/// A claim's new ownerReferences: replace `metadata.ownerReferences` with this list, with
/// `resourceVersion` as precondition.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimPatch {
    pub name: String,
    pub resource_version: Option<String>,
    pub owner_references: Vec<OwnerReference>,
}

/// A pod named for a write, with its uid for a precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: Option<String>,
}

/// Labels to merge into a pod's labels, with `resourceVersion` as precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPatch {
    pub name: String,
    pub resource_version: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Why no plan could be made for a StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field the controller needs is absent.
    #[error("statefulset has no {field}")]
    MissingField { field: &'static str },
    /// The selector is empty or malformed; an empty selector would match every pod.
    #[error("invalid selector: {reason}")]
    InvalidSelector { reason: String },
    /// A revision's data does not hold a pod template.
    #[error("invalid controller revision {name}: {reason}")]
    InvalidRevision { name: String, reason: String },
    /// Every candidate name for a new revision is taken by a revision with other data.
    #[error("no free revision name up to collision count {collision_count}")]
    RevisionNamesExhausted { collision_count: i32 },
}

/// Returns what the controller should do for `set`, given every pod and claim in its namespace
/// and the revisions it owns.
pub fn plan(
    set: &StatefulSet,
    pods: &[Pod],
    claims: &[PersistentVolumeClaim],
    revisions: &[ControllerRevision],
    now: Timestamp,
) -> Result<Plan, PlanError> {
    let view = SetView::new(set)?;
    let selector = Selector::parse(&view.spec.selector)
        .map_err(|e| PlanError::InvalidSelector { reason: e.reason })?;
    let being_deleted = set.metadata.deletion_timestamp.is_some();
    let mut out = Plan::default();

    let owned = claim_pods(&view, &selector, pods, being_deleted, &mut out);
    let revisions = Revisions::choose(&view, revisions)?;
    out.create_revision = revisions.create.clone();
    out.renumber_revision = revisions.renumber.clone();
    let (replicas, condemned) = members(&view, &owned);

    let mut pass = Pass::new(&view, &revisions, claims, now)?;
    if !being_deleted {
        pass.run(&replicas, &condemned);
    }

    let counted: Vec<&Pod> = if being_deleted {
        owned.clone()
    } else {
        replicas
            .iter()
            .filter_map(|replica| match replica.slot {
                Slot::Existing(pod) => Some(pod),
                Slot::Missing => None,
            })
            .chain(condemned.iter().map(|(_, pod)| *pod))
            .collect()
    };
    let mut status = status_of(&view, &revisions, &counted, pass.min_ready(), now);
    let adjusted = status.current_replicas.unwrap_or(0) + pass.current_adjust();
    status.current_replicas = Some(adjusted);
    complete_rolling_update(&view, &mut status);
    let current = set.status.clone().unwrap_or_default();
    if status_changed(&current, &status) {
        out.status = Some(status);
    }

    out.recheck_after = recheck_after(&counted, pass.min_ready(), now, pass.retry());
    pass.finish(&mut out);
    let limit = view.spec.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    out.delete_revisions = revisions.to_truncate(limit, owned.iter().map(|pod| revision_of(pod)));
    Ok(out)
}

/// Returns the controller ownerReference pointing at `set`, for adopted pods.
pub fn owner_reference(set: &StatefulSet) -> Result<OwnerReference, PlanError> {
    Ok(OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "StatefulSet".to_owned(),
        name: set
            .metadata
            .name
            .clone()
            .ok_or(PlanError::MissingField { field: "metadata.name" })?,
        uid: set.metadata.uid.clone().ok_or(PlanError::MissingField { field: "metadata.uid" })?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// What the planner reads from the StatefulSet, checked once.
#[derive(Debug)]
struct SetView<'a> {
    name: &'a str,
    namespace: Option<&'a str>,
    uid: &'a str,
    generation: Option<i64>,
    spec: &'a StatefulSetSpec,
    status: Option<&'a StatefulSetStatus>,
    annotations: Option<&'a BTreeMap<String, String>>,
    template: &'a PodTemplateSpec,
    service_name: Option<&'a str>,
    match_labels: Option<&'a BTreeMap<String, String>>,
    owner: OwnerReference,
    policy: RetentionPolicy,
    /// Claim templates with their (required) names, in spec order.
    claim_templates: Vec<(&'a str, &'a PersistentVolumeClaim)>,
}

impl<'a> SetView<'a> {
    fn new(set: &'a StatefulSet) -> Result<Self, PlanError> {
        let missing = |field| PlanError::MissingField { field };
        let spec = set.spec.as_ref().ok_or(missing("spec"))?;
        let policy = spec.persistent_volume_claim_retention_policy.as_ref();
        let deletes = |value: Option<&String>| value.is_some_and(|value| value == "Delete");
        let claim_templates = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .map(|template| {
                let name = template.metadata.name.as_deref();
                name.map(|name| (name, template))
                    .ok_or(missing("spec.volumeClaimTemplates[].metadata.name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: set.metadata.name.as_deref().ok_or(missing("metadata.name"))?,
            namespace: set.metadata.namespace.as_deref(),
            uid: set.metadata.uid.as_deref().ok_or(missing("metadata.uid"))?,
            generation: set.metadata.generation,
            spec,
            status: set.status.as_ref(),
            annotations: set.metadata.annotations.as_ref(),
            template: &spec.template,
            service_name: spec.service_name.as_deref().filter(|name| !name.is_empty()),
            match_labels: spec.selector.match_labels.as_ref(),
            owner: owner_reference(set)?,
            policy: RetentionPolicy {
                delete_when_deleted: deletes(policy.and_then(|p| p.when_deleted.as_ref())),
                delete_when_scaled: deletes(policy.and_then(|p| p.when_scaled.as_ref())),
            },
            claim_templates,
        })
    }

    /// The name of the claim from template `template` for `ordinal`.
    fn claim_name(&self, template: &str, ordinal: i32) -> String {
        format!("{template}-{}-{ordinal}", self.name)
    }

    fn start_ordinal(&self) -> i32 {
        self.spec.ordinals.as_ref().and_then(|ordinals| ordinals.start).unwrap_or(0)
    }

    fn is_rolling_update(&self) -> bool {
        self.update_strategy_type() == "RollingUpdate"
    }

    fn is_on_delete(&self) -> bool {
        self.update_strategy_type() == "OnDelete"
    }

    fn update_strategy_type(&self) -> &str {
        let strategy = self.spec.update_strategy.as_ref();
        strategy.and_then(|strategy| strategy.type_.as_deref()).unwrap_or("RollingUpdate")
    }

    fn partition(&self) -> Option<i32> {
        let strategy = self.spec.update_strategy.as_ref()?;
        strategy.rolling_update.as_ref().map(|rolling| rolling.partition.unwrap_or(0))
    }
}

/// Claims pods as Kubernetes' `ClaimPods` does: controlled members matching the selector are
/// kept, controlled pods that no longer match are released, and matching orphan members are
/// adopted (a set being deleted neither adopts nor releases). Returns the set's pods.
fn claim_pods<'p>(
    view: &SetView<'_>,
    selector: &Selector,
    pods: &'p [Pod],
    being_deleted: bool,
    out: &mut Plan,
) -> Vec<&'p Pod> {
    let mut owned = Vec::new();
    for pod in pods.iter().filter(|pod| pod.metadata.namespace.as_deref() == view.namespace) {
        let matches =
            is_member(view.name, name_of(pod)) && selector.matches(pod.metadata.labels.as_ref());
        let reference = PodRef { name: name_of(pod).to_owned(), uid: pod.metadata.uid.clone() };
        match controller_of(pod) {
            Some(controller) if controller.uid != view.uid => {}
            Some(_) if matches => owned.push(pod),
            Some(_) if !being_deleted => out.release_pods.push(reference),
            None if matches && !being_deleted && !is_terminating(pod) => {
                out.adopt_pods.push(reference);
                owned.push(pod);
            }
            Some(_) | None => {}
        }
    }
    owned
}

/// Splits the set's pods with a valid ordinal into the replicas (one slot per ordinal in range,
/// lowest first) and the condemned pods outside the range (highest ordinal first).
fn members<'p>(view: &SetView<'_>, owned: &[&'p Pod]) -> (Vec<Replica<'p>>, Vec<(i32, &'p Pod)>) {
    let replica_count = view.spec.replicas.unwrap_or(1).max(0);
    let start = view.start_ordinal();
    let in_range = |ordinal: i32| {
        let offset = i64::from(ordinal) - i64::from(start);
        (0..i64::from(replica_count)).contains(&offset)
    };
    let mut slots: BTreeMap<i32, &Pod> = BTreeMap::new();
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in owned {
        let Some(ordinal) = ordinal_of(view.name, name_of(pod)) else { continue };
        if in_range(ordinal) {
            slots.insert(ordinal, pod);
        } else {
            condemned.push((ordinal, pod));
        }
    }
    condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
    let replicas = (0..replica_count)
        .filter_map(|index| start.checked_add(index))
        .map(|ordinal| Replica {
            ordinal,
            slot: slots.get(&ordinal).map_or(Slot::Missing, |pod| Slot::Existing(pod)),
        })
        .collect();
    (replicas, condemned)
}

/// Whether a pod's name makes it one of the set's pods (Kubernetes' `isMemberOf`: the name is
/// `<parent>-<digits>` and the parent is the set's name).
fn is_member(set: &str, pod: &str) -> bool {
    pod.rsplit_once('-').is_some_and(|(parent, digits)| {
        parent == set && !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
    })
}

/// Returns the status Kubernetes' `updateStatus` computes over `pods`.
fn status_of(
    set: &SetView<'_>,
    revisions: &Revisions,
    pods: &[&Pod],
    min_ready: SignedDuration,
    now: Timestamp,
) -> StatefulSetStatus {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let revision = revision_of(pod);
            if revision == revisions.current_name() {
                current += 1;
            }
            if revision == revisions.update_name() {
                updated += 1;
            }
        }
    }
    StatefulSetStatus {
        observed_generation: set.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(revisions.current_name().to_owned()),
        update_revision: Some(revisions.update_name().to_owned()),
        collision_count: Some(revisions.collision_count),
        // The controller sets no conditions; whatever is there is kept.
        conditions: set.status.and_then(|status| status.conditions.clone()),
    }
}

/// Marks a finished rolling update: once every replica is updated and ready, the update revision
/// becomes the current one (Kubernetes' `completeRollingUpdate`; what `kubectl rollout status`
/// waits for).
fn complete_rolling_update(set: &SetView<'_>, status: &mut StatefulSetStatus) {
    let replicas = set.spec.replicas.unwrap_or(1);
    if set.is_rolling_update()
        && status.updated_replicas == Some(replicas)
        && status.ready_replicas == Some(replicas)
        && status.replicas == replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether `new` must be written over `old` (Kubernetes' `inconsistentStatus`, plus the
/// collision count, which must persist for revision names to stay stable).
fn status_changed(old: &StatefulSetStatus, new: &StatefulSetStatus) -> bool {
    let count = |value: Option<i32>| value.unwrap_or(0);
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    new.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || new.replicas != old.replicas
        || count(new.current_replicas) != count(old.current_replicas)
        || count(new.ready_replicas) != count(old.ready_replicas)
        || count(new.updated_replicas) != count(old.updated_replicas)
        || count(new.available_replicas) != count(old.available_replicas)
        || text(&new.current_revision) != text(&old.current_revision)
        || text(&new.update_revision) != text(&old.update_revision)
        || count(new.collision_count) != count(old.collision_count)
}

/// Returns when to plan again without an event: just after the first ready pod becomes
/// available, or after [`CLAIM_RETRY`] when a step waits on a claim.
fn recheck_after(
    pods: &[&Pod],
    min_ready: SignedDuration,
    now: Timestamp,
    retry: bool,
) -> Option<SignedDuration> {
    let availability = pods
        .iter()
        .filter(|pod| is_running_and_ready(pod))
        .filter_map(|pod| pods::availability(pod, min_ready, now).err().flatten())
        // Timestamps have second precision on the wire; look again just past the deadline.
        .map(|deadline| now.duration_until(deadline) + SignedDuration::from_secs(1))
        .min();
    let retry = retry.then_some(CLAIM_RETRY);
    match (availability, retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
