//! Table tests for zone disruption: zone states, the zones of a cluster, how fast each zone may
//! evict, what is logged, and how the plan holds evictions back and resumes them.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::*;
use crate::nodes::lifecycle::plan::{plan, Plan};
use crate::nodes::lifecycle::AgentLiveness;

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn secs(seconds: i64) -> SignedDuration {
    SignedDuration::from_secs(seconds)
}

fn count(ready: usize, not_ready: usize) -> ZoneCount {
    ZoneCount { ready, not_ready }
}

#[test]
fn zone_states_follow_the_unhealthy_zone_threshold() {
    use ZoneState::*;
    let cases = [
        // (ready, not ready, state, why)
        (0, 0, Normal, "an empty zone"),
        (3, 0, Normal, "every node ready"),
        (2, 1, Normal, "one of three down"),
        (1, 1, Normal, "one of two down: 50% and not more than two"),
        (1, 2, Normal, "two of three down: 67%, but not more than two"),
        (0, 1, FullDisruption, "the only node down"),
        (0, 2, FullDisruption, "both nodes down"),
        (0, 3, FullDisruption, "all three down"),
        (1, 3, PartialDisruption, "three of four down: 75%"),
        (2, 3, PartialDisruption, "three of five down: 60%"),
        (3, 3, Normal, "three of six down: 50%"),
        (45, 55, PartialDisruption, "exactly 55%"),
        (46, 54, Normal, "just under 55%"),
        (9, 11, PartialDisruption, "eleven of twenty: 55%"),
        (97, 3, Normal, "three of a hundred"),
    ];
    for (ready, not_ready, state, why) in cases {
        assert_eq!(zone_state(count(ready, not_ready)), state, "{why}");
    }
}

/// A node named `name` in `zone` (none: the default zone) whose Ready condition is `ready`.
fn node(name: &str, zone: Option<&str>, ready: &str) -> Node {
    let labels = match zone {
        Some(zone) => json!({ZONE_LABEL: zone}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "resourceVersion": "7"},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }))
    .unwrap()
}

fn labelled(mut node: Node, key: &str) -> Node {
    node.metadata.labels.get_or_insert_with(BTreeMap::new).insert(key.into(), "".into());
    node
}

fn liveness(entries: &[(&str, bool)]) -> Liveness {
    entries
        .iter()
        .map(|(name, alive)| (name.to_string(), AgentLiveness { alive: *alive, generation: 1 }))
        .collect()
}

fn counts(zones: &Zones) -> Vec<(&str, ZoneState, usize)> {
    zones.zones.iter().map(|(name, zone)| (name.as_str(), zone.state, zone.size)).collect()
}

#[test]
fn the_survey_counts_nodes_by_zone_and_by_what_the_membership_says() {
    let nodes = [
        node("a1", Some("a"), "True"),
        node("a2", Some("a"), "True"),
        // Ready True, but its agent is declared down.
        node("a3", Some("a"), "True"),
        node("b1", Some("b"), "True"),
        // Its agent is alive, but has not reported Ready since it was marked Unknown.
        node("b2", Some("b"), "Unknown"),
        // Not in the membership yet: counted by its Ready condition during the grace.
        node("d1", None, "True"),
        node("d2", None, "False"),
        labelled(node("d3", None, "Unknown"), EXCLUDE_DISRUPTION_LABEL),
    ];
    let members =
        liveness(&[("a1", true), ("a2", true), ("a3", false), ("b1", true), ("b2", true)]);
    let zones = Zones::survey(&nodes, &members, secs(5));
    use ZoneState::*;
    assert_eq!(counts(&zones), [("", Normal, 2), ("a", Normal, 3), ("b", Normal, 2)]);

    // After the startup grace, nodes whose agent never joined are unreachable.
    let zones = Zones::survey(&nodes, &members, secs(61));
    assert_eq!(counts(&zones), [("", FullDisruption, 2), ("a", Normal, 3), ("b", Normal, 2)]);
    assert!(!zones.master_disruption());

    // Every agent down: every zone is fully disrupted.
    let down = liveness(&[
        ("a1", false),
        ("a2", false),
        ("a3", false),
        ("b1", false),
        ("b2", false),
        ("d1", false),
        ("d2", false),
    ]);
    let zones = Zones::survey(&nodes, &down, secs(5));
    assert!(zones.master_disruption());
}

