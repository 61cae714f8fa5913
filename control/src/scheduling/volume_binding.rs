//! What the scheduler writes for a pod's unbound claims before binding the pod (kube-scheduler's
//! VolumeBinding PreBind): it pre-binds each chosen volume to its claim (`spec.claimRef`, which
//! the PersistentVolume controller then completes), marks claims to provision with
//! `volume.kubernetes.io/selected-node`, and waits until every such claim is bound, polling the
//! API every second for up to ten minutes. The pod is bound only after that; any failure sends
//! it back to the queue.
//!
//! Every write is conditional on the resourceVersion just read, and is skipped when the object
//! already says what is wanted, so retrying after a partial failure is safe. The decisions on
//! what to write and whether binding is complete are pure functions ([`prebound`],
//! [`with_selected_node`], [`check_bindings`]).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use crate::scheduler::{fully_bound, VolumeBindings};
use crate::volumes::plan::matching::node_affinity_allows;
use crate::volumes::plan::{
    claim_reference, BOUND_BY_CONTROLLER_ANNOTATION, SELECTED_NODE_ANNOTATION,
};

use super::queue::SCHEDULER_NAME;

/// How long to wait for the claims to be bound (`bindTimeoutSeconds`' default).
const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the claims are checked while waiting.
const POLL: Duration = Duration::from_secs(1);

/// Why a pod's volumes could not be bound; the pod is scheduled again.
#[derive(Debug, thiserror::Error)]
pub enum VolumeBindingError {
    #[error("pv {volume:?} is bound to another claim")]
    VolumeTaken { volume: String },
    #[error("ClaimRef got reset for pv {volume:?}")]
    ClaimRefReset { volume: String },
    #[error("pv {volume:?} node affinity doesn't match node {node:?}")]
    NodeAffinity { volume: String, node: String },
    #[error("provisioning failed for PVC {claim:?}")]
    ProvisioningFailed { claim: String },
    #[error("failed to check binding: claim {claim:?} is gone")]
    ClaimGone { claim: String },
    #[error("failed to check binding: the volume pre-bound to claim {claim:?} is gone")]
    VolumeGone { claim: String },
    #[error("pod does not exist any more")]
    PodGone,
    #[error("binding volumes: timed out waiting for the condition")]
    Timeout,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// The volume with its `claimRef` pointing at the claim (and marked as the controller's
/// binding unless the user pre-bound it), or `None` when it already points there
/// (`GetBindVolumeToClaim`). A volume taken by another claim is an error.
pub fn prebound(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<Option<PersistentVolume>, VolumeBindingError> {
    let reference = volume.spec.as_ref().and_then(|spec| spec.claim_ref.as_ref());
    let to_claim = |uid_required: bool| {
        reference.is_some_and(|r| {
            let uid = r.uid.as_deref().unwrap_or_default();
            r.name == claim.metadata.name
                && r.namespace == claim.metadata.namespace
                && if uid_required {
                    Some(uid) == claim.metadata.uid.as_deref()
                } else {
                    uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref()
                }
        })
    };
    if reference.is_some() && !to_claim(false) {
        return Err(VolumeBindingError::VolumeTaken { volume: volume.name_any() });
    }
    let mut updated = volume.clone();
    let mut dirty = false;
    if !to_claim(true) {
        updated.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_reference(claim));
        dirty = true;
    }
    let annotations = updated.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if reference.is_none() && !annotations.contains_key(BOUND_BY_CONTROLLER_ANNOTATION) {
        annotations.insert(BOUND_BY_CONTROLLER_ANNOTATION.to_string(), "yes".to_string());
        dirty = true;
    }
    Ok(dirty.then_some(updated))
}

/// The claim annotated with the node to provision on, or `None` when it already is (or is
/// bound). A claim selected for another node is an error.
pub fn with_selected_node(
    claim: &PersistentVolumeClaim,
    node: &str,
) -> Result<Option<PersistentVolumeClaim>, VolumeBindingError> {
    if fully_bound(claim) {
        return Ok(None);
    }
    let selected = claim.annotations().get(SELECTED_NODE_ANNOTATION);
    match selected {
        Some(selected) if selected == node => Ok(None),
        Some(_) => Err(VolumeBindingError::ProvisioningFailed { claim: claim.name_any() }),
        None => {
            let mut updated = claim.clone();
            updated
                .annotations_mut()
                .insert(SELECTED_NODE_ANNOTATION.to_string(), node.to_string());
            Ok(Some(updated))
        }
    }
}

/// One claim being waited for, as the API shows it now.
pub struct Progress<'a> {
    pub claim: &'a PersistentVolumeClaim,
    /// The volume pre-bound to the claim, or the one the claim names (`None` if not found).
    pub volume: Option<&'a PersistentVolume>,
    /// Whether the scheduler pre-bound a volume (rather than asking for a provisioned one).
    pub prebound: bool,
}

