//! VolumeBinding: the claims, volumes and StorageClasses the scheduler sees, and kube-scheduler
//! 1.33's volume binding checks over them, without IO.
//!
//! - PreFilter ([`prefilter`]): every claim the pod uses must exist, not be `Lost` nor being
//!   deleted, and be bound unless its class is `WaitForFirstConsumer` (no claim of an
//!   `Immediate` class is bound here on the pod's behalf). Otherwise the pod fits nowhere, with
//!   kube's message (`persistentvolumeclaim "data" not found`, `pod has unbound immediate
//!   PersistentVolumeClaims`).
//! - Filter ([`PodVolumes::filter`]): a bound claim's volume must exist and its required node
//!   affinity admit the node (`node(s) had volume node affinity conflict`); each unbound
//!   `WaitForFirstConsumer` claim needs an available volume the node can reach, as
//!   `FindMatchingVolume` picks it (the smallest that fits; one volume per claim), or a class
//!   whose provisioner can create one there (`node(s) didn't find available persistent volumes
//!   to bind`).
//! - Reserve ([`Storage::assume`]): the volumes chosen for a placed pod count as taken by its
//!   claims until the watch shows them bound, so the next decisions do not hand them out again
//!   (kube's assume cache); the caller pre-binds them (`spec.claimRef`, as kube's PreBind does,
//!   which the PersistentVolume controller here completes) and sets
//!   `volume.kubernetes.io/selected-node` on claims to provision.
//!
//! Deliberate differences: a claim already carrying `volume.kubernetes.io/selected-node` is
//! matched against the volumes of that node before provisioning is considered, since the
//! controller here binds such claims to static volumes too; provisioners named
//! `kubernetes.io/...` count as unable to provision (no in-tree provisioner exists here); a
//! claim used twice by one pod is checked once. Storage capacity (CSIStorageCapacity) and CSI
//! migration are not modelled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, TopologySelectorTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;

use super::filters::Rejection;
use super::snapshot::NodeInfo;
use crate::volumes::plan::matching::{
    claim_class, find_matching_volume, node_affinity_allows, requested, volume_class, Binding,
    Candidate,
};
use crate::volumes::plan::{BIND_COMPLETED_ANNOTATION, SELECTED_NODE_ANNOTATION};

pub(crate) const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub(crate) const ERR_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
pub(crate) const ERR_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub(crate) const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// The provisioner of classes whose volumes are only ever created by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// A claim by namespace and name.
pub(crate) type ClaimKey = (String, String);

fn claim_key(claim: &PersistentVolumeClaim) -> ClaimKey {
    (
        claim.metadata.namespace.clone().unwrap_or_default(),
        claim.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether the claim is bound for good: it names its volume and the controller finished
/// (`isPVCFullyBound`).
pub fn fully_bound(claim: &PersistentVolumeClaim) -> bool {
    let annotated = claim
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(BIND_COMPLETED_ANNOTATION));
    volume_name(claim).is_some() && annotated
}

fn volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|name| !name.is_empty())
}

fn selected_node_annotation(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.metadata.annotations.as_ref()?.get(SELECTED_NODE_ANNOTATION).map(String::as_str)
}

/// What a placed pod will write before it is bound: volumes to pre-bind to its claims and claims
/// to have provisioned on its node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeBindings {
    /// Each volume (as the snapshot saw it) with the claim it is pre-bound to.
    pub prebind: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    /// Claims to annotate with the node for their class's provisioner.
    pub provision: Vec<Arc<PersistentVolumeClaim>>,
    /// The labels of the chosen node, to check the bound volumes' node affinity against.
    pub node_labels: BTreeMap<String, String>,
}

impl VolumeBindings {
    /// Whether there is nothing to write before binding the pod.
    pub fn is_empty(&self) -> bool {
        self.prebind.is_empty() && self.provision.is_empty()
    }
}

/// A volume a placed pod will pre-bind, as if its `claimRef` were written already.
#[derive(Debug, Clone)]
struct AssumedVolume {
    claim: ObjectReference,
    pod: String,
}