fn zones(entries: &[(&str, usize, usize)]) -> Zones {
    Zones::from_counts(
        entries
            .iter()
            .map(|(name, ready, not_ready)| (name.to_string(), count(*ready, *not_ready)))
            .collect(),
    )
}

#[test]
fn paces_follow_the_zone_states() {
    use Pace::*;
    let cases = [
        // (zones as (name, ready, not ready), zone asked, pace, why)
        (vec![("", 5, 0)], "", Unlimited, "a normal zone"),
        (vec![("", 1, 1)], "", Unlimited, "two nodes, one down"),
        (vec![("", 0, 2)], "", Stopped, "the only zone fully disrupted: master disruption"),
        (vec![("a", 0, 3), ("b", 0, 3)], "a", Stopped, "every zone fully disrupted"),
        (vec![("a", 0, 3), ("b", 3, 0)], "a", Unlimited, "one zone down among healthy ones"),
        (vec![("a", 0, 3), ("b", 3, 0)], "b", Unlimited, "the healthy zone"),
        (vec![("", 1, 3)], "", Stopped, "a small zone in partial disruption"),
        (vec![("", 20, 30)], "", Stopped, "a zone of exactly 50 in partial disruption"),
        (vec![("", 20, 31)], "", Limited, "a zone of 51 in partial disruption"),
        (vec![("a", 20, 31), ("b", 0, 3)], "b", Unlimited, "a full zone beside a partial one"),
        (vec![("a", 3, 0)], "z", Unlimited, "a zone whose nodes are all excluded"),
        (vec![("a", 0, 3)], "z", Stopped, "no zone evicts in master disruption"),
        (vec![], "", Unlimited, "no nodes at all"),
    ];
    for (entries, zone, pace, why) in cases {
        assert_eq!(zones(&entries).pace(zone), pace, "{why}");
    }
}

#[test]
fn transitions_are_logged_as_kubernetes_logs_them() {
    use ZoneState::*;
    let zone = |name: &str, was, state| Transition::Zone { zone: name.into(), was, state };
    let cases = [
        (vec![], vec![("", 2, 0)], vec![], "a new normal zone is not worth a warning"),
        (
            vec![],
            vec![("a", 1, 3)],
            vec![zone("a", None, PartialDisruption)],
            "a new disrupted zone",
        ),
        (
            vec![("a", 3, 0), ("b", 3, 0)],
            vec![("a", 1, 3), ("b", 3, 0)],
            vec![zone("a", Some(Normal), PartialDisruption)],
            "one zone changes",
        ),
        (
            vec![("a", 1, 3), ("b", 3, 0)],
            vec![("a", 0, 4), ("b", 0, 3)],
            vec![Transition::EnteredMasterDisruption],
            "every zone fully disrupted: one line, no zones",
        ),
        (vec![("a", 0, 4)], vec![("a", 0, 4)], vec![], "still in master disruption"),
        (
            vec![("a", 0, 4), ("b", 0, 3)],
            vec![("a", 4, 0), ("b", 0, 3)],
            vec![Transition::ExitedMasterDisruption, zone("a", Some(FullDisruption), Normal)],
            "a zone recovers",
        ),
        (vec![("a", 3, 0)], vec![("a", 3, 0)], vec![], "nothing changed"),
    ];
    for (before, after, expected, why) in cases {
        assert_eq!(transitions(&zones(&before), &zones(&after)), expected, "{why}");
    }
}

