//! Which nodes run a daemon pod, and what the pod created there looks like.

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm, Toleration,
};

use super::*;

fn toleration(key: &str, operator: &str, effect: Option<&str>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some(operator.into()),
        effect: effect.map(Into::into),
        value: None,
        toleration_seconds: None,
    }
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: Some(values.iter().map(|value| (*value).to_owned()).collect()),
    }
}

fn expressions(requirements: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm { match_expressions: Some(requirements), match_fields: None }
}

fn fields(requirements: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm { match_expressions: None, match_fields: Some(requirements) }
}

fn required(terms: Vec<NodeSelectorTerm>) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            preferred_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

type Change = Box<dyn Fn(&mut PodSpec)>;

fn unchanged() -> Change {
    Box::new(|_| {})
}

#[test]
fn placement_table() {
    let select = |key: &'static str, value: &'static str| -> Change {
        Box::new(move |spec: &mut PodSpec| spec.node_selector = Some(labels(&[(key, value)])))
    };
    let tolerate = |tolerations: Vec<Toleration>| -> Change {
        Box::new(move |spec: &mut PodSpec| spec.tolerations = Some(tolerations.clone()))
    };
    let affinity = |terms: Vec<NodeSelectorTerm>| -> Change {
        Box::new(move |spec: &mut PodSpec| spec.affinity = Some(required(terms.clone())))
    };
    let host_network: Change = Box::new(|spec: &mut PodSpec| spec.host_network = Some(true));
    let pinned_elsewhere: Change =
        Box::new(|spec: &mut PodSpec| spec.node_name = Some("n2".into()));
    let run = (true, true);
    let keep = (false, true);
    let never = (false, false);

    // Each row: what it checks, template change, node, (should run, should continue running).
    let cases: Vec<(&str, Change, Node, (bool, bool))> = vec![
        ("a plain node runs it", unchanged(), node("n1"), run),
        ("nodeSelector matches", select("disk", "ssd"), labelled(node("n1"), "disk", "ssd"), run),
        ("nodeSelector misses", select("disk", "ssd"), labelled(node("n1"), "disk", "hdd"), never),
        (
            "untolerated NoSchedule keeps old pods",
            unchanged(),
            tainted(node("n1"), "gpu", "NoSchedule"),
            keep,
        ),
        (
            "untolerated NoExecute evicts",
            unchanged(),
            tainted(node("n1"), "gpu", "NoExecute"),
            never,
        ),
        (
            "PreferNoSchedule is ignored",
            unchanged(),
            tainted(node("n1"), "gpu", "PreferNoSchedule"),
            run,
        ),
        (
            "a toleration admits the node",
            tolerate(vec![toleration("gpu", "Exists", Some("NoSchedule"))]),
            tainted(node("n1"), "gpu", "NoSchedule"),
            run,
        ),
        (
            "a toleration without effect covers NoExecute too",
            tolerate(vec![toleration("gpu", "Exists", None)]),
            tainted(node("n1"), "gpu", "NoExecute"),
            run,
        ),
        (
            "an Equal toleration needs the value",
            tolerate(vec![Toleration {
                value: Some("a100".into()),
                ..toleration("gpu", "Equal", None)
            }]),
            tainted(node("n1"), "gpu", "NoSchedule"),
            keep,
        ),
        (
            "cordoned nodes still run daemons",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/unschedulable", "NoSchedule"),
            run,
        ),
        (
            "not-ready nodes keep daemons",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/not-ready", "NoExecute"),
            run,
        ),
        (
            "unreachable nodes keep daemons",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/unreachable", "NoExecute"),
            run,
        ),
        (
            "disk pressure is tolerated",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/disk-pressure", "NoSchedule"),
            run,
        ),
        (
            "memory pressure is tolerated",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/memory-pressure", "NoSchedule"),
            run,
        ),
        (
            "pid pressure is tolerated",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/pid-pressure", "NoSchedule"),
            run,
        ),
        (
            "network-unavailable blocks pod-network daemons",
            unchanged(),
            tainted(node("n1"), "node.kubernetes.io/network-unavailable", "NoSchedule"),
            keep,
        ),
        (
            "network-unavailable admits host-network daemons",
            host_network,
            tainted(node("n1"), "node.kubernetes.io/network-unavailable", "NoSchedule"),
            run,
        ),
        (
            "required affinity In matches",
            affinity(vec![expressions(vec![requirement("zone", "In", &["a", "b"])])]),
            labelled(node("n1"), "zone", "b"),
            run,
        ),
        (
            "required affinity In misses",
            affinity(vec![expressions(vec![requirement("zone", "In", &["a"])])]),
            labelled(node("n1"), "zone", "c"),
            never,
        ),
        (
            "terms are alternatives",
            affinity(vec![
                expressions(vec![requirement("zone", "In", &["a"])]),
                expressions(vec![requirement("role", "Exists", &[])]),
            ]),
            labelled(node("n1"), "role", "edge"),
            run,
        ),
        (
            "Gt compares integers",
            affinity(vec![expressions(vec![requirement("cores", "Gt", &["8"])])]),
            labelled(node("n1"), "cores", "16"),
            run,
        ),
        (
            "matchFields In names the node",
            affinity(vec![fields(vec![requirement("metadata.name", "In", &["n1"])])]),
            node("n1"),
            run,
        ),
        (
            "matchFields NotIn excludes the node",
            affinity(vec![fields(vec![requirement("metadata.name", "NotIn", &["n1"])])]),
            node("n1"),
            never,
        ),
        (
            "an empty term matches nothing",
            affinity(vec![NodeSelectorTerm::default()]),
            node("n1"),
            never,
        ),
        (
            "an invalid term matches nothing",
            affinity(vec![expressions(vec![requirement("zone", "In", &[])])]),
            labelled(node("n1"), "zone", "a"),
            never,
        ),
        ("a template nodeName elsewhere excludes the node", pinned_elsewhere, node("n1"), never),
    ];
    for (what, change, node, (should_run, should_continue_running)) in cases {
        let mut set = ds();
        change(template_spec(&mut set));
        let expected = Placement { should_run, should_continue_running };
        assert_eq!(node_should_run(&set, &node), expected, "{what}");
    }
}

