//! Decides what the DaemonSet controller does for one DaemonSet, as Kubernetes'
//! `pkg/controller/daemon` does, without any IO.
//!
//! [`plan`] takes the DaemonSet, every node, every pod in its namespace, the ControllerRevisions
//! it owns (orphans matching its selector may be passed too and are adopted), the failed-pod
//! backoff the previous plan returned and the current time. It returns a [`Plan`]: the revision
//! for the current template to create, revisions to renumber, relabel or delete, pods to adopt,
//! release, create (one per node, pinned to it) and delete, events to record, the status to write
//! and when to look again.
//!
//! Invariants:
//! - A node runs a daemon pod when the template's nodeName, nodeSelector, required node affinity
//!   and tolerations (plus the tolerations every daemon pod gets) admit it; a pod already there
//!   stays while it tolerates the node's `NoExecute` taints.
//! - Without surge a node keeps at most one daemon pod (the oldest); with surge at most an old and
//!   a new one, the old deleted once the new is available.
//! - A rolling update never deletes an available old pod while `maxUnavailable` desired nodes are
//!   without an available pod, and never surges onto more than `maxSurge` nodes whose old pod is
//!   still available. It only starts once the plan has no other creations or deletions, as
//!   Kubernetes waits for the expectations of its previous writes.
//! - New pods carry the current revision's hash; the revision is in the plan (or exists) before
//!   any pod refers to it.
//! - A DaemonSet being deleted gets an empty plan, as in Kubernetes (its status cannot be
//!   computed reliably while the garbage collector removes its revisions).
//! - At most [`BURST`] pods are created and [`BURST`] deleted per plan.

use std::collections::{BTreeMap, BTreeSet};

use crate::objects::controller_of;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod backoff;
mod manage;
mod placement;
mod revisions;
mod status;
#[cfg(test)]
mod tests;

pub use crate::history::CONTROLLER_REVISION_HASH_LABEL;
pub use backoff::FailedPodBackoff;
pub use placement::Placement;

pub use crate::events::EventType;
use crate::selector::Selector;
use placement::Placer;

/// Most pods created, and most deleted, by one plan (Kubernetes' `BurstReplicas`).
pub const BURST: usize = 250;
/// Label carrying the template generation a pod was made from (kept for compatibility).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// DaemonSet annotation the API server keeps at the template's generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// maxUnavailable when the strategy leaves it unset (the API default).
static DEFAULT_MAX_UNAVAILABLE: IntOrString = IntOrString::Int(1);
/// Revisions kept beyond the live ones when `revisionHistoryLimit` is unset (the API default).
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Event reasons, as Kubernetes spells them.
pub mod reason {
    /// The selector is empty and would select every pod.
    pub const SELECTING_ALL: &str = "SelectingAll";
    /// A daemon pod failed and is deleted to be recreated.
    pub const FAILED_DAEMON_POD: &str = "FailedDaemonPod";
    /// A daemon pod succeeded (exited) and is deleted to be recreated.
    pub const SUCCEEDED_DAEMON_POD: &str = "SucceededDaemonPod";
}

