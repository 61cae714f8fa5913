//! Table tests for the node lifecycle plan: verdicts, node conditions, condition taints, pods
//! marked not Ready, evictions and rechecks.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use serde_json::{json, Value};

use super::eviction::{DISRUPTION_MESSAGE, DISRUPTION_REASON, DISRUPTION_TARGET};
use super::plan::{changed_nodes, plan, reason, verdict, Allowance, Plan, Verdict, STARTUP_GRACE};
use super::{AgentLiveness, Liveness};

const CREATED: &str = "2025-01-01T00:00:00Z";
const HEARTBEAT: &str = "2025-01-01T11:59:50Z";
const EARLIER: &str = "2025-01-01T10:00:00Z";

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

fn secs(seconds: i64) -> SignedDuration {
    SignedDuration::from_secs(seconds)
}

const ALIVE: Option<AgentLiveness> = Some(AgentLiveness { alive: true, generation: 1 });
const DOWN: Option<AgentLiveness> = Some(AgentLiveness { alive: false, generation: 1 });
const ABSENT: Option<AgentLiveness> = None;

fn condition(kind: &str, status: &str) -> Value {
    json!({
        "type": kind, "status": status, "reason": "Kubelet", "message": "from the agent",
        "lastHeartbeatTime": HEARTBEAT, "lastTransitionTime": EARLIER,
    })
}

/// A node with the agent's four conditions, Ready being `ready`, and `taints`.
fn node_with(ready: &str, taints: Value) -> Node {
    node(
        json!([
            condition("MemoryPressure", "False"),
            condition("DiskPressure", "False"),
            condition("PIDPressure", "False"),
            condition("Ready", ready),
        ]),
        taints,
    )
}

