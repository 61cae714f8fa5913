//! The scheduler's state between watch events: the snapshot of nodes, bound pods, claims,
//! volumes and StorageClasses, the queue of pods waiting for a node (highest priority first,
//! then arrival), pods backing off after fitting nowhere, and pods assumed on a node while their
//! binding is in flight.
//!
//! Invariants:
//! - A pod is in at most one of: active queue, parked (backing off), assumed.
//! - An assumed pod counts on its node in the snapshot from the moment it is placed, so the
//!   next decisions see its resources used, and the volumes chosen for its claims count as
//!   taken; a failed binding takes both back.
//! - The watch is the truth: a pod seen bound or gone leaves every queue, whatever was assumed.
//! - Pods backing off are tried again at once when something that could let them fit changes:
//!   a node, a claim they use, a volume or a StorageClass.
//!
//! No IO and no clock: the caller passes `now` and executes what [`Queue::next_batch`] returns.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::scheduler::{is_terminal, pod_key, schedule_from, Snapshot, VolumeBindings};

/// The scheduler name pods ask for by default.
pub const SCHEDULER_NAME: &str = "default-scheduler";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What to do for one pod taken from the queue.
#[derive(Debug)]
pub enum Outcome {
    /// Write `volumes`, then bind `pod` to `node` (it is assumed there until the binding
    /// succeeds or fails).
    Bind { pod: Arc<Pod>, node: String, volumes: VolumeBindings },
    /// The pod fits nowhere; `changed` is true when `message` differs from the last one
    /// reported for it (only then is an event worth writing).
    Unschedulable { pod: Arc<Pod>, message: String, changed: bool },
}

struct Waiting {
    pod: Arc<Pod>,
    /// Position in `active`, present while the pod is in it.
    order: Option<(Reverse<i32>, u64)>,
}

/// See the module documentation.
#[derive(Default)]
pub struct Queue {
    snapshot: Snapshot,
    /// Every pod waiting for a node, active or backing off, by key.
    waiting: HashMap<String, Waiting>,
    /// Keys of the active pods in scheduling order.
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    /// Waiting pods that are not active: when each may be tried again, by key and in time
    /// order (so the loop finds the next due pod without scanning them all).
    parked: HashMap<String, Instant>,
    parked_by_time: BTreeSet<(Instant, String)>,
    /// The backoff each pod last waited, doubled when it fails again.
    backoff: HashMap<String, Duration>,
    /// Pods placed whose binding is in flight: key → (uid, pod).
    assumed: HashMap<String, (String, Arc<Pod>)>,
    /// The last FailedScheduling message per pod key.
    reported: HashMap<String, String>,
    arrivals: u64,
    /// Where the next node search starts.
    next_start: usize,
}

/// Whether the default scheduler should place this pod.
fn wants_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let ours =
        spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME;
    ours && pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Whether the pod's volumes use the claim `namespace/name` (directly or as a generic ephemeral