/// What the controller should do for one DaemonSet. Fields are listed in the order to execute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The hash of the current template's revision: the `controller-revision-hash` of new pods.
    pub hash: String,
    /// The revision for the current template, to create before anything else. If creating it
    /// fails with AlreadyExists, the name collided with a revision this plan did not see: bump
    /// `status.collisionCount` by one and plan again (Kubernetes' `snapshot`). Create no pod
    /// until it exists.
    pub create_revision: Option<ControllerRevision>,
    /// Existing revisions to replace, conditionally on their resourceVersion: the current one
    /// renumbered to the newest revision (a rollback to an old template) and revisions given the
    /// `controller-revision-hash` label they lacked.
    pub update_revisions: Vec<ControllerRevision>,
    /// Orphan revisions matching the selector: add [`owner_reference`] to their ownerReferences.
    pub adopt_revisions: Vec<ObjectRef>,
    /// Orphan pods matching the selector: add [`owner_reference`] to their ownerReferences.
    pub adopt_pods: Vec<ObjectRef>,
    /// Owned pods no longer matching the selector: drop this DaemonSet's ownerReference.
    pub release_pods: Vec<ObjectRef>,
    /// Pods labelled with a duplicate revision's hash: set their `controller-revision-hash`
    /// label to [`Plan::hash`] (a merge patch).
    pub relabel_pods: Vec<ObjectRef>,
    /// Pods to create (`generateName` set, one per node, bound by the scheduler through their
    /// node affinity).
    pub create_pods: Vec<Pod>,
    /// Pods to delete, with their uid as precondition; a 404 means the work is done.
    pub delete_pods: Vec<ObjectRef>,
    /// Revisions to delete (duplicates of the current one, history beyond
    /// `revisionHistoryLimit`), with their uid as precondition.
    pub delete_revisions: Vec<ObjectRef>,
    /// Events to record on the DaemonSet (pod create/delete events are the caller's, as
    /// Kubernetes' pod control records them).
    pub events: Vec<PlanEvent>,
    /// The status to write, conditionally on the DaemonSet's resourceVersion, if it changed.
    pub status: Option<DaemonSetStatus>,
    /// The failed-pod backoff to pass to the next plan for this DaemonSet.
    pub backoff: FailedPodBackoff,
    /// Plan again after this long: a failed pod's backoff ends or a ready pod becomes available
    /// (minReadySeconds), which no watch event announces.
    pub recheck_after: Option<SignedDuration>,
}

/// An object to act on, by name, with its uid for preconditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The object's name in the DaemonSet's namespace.
    pub name: String,
    /// The uid the plan saw, for a delete precondition (so a same-named successor survives).
    pub uid: Option<String>,
}

/// An event to record on the DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEvent {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// One of [`reason`].
    pub reason: &'static str,
    /// The message, as Kubernetes words it.
    pub message: String,
}

/// Why no plan could be made for a DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field the controller needs is absent.
    #[error("daemonset has no {field}")]
    MissingField { field: &'static str },
    /// The selector does not parse.
    #[error("invalid selector: {reason}")]
    InvalidSelector { reason: String },
    /// maxSurge or maxUnavailable is neither an integer nor a percentage.
    #[error("invalid {field}: {value:?}")]
    InvalidIntOrPercent { field: &'static str, value: String },
}

/// Returns what the controller should do for `ds`.
///
/// `pods` are the pods of the DaemonSet's namespace, `revisions` the ControllerRevisions it
/// owns (others are ignored, orphans matching its selector adopted), `backoff` what the previous
/// plan for this DaemonSet returned (or [`FailedPodBackoff::new`]).
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    revisions: &[ControllerRevision],
    backoff: &FailedPodBackoff,
    now: Timestamp,
) -> Result<Plan, PlanError> {
    let spec = ds.spec.as_ref().ok_or(PlanError::MissingField { field: "spec" })?;
    if Selector::selects_everything(&spec.selector) {
        let event = PlanEvent {
            type_: EventType::Warning,
            reason: reason::SELECTING_ALL,
            message: "This daemon set is selecting all pods. A non-empty selector is required."
                .to_owned(),
        };
        return Ok(Plan { events: vec![event], backoff: backoff.clone(), ..Plan::default() });
    }
    let selector = Selector::parse(&spec.selector)
        .map_err(|e| PlanError::InvalidSelector { reason: e.reason })?;
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Plan { backoff: backoff.clone(), ..Plan::default() });
    }
    let mut work = Work::new(ds, spec, nodes, backoff, now)?;
    work.claim_pods(pods, &selector);
    work.construct_history(revisions, &selector);
    work.manage();
    if work.create_nodes.is_empty() && work.delete.is_empty() {
        if let Some(rolling) = work.rolling {
            work.rolling_update(rolling);
        }
    }
    work.cleanup_history();
    work.update_status();
    Ok(work.finish())
}

/// Returns whether `ds` wants its pod on `node` (Kubernetes' `NodeShouldRunDaemonPod`), for
/// deciding which node changes are worth a reconcile.
#[cfg(test)]
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> Placement {
    let Some(template) = ds.spec.as_ref().and_then(|spec| spec.template.spec.as_ref()) else {
        return Placement::default();
    };
    Placer::new(template).place(node)
}