/// Claims, volumes and classes, plus the bindings decided but not yet seen by the watch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Storage {
    claims: HashMap<ClaimKey, Arc<PersistentVolumeClaim>>,
    /// By name, so equally small volumes are chosen in name order.
    volumes: BTreeMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
    /// Volume name → the claim a placed pod pre-binds it to.
    assumed_volumes: HashMap<String, AssumedVolume>,
    /// Claim → (node, pod): claims a placed pod has provisioned on that node.
    assumed_nodes: HashMap<ClaimKey, (String, String)>,
}

impl Storage {
    pub fn upsert_claim(&mut self, claim: PersistentVolumeClaim) {
        let key = claim_key(&claim);
        if volume_name(&claim).is_some() || selected_node_annotation(&claim).is_some() {
            self.assumed_nodes.remove(&key);
        }
        self.claims.insert(key, Arc::new(claim));
    }

    pub fn remove_claim(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.claims.remove(&key);
        self.assumed_nodes.remove(&key);
        self.assumed_volumes.retain(|_, assumed| {
            (assumed.claim.namespace.as_deref(), assumed.claim.name.as_deref())
                != (Some(namespace), Some(name))
        });
    }

    /// Replaces every claim (after a watch restart).
    pub fn claims_relisted(&mut self, claims: Vec<PersistentVolumeClaim>) {
        let listed: HashSet<ClaimKey> = claims.iter().map(claim_key).collect();
        let gone: Vec<ClaimKey> =
            self.claims.keys().filter(|k| !listed.contains(*k)).cloned().collect();
        for (namespace, name) in gone {
            self.remove_claim(&namespace, &name);
        }
        for claim in claims {
            self.upsert_claim(claim);
        }
    }

