//! Per-node pod management: duplicates, failed and finished pods, ownership, limits.

use super::*;

#[test]
fn duplicates_on_a_node_keep_the_oldest_scheduled_pod() {
    let hash = hash_of(&ds());
    // Each row: what it checks, pods on n1, pods expected deleted.
    let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
        (
            "newer duplicates go",
            vec![
                with(pod_on("agent-new", "n1", &hash), created_ago(60)),
                pod_on("agent-old", "n1", &hash),
                with(pod_on("agent-newest", "n1", &hash), created_ago(10)),
            ],
            vec!["agent-new", "agent-newest"],
        ),
        (
            "a scheduled pod beats an older unscheduled one",
            vec![
                with(pod_on("agent-pending", "n1", &hash), |pod| {
                    let spec = pod.spec.as_mut().unwrap();
                    spec.node_name = None;
                    spec.affinity = Some(placement::pin_to_node(None, "n1"));
                    pod.metadata.creation_timestamp = Some(ago(99_999));
                }),
                pod_on("agent-bound", "n1", &hash),
            ],
            vec!["agent-pending"],
        ),
        (
            "same age: the greater name goes",
            vec![pod_on("agent-b", "n1", &hash), pod_on("agent-a", "n1", &hash)],
            vec!["agent-b"],
        ),
        (
            "terminating pods are neither kept nor deleted again",
            vec![
                with(pod_on("agent-going", "n1", &hash), |pod| {
                    pod.metadata.deletion_timestamp = Some(ago(1));
                }),
                with(pod_on("agent-staying", "n1", &hash), created_ago(60)),
            ],
            vec![],
        ),
    ];
    for (what, pods, expected) in cases {
        let plan = steady(&ds(), &nodes(&["n1"]), &pods);
        assert_eq!(names(&plan.delete_pods), expected, "{what}");
        assert!(plan.create_pods.is_empty(), "{what}");
    }
}

#[test]
fn a_terminating_pod_delays_its_replacement() {
    let going = with(pod_on("agent-going", "n1", &hash_of(&ds())), |pod| {
        pod.metadata.deletion_timestamp = Some(ago(1));
    });
    let plan = steady(&ds(), &nodes(&["n1"]), &[going]);
    assert!(plan.create_pods.is_empty() && plan.delete_pods.is_empty());
}

#[test]
fn failed_pods_are_replaced_with_backoff() {
    let hash = hash_of(&ds());
    let failed = |name: &str| with(pod_on(name, "n1", &hash), phase("Failed"));
    let revisions = [revision_of(&ds(), 1)];
    let at = |millis: i64| now() + SignedDuration::from_millis(millis);
    let run = |pod: Pod, backoff: &FailedPodBackoff, millis: i64| {
        plan(&ds(), &nodes(&["n1"]), &[pod], &revisions, backoff, at(millis)).unwrap()
    };

    // --- the first failure is deleted at once, with a warning
    let first = run(failed("agent-1"), &FailedPodBackoff::new(), 0);
    assert_eq!(names(&first.delete_pods), ["agent-1"]);
    assert_eq!(
        first.events,
        [PlanEvent {
            type_: EventType::Warning,
            reason: reason::FAILED_DAEMON_POD,
            message: "Found failed daemon pod kube-system/agent-1 on node n1, will try to kill it"
                .into(),
        }]
    );
    assert!(first.create_pods.is_empty(), "the replacement comes once the failed pod is gone");

    // --- its replacement fails half a second later: wait out the one-second backoff
    let second = run(failed("agent-2"), &first.backoff, 500);
    assert!(second.delete_pods.is_empty() && second.events.is_empty());
    assert_eq!(second.recheck_after, Some(SignedDuration::from_millis(500)));

    // --- once the backoff ends it goes, and the next delay doubles
    let third = run(failed("agent-2"), &second.backoff, 1000);
    assert_eq!(names(&third.delete_pods), ["agent-2"]);
    let fourth = run(failed("agent-3"), &third.backoff, 2000);
    assert!(fourth.delete_pods.is_empty());
    assert_eq!(fourth.recheck_after, Some(SignedDuration::from_secs(1)));

    // --- a new template generation starts without delay
    let mut observed = ds();
    observed.status = Some(k8s_openapi::api::apps::v1::DaemonSetStatus {
        observed_generation: Some(7),
        ..Default::default()
    });
    let fresh = plan(
        &observed,
        &nodes(&["n1"]),
        &[failed("agent-3")],
        &revisions,
        &third.backoff,
        at(2000),
    )
    .unwrap();
    assert_eq!(names(&fresh.delete_pods), ["agent-3"]);
}