/// Returns the controller ownerReference pointing at `ds`, for created and adopted objects.
pub fn owner_reference(ds: &DaemonSet) -> Result<OwnerReference, PlanError> {
    Ok(OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "DaemonSet".to_owned(),
        name: ds.metadata.name.clone().ok_or(PlanError::MissingField { field: "metadata.name" })?,
        uid: ds.metadata.uid.clone().ok_or(PlanError::MissingField { field: "metadata.uid" })?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Update budgets of a RollingUpdate strategy, as written (scaled once the desired count is known).
#[derive(Debug, Clone, Copy)]
struct Rolling<'a> {
    max_unavailable: Option<&'a IntOrString>,
    max_surge: Option<&'a IntOrString>,
}

/// The working state of one plan.
struct Work<'a> {
    ds: &'a DaemonSet,
    spec: &'a DaemonSetSpec,
    owner: OwnerReference,
    namespace: String,
    now: Timestamp,
    min_ready: SignedDuration,
    /// The template generation from [`TEMPLATE_GENERATION_ANNOTATION`], if it parses.
    generation: Option<i64>,
    /// `None` for OnDelete.
    rolling: Option<Rolling<'a>>,
    /// Whether a node may briefly run an old and a new pod (maxSurge above zero).
    surge: bool,
    /// Every node by name, with whether it should run the daemon pod.
    nodes: BTreeMap<&'a str, Placement>,
    /// Claimed pods, including terminal pods being deleted (their hashes keep revisions live).
    claimed: Vec<&'a Pod>,
    /// Claimed pods by the node they are for, without terminal pods being deleted.
    by_node: BTreeMap<&'a str, Vec<&'a Pod>>,
    /// Hash of the current revision.
    hash: String,
    /// Hashes of duplicate current revisions being deleted.
    duplicate_hashes: BTreeSet<String>,
    /// Claimed revisions other than the current one.
    old_revisions: Vec<ControllerRevision>,
    collision_count: Option<i32>,
    backoff: FailedPodBackoff,
    /// Nodes to create a pod on, in order.
    create_nodes: Vec<&'a str>,
    /// Pods to delete, in order, without repeats.
    delete: Vec<&'a Pod>,
    out: Plan,
}

