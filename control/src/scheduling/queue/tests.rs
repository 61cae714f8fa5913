//! The queue's bookkeeping: assumed pods, backoff, priorities, relists.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::{Outcome, Queue};

fn node(name: &str, cpu: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
    }))
    .unwrap()
}

fn pod(name: &str, cpu: &str, priority: i32) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        }))
        .unwrap(),
    )
}

fn bound(pod: &Pod, node: &str) -> Arc<Pod> {
    let mut pod = pod.clone();
    pod.spec.as_mut().unwrap().node_name = Some(node.into());
    Arc::new(pod)
}

/// Names of the pods bound by a batch, and of those that fit nowhere.
fn decide(queue: &mut Queue, now: Instant) -> (Vec<String>, Vec<String>) {
    let mut placed = Vec::new();
    let mut failed = Vec::new();
    for outcome in queue.next_batch(now, 100) {
        match outcome {
            Outcome::Bind { pod, node, .. } => {
                placed.push(format!("{}@{node}", pod.metadata.name.as_deref().unwrap()))
            }
            Outcome::Unschedulable { pod, .. } => failed.push(pod.metadata.name.clone().unwrap()),
        }
    }
    (placed, failed)
}

fn ready_queue(nodes: &[(&str, &str)]) -> Queue {
    let mut queue = Queue::default();
    queue.nodes_relisted(nodes.iter().map(|(n, cpu)| node(n, cpu)).collect());
    queue.pods_relisted(vec![]);
    queue
}

#[test]
fn assumed_pods_use_capacity_and_are_not_placed_twice() {
    let now = Instant::now();
    let mut queue = ready_queue(&[("a", "1")]);
    queue.pod_applied(pod("p1", "600m", 0));
    queue.pod_applied(pod("p2", "600m", 0));
    let (placed, failed) = decide(&mut queue, now);
    assert_eq!(placed, ["p1@a"]);
    assert_eq!(failed, ["p2"], "p1's assumed 600m leaves no room on a 1-cpu node");
    // The watch repeats p1 unbound while its binding is in flight: nothing to do.
    queue.pod_applied(pod("p1", "600m", 0));
    assert!(decide(&mut queue, now).0.is_empty());
    // The watch shows p1 bound: still counted once.
    queue.pod_applied(bound(&pod("p1", "600m", 0), "a"));
    assert!(!queue.has_work(now));
}

#[test]
fn failed_bindings_free_the_node_and_back_off() {
    let now = Instant::now();
    let mut queue = ready_queue(&[("a", "1")]);
    queue.pod_applied(pod("p1", "600m", 0));
    assert_eq!(decide(&mut queue, now).0, ["p1@a"]);
    queue.binding_failed(&pod("p1", "600m", 0), now);
    assert!(!queue.has_work(now), "backing off for a second");
    assert_eq!(queue.next_retry(), Some(now + Duration::from_secs(1)));
    queue.pod_applied(pod("p2", "600m", 0));
    assert_eq!(decide(&mut queue, now).0, ["p2@a"], "p1's capacity was released");
    let later = now + Duration::from_secs(1);
    assert_eq!(decide(&mut queue, later).1, ["p1"]);
    assert_eq!(queue.next_retry(), Some(later + Duration::from_secs(2)), "backoff doubles");
}

#[test]
fn new_nodes_retry_unschedulable_pods_at_once() {
    let now = Instant::now();
    let mut queue = ready_queue(&[("a", "1")]);
    queue.pod_applied(pod("big", "2", 0));
    assert_eq!(decide(&mut queue, now).1, ["big"]);
    assert!(!queue.has_work(now));
    queue.node_applied(node("b", "4"));
    assert_eq!(decide(&mut queue, now).0, ["big@b"]);
}

#[test]
fn higher_priority_first_then_arrival_order() {
    let now = Instant::now();
    let mut queue = ready_queue(&[("a", "10")]);
    queue.pod_applied(pod("low-1", "1", 0));
    queue.pod_applied(pod("high", "1", 100));
    queue.pod_applied(pod("low-2", "1", 0));
    let placed: Vec<String> =
        decide(&mut queue, now).0.into_iter().map(|p| p.replace("@a", "")).collect();
    assert_eq!(placed, ["high", "low-1", "low-2"]);
}

