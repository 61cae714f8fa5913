//! Filter plugins, run per node in kube-scheduler's default order; a node's reasons come from
//! the first plugin that rejects it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    NodeSelectorTerm, Pod, Taint, Toleration, TopologySpreadConstraint,
};

pub(crate) use crate::nodes::tolerates;

use super::images::pod_images;
use super::snapshot::{NodeInfo, PodInfo, Selector, Snapshot};
use super::volumes::{prefilter, PodVolumes, Storage};

pub(crate) const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub(crate) const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub(crate) const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub(crate) const ERR_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub(crate) const ERR_TOO_MANY_PODS: &str = "Too many pods";
pub(crate) const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub(crate) const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub(crate) const ERR_EXISTING_ANTI: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub(crate) const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub(crate) const ERR_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Why one node was rejected. `resolvable` = plain `Unschedulable` (preemption might help),
/// otherwise `UnschedulableAndUnresolvable`.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub reasons: Vec<Cow<'static, str>>,
    pub resolvable: bool,
}

fn reject(reason: &'static str, resolvable: bool) -> Rejection {
    Rejection { reasons: vec![Cow::Borrowed(reason)], resolvable }
}

/// A node selector term against a node in the snapshot.
pub(crate) fn term_matches(t: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    crate::nodes::term_matches(t, &node.labels, &node.name)
}

/// Per-decision state computed once before the nodes are filtered (kube's PreFilter).
pub(crate) struct PodContext<'a> {
    pub pod: &'a Pod,
    pub info: PodInfo,
    pub tolerations: &'a [Toleration],
    node_name: Option<&'a str>,
    node_selector: Option<&'a BTreeMap<String, String>>,
    required_terms: Option<&'a [NodeSelectorTerm]>,
    /// Inter-pod affinity: counts per (topologyKey, value); empty when the pod has no terms.
    affinity_counts: HashMap<(String, String), i64>,
    anti_counts: HashMap<(String, String), i64>,
    existing_anti_counts: HashMap<(String, String), i64>,
    spread: Vec<SpreadConstraint>,
    storage: &'a Storage,
    /// The pod's claims as VolumeBinding's PreFilter sorted them.
    pub volumes: PodVolumes,
    /// Why VolumeBinding's PreFilter rejects the pod on every node, if it does.
    pub volume_rejection: Option<String>,
    /// The normalized images of the pod's init containers and containers, for ImageLocality.
    pub images: Vec<String>,
}

/// A compiled topology spread constraint with its per-domain counts.
pub(crate) struct SpreadConstraint {
    pub max_skew: i64,
    pub key: String,
    pub selector: Selector,
    pub self_match: i64,
    pub counts: HashMap<String, i64>,
    pub min: i64,
}

