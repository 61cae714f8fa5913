//! What differs between resource types when objects are written: which parts a write may
//! change, the status an object starts with, and the defaults Kubernetes fills in (the ones
//! kubectl shows and controllers rely on).

use serde_json::{json, Map, Value};

use crate::resources::{ResourceType, Subresource};

/// Prepares a new object: a fresh status where the type owns one, and defaults.
pub fn prepare_create(resource: &ResourceType, object: &mut Value) {
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Namespace") => {
            object["spec"] = json!({ "finalizers": ["kubernetes"] });
            object["status"] = json!({ "phase": "Active" });
        }
        ("", "Pod") => {
            object["status"] = json!({ "phase": "Pending", "qosClass": qos_class(object) });
            default_tolerations(object);
        }
        // Agents register their node with its status.
        ("", "Node") => {}
        ("", "PersistentVolume" | "PersistentVolumeClaim") => {
            object["status"] = json!({ "phase": "Pending" });
        }
        ("", "Service") => {
            object["status"] = json!({ "loadBalancer": {} });
        }
        ("batch", "Job") => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            generate_job_selector(object);
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            let mut finalizers = crate::meta::finalizers(object);
            if !finalizers.iter().any(|f| f == crate::workers::CLEANUP_FINALIZER) {
                finalizers.push(crate::workers::CLEANUP_FINALIZER.to_string());
            }
            crate::meta::metadata_mut(object).insert("finalizers".into(), json!(finalizers));
        }
        _ if resource.has(Subresource::Status) => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        _ => {}
    }
    crate::defaults::apply(resource, object);
}

/// How long a pod stays on a node the masters find not ready or unreachable before it is
/// evicted, unless it says otherwise: Kubernetes' DefaultTolerationSeconds admission, with
/// 3 s instead of 300 s. Gossip finds a dead node in about two seconds, so its pods run
/// elsewhere within ten, while an agent restarting in a few seconds keeps its pods.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 3;

/// The NoExecute taints every pod tolerates for [`DEFAULT_TOLERATION_SECONDS`].
const NODE_PROBLEM_TAINTS: [&str; 2] =
    ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];

/// Adds a toleration of each node problem taint the pod does not tolerate already (a
/// toleration of that key or of every key, with effect NoExecute or every effect).
fn default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(tolerations) = tolerations.as_array_mut() else { return };
    for key in NODE_PROBLEM_TAINTS {
        let tolerated = tolerations.iter().any(|t| {
            let toleration_key = t["key"].as_str().unwrap_or_default();
            let effect = t["effect"].as_str().unwrap_or_default();
            (toleration_key == key || toleration_key.is_empty())
                && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            tolerations.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

/// Labels the Job controller finds its pods by: the new names and the legacy ones.
const JOB_UID_LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

/// Gives a Job without `spec.manualSelector: true` the selector Kubernetes generates: its pod
/// template is labelled with the Job's uid and name, and the selector matches the uid.
fn generate_job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let uid = job.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = job.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.is_object() {
        return;
    }
    let metadata = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})))
        .filter(|m| m.is_object());
    let labels = metadata
        .and_then(|m| m.as_object_mut())
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(labels) = labels {
        for key in JOB_UID_LABELS {
            labels.insert(key.into(), uid.clone());
        }
        for key in JOB_NAME_LABELS {
            labels.insert(key.into(), name.clone());
        }
    }
    spec.insert("selector".into(), json!({ "matchLabels": { JOB_UID_LABELS[0]: uid } }));
}

