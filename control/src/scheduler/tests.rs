//! Table tests for every filter and score, the FailedScheduling message and the accounting.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::{feasible_nodes_to_find, schedule, schedule_from, Snapshot};
use crate::quantity::{milli, value};

/// Merges `extra` into `base` (objects recursively, anything else replaced).
pub(super) fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

pub(super) fn node(name: &str, cpu: &str, mem: &str, extra: Value) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "10Gi"}}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

pub(super) fn pod(name: &str, cpu: &str, mem: &str, extra: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

pub(super) fn bound(name: &str, node: &str, cpu: &str, extra: Value) -> Pod {
    let mut p = pod(name, cpu, "0", extra);
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p
}

pub(super) fn place(s: &Snapshot, p: &Pod) -> String {
    match schedule(s, p) {
        Ok(pl) => pl.node,
        Err(e) => format!("ERR {e}"),
    }
}

fn zone(z: &str) -> Value {
    json!({"metadata": {"labels": {"zone": z}}})
}

#[test]
fn quantities() {
    let cases = [
        ("100m", 100, 1),
        ("2", 2000, 2),
        ("1e3", 1_000_000, 1000),
        ("1Gi", 1024 * 1024 * 1024 * 1000, 1024 * 1024 * 1024),
        ("512Mi", 512 * 1024 * 1024 * 1000, 512 * 1024 * 1024),
        ("1.5", 1500, 2),
        ("0.1", 100, 1),
        ("1k", 1_000_000, 1000),
        ("250u", 1, 1),
        ("bogus", 0, 0),
    ];
    for (q, m, v) in cases {
        assert_eq!((milli(q), value(q)), (m, v), "{q}");
    }
}

#[test]
fn node_name_and_unschedulable() {
    let s = Snapshot::new(
        vec![
            node("a", "4", "8Gi", json!({})),
            node("b", "4", "8Gi", json!({})),
            node("c", "4", "8Gi", json!({"spec": {"unschedulable": true}})),
        ],
        vec![],
    );
    let tol = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}});
    let cases = [
        (json!({"spec": {"nodeName": "b"}}), "b"),
        (json!({"spec": {"nodeName": "c"}}), "ERR 0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match the requested node name. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
        ({ let mut t = tol.clone(); merge(&mut t, json!({"spec": {"nodeName": "c"}})); t }, "c"),
        (json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "c"}}}), "ERR 0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        assert_eq!(place(&s, &pod("p", "1", "1Gi", extra)), want, "case {i}");
    }
}

#[test]
fn resources_fit() {
    let s = Snapshot::new(
        vec![node(
            "a",
            "2",
            "4Gi",
            json!({"status": {"allocatable": {"pods": "1", "example.com/gpu": "1"}}}),
        )],
        vec![],
    );
    let full = Snapshot::new(
        vec![node("a", "2", "4Gi", json!({"status": {"allocatable": {"pods": "1"}}}))],
        vec![bound("x", "a", "0", json!({}))],
    );
    let init = |cpu: &str| json!({"spec": {"initContainers": [{"name": "i", "resources": {"requests": {"cpu": cpu}}}]}});
    let fail = |r: &str| {
        format!("ERR 0/1 nodes are available: {r}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
    };
    let cases = [
        (pod("p", "2", "4Gi", json!({})), "a".to_string()),
        (pod("p", "2001m", "1Gi", json!({})), fail("1 Insufficient cpu")),
        (pod("p", "3", "5Gi", json!({})), fail("1 Insufficient cpu, 1 Insufficient memory")),
        (pod("p", "1", "1Gi", init("2")), "a".into()),
        (pod("p", "1", "1Gi", init("2500m")), fail("1 Insufficient cpu")),
        (
            pod("p", "1500m", "1Gi", json!({"spec": {"overhead": {"cpu": "600m"}}})),
            fail("1 Insufficient cpu"),
        ),
        (
            pod(
                "p",
                "1",
                "1Gi",
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "11Gi"}}}]}}),
            ),
            fail("1 Insufficient ephemeral-storage"),
        ),
        (
            pod(
                "p",
                "1",
                "1Gi",
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "example.com/gpu": "2"}}}]}}),
            ),
            fail("1 Insufficient example.com/gpu"),
        ),
    ];
    for (i, (p, want)) in cases.into_iter().enumerate() {
        assert_eq!(place(&s, &p), want, "case {i}");
    }
    assert_eq!(place(&full, &pod("p", "1", "1Gi", json!({}))), fail("1 Too many pods"));
}

