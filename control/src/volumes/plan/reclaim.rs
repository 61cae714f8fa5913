//! Upstream's `syncVolume`: volume phases, releasing volumes whose claim is gone and applying
//! their reclaim policy, and undoing bindings the claim side no longer agrees with.

use k8s_openapi::api::core::v1::PersistentVolume;

use super::matching::volume_mode_mismatch;
use super::{
    annotation, claim_event, has_annotation, reason, volume_event, volume_phase, EventType, State,
    Write, BOUND_BY_CONTROLLER_ANNOTATION, MIGRATED_TO_ANNOTATION, PROVISIONED_BY_ANNOTATION,
};

impl State<'_> {
    pub(super) fn sync_volume(&mut self, name: &str) {
        let Some(volume) = self.volumes.get(name).cloned() else { return };
        let Some(reference) = volume.spec.as_ref().and_then(|spec| spec.claim_ref.clone()) else {
            return self.set_phase(&volume, "Available");
        };
        if reference.uid.as_deref().unwrap_or_default().is_empty() {
            // Pre-bound by the user; the claim's sync binds it.
            return self.set_phase(&volume, "Available");
        }
        let key = (
            reference.namespace.clone().unwrap_or_default(),
            reference.name.clone().unwrap_or_default(),
        );
        // A claim of the same name but another uid is a new claim: the bound one is gone.
        let claim = self.claims.get(&key).filter(|claim| claim.metadata.uid == reference.uid);
        let Some(claim) = claim.cloned() else { return self.release(&volume) };
        let claimed_volume = claim.spec.as_ref().and_then(|spec| spec.volume_name.as_deref());
        match claimed_volume.filter(|claimed| !claimed.is_empty()) {
            None => {
                // Binding in progress; the claim's sync finishes it unless the modes differ.
                if volume_mode_mismatch(&volume, &claim) {
                    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
                    let events = vec![
                        volume_event(
                            &volume,
                            EventType::Warning,
                            reason::VOLUME_MISMATCH,
                            format!(
                                "Cannot bind PersistentVolume to requested PersistentVolumeClaim \
                                 {claim_name:?} due to incompatible volumeMode."
                            ),
                        ),
                        claim_event(
                            &claim,
                            EventType::Warning,
                            reason::VOLUME_MISMATCH,
                            format!(
                                "Cannot bind PersistentVolume {name:?} to requested \
                                 PersistentVolumeClaim due to incompatible volumeMode."
                            ),
                        ),
                    ];
                    self.push(Vec::new(), events);
                }
            }
            Some(claimed) if claimed == name => self.set_phase(&volume, "Bound"),
            Some(_) => {
                let provisioned = has_annotation(&volume.metadata, PROVISIONED_BY_ANNOTATION);
                if provisioned && reclaim_policy(&volume) == "Delete" {
                    // Provisioned for a claim that got another volume: not needed.
                    self.release(&volume);
                } else {
                    self.unbind(&volume);
                }
            }
        }
    }

    fn set_phase(&mut self, volume: &PersistentVolume, phase: &str) {
        if let Some(changed) = self.with_phase(volume, phase, None) {
            self.record_volume(&changed);
            self.push(vec![Write::UpdateVolumeStatus(Box::new(changed))], Vec::new());
        }
    }

    fn record_volume(&mut self, volume: &PersistentVolume) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        self.written_volumes.insert(name.clone());
        self.volumes.insert(name, volume.clone());
    }

    /// Marks the volume `Released` (unless already `Released` or `Failed`) and applies its
    /// reclaim policy (upstream's `reclaimVolume`).
    fn release(&mut self, volume: &PersistentVolume) {
        let mut current = volume.clone();
        let mut writes = Vec::new();
        let mut events = Vec::new();
        if !matches!(volume_phase(volume), "Released" | "Failed") {
            if let Some(released) = self.with_phase(volume, "Released", None) {
                current = released;
                writes.push(Write::UpdateVolumeStatus(Box::new(current.clone())));
            }
        }
        let migrated = annotation(&current.metadata, MIGRATED_TO_ANNOTATION)
            .is_some_and(|driver| !driver.is_empty());
        let failure = match reclaim_policy(&current) {
            _ if migrated => None,
            "Retain" => None,
            "Delete" => {
                if current.metadata.deletion_timestamp.is_none() && !deleted_externally(&current) {
                    writes.push(Write::DeleteVolume {
                        name: current.metadata.name.clone().unwrap_or_default(),
                        uid: current.metadata.uid.clone(),
                    });
                }
                None
            }
            "Recycle" => {
                Some((reason::VOLUME_FAILED_RECYCLE, "No recycler plugin found for the volume!"))
            }
            _ => Some((
                reason::VOLUME_UNKNOWN_RECLAIM_POLICY,
                "Volume has unrecognized PersistentVolumeReclaimPolicy",
            )),
        };
        if let Some((why, message)) = failure {
            // Upstream writes Released, then Failed with the event; one status write carries both.
            if let Some(failed) = self.with_phase(&current, "Failed", Some(message.to_owned())) {
                writes.retain(|write| !matches!(write, Write::UpdateVolumeStatus(_)));
                events.push(volume_event(&failed, EventType::Warning, why, message.to_owned()));
                current = failed;
                writes.push(Write::UpdateVolumeStatus(Box::new(current.clone())));
            }
        }
        self.record_volume(&current);
        self.push(writes, events);
    }

    /// Rolls back a binding the claim does not share (upstream's `unbindVolume`): a binding the
    /// controller made is removed, a user's pre-binding only loses the claim's uid; the volume
    /// becomes `Available` again.
    fn unbind(&mut self, volume: &PersistentVolume) {
        let mut unbound = volume.clone();
        if has_annotation(&volume.metadata, BOUND_BY_CONTROLLER_ANNOTATION) {
            if let Some(spec) = unbound.spec.as_mut() {
                spec.claim_ref = None;
            }
            if let Some(annotations) = unbound.metadata.annotations.as_mut() {
                annotations.remove(BOUND_BY_CONTROLLER_ANNOTATION);
                if annotations.is_empty() {
                    unbound.metadata.annotations = None;
                }
            }
        } else if let Some(reference) =
            unbound.spec.as_mut().and_then(|spec| spec.claim_ref.as_mut())
        {
            reference.uid = None;
        }
        let mut writes = vec![Write::UpdateVolume(Box::new(unbound.clone()))];
        if let Some(available) = self.with_phase(&unbound, "Available", None) {
            unbound = available;
            writes.push(Write::UpdateVolumeStatus(Box::new(unbound.clone())));
        }
        self.record_volume(&unbound);
        self.push(writes, Vec::new());
    }
}

/// Returns the reclaim policy, `Retain` when unset (the API's default for static volumes).
fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|spec| spec.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Returns whether something other than this controller deletes the volume: a CSI driver, or the
/// external provisioner that created it (upstream's `findDeletablePlugin` returning none).
fn deleted_externally(volume: &PersistentVolume) -> bool {
    let external_provisioner =
        annotation(&volume.metadata, PROVISIONED_BY_ANNOTATION).is_some_and(|provisioner| {
            !provisioner.is_empty() && !provisioner.starts_with("kubernetes.io/")
        });
    external_provisioner || volume.spec.as_ref().is_some_and(|spec| spec.csi.is_some())
}