/// volume's claim `<pod>-<volume>`).
fn uses_claim(pod: &Pod, namespace: &str, name: &str) -> bool {
    if pod.metadata.namespace.as_deref().unwrap_or("default") != namespace {
        return false;
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|volume| {
        match (&volume.persistent_volume_claim, &volume.ephemeral) {
            (Some(source), _) => source.claim_name == name,
            (None, Some(_)) => {
                name.strip_prefix(pod_name).and_then(|rest| rest.strip_prefix('-'))
                    == Some(volume.name.as_str())
            }
            (None, None) => false,
        }
    })
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl Queue {
    /// Takes in a pod as the watch shows it now.
    pub fn pod_applied(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        if let Some(node) = bound_node(&pod) {
            self.forget_waiting(&key);
            self.assumed.remove(&key);
            self.reported.remove(&key);
            if is_terminal(&pod) {
                self.snapshot.remove_pod_key(&key);
            } else {
                self.snapshot.add_pod(&pod, node);
            }
            return;
        }
        if let Some((assumed_uid, _)) = self.assumed.get(&key) {
            if *assumed_uid == uid(&pod) && wants_scheduling(&pod) {
                // Its binding is in flight; the watch has not caught up yet.
                return;
            }
            self.assumed.remove(&key);
            self.snapshot.remove_pod_key(&key);
            self.snapshot.forget_volumes(&key);
        }
        if !wants_scheduling(&pod) {
            self.forget_waiting(&key);
            self.reported.remove(&key);
            return;
        }
        match self.waiting.get_mut(&key) {
            Some(waiting) if waiting.pod.metadata.uid == pod.metadata.uid => waiting.pod = pod,
            _ => {
                self.forget_waiting(&key);
                self.enqueue(key, pod);
            }
        }
    }

    /// Forgets a deleted pod everywhere.
    pub fn pod_deleted(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.forget_waiting(&key);
        self.assumed.remove(&key);
        self.reported.remove(&key);
        self.snapshot.remove_pod_key(&key);
        self.snapshot.forget_volumes(&key);
    }

    /// Replaces everything known about pods with a fresh list (after a watch restart).
    pub fn pods_relisted(&mut self, pods: Vec<Arc<Pod>>) {
        let listed: HashSet<String> = pods.iter().map(|p| pod_key(p)).collect();
        for key in self.snapshot.pod_keys() {
            if !listed.contains(&key) {
                self.snapshot.remove_pod_key(&key);
            }
        }
        let gone: Vec<String> =
            self.waiting.keys().filter(|k| !listed.contains(*k)).cloned().collect();
        for key in gone {
            self.forget_waiting(&key);
        }
        let vanished: Vec<String> =
            self.assumed.keys().filter(|key| !listed.contains(*key)).cloned().collect();
        for key in vanished {
            self.assumed.remove(&key);
            self.snapshot.forget_volumes(&key);
        }
        self.reported.retain(|key, _| listed.contains(key));
        for pod in pods {
            self.pod_applied(pod);
        }
    }

    /// Takes in a node as the watch shows it now; pods backing off get another chance.
    pub fn node_applied(&mut self, node: Node) {
        self.snapshot.upsert_node(node);
        self.retry_all();
    }

    pub fn node_deleted(&mut self, name: &str) {
        self.snapshot.remove_node(name);
    }

    /// Replaces the nodes with a fresh list (after a watch restart).
    pub fn nodes_relisted(&mut self, nodes: Vec<Node>) {
        let listed: HashSet<String> =
            nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
        for name in self.snapshot.node_names() {
            if !listed.contains(&name) {
                self.snapshot.remove_node(&name);
            }
        }
        for node in nodes {
            self.snapshot.upsert_node(node);
        }
        self.retry_all();
    }

    /// Takes in a claim as the watch shows it now; pods backing off that use it get another
    /// chance (kube's queueing hint for PersistentVolumeClaim events).
    pub fn claim_applied(&mut self, claim: PersistentVolumeClaim) {
        let namespace = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        self.snapshot.upsert_claim(claim);
        let using: Vec<String> = self
            .parked
            .keys()
            .filter(|key| {
                self.waiting.get(*key).is_some_and(|w| uses_claim(&w.pod, &namespace, &name))
            })
            .cloned()
            .collect();
        for key in using {
            self.activate(&key);
        }
    }

    pub fn claim_deleted(&mut self, claim: &PersistentVolumeClaim) {
        let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
        self.snapshot.remove_claim(namespace, claim.metadata.name.as_deref().unwrap_or_default());
    }

    /// Replaces the claims with a fresh list (after a watch restart).
    pub fn claims_relisted(&mut self, claims: Vec<PersistentVolumeClaim>) {
        self.snapshot.claims_relisted(claims);
        self.retry_all();
    }

    /// Takes in a volume as the watch shows it now; pods backing off get another chance.
    pub fn volume_applied(&mut self, volume: PersistentVolume) {
        self.snapshot.upsert_volume(volume);
        self.retry_all();
    }

    pub fn volume_deleted(&mut self, name: &str) {
        self.snapshot.remove_volume(name);
    }

    /// Replaces the volumes with a fresh list (after a watch restart).
    pub fn volumes_relisted(&mut self, volumes: Vec<PersistentVolume>) {
        self.snapshot.volumes_relisted(volumes);
        self.retry_all();
    }

    /// Takes in a StorageClass as the watch shows it now; pods backing off get another chance.
    pub fn class_applied(&mut self, class: StorageClass) {
        self.snapshot.upsert_class(class);
        self.retry_all();
    }

    pub fn class_deleted(&mut self, name: &str) {
        self.snapshot.remove_class(name);
    }

    /// Replaces the StorageClasses with a fresh list (after a watch restart).
    pub fn classes_relisted(&mut self, classes: Vec<StorageClass>) {
        self.snapshot.classes_relisted(classes);
        self.retry_all();
    }

    /// Decides for up to `max` pods in scheduling order. Placed pods are assumed on their node;
    /// pods that fit nowhere back off (1 s, doubling up to 10 s).
    pub fn next_batch(&mut self, now: Instant, max: usize) -> Vec<Outcome> {
        self.release_due(now);
        let mut outcomes = Vec::new();
        while outcomes.len() < max {
            let Some((_, _, key)) = self.active.pop_first() else { break };
            let Some(waiting) = self.waiting.remove(&key) else { continue };
            let pod = waiting.pod;
            match schedule_from(&self.snapshot, &pod, self.next_start) {
                Ok(decision) => {
                    let nodes = self.snapshot.node_count().max(1);
                    self.next_start = (self.next_start + decision.examined) % nodes;
                    let node = decision.placement.node;
                    self.snapshot.add_pod(&pod, &node);
                    self.snapshot.assume_volumes(&key, &node, &decision.volumes);
                    self.backoff.remove(&key);
                    self.reported.remove(&key);
                    self.assumed.insert(key, (uid(&pod), pod.clone()));
                    outcomes.push(Outcome::Bind { pod, node, volumes: decision.volumes });
                }
                Err(unschedulable) => {
                    let changed = self.reported.get(&key) != Some(&unschedulable.message);
                    self.reported.insert(key.clone(), unschedulable.message.clone());
                    self.back_off(key, pod.clone(), now);
                    outcomes.push(Outcome::Unschedulable {
                        pod,
                        message: unschedulable.message,
                        changed,
                    });
                }
            }
        }
        outcomes
    }

    /// A binding failed: the pod leaves its node and backs off, unless the watch has since
    /// shown it bound, gone or replaced.
    pub fn binding_failed(&mut self, pod: &Pod, now: Instant) {
        let key = pod_key(pod);
        let Some((assumed_uid, assumed)) = self.assumed.get(&key) else { return };
        if *assumed_uid != uid(pod) {
            return;
        }
        let assumed = assumed.clone();
        self.assumed.remove(&key);
        self.snapshot.remove_pod_key(&key);
        self.snapshot.forget_volumes(&key);
        self.back_off(key, assumed, now);
    }

    /// Whether any pod is ready to be scheduled at `now`.
    pub fn has_work(&self, now: Instant) -> bool {
        !self.active.is_empty() || self.next_retry().is_some_and(|at| at <= now)
    }

    /// When the earliest backing-off pod is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.parked_by_time.first().map(|(at, _)| *at)
    }

    fn enqueue(&mut self, key: String, pod: Arc<Pod>) {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.arrivals += 1;
        let order = (Reverse(priority), self.arrivals);
        self.active.insert((order.0, order.1, key.clone()));
        self.waiting.insert(key, Waiting { pod, order: Some(order) });
    }

    fn back_off(&mut self, key: String, pod: Arc<Pod>, now: Instant) {
        let backoff = match self.backoff.get(&key) {
            Some(previous) => (*previous * 2).min(MAX_BACKOFF),
            None => FIRST_BACKOFF,
        };
        self.backoff.insert(key.clone(), backoff);
        self.park(key.clone(), now + backoff);
        self.waiting.insert(key, Waiting { pod, order: None });
    }

    fn forget_waiting(&mut self, key: &str) {
        if let Some(Waiting { order: Some((priority, arrival)), .. }) = self.waiting.remove(key) {
            self.active.remove(&(priority, arrival, key.to_string()));
        }
        self.unpark(key);
        self.backoff.remove(key);
    }

    /// Moves parked pods whose time has come back into the active queue.
    fn release_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .parked_by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, key)| key.clone())
            .collect();
        for key in due {
            self.activate(&key);
        }
    }

    /// Cluster capacity changed: every parked pod is tried again now.
    fn retry_all(&mut self) {
        let parked: Vec<String> = self.parked.keys().cloned().collect();
        for key in parked {
            self.activate(&key);
        }
    }

    fn park(&mut self, key: String, at: Instant) {
        self.unpark(&key);
        self.parked_by_time.insert((at, key.clone()));
        self.parked.insert(key, at);
    }

    fn unpark(&mut self, key: &str) {
        if let Some(at) = self.parked.remove(key) {
            self.parked_by_time.remove(&(at, key.to_string()));
        }
    }

    fn activate(&mut self, key: &str) {
        self.unpark(key);
        if let Some(waiting) = self.waiting.remove(key) {
            self.enqueue(key.to_string(), waiting.pod);
        }
    }
}

#[cfg(test)]
mod tests;