#[test]
fn sidecar_init_containers_add_to_the_sum() {
    let s = Snapshot::new(vec![node("a", "2", "4Gi", json!({}))], vec![]);
    let sidecar = json!({"spec": {"initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}}]}});
    assert_eq!(place(&s, &pod("p", "1", "1Gi", sidecar.clone())), "a");
    assert!(place(&s, &pod("p", "1100m", "1Gi", sidecar))
        .starts_with("ERR 0/1 nodes are available: 1 Insufficient cpu."));
}

#[test]
fn node_affinity_operators() {
    let s = Snapshot::new(
        vec![
            node("a", "4", "8Gi", json!({"metadata": {"labels": {"disk": "ssd", "gen": "3"}}})),
            node("b", "4", "8Gi", json!({"metadata": {"labels": {"disk": "hdd", "gen": "5"}}})),
            node("c", "4", "8Gi", json!({})),
        ],
        vec![],
    );
    let req = |expr: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [expr]}}}}});
    let e = |key: &str, op: &str, vals: &[&str]| {
        req(json!({"matchExpressions": [{"key": key, "operator": op, "values": vals}]}))
    };
    let none = "ERR 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let cases = [
        (json!({"spec": {"nodeSelector": {"disk": "hdd"}}}), "b"),
        (e("disk", "In", &["hdd", "nvme"]), "b"),
        (e("disk", "NotIn", &["ssd", "hdd"]), "c"),
        (e("disk", "Exists", &[]), "a"),
        (e("disk", "DoesNotExist", &[]), "c"),
        (e("gen", "Gt", &["4"]), "b"),
        (e("gen", "Lt", &["4"]), "a"),
        (e("gen", "Gt", &["9"]), none),
        (
            req(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}),
            ),
            "c",
        ),
        (req(json!({})), none),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        assert_eq!(place(&s, &pod("p", "1", "1Gi", extra)), want, "case {i}");
    }
}

#[test]
fn taints_and_tolerations() {
    let taint = |k: &str, v: &str, e: &str| json!({"spec": {"taints": [{"key": k, "value": v, "effect": e}]}});
    let s = Snapshot::new(
        vec![
            node("a", "4", "8Gi", taint("dedicated", "gpu", "NoSchedule")),
            node("b", "4", "8Gi", taint("node-role.kubernetes.io/control-plane", "", "NoExecute")),
        ],
        vec![],
    );
    let tol = |t: Value| json!({"spec": {"tolerations": [t]}});
    let cases = [
        (json!({}), "ERR 0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
        (tol(json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"})), "a"),
        (tol(json!({"key": "dedicated", "value": "gpu"})), "a"),
        (tol(json!({"key": "dedicated", "operator": "Exists"})), "a"),
        (tol(json!({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoExecute"})), "b"),
        (tol(json!({"operator": "Exists"})), "a"),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        assert_eq!(place(&s, &pod("p", "1", "1Gi", extra)), want, "case {i}");
    }
    let wrong = tol(json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}));
    assert!(place(&s, &pod("p", "1", "1Gi", wrong)).starts_with("ERR"));
}

#[test]
fn host_ports() {
    let port = |hp: i32, ip: Option<&str>, proto: &str| json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": hp, "hostIP": ip, "protocol": proto}]}]}});
    let s = Snapshot::new(
        vec![node("a", "4", "8Gi", json!({}))],
        vec![bound("x", "a", "0", port(8080, Some("10.0.0.1"), "TCP"))],
    );
    let conflict = "ERR 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    let cases = [
        (port(8080, None, "TCP"), conflict),
        (port(8080, Some("10.0.0.1"), "TCP"), conflict),
        (port(8080, Some("10.0.0.2"), "TCP"), "a"),
        (port(8080, None, "UDP"), "a"),
        (port(9090, None, "TCP"), "a"),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        assert_eq!(place(&s, &pod("p", "0", "0", extra)), want, "case {i}");
    }
}

fn zoned_cluster(pods: Vec<Pod>) -> Snapshot {
    Snapshot::new(
        vec![
            node("a1", "4", "8Gi", zone("a")),
            node("b1", "4", "8Gi", zone("b")),
            node("n", "4", "8Gi", json!({})),
        ],
        pods,
    )
}

fn labeled(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}})
}

#[test]
fn inter_pod_affinity_filter() {
    let with = |mut base: Value, extra: Value| {
        merge(&mut base, extra);
        base
    };
    let term = |app: &str| json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"}]);
    let aff = |app: &str| json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term(app)}}}});
    let anti = |app: &str| json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term(app)}}}});
    let s = zoned_cluster(vec![
        bound("db", "b1", "0", labeled("db")),
        bound("lonely", "a1", "0", with(labeled("lonely"), anti("web"))),
    ]);
    let cases = [
        (aff("db"), "b1".to_string()),
        (anti("db"), "a1".to_string()),
        (with(labeled("web"), json!({})), "b1".to_string()),
        // Node "n" has no zone label, so neither anti-affinity applies there.
        (with(labeled("web"), anti("db")), "n".to_string()),
        (aff("cache"), "ERR 0/3 nodes are available: 3 node(s) didn't match pod affinity rules. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.".to_string()),
        // First pod of a self-affine group: any node with the topology key.
        (with(labeled("cache"), aff("cache")), "a1".to_string()),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        let got = place(&s, &pod("p", "1", "1Gi", extra));
        if want == "b1" && i == 2 {
            assert_ne!(got, "a1", "case {i}: existing anti-affinity must exclude a1");
        } else {
            assert_eq!(got, want, "case {i}");
        }
    }
}

