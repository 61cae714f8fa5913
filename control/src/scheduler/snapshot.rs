//! Cluster state as the scheduler sees it: nodes with precomputed aggregates of the pods bound
//! to them, updated incrementally (`add_pod`/`remove_pod`) so a decision never rebuilds it, the
//! images the nodes hold, and the claims, volumes and StorageClasses pods' volumes depend on.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, Taint,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::images::{node_images, ImageStates};
use super::volumes::{Storage, VolumeBindings};
use crate::quantity;

/// Default requests the scheduler assumes for scoring when a container sets none
/// (`DefaultMilliCPURequest`, `DefaultMemoryRequest`).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Resource amounts: cpu in millicores, everything else in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
    /// Extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...), sorted by name.
    pub scalars: Vec<(String, i64)>,
}

impl Resources {
    fn from_map(map: &BTreeMap<String, i64>) -> Self {
        let mut r = Resources::default();
        for (k, v) in map {
            match k.as_str() {
                "cpu" => r.cpu = *v,
                "memory" => r.memory = *v,
                "ephemeral-storage" => r.ephemeral = *v,
                "pods" => {}
                _ => r.scalars.push((k.clone(), *v)),
            }
        }
        r
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalars.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
    }

    fn add(&mut self, other: &Resources, sign: i64) {
        self.cpu += sign * other.cpu;
        self.memory += sign * other.memory;
        self.ephemeral += sign * other.ephemeral;
        for (k, v) in &other.scalars {
            match self.scalars.iter_mut().find(|(n, _)| n == k) {
                Some((_, cur)) => *cur += sign * v,
                None => self.scalars.push((k.clone(), sign * v)),
            }
        }
    }
}

fn amount(name: &str, q: &str) -> i64 {
    if name == "cpu" {
        quantity::milli(q)
    } else {
        quantity::value(q)
    }
}

fn container_requests(c: &Container, non_zero: bool) -> BTreeMap<String, i64> {
    let mut m: BTreeMap<String, i64> = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|reqs| reqs.iter().map(|(k, v)| (k.clone(), amount(k, &v.0))).collect())
        .unwrap_or_default();
    if non_zero {
        m.entry("cpu".into()).or_insert(DEFAULT_MILLI_CPU);
        m.entry("memory".into()).or_insert(DEFAULT_MEMORY);
    }
    m
}

fn add_into(acc: &mut BTreeMap<String, i64>, other: &BTreeMap<String, i64>) {
    for (k, v) in other {
        *acc.entry(k.clone()).or_insert(0) += v;
    }
}

fn max_into(acc: &mut BTreeMap<String, i64>, other: &BTreeMap<String, i64>) {
    for (k, v) in other {
        let e = acc.entry(k.clone()).or_insert(0);
        *e = (*e).max(*v);
    }
}

/// Effective pod requests as `resourcehelper.PodRequests` computes them: the sum of regular and
/// sidecar (restartable init) containers, at least the largest init container step, plus overhead.
pub(crate) fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut reqs = BTreeMap::new();
    for c in &spec.containers {
        add_into(&mut reqs, &container_requests(c, non_zero));
    }
    let mut sidecars = BTreeMap::new();
    let mut init_max = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let mut step = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut reqs, &step);
            add_into(&mut sidecars, &step);
            step = sidecars.clone();
        } else {
            add_into(&mut step, &sidecars);
        }
        max_into(&mut init_max, &step);
    }
    max_into(&mut reqs, &init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        for (k, v) in overhead {
            *reqs.entry(k.clone()).or_insert(0) += amount(k, &v.0);
        }
    }
    Resources::from_map(&reqs)
}