    /// Takes in a volume; once it shows a `claimRef` the watch is the truth about it.
    pub fn upsert_volume(&mut self, volume: PersistentVolume) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        if volume.spec.as_ref().is_some_and(|spec| spec.claim_ref.is_some()) {
            self.assumed_volumes.remove(&name);
        }
        self.volumes.insert(name, Arc::new(volume));
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
        self.assumed_volumes.remove(name);
    }

    /// Replaces every volume (after a watch restart).
    pub fn volumes_relisted(&mut self, volumes: Vec<PersistentVolume>) {
        let listed: HashSet<String> =
            volumes.iter().filter_map(|v| v.metadata.name.clone()).collect();
        let gone: Vec<String> =
            self.volumes.keys().filter(|k| !listed.contains(*k)).cloned().collect();
        for name in gone {
            self.remove_volume(&name);
        }
        for volume in volumes {
            self.upsert_volume(volume);
        }
    }

    pub fn upsert_class(&mut self, class: StorageClass) {
        let name = class.metadata.name.clone().unwrap_or_default();
        self.classes.insert(name, Arc::new(class));
    }

    pub fn remove_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    /// Replaces every StorageClass (after a watch restart).
    pub fn classes_relisted(&mut self, classes: Vec<StorageClass>) {
        self.classes.clear();
        for class in classes {
            self.upsert_class(class);
        }
    }

    /// Counts the bindings of a pod placed on `node` as made (kube's `AssumePodVolumes`).
    pub fn assume(&mut self, pod: &str, node: &str, bindings: &VolumeBindings) {
        for (volume, claim) in &bindings.prebind {
            let name = volume.metadata.name.clone().unwrap_or_default();
            let assumed = AssumedVolume {
                claim: crate::volumes::plan::claim_reference(claim),
                pod: pod.to_string(),
            };
            self.assumed_volumes.insert(name, assumed);
        }
        for claim in &bindings.provision {
            self.assumed_nodes.insert(claim_key(claim), (node.to_string(), pod.to_string()));
        }
    }

    /// Takes back what [`Storage::assume`] counted for `pod` (its binding failed or it is gone).
    pub fn forget(&mut self, pod: &str) {
        self.assumed_volumes.retain(|_, assumed| assumed.pod != pod);
        self.assumed_nodes.retain(|_, (_, owner)| owner != pod);
    }

    /// The volume's `claimRef`, or the claim a placed pod pre-binds it to.
    fn claim_ref<'a>(
        &'a self,
        name: &str,
        volume: &'a PersistentVolume,
    ) -> Option<&'a ObjectReference> {
        match self.assumed_volumes.get(name) {
            Some(assumed) => Some(&assumed.claim),
            None => volume.spec.as_ref()?.claim_ref.as_ref(),
        }
    }

    /// The node the claim is to be provisioned on, decided here or annotated.
    fn selected_node<'a>(&'a self, claim: &'a PersistentVolumeClaim) -> Option<&'a str> {
        match self.assumed_nodes.get(&claim_key(claim)) {
            Some((node, _)) => Some(node),
            None => selected_node_annotation(claim),
        }
    }

    /// Whether the claim waits for its first consumer: its class exists and says so
    /// (`IsDelayBindingMode`; a missing class binds immediately).
    fn delayed(&self, claim: &PersistentVolumeClaim) -> bool {
        let class = claim_class(claim);
        !class.is_empty()
            && self.classes.get(class).and_then(|c| c.volume_binding_mode.as_deref())
                == Some("WaitForFirstConsumer")
    }

    /// `FindMatchingVolume` as the scheduler calls it: among the volumes of the claim's class
    /// not in `excluded`, the one pre-bound to the claim if the node can reach it (none if it
    /// cannot), otherwise the smallest available one that fits the claim and the node.
    fn find_matching_volume<'a>(
        &'a self,
        claim: &PersistentVolumeClaim,
        node: &NodeInfo,
        excluded: &HashSet<&str>,
    ) -> Option<&'a Arc<PersistentVolume>> {
        let class = claim_class(claim);
        let candidates = self
            .volumes
            .iter()
            .filter(|(name, volume)| {
                volume_class(volume) == class && !excluded.contains(name.as_str())
            })
            .map(|(name, volume)| Candidate {
                name,
                volume,
                claim_ref: self.claim_ref(name, volume),
            });
        let name = find_matching_volume(candidates, claim, &Binding::OnNode(&node.labels))?;
        self.volumes.get(name)
    }

    /// Whether the claim's class can have a volume created for it on the node
    /// (`checkVolumeProvisions`, without storage capacity).
    fn provisionable(&self, claim: &PersistentVolumeClaim, node: &NodeInfo) -> bool {
        let Some(class) = self.classes.get(claim_class(claim)) else { return false };
        let provisioner = class.provisioner.as_str();
        if provisioner.is_empty() || provisioner == NO_PROVISIONER {
            return false;
        }
        // No in-tree provisioner exists here; the PersistentVolume controller reports them as
        // unknown, so such claims would never get a volume.
        if provisioner.starts_with("kubernetes.io/") {
            return false;
        }
        topology_allows(class.allowed_topologies.as_deref().unwrap_or_default(), &node.labels)
    }
}

/// `MatchTopologySelectorTerms`: no terms admit every node; otherwise some non-empty term must
/// have every key present with one of its values.
fn topology_allows(terms: &[TopologySelectorTerm], labels: &BTreeMap<String, String>) -> bool {
    if terms.is_empty() {
        return true;
    }
    terms.iter().any(|term| {
        let expressions = term.match_label_expressions.as_deref().unwrap_or_default();
        !expressions.is_empty()
            && expressions.iter().all(|e| {
                !e.values.is_empty() && labels.get(&e.key).is_some_and(|v| e.values.contains(v))
            })
    })
}

/// A pod's claims as PreFilter sorted them.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodVolumes {
    bound: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of `WaitForFirstConsumer` classes, smallest request first.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
}

/// The claims a pod's volumes use: `(name, ephemeral)`, without repeats.
fn pod_claims(pod: &Pod) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let claim = if let Some(source) = &volume.persistent_volume_claim {
            (source.claim_name.clone(), false)
        } else if volume.ephemeral.is_some() {
            // Generic ephemeral volumes use the claim `<pod>-<volume>`.
            (format!("{pod_name}-{}", volume.name), true)
        } else {
            continue;
        };
        if !out.iter().any(|(name, _)| *name == claim.0) {
            out.push(claim);
        }
    }
    out
}