#[test]
fn a_new_node_gets_a_pod_pinned_to_it() {
    let plan = steady(&ds(), &nodes(&["n1", "n2"]), &[pod_on("agent-a", "n1", &hash_of(&ds()))]);
    assert_eq!(pinned(&plan), ["n2"]);
    assert!(plan.delete_pods.is_empty());
    let pod = &plan.create_pods[0];
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(pod.metadata.owner_references, Some(vec![controller_ref()]));
    let pod_labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(pod_labels.get("app").map(String::as_str), Some("agent"));
    assert_eq!(pod_labels.get(CONTROLLER_REVISION_HASH_LABEL), Some(&hash_of(&ds())));
    assert!(!pod_labels.contains_key(TEMPLATE_GENERATION_LABEL), "no generation annotation");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name, None, "the scheduler binds it");
    assert_eq!(
        spec.affinity,
        Some(required(vec![fields(vec![requirement("metadata.name", "In", &["n2"])])]))
    );
    let tolerated: Vec<(String, String)> = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| (t.key.clone().unwrap(), t.effect.clone().unwrap()))
        .collect();
    assert_eq!(
        tolerated,
        [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ]
        .map(|(k, e)| (k.to_owned(), e.to_owned()))
    );
    assert!(spec.tolerations.iter().flatten().all(|t| t.operator.as_deref() == Some("Exists")));
}

#[test]
fn created_pods_carry_the_template_generation_when_annotated() {
    let mut set = ds();
    set.metadata.annotations = Some(labels(&[(TEMPLATE_GENERATION_ANNOTATION, "4")]));
    let plan = plan_at(&set, &nodes(&["n1"]), &[], &[], now());
    let pod_labels = plan.create_pods[0].metadata.labels.clone().unwrap();
    assert_eq!(pod_labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str), Some("4"));
}

