use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference, Time,
};

use super::*;

const UID: &str = "rs-uid";

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> Time {
    Time(now() - SignedDuration::from_secs(seconds))
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

/// A ReplicaSet "web" selecting app=web whose template adds tier=front.
fn rs(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..LabelSelector::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "web"), ("tier", "front")]),
                    annotations: labels(&[("note", "hi")]),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "nginx".into(),
                        image: Some("nginx:1.27".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn controller_ref(uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "some-rs".into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// An owned, fully labeled pod, running on n1 and ready for an hour, created two hours ago.
fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: labels(&[("app", "web"), ("tier", "front")]),
            owner_references: Some(vec![controller_ref(UID)]),
            creation_timestamp: Some(ago(7200)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec { node_name: Some("n1".into()), ..PodSpec::default() }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![ready_condition("True", Some(ago(3600)))]),
            ..PodStatus::default()
        }),
    }
}

fn ready_condition(status: &str, since: Option<Time>) -> PodCondition {
    PodCondition {
        type_: "Ready".into(),
        status: status.into(),
        last_transition_time: since,
        ..PodCondition::default()
    }
}

fn with(mut pod: Pod, change: impl FnOnce(&mut Pod)) -> Pod {
    change(&mut pod);
    pod
}

fn not_ready(pod: &mut Pod) {
    pod.status.as_mut().unwrap().conditions = Some(vec![ready_condition("False", Some(ago(10)))]);
}

fn ready_since(seconds: i64) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| {
        pod.status.as_mut().unwrap().conditions =
            Some(vec![ready_condition("True", Some(ago(seconds)))]);
    }
}

fn phase(phase: &'static str) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| pod.status.as_mut().unwrap().phase = Some(phase.into())
}

fn orphan(pod: &mut Pod) {
    pod.metadata.owner_references = None;
}

fn terminating(pod: &mut Pod) {
    pod.metadata.deletion_timestamp = Some(ago(1));
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn scale_up_from_zero_creates_the_missing_pods() {
    let plan = plan(&rs(3), &[], now()).unwrap();
    assert_eq!(plan.create, 3);
    assert!(plan.delete.is_empty() && plan.adopt.is_empty() && plan.release.is_empty());
    let status = plan.status.unwrap();
    assert_eq!((status.replicas, status.observed_generation), (0, Some(2)));
}

#[test]
fn scale_down_deletes_the_most_deletable_pods_in_order() {
    let pods = [
        with(pod("ready-old"), |_| {}),
        with(pod("running-not-ready"), not_ready),
        with(pod("pending"), |pod| {
            not_ready(pod);
            pod.status.as_mut().unwrap().phase = Some("Pending".into());
        }),
        with(pod("ready-new"), ready_since(60)),
        with(pod("unscheduled"), |pod| {
            not_ready(pod);
            pod.status.as_mut().unwrap().phase = Some("Pending".into());
            pod.spec.as_mut().unwrap().node_name = None;
        }),
    ];
    let plan = plan(&rs(2), &pods, now()).unwrap();
    assert_eq!(plan.create, 0);
    assert_eq!(plan.delete, names(&["unscheduled", "pending", "running-not-ready"]));
}

#[test]
fn deletion_ranking_table() {
    // Each row: what it checks, the pod to delete first, the pod to keep.
    let restarts = |count: i32| {
        move |pod: &mut Pod| {
            pod.status.as_mut().unwrap().container_statuses =
                Some(vec![ContainerStatus { restart_count: count, ..ContainerStatus::default() }]);
        }
    };
    let cost = |value: &'static str| {
        move |pod: &mut Pod| {
            pod.metadata.annotations = labels(&[(POD_DELETION_COST_ANNOTATION, value)]);
        }
    };
    let cases: Vec<(&str, Pod, Pod)> = vec![
        (
            "unassigned before assigned",
            with(pod("a"), |pod| pod.spec.as_mut().unwrap().node_name = None),
            pod("b"),
        ),
        (
            "pending before unknown",
            with(pod("a"), phase("Pending")),
            with(pod("b"), phase("Unknown")),
        ),
        ("unknown before running", with(pod("b"), phase("Unknown")), pod("a")),
        ("not ready before ready", with(pod("b"), not_ready), pod("a")),
        ("lower deletion cost first", with(pod("b"), cost("-5")), with(pod("a"), cost("10"))),
        ("ready for less time first", with(pod("b"), ready_since(60)), pod("a")),
        (
            "missing ready time first",
            with(pod("b"), |pod| {
                pod.status.as_mut().unwrap().conditions = Some(vec![ready_condition("True", None)]);
            }),
            pod("a"),
        ),
        ("more restarts first", with(pod("b"), restarts(4)), with(pod("a"), restarts(1))),
        (
            "newer before older",
            with(pod("b"), |pod| pod.metadata.creation_timestamp = Some(ago(60))),
            pod("a"),
        ),
        ("name breaks ties", pod("a"), pod("b")),
    ];
    for (case, first, kept) in cases {
        let expected = first.metadata.name.clone().unwrap();
        for pods in [[first.clone(), kept.clone()], [kept, first]] {
            let plan = plan(&rs(1), &pods, now()).unwrap();
            assert_eq!(plan.delete, vec![expected.clone()], "{case}");
        }
    }
}