impl<'a> Work<'a> {
    fn new(
        ds: &'a DaemonSet,
        spec: &'a DaemonSetSpec,
        nodes: &'a [Node],
        backoff: &FailedPodBackoff,
        now: Timestamp,
    ) -> Result<Self, PlanError> {
        let owner = owner_reference(ds)?;
        let template = spec
            .template
            .spec
            .as_ref()
            .ok_or(PlanError::MissingField { field: "spec.template.spec" })?;
        let strategy = spec.update_strategy.as_ref();
        let rolling = match strategy.and_then(|strategy| strategy.type_.as_deref()) {
            Some("OnDelete") => None,
            // RollingUpdate is the API default; an absent budget defaults as the API does.
            _ => {
                let budget = strategy.and_then(|strategy| strategy.rolling_update.as_ref());
                Some(Rolling {
                    max_unavailable: Some(
                        budget
                            .and_then(|budget| budget.max_unavailable.as_ref())
                            .unwrap_or(&DEFAULT_MAX_UNAVAILABLE),
                    ),
                    max_surge: budget.and_then(|budget| budget.max_surge.as_ref()),
                })
            }
        };
        // Validates both budgets now so a bad value fails the plan before any decision.
        let surge = match rolling {
            Some(rolling) => {
                scaled(rolling.max_unavailable, 1, "maxUnavailable")?;
                scaled(rolling.max_surge, 1, "maxSurge")? > 0
            }
            None => false,
        };
        let placer = Placer::new(template);
        let mut by_name: BTreeMap<&'a str, Placement> = BTreeMap::new();
        for node in nodes {
            if let Some(name) = node.metadata.name.as_deref() {
                by_name.insert(name, placer.place(node));
            }
        }
        let mut backoff = backoff.clone();
        backoff.forget_expired(now);
        let generation = ds
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(TEMPLATE_GENERATION_ANNOTATION))
            .and_then(|value| value.parse().ok());
        Ok(Work {
            ds,
            spec,
            owner,
            namespace: ds.metadata.namespace.clone().unwrap_or_default(),
            now,
            min_ready: SignedDuration::from_secs(i64::from(spec.min_ready_seconds.unwrap_or(0))),
            generation,
            rolling,
            surge,
            nodes: by_name,
            claimed: Vec::new(),
            by_node: BTreeMap::new(),
            hash: String::new(),
            duplicate_hashes: BTreeSet::new(),
            old_revisions: Vec::new(),
            collision_count: ds.status.as_ref().and_then(|status| status.collision_count),
            backoff,
            create_nodes: Vec::new(),
            delete: Vec::new(),
            out: Plan::default(),
        })
    }

    /// Claims pods as Kubernetes' `ClaimPods` does and groups them by node
    /// (`getNodesToDaemonPods`).
    fn claim_pods(&mut self, pods: &'a [Pod], selector: &Selector) {
        for pod in pods {
            if pod.metadata.namespace.as_deref().unwrap_or_default() != self.namespace {
                continue;
            }
            let matches = selector.matches(pod.metadata.labels.as_ref());
            match controller_of(pod) {
                Some(reference) if reference.uid != self.owner.uid => continue,
                Some(_) if matches => {}
                Some(_) => {
                    self.out.release_pods.push(object_ref(pod));
                    continue;
                }
                None if matches && pod.metadata.deletion_timestamp.is_none() => {
                    self.out.adopt_pods.push(object_ref(pod));
                }
                None => continue,
            }
            self.claimed.push(pod);
            if status::is_terminal(pod) && pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(node) = placement::target_node(pod) {
                self.by_node.entry(node).or_default().push(pod);
            }
        }
        for pods in self.by_node.values_mut() {
            pods.sort_by(|a, b| status::oldest_first(a, b));
        }
    }

    /// Queues `pod` for deletion unless it already is.
    fn delete_pod(&mut self, pod: &'a Pod) {
        if !self.delete.iter().any(|queued| std::ptr::eq(*queued, pod)) {
            self.delete.push(pod);
        }
    }

    /// Keeps the earliest of the current and a new recheck time.
    fn recheck_in(&mut self, after: SignedDuration) {
        let current = self.out.recheck_after.get_or_insert(after);
        *current = (*current).min(after);
    }

    fn finish(mut self) -> Plan {
        let template = placement::daemon_template(&self.spec.template);
        let mut created = Vec::new();
        for node in self.create_nodes.iter().take(BURST) {
            created.push(self.daemon_pod(&template, node));
        }
        self.out.create_pods = created;
        self.out.delete_pods = self.delete.iter().take(BURST).map(|pod| object_ref(pod)).collect();
        self.out.hash = self.hash;
        self.out.backoff = self.backoff;
        self.out
    }

    /// The pod to create on `node` (Kubernetes' `CreatePodTemplate` + `GetPodFromTemplate`).
    fn daemon_pod(&self, template: &PodSpec, node: &str) -> Pod {
        let meta = self.spec.template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        if let Some(generation) = self.generation {
            labels.insert(TEMPLATE_GENERATION_LABEL.to_owned(), generation.to_string());
        }
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), self.hash.clone());
        let mut spec = template.clone();
        spec.affinity = Some(placement::pin_to_node(spec.affinity.take(), node));
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", self.owner.name)),
                namespace: self.ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: meta.annotations,
                finalizers: meta.finalizers,
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }
}

/// Scales an int-or-percent budget against `total`, rounding percentages up (Kubernetes'
/// `GetScaledValueFromIntOrPercent(.., true)`); an absent budget is zero.
fn scaled(value: Option<&IntOrString>, total: i32, field: &'static str) -> Result<i32, PlanError> {
    match value {
        None => Ok(0),
        Some(IntOrString::Int(value)) => Ok(*value),
        Some(IntOrString::String(text)) => {
            let invalid = || PlanError::InvalidIntOrPercent { field, value: text.clone() };
            let percent: i64 =
                text.strip_suffix('%').ok_or_else(invalid)?.parse().map_err(|_| invalid())?;
            let product = percent.checked_mul(i64::from(total)).ok_or_else(invalid)?;
            let ceiling = product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0);
            i32::try_from(ceiling).map_err(|_| invalid())
        }
    }
}

fn object_ref(pod: &Pod) -> ObjectRef {
    ObjectRef { name: pod.metadata.name.clone().unwrap_or_default(), uid: pod.metadata.uid.clone() }
}