/// A compiled label selector. `None` selector matches nothing; an empty one matches everything.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    nothing: bool,
    reqs: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    pub fn new(sel: Option<&LabelSelector>) -> Self {
        let Some(sel) = sel else { return Selector { nothing: true, reqs: Vec::new() } };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push((k.clone(), "In".to_string(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            reqs.push((e.key.clone(), e.operator.clone(), e.values.clone().unwrap_or_default()));
        }
        Selector { nothing: false, reqs }
    }

    /// Adds `key In (value)` for each key the pod carries (`matchLabelKeys`).
    pub fn with_label_keys(mut self, keys: &[String], labels: &BTreeMap<String, String>) -> Self {
        for k in keys {
            if let Some(v) = labels.get(k) {
                self.reqs.push((k.clone(), "In".to_string(), vec![v.clone()]));
            }
        }
        self
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing
            && self.reqs.iter().all(|(k, op, vals)| {
                let v = labels.get(k);
                match op.as_str() {
                    "In" => v.is_some_and(|v| vals.contains(v)),
                    "NotIn" => v.is_none_or(|v| !vals.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    _ => false,
                }
            })
    }
}

/// A pod (anti-)affinity term with its selector compiled and namespaces resolved.
#[derive(Debug, Clone)]
pub(crate) struct AffinityTerm {
    pub selector: Selector,
    /// `None` = all namespaces (empty `namespaceSelector`).
    pub namespaces: Option<Vec<String>>,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, own_ns: &str, labels: &BTreeMap<String, String>) -> Self {
        let listed = t.namespaces.clone().unwrap_or_default();
        // An empty namespaceSelector selects all namespaces. A non-empty one would need Namespace
        // objects, which the snapshot does not hold: simplification, it selects none.
        let all = t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
        });
        let namespaces = if all {
            None
        } else if listed.is_empty() && t.namespace_selector.is_none() {
            Some(vec![own_ns.to_string()])
        } else {
            Some(listed)
        };
        let selector = Selector::new(t.label_selector.as_ref())
            .with_label_keys(t.match_label_keys.as_deref().unwrap_or_default(), labels);
        AffinityTerm { selector, namespaces, topology_key: t.topology_key.clone() }
    }

    pub fn matches(&self, pod: &PodInfo) -> bool {
        self.namespaces.as_ref().is_none_or(|ns| ns.contains(&pod.namespace))
            && self.selector.matches(&pod.labels)
    }
}

/// A host port in use: (ip, protocol, port).
pub(crate) type HostPort = (String, String, i32);

/// What the scheduler needs to know about a pod, computed once per pod.
#[derive(Debug, Clone)]
pub(crate) struct PodInfo {
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    pub non_zero: Resources,
    pub ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti: Vec<(i32, AffinityTerm)>,
}

pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl PodInfo {
    pub fn new(pod: &Pod) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let mut ports = Vec::new();
        for c in
            spec.iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    let ip = p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into());
                    let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                    ports.push((ip, proto, hp));
                }
            }
        }
        let aff = spec.and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        let term = |t: &PodAffinityTerm| AffinityTerm::new(t, &namespace, &labels);
        let required_affinity = pa
            .and_then(|p| p.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ts| ts.iter().map(term).collect())
            .unwrap_or_default();
        let required_anti = paa
            .and_then(|p| p.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ts| ts.iter().map(term).collect())
            .unwrap_or_default();
        let preferred_affinity = pa
            .and_then(|p| p.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|ts| ts.iter().map(|w| (w.weight, term(&w.pod_affinity_term))).collect())
            .unwrap_or_default();
        let preferred_anti = paa
            .and_then(|p| p.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|ts| ts.iter().map(|w| (w.weight, term(&w.pod_affinity_term))).collect())
            .unwrap_or_default();
        PodInfo {
            key: pod_key(pod),
            requests: pod_requests(pod, false),
            non_zero: pod_requests(pod, true),
            ports,
            required_affinity,
            required_anti,
            preferred_affinity,
            preferred_anti,
            namespace,
            labels,
        }
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti.is_empty())
    }
}

/// A node with the aggregates of the pods bound to it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<PodInfo>,
    pub ports: Vec<HostPort>,
    /// Pods here with required anti-affinity terms / with any affinity terms.
    pub pods_with_required_anti: usize,
    pub pods_with_affinity: usize,
    /// The image names the node lists in `status.images`, without repeats.
    pub images: Vec<String>,
}

impl NodeInfo {
    fn new(node: &Node) -> Self {
        let mut n = NodeInfo {
            name: String::new(),
            labels: BTreeMap::new(),
            unschedulable: false,
            taints: Vec::new(),
            allocatable: Resources::default(),
            allowed_pods: 0,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            ports: Vec::new(),
            pods_with_required_anti: 0,
            pods_with_affinity: 0,
            images: Vec::new(),
        };
        n.set_node(node);
        n
    }