fn node(conditions: Value, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": "n1", "creationTimestamp": CREATED, "resourceVersion": "7"},
        "spec": {"taints": taints},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

/// The condition taints of a node already marked unreachable (at `EARLIER`).
fn unreachable_taints() -> Value {
    json!([
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": EARLIER},
    ])
}

fn taint_keys(taints: &[Taint]) -> Vec<String> {
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

fn statuses(conditions: &[NodeCondition]) -> Vec<String> {
    conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect()
}

fn plan_for(node: &Node, liveness: Option<AgentLiveness>, led_for: SignedDuration) -> Plan {
    plan(node, liveness, led_for, &[], &BTreeMap::new(), Allowance::UNLIMITED, now())
}

#[test]
fn verdicts_follow_the_membership_and_the_startup_grace() {
    let restarted = Some(AgentLiveness { alive: true, generation: 9 });
    let cases = [
        (ALIVE, secs(0), Verdict::Reachable),
        (restarted, secs(600), Verdict::Reachable),
        (DOWN, secs(0), Verdict::Unreachable),
        (DOWN, secs(600), Verdict::Unreachable),
        (ABSENT, secs(0), Verdict::Unjudged),
        (ABSENT, STARTUP_GRACE, Verdict::Unjudged),
        (ABSENT, STARTUP_GRACE + secs(1), Verdict::Unreachable),
    ];
    for (liveness, led_for, expected) in cases {
        assert_eq!(verdict(liveness, led_for), expected, "{liveness:?} after {led_for}");
    }
}

#[test]
fn node_conditions_and_taints_follow_the_verdict() {
    struct Case {
        name: &'static str,
        node: Node,
        liveness: Option<AgentLiveness>,
        led_for: SignedDuration,
        /// The conditions written, as `type=status`, if any.
        conditions: Option<Vec<&'static str>>,
        /// The taints written, as `key:effect`, if any.
        taints: Option<Vec<&'static str>>,
        recheck: Option<SignedDuration>,
    }
    let both_unreachable = vec![
        "node.kubernetes.io/unreachable:NoSchedule",
        "node.kubernetes.io/unreachable:NoExecute",
    ];
    let all_unknown = vec![
        "MemoryPressure=Unknown",
        "DiskPressure=Unknown",
        "PIDPressure=Unknown",
        "Ready=Unknown",
    ];
    let cases = [
        Case {
            name: "a healthy node gets nothing written",
            node: node_with("True", json!([])),
            liveness: ALIVE,
            led_for: secs(5),
            conditions: None,
            taints: None,
            recheck: None,
        },
        Case {
            name: "an agent declared down makes every condition Unknown and taints the node",
            node: node_with("True", json!([{"key": "dedicated", "effect": "NoSchedule"}])),
            liveness: DOWN,
            led_for: secs(5),
            conditions: Some(all_unknown.clone()),
            taints: Some(vec![
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
            ]),
            recheck: None,
        },
        Case {
            name: "a node marked before is left as it is",
            node: marked_earlier(node_with("Unknown", unreachable_taints())),
            liveness: DOWN,
            led_for: secs(5),
            conditions: None,
            taints: None,
            recheck: None,
        },
        Case {
            name: "a condition the agent reported since is made Unknown again",
            node: node(
                json!([condition("MemoryPressure", "False"), condition("Ready", "Unknown")]),
                unreachable_taints(),
            ),
            liveness: DOWN,
            led_for: secs(5),
            conditions: Some(vec!["MemoryPressure=Unknown", "Ready=Unknown"]),
            taints: None,
            recheck: None,
        },
        Case {
            name: "an agent not in the membership is left alone during the startup grace",
            node: node_with("True", json!([])),
            liveness: ABSENT,
            led_for: secs(20),
            conditions: None,
            taints: None,
            recheck: Some(secs(40)),
        },
        Case {
            name: "an agent not in the membership after the grace is unreachable",
            node: node_with("True", json!([])),
            liveness: ABSENT,
            led_for: secs(61),
            conditions: Some(all_unknown.clone()),
            taints: Some(both_unreachable.clone()),
            recheck: None,
        },
        Case {
            name: "a node that never reported gets Ready Unknown",
            node: node(json!([]), json!([])),
            liveness: ABSENT,
            led_for: secs(61),
            conditions: Some(vec!["Ready=Unknown"]),
            taints: Some(both_unreachable.clone()),
            recheck: None,
        },
        Case {
            name: "a node that never reported gets only the NoSchedule taint in the grace",
            node: node(json!([]), json!([])),
            liveness: ABSENT,
            led_for: secs(0),
            conditions: None,
            taints: Some(vec!["node.kubernetes.io/unreachable:NoSchedule"]),
            recheck: Some(STARTUP_GRACE),
        },
        Case {
            name: "a node back in the membership keeps its taints until its agent posts Ready",
            node: marked_earlier(node_with("Unknown", unreachable_taints())),
            liveness: ALIVE,
            led_for: secs(5),
            conditions: None,
            taints: None,
            recheck: None,
        },
        Case {
            name: "a node Ready again loses the condition taints",
            node: node_with("True", unreachable_taints()),
            liveness: ALIVE,
            led_for: secs(5),
            conditions: None,
            taints: Some(vec![]),
            recheck: None,
        },
        Case {
            name: "a node its agent reports not Ready is tainted not-ready",
            node: node_with("False", json!([])),
            liveness: ALIVE,
            led_for: secs(5),
            conditions: None,
            taints: Some(vec![
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute",
            ]),
            recheck: None,
        },
        Case {
            name: "a not Ready node going down swaps not-ready for unreachable",
            node: node_with(
                "False",
                json!([
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": EARLIER},
                ]),
            ),
            liveness: DOWN,
            led_for: secs(5),
            conditions: Some(all_unknown),
            taints: Some(both_unreachable),
            recheck: None,
        },
    ];
    for case in cases {
        let plan = plan_for(&case.node, case.liveness, case.led_for);
        assert_eq!(
            plan.conditions.as_deref().map(statuses),
            case.conditions.map(|v| v.into_iter().map(String::from).collect()),
            "{}: conditions",
            case.name
        );
        assert_eq!(
            plan.taints.as_deref().map(taint_keys),
            case.taints.map(|v| v.into_iter().map(String::from).collect()),
            "{}: taints",
            case.name
        );
        assert_eq!(plan.recheck_after, case.recheck, "{}: recheck", case.name);
        assert!(plan.not_ready.is_empty() && plan.evictions.is_empty(), "{}: pods", case.name);
    }
}

/// `node` with every condition made Unknown, as the controller would have done earlier.
fn marked_earlier(mut node: Node) -> Node {
    let conditions = node.status.as_mut().and_then(|s| s.conditions.as_mut()).unwrap();
    for condition in conditions {
        condition.status = "Unknown".into();
        condition.reason = Some(reason::STATUS_UNKNOWN.into());
    }
    node
}

#[test]
fn unknown_conditions_keep_heartbeats_and_change_transitions_only_when_the_status_does() {
    let node = node(
        json!([condition("MemoryPressure", "Unknown"), condition("Ready", "True")]),
        json!([]),
    );
    let conditions = plan_for(&node, DOWN, secs(5)).conditions.unwrap();
    let [memory, ready] = conditions.as_slice() else { panic!("{conditions:?}") };
    // Already Unknown: kept as the agent wrote it.
    assert_eq!(memory.reason.as_deref(), Some("Kubelet"));
    assert_eq!(memory.last_transition_time.as_ref().unwrap().0.to_string(), EARLIER);
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
    assert_eq!(ready.last_transition_time.as_ref().unwrap().0, now());
    assert_eq!(ready.last_heartbeat_time.as_ref().unwrap().0.to_string(), HEARTBEAT);

    let never = plan_for(&self::node(json!([]), json!([])), DOWN, secs(5)).conditions.unwrap();
    let [ready] = never.as_slice() else { panic!("{never:?}") };
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    assert_eq!(ready.message.as_deref(), Some("Kubelet never posted node status."));
    assert_eq!(ready.last_heartbeat_time.as_ref().unwrap().0.to_string(), CREATED);
    assert_eq!(ready.last_transition_time.as_ref().unwrap().0, now());

    let taints = plan_for(&node, DOWN, secs(5)).taints.unwrap();
    let no_execute = taints.iter().find(|t| t.effect == "NoExecute").unwrap();
    assert_eq!(no_execute.time_added.as_ref().map(|t| t.0), Some(now()));
}

/// A pod bound to n1, Ready True, with `tolerations`.
fn pod(name: &str, tolerations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "default", "uid": format!("{name}-uid"),
            "resourceVersion": "3",
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "tolerations": tolerations},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": EARLIER},
                {"type": "Ready", "status": "True", "lastTransitionTime": EARLIER},
            ],
        },
    }))
    .unwrap()
}