#[test]
fn deleted_and_foreign_pods_leave_the_queue() {
    let now = Instant::now();
    let mut queue = ready_queue(&[("a", "10")]);
    queue.pod_applied(pod("gone", "1", 0));
    queue.pod_deleted(&pod("gone", "1", 0));
    let mut other = (*pod("other", "1", 0)).clone();
    other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
    queue.pod_applied(Arc::new(other));
    assert!(!queue.has_work(now));
}

#[test]
fn a_relist_forgets_what_vanished_and_keeps_what_is_listed() {
    let now = Instant::now();
    let mut queue = ready_queue(&[("a", "1")]);
    queue.pod_applied(bound(&pod("old", "1", 0), "a"));
    queue.pod_applied(pod("waiting", "1", 0));
    // The watch restarts: `old` was deleted meanwhile, `waiting` is still there.
    queue.pods_relisted(vec![pod("waiting", "1", 0)]);
    assert_eq!(decide(&mut queue, now).0, ["waiting@a"], "old's cpu is free again");
}

fn pod_with_claim(name: &str, claim: &str) -> Arc<Pod> {
    let mut p = (*pod(name, "100m", 0)).clone();
    p.spec.as_mut().unwrap().volumes = serde_json::from_value(
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]),
    )
    .unwrap();
    Arc::new(p)
}

fn claim(name: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": "local"},
    });
    if let (Some(base), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        for (k, value) in extra {
            base.insert(k, value);
        }
    }
    serde_json::from_value(v).unwrap()
}

fn local_volume(name: &str, node: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
        "status": {"phase": "Available"},
    }))
    .unwrap()
}

fn storage_queue() -> Queue {
    let mut queue = Queue::default();
    let mut a = node("a", "4");
    a.metadata.labels = Some([("kubernetes.io/hostname".to_string(), "a".to_string())].into());
    queue.nodes_relisted(vec![a]);
    queue.pods_relisted(vec![]);
    let local: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .unwrap();
    queue.classes_relisted(vec![local]);
    queue.volumes_relisted(vec![]);
    queue.claims_relisted(vec![]);
    queue
}

#[test]
fn claim_changes_retry_the_pods_using_the_claim() {
    let now = Instant::now();
    let mut queue = storage_queue();
    queue.pod_applied(pod_with_claim("user", "data"));
    queue.pod_applied(pod_with_claim("bystander", "other"));
    assert_eq!(decide(&mut queue, now).1, ["user", "bystander"], "neither claim exists");
    assert!(!queue.has_work(now));

    // --- the claim the first pod uses appears: only that pod is tried again
    queue.claim_applied(claim("data", json!({})));
    assert!(queue.has_work(now));
    assert_eq!(decide(&mut queue, now).1, ["user"], "no volume for it yet");
    queue.claim_deleted(&claim("other", json!({})));
    assert!(!queue.has_work(now), "a deleted claim helps no pod");

    // --- a volume on the node appears: every pod backing off is tried again
    queue.volume_applied(local_volume("local-a", "a"));
    let mut placed = Vec::new();
    for outcome in queue.next_batch(now, 100) {
        match outcome {
            Outcome::Bind { pod, node, volumes } => {
                let chosen: Vec<_> = volumes
                    .prebind
                    .iter()
                    .map(|(v, c)| (v.metadata.name.clone(), c.metadata.name.clone()))
                    .collect();
                placed.push((pod.metadata.name.clone().unwrap(), node, chosen));
            }
            Outcome::Unschedulable { pod, .. } => {
                assert_eq!(pod.metadata.name.as_deref(), Some("bystander"));
            }
        }
    }
    let chosen = vec![(Some("local-a".to_string()), Some("data".to_string()))];
    assert_eq!(placed, [("user".to_string(), "a".to_string(), chosen)]);

    // --- a second pod of another claim finds the volume assumed; the binding fails and frees it
    queue.claim_applied(claim("more", json!({})));
    queue.pod_applied(pod_with_claim("late", "more"));
    assert_eq!(decide(&mut queue, now).1, ["late"]);
    queue.binding_failed(&pod_with_claim("user", "data"), now);
    // Both are due a second later, `late` first (same time, key order): the volume is free.
    let later = now + Duration::from_secs(1);
    assert_eq!(decide(&mut queue, later), (vec!["late@a".to_string()], vec!["user".to_string()]));
}