#[test]
fn pods_doubled_up_on_a_node_are_deleted_first() {
    let on = |node: &'static str| {
        move |pod: &mut Pod| pod.spec.as_mut().unwrap().node_name = Some(node.into())
    };
    let pods = [with(pod("a"), on("n2")), with(pod("b"), on("n1")), with(pod("c"), on("n1"))];
    let plan = plan(&rs(2), &pods, now()).unwrap();
    assert_eq!(plan.delete, names(&["b"]));
}

#[test]
fn matching_orphan_is_adopted_and_counted() {
    let pods = [
        pod("owned"),
        with(pod("orphan"), orphan),
        with(pod("orphan-other-app"), |pod| {
            orphan(pod);
            pod.metadata.labels = labels(&[("app", "db")]);
        }),
        with(pod("orphan-terminating"), |pod| {
            orphan(pod);
            terminating(pod);
        }),
        with(pod("orphan-other-namespace"), |pod| {
            orphan(pod);
            pod.metadata.namespace = Some("other".into());
        }),
    ];
    let plan = plan(&rs(2), &pods, now()).unwrap();
    assert_eq!(plan.adopt, names(&["orphan"]));
    assert_eq!((plan.create, plan.delete.len()), (0, 0));
    assert_eq!(plan.status.unwrap().replicas, 2);
}

#[test]
fn relabeled_owned_pod_is_released_and_replaced() {
    let pods = [
        pod("kept"),
        with(pod("relabeled"), |pod| pod.metadata.labels = labels(&[("app", "debug")])),
    ];
    let plan = plan(&rs(2), &pods, now()).unwrap();
    assert_eq!(plan.release, names(&["relabeled"]));
    assert_eq!(plan.create, 1);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.status.unwrap().replicas, 1);
}

#[test]
fn pods_of_another_controller_are_ignored() {
    let foreign =
        |pod: &mut Pod| pod.metadata.owner_references = Some(vec![controller_ref("other")]);
    let pods = [with(pod("foreign"), foreign)];
    let plan = plan(&rs(1), &pods, now()).unwrap();
    assert_eq!(plan.create, 1);
    assert!(plan.adopt.is_empty() && plan.release.is_empty() && plan.delete.is_empty());

    // A non-controller owner does not make a pod anyone's: it is an orphan and is adopted.
    let shared = with(pod("shared"), |pod| {
        pod.metadata.owner_references =
            Some(vec![OwnerReference { controller: None, ..controller_ref("other") }]);
    });
    assert_eq!(plan_of(1, &[shared]).adopt, names(&["shared"]));
}

fn plan_of(replicas: i32, pods: &[Pod]) -> Plan {
    plan(&rs(replicas), pods, now()).unwrap()
}

#[test]
fn inactive_pods_are_not_counted_nor_deleted_again() {
    let pods = [
        pod("running"),
        with(pod("terminating"), terminating),
        with(pod("failed"), phase("Failed")),
        with(pod("succeeded"), phase("Succeeded")),
        with(pod("terminating-relabeled"), |pod| {
            terminating(pod);
            pod.metadata.labels = None;
        }),
    ];
    let up = plan_of(2, &pods);
    assert_eq!(up.create, 1, "one replacement for the three inactive pods");
    assert!(up.release.is_empty(), "inactive pods are not released");
    assert_eq!(up.status.unwrap().replicas, 1);

    let down = plan_of(0, &pods);
    assert_eq!(down.delete, names(&["running"]));
}

#[test]
fn creates_and_deletes_are_capped_at_the_burst() {
    assert_eq!(plan_of(1200, &[]).create, BURST);
    let pods: Vec<Pod> = (0..BURST + 100).map(|i| pod(&format!("p{i:04}"))).collect();
    let plan = plan_of(0, &pods);
    assert_eq!(plan.delete.len(), BURST);
    assert_eq!(plan.status.unwrap().replicas, 600);
}

#[test]
fn status_counts_ready_available_and_fully_labeled_pods() {
    let mut set = rs(5);
    set.spec.as_mut().unwrap().min_ready_seconds = Some(30);
    let condition = ReplicaSetCondition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        ..ReplicaSetCondition::default()
    };
    set.status =
        Some(ReplicaSetStatus { conditions: Some(vec![condition.clone()]), ..Default::default() });
    let pods = [
        pod("available"),
        with(pod("ready-10s"), ready_since(10)),
        with(pod("ready-exactly-30s"), ready_since(30)),
        with(pod("not-ready"), not_ready),
        with(pod("partly-labeled"), |pod| pod.metadata.labels = labels(&[("app", "web")])),
    ];
    let plan = plan(&set, &pods, now()).unwrap();
    let status = plan.status.clone().unwrap();
    assert_eq!(status.replicas, 5);
    assert_eq!(status.fully_labeled_replicas, Some(4));
    assert_eq!(status.ready_replicas, Some(4));
    assert_eq!(status.available_replicas, Some(2), "available and partly-labeled");
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.conditions, Some(vec![condition]), "conditions are kept");
    assert_eq!(plan.recheck_after, Some(SignedDuration::from_secs(1)), "ready-exactly-30s");

    // The same status again is not written.
    set.status = Some(status);
    let again = super::plan(&set, &pods, now()).unwrap();
    assert_eq!(again.status, None);

    // Without minReadySeconds every ready pod is available and nothing needs a recheck.
    set.spec.as_mut().unwrap().min_ready_seconds = None;
    let plain = super::plan(&set, &pods, now()).unwrap();
    assert_eq!(plain.status.unwrap().available_replicas, Some(4));
    assert_eq!(plain.recheck_after, None);
}