impl<'a> PodContext<'a> {
    pub fn new(snapshot: &'a Snapshot, pod: &'a Pod) -> Self {
        let info = PodInfo::new(pod);
        let spec = pod.spec.as_ref();
        let required_terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|s| s.node_selector_terms.as_slice());
        let (volumes, volume_rejection) = match prefilter(&snapshot.storage, pod) {
            Ok(volumes) => (volumes, None),
            Err(reason) => (PodVolumes::default(), Some(reason)),
        };
        let mut ctx = PodContext {
            pod,
            tolerations: spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()),
            node_selector: spec.and_then(|s| s.node_selector.as_ref()),
            required_terms,
            affinity_counts: HashMap::new(),
            anti_counts: HashMap::new(),
            existing_anti_counts: HashMap::new(),
            spread: Vec::new(),
            storage: &snapshot.storage,
            volumes,
            volume_rejection,
            // Nothing to score when no node reports images.
            images: if snapshot.images.is_empty() { Vec::new() } else { pod_images(pod) },
            info,
        };
        ctx.prepare_inter_pod(snapshot);
        let constraints =
            spec.and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default();
        ctx.spread = ctx.compile_spread(snapshot, constraints, "DoNotSchedule", true);
        ctx
    }

    fn prepare_inter_pod(&mut self, snapshot: &Snapshot) {
        let info = &self.info;
        let own_terms = !info.required_affinity.is_empty() || !info.required_anti.is_empty();
        if !own_terms && snapshot.pods_with_required_anti == 0 {
            return;
        }
        for node in &snapshot.nodes {
            if !own_terms && node.pods_with_required_anti == 0 {
                continue;
            }
            for existing in &node.pods {
                if !info.required_affinity.is_empty()
                    && info.required_affinity.iter().all(|t| t.matches(existing))
                {
                    for t in &info.required_affinity {
                        if let Some(v) = node.labels.get(&t.topology_key) {
                            *self
                                .affinity_counts
                                .entry((t.topology_key.clone(), v.clone()))
                                .or_insert(0) += 1;
                        }
                    }
                }
                for t in info.required_anti.iter().filter(|t| t.matches(existing)) {
                    if let Some(v) = node.labels.get(&t.topology_key) {
                        *self
                            .anti_counts
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_insert(0) += 1;
                    }
                }
                for t in existing.required_anti.iter().filter(|t| t.matches(info)) {
                    if let Some(v) = node.labels.get(&t.topology_key) {
                        *self
                            .existing_anti_counts
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_insert(0) += 1;
                    }
                }
            }
        }
    }

    /// Whether the node passes the pod's nodeSelector and required node affinity.
    pub fn node_affinity_ok(&self, node: &NodeInfo) -> bool {
        if let Some(sel) = self.node_selector {
            if !sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
                return false;
            }
        }
        self.required_terms.is_none_or(|terms| terms.iter().any(|t| term_matches(t, node)))
    }

    fn untolerated<'n>(&self, node: &'n NodeInfo) -> Option<&'n Taint> {
        node.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !self.tolerations.iter().any(|t| tolerates(t, taint))
        })
    }

    /// Compiles the constraints with `when` and counts matching pods per domain over the nodes
    /// that have every constraint key and pass the node-inclusion policies.
    pub fn compile_spread(
        &self,
        snapshot: &Snapshot,
        constraints: &[TopologySpreadConstraint],
        when: &str,
        with_min: bool,
    ) -> Vec<SpreadConstraint> {
        let mut out: Vec<SpreadConstraint> = Vec::new();
        let mut honor_affinity = Vec::new();
        let mut honor_taints = Vec::new();
        for c in constraints.iter().filter(|c| c.when_unsatisfiable == when) {
            let selector = Selector::new(c.label_selector.as_ref()).with_label_keys(
                c.match_label_keys.as_deref().unwrap_or_default(),
                &self.info.labels,
            );
            out.push(SpreadConstraint {
                max_skew: i64::from(c.max_skew),
                key: c.topology_key.clone(),
                self_match: i64::from(selector.matches(&self.info.labels)),
                selector,
                counts: HashMap::new(),
                min: i64::from(c.min_domains.unwrap_or(1)),
            });
            honor_affinity.push(c.node_affinity_policy.as_deref() != Some("Ignore"));
            honor_taints.push(c.node_taints_policy.as_deref() == Some("Honor"));
        }
        if out.is_empty() {
            return out;
        }
        for node in &snapshot.nodes {
            if !out.iter().all(|c| node.labels.contains_key(&c.key)) {
                continue;
            }
            let aff_ok = self.node_affinity_ok(node);
            let taints_ok = self.untolerated(node).is_none();
            for (i, c) in out.iter_mut().enumerate() {
                if (honor_affinity[i] && !aff_ok) || (honor_taints[i] && !taints_ok) {
                    continue;
                }
                let matching = node
                    .pods
                    .iter()
                    .filter(|p| p.namespace == self.info.namespace && c.selector.matches(&p.labels))
                    .count() as i64;
                if let Some(v) = node.labels.get(&c.key) {
                    *c.counts.entry(v.clone()).or_insert(0) += matching;
                }
            }
        }
        if with_min {
            for c in &mut out {
                let min_domains = c.min;
                c.min = if (c.counts.len() as i64) < min_domains {
                    0
                } else {
                    c.counts.values().copied().min().unwrap_or(0)
                };
            }
        }
        out
    }

    /// Runs every filter on `node`; `None` = feasible.
    pub fn filter(&self, node: &NodeInfo) -> Option<Rejection> {
        // NodeUnschedulable
        if node.unschedulable {
            let taint = Taint {
                key: "node.kubernetes.io/unschedulable".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            };
            if !self.tolerations.iter().any(|t| tolerates(t, &taint)) {
                return Some(reject(ERR_UNSCHEDULABLE, false));
            }
        }
        // NodeName
        if self.node_name.is_some_and(|n| n != node.name) {
            return Some(reject(ERR_NODE_NAME, false));
        }
        // TaintToleration
        if let Some(t) = self.untolerated(node) {
            let msg = format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            );
            return Some(Rejection { reasons: vec![Cow::Owned(msg)], resolvable: false });
        }
        // NodeAffinity
        if !self.node_affinity_ok(node) {
            return Some(reject(ERR_NODE_AFFINITY, false));
        }
        // NodePorts
        if self.info.ports.iter().any(|(ip, proto, port)| {
            node.ports.iter().any(|(eip, eproto, eport)| {
                eport == port
                    && eproto == proto
                    && (eip == ip || eip == "0.0.0.0" || ip == "0.0.0.0")
            })
        }) {
            return Some(reject(ERR_PORTS, true));
        }
        // NodeResourcesFit
        if let Some(r) = self.fit(node) {
            return Some(r);
        }
        // VolumeBinding
        if let Some(r) = self.volumes.filter(self.storage, node) {
            return Some(r);
        }
        // PodTopologySpread
        for c in &self.spread {
            let Some(v) = node.labels.get(&c.key) else {
                return Some(reject(ERR_SPREAD_LABEL, false));
            };
            let count = c.counts.get(v).copied().unwrap_or(0);
            if count + c.self_match - c.min > c.max_skew {
                return Some(reject(ERR_SPREAD, true));
            }
        }
        // InterPodAffinity
        self.inter_pod(node)
    }

    fn fit(&self, node: &NodeInfo) -> Option<Rejection> {
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        if node.pods.len() as i64 + 1 > node.allowed_pods {
            reasons.push(Cow::Borrowed(ERR_TOO_MANY_PODS));
        }
        let req = &self.info.requests;
        let (a, u) = (&node.allocatable, &node.requested);
        if req.cpu > 0 && req.cpu > a.cpu - u.cpu {
            reasons.push(Cow::Borrowed("Insufficient cpu"));
        }
        if req.memory > 0 && req.memory > a.memory - u.memory {
            reasons.push(Cow::Borrowed("Insufficient memory"));
        }
        if req.ephemeral > 0 && req.ephemeral > a.ephemeral - u.ephemeral {
            reasons.push(Cow::Borrowed("Insufficient ephemeral-storage"));
        }
        for (name, want) in &req.scalars {
            if *want > 0 && *want > a.scalar(name) - u.scalar(name) {
                reasons.push(Cow::Owned(format!("Insufficient {name}")));
            }
        }
        (!reasons.is_empty()).then_some(Rejection { reasons, resolvable: true })
    }

    fn inter_pod(&self, node: &NodeInfo) -> Option<Rejection> {
        let info = &self.info;
        if !info.required_affinity.is_empty() {
            let mut pods_exist = true;
            for t in &info.required_affinity {
                let Some(v) = node.labels.get(&t.topology_key) else {
                    return Some(reject(ERR_AFFINITY, false));
                };
                if self
                    .affinity_counts
                    .get(&(t.topology_key.clone(), v.clone()))
                    .copied()
                    .unwrap_or(0)
                    <= 0
                {
                    pods_exist = false;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere with the keys.
            let first_of_group = self.affinity_counts.is_empty()
                && info.required_affinity.iter().all(|t| t.matches(info));
            if !pods_exist && !first_of_group {
                return Some(reject(ERR_AFFINITY, false));
            }
        }
        for t in &info.required_anti {
            if let Some(v) = node.labels.get(&t.topology_key) {
                if self.anti_counts.get(&(t.topology_key.clone(), v.clone())).copied().unwrap_or(0)
                    > 0
                {
                    return Some(reject(ERR_ANTI_AFFINITY, true));
                }
            }
        }
        for ((k, v), n) in &self.existing_anti_counts {
            if *n > 0 && node.labels.get(k) == Some(v) {
                return Some(reject(ERR_EXISTING_ANTI, true));
            }
        }
        None
    }
}
