//! Upstream's `syncClaim`: binding pending claims, keeping bound ones bound, marking lost ones.

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
};

use crate::quantity::parse_milli;

use super::matching::{
    best_match, bound_to_claim, capacity, claim_class, claim_has_class, default_class,
    unsatisfied_because, Binding,
};
use super::{
    annotation, claim_event, claim_phase, claim_reference, has_annotation, reason, set_annotation,
    volume_phase, ClaimKey, EventType, State, Write, BETA_STORAGE_PROVISIONER_ANNOTATION,
    BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION, SELECTED_NODE_ANNOTATION,
    STORAGE_PROVISIONER_ANNOTATION,
};

impl State<'_> {
    pub(super) fn sync_claim(&mut self, key: &ClaimKey) {
        let Some(claim) = self.claims.get(key).cloned() else { return };
        if has_annotation(&claim.metadata, BIND_COMPLETED_ANNOTATION) {
            self.sync_bound_claim(&claim);
        } else {
            self.sync_unbound_claim(&claim);
        }
    }

    fn sync_unbound_claim(&mut self, claim: &PersistentVolumeClaim) {
        match requested_volume(claim) {
            None => self.find_volume_for(claim),
            Some(name) => {
                let Some(volume) = self.volumes.get(name).cloned() else {
                    // The volume may appear later; the claim waits.
                    let writes = self.pending(claim).into_iter().collect();
                    return self.push(writes, Vec::new());
                };
                let claimed = volume.spec.as_ref().and_then(|spec| spec.claim_ref.as_ref());
                if claimed.is_none() {
                    match unsatisfied_because(&volume, claim) {
                        Some(why) => {
                            let message =
                                format!("Cannot bind to requested volume {name:?}: {why}");
                            let event = claim_event(
                                claim,
                                EventType::Warning,
                                reason::VOLUME_MISMATCH,
                                message,
                            );
                            let writes = self.pending(claim).into_iter().collect();
                            self.push(writes, vec![event]);
                        }
                        None => self.bind(&volume, claim),
                    }
                } else if bound_to_claim(&volume, claim) {
                    self.bind(&volume, claim);
                } else {
                    let message = format!("volume {name:?} already bound to a different claim.");
                    let event =
                        claim_event(claim, EventType::Warning, reason::FAILED_BINDING, message);
                    // A claim the controller bound would have to lose its annotation to get here;
                    // upstream then only reports an error.
                    let writes = if has_annotation(&claim.metadata, BOUND_BY_CONTROLLER_ANNOTATION)
                    {
                        Vec::new()
                    } else {
                        self.pending(claim).into_iter().collect()
                    };
                    self.push(writes, vec![event]);
                }
            }
        }
    }

    /// Binds a claim that names no volume to the best one, or explains why it waits.
    fn find_volume_for(&mut self, claim: &PersistentVolumeClaim) {
        let class_name = claim_class(claim);
        let delayed = !class_name.is_empty()
            && self.classes.get(class_name).is_some_and(|class| {
                class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
            });
        let selected_node = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(SELECTED_NODE_ANNOTATION));
        let no_labels = Default::default();
        let binding = match (delayed, selected_node) {
            (false, _) => Binding::Immediate,
            (true, None) => Binding::Delayed,
            (true, Some(node)) => Binding::OnNode(
                self.nodes
                    .get(node.as_str())
                    .and_then(|node| node.metadata.labels.as_ref())
                    .unwrap_or(&no_labels),
            ),
        };
        if let Some(name) = best_match(&self.volumes, claim, &binding) {
            if let Some(volume) = self.volumes.get(&name).cloned() {
                self.bind(&volume, claim);
            }
            return;
        }

        if !claim_has_class(claim) {
            if let Some(class) = default_class(&self.classes) {
                // Retroactive default class: the next plan matches against that class.
                let mut updated = claim.clone();
                updated.spec.get_or_insert_with(Default::default).storage_class_name =
                    class.metadata.name.clone();
                self.claims.insert(super::claim_key(claim), updated.clone());
                return self.push(vec![Write::UpdateClaim(Box::new(updated))], Vec::new());
            }
        }
        if delayed && selected_node.is_none() {
            let event = claim_event(
                claim,
                EventType::Normal,
                reason::WAIT_FOR_FIRST_CONSUMER,
                "waiting for first consumer to be created before binding".to_owned(),
            );
            let writes = self.pending(claim).into_iter().collect();
            self.push(writes, vec![event]);
        } else if !class_name.is_empty() {
            self.hand_off_to_provisioner(claim, class_name);
        } else {
            let event = claim_event(
                claim,
                EventType::Normal,
                reason::FAILED_BINDING,
                "no persistent volumes available for this claim and no storage class is set"
                    .to_owned(),
            );
            let writes = self.pending(claim).into_iter().collect();
            self.push(writes, vec![event]);
        }
    }

    /// Upstream's `provisionClaim` for a class no volume matches: an in-tree provisioner does
    /// not exist here, an external one is told (by annotation) to create the volume.
    fn hand_off_to_provisioner(&mut self, claim: &PersistentVolumeClaim, class_name: &str) {
        let Some(class) = self.classes.get(class_name).copied() else {
            let message = format!("storageclass.storage.k8s.io {class_name:?} not found");
            let event =
                claim_event(claim, EventType::Warning, reason::PROVISIONING_FAILED, message);
            return self.push(Vec::new(), vec![event]);
        };
        let provisioner = class.provisioner.as_str();
        if provisioner.starts_with("kubernetes.io/") {
            let message = format!("no volume plugin matched name: {provisioner}");
            let event =
                claim_event(claim, EventType::Warning, reason::PROVISIONING_FAILED, message);
            return self.push(Vec::new(), vec![event]);
        }
        let mut writes = Vec::new();
        if annotation(&claim.metadata, BETA_STORAGE_PROVISIONER_ANNOTATION) != Some(provisioner) {
            let mut updated = claim.clone();
            set_annotation(&mut updated.metadata, BETA_STORAGE_PROVISIONER_ANNOTATION, provisioner);
            set_annotation(&mut updated.metadata, STORAGE_PROVISIONER_ANNOTATION, provisioner);
            self.claims.insert(super::claim_key(claim), updated.clone());
            writes.push(Write::UpdateClaim(Box::new(updated)));
        }
        let message = format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
             or manually by the system administrator. If volume creation is delayed, please \
             verify that the provisioner is running and correctly registered."
        );
        let event = claim_event(claim, EventType::Normal, reason::EXTERNAL_PROVISIONING, message);
        self.push(writes, vec![event]);
    }

    fn sync_bound_claim(&mut self, claim: &PersistentVolumeClaim) {
        let Some(name) = requested_volume(claim) else {
            return self.lose(
                claim,
                reason::CLAIM_LOST,
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            );
        };
        let Some(volume) = self.volumes.get(name).cloned() else {
            return self.lose(
                claim,
                reason::CLAIM_LOST,
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            );
        };
        match volume.spec.as_ref().and_then(|spec| spec.claim_ref.as_ref()) {
            // Unbound volume (or our own write not seen yet): bind it again.
            None => self.bind(&volume, claim),
            Some(reference) if reference.uid == claim.metadata.uid => self.bind(&volume, claim),
            Some(_) => self.lose(
                claim,
                reason::CLAIM_MISBOUND,
                "Two claims are bound to the same volume, this one is bound incorrectly",
            ),
        }
    }

    /// Moves the claim to `Lost` with a warning, once (upstream's `updateClaimStatusWithEvent`).
    fn lose(&mut self, claim: &PersistentVolumeClaim, why: &'static str, message: &str) {
        if claim_phase(claim) == "Lost" {
            return;
        }
        let mut updated = claim.clone();
        let status = updated.status.get_or_insert_with(PersistentVolumeClaimStatus::default);
        status.phase = Some("Lost".to_owned());
        status.access_modes = None;
        status.capacity = None;
        self.claims.insert(super::claim_key(claim), updated.clone());
        let event = claim_event(claim, EventType::Warning, why, message.to_owned());
        self.push(vec![Write::UpdateClaimStatus(Box::new(updated))], vec![event]);
    }

    /// Returns the status write moving the claim to `Pending` without capacity or access modes,
    /// if it is not there yet (upstream's `updateClaimStatus(claim, Pending, nil)`).
    fn pending(&mut self, claim: &PersistentVolumeClaim) -> Option<Write> {
        let status = claim.status.clone().unwrap_or_default();
        let dirty = status.phase.as_deref() != Some("Pending")
            || status.access_modes.as_ref().is_some_and(|modes| !modes.is_empty())
            || status.capacity.as_ref().is_some_and(|capacity| !capacity.is_empty());
        if !dirty {
            return None;
        }
        let mut updated = claim.clone();
        updated.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".to_owned()),
            access_modes: None,
            capacity: None,
            ..status
        });
        self.claims.insert(super::claim_key(claim), updated.clone());
        Some(Write::UpdateClaimStatus(Box::new(updated)))
    }

    /// Upstream's `bind`: writes whatever of the four steps is not done yet, in order.
    pub(super) fn bind(&mut self, volume: &PersistentVolume, claim: &PersistentVolumeClaim) {
        let volume_name = volume.metadata.name.clone().unwrap_or_default();
        let mut writes = Vec::new();

        // 1. The volume points at the claim, uid included.
        let mut bound_volume = volume.clone();
        let spec = bound_volume.spec.get_or_insert_with(Default::default);
        let points_here = spec.claim_ref.as_ref().is_some_and(|reference| {
            reference.name == claim.metadata.name
                && reference.namespace == claim.metadata.namespace
                && reference.uid == claim.metadata.uid
        });
        let mut dirty = false;
        if !points_here {
            spec.claim_ref = Some(claim_reference(claim));
            dirty = true;
        }
        if !bound_to_claim(volume, claim)
            && !has_annotation(&bound_volume.metadata, BOUND_BY_CONTROLLER_ANNOTATION)
        {
            set_annotation(&mut bound_volume.metadata, BOUND_BY_CONTROLLER_ANNOTATION, "yes");
            dirty = true;
        }
        if dirty {
            writes.push(Write::UpdateVolume(Box::new(bound_volume.clone())));
        }

        // 2. The volume is Bound.
        if let Some(phased) = self.with_phase(&bound_volume, "Bound", None) {
            bound_volume = phased;
            writes.push(Write::UpdateVolumeStatus(Box::new(bound_volume.clone())));
        }

        // 3. The claim points at the volume and says binding completed.
        let mut bound_claim = claim.clone();
        let mut dirty = false;
        if requested_volume(claim) != Some(volume_name.as_str()) {
            bound_claim.spec.get_or_insert_with(Default::default).volume_name =
                Some(volume_name.clone());
            if !has_annotation(&bound_claim.metadata, BOUND_BY_CONTROLLER_ANNOTATION) {
                set_annotation(&mut bound_claim.metadata, BOUND_BY_CONTROLLER_ANNOTATION, "yes");
            }
            dirty = true;
        }
        if !has_annotation(&bound_claim.metadata, BIND_COMPLETED_ANNOTATION) {
            set_annotation(&mut bound_claim.metadata, BIND_COMPLETED_ANNOTATION, "yes");
            dirty = true;
        }
        if dirty {
            writes.push(Write::UpdateClaim(Box::new(bound_claim.clone())));
        }

        // 4. The claim is Bound, with the volume's access modes and (when becoming Bound) its
        //    capacity; a capacity differing later may be a resize and is left alone.
        let mut status = bound_claim.status.clone().unwrap_or_default();
        let becoming_bound = status.phase.as_deref() != Some("Bound");
        let mut dirty = becoming_bound;
        status.phase = Some("Bound".to_owned());
        let volume_modes = bound_volume.spec.as_ref().and_then(|spec| spec.access_modes.clone());
        if status.access_modes.clone().unwrap_or_default()
            != volume_modes.clone().unwrap_or_default()
        {
            status.access_modes = volume_modes;
            dirty = true;
        }
        if becoming_bound {
            let claim_capacity = status
                .capacity
                .as_ref()
                .and_then(|capacity| capacity.get("storage"))
                .and_then(|quantity| parse_milli(&quantity.0));
            if claim_capacity != Some(capacity(&bound_volume)) {
                status.capacity = bound_volume.spec.as_ref().and_then(|spec| spec.capacity.clone());
            }
        }
        if dirty {
            bound_claim.status = Some(status);
            writes.push(Write::UpdateClaimStatus(Box::new(bound_claim.clone())));
        }

        debug_assert_eq!(volume_phase(&bound_volume), "Bound");
        self.written_volumes.insert(volume_name.clone());
        self.volumes.insert(volume_name, bound_volume);
        self.claims.insert(super::claim_key(claim), bound_claim);
        self.push(writes, Vec::new());
    }
}

/// Returns the claim's `spec.volumeName` when set.
fn requested_volume(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|name| !name.is_empty())
}
