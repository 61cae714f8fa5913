//! Decides what the Deployment controller does for one Deployment, as Kubernetes'
//! `pkg/controller/deployment` does, without any IO.
//!
//! [`plan`] takes the Deployment, the ReplicaSets it controls and the current time, and returns a
//! [`DeploymentPlan`]: a new ReplicaSet to create, existing ReplicaSets to rewrite (replicas and
//! annotations), old ReplicaSets to delete and the status to write.
//!
//! Invariants:
//! - The new ReplicaSet is the oldest one whose template equals the Deployment's template,
//!   ignoring the `pod-template-hash` label; it always carries the highest revision.
//! - A rolling update never lets the sum of `spec.replicas` exceed `replicas + maxSurge`, and never
//!   scales old sets down so far that available pods drop below `replicas - maxUnavailable`.
//! - Recreate creates or scales up the new set only once every old set reports zero pods.
//! - A paused Deployment is only scaled (proportionally); a deleted one only gets its status.
//! - Status is computed from the ReplicaSets as they were before this plan's scaling, as
//!   Kubernetes does; the next plan, after the caller's writes, catches up.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod fields;
mod rollout;
#[cfg(test)]
mod tests;

use fields::*;

/// Label added to a ReplicaSet's selector and template so sets of one Deployment never overlap.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Annotation holding a ReplicaSet's (and Deployment's) revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Annotation holding the revisions a reused ReplicaSet had before, comma-separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// Annotation holding the Deployment's `spec.replicas` when the set was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation holding `replicas + maxSurge` when the set was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations never copied onto ReplicaSets (Kubernetes' `skipCopyAnnotation`).
const SKIP_COPY_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// Condition reasons, as Kubernetes spells them.
pub mod reason {
    pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    pub const DEPLOYMENT_PAUSED: &str = "DeploymentPaused";
    pub const DEPLOYMENT_RESUMED: &str = "DeploymentResumed";
}

const AVAILABLE: &str = "Available";
const PROGRESSING: &str = "Progressing";
const REPLICA_FAILURE: &str = "ReplicaFailure";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Alphabet of Kubernetes' `rand.SafeEncodeString`: no vowels, no confusable characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What the controller should do for one Deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentPlan {
    /// A new ReplicaSet to create for the current template, with its initial replicas.
    pub create: Option<ReplicaSet>,
    /// Existing ReplicaSets to write (whole desired objects: replace them conditionally on their
    /// resourceVersion).
    pub update: Vec<ReplicaSet>,
    /// Names of old ReplicaSets to delete (0 replicas, beyond revisionHistoryLimit, oldest first).
    pub delete: Vec<String>,
    /// The Deployment status to write, if it changed.
    pub status: Option<DeploymentStatus>,
    /// Reconcile again after this long: the progress deadline expires then, which no watch event
    /// announces (Kubernetes' `requeueStuckDeployment`).
    pub recheck_after: Option<SignedDuration>,
}

/// Why no plan could be made for a Deployment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The Deployment has no spec.
    #[error("deployment has no spec")]
    MissingSpec,
    /// The selector is empty; it would select every pod in the namespace.
    #[error("deployment has an empty selector")]
    EmptySelector,
    /// maxSurge or maxUnavailable is neither an integer nor a percentage.
    #[error("invalid {field}: {value:?}")]
    InvalidIntOrPercent { field: &'static str, value: String },
}

/// Returns a stable hash of `template` (FNV-1a 32 over its JSON form and the collision count),
/// rendered like Kubernetes' `ComputeHash`: the decimal digits mapped onto [`SAFE_ALPHABET`].
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Serializing a k8s-openapi struct cannot fail: it has string keys and no custom serializers.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&json);
    if let Some(count) = collision_count {
        feed(&count.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|digit| char::from(SAFE_ALPHABET[usize::from(digit) % SAFE_ALPHABET.len()]))
        .collect()
}