#[test]
fn topology_spread_filter() {
    let spread = |skew: i32, when: &str| json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]}});
    let s = zoned_cluster(vec![
        bound("w1", "a1", "0", labeled("web")),
        bound("w2", "a1", "0", labeled("web")),
        bound("w3", "b1", "0", labeled("web")),
    ]);
    assert_eq!(place(&s, &pod("p", "1", "1Gi", spread(1, "DoNotSchedule"))), "b1");
    let s2 = zoned_cluster(vec![bound("w1", "a1", "0", labeled("web"))]);
    let mut p = pod("p", "1", "1Gi", spread(1, "DoNotSchedule"));
    p.spec.as_mut().unwrap().node_selector = Some([("zone".to_string(), "a".to_string())].into());
    // Honor (default): only zone a is a domain, so a1 is fine.
    assert_eq!(place(&s2, &p), "a1");
    // Ignore: zone b (0 pods) counts as a domain and a1 would make the skew 2.
    p.spec.as_mut().unwrap().topology_spread_constraints.as_mut().unwrap()[0]
        .node_affinity_policy = Some("Ignore".into());
    assert_eq!(
        place(&s2, &p),
        "ERR 0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    // The node without the key is rejected as missing the label.
    let mut p = pod("p", "1", "1Gi", spread(1, "DoNotSchedule"));
    p.spec.as_mut().unwrap().node_name = Some("n".into());
    assert!(place(&s2, &p).contains(
        "1 node(s) didn't match pod topology spread constraints (missing required label)"
    ));
    // ScheduleAnyway steers to the emptier zone without filtering.
    assert_eq!(place(&s, &pod("p", "1", "1Gi", spread(1, "ScheduleAnyway"))), "b1");
}