#[test]
fn succeeded_pods_are_deleted_to_be_recreated() {
    let done = with(pod_on("agent-done", "n1", &hash_of(&ds())), phase("Succeeded"));
    let plan = steady(&ds(), &nodes(&["n1"]), &[done]);
    assert_eq!(names(&plan.delete_pods), ["agent-done"]);
    assert_eq!(plan.events.len(), 1);
    assert_eq!(
        (plan.events[0].type_, plan.events[0].reason),
        (EventType::Normal, reason::SUCCEEDED_DAEMON_POD)
    );
}

#[test]
fn unscheduled_pods_for_vanished_nodes_are_deleted() {
    let hash = hash_of(&ds());
    let pending = with(pod_on("agent-pending", "gone", &hash), |pod| {
        let spec = pod.spec.as_mut().unwrap();
        spec.node_name = None;
        spec.affinity = Some(placement::pin_to_node(None, "gone"));
    });
    // A pod bound to a vanished node is the pod garbage collector's business.
    let bound = pod_on("agent-bound", "also-gone", &hash);
    let plan = steady(&ds(), &nodes(&["n1"]), &[pending, bound, pod_on("agent-1", "n1", &hash)]);
    assert_eq!(names(&plan.delete_pods), ["agent-pending"]);
}

#[test]
fn orphans_are_adopted_and_strays_released() {
    let hash = hash_of(&ds());
    let orphan =
        with(pod_on("agent-orphan", "n1", &hash), |pod| pod.metadata.owner_references = None);
    let stray = with(pod_on("agent-stray", "n2", &hash), |pod| {
        pod.metadata.labels = Some(labels(&[("app", "other")]));
    });
    let foreign = with(pod_on("agent-foreign", "n2", &hash), |pod| {
        pod.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
    });
    let unrelated = with(pod_on("web", "n2", &hash), |pod| {
        pod.metadata.owner_references = None;
        pod.metadata.labels = Some(labels(&[("app", "web")]));
    });
    let plan = steady(&ds(), &nodes(&["n1", "n2"]), &[orphan, stray, foreign, unrelated]);
    assert_eq!(names(&plan.adopt_pods), ["agent-orphan"]);
    assert_eq!(names(&plan.release_pods), ["agent-stray"]);
    // The adopted pod serves n1; n2 has only pods that are not ours.
    assert_eq!(pinned(&plan), ["n2"]);
}

#[test]
fn a_daemonset_being_deleted_gets_an_empty_plan() {
    let mut set = ds();
    set.metadata.deletion_timestamp = Some(ago(1));
    let backoff = FailedPodBackoff::new();
    let plan = plan(&set, &nodes(&["n1"]), &[], &[], &backoff, now()).unwrap();
    assert_eq!(plan, Plan::default());
}

#[test]
fn an_empty_selector_only_warns() {
    let mut set = ds();
    spec_mut(&mut set).selector = LabelSelector::default();
    let plan = plan_at(&set, &nodes(&["n1"]), &[], &[], now());
    assert!(plan.create_pods.is_empty() && plan.create_revision.is_none() && plan.status.is_none());
    assert_eq!(plan.events.len(), 1);
    assert_eq!((plan.events[0].type_, plan.events[0].reason), (EventType::Warning, "SelectingAll"));
}

#[test]
fn creations_are_limited_per_plan() {
    let many: Vec<Node> = (0..300).map(|i| node(&format!("n{i:03}"))).collect();
    let plan = steady(&ds(), &many, &[]);
    assert_eq!(plan.create_pods.len(), BURST);
    assert_eq!(plan.status.unwrap().desired_number_scheduled, 300);
}

#[test]
fn invalid_budgets_fail_the_plan() {
    let mut set = ds();
    rolling(&mut set, IntOrString::Int(1), Some(IntOrString::String("lots".into())));
    let result = plan(&set, &nodes(&["n1"]), &[], &[], &FailedPodBackoff::new(), now());
    assert_eq!(
        result,
        Err(PlanError::InvalidIntOrPercent { field: "maxSurge", value: "lots".into() })
    );
}