/// `pod` with `change` made to its JSON.
fn with(pod: Pod, change: impl FnOnce(&mut Value)) -> Pod {
    let mut value = serde_json::to_value(&pod).unwrap();
    change(&mut value);
    serde_json::from_value(value).unwrap()
}

fn tolerate(key: &str, seconds: Option<i64>) -> Value {
    match seconds {
        Some(seconds) => json!([{"key": key, "operator": "Exists", "effect": "NoExecute",
                                 "tolerationSeconds": seconds}]),
        None => json!([{"key": key, "operator": "Exists", "effect": "NoExecute"}]),
    }
}

/// What the plan does with one pod, in short.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Left,
    MarkedNotReady,
    Evicted,
}

fn fate(plan: &Plan, pod: &str) -> Fate {
    let evicted = plan.evictions.iter().any(|e| e.pod.name == pod);
    let marked = plan.not_ready.iter().any(|w| w.pod.name == pod);
    match (evicted, marked) {
        (true, false) => Fate::Evicted,
        (false, true) => Fate::MarkedNotReady,
        (false, false) => Fate::Left,
        (true, true) => panic!("{pod} both evicted and marked"),
    }
}

#[test]
fn the_taint_manager_evicts_pods_that_do_not_tolerate_the_taints() {
    struct Case {
        name: &'static str,
        node: Node,
        liveness: Option<AgentLiveness>,
        pod: Pod,
        /// When the pod was first seen under the taints, if before now.
        first_seen: Option<i64>,
        fate: Fate,
        recheck: Option<SignedDuration>,
    }
    let healthy = || node_with("True", json!([]));
    let marked = || marked_earlier(node_with("Unknown", unreachable_taints()));
    let taint_since = |key: &str, since: Option<String>| {
        let taints = match since {
            Some(since) => json!([{"key": key, "effect": "NoExecute", "timeAdded": since}]),
            None => json!([{"key": key, "effect": "NoExecute"}]),
        };
        node_with("True", taints)
    };
    let marked_since = |seconds: i64| {
        let taints = json!([
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
             "timeAdded": ago(seconds)},
        ]);
        marked_earlier(node_with("Unknown", taints))
    };
    let unreachable = "node.kubernetes.io/unreachable";
    let cases = [
        Case {
            name: "pods on a healthy node stay",
            node: healthy(),
            liveness: ALIVE,
            pod: pod("p", json!([])),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "a pod without tolerations is evicted as soon as its node goes down",
            node: healthy(),
            liveness: DOWN,
            pod: pod("p", json!([])),
            first_seen: None,
            fate: Fate::Evicted,
            recheck: None,
        },
        Case {
            name: "a pod tolerating the taint forever is only marked not Ready",
            node: healthy(),
            liveness: DOWN,
            pod: pod("p", tolerate(unreachable, None)),
            first_seen: None,
            fate: Fate::MarkedNotReady,
            recheck: None,
        },
        Case {
            name: "a pod tolerating only not-ready is evicted from an unreachable node",
            node: healthy(),
            liveness: DOWN,
            pod: pod("p", tolerate("node.kubernetes.io/not-ready", None)),
            first_seen: None,
            fate: Fate::Evicted,
            recheck: None,
        },
        Case {
            name: "a pod tolerating the new taint for 30 s is rechecked then",
            node: healthy(),
            liveness: DOWN,
            pod: pod("p", tolerate(unreachable, Some(30))),
            first_seen: None,
            fate: Fate::MarkedNotReady,
            recheck: Some(secs(30)),
        },
        Case {
            name: "tolerationSeconds count from the taint's timeAdded",
            node: marked_since(20),
            liveness: DOWN,
            pod: pod("p", tolerate(unreachable, Some(30))),
            first_seen: None,
            fate: Fate::MarkedNotReady,
            recheck: Some(secs(10)),
        },
        Case {
            name: "a pod whose tolerationSeconds ran out is evicted",
            node: marked_since(31),
            liveness: DOWN,
            pod: pod("p", tolerate(unreachable, Some(30))),
            first_seen: None,
            fate: Fate::Evicted,
            recheck: None,
        },
        Case {
            name: "a taint that is no longer right is not counted",
            node: node_with("True", unreachable_taints()),
            liveness: ALIVE,
            pod: pod("p", json!([])),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "without timeAdded, tolerationSeconds count from when the pod was first seen",
            node: taint_since("gpu", None),
            liveness: ALIVE,
            pod: pod("p", tolerate("gpu", Some(30))),
            first_seen: Some(25),
            fate: Fate::Left,
            recheck: Some(secs(5)),
        },
        Case {
            name: "zero tolerationSeconds evict at once",
            node: taint_since("gpu", Some(ago(0))),
            liveness: ALIVE,
            pod: pod("p", tolerate("gpu", Some(0))),
            first_seen: None,
            fate: Fate::Evicted,
            recheck: None,
        },
        Case {
            name: "the first toleration matching a taint is the one used",
            node: taint_since("gpu", Some(ago(600))),
            liveness: ALIVE,
            pod: pod(
                "p",
                json!([
                    {"operator": "Exists"},
                    {"key": "gpu", "operator": "Exists", "tolerationSeconds": 1},
                ]),
            ),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "the earliest deadline over all taints wins",
            node: node_with(
                "True",
                json!([
                    {"key": "a", "effect": "NoExecute", "timeAdded": ago(10)},
                    {"key": "b", "effect": "NoExecute", "timeAdded": ago(50)},
                ]),
            ),
            liveness: ALIVE,
            pod: pod(
                "p",
                json!([
                    {"key": "a", "operator": "Exists", "tolerationSeconds": 60},
                    {"key": "b", "operator": "Exists", "tolerationSeconds": 60},
                ]),
            ),
            first_seen: None,
            fate: Fate::Left,
            recheck: Some(secs(10)),
        },
        Case {
            name: "a user's NoExecute taint evicts pods that do not tolerate it",
            node: taint_since("dedicated", None),
            liveness: ALIVE,
            pod: pod("p", json!([])),
            first_seen: None,
            fate: Fate::Evicted,
            recheck: None,
        },
        Case {
            name: "a node its agent reports not Ready evicts pods that do not tolerate it",
            node: node_with("False", json!([])),
            liveness: ALIVE,
            pod: pod("p", tolerate(unreachable, None)),
            first_seen: None,
            fate: Fate::Evicted,
            recheck: None,
        },
        Case {
            name: "a node its agent reports not Ready does not get its pods marked",
            node: node_with("False", json!([])),
            liveness: ALIVE,
            pod: pod("p", tolerate("node.kubernetes.io/not-ready", None)),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "a pod already not Ready is not written again",
            node: marked(),
            liveness: DOWN,
            pod: with(pod("p", tolerate(unreachable, None)), |p| {
                p["status"]["conditions"][1]["status"] = json!("False");
            }),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "a pod without a Ready condition is not marked",
            node: marked(),
            liveness: DOWN,
            pod: with(pod("p", tolerate(unreachable, None)), |p| {
                p["status"]["conditions"] = json!([]);
            }),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "a finished pod is not marked",
            node: marked(),
            liveness: DOWN,
            pod: with(pod("p", tolerate(unreachable, None)), |p| {
                p["status"]["phase"] = json!("Succeeded");
            }),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
        Case {
            name: "a pod being deleted is neither marked nor evicted",
            node: marked(),
            liveness: DOWN,
            pod: with(pod("p", json!([])), |p| {
                p["metadata"]["deletionTimestamp"] = json!(EARLIER);
            }),
            first_seen: None,
            fate: Fate::Left,
            recheck: None,
        },
    ];
    for case in cases {
        let seen: BTreeMap<String, Timestamp> =
            case.first_seen.map(|s| ("p-uid".to_string(), now() - secs(s))).into_iter().collect();
        let plan = plan(
            &case.node,
            case.liveness,
            secs(5),
            &[&case.pod],
            &seen,
            Allowance::UNLIMITED,
            now(),
        );
        assert_eq!(fate(&plan, "p"), case.fate, "{}", case.name);
        assert_eq!(plan.recheck_after, case.recheck, "{}: recheck", case.name);
    }
}