#[test]
fn pinning_replaces_required_terms_and_keeps_preferences() {
    let mut set = ds();
    let preferred = vec![PreferredSchedulingTerm {
        weight: 10,
        preference: expressions(vec![requirement("fast", "Exists", &[])]),
    }];
    let mut affinity = required(vec![
        expressions(vec![requirement("zone", "In", &["a"])]),
        fields(vec![requirement("metadata.name", "In", &["n1", "n9"])]),
    ]);
    affinity.node_affinity.as_mut().unwrap().preferred_during_scheduling_ignored_during_execution =
        Some(preferred.clone());
    template_spec(&mut set).affinity = Some(affinity);
    template_spec(&mut set).host_network = Some(true);
    template_spec(&mut set).tolerations = Some(vec![Toleration {
        toleration_seconds: Some(300),
        ..toleration("node.kubernetes.io/not-ready", "Exists", Some("NoExecute"))
    }]);

    let plan = steady(&set, &[labelled(node("n1"), "zone", "a")], &[]);
    let spec = plan.create_pods[0].spec.as_ref().unwrap();
    let node_affinity = spec.affinity.as_ref().unwrap().node_affinity.as_ref().unwrap();
    assert_eq!(
        node_affinity.required_during_scheduling_ignored_during_execution,
        Some(NodeSelector {
            node_selector_terms: vec![fields(vec![requirement("metadata.name", "In", &["n1"])])]
        })
    );
    assert_eq!(node_affinity.preferred_during_scheduling_ignored_during_execution, Some(preferred));
    let tolerations = spec.tolerations.clone().unwrap();
    let not_ready: Vec<_> = tolerations
        .iter()
        .filter(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready"))
        .collect();
    assert_eq!(not_ready.len(), 1);
    assert_eq!(not_ready[0].toleration_seconds, None, "daemons tolerate not-ready forever");
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable")),
        "host-network daemons tolerate an unavailable network"
    );
}

#[test]
fn a_tainted_node_without_toleration_gets_no_pod() {
    let cluster = [node("n1"), tainted(node("n2"), "dedicated", "NoSchedule")];
    let plan = steady(&ds(), &cluster, &[]);
    assert_eq!(pinned(&plan), ["n1"]);
    assert_eq!(plan.status.unwrap().desired_number_scheduled, 1);
}

#[test]
fn node_selector_limits_nodes_and_removes_misplaced_pods() {
    let mut set = ds();
    template_spec(&mut set).node_selector = Some(labels(&[("role", "edge")]));
    let cluster = [labelled(node("n1"), "role", "edge"), node("n2")];
    let pods = [pod_on("agent-old", "n2", &hash_of(&set))];
    let plan = steady(&set, &cluster, &pods);
    assert_eq!(pinned(&plan), ["n1"]);
    assert_eq!(names(&plan.delete_pods), ["agent-old"]);
    assert_eq!(plan.delete_pods[0].uid.as_deref(), Some("uid-agent-old"));
    let status = plan.status.unwrap();
    assert_eq!((status.desired_number_scheduled, status.number_misscheduled), (1, 1));
}

#[test]
fn no_execute_taints_evict_and_no_schedule_taints_do_not() {
    let hash = hash_of(&ds());
    let cluster = [
        tainted(node("n1"), "maintenance", "NoSchedule"),
        tainted(node("n2"), "maintenance", "NoExecute"),
    ];
    let pods = [pod_on("agent-1", "n1", &hash), pod_on("agent-2", "n2", &hash)];
    let plan = steady(&ds(), &cluster, &pods);
    assert!(plan.create_pods.is_empty());
    assert_eq!(names(&plan.delete_pods), ["agent-2"]);
    // Both count as misscheduled: neither node should get a new daemon pod.
    let status = plan.status.unwrap();
    assert_eq!((status.desired_number_scheduled, status.number_misscheduled), (0, 2));
}
