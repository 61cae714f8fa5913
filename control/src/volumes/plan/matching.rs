//! Which volume a claim may have: storage classes, capacities, access and volume modes,
//! selectors and node affinity, as upstream's `FindMatchingVolume` and its helpers judge them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::nodes::term_matches;
use crate::quantity::parse_milli;
use crate::selector::Selector;

use super::{annotation, volume_phase, DEFAULT_CLASS_ANNOTATION};

/// Deprecated annotation naming a claim's or volume's class; it wins over the spec field.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// Deprecated twin of [`DEFAULT_CLASS_ANNOTATION`].
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// How a claim may be bound now.
pub(crate) enum Binding<'a> {
    /// `Immediate` class (or none): any matching volume.
    Immediate,
    /// `WaitForFirstConsumer` class and no node chosen yet: only a volume pre-bound to it.
    Delayed,
    /// `WaitForFirstConsumer` class and the chosen node's labels: volumes it can reach.
    OnNode(&'a BTreeMap<String, String>),
}

/// Returns the claim's class name, `""` when it has none.
pub(crate) fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    annotation(&claim.metadata, BETA_CLASS_ANNOTATION)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Returns whether the claim asks for a class at all (`""` included).
pub(super) fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata, BETA_CLASS_ANNOTATION).is_some()
        || claim.spec.as_ref().is_some_and(|spec| spec.storage_class_name.is_some())
}

/// Returns the volume's class name, `""` when it has none.
pub(crate) fn volume_class(volume: &PersistentVolume) -> &str {
    annotation(&volume.metadata, BETA_CLASS_ANNOTATION)
        .or_else(|| volume.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Returns the default StorageClass: among those annotated default, the newest, then the
/// first by name (upstream's `GetDefaultClass`).
pub(super) fn default_class<'a>(
    classes: &BTreeMap<&str, &'a StorageClass>,
) -> Option<&'a StorageClass> {
    let is_default = |class: &StorageClass| {
        [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
            .iter()
            .any(|key| annotation(&class.metadata, key) == Some("true"))
    };
    // The map iterates by name, so keeping the first of equally new classes keeps the first name.
    let mut best: Option<&'a StorageClass> = None;
    for class in classes.values().copied().filter(|class| is_default(class)) {
        let newer = best.is_none_or(|best| {
            class.metadata.creation_timestamp.as_ref().map(|time| time.0)
                > best.metadata.creation_timestamp.as_ref().map(|time| time.0)
        });
        if newer {
            best = Some(class);
        }
    }
    best
}

/// Returns whether the volume is pre-bound or bound to the claim: its `claimRef` names the
/// claim, and carries the claim's uid if it carries one (upstream's `IsVolumeBoundToClaim`).
pub(super) fn bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    claim_ref(volume).is_some_and(|reference| refers_to_claim(reference, claim))
}

/// Returns whether a `claimRef` names the claim, with the claim's uid if it carries one.
pub(crate) fn refers_to_claim(reference: &ObjectReference, claim: &PersistentVolumeClaim) -> bool {
    let uid = reference.uid.as_deref().unwrap_or_default();
    reference.name == claim.metadata.name
        && reference.namespace == claim.metadata.namespace
        && (uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
}

fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

/// Returns whether the claim's and the volume's volumeModes differ (unset means Filesystem).
pub(crate) fn volume_mode_mismatch(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> bool {
    let claim_mode = claim.spec.as_ref().and_then(|spec| spec.volume_mode.as_deref());
    let volume_mode = volume.spec.as_ref().and_then(|spec| spec.volume_mode.as_deref());
    claim_mode.unwrap_or("Filesystem") != volume_mode.unwrap_or("Filesystem")
}

fn access_modes(modes: Option<&Vec<String>>) -> BTreeSet<&str> {
    modes.into_iter().flatten().map(String::as_str).collect()
}

pub(crate) fn claim_modes(claim: &PersistentVolumeClaim) -> BTreeSet<&str> {
    access_modes(claim.spec.as_ref().and_then(|spec| spec.access_modes.as_ref()))
}

pub(crate) fn volume_modes(volume: &PersistentVolume) -> BTreeSet<&str> {
    access_modes(volume.spec.as_ref().and_then(|spec| spec.access_modes.as_ref()))
}

/// Returns the claim's storage request in milli-units (0 when absent).
pub(crate) fn requested(claim: &PersistentVolumeClaim) -> i128 {
    let request = claim
        .spec
        .as_ref()
        .and_then(|spec| spec.resources.as_ref())
        .and_then(|resources| resources.requests.as_ref())
        .and_then(|requests| requests.get("storage"));
    request.and_then(|quantity| parse_milli(&quantity.0)).unwrap_or(0)
}

/// Returns the volume's storage capacity in milli-units (0 when absent).
pub(crate) fn capacity(volume: &PersistentVolume) -> i128 {
    let capacity = volume
        .spec
        .as_ref()
        .and_then(|spec| spec.capacity.as_ref())
        .and_then(|capacity| capacity.get("storage"));
    capacity.and_then(|quantity| parse_milli(&quantity.0)).unwrap_or(0)
}

/// Returns why the volume a claim names in `spec.volumeName` cannot serve it, checked in
/// upstream's order (`checkVolumeSatisfyClaim`).
pub(super) fn unsatisfied_because(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<String> {
    if volume.metadata.deletion_timestamp.is_some() {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        return Some(format!("the volume is marked for deletion {name:?}"));
    }
    if capacity(volume) < requested(claim) {
        return Some("requested PV is too small".to_owned());
    }
    if volume_class(volume) != claim_class(claim) {
        return Some("storageClassName does not match".to_owned());
    }
    if volume_mode_mismatch(volume, claim) {
        return Some("incompatible volumeMode".to_owned());
    }
    if !claim_modes(claim).is_subset(&volume_modes(volume)) {
        return Some("incompatible accessMode".to_owned());
    }
    None
}

/// A volume as one `FindMatchingVolume` search sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'v> {
    pub name: &'v str,
    pub volume: &'v PersistentVolume,
    /// The claim the volume is bound or pre-bound to: its `claimRef`, or the binding the
    /// scheduler assumed and has not seen written yet.
    pub claim_ref: Option<&'v ObjectReference>,
}

impl<'v> Candidate<'v> {
    /// The volume as stored, its own `claimRef` included.
    pub(crate) fn stored(name: &'v str, volume: &'v PersistentVolume) -> Candidate<'v> {
        Candidate { name, volume, claim_ref: claim_ref(volume) }
    }
}

/// Volumes by access-mode set, the sets ordered by size (then by modes).
type ModeGroups<'v> = BTreeMap<(usize, BTreeSet<&'v str>), Vec<Candidate<'v>>>;