#[test]
fn zones_whose_pace_changes_are_reconciled_again() {
    let names = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
    let healthy = zones(&[("a", 3, 0), ("b", 3, 0), ("c", 60, 0)]);
    let partial = zones(&[("a", 1, 3), ("b", 3, 0), ("c", 20, 40)]);
    assert_eq!(names(paces_changed(&healthy, &partial)), ["a", "c"]);
    assert_eq!(names(paces_changed(&partial, &healthy)), ["a", "c"]);
    // Entering master disruption stops every zone.
    let down = zones(&[("a", 0, 4), ("b", 0, 3), ("c", 0, 60)]);
    assert_eq!(names(paces_changed(&healthy, &down)), ["a", "b", "c"]);
    assert!(paces_changed(&healthy, &healthy).is_empty());
    // A zone fully down among healthy ones evicts as before.
    let b_down = zones(&[("a", 3, 0), ("b", 0, 3), ("c", 60, 0)]);
    assert!(paces_changed(&healthy, &b_down).is_empty());
}

#[test]
fn allowances_follow_the_pace() {
    let cases = [
        (Pace::Unlimited, None, Allowance::UNLIMITED),
        (Pace::Stopped, None, Allowance { evictions: Some(0), retry_after: Some(HELD_RECHECK) }),
        (
            Pace::Limited,
            None,
            Allowance {
                evictions: Some(1),
                retry_after: Some(PARTIAL_DISRUPTION_EVICTION_INTERVAL),
            },
        ),
        (
            Pace::Limited,
            Some(now()),
            Allowance {
                evictions: Some(1),
                retry_after: Some(PARTIAL_DISRUPTION_EVICTION_INTERVAL),
            },
        ),
        (
            Pace::Limited,
            Some(now() + SignedDuration::from_millis(300)),
            Allowance { evictions: Some(0), retry_after: Some(SignedDuration::from_millis(300)) },
        ),
    ];
    for (pace, next, expected) in cases {
        assert_eq!(allowance(pace, next, now()), expected, "{pace:?} next {next:?}");
    }
}

/// An unreachable node `n1` (marked earlier, its `unreachable` taints added long ago) in `zone`.
fn marked(zone: Option<&str>, extra_taints: Value) -> Node {
    let mut taints = vec![
        json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
               "timeAdded": "2025-01-01T11:00:00Z"}),
    ];
    taints.extend(extra_taints.as_array().cloned().unwrap_or_default());
    let mut node = node("n1", zone, "Unknown");
    node.spec = Some(serde_json::from_value(json!({"taints": taints})).unwrap());
    node
}

/// A running pod on n1 with Kubernetes' default 3 s toleration of the `unreachable` taint.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                     "resourceVersion": "3"},
        "spec": {
            "nodeName": "n1", "containers": [{"name": "c"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 3}],
        },
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True",
                                   "lastTransitionTime": "2025-01-01T10:00:00Z"}]},
    }))
    .unwrap()
}

const DOWN: Option<AgentLiveness> = Some(AgentLiveness { alive: false, generation: 1 });

/// What the plan does with pods p1..p3 on `node` (down), in a cluster surveyed as `cluster`.
fn plan_in(node: &Node, cluster: &Zones, next_eviction: Option<Timestamp>) -> Plan {
    let pods = [pod("p1"), pod("p2"), pod("p3")];
    let bound: Vec<&Pod> = pods.iter().collect();
    let allowance = allowance(cluster.pace(zone_of(node)), next_eviction, now());
    plan(node, DOWN, secs(5), &bound, &BTreeMap::new(), allowance, now())
}

fn evicted(plan: &Plan) -> Vec<&str> {
    plan.evictions.iter().map(|e| e.pod.name.as_str()).collect()
}

fn marked_not_ready(plan: &Plan) -> Vec<&str> {
    plan.not_ready.iter().map(|w| w.pod.name.as_str()).collect()
}

