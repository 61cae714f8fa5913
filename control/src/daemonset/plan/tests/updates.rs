//! RollingUpdate (with and without surge) and OnDelete.

use super::*;

const FIVE: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

/// Five nodes each running an available pod of the image agent:1, and the DaemonSet moved on
/// to agent:2 under `strategy`.
fn updated_over_five(strategy: impl FnOnce(&mut DaemonSet)) -> (DaemonSet, Vec<Pod>, String) {
    let old_hash = hash_of(&ds());
    let pods = FIVE.iter().map(|node| pod_on(&format!("agent-{node}"), node, &old_hash)).collect();
    let mut set = ds();
    strategy(&mut set);
    set_image(&mut set, "agent:2");
    (set, pods, old_hash)
}

#[test]
fn rolling_update_deletes_within_max_unavailable() {
    let pct = |text: &str| IntOrString::String(text.into());
    let available_new =
        |node: &str, set: &DaemonSet| pod_on(&format!("agent-{node}"), node, &hash_of(set));
    // Each row: what it checks, maxUnavailable, pod changes, expected deletions.
    type Change = Box<dyn Fn(&DaemonSet, &mut Vec<Pod>)>;
    let none: fn() -> Change = || Box::new(|_, _| {});
    let cases: Vec<(&str, IntOrString, Change, Vec<&str>)> = vec![
        ("one at a time", IntOrString::Int(1), none(), vec!["agent-n1"]),
        ("two at a time", IntOrString::Int(2), none(), vec!["agent-n1", "agent-n2"]),
        ("25% of 5 rounds up to 2", pct("25%"), none(), vec!["agent-n1", "agent-n2"]),
        ("10% of 5 rounds up to 1", pct("10%"), none(), vec!["agent-n1"]),
        (
            "an updated pod not yet available uses the budget",
            IntOrString::Int(1),
            Box::new(move |set, pods| {
                pods[0] = with(available_new("n1", set), not_ready);
            }),
            vec![],
        ),
        (
            "updated available pods leave the budget to old ones",
            IntOrString::Int(1),
            Box::new(move |set, pods| pods[0] = available_new("n1", set)),
            vec!["agent-n2"],
        ),
        (
            "unavailable old pods are replaced regardless of the budget",
            IntOrString::Int(1),
            Box::new(|_, pods| {
                not_ready(&mut pods[2]);
                not_ready(&mut pods[3]);
            }),
            vec!["agent-n3", "agent-n4"],
        ),
        (
            "a node whose pod is terminating counts as unavailable",
            IntOrString::Int(2),
            Box::new(|_, pods| pods[4].metadata.deletion_timestamp = Some(ago(1))),
            vec!["agent-n1"],
        ),
    ];
    for (what, max_unavailable, change, expected) in cases {
        let (set, mut pods, _) =
            updated_over_five(|set| rolling(set, max_unavailable.clone(), None));
        change(&set, &mut pods);
        let plan = plan_at(&set, &nodes(&FIVE), &pods, &[revision_of(&set, 2)], now());
        assert_eq!(names(&plan.delete_pods), expected, "{what}");
        assert!(plan.create_pods.is_empty(), "{what}: replacements come once old pods are gone");
    }
}

#[test]
fn rolling_update_waits_for_other_work() {
    // n5 needs a pod: the plan creates it and leaves the rolling update to a later plan, as
    // Kubernetes waits until its own creations are observed.
    let (set, mut pods, _) = updated_over_five(|set| rolling(set, IntOrString::Int(3), None));
    pods.remove(4);
    let plan = plan_at(&set, &nodes(&FIVE), &pods, &[revision_of(&set, 2)], now());
    assert_eq!(pinned(&plan), ["n5"]);
    assert!(plan.delete_pods.is_empty());
}

#[test]
fn a_rollout_never_exceeds_max_unavailable_and_finishes() {
    let six = ["n1", "n2", "n3", "n4", "n5", "n6"];
    let mut set = ds();
    rolling(&mut set, IntOrString::Int(2), None);
    let mut cluster = Cluster::new(set, nodes(&six));

    // --- bring the DaemonSet up
    for _ in 0..3 {
        cluster.step();
        cluster.tick(1);
    }
    assert_eq!(cluster.available_nodes(), 6);

    // --- roll to agent:2 and watch availability at every step
    set_image(&mut cluster.ds, "agent:2");
    let new_hash = hash_of(&cluster.ds);
    let mut steps = 0;
    while cluster.pods_with_hash(&new_hash) < 6 || cluster.available_nodes() < 6 {
        cluster.step();
        assert!(cluster.available_nodes() >= 4, "at most 2 of 6 nodes unavailable");
        assert!(cluster.pods.len() <= 6, "never two pods on a node without surge");
        cluster.tick(1);
        steps += 1;
        assert!(steps < 50, "the rollout finishes");
    }
    cluster.step();
    let status = cluster.ds.status.clone().unwrap();
    assert_eq!(status.updated_number_scheduled, Some(6));
    assert_eq!(status.number_available, Some(6));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(cluster.revisions.len(), 2, "both templates stay in the history");
}