/// Returns the name of the volume the claim should get (upstream's `findBestMatchForClaim`):
/// volumes are searched by access-mode set, fewest modes first; within a set, a volume pre-bound
/// to the claim wins, else the smallest matching available volume (first name on ties).
pub(super) fn best_match(
    volumes: &BTreeMap<String, PersistentVolume>,
    claim: &PersistentVolumeClaim,
    binding: &Binding<'_>,
) -> Option<String> {
    let wanted = claim_modes(claim);
    let mut by_modes: ModeGroups<'_> = BTreeMap::new();
    for (name, volume) in volumes {
        let modes = volume_modes(volume);
        if wanted.is_subset(&modes) {
            by_modes.entry((modes.len(), modes)).or_default().push(Candidate::stored(name, volume));
        }
    }
    by_modes
        .into_values()
        .find_map(|group| find_matching_volume(group, claim, binding))
        .map(str::to_owned)
}

/// Upstream's `FindMatchingVolume`, for the PersistentVolume controller (over one access-mode
/// set at a time) and for the scheduler (over one class's volumes, for one node): the
/// candidate pre-bound to the claim if it can serve it (none at all if the node cannot reach
/// it), else the smallest available volume that fits the claim (the first on ties). On a node,
/// a volume must also offer every access mode the claim asks for.
pub(crate) fn find_matching_volume<'v>(
    candidates: impl IntoIterator<Item = Candidate<'v>>,
    claim: &PersistentVolumeClaim,
    binding: &Binding<'_>,
) -> Option<&'v str> {
    let request = requested(claim);
    let class = claim_class(claim);
    let selector = match claim.spec.as_ref().and_then(|spec| spec.selector.as_ref()) {
        // An invalid selector (rejected by validation) matches nothing, as upstream errs.
        Some(selector) => Some(Selector::parse_allowing_empty(selector).ok()?),
        None => None,
    };
    let wanted_modes = claim_modes(claim);
    let node_labels = match binding {
        Binding::OnNode(labels) => Some(*labels),
        Binding::Immediate | Binding::Delayed => None,
    };
    let mut smallest: Option<(i128, &'v str)> = None;
    for Candidate { name, volume, claim_ref } in candidates {
        let pre_bound = claim_ref.is_some_and(|reference| refers_to_claim(reference, claim));
        if claim_ref.is_some() && !pre_bound {
            continue;
        }
        let size = capacity(volume);
        if size < request
            || volume_mode_mismatch(volume, claim)
            || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let reachable = node_labels.is_none_or(|labels| node_affinity_allows(volume, labels));
        if pre_bound {
            // A pre-bound volume the node cannot reach means no match at all.
            return reachable.then_some(name);
        }
        if matches!(binding, Binding::Delayed) {
            continue;
        }
        let labels = volume.metadata.labels.as_ref();
        if volume_phase(volume) != "Available"
            || selector.as_ref().is_some_and(|selector| !selector.matches(labels))
            || volume_class(volume) != class
            || !reachable
            || (node_labels.is_some() && !wanted_modes.is_subset(&volume_modes(volume)))
        {
            continue;
        }
        if smallest.is_none_or(|(smallest_size, _)| size < smallest_size) {
            smallest = Some((size, name));
        }
    }
    smallest.map(|(_, name)| name)
}

/// Returns whether the volume's required node affinity admits a node with these labels
/// (upstream's `CheckNodeAffinity`, which judges a node by its labels alone: `matchFields`
/// see an empty node name).
pub(crate) fn node_affinity_allows(
    volume: &PersistentVolume,
    labels: &BTreeMap<String, String>,
) -> bool {
    let required = volume
        .spec
        .as_ref()
        .and_then(|spec| spec.node_affinity.as_ref())
        .and_then(|affinity| affinity.required.as_ref());
    required.is_none_or(|selector| {
        selector.node_selector_terms.iter().any(|term| term_matches(term, labels, ""))
    })
}