/// Decides the next step for `deployment` given the ReplicaSets it controls.
pub fn plan(
    deployment: &Deployment,
    sets: &[ReplicaSet],
    now: Timestamp,
) -> Result<DeploymentPlan, PlanError> {
    let spec = deployment.spec.as_ref().ok_or(PlanError::MissingSpec)?;
    let selector = &spec.selector;
    if selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
    {
        return Err(PlanError::EmptySelector);
    }
    let mut work = Work::new(deployment, spec, sets, now)?;
    work.run();
    Ok(work.finish())
}

/// Kind of sync, as `syncDeployment` dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Rolling,
    Recreate,
}

/// The working state of one plan: copies of the sets, changed as the controller would change them.
struct Work<'a> {
    deployment: &'a Deployment,
    spec: &'a DeploymentSpec,
    now: Timestamp,
    replicas: i32,
    strategy: Strategy,
    max_surge: i32,
    max_unavailable: i32,
    progress_deadline: Option<i32>,
    /// The Deployment's status as the controller mutates it before computing the new one
    /// (paused and new-set conditions, collision count).
    base_status: DeploymentStatus,
    /// Working copies, oldest first (Kubernetes' `ReplicaSetsByCreationTimestamp`).
    sets: Vec<ReplicaSet>,
    /// Index of the new set in `sets`, if any.
    new: Option<usize>,
    /// Whether `sets[new]` is created by this plan.
    created: bool,
    /// Indexes of existing sets to write.
    dirty: BTreeSet<usize>,
    /// Sets as they were after revision sync, before scaling: what the status is computed from.
    synced: Vec<ReplicaSet>,
    delete: Vec<String>,
    status: Option<DeploymentStatus>,
    recheck_after: Option<SignedDuration>,
}

