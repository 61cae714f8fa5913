//! The pod-management pass of one plan (Kubernetes' `updateStatefulSet`): replicas in ordinal
//! order, then condemned pods from the highest ordinal down, then the rolling update.
//!
//! In `OrderedReady` mode each phase stops at the first step it takes or the first pod it must
//! wait for, and a stopped phase ends the pass. In `Parallel` mode every replica and condemned
//! pod is handled; only a failed write (a claim being deleted) ends the pass after the replicas.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec, PodTemplateSpec};

use super::claims::{self, PodIdentity};
use super::pods::{self, name_of};
use super::revisions::{template_of, Revisions};
use super::{ClaimPatch, Plan, PlanError, PodPatch, PodRef, SetView};

/// One ordinal in the set's range: the pod there, or none yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replica<'p> {
    pub(super) ordinal: i32,
    pub(super) slot: Slot<'p>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Slot<'p> {
    Existing(&'p Pod),
    Missing,
}

/// A revision's name and the template it records.
struct Version {
    name: String,
    template: PodTemplateSpec,
    spec: PodSpec,
}

impl Version {
    fn of(revision: &ControllerRevision) -> Result<Self, PlanError> {
        let name = revision.metadata.name.clone().unwrap_or_default();
        let template = template_of(revision)?;
        let spec = template.spec.clone().ok_or_else(|| PlanError::InvalidRevision {
            name: name.clone(),
            reason: "template has no spec".to_owned(),
        })?;
        Ok(Self { name, template, spec })
    }
}

/// The working state of the pod-management pass.
pub(super) struct Pass<'a> {
    set: &'a SetView<'a>,
    now: Timestamp,
    monotonic: bool,
    min_ready: SignedDuration,
    current: Version,
    update: Version,
    /// The namespace's claims by name, as this pass leaves them.
    claims: BTreeMap<String, PersistentVolumeClaim>,
    create_claims: Vec<PersistentVolumeClaim>,
    patch_claims: Vec<ClaimPatch>,
    patch_pods: Vec<PodPatch>,
    create_pods: Vec<Pod>,
    delete_pods: Vec<PodRef>,
    deleting: BTreeSet<String>,
    /// A claim blocks a step; Kubernetes would fail or wait here.
    blocked_on_claim: bool,
    /// A write Kubernetes would have made failed (a claim being deleted): later phases are off.
    failed: bool,
    /// Pods at the current revision deleted for the update (Kubernetes decrements
    /// `currentReplicas` for each).
    current_adjust: i32,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        set: &'a SetView<'a>,
        revisions: &Revisions,
        claims: &[PersistentVolumeClaim],
        now: Timestamp,
    ) -> Result<Self, PlanError> {
        let claims = claims
            .iter()
            .filter(|claim| claim.metadata.namespace.as_deref() == set.namespace)
            .filter_map(|claim| Some((claim.metadata.name.clone()?, claim.clone())))
            .collect();
        let min_ready = i64::from(set.spec.min_ready_seconds.unwrap_or(0).max(0));
        Ok(Self {
            set,
            now,
            monotonic: set.spec.pod_management_policy.as_deref() != Some("Parallel"),
            min_ready: SignedDuration::from_secs(min_ready),
            current: Version::of(&revisions.current)?,
            update: Version::of(&revisions.update)?,
            claims,
            create_claims: Vec::new(),
            patch_claims: Vec::new(),
            patch_pods: Vec::new(),
            create_pods: Vec::new(),
            delete_pods: Vec::new(),
            deleting: BTreeSet::new(),
            blocked_on_claim: false,
            failed: false,
            current_adjust: 0,
        })
    }

    pub(super) fn min_ready(&self) -> SignedDuration {
        self.min_ready
    }

    pub(super) fn current_adjust(&self) -> i32 {
        self.current_adjust
    }

    pub(super) fn retry(&self) -> bool {
        self.blocked_on_claim
    }

    /// Moves the writes this pass decided into `plan`.
    pub(super) fn finish(self, plan: &mut Plan) {
        plan.create_claims = self.create_claims;
        plan.patch_claims = self.patch_claims;
        plan.patch_pods = self.patch_pods;
        plan.create_pods = self.create_pods;
        plan.delete_pods = self.delete_pods;
    }

    /// Runs the pass over the replicas (lowest ordinal first) and condemned pods (highest
    /// first).
    pub(super) fn run(&mut self, replicas: &[Replica<'_>], condemned: &[(i32, &Pod)]) {
        if self.process_replicas(replicas) {
            return;
        }
        for (ordinal, pod) in condemned {
            let identity = PodIdentity { name: name_of(pod), uid: uid_of(pod), in_range: false };
            self.fix_claims(*ordinal, identity);
        }
        let first_unhealthy = replicas
            .iter()
            .find_map(|replica| match replica.slot {
                Slot::Existing(pod) if pods::is_healthy(pod) => None,
                Slot::Existing(pod) => Some(name_of(pod).to_owned()),
                Slot::Missing => Some(pods::pod_name(self.set.name, replica.ordinal)),
            })
            .or_else(|| {
                condemned
                    .iter()
                    .rev()
                    .find(|(_, pod)| !pods::is_healthy(pod))
                    .map(|(_, pod)| name_of(pod).to_owned())
            });
        if self.process_condemned(condemned, first_unhealthy.as_deref()) {
            return;
        }
        if self.set.is_on_delete() {
            return;
        }
        self.roll(replicas);
    }

    /// Handles each replica; returns whether the pass stops here.
    fn process_replicas(&mut self, replicas: &[Replica<'_>]) -> bool {
        for replica in replicas {
            let stop = match replica.slot {
                Slot::Existing(pod) => self.process_existing(pod, replica.ordinal),
                Slot::Missing => self.process_missing(replica.ordinal),
            };
            if stop && self.monotonic {
                return true;
            }
        }
        self.failed
    }

    /// Kubernetes' `processReplica` for a pod that exists; returns whether it blocks.
    fn process_existing(&mut self, pod: &Pod, ordinal: i32) -> bool {
        let identity = PodIdentity { name: name_of(pod), uid: uid_of(pod), in_range: true };
        if pods::has_finished(pod) {
            // Recreated under the same name once the deletion has gone through.
            if !pods::is_terminating(pod) {
                self.delete(pod);
            }
            return true;
        }
        if pods::is_pending(pod) {
            if !self.create_missing_claims(ordinal) {
                return true;
            }
            self.fix_claims(ordinal, identity);
        }
        if self.monotonic
            && (pods::is_terminating(pod)
                || !pods::is_running_and_ready(pod)
                || !pods::is_available(pod, self.min_ready, self.now))
        {
            return true;
        }
        if !pods::identity_matches(pod) {
            self.patch_pods.push(PodPatch {
                name: name_of(pod).to_owned(),
                resource_version: pod.metadata.resource_version.clone(),
                labels: pods::identity_labels(self.set, ordinal),
            });
        }
        // A pod's volumes cannot change once it exists, so only the missing claims are made;
        // Kubernetes' attempt to rewrite the volumes is rejected by the API server.
        if !pods::storage_matches(self.set, pod, ordinal) && !self.create_missing_claims(ordinal) {
            return true;
        }
        self.fix_claims(ordinal, identity);
        false
    }

    /// Kubernetes' `processReplica` for an ordinal with no pod; returns whether it blocks.
    fn process_missing(&mut self, ordinal: i32) -> bool {
        let name = pods::pod_name(self.set.name, ordinal);
        let identity = PodIdentity { name: &name, uid: "", in_range: true };
        let stale = self.set.claim_templates.iter().any(|(template, _)| {
            let claim = self.claims.get(&self.set.claim_name(template, ordinal));
            claim.is_some_and(|claim| claims::is_stale_for_new_pod(self.set, claim, identity))
        });
        if stale {
            self.blocked_on_claim = true;
            return true;
        }
        if !self.create_missing_claims(ordinal) {
            return true;
        }
        let version =
            if self.starts_at_current_revision(ordinal) { &self.current } else { &self.update };
        let pod = pods::new_pod(self.set, &version.template, &version.spec, ordinal, &version.name);
        self.create_pods.push(pod);
        self.fix_claims(ordinal, identity);
        self.monotonic
    }

    /// Whether a new pod gets the current revision rather than the update revision
    /// (Kubernetes' `newVersionedStatefulSetPod`, operator precedence included).
    fn starts_at_current_revision(&self, ordinal: i32) -> bool {
        let ordinal = i64::from(ordinal);
        let start = i64::from(self.set.start_ordinal());
        match self.set.partition() {
            Some(partition) => ordinal < start + i64::from(partition),
            None => {
                let current = self.set.status.and_then(|s| s.current_replicas).unwrap_or(0);
                self.set.is_rolling_update() && ordinal < start + i64::from(current)
            }
        }
    }

    /// Kubernetes' `processCondemned` over the condemned pods, highest ordinal first; returns
    /// whether the pass stops here.
    fn process_condemned(
        &mut self,
        condemned: &[(i32, &Pod)],
        first_unhealthy: Option<&str>,
    ) -> bool {
        for (_, pod) in condemned {
            if pods::is_terminating(pod) {
                if self.monotonic {
                    return true;
                }
                continue;
            }
            // Only the first unhealthy pod may go while unhealthy; any other waits for it.
            let is_first_unhealthy = first_unhealthy == Some(name_of(pod));
            if self.monotonic
                && !is_first_unhealthy
                && (!pods::is_running_and_ready(pod)
                    || !pods::is_available(pod, self.min_ready, self.now))
            {
                return true;
            }
            self.delete(pod);
            if self.monotonic {
                return true;
            }
        }
        false
    }

    /// The rolling update: deletes the highest-ordinal pod at or above the partition that is not
    /// at the update revision, unless a higher one is still unhealthy.
    fn roll(&mut self, replicas: &[Replica<'_>]) {
        let update_min = usize::try_from(self.set.partition().unwrap_or(0)).unwrap_or(0);
        for replica in replicas.iter().skip(update_min).rev() {
            // A pod this plan creates is not healthy yet. (Kubernetes would delete one made at
            // the current revision in Parallel mode when `rollingUpdate` is unset; waiting for it
            // instead avoids creating and deleting the same pod in one plan.)
            let Slot::Existing(pod) = replica.slot else { return };
            if pods::revision_of(pod) != self.update.name && !pods::is_terminating(pod) {
                if !self.deleting.contains(name_of(pod)) {
                    self.delete(pod);
                }
                self.current_adjust -= 1;
                return;
            }
            if !pods::is_healthy(pod) || self.deleting.contains(name_of(pod)) {
                return;
            }
        }
    }

    fn delete(&mut self, pod: &Pod) {
        let name = name_of(pod).to_owned();
        if self.deleting.insert(name.clone()) {
            self.delete_pods.push(PodRef { name, uid: pod.metadata.uid.clone() });
        }
    }

    /// Creates the claims of `ordinal` that do not exist; returns false when one is being
    /// deleted, which fails the pod's step until it is gone (Kubernetes: "pvc ... is being
    /// deleted").
    fn create_missing_claims(&mut self, ordinal: i32) -> bool {
        let mut ready = true;
        for (template_name, template) in &self.set.claim_templates {
            let name = self.set.claim_name(template_name, ordinal);
            match self.claims.get(&name) {
                Some(claim) if claim.metadata.deletion_timestamp.is_some() => ready = false,
                Some(_) => {}
                None => {
                    let claim = claims::new_claim(self.set, template_name, template, ordinal);
                    self.claims.insert(name, claim.clone());
                    self.create_claims.push(claim);
                }
            }
        }
        if !ready {
            self.failed = true;
            self.blocked_on_claim = true;
        }
        ready
    }

    /// Brings the ownerReferences of the pod's claims in line with the retention policy
    /// (Kubernetes' `UpdatePodClaimForRetentionPolicy`).
    fn fix_claims(&mut self, ordinal: i32, pod: PodIdentity<'_>) {
        for (template_name, _) in &self.set.claim_templates {
            let name = self.set.claim_name(template_name, ordinal);
            let Some(claim) = self.claims.get_mut(&name) else { continue };
            let Some(references) = claims::owner_update(self.set, claim, pod) else { continue };
            claim.metadata.owner_references = Some(references.clone());
            if let Some(created) =
                self.create_claims.iter_mut().find(|c| c.metadata.name.as_deref() == Some(&name))
            {
                created.metadata.owner_references = Some(references);
            } else if let Some(patch) = self.patch_claims.iter_mut().find(|p| p.name == name) {
                patch.owner_references = references;
            } else {
                self.patch_claims.push(ClaimPatch {
                    name,
                    resource_version: claim.metadata.resource_version.clone(),
                    owner_references: references,
                });
            }
        }
    }
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}