/// Prepares an update of the main resource: the status is kept from the stored object where
/// the type has a status subresource (status changes go through `/status`).
pub fn prepare_update(resource: &ResourceType, old: &Value, new: &mut Value) {
    if resource.has(Subresource::Status) {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    if resource.group.is_empty() && resource.kind == "Namespace" {
        // Namespace finalizers change only through `/finalize`.
        if let Some(spec) = old.get("spec") {
            new["spec"] = spec.clone();
        }
    }
    crate::defaults::apply(resource, new);
}

/// Prepares a status update: everything but the status comes from the stored object.
pub fn prepare_status_update(old: &Value, new: &Value) -> Value {
    let mut merged = old.clone();
    match new.get("status") {
        Some(status) => merged["status"] = status.clone(),
        None => {
            if let Some(map) = merged.as_object_mut() {
                map.remove("status");
            }
        }
    }
    merged
}

/// Prepares a namespace finalize: only `spec.finalizers` changes.
pub fn prepare_finalize(old: &Value, new: &Value) -> Value {
    let mut merged = old.clone();
    let finalizers = new.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
    merged["spec"] = json!({ "finalizers": finalizers });
    merged
}

/// A pod's quality-of-service class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|field| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let empty = Map::new();
    let mut any_set = false;
    let mut guaranteed = true;
    for container in containers {
        let requests =
            container.pointer("/resources/requests").and_then(Value::as_object).unwrap_or(&empty);
        let limits =
            container.pointer("/resources/limits").and_then(Value::as_object).unwrap_or(&empty);
        any_set |= !requests.is_empty() || !limits.is_empty();
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any_set, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "a", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(
            qos_class(&pod(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "100m"}}))), "Burstable");
    }

    #[test]
    fn pods_tolerate_node_problems_for_a_few_seconds_unless_they_say_otherwise() {
        let keys = |pod: &Value| -> Vec<(String, Value)> {
            pod["spec"]["tolerations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (t["key"].as_str().unwrap_or("*").to_owned(), t["tolerationSeconds"].clone())
                })
                .collect()
        };
        // (tolerations given, tolerations after admission)
        let cases = [
            (
                json!(null),
                vec![
                    ("node.kubernetes.io/not-ready", json!(3)),
                    ("node.kubernetes.io/unreachable", json!(3)),
                ],
            ),
            (
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]),
                vec![
                    ("node.kubernetes.io/unreachable", json!(60)),
                    ("node.kubernetes.io/not-ready", json!(3)),
                ],
            ),
            // A toleration of every taint (a DaemonSet's kind) leaves nothing to add.
            (json!([{"operator": "Exists"}]), vec![("*", json!(null))]),
            // A NoSchedule toleration of the key does not keep the pod through a NoExecute one.
            (
                json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]),
                vec![
                    ("node.kubernetes.io/not-ready", json!(null)),
                    ("node.kubernetes.io/not-ready", json!(3)),
                    ("node.kubernetes.io/unreachable", json!(3)),
                ],
            ),
        ];
        for (given, expected) in cases {
            let mut pod = json!({"spec": {"containers": [{"name": "a"}]}});
            if !given.is_null() {
                pod["spec"]["tolerations"] = given.clone();
            }
            default_tolerations(&mut pod);
            let expected: Vec<(String, Value)> =
                expected.into_iter().map(|(k, s)| (k.to_owned(), s)).collect();
            assert_eq!(keys(&pod), expected, "given {given}");
        }
    }

    #[test]
    fn jobs_get_a_generated_selector_unless_manual() {
        let resource = crate::resources::builtin().into_iter().find(|r| r.kind == "Job").unwrap();
        let mut job = json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": [], "restartPolicy": "Never"}}},
        });
        prepare_create(&resource, &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["controller-uid"], "u-1");

        let mut manual = json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}}},
        });
        prepare_create(&resource, &mut manual);
        assert_eq!(manual["spec"]["selector"], json!({"matchLabels": {"a": "b"}}));
        assert_eq!(manual["spec"]["template"]["metadata"]["labels"], json!({"a": "b"}));
    }

    #[test]
    fn status_updates_touch_only_status() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"s": 1}});
        let new = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 2}, "status": {"s": 2}});
        let merged = prepare_status_update(&old, &new);
        assert_eq!(merged["spec"]["x"], 1);
        assert_eq!(merged["metadata"]["labels"]["a"], "1");
        assert_eq!(merged["status"]["s"], 2);
    }
}