impl<'a> Work<'a> {
    fn new(
        deployment: &'a Deployment,
        spec: &'a DeploymentSpec,
        sets: &[ReplicaSet],
        now: Timestamp,
    ) -> Result<Self, PlanError> {
        let replicas = spec.replicas.unwrap_or(1);
        let strategy_spec = spec.strategy.as_ref();
        let strategy = match strategy_spec.and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Strategy::Recreate,
            _ => Strategy::Rolling,
        };
        let (max_surge, max_unavailable) = if strategy == Strategy::Rolling {
            let rolling = strategy_spec.and_then(|s| s.rolling_update.as_ref());
            let quarter = IntOrString::String("25%".into());
            let surge = rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
            let unavailable = rolling.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&quarter);
            let surge = scaled_value(surge, replicas, true, "maxSurge")?;
            let mut unavailable = scaled_value(unavailable, replicas, false, "maxUnavailable")?;
            if surge == 0 && unavailable == 0 {
                unavailable = 1;
            }
            // MaxUnavailable: never more than replicas, and 0 for a Deployment scaled to 0.
            (surge, if replicas == 0 { 0 } else { unavailable.min(replicas) })
        } else {
            (0, 0)
        };
        let progress_deadline = spec
            .progress_deadline_seconds
            .or(Some(DEFAULT_PROGRESS_DEADLINE_SECONDS))
            .filter(|seconds| *seconds != i32::MAX);
        let mut sorted = sets.to_vec();
        sorted.sort_by_key(created_order);
        Ok(Work {
            deployment,
            spec,
            now,
            replicas,
            strategy,
            max_surge,
            max_unavailable,
            progress_deadline,
            base_status: deployment.status.clone().unwrap_or_default(),
            sets: sorted,
            new: None,
            created: false,
            dirty: BTreeSet::new(),
            synced: Vec::new(),
            delete: Vec::new(),
            status: None,
            recheck_after: None,
        })
    }

    /// Mirrors `syncDeployment`'s dispatch.
    fn run(&mut self) {
        if self.deployment.metadata.deletion_timestamp.is_some() {
            self.sync_revision(false);
            self.sync_status();
            return;
        }
        self.check_paused_conditions();
        if self.spec.paused == Some(true) {
            self.sync_scale();
            return;
        }
        self.sync_revision(false);
        if self.is_scaling_event() {
            self.sync_scale();
            return;
        }
        match self.strategy {
            Strategy::Rolling => self.rollout_rolling(),
            Strategy::Recreate => self.rollout_recreate(),
        }
    }

    fn finish(self) -> DeploymentPlan {
        let (create, update) = {
            let create = self.new.filter(|_| self.created).and_then(|i| self.sets.get(i).cloned());
            let update = self
                .dirty
                .iter()
                .filter(|i| !(self.created && Some(**i) == self.new))
                .filter_map(|i| self.sets.get(*i))
                .filter(|set| !self.delete.contains(&name_of(set)))
                .cloned()
                .collect();
            (create, update)
        };
        DeploymentPlan {
            create,
            update,
            delete: self.delete,
            status: self.status,
            recheck_after: self.recheck_after,
        }
    }

    fn name(&self) -> String {
        self.deployment.metadata.name.clone().unwrap_or_default()
    }

    /// Indexes of old sets (every set but the new one), oldest first.
    fn old(&self) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != self.new).collect()
    }

    /// Sum of `spec.replicas` over `indexes`.
    fn spec_sum(&self, indexes: &[usize]) -> i32 {
        indexes.iter().filter_map(|i| self.sets.get(*i)).map(spec_replicas).sum()
    }

    /// Sum of `status.availableReplicas` over `indexes`.
    fn kept_available_sum(&self, indexes: &[usize]) -> i32 {
        indexes.iter().filter_map(|i| self.sets.get(*i)).map(kept_available).sum()
    }

    /// Finds the new set, syncs its revision and annotations and, if asked, creates it
    /// (Kubernetes' `getAllReplicaSetsAndSyncRevision`).
    fn sync_revision(&mut self, create: bool) {
        if self.new.is_none() {
            self.new = self.sets.iter().position(|set| {
                set.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|template| equal_ignore_hash(template, &self.spec.template))
            });
        }
        let max_old =
            self.old().iter().filter_map(|i| self.sets.get(*i)).map(revision).max().unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(index) = self.new {
            if self.created {
                return;
            }
            let (changed, name) = {
                let min_ready = self.spec.min_ready_seconds;
                let Some(set) = self.sets.get_mut(index) else { return };
                let mut changed = set_new_annotations(self.deployment, set, new_revision);
                if let Some(spec) = set.spec.as_mut() {
                    if spec.min_ready_seconds != min_ready {
                        spec.min_ready_seconds = min_ready;
                        changed = true;
                    }
                }
                (changed, name_of(set))
            };
            if changed {
                self.dirty.insert(index);
            }
            if self.progress_deadline.is_some()
                && condition(&self.base_status, PROGRESSING).is_none()
            {
                let message = format!("Found new replica set {name:?}");
                let found =
                    self.condition(PROGRESSING, "True", reason::FOUND_NEW_REPLICA_SET, message);
                set_condition(&mut self.base_status, found);
            }
        } else if create {
            self.create_new(new_revision);
        }
        if !create || self.created {
            self.synced = self.sets.clone();
        }
    }

    /// Builds the new set for the current template, resolving hash collisions with owned sets.
    fn create_new(&mut self, revision: i64) {
        let mut collisions = self.base_status.collision_count;
        let (hash, name) = loop {
            let hash = pod_template_hash(&self.spec.template, collisions);
            let name = format!("{}-{hash}", self.name());
            // A visible set with this name has a different template (else it would be the new one).
            if self.sets.iter().all(|set| name_of(set) != name) {
                break (hash, name);
            }
            collisions = Some(collisions.unwrap_or(0).saturating_add(1));
        };
        self.base_status.collision_count = collisions;
        let mut template = self.spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = self.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let mut set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.deployment.metadata.namespace.clone(),
                labels,
                owner_references: Some(vec![self.owner_reference()]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_annotations(self.deployment, &mut set, revision);
        set_replicas_annotations(&mut set, self.replicas, self.replicas + self.max_surge);
        self.sets.push(set);
        let index = self.sets.len() - 1;
        self.new = Some(index);
        self.created = true;
        let initial = self.new_set_replicas(index);
        if let Some(spec) = self.sets.get_mut(index).and_then(|set| set.spec.as_mut()) {
            spec.replicas = Some(initial);
        }
        if self.progress_deadline.is_some() {
            let message = format!("Created new replica set {name:?}");
            let created =
                self.condition(PROGRESSING, "True", reason::NEW_REPLICA_SET_CREATED, message);
            set_condition(&mut self.base_status, created);
        }
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.name(),
            uid: self.deployment.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// How many replicas the new set may have now (Kubernetes' `NewRSNewReplicas`).
    fn new_set_replicas(&self, new: usize) -> i32 {
        let current = self.sets.get(new).map(spec_replicas).unwrap_or(0);
        match self.strategy {
            Strategy::Recreate => self.replicas,
            Strategy::Rolling => {
                let all: Vec<usize> = (0..self.sets.len()).collect();
                let total = self.spec_sum(&all);
                let max_total = self.replicas + self.max_surge;
                if total >= max_total {
                    return current;
                }
                current + (max_total - total).min(self.replicas - current)
            }
        }
    }

    /// Sets `sets[index]` to `replicas`, refreshing the replica annotations; returns whether the
    /// size changed (Kubernetes' `scaleReplicaSet`).
    fn scale(&mut self, index: usize, replicas: i32) -> bool {
        let (desired, max) = (self.replicas, self.replicas + self.max_surge);
        let Some(set) = self.sets.get_mut(index) else { return false };
        let resize = spec_replicas(set) != replicas;
        let annotate = set_replicas_annotations(set, desired, max);
        if resize {
            if let Some(spec) = set.spec.as_mut() {
                spec.replicas = Some(replicas);
            }
        }
        if resize || annotate {
            self.dirty.insert(index);
        }
        resize
    }

    /// Whether any active set was scaled for another `spec.replicas` (`isScalingEvent`).
    fn is_scaling_event(&self) -> bool {
        self.sets.iter().filter(|set| spec_replicas(set) > 0).any(|set| {
            annotation_int(set, DESIRED_REPLICAS_ANNOTATION).is_some_and(|d| d != self.replicas)
        })
    }

    /// Sets the paused/resumed Progressing condition (`checkPausedConditions`).
    fn check_paused_conditions(&mut self) {
        if self.progress_deadline.is_none() {
            return;
        }
        let current = condition(&self.base_status, PROGRESSING).and_then(|c| c.reason.clone());
        if current.as_deref() == Some(reason::PROGRESS_DEADLINE_EXCEEDED) {
            return;
        }
        let paused_recorded = current.as_deref() == Some(reason::DEPLOYMENT_PAUSED);
        let paused = self.spec.paused == Some(true);
        let new = if paused && !paused_recorded {
            Some((reason::DEPLOYMENT_PAUSED, "Deployment is paused"))
        } else if !paused && paused_recorded {
            Some((reason::DEPLOYMENT_RESUMED, "Deployment is resumed"))
        } else {
            None
        };
        if let Some((why, message)) = new {
            let new = self.condition(PROGRESSING, "Unknown", why, message.into());
            set_condition(&mut self.base_status, new);
        }
    }

    fn condition(
        &self,
        type_: &str,
        status: &str,
        why: &str,
        message: String,
    ) -> DeploymentCondition {
        DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(why.into()),
            message: Some(message),
            last_update_time: Some(Time(self.now)),
            last_transition_time: Some(Time(self.now)),
        }
    }
}