fn find<'a>(conditions: &'a [PodCondition], kind: &str) -> &'a PodCondition {
    conditions.iter().find(|c| c.type_ == kind).unwrap()
}

#[test]
fn evicted_and_marked_pods_get_their_conditions_in_one_write() {
    let pods = [
        pod("plain", json!([])),
        pod("tolerant", tolerate("node.kubernetes.io/unreachable", None)),
        with(pod("disrupted", json!([])), |p| {
            p["status"]["conditions"] = json!([
                {"type": "Ready", "status": "False", "lastTransitionTime": EARLIER},
                {"type": DISRUPTION_TARGET, "status": "True", "reason": DISRUPTION_REASON,
                 "message": DISRUPTION_MESSAGE, "lastTransitionTime": EARLIER},
            ]);
        }),
    ];
    let bound: Vec<&Pod> = pods.iter().collect();
    let node = node_with("True", json!([]));
    let plan = plan(&node, DOWN, secs(5), &bound, &BTreeMap::new(), Allowance::UNLIMITED, now());

    let [plain, disrupted] = plan.evictions.as_slice() else { panic!("{:?}", plan.evictions) };
    assert_eq!((plain.pod.name.as_str(), plain.pod.uid.as_deref()), ("plain", Some("plain-uid")));
    assert_eq!(plain.pod.resource_version.as_deref(), Some("3"));
    let conditions = plain.conditions.as_deref().unwrap();
    let target = find(conditions, DISRUPTION_TARGET);
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    assert_eq!(target.message.as_deref(), Some("Taint manager: deleting due to NoExecute taint"));
    assert_eq!(target.last_transition_time.as_ref().unwrap().0, now());
    let ready = find(conditions, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.last_transition_time.as_ref().unwrap().0, now());
    assert_eq!(find(conditions, "PodScheduled").status, "True");
    // A pod disrupted before (its delete did not go through) is only deleted again.
    assert_eq!(disrupted.pod.name, "disrupted");
    assert_eq!(disrupted.conditions, None);

    let [tolerant] = plan.not_ready.as_slice() else { panic!("{:?}", plan.not_ready) };
    assert_eq!(tolerant.pod.name, "tolerant");
    let ready = find(&tolerant.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.last_transition_time.as_ref().unwrap().0),
        ("False", now())
    );
    assert!(tolerant.conditions.iter().all(|c| c.type_ != DISRUPTION_TARGET));

    // Every pod under the taints is remembered from now on.
    let remembered: Vec<&str> = plan.first_seen.keys().map(String::as_str).collect();
    assert_eq!(remembered, ["disrupted-uid", "plain-uid", "tolerant-uid"]);
    assert!(plan.first_seen.values().all(|seen| *seen == now()));
}