#[test]
fn scores_pick_the_expected_node() {
    let busy = Snapshot::new(
        vec![node("a", "4", "8Gi", json!({})), node("b", "4", "8Gi", json!({}))],
        vec![bound("x", "a", "3", json!({}))],
    );
    assert_eq!(place(&busy, &pod("p", "500m", "1Gi", json!({}))), "b", "least allocated");

    // Balanced: a has cpu used and memory free, so a memory-heavy pod balances it.
    let lopsided = Snapshot::new(
        vec![node("a", "4", "4Gi", json!({})), node("b", "4", "4Gi", json!({}))],
        vec![bound("x", "a", "2", json!({})), {
            let mut p = pod("y", "0", "2Gi", json!({}));
            p.spec.as_mut().unwrap().node_name = Some("b".into());
            p
        }],
    );
    assert_eq!(place(&lopsided, &pod("p", "0", "1Gi", json!({}))), "a", "balanced allocation");

    let prefer = Snapshot::new(
        vec![
            node(
                "a",
                "4",
                "8Gi",
                json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
            ),
            node("b", "4", "8Gi", json!({})),
        ],
        vec![],
    );
    assert_eq!(place(&prefer, &pod("p", "1", "1Gi", json!({}))), "b", "PreferNoSchedule avoided");
    let tol = json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}});
    assert_eq!(place(&prefer, &pod("p", "1", "1Gi", tol)), "a", "tolerated: tie broken by name");

    let s = zoned_cluster(vec![bound("db", "b1", "0", labeled("db"))]);
    let pref_node = json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}}});
    assert_eq!(place(&s, &pod("p", "1", "1Gi", pref_node)), "b1", "preferred node affinity");
    let pref_pod = |kind: &str| {
        json!({"spec": {"affinity": {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}})
    };
    assert_eq!(
        place(&s, &pod("p", "1", "1Gi", pref_pod("podAffinity"))),
        "b1",
        "preferred pod affinity"
    );
    assert_ne!(
        place(&s, &pod("p", "1", "1Gi", pref_pod("podAntiAffinity"))),
        "b1",
        "preferred anti-affinity"
    );
}

#[test]
fn ties_break_by_node_name() {
    let s = Snapshot::new(
        vec![
            node("z", "4", "8Gi", json!({})),
            node("m", "4", "8Gi", json!({})),
            node("q", "4", "8Gi", json!({})),
        ],
        vec![],
    );
    assert_eq!(place(&s, &pod("p", "1", "1Gi", json!({}))), "m");
}

