//! Decides what the PersistentVolume controller writes, as Kubernetes 1.33's
//! `pkg/controller/volume/persistentvolume` does for statically created volumes, without IO.
//!
//! [`plan`] takes every PersistentVolume, every PersistentVolumeClaim, the StorageClasses and the
//! nodes, and returns a [`Plan`]: independent [`Operation`]s, each an ordered list of writes
//! followed by the events to record once they succeed. It runs upstream's `syncClaim` for every
//! claim (oldest first), then `syncVolume` for every volume that no claim sync wrote, over working
//! copies, so later decisions see earlier ones as upstream's cache does (two claims never get the
//! same volume).
//!
//! Binding, as upstream:
//! - A pending claim gets the smallest `Available` volume of its storage class (`""` matches
//!   only volumes without a class) whose capacity covers the request, with the claim's
//!   volumeMode, matching its selector, and offering all its access modes; volumes offering the
//!   fewest access modes are tried first. A volume pre-bound to the claim (`spec.claimRef` naming
//!   it) wins regardless of class, phase and selector; a claim naming a volume
//!   (`spec.volumeName`) gets that one if it satisfies the claim.
//! - A bind writes, in this order, the volume's `spec.claimRef` (with the claim's uid and
//!   resourceVersion) and `pv.kubernetes.io/bound-by-controller: "yes"` unless pre-bound, the
//!   volume's status `Bound`, the claim's `spec.volumeName`, `pv.kubernetes.io/bind-completed`
//!   and `pv.kubernetes.io/bound-by-controller`, and the claim's status `Bound` with the volume's
//!   capacity and access modes. Each step is skipped when already done.
//! - A claim without any class (no `storageClassName`, not `""`) that finds no volume gets the
//!   default StorageClass (`storageclass.kubernetes.io/is-default-class: "true"`, newest first)
//!   written into its spec, as upstream's retroactive default class assignment.
//! - For a `WaitForFirstConsumer` class the claim is bound only to a volume pre-bound to it (the
//!   scheduler pre-binds the volume it chose for the pod's node, as upstream's does) or, once it
//!   carries `volume.kubernetes.io/selected-node`, to a volume whose node affinity admits that
//!   node. (Upstream leaves the latter to provisioners; here the controller also makes the
//!   scheduler's choice, `FindMatchingVolume` with the node, for static volumes.)
//!
//! Reclaiming: a bound volume whose claim is gone becomes `Released`; `Retain` keeps it so,
//! `Delete` deletes the PersistentVolume object (Flotilla's node agent owns removing the data of
//! hostPath and local volumes; that is out of scope here), except volumes an external deleter
//! owns (CSI volumes, volumes provisioned by a non-`kubernetes.io/` provisioner). `Recycle` is
//! not supported and marks the volume `Failed`, as upstream does without a recycler plugin.
//! A claim whose volume vanished, or went to another claim, becomes `Lost`.
//!
//! Left out: dynamic provisioning (a claim of a class with an external provisioner is only
//! annotated for it, `volume.kubernetes.io/storage-provisioner`, as upstream hands off), CSI
//! migration annotations, pre-resize capacity, and the `WaitForPodScheduled` event (it needs the
//! pods using the claim; `WaitForFirstConsumer` is reported instead).
//!
//! The caller must pass complete, current lists: a claim missing from `claims` reads as deleted
//! and releases its volume.

use std::collections::{BTreeMap, BTreeSet};

pub use crate::events::EventType;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

mod claims;
pub(crate) mod matching;
mod reclaim;
#[cfg(test)]
mod tests;

/// Claim annotation: the claim went through binding once.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Volume and claim annotation: the controller (not the user) made the binding.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Claim annotation: the node the scheduler chose for a `WaitForFirstConsumer` claim.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// StorageClass annotation marking the default class.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// Claim annotation naming the provisioner expected to create its volume.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// Deprecated twin of [`STORAGE_PROVISIONER_ANNOTATION`], still written by upstream.
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Volume annotation naming the provisioner that created it.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Volume annotation: the volume is handled by the CSI driver it names.
const MIGRATED_TO_ANNOTATION: &str = "pv.kubernetes.io/migrated-to";

/// Event reasons, as Kubernetes spells them.
pub mod reason {
    pub const FAILED_BINDING: &str = "FailedBinding";
    pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
    pub const VOLUME_MISMATCH: &str = "VolumeMismatch";
    pub const CLAIM_LOST: &str = "ClaimLost";
    pub const CLAIM_MISBOUND: &str = "ClaimMisbound";
    pub const PROVISIONING_FAILED: &str = "ProvisioningFailed";
    pub const EXTERNAL_PROVISIONING: &str = "ExternalProvisioning";
    pub const VOLUME_FAILED_RECYCLE: &str = "VolumeFailedRecycle";
    pub const VOLUME_UNKNOWN_RECLAIM_POLICY: &str = "VolumeUnknownReclaimPolicy";
}

/// What the controller should do: operations to run independently of one another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub operations: Vec<Operation>,
}

/// Writes to make in order, stopping at the first failure (the next plan picks up from what was
/// written), then events to record once every write succeeded.
///
/// Each write holds the object as planned, with the resourceVersion it had when planned. When an
/// operation writes the same object twice (spec, then status), the second write must carry the
/// resourceVersion the first one returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operation {
    pub writes: Vec<Write>,
    pub events: Vec<Event>,
}

