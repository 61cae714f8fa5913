//! Defaults Kubernetes fills into objects on every write, for the fields kubectl shows and
//! controllers rely on. A default never overwrites a value the client set.

use serde_json::{json, Value};

use crate::resources::ResourceType;

/// Sets `object[key]` to `value` unless it holds a non-null value already.
fn default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let slot = map.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The object at `object[key]`, created empty if absent.
fn child<'a>(object: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    default(object, key, json!({}));
    object.get_mut(key).filter(|value| value.is_object())
}

pub fn apply(resource: &ResourceType, object: &mut Value) {
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = child(object, "spec") {
                pod_spec(spec);
            }
        }
        ("", "Service") => {
            if let Some(spec) = child(object, "spec") {
                service_spec(spec);
            }
        }
        ("", "Secret") => default(object, "type", json!("Opaque")),
        ("apps", "Deployment") => {
            if let Some(spec) = child(object, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                if let Some(strategy) = child(spec, "strategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy["type"] == "RollingUpdate" {
                        if let Some(rolling) = child(strategy, "rollingUpdate") {
                            default(rolling, "maxSurge", json!("25%"));
                            default(rolling, "maxUnavailable", json!("25%"));
                        }
                    }
                }
                template(spec);
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = child(object, "spec") {
                default(spec, "replicas", json!(1));
                template(spec);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = child(object, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "revisionHistoryLimit", json!(10));
                if let Some(strategy) = child(spec, "updateStrategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy["type"] == "RollingUpdate" {
                        if let Some(rolling) = child(strategy, "rollingUpdate") {
                            default(rolling, "partition", json!(0));
                        }
                    }
                }
                if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
                    default(policy, "whenDeleted", json!("Retain"));
                    default(policy, "whenScaled", json!("Retain"));
                }
                template(spec);
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = child(object, "spec") {
                default(spec, "revisionHistoryLimit", json!(10));
                if let Some(strategy) = child(spec, "updateStrategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy["type"] == "RollingUpdate" {
                        if let Some(rolling) = child(strategy, "rollingUpdate") {
                            default(rolling, "maxSurge", json!(0));
                            default(rolling, "maxUnavailable", json!(1));
                        }
                    }
                }
                template(spec);
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = child(object, "spec") {
                job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = child(object, "spec") {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(job) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
                    job_spec(job);
                }
            }
        }
        _ => {}
    }
}

fn job_spec(spec: &mut Value) {
    // Neither set means one pod to completion; parallelism alone means a work queue.
    let unset = |key: &str| spec.get(key).is_none_or(Value::is_null);
    if unset("completions") && unset("parallelism") {
        spec["completions"] = json!(1);
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    template(spec);
}

fn template(spec: &mut Value) {
    if let Some(pod) = child(spec, "template").and_then(|t| child(t, "spec")) {
        pod_spec(pod);
    }
}

fn pod_spec(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    sync_service_account(spec);
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers.iter_mut().for_each(container);
        }
    }
}

/// `serviceAccount` is the deprecated name of `serviceAccountName`: a spec that sets only the
/// old name runs as that account, and the old name always reads as the new one (Kubernetes'
/// v1 conversion). Pods get an account (`default` if they name none) from ServiceAccount
/// admission when they are created; templates keep what their author wrote.
pub fn sync_service_account(spec: &mut Value) {
    let named = |key: &str| spec.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let account =
        named("serviceAccountName").or_else(|| named("serviceAccount")).map(str::to_string);
    if let (Some(account), Some(map)) = (account, spec.as_object_mut()) {
        map.insert("serviceAccountName".into(), json!(account));
        map.insert("serviceAccount".into(), json!(account));
    }
}

fn container(container: &mut Value) {
    default(container, "terminationMessagePath", json!("/dev/termination-log"));
    default(container, "terminationMessagePolicy", json!("File"));
    default(container, "resources", json!({}));
    let image = container.get("image").and_then(Value::as_str).unwrap_or("");
    default(container, "imagePullPolicy", json!(pull_policy(image)));
    if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            default(port, "protocol", json!("TCP"));
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digests included).
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn service_spec(spec: &mut Value) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if spec["type"] != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            default(port, "protocol", json!("TCP"));
            let number = port.get("port").cloned().unwrap_or(Value::Null);
            default(port, "targetPort", number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Catalog;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("busybox"), "Always");
        assert_eq!(pull_policy("busybox:latest"), "Always");
        assert_eq!(pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy("registry:5000/busybox"), "Always");
        assert_eq!(pull_policy("registry:5000/busybox:1"), "IfNotPresent");
        assert_eq!(pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn the_deprecated_service_account_field_follows_the_new_one() {
        let cases = [
            (json!({}), json!({})),
            (
                json!({"serviceAccountName": "a"}),
                json!({"serviceAccountName": "a", "serviceAccount": "a"}),
            ),
            (
                json!({"serviceAccount": "b"}),
                json!({"serviceAccountName": "b", "serviceAccount": "b"}),
            ),
            (
                json!({"serviceAccountName": "a", "serviceAccount": "b"}),
                json!({"serviceAccountName": "a", "serviceAccount": "a"}),
            ),
            (
                json!({"serviceAccountName": "", "serviceAccount": "b"}),
                json!({"serviceAccountName": "b", "serviceAccount": "b"}),
            ),
        ];
        for (mut spec, expected) in cases {
            sync_service_account(&mut spec);
            assert_eq!(spec, expected);
        }
    }

    #[test]
    fn deployment_defaults_do_not_overwrite() {
        let catalog = Catalog::default();
        let deployments = catalog.get("apps", "v1", "deployments").unwrap();
        let mut object = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "web:1"}]}}}});
        apply(&deployments, &mut object);
        assert_eq!(object["spec"]["replicas"], 3);
        assert_eq!(object["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let container = &object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(object["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }
}
