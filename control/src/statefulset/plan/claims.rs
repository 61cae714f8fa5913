//! PersistentVolumeClaims from `volumeClaimTemplates` and their ownerReferences under
//! `persistentVolumeClaimRetentionPolicy`, as Kubernetes' StatefulSet controller keeps them.
//!
//! The retention policy is carried by ownerReferences, which the garbage collector acts on:
//! - `whenDeleted: Delete` makes the set the claim's controller while the pod is in range, so
//!   deleting the set deletes the claim;
//! - `whenScaled: Delete` makes the pod the claim's controller once the pod falls out of range,
//!   so deleting the scaled-down pod deletes the claim.
//!
//! Claims whose references look stale (a reference to the set's or pod's name with another uid)
//! or that another controller owns are left alone, as Kubernetes does.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::SetView;

/// `persistentVolumeClaimRetentionPolicy`, read as Kubernetes does: anything but `Delete` retains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct RetentionPolicy {
    pub(super) delete_when_deleted: bool,
    pub(super) delete_when_scaled: bool,
}

impl RetentionPolicy {
    fn retains_always(self) -> bool {
        !self.delete_when_deleted && !self.delete_when_scaled
    }
}

/// The pod a claim belongs to; `uid` is empty for a pod this plan creates, as it is for
/// Kubernetes, which checks claims against its local copy of the pod it just created.
#[derive(Debug, Clone, Copy)]
pub(super) struct PodIdentity<'a> {
    pub(super) name: &'a str,
    pub(super) uid: &'a str,
    /// Whether the pod's ordinal is within the set's current range (not scaled down).
    pub(super) in_range: bool,
}

/// Returns the claim to create for `template` and `ordinal`: the template with the per-ordinal
/// name, the set's namespace, the template's labels overlaid with the selector's matchLabels,
/// and the set as controller when `whenDeleted` is `Delete` (Kubernetes creates the claim bare
/// and adds that reference right after creating the pod; doing it at once saves a write).
pub(super) fn new_claim(
    set: &SetView<'_>,
    name: &str,
    template: &PersistentVolumeClaim,
    ordinal: i32,
) -> PersistentVolumeClaim {
    let meta = template.metadata.clone();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(set.match_labels.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
    let owner_references = set.policy.delete_when_deleted.then(|| vec![set.owner.clone()]);
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(set.claim_name(name, ordinal)),
            namespace: set.namespace.map(str::to_owned),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references,
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Returns the ownerReferences `claim` should have under the set's retention policy, or `None`
/// when its current ones are right or must not be touched (Kubernetes' `isClaimOwnerUpToDate`
/// and `updateClaimOwnerRefForSetAndPod`).
pub(super) fn owner_update(
    set: &SetView<'_>,
    claim: &PersistentVolumeClaim,
    pod: PodIdentity<'_>,
) -> Option<Vec<OwnerReference>> {
    if up_to_date(set, claim, pod) {
        return None;
    }
    let refs = references(claim);
    let unexpected = has_unexpected_controller(set, claim, pod);
    let mut updated: Vec<OwnerReference> = refs
        .iter()
        .filter(|reference| !refers_to_set(set, reference) && !refers_to_pod(pod, reference))
        .cloned()
        .collect();
    if unexpected {
        return Some(updated);
    }
    let policy = set.policy;
    let scaled_down = !pod.in_range;
    if policy.delete_when_deleted && (!policy.delete_when_scaled || !scaled_down) {
        add_controller(&mut updated, set.owner.clone());
    }
    if policy.delete_when_scaled && scaled_down {
        add_controller(&mut updated, pod_controller_reference(pod));
    }
    Some(updated)
}

/// Whether a claim for a pod about to be created still carries a reference to an earlier pod of
/// the same name, which the garbage collector is about to delete it for (Kubernetes'
/// `PodClaimIsStale`); creating the pod then must wait.
pub(super) fn is_stale_for_new_pod(
    set: &SetView<'_>,
    claim: &PersistentVolumeClaim,
    pod: PodIdentity<'_>,
) -> bool {
    set.policy.delete_when_scaled && has_stale_pod_reference(claim, pod)
}

fn references(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim.metadata.owner_references.as_deref().unwrap_or_default()
}

fn refers_to_set(set: &SetView<'_>, reference: &OwnerReference) -> bool {
    reference.api_version == "apps/v1"
        && reference.kind == "StatefulSet"
        && reference.name == set.name
}

fn refers_to_pod(pod: PodIdentity<'_>, reference: &OwnerReference) -> bool {
    reference.api_version == "v1" && reference.kind == "Pod" && reference.name == pod.name
}

fn has_owner(claim: &PersistentVolumeClaim, uid: &str) -> bool {
    references(claim).iter().any(|reference| reference.uid == uid)
}

/// The first reference naming the set (or pod) decides: stale when its uid differs.
fn has_stale_set_reference(set: &SetView<'_>, claim: &PersistentVolumeClaim) -> bool {
    references(claim)
        .iter()
        .find(|reference| refers_to_set(set, reference))
        .is_some_and(|reference| reference.uid != set.uid)
}

fn has_stale_pod_reference(claim: &PersistentVolumeClaim, pod: PodIdentity<'_>) -> bool {
    references(claim)
        .iter()
        .find(|reference| refers_to_pod(pod, reference))
        .is_some_and(|reference| reference.uid != pod.uid)
}

/// Whether something other than the set or pod controls the claim, which only matters when the
/// policy deletes claims at all.
fn has_unexpected_controller(
    set: &SetView<'_>,
    claim: &PersistentVolumeClaim,
    pod: PodIdentity<'_>,
) -> bool {
    if set.policy.retains_always() {
        return false;
    }
    references(claim).iter().any(|reference| {
        if refers_to_set(set, reference) {
            reference.uid != set.uid
        } else if refers_to_pod(pod, reference) {
            reference.uid != pod.uid
        } else {
            reference.controller == Some(true)
        }
    })
}

fn has_non_controller_owner(
    set: &SetView<'_>,
    claim: &PersistentVolumeClaim,
    pod: PodIdentity<'_>,
) -> bool {
    references(claim).iter().any(|reference| {
        (reference.uid == set.uid || reference.uid == pod.uid) && reference.controller != Some(true)
    })
}

fn up_to_date(set: &SetView<'_>, claim: &PersistentVolumeClaim, pod: PodIdentity<'_>) -> bool {
    if has_stale_set_reference(set, claim) || has_stale_pod_reference(claim, pod) {
        return true;
    }
    let set_owns = has_owner(claim, set.uid);
    let pod_owns = has_owner(claim, pod.uid);
    if has_unexpected_controller(set, claim, pod) {
        return !set_owns && !pod_owns;
    }
    if has_non_controller_owner(set, claim, pod) {
        return false;
    }
    let scaled_down = !pod.in_range;
    let policy = set.policy;
    match (policy.delete_when_scaled, policy.delete_when_deleted) {
        (false, false) => !set_owns && !pod_owns,
        (false, true) => set_owns && !pod_owns,
        (true, false) => !set_owns && scaled_down == pod_owns,
        (true, true) => scaled_down != set_owns && scaled_down == pod_owns,
    }
}

fn add_controller(references: &mut Vec<OwnerReference>, owner: OwnerReference) {
    if references.iter().all(|reference| reference.uid != owner.uid) {
        references.push(owner);
    }
}

fn pod_controller_reference(pod: PodIdentity<'_>) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: pod.name.to_owned(),
        uid: pod.uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
