//! The status `kubectl get ds` and `kubectl rollout status ds` read.

use k8s_openapi::api::apps::v1::DaemonSetStatus;

use super::*;

#[test]
fn status_counts_each_desired_node_by_its_oldest_pod() {
    let mut set = ds();
    set.metadata.generation = Some(3);
    let current = hash_of(&set);
    let cluster = [
        node("n1"),
        node("n2"),
        node("n3"),
        node("n4"),
        node("n5"),
        tainted(node("n6"), "gone", "NoExecute"),
    ];
    let pods = [
        pod_on("up-to-date", "n1", &current),
        pod_on("outdated", "n2", "old-hash"),
        with(pod_on("starting", "n3", &current), not_ready),
        // n4's only pod failed and is being deleted: the node counts as unscheduled.
        with(pod_on("gone", "n4", &current), |pod| {
            pod.status.as_mut().unwrap().phase = Some("Failed".into());
            pod.metadata.deletion_timestamp = Some(ago(1));
        }),
        // n5 counts by its oldest pod: outdated and not ready.
        with(pod_on("n5-old", "n5", "old-hash"), not_ready),
        with(pod_on("n5-new", "n5", &current), created_ago(60)),
        pod_on("evicted", "n6", &current),
    ];
    let status = steady(&set, &cluster, &pods).status.unwrap();
    assert_eq!(
        status,
        DaemonSetStatus {
            desired_number_scheduled: 5,
            current_number_scheduled: 4,
            number_misscheduled: 1,
            number_ready: 2,
            number_available: Some(2),
            number_unavailable: Some(3),
            updated_number_scheduled: Some(2),
            observed_generation: Some(3),
            collision_count: None,
            conditions: None,
        }
    );
}

#[test]
fn min_ready_seconds_delays_availability_and_asks_for_a_recheck() {
    let mut set = ds();
    spec_mut(&mut set).min_ready_seconds = Some(30);
    let hash = hash_of(&set);
    let ready_for = |seconds: i64| {
        move |pod: &mut Pod| {
            pod.status.as_mut().unwrap().conditions =
                Some(vec![ready_condition("True", ago(seconds))]);
        }
    };
    // Each row: what it checks, seconds ready, available, recheck after.
    let cases: Vec<(&str, i64, i32, Option<SignedDuration>)> = vec![
        ("ready 10s of 30", 10, 0, Some(SignedDuration::from_secs(21))),
        ("ready exactly 30s is not yet available", 30, 0, Some(SignedDuration::from_secs(1))),
        ("ready 31s is available", 31, 1, None),
    ];
    for (what, seconds, available, recheck) in cases {
        let pods = [with(pod_on("agent-1", "n1", &hash), ready_for(seconds))];
        let plan = steady(&set, &nodes(&["n1"]), &pods);
        let status = plan.status.unwrap();
        assert_eq!(status.number_ready, 1, "{what}");
        assert_eq!(status.number_available.unwrap_or(0), available, "{what}");
        assert_eq!(plan.recheck_after, recheck, "{what}");
    }
}

#[test]
fn an_unchanged_status_is_not_written() {
    let set = ds();
    let cluster = nodes(&["n1", "n2"]);
    let pods = [pod_on("agent-1", "n1", &hash_of(&set)), pod_on("agent-2", "n2", &hash_of(&set))];
    let first = steady(&set, &cluster, &pods);
    let mut stored = set.clone();
    stored.status = first.status.clone();
    assert!(first.status.is_some());
    assert_eq!(steady(&stored, &cluster, &pods).status, None);

    // A new generation must be observed even when the counts stay the same.
    stored.metadata.generation = Some(2);
    assert_eq!(steady(&stored, &cluster, &pods).status.unwrap().observed_generation, Some(2));
}
