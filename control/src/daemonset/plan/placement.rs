//! Where a DaemonSet's pods belong and what they look like, as Kubernetes'
//! `NodeShouldRunDaemonPod`, `util.AddOrUpdateDaemonPodTolerations`, `util.CreatePodTemplate`
//! and `util.ReplaceDaemonSetPodNodeNameNodeAffinity` decide it.
//!
//! Invariants:
//! - Placement is judged for the pod the controller would create: the template plus the
//!   tolerations every daemon pod gets, so a cordoned or pressured node still runs daemons.
//! - A created pod carries exactly one required node-affinity term, `matchFields metadata.name
//!   In [node]`, so the default scheduler binds it to that node and nowhere else; this is safe
//!   because the node was checked against the template's own affinity first.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};

use crate::nodes::{term_matches, tolerates, NODE_NAME_FIELD};

/// Whether a DaemonSet wants its pod on a node (Kubernetes' `NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod should be created on the node when it has none.
    pub should_run: bool,
    /// A daemon pod already on the node may stay (it tolerates every `NoExecute` taint even if
    /// a `NoSchedule` one now keeps new pods off).
    pub should_continue_running: bool,
}

/// Judges nodes for one DaemonSet template.
pub(super) struct Placer<'a> {
    node_name: Option<&'a str>,
    node_selector: Option<&'a BTreeMap<String, String>>,
    required_terms: Option<&'a [NodeSelectorTerm]>,
    tolerations: Vec<Toleration>,
}

impl<'a> Placer<'a> {
    pub(super) fn new(template: &'a PodSpec) -> Self {
        let mut with_daemon = template.tolerations.clone();
        add_daemon_tolerations(&mut with_daemon, template.host_network == Some(true));
        Placer {
            node_name: template.node_name.as_deref().filter(|name| !name.is_empty()),
            node_selector: template.node_selector.as_ref(),
            required_terms: template
                .affinity
                .as_ref()
                .and_then(|affinity| affinity.node_affinity.as_ref())
                .and_then(|node| node.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|selector| selector.node_selector_terms.as_slice()),
            tolerations: with_daemon.unwrap_or_default(),
        }
    }

    pub(super) fn place(&self, node: &Node) -> Placement {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if self.node_name.is_some_and(|wanted| wanted != name) || !self.fits_affinity(node) {
            return Placement::default();
        }
        let taints = node.spec.as_ref().and_then(|spec| spec.taints.as_deref()).unwrap_or_default();
        let untolerated = |effects: &[&str]| {
            taints.iter().any(|taint| {
                effects.contains(&taint.effect.as_str())
                    && !self.tolerations.iter().any(|toleration| tolerates(toleration, taint))
            })
        };
        if untolerated(&["NoSchedule", "NoExecute"]) {
            Placement { should_run: false, should_continue_running: !untolerated(&["NoExecute"]) }
        } else {
            Placement { should_run: true, should_continue_running: true }
        }
    }

    /// The node passes the template's nodeSelector and required node affinity (Kubernetes'
    /// `GetRequiredNodeAffinity(pod).Match(node)`, parse errors counting as no match).
    fn fits_affinity(&self, node: &Node) -> bool {
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if let Some(selector) = self.node_selector {
            if !selector.iter().all(|(key, value)| labels.get(key) == Some(value)) {
                return false;
            }
        }
        let name = node.metadata.name.as_deref().unwrap_or_default();
        self.required_terms
            .is_none_or(|terms| terms.iter().any(|term| term_matches(term, labels, name)))
    }
}

/// Adds the tolerations every daemon pod carries (Kubernetes' `AddOrUpdateDaemonPodTolerations`):
/// it survives not-ready and unreachable nodes forever and ignores the pressure, unschedulable
/// and (for host-network pods) network-unavailable taints.
pub(super) fn add_daemon_tolerations(
    tolerations: &mut Option<Vec<Toleration>>,
    host_network: bool,
) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        add_or_update(
            list,
            Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some(effect.to_owned()),
                value: None,
                toleration_seconds: None,
            },
        );
    }
}

/// Kubernetes' `AddOrUpdateTolerationInPodSpec`: a toleration with the same key, operator, value
/// and effect is replaced (dropping, say, its `tolerationSeconds`); otherwise it is appended.
fn add_or_update(list: &mut Vec<Toleration>, toleration: Toleration) {
    let text = |field: &Option<String>| field.clone().unwrap_or_default();
    let same = |existing: &Toleration| {
        text(&existing.key) == text(&toleration.key)
            && text(&existing.operator) == text(&toleration.operator)
            && text(&existing.value) == text(&toleration.value)
            && text(&existing.effect) == text(&toleration.effect)
    };
    let mut found = false;
    for existing in list.iter_mut().filter(|existing| same(existing)) {
        *existing = toleration.clone();
        found = true;
    }
    if !found {
        list.push(toleration);
    }
}

/// Replaces the required node affinity with the single term `metadata.name In [node]`
/// (Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`); preferred and pod affinities stay.
pub(super) fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let terms = vec![NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.to_owned(),
            operator: "In".to_owned(),
            values: Some(vec![node.to_owned()]),
        }]),
    }];
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default)
        .node_selector_terms = terms;
    affinity
}

/// The node a daemon pod is for: its `nodeName`, or before binding the single value of its
/// `matchFields metadata.name In` requirement (Kubernetes' `GetTargetNodeName`).
pub(super) fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|name| !name.is_empty()) {
        return Some(name);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let requirement = terms
        .iter()
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|field| field.key == NODE_NAME_FIELD && field.operator == "In")?;
    match requirement.values.as_deref() {
        Some([name]) => Some(name.as_str()),
        _ => None,
    }
}

/// The template with the daemon tolerations added, for building pods from.
pub(super) fn daemon_template(template: &PodTemplateSpec) -> PodSpec {
    let mut spec = template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut spec.tolerations, spec.host_network == Some(true));
    spec
}
