//! Which volume a claim may have: storage classes, capacities, access and volume modes,
//! selectors and node affinity, as upstream's `FindMatchingVolume` and its helpers judge them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
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
pub(super) enum Binding<'a> {
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
    let Some(reference) = volume.spec.as_ref().and_then(|spec| spec.claim_ref.as_ref()) else {
        return false;
    };
    let uid = reference.uid.as_deref().unwrap_or_default();
    reference.name == claim.metadata.name
        && reference.namespace == claim.metadata.namespace
        && (uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
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

/// Volumes by access-mode set, the sets ordered by size (then by modes).
type ModeGroups<'v> = BTreeMap<(usize, BTreeSet<&'v str>), Vec<(&'v String, &'v PersistentVolume)>>;

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
            by_modes.entry((modes.len(), modes)).or_default().push((name, volume));
        }
    }
    by_modes.values().find_map(|group| best_in_group(group, claim, binding)).cloned()
}

/// Upstream's `FindMatchingVolume` over volumes with one access-mode set.
fn best_in_group<'v>(
    group: &[(&'v String, &PersistentVolume)],
    claim: &PersistentVolumeClaim,
    binding: &Binding<'_>,
) -> Option<&'v String> {
    let request = requested(claim);
    let class = claim_class(claim);
    let selector = match claim.spec.as_ref().and_then(|spec| spec.selector.as_ref()) {
        // An invalid selector (rejected by validation) matches nothing, as upstream errs.
        Some(selector) => Some(Selector::parse_allowing_empty(selector).ok()?),
        None => None,
    };
    let mut smallest: Option<(i128, &'v String)> = None;
    for (name, volume) in group {
        let spec = volume.spec.as_ref();
        let claimed = spec.and_then(|spec| spec.claim_ref.as_ref()).is_some();
        if claimed && !bound_to_claim(volume, claim) {
            continue;
        }
        let size = capacity(volume);
        if size < request
            || volume_mode_mismatch(volume, claim)
            || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let reachable = match binding {
            Binding::OnNode(labels) => node_affinity_allows(volume, labels),
            Binding::Immediate | Binding::Delayed => true,
        };
        if bound_to_claim(volume, claim) {
            // A pre-bound volume the node cannot reach means no match in this set.
            return reachable.then_some(*name);
        }
        if matches!(binding, Binding::Delayed) {
            continue;
        }
        let labels = volume.metadata.labels.as_ref();
        if volume_phase(volume) != "Available"
            || selector.as_ref().is_some_and(|selector| !selector.matches(labels))
            || volume_class(volume) != class
            || !reachable
        {
            continue;
        }
        if smallest.is_none_or(|(smallest_size, _)| size < smallest_size) {
            smallest = Some((size, *name));
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
