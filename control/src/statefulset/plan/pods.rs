//! Pod identity and health, as the StatefulSet controller reads and builds them: stable names
//! `<set>-<ordinal>`, the identity labels, the volumes pointing at per-ordinal claims, and the
//! running/ready/available tests the ordering guarantees rest on.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{SetView, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};
use crate::objects::ready_since;

/// Returns the name of the set's pod with `ordinal`.
pub(super) fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// Returns the ordinal of `pod` when its name is exactly `<set>-<ordinal>`.
///
/// Kubernetes parses the trailing digits as an int32 and so also accepts names such as `web-01`;
/// those cannot be given their canonical identity (names are immutable), so they are not treated
/// as members here.
pub(super) fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let ordinal: i32 = digits.parse().ok()?;
    (ordinal.to_string() == digits).then_some(ordinal)
}

pub(super) fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or_default()
}

/// Whether the API server has given the pod a phase (Kubernetes' `isCreated`).
pub(super) fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub(super) fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

/// Whether the pod has finished, successfully or not; either way it is replaced.
pub(super) fn has_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

pub(super) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub(super) fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready_since(pod).is_some()
}

/// Whether the pod is running, ready and not terminating (Kubernetes' `isHealthy`).
pub(super) fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// When a ready pod becomes available: `Ok(())` if it is, `Err(Some(deadline))` if it will be
/// once `deadline` has passed, `Err(None)` if it is not ready or never will be (Kubernetes'
/// `IsPodAvailable`: ready for strictly more than minReadySeconds).
pub(super) fn availability(
    pod: &Pod,
    min_ready: SignedDuration,
    now: Timestamp,
) -> Result<(), Option<Timestamp>> {
    let since = ready_since(pod).ok_or(None)?;
    if min_ready.is_zero() {
        return Ok(());
    }
    let since = since.ok_or(None)?;
    let deadline = since.saturating_add(min_ready).unwrap_or(Timestamp::MAX);
    if deadline < now {
        Ok(())
    } else {
        Err(Some(deadline))
    }
}

pub(super) fn is_available(pod: &Pod, min_ready: SignedDuration, now: Timestamp) -> bool {
    availability(pod, min_ready, now).is_ok()
}

/// The revision the pod was made from (its `controller-revision-hash` label), or "".
pub(super) fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

/// The identity labels a member pod with `ordinal` carries.
pub(super) fn identity_labels(set: &SetView<'_>, ordinal: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_NAME_LABEL.to_owned(), pod_name(set.name, ordinal)),
        (POD_INDEX_LABEL.to_owned(), ordinal.to_string()),
    ])
}

/// Whether the member pod carries its name label (Kubernetes' `identityMatches`; the name,
/// namespace and parent already match for every member).
pub(super) fn identity_matches(pod: &Pod) -> bool {
    let label = pod.metadata.labels.as_ref().and_then(|labels| labels.get(POD_NAME_LABEL));
    label.map(String::as_str) == Some(name_of(pod))
}

/// Whether the pod mounts every claim of its ordinal under the template's name (Kubernetes'
/// `storageMatches`).
pub(super) fn storage_matches(set: &SetView<'_>, pod: &Pod, ordinal: i32) -> bool {
    let volumes = pod.spec.as_ref().and_then(|spec| spec.volumes.as_ref());
    set.claim_templates.iter().all(|(template, _)| {
        let claim = set.claim_name(template, ordinal);
        volumes.into_iter().flatten().any(|volume| {
            volume.name == *template
                && volume
                    .persistent_volume_claim
                    .as_ref()
                    .is_some_and(|source| source.claim_name == claim)
        })
    })
}

/// Returns the pod to create for `ordinal` from `template` at `revision`: the template's
/// metadata and spec, the stable name, hostname and subdomain, the identity and revision labels,
/// one volume per claim template, and the set as controller (Kubernetes' `newStatefulSetPod`).
pub(super) fn new_pod(
    set: &SetView<'_>,
    template: &PodTemplateSpec,
    spec: &PodSpec,
    ordinal: i32,
    revision: &str,
) -> Pod {
    let name = pod_name(set.name, ordinal);
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(identity_labels(set, ordinal));
    labels.insert(REVISION_LABEL.to_owned(), revision.to_owned());

    let mut spec = spec.clone();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.service_name.map(str::to_owned);
    let claim_names: BTreeSet<&str> = set.claim_templates.iter().map(|(name, _)| *name).collect();
    let mut volumes: Vec<Volume> = set
        .claim_templates
        .iter()
        .map(|(template, _)| Volume {
            name: (*template).to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: set.claim_name(template, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .into_iter()
            .flatten()
            .filter(|volume| !claim_names.contains(volume.name.as_str())),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);

    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{}-", set.name)),
            namespace: set.namespace.map(str::to_owned),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![set.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}