#[test]
fn first_sightings_are_kept_while_the_taints_last_and_dropped_after() {
    let pod = pod("p", tolerate("gpu", Some(300)));
    let earlier = now() - secs(100);
    let seen = BTreeMap::from([("p-uid".to_string(), earlier), ("gone-uid".to_string(), earlier)]);
    let tainted = node_with("True", json!([{"key": "gpu", "effect": "NoExecute"}]));
    let plan_tainted = plan(&tainted, ALIVE, secs(5), &[&pod], &seen, Allowance::UNLIMITED, now());
    assert_eq!(plan_tainted.first_seen, BTreeMap::from([("p-uid".to_string(), earlier)]));
    assert_eq!(plan_tainted.recheck_after, Some(secs(200)));

    let healthy = node_with("True", json!([]));
    let plan_clear = plan(&healthy, ALIVE, secs(5), &[&pod], &seen, Allowance::UNLIMITED, now());
    assert!(plan_clear.first_seen.is_empty());
    assert_eq!(plan_clear.recheck_after, None);
}

#[test]
fn liveness_changes_trigger_only_the_nodes_they_concern() {
    let liveness = |entries: &[(&str, bool, u64)]| -> Liveness {
        entries
            .iter()
            .map(|(name, alive, generation)| {
                (name.to_string(), AgentLiveness { alive: *alive, generation: *generation })
            })
            .collect()
    };
    let before = liveness(&[("a", true, 1), ("b", true, 1), ("c", true, 1), ("d", false, 1)]);
    let after = liveness(&[("a", true, 1), ("b", false, 1), ("c", true, 2), ("e", true, 1)]);
    let changed: Vec<String> = changed_nodes(&before, &after).into_iter().collect();
    assert_eq!(changed, ["b", "c", "d", "e"]);
    assert!(changed_nodes(&after, &after).is_empty());
}