/// Whether every claim is bound, `Ok(false)` to keep waiting, or why binding failed and the pod
/// must be scheduled again (`checkBindings`).
pub fn check_bindings(
    claims: &[Progress<'_>],
    node: &str,
    node_labels: &BTreeMap<String, String>,
) -> Result<bool, VolumeBindingError> {
    let mut all_bound = true;
    for Progress { claim, volume, prebound } in claims {
        if let Some(volume) = volume {
            if !node_affinity_allows(volume, node_labels) {
                return Err(VolumeBindingError::NodeAffinity {
                    volume: volume.name_any(),
                    node: node.to_string(),
                });
            }
        }
        if *prebound {
            let Some(volume) = volume else {
                return Err(VolumeBindingError::VolumeGone { claim: claim.name_any() });
            };
            // The controller drops the claimRef when it gives the volume up.
            let reference = volume.spec.as_ref().and_then(|spec| spec.claim_ref.as_ref());
            if reference.is_none_or(|r| r.uid.as_deref().unwrap_or_default().is_empty()) {
                return Err(VolumeBindingError::ClaimRefReset { volume: volume.name_any() });
            }
        } else if !fully_bound(claim)
            && claim.annotations().get(SELECTED_NODE_ANNOTATION).map(String::as_str) != Some(node)
        {
            // A provisioner that fails removes the annotation to ask for another node.
            return Err(VolumeBindingError::ProvisioningFailed { claim: claim.name_any() });
        }
        all_bound &= fully_bound(claim);
    }
    Ok(all_bound)
}

fn field_manager() -> PostParams {
    PostParams { field_manager: Some(SCHEDULER_NAME.into()), ..PostParams::default() }
}

/// Writes the bindings for `pod` placed on `node` and waits until its claims are bound.
pub async fn bind_volumes(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
    bindings: &VolumeBindings,
) -> Result<(), VolumeBindingError> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for (volume, claim) in &bindings.prebind {
        let current = volumes.get(&volume.name_any()).await?;
        if let Some(updated) = prebound(&current, claim)? {
            volumes.replace(&updated.name_any(), &field_manager(), &updated).await?;
            tracing::debug!(pod = %pod.name_any(), volume = %volume.name_any(), claim = %claim.name_any(), "pre-bound volume");
        }
    }
    for claim in &bindings.provision {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
        let current = claims.get(&claim.name_any()).await?;
        if let Some(updated) = with_selected_node(&current, node)? {
            claims.replace(&updated.name_any(), &field_manager(), &updated).await?;
            tracing::debug!(pod = %pod.name_any(), claim = %claim.name_any(), node, "selected node for provisioning");
        }
    }
    let wait = async {
        loop {
            if bindings_done(client, pod, node, bindings).await? {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(BIND_TIMEOUT, wait).await.unwrap_or(Err(VolumeBindingError::Timeout))
}

/// Reads the pod, its claims and their volumes and judges them with [`check_bindings`].
async fn bindings_done(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
    bindings: &VolumeBindings,
) -> Result<bool, VolumeBindingError> {
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let current = pods.get_opt(&pod.name_any()).await?;
    if current.is_none_or(|current| current.uid() != pod.uid()) {
        return Err(VolumeBindingError::PodGone);
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let wanted = bindings
        .prebind
        .iter()
        .map(|(volume, claim)| (claim, Some(volume.name_any())))
        .chain(bindings.provision.iter().map(|claim| (claim, None)));
    let mut read = Vec::new();
    for (claim, prebound_volume) in wanted {
        let Some(claim_now) = claims.get_opt(&claim.name_any()).await? else {
            return Err(VolumeBindingError::ClaimGone { claim: claim.name_any() });
        };
        let prebound = prebound_volume.is_some();
        let volume_name = prebound_volume.or_else(|| {
            claim_now.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|n| !n.is_empty())
        });
        let volume_now = match &volume_name {
            Some(name) => volumes.get_opt(name).await?,
            None => None,
        };
        read.push((claim_now, volume_now, prebound));
    }
    let progress: Vec<Progress<'_>> = read
        .iter()
        .map(|(claim, volume, prebound)| Progress {
            claim,
            volume: volume.as_ref(),
            prebound: *prebound,
        })
        .collect();
    let labels = &bindings.node_labels;
    check_bindings(&progress, node, labels)
}

#[cfg(test)]
mod tests;