/// One API write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Replace the volume (metadata and spec), conditionally on its resourceVersion.
    UpdateVolume(Box<PersistentVolume>),
    /// Replace the volume's status subresource, conditionally on its resourceVersion.
    UpdateVolumeStatus(Box<PersistentVolume>),
    /// Replace the claim (metadata and spec), conditionally on its resourceVersion.
    UpdateClaim(Box<PersistentVolumeClaim>),
    /// Replace the claim's status subresource, conditionally on its resourceVersion.
    UpdateClaimStatus(Box<PersistentVolumeClaim>),
    /// Delete the volume, with its uid as precondition; a volume already gone counts as deleted.
    DeleteVolume { name: String, uid: Option<String> },
}

/// An event to record on a volume or a claim (source `persistentvolume-controller`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub involved: ObjectReference,
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// Returns what the controller should do, given every volume, claim, StorageClass and node.
pub fn plan(
    volumes: &[PersistentVolume],
    claims: &[PersistentVolumeClaim],
    classes: &[StorageClass],
    nodes: &[Node],
    now: Timestamp,
) -> Plan {
    let mut state = State {
        volumes: volumes
            .iter()
            .filter_map(|volume| Some((volume.metadata.name.clone()?, volume.clone())))
            .collect(),
        claims: claims.iter().map(|claim| (claim_key(claim), claim.clone())).collect(),
        classes: classes
            .iter()
            .filter_map(|class| Some((class.metadata.name.as_deref()?, class)))
            .collect(),
        nodes: nodes
            .iter()
            .filter_map(|node| Some((node.metadata.name.as_deref()?, node)))
            .collect(),
        written_volumes: BTreeSet::new(),
        now,
        operations: Vec::new(),
    };

    let mut claim_order: Vec<&PersistentVolumeClaim> = claims.iter().collect();
    claim_order.sort_by(|a, b| {
        let created = |claim: &PersistentVolumeClaim| claim.metadata.creation_timestamp.clone();
        created(a).cmp(&created(b)).then_with(|| claim_key(a).cmp(&claim_key(b)))
    });
    for claim in claim_order {
        state.sync_claim(&claim_key(claim));
    }
    let names: Vec<String> = state.volumes.keys().cloned().collect();
    for name in names {
        if !state.written_volumes.contains(&name) {
            state.sync_volume(&name);
        }
    }
    Plan { operations: state.operations }
}

/// Identifies a claim by namespace and name.
type ClaimKey = (String, String);

fn claim_key(claim: &PersistentVolumeClaim) -> ClaimKey {
    (
        claim.metadata.namespace.clone().unwrap_or_default(),
        claim.metadata.name.clone().unwrap_or_default(),
    )
}

/// Working copies of the world as this plan changes it.
struct State<'a> {
    volumes: BTreeMap<String, PersistentVolume>,
    claims: BTreeMap<ClaimKey, PersistentVolumeClaim>,
    classes: BTreeMap<&'a str, &'a StorageClass>,
    nodes: BTreeMap<&'a str, &'a Node>,
    /// Volumes an operation of this plan writes; the volume pass leaves them alone.
    written_volumes: BTreeSet<String>,
    now: Timestamp,
    operations: Vec<Operation>,
}

impl State<'_> {
    /// Adds an operation unless it does nothing.
    fn push(&mut self, writes: Vec<Write>, events: Vec<Event>) {
        if !writes.is_empty() || !events.is_empty() {
            self.operations.push(Operation { writes, events });
        }
    }

    /// Returns the volume with its status moved to `phase` (and `message`), stamping the
    /// transition time, or `None` when it already is in that phase (upstream's
    /// `updateVolumePhase`).
    fn with_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: Option<String>,
    ) -> Option<PersistentVolume> {
        if volume_phase(volume) == phase {
            return None;
        }
        let mut changed = volume.clone();
        let status = changed.status.get_or_insert_with(PersistentVolumeStatus::default);
        status.phase = Some(phase.to_owned());
        status.message = message;
        status.last_phase_transition_time = Some(Time(self.now));
        Some(changed)
    }
}

fn volume_phase(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or_default()
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|status| status.phase.as_deref()).unwrap_or_default()
}

fn has_annotation(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations.as_ref().is_some_and(|annotations| annotations.contains_key(key))
}

fn annotation<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set_annotation(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(key.to_owned(), value.to_owned());
}

/// Returns a reference to a claim, as the volume's `claimRef` and as an event's object.
pub(crate) fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolumeClaim".to_owned()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn volume_reference(volume: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolume".to_owned()),
        name: volume.metadata.name.clone(),
        uid: volume.metadata.uid.clone(),
        resource_version: volume.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn claim_event(
    claim: &PersistentVolumeClaim,
    type_: EventType,
    reason: &'static str,
    message: String,
) -> Event {
    Event { involved: claim_reference(claim), type_, reason, message }
}

fn volume_event(
    volume: &PersistentVolume,
    type_: EventType,
    reason: &'static str,
    message: String,
) -> Event {
    Event { involved: volume_reference(volume), type_, reason, message }
}