    fn set_node(&mut self, node: &Node) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let alloc: BTreeMap<String, i64> = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| a.iter().map(|(k, v)| (k.clone(), amount(k, &v.0))).collect())
            .unwrap_or_default();
        self.allowed_pods = alloc.get("pods").copied().unwrap_or(0);
        self.allocatable = Resources::from_map(&alloc);
    }

    fn add(&mut self, p: PodInfo) {
        self.requested.add(&p.requests, 1);
        self.non_zero_requested.add(&p.non_zero, 1);
        self.ports.extend(p.ports.iter().cloned());
        self.pods_with_required_anti += usize::from(!p.required_anti.is_empty());
        self.pods_with_affinity += usize::from(p.has_affinity());
        self.pods.push(p);
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else { return false };
        let p = self.pods.swap_remove(i);
        self.requested.add(&p.requests, -1);
        self.non_zero_requested.add(&p.non_zero, -1);
        for port in &p.ports {
            if let Some(j) = self.ports.iter().position(|x| x == port) {
                self.ports.swap_remove(j);
            }
        }
        self.pods_with_required_anti -= usize::from(!p.required_anti.is_empty());
        self.pods_with_affinity -= usize::from(p.has_affinity());
        true
    }
}

/// The scheduler's view of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by name.
    pub(crate) nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// pod key -> node name, for `remove_pod`.
    pod_node: HashMap<String, String>,
    /// Pods bound to nodes the snapshot does not know yet; attached on `upsert_node`.
    orphans: HashMap<String, Vec<PodInfo>>,
    /// Totals over all nodes, so inter-pod work is skipped when no pod uses affinity.
    pub(crate) pods_with_required_anti: usize,
    pub(crate) pods_with_affinity: usize,
    /// How many nodes hold each image name.
    pub(crate) images: ImageStates,
    /// Claims, volumes and StorageClasses.
    pub(crate) storage: Storage,
}

/// Whether the pod has finished (`Succeeded` or `Failed`): it no longer uses its node.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