#[test]
fn zero_counters_compare_equal_to_a_stored_status() {
    let mut set = rs(0);
    set.status = Some(ReplicaSetStatus {
        replicas: 0,
        ready_replicas: Some(0),
        observed_generation: Some(2),
        ..ReplicaSetStatus::default()
    });
    assert_eq!(plan(&set, &[], now()).unwrap(), Plan::default());
}

#[test]
fn deleted_replicaset_creates_adopts_and_releases_nothing() {
    let mut set = rs(3);
    set.metadata.deletion_timestamp = Some(ago(5));
    let pods = [
        pod("owned"),
        with(pod("orphan"), orphan),
        with(pod("relabeled"), |pod| pod.metadata.labels = labels(&[("app", "debug")])),
    ];
    let plan = plan(&set, &pods, now()).unwrap();
    assert_eq!(plan.create, 0);
    assert!(plan.adopt.is_empty() && plan.release.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.unwrap().replicas, 1);
}

#[test]
fn invalid_selectors_are_rejected() {
    let expression = |operator: &str, values: Option<Vec<&str>>| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app".into(),
            operator: operator.into(),
            values: values.map(|values| values.into_iter().map(String::from).collect()),
        }]),
        ..LabelSelector::default()
    };
    let cases = [
        ("empty", LabelSelector::default()),
        (
            "empty maps",
            LabelSelector { match_labels: labels(&[]), match_expressions: Some(vec![]) },
        ),
        ("In without values", expression("In", None)),
        ("NotIn with empty values", expression("NotIn", Some(vec![]))),
        ("Exists with values", expression("Exists", Some(vec!["web"]))),
        ("unknown operator", expression("Gt", Some(vec!["1"]))),
    ];
    for (case, selector) in cases {
        let mut set = rs(1);
        set.spec.as_mut().unwrap().selector = selector;
        let result = plan(&set, &[], now());
        assert!(matches!(result, Err(PlanError::InvalidSelector { .. })), "{case}: {result:?}");
    }
}

#[test]
fn selector_matching_table() {
    let requirement = |operator: &str, values: &[&str]| LabelSelectorRequirement {
        key: "env".into(),
        operator: operator.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    };
    // Each row: requirement on "env", pod labels, whether it matches (app=web is always required).
    let cases = [
        (requirement("In", &["prod", "stage"]), &[("env", "prod")][..], true),
        (requirement("In", &["prod"]), &[("env", "dev")][..], false),
        (requirement("In", &["prod"]), &[][..], false),
        (requirement("NotIn", &["prod"]), &[("env", "dev")][..], true),
        (requirement("NotIn", &["prod"]), &[][..], true),
        (requirement("NotIn", &["prod"]), &[("env", "prod")][..], false),
        (requirement("Exists", &[]), &[("env", "")][..], true),
        (requirement("Exists", &[]), &[][..], false),
        (requirement("DoesNotExist", &[]), &[][..], true),
        (requirement("DoesNotExist", &[]), &[("env", "dev")][..], false),
    ];
    for (requirement, extra, expected) in cases {
        let selector = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: Some(vec![requirement.clone()]),
        };
        let parsed = Selector::parse(&selector).unwrap();
        let mut pod_labels = labels(&[("app", "web")]).unwrap();
        pod_labels.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        assert_eq!(
            parsed.matches(Some(&pod_labels)),
            expected,
            "{requirement:?} on {pod_labels:?}"
        );
        assert!(!parsed.matches(None), "a pod without labels never matches");
    }
}

#[test]
fn pod_from_template_copies_the_template_and_points_at_the_replicaset() {
    let set = rs(1);
    let pod = pod_from_template(&set).unwrap();
    let template = set.spec.as_ref().unwrap().template.clone().unwrap();
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(pod.metadata.labels, template.metadata.as_ref().unwrap().labels);
    assert_eq!(pod.metadata.annotations, template.metadata.as_ref().unwrap().annotations);
    assert_eq!(pod.spec, template.spec);
    assert_eq!(
        pod.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            uid: UID.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );

    let mut no_template = rs(1);
    no_template.spec.as_mut().unwrap().template = None;
    assert_eq!(
        pod_from_template(&no_template),
        Err(PlanError::MissingField { field: "spec.template" })
    );
}