#[test]
fn full_disruption_of_every_zone_holds_evictions_back() {
    // A fresh node going down in a one-zone cluster where every agent is down (the master is
    // cut off): the node is still marked and tainted, its pods marked not Ready, none evicted.
    let fresh = node("n1", None, "True");
    let one_zone_down = zones(&[("", 0, 3)]);
    let plan = plan_in(&fresh, &one_zone_down, None);
    assert!(plan.conditions.is_some(), "the node's conditions are still made Unknown");
    let taints = plan.taints.as_ref().expect("the condition taints are still written");
    assert!(taints.iter().any(|t| t.effect == "NoExecute"));
    assert_eq!(evicted(&plan), Vec::<&str>::new());
    // Tolerated for 3 s from now: not held yet, looked at again then.
    assert_eq!(plan.held, 0);
    assert_eq!(marked_not_ready(&plan), ["p1", "p2", "p3"]);
    assert_eq!(plan.recheck_after, Some(secs(3)));

    // The tolerations have run out: every pod is held back.
    let plan = plan_in(&marked(None, json!([])), &one_zone_down, None);
    assert_eq!(evicted(&plan), Vec::<&str>::new());
    assert_eq!(plan.held, 3);
    assert_eq!(marked_not_ready(&plan), ["p1", "p2", "p3"]);
    assert_eq!(plan.recheck_after, Some(HELD_RECHECK));

    // Several zones, all fully disrupted.
    let every_zone_down = zones(&[("a", 0, 3), ("b", 0, 2)]);
    let plan = plan_in(&marked(Some("a"), json!([])), &every_zone_down, None);
    assert_eq!((evicted(&plan), plan.held), (vec![], 3));
}

#[test]
fn a_zone_fully_down_among_healthy_ones_evicts_as_kubernetes_does() {
    let a_down = zones(&[("a", 0, 3), ("b", 3, 0)]);
    let plan = plan_in(&marked(Some("a"), json!([])), &a_down, None);
    assert_eq!(evicted(&plan), ["p1", "p2", "p3"]);
    assert_eq!(plan.held, 0);
}

#[test]
fn partial_disruption_stops_small_zones_and_paces_large_ones() {
    let node = marked(None, json!([]));
    let small = zones(&[("", 1, 3)]);
    let plan = plan_in(&node, &small, None);
    assert_eq!((evicted(&plan), plan.held), (vec![], 3));

    let large = zones(&[("", 20, 40)]);
    let plan = plan_in(&node, &large, None);
    assert_eq!(evicted(&plan), ["p1"]);
    assert!(plan.evictions.iter().all(|e| e.by_condition_taint));
    assert_eq!(plan.held, 2);
    assert_eq!(plan.recheck_after, Some(PARTIAL_DISRUPTION_EVICTION_INTERVAL));

    // The zone evicted a moment ago (from another node): wait for the next slot.
    let next = now() + SignedDuration::from_millis(400);
    let plan = plan_in(&node, &large, Some(next));
    assert_eq!((evicted(&plan), plan.held), (vec![], 3));
    assert_eq!(plan.recheck_after, Some(SignedDuration::from_millis(400)));
}

#[test]
fn recovery_resumes_evictions() {
    let node = marked(None, json!([]));
    let held = plan_in(&node, &zones(&[("", 0, 4)]), None);
    assert_eq!((evicted(&held), held.held), (vec![], 3));
    // The other nodes are back: only n1 is down, the zone is normal again.
    let recovered = plan_in(&node, &zones(&[("", 3, 1)]), None);
    assert_eq!(evicted(&recovered), ["p1", "p2", "p3"]);
    assert_eq!(recovered.held, 0);
}

#[test]
fn one_dead_agent_of_two_still_evicts() {
    let nodes = [node("n1", None, "True"), node("n2", None, "True")];
    let cluster = Zones::survey(&nodes, &liveness(&[("n1", false), ("n2", true)]), secs(5));
    assert_eq!(cluster.pace(""), Pace::Unlimited);
    let plan = plan_in(&marked(None, json!([])), &cluster, None);
    assert_eq!(evicted(&plan), ["p1", "p2", "p3"]);
}

#[test]
fn other_no_execute_taints_evict_whatever_the_zone() {
    let node = marked(None, json!([{"key": "dedicated", "effect": "NoExecute"}]));
    let plan = plan_in(&node, &zones(&[("", 0, 3)]), None);
    assert_eq!(evicted(&plan), ["p1", "p2", "p3"]);
    assert!(plan.evictions.iter().all(|e| !e.by_condition_taint));
    assert_eq!(plan.held, 0);
}