/// Whether the pod controls the claim (`ephemeral.VolumeIsForPod`).
fn owned_by(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    claim.metadata.owner_references.iter().flatten().any(|owner| {
        owner.controller == Some(true) && Some(&owner.uid) == pod.metadata.uid.as_ref()
    })
}

/// VolumeBinding's PreFilter: sorts the pod's claims into bound and waiting-for-a-node, or
/// returns kube's reason why the pod fits nowhere.
pub(crate) fn prefilter(storage: &Storage, pod: &Pod) -> Result<PodVolumes, String> {
    let claims = pod_claims(pod);
    let mut out = PodVolumes::default();
    if claims.is_empty() {
        return Ok(out);
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut found = Vec::with_capacity(claims.len());
    for (name, ephemeral) in claims {
        let Some(claim) = storage.claims.get(&(namespace.clone(), name.clone())) else {
            return Err(if ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                )
            } else {
                format!("persistentvolumeclaim {name:?} not found")
            });
        };
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
            let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            return Err(format!(
                "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                volume.unwrap_or_default()
            ));
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        if ephemeral && !owned_by(claim, pod) {
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            return Err(format!(
                "PVC {namespace}/{name} was not created for pod {namespace}/{pod_name} (pod is not owner)"
            ));
        }
        found.push(claim.clone());
    }
    let mut immediate = false;
    for claim in found {
        if fully_bound(&claim) {
            out.bound.push(claim);
        } else if storage.delayed(&claim) && volume_name(&claim).is_none() {
            out.delayed.push(claim);
        } else {
            // Prebound claims count as immediate too: the controller binds them.
            immediate = true;
        }
    }
    if immediate {
        return Err(ERR_UNBOUND_IMMEDIATE.to_string());
    }
    // findMatchingVolumes serves the smallest requests first.
    out.delayed.sort_by_key(|claim| requested(claim));
    Ok(out)
}

impl PodVolumes {
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.delayed.is_empty()
    }

    /// VolumeBinding's Filter (`FindPodVolumes`); `None` = the node can serve every claim.
    pub fn filter(&self, storage: &Storage, node: &NodeInfo) -> Option<Rejection> {
        if self.is_empty() {
            return None;
        }
        let mut affinity_conflict = false;
        let mut volume_missing = false;
        for claim in &self.bound {
            let name = volume_name(claim).unwrap_or_default();
            match storage.volumes.get(name) {
                None => {
                    volume_missing = true;
                    break;
                }
                Some(volume) if !node_affinity_allows(volume, &node.labels) => {
                    affinity_conflict = true;
                    break;
                }
                Some(_) => {}
            }
        }
        let bind_conflict = !self.delayed.is_empty() && self.bindings(storage, node).is_none();
        let mut reasons = Vec::new();
        if affinity_conflict {
            reasons.push(ERR_NODE_CONFLICT.into());
        }
        if bind_conflict {
            reasons.push(ERR_BIND_CONFLICT.into());
        }
        if volume_missing {
            reasons.push(ERR_PV_NOT_EXIST.into());
        }
        (!reasons.is_empty()).then_some(Rejection { reasons, resolvable: false })
    }

    /// How the unbound claims get volumes on `node`, or `None` if some cannot.
    pub fn bindings(&self, storage: &Storage, node: &NodeInfo) -> Option<VolumeBindings> {
        let mut out =
            VolumeBindings { node_labels: node.labels.clone(), ..VolumeBindings::default() };
        if self.delayed.iter().any(|c| storage.selected_node(c).is_some_and(|n| n != node.name)) {
            return None;
        }
        let mut chosen: HashSet<&str> = HashSet::new();
        let mut to_provision = Vec::new();
        for claim in &self.delayed {
            match storage.find_matching_volume(claim, node, &chosen) {
                Some(volume) => {
                    chosen.insert(volume.metadata.name.as_deref().unwrap_or_default());
                    out.prebind.push((volume.clone(), claim.clone()));
                }
                None => to_provision.push(claim),
            }
        }
        for claim in to_provision {
            if !storage.provisionable(claim, node) {
                return None;
            }
            out.provision.push(claim.clone());
        }
        Some(out)
    }
}