#[test]
fn a_surging_rollout_keeps_every_node_available() {
    let six = ["n1", "n2", "n3", "n4", "n5", "n6"];
    let mut set = ds();
    rolling(&mut set, IntOrString::Int(0), Some(IntOrString::Int(2)));
    let mut cluster = Cluster::new(set, nodes(&six));
    for _ in 0..3 {
        cluster.step();
        cluster.tick(1);
    }
    assert_eq!(cluster.available_nodes(), 6);

    set_image(&mut cluster.ds, "agent:2");
    let new_hash = hash_of(&cluster.ds);
    let mut steps = 0;
    while cluster.pods_with_hash(&new_hash) < 6 || cluster.pods.len() > 6 {
        cluster.step();
        assert_eq!(cluster.available_nodes(), 6, "surge never takes a node down");
        assert!(cluster.pods.len() <= 6 + 2, "at most maxSurge extra pods");
        cluster.tick(1);
        steps += 1;
        assert!(steps < 50, "the rollout finishes");
    }
}

#[test]
fn surge_table() {
    let surge = |set: &mut DaemonSet| {
        rolling(set, IntOrString::Int(0), Some(IntOrString::String("50%".into())));
    };
    // 50% of 5 rounds up to 3 nodes at a time.
    let (set, pods, _) = updated_over_five(surge);
    let plan = plan_at(&set, &nodes(&FIVE), &pods, &[revision_of(&set, 2)], now());
    assert_eq!(pinned(&plan), ["n1", "n2", "n3"]);
    assert!(plan.delete_pods.is_empty(), "old pods stay until their replacement is available");

    // n1's new pod is available: its old pod goes. n2's is not yet: it holds a surge slot.
    let (set, mut pods, _) = updated_over_five(surge);
    let new_hash = hash_of(&set);
    pods.push(with(pod_on("agent-n1-new", "n1", &new_hash), created_ago(60)));
    pods.push(with(pod_on("agent-n2-new", "n2", &new_hash), |pod| {
        not_ready(pod);
        pod.metadata.creation_timestamp = Some(ago(30));
    }));
    let plan = plan_at(&set, &nodes(&FIVE), &pods, &[revision_of(&set, 2)], now());
    assert_eq!(names(&plan.delete_pods), ["agent-n1"]);
    assert!(plan.create_pods.is_empty(), "manage had work, so the rolling step waits");

    // Without the deletion pending, the rolling step surges onto two more nodes (3 - 1 busy).
    let (set, mut pods, _) = updated_over_five(surge);
    pods[0] = pod_on("agent-n1-new", "n1", &new_hash);
    pods.push(with(pod_on("agent-n2-new", "n2", &new_hash), |pod| {
        not_ready(pod);
        pod.metadata.creation_timestamp = Some(ago(30));
    }));
    let plan = plan_at(&set, &nodes(&FIVE), &pods, &[revision_of(&set, 2)], now());
    assert!(plan.delete_pods.is_empty());
    assert_eq!(pinned(&plan), ["n3", "n4"]);
}

#[test]
fn surge_replaces_a_ready_old_pod_only_once_the_new_one_is_available() {
    let (set, _, old_hash) =
        updated_over_five(|set| rolling(set, IntOrString::Int(0), Some(IntOrString::Int(1))));
    let new_hash = hash_of(&set);
    let old = pod_on("agent-old", "n1", &old_hash);
    let fresh = |ready: bool| {
        with(pod_on("agent-new", "n1", &new_hash), move |pod| {
            pod.metadata.creation_timestamp = Some(ago(40));
            let condition = ready_condition(if ready { "True" } else { "False" }, ago(30));
            pod.status.as_mut().unwrap().conditions = Some(vec![condition]);
        })
    };
    let mut slow = set.clone();
    spec_mut(&mut slow).min_ready_seconds = Some(60);
    // Each row: what it checks, DaemonSet, pods on n1, expected deletions.
    let cases: Vec<(&str, &DaemonSet, Vec<Pod>, Vec<&str>)> = vec![
        ("new not ready: both stay", &set, vec![old.clone(), fresh(false)], vec![]),
        ("new available: old goes", &set, vec![old.clone(), fresh(true)], vec!["agent-old"]),
        (
            "new ready but not for minReadySeconds: both stay",
            &slow,
            vec![old.clone(), fresh(true)],
            vec![],
        ),
        (
            "old not ready any more: old goes",
            &set,
            vec![with(old.clone(), not_ready), fresh(false)],
            vec!["agent-old"],
        ),
    ];
    for (what, set, pods, expected) in cases {
        let plan = plan_at(set, &nodes(&["n1"]), &pods, &[revision_of(set, 2)], now());
        assert_eq!(names(&plan.delete_pods), expected, "{what}");
    }
}

#[test]
fn on_delete_replaces_only_pods_the_user_deleted() {
    let (set, pods, _) = updated_over_five(on_delete);
    let plan = plan_at(&set, &nodes(&FIVE), &pods, &[revision_of(&set, 2)], now());
    assert!(plan.delete_pods.is_empty() && plan.create_pods.is_empty());
    let status = plan.status.unwrap();
    assert_eq!(status.updated_number_scheduled, None, "no pod runs the new template");
    assert_eq!(status.desired_number_scheduled, 5);

    // The user deletes the pod on n3: its replacement runs the new template.
    let remaining: Vec<Pod> =
        pods.into_iter().filter(|pod| pod.metadata.name.as_deref() != Some("agent-n3")).collect();
    let plan = plan_at(&set, &nodes(&FIVE), &remaining, &[revision_of(&set, 2)], now());
    assert_eq!(pinned(&plan), ["n3"]);
    assert!(plan.delete_pods.is_empty());
    let labels = plan.create_pods[0].metadata.labels.clone().unwrap();
    assert_eq!(labels.get(CONTROLLER_REVISION_HASH_LABEL), Some(&hash_of(&set)));
}