#[test]
fn message_matches_kube_scheduler() {
    let cp = json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}});
    let s = Snapshot::new(
        vec![
            node("w", "1", "8Gi", json!({})),
            node("cp1", "8", "8Gi", cp.clone()),
            node("cp2", "8", "8Gi", cp),
        ],
        vec![],
    );
    let err = schedule(&s, &pod("p", "2", "1Gi", json!({}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    let never = pod("p", "2", "1Gi", json!({"spec": {"preemptionPolicy": "Never"}}));
    assert!(schedule(&s, &never).unwrap_err().message.ends_with("2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: not eligible due to preemptionPolicy=Never."));
    let empty = Snapshot::new(vec![], vec![]);
    assert_eq!(
        schedule(&empty, &pod("p", "1", "1Gi", json!({}))).unwrap_err().message,
        "0/0 nodes are available: preemption: 0/0 nodes are available: ."
    );
}

#[test]
fn accounting_follows_add_and_remove() {
    let done = bound("done", "a", "1", json!({"status": {"phase": "Succeeded"}}));
    let mut s = Snapshot::new(
        vec![node("a", "2", "4Gi", json!({}))],
        vec![bound("x", "a", "1", json!({})), done],
    );
    assert_eq!(s.requested("a"), Some((1000, 0, 1)));
    let p = pod(
        "p",
        "500m",
        "1Gi",
        json!({"spec": {"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "800m"}}}], "overhead": {"memory": "128Mi"}}}),
    );
    s.add_pod(&p, "a");
    assert_eq!(s.requested("a"), Some((1800, (1024 + 128) * 1024 * 1024, 2)));
    s.add_pod(&p, "a"); // re-adding the same pod does not double count
    assert_eq!(s.requested("a"), Some((1800, (1024 + 128) * 1024 * 1024, 2)));
    assert!(schedule(&s, &pod("q", "300m", "0", json!({}))).is_err());
    s.remove_pod(&p);
    assert_eq!(s.requested("a"), Some((1000, 0, 1)));
    assert_eq!(place(&s, &pod("q", "300m", "0", json!({}))), "a");
    // Pods on an unknown node wait for it; removing a node keeps its pods for its return.
    s.add_pod(&bound("y", "b", "1", json!({})), "b");
    s.upsert_node(node("b", "2", "4Gi", json!({})));
    assert_eq!(s.requested("b"), Some((1000, 0, 1)));
    s.remove_node("a");
    assert_eq!((s.node_count(), s.requested("a")), (1, None));
    s.upsert_node(node("a", "2", "4Gi", json!({})));
    assert_eq!(s.requested("a"), Some((1000, 0, 1)));
}

#[test]
fn schedules_2000_pods_on_500_nodes() {
    let nodes: Vec<Node> = (0..500)
        .map(|i| {
            node(
                &format!("node-{i:04}"),
                "32",
                "128Gi",
                json!({"metadata": {"labels": {"zone": format!("z{}", i % 5)}}}),
            )
        })
        .collect();
    let mut s = Snapshot::new(nodes, vec![]);
    let start = Instant::now();
    for i in 0..2000 {
        let p = pod(
            &format!("p{i}"),
            "250m",
            "512Mi",
            json!({"metadata": {"labels": {"app": format!("a{}", i % 20)}}}),
        );
        let node = schedule(&s, &p).unwrap().node;
        s.add_pod(&p, &node);
    }
    let elapsed = start.elapsed();
    println!("2000 pods x 500 nodes: {elapsed:?} ({:.0} pods/s)", 2000.0 / elapsed.as_secs_f64());
    let total: usize = (0..500).map(|i| s.requested(&format!("node-{i:04}")).unwrap().2).sum();
    assert_eq!(total, 2000);
}

#[test]
fn inter_pod_rejections_are_reported() {
    let term = json!([{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]);
    let s = Snapshot::new(
        vec![node("a", "4", "8Gi", json!({})), node("b", "4", "8Gi", json!({}))],
        vec![
            bound("db", "a", "0", labeled("db")),
            bound(
                "guard",
                "b",
                "0",
                json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
            ),
        ],
    );
    let mut extra = labeled("web");
    merge(
        &mut extra,
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}}}}),
    );
    assert_eq!(
        place(&s, &pod("p", "1", "1Gi", extra)),
        "ERR 0/2 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
}

#[test]
fn large_clusters_are_sampled_and_rotated() {
    assert_eq!(feasible_nodes_to_find(50), 50);
    assert_eq!(feasible_nodes_to_find(200), 100);
    assert_eq!(feasible_nodes_to_find(1000), 420);
    assert_eq!(feasible_nodes_to_find(5000), 500);
    assert_eq!(feasible_nodes_to_find(100_000), 5000);

    let nodes: Vec<Node> = (0..5000)
        .map(|i| {
            node(
                &format!("node-{i:05}"),
                "32",
                "128Gi",
                json!({"metadata": {"labels": {"zone": format!("z{}", i % 5)}}}),
            )
        })
        .collect();
    let mut s = Snapshot::new(nodes, vec![]);
    let pods: Vec<Pod> =
        (0..1000).map(|i| pod(&format!("p{i}"), "250m", "512Mi", json!({}))).collect();
    let start = Instant::now();
    let mut next = 0;
    for p in &pods {
        let decision = schedule_from(&s, p, next).unwrap();
        assert_eq!(decision.examined, 500, "filtering stops at the sample size");
        next = (next + decision.examined) % 5000;
        s.add_pod(p, &decision.placement.node);
    }
    let elapsed = start.elapsed();
    println!("1000 pods x 5000 nodes: {elapsed:?} ({:.0} pods/s)", 1000.0 / elapsed.as_secs_f64());
    let per_node: Vec<usize> =
        (0..5000).map(|i| s.requested(&format!("node-{i:05}")).unwrap().2).collect();
    assert_eq!(per_node.iter().sum::<usize>(), 1000);
    assert_eq!(per_node.iter().max(), Some(&1), "rotation spreads pods over the whole cluster");

    // A pod that fits nowhere is checked against every node, so its message counts them all.
    let huge = pod("huge", "64", "1Gi", json!({}));
    let err = schedule_from(&s, &huge, next).unwrap_err();
    assert!(err.message.starts_with("0/5000 nodes are available: 5000 Insufficient cpu."), "{err}");
}