impl Snapshot {
    /// Builds a snapshot; pods with `spec.nodeName` set count on that node, terminal pods don't.
    #[cfg(test)]
    pub fn new(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let mut s = Snapshot::default();
        for n in nodes {
            s.upsert_node(n);
        }
        for p in &pods {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                if !node.is_empty() && !is_terminal(p) {
                    s.add_pod(p, node);
                }
            }
        }
        s
    }

    /// Records `pod` as bound to `node` (replacing any earlier binding of the same pod).
    pub fn add_pod(&mut self, pod: &Pod, node: &str) {
        self.remove_pod(pod);
        let info = PodInfo::new(pod);
        self.pod_node.insert(info.key.clone(), node.to_string());
        self.pods_with_required_anti += usize::from(!info.required_anti.is_empty());
        self.pods_with_affinity += usize::from(info.has_affinity());
        match self.index.get(node) {
            Some(&i) => self.nodes[i].add(info),
            None => self.orphans.entry(node.to_string()).or_default().push(info),
        }
    }

    /// Forgets `pod` (by namespace/name) wherever it was bound.
    pub fn remove_pod(&mut self, pod: &Pod) {
        self.remove_pod_key(&pod_key(pod));
    }

    /// Forgets the pod with key `namespace/name` wherever it was bound.
    pub fn remove_pod_key(&mut self, key: &str) {
        let key = key.to_string();
        let Some(node) = self.pod_node.remove(&key) else { return };
        let removed = match self.index.get(&node) {
            Some(&i) => {
                let n = &mut self.nodes[i];
                let p = n
                    .pods
                    .iter()
                    .find(|p| p.key == key)
                    .map(|p| (p.required_anti.is_empty(), p.has_affinity()));
                n.remove(&key);
                p
            }
            None => self.orphans.get_mut(&node).and_then(|v| {
                let i = v.iter().position(|p| p.key == key)?;
                let p = v.swap_remove(i);
                Some((p.required_anti.is_empty(), p.has_affinity()))
            }),
        };
        if let Some((no_anti, has_aff)) = removed {
            self.pods_with_required_anti -= usize::from(!no_anti);
            self.pods_with_affinity -= usize::from(has_aff);
        }
    }

    /// Adds a node or updates its labels, taints, allocatable and images; bound pods are kept.
    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let images = node_images(&node);
        let names: Vec<String> = images.iter().map(|(name, _)| name.clone()).collect();
        if let Some(&i) = self.index.get(&name) {
            self.images.remove_node(self.nodes[i].images.iter());
            self.images.add_node(&images);
            self.nodes[i].set_node(&node);
            self.nodes[i].images = names;
            return;
        }
        self.images.add_node(&images);
        let mut info = NodeInfo::new(&node);
        info.images = names;
        for p in self.orphans.remove(&name).unwrap_or_default() {
            info.add(p);
        }
        // Nodes stay sorted by name so ties go to the first node scanned. Node churn is rare,
        // so the O(n) insert and re-index are acceptable.
        let at = self.nodes.partition_point(|n| n.name < name);
        self.nodes.insert(at, info);
        self.reindex(at);
    }

    fn reindex(&mut self, from: usize) {
        for (i, n) in self.nodes.iter().enumerate().skip(from) {
            self.index.insert(n.name.clone(), i);
        }
    }

    /// Removes a node; its pods are kept as orphans until the node returns or they are removed.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        let info = self.nodes.remove(i);
        self.reindex(i);
        self.images.remove_node(info.images.iter());
        if !info.pods.is_empty() {
            self.orphans.insert(info.name, info.pods);
        }
    }

    /// Takes in a PersistentVolumeClaim as the watch shows it now.
    pub fn upsert_claim(&mut self, claim: PersistentVolumeClaim) {
        self.storage.upsert_claim(claim);
    }

    pub fn remove_claim(&mut self, namespace: &str, name: &str) {
        self.storage.remove_claim(namespace, name);
    }

    /// Replaces every PersistentVolumeClaim (after a watch restart).
    pub fn claims_relisted(&mut self, claims: Vec<PersistentVolumeClaim>) {
        self.storage.claims_relisted(claims);
    }

    /// Takes in a PersistentVolume as the watch shows it now.
    pub fn upsert_volume(&mut self, volume: PersistentVolume) {
        self.storage.upsert_volume(volume);
    }

    pub fn remove_volume(&mut self, name: &str) {
        self.storage.remove_volume(name);
    }

    /// Replaces every PersistentVolume (after a watch restart).
    pub fn volumes_relisted(&mut self, volumes: Vec<PersistentVolume>) {
        self.storage.volumes_relisted(volumes);
    }

    /// Takes in a StorageClass as the watch shows it now.
    pub fn upsert_class(&mut self, class: StorageClass) {
        self.storage.upsert_class(class);
    }

    pub fn remove_class(&mut self, name: &str) {
        self.storage.remove_class(name);
    }

    /// Replaces every StorageClass (after a watch restart).
    pub fn classes_relisted(&mut self, classes: Vec<StorageClass>) {
        self.storage.classes_relisted(classes);
    }

    /// Counts the volume bindings of the pod with key `pod`, placed on `node`, as made until the
    /// watch shows them (or [`Snapshot::forget_volumes`] takes them back).
    pub fn assume_volumes(&mut self, pod: &str, node: &str, bindings: &VolumeBindings) {
        self.storage.assume(pod, node, bindings);
    }

    /// Takes back the volume bindings assumed for the pod with key `pod`.
    pub fn forget_volumes(&mut self, pod: &str) {
        self.storage.forget(pod);
    }

    /// The names of the nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The keys (`namespace/name`) of the pods counted on nodes.
    pub fn pod_keys(&self) -> Vec<String> {
        self.pod_node.keys().cloned().collect()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Requested (cpu millicores, memory bytes, pod count) on a node.
    #[cfg(test)]
    pub fn requested(&self, node: &str) -> Option<(i64, i64, usize)> {
        let n = &self.nodes[*self.index.get(node)?];
        Some((n.requested.cpu, n.requested.memory, n.pods.len()))
    }
}
