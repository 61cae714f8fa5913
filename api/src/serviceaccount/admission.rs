//! The ServiceAccount admission of a new pod, as Kubernetes' `ServiceAccount` admission
//! plugin does it: the pod runs as `default` unless it names an account, takes the account's
//! image pull secrets if it has none, and, unless automounting is turned off, gets the
//! `kube-api-access-*` projected volume (token, cluster CA, namespace) mounted in every
//! container. Runs at creation only: a pod's spec is immutable afterwards, so updates never
//! see (or fight) this.

use serde_json::{json, Map, Value};

/// Where containers find their token, CA and namespace.
pub const API_ACCESS_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the projected volume's name; a random suffix follows.
const API_ACCESS_VOLUME_PREFIX: &str = "kube-api-access-";

/// The account a pod that names none runs as.
const DEFAULT_ACCOUNT: &str = "default";

/// Marks a mirror pod (a static pod's reflection), which admission leaves alone.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The lifetime the projected token is asked for (Kubernetes' 3607 s, a marker that the
/// token was set up by admission).
pub const PROJECTED_TOKEN_SECONDS: i64 = 3607;

/// The ServiceAccount a pod runs as: `spec.serviceAccountName`, else the deprecated
/// `spec.serviceAccount`, else `default`.
pub fn account_name(pod: &Value) -> String {
    let field = |key: &str| {
        pod.pointer(&format!("/spec/{key}")).and_then(Value::as_str).filter(|s| !s.is_empty())
    };
    field("serviceAccountName")
        .or_else(|| field("serviceAccount"))
        .unwrap_or(DEFAULT_ACCOUNT)
        .into()
}

/// The projected volume Kubernetes gives pods for API access.
fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": PROJECTED_TOKEN_SECONDS, "path": "token" } },
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{ "key": "ca.crt", "path": "ca.crt" }],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [{
                            "path": "namespace",
                            "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" },
                        }]
                    }
                },
            ],
        },
    })
}

fn array_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    let slot = map.entry(key).or_insert_with(|| json!([]));
    if slot.is_null() {
        *slot = json!([]);
    }
    slot.as_array_mut()
}

/// Admits a new pod: `account` is its ServiceAccount as stored (None if it does not exist
/// yet) and `suffix` the random suffix a new volume's name gets.
///
/// Unlike Kubernetes, a pod whose ServiceAccount does not exist is admitted (with automount
/// on): the `default` account is created by a controller shortly after its namespace, and
/// refusing pods meanwhile would make every fresh namespace flaky for its first moments.
pub fn admit_pod(pod: &mut Value, account: Option<&Value>, suffix: &str) {
    let mirror =
        pod.pointer(&format!("/metadata/annotations/{}", MIRROR_ANNOTATION.replace('/', "~1")));
    if mirror.is_some() {
        return;
    }
    let name = account_name(pod);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));

    let pull_secrets = account.and_then(|a| a.get("imagePullSecrets")).and_then(Value::as_array);
    let has_pull_secrets =
        spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    if let (Some(secrets), false) = (pull_secrets, has_pull_secrets) {
        if !secrets.is_empty() {
            spec.insert("imagePullSecrets".into(), json!(secrets));
        }
    }

    // The pod's own setting wins over its account's; unset on both means mount.
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account.and_then(|a| a.get("automountServiceAccountToken")).and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if !automount {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|volume| volume.get("name").and_then(Value::as_str))
        .find(|name| name.starts_with(API_ACCESS_VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name =
        existing.clone().unwrap_or_else(|| format!("{API_ACCESS_VOLUME_PREFIX}{suffix}"));
    let mount =
        json!({ "name": volume_name, "readOnly": true, "mountPath": API_ACCESS_MOUNT_PATH });
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let Some(mounts) = array_mut(container, "volumeMounts") else { continue };
            let has_path = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(API_ACCESS_MOUNT_PATH));
            if !has_path {
                mounts.push(mount.clone());
                mounted = true;
            }
        }
    }
    if mounted && existing.is_none() {
        if let Some(volumes) = array_mut(spec, "volumes") {
            volumes.push(api_access_volume(&volume_name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({ "metadata": { "name": "p", "namespace": "dev" }, "spec": spec })
    }

    fn mount(volume: &str) -> Value {
        json!({ "name": volume, "readOnly": true, "mountPath": API_ACCESS_MOUNT_PATH })
    }

    #[test]
    fn a_plain_pod_runs_as_default_with_api_access() {
        let mut admitted = pod(json!({
            "initContainers": [{ "name": "init", "image": "i" }],
            "containers": [{ "name": "c", "image": "i", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
            "volumes": [{ "name": "data", "emptyDir": {} }],
        }));
        admit_pod(&mut admitted, None, "abcde");
        let spec = &admitted["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"],
            json!([mount("kube-api-access-abcde")])
        );
        assert_eq!(spec["containers"][0]["volumeMounts"][1], mount("kube-api-access-abcde"));
        assert_eq!(spec["volumes"][1], api_access_volume("kube-api-access-abcde"));
        let projected = &spec["volumes"][1]["projected"];
        assert_eq!(projected["defaultMode"], 420);
        assert_eq!(projected["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(projected["sources"][1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            projected["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn automount_follows_the_pod_then_its_account() {
        let account = |automount: Option<bool>| match automount {
            Some(value) => {
                json!({ "metadata": { "name": "robot" }, "automountServiceAccountToken": value })
            }
            None => json!({ "metadata": { "name": "robot" } }),
        };
        let cases = [
            ("nothing said", None, Some(account(None)), true),
            ("no account yet", None, None, true),
            ("account says no", None, Some(account(Some(false))), false),
            ("pod says no", Some(false), Some(account(Some(true))), false),
            ("pod says yes over its account", Some(true), Some(account(Some(false))), true),
        ];
        for (name, on_pod, account, mounted) in cases {
            let mut spec = json!({ "serviceAccountName": "robot", "containers": [{ "name": "c", "image": "i" }] });
            if let Some(value) = on_pod {
                spec["automountServiceAccountToken"] = json!(value);
            }
            let mut admitted = pod(spec);
            admit_pod(&mut admitted, account.as_ref(), "xyz12");
            assert_eq!(admitted["spec"]["serviceAccountName"], "robot", "{name}");
            assert_eq!(admitted["spec"]["volumes"].is_array(), mounted, "{name}");
            assert_eq!(
                admitted["spec"]["containers"][0]["volumeMounts"].is_array(),
                mounted,
                "{name}"
            );
        }
    }

    #[test]
    fn existing_mounts_and_volumes_are_respected() {
        // A container mounting the path itself keeps its own mount; others get the volume.
        let mut admitted = pod(json!({
            "containers": [
                { "name": "own", "image": "i", "volumeMounts": [{ "name": "mine", "mountPath": API_ACCESS_MOUNT_PATH }] },
                { "name": "plain", "image": "i" },
            ],
            "volumes": [{ "name": "mine", "emptyDir": {} }],
        }));
        admit_pod(&mut admitted, None, "abcde");
        let spec = &admitted["spec"];
        assert_eq!(spec["containers"][0]["volumeMounts"].as_array().unwrap().len(), 1);
        assert_eq!(spec["containers"][1]["volumeMounts"], json!([mount("kube-api-access-abcde")]));
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 2);

        // Every container mounting the path: no volume is added.
        let mut admitted = pod(json!({
            "containers": [{ "name": "own", "image": "i", "volumeMounts": [{ "name": "mine", "mountPath": API_ACCESS_MOUNT_PATH }] }],
            "volumes": [{ "name": "mine", "emptyDir": {} }],
        }));
        admit_pod(&mut admitted, None, "abcde");
        assert_eq!(admitted["spec"]["volumes"].as_array().unwrap().len(), 1);

        // An API access volume already there (a pod copied from another) is reused.
        let mut admitted = pod(json!({
            "containers": [{ "name": "c", "image": "i" }],
            "volumes": [api_access_volume("kube-api-access-old12")],
        }));
        admit_pod(&mut admitted, None, "abcde");
        assert_eq!(admitted["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            admitted["spec"]["containers"][0]["volumeMounts"],
            json!([mount("kube-api-access-old12")])
        );
    }

    #[test]
    fn the_account_is_named_by_either_field_and_lends_its_pull_secrets() {
        let account = json!({ "metadata": { "name": "builder" }, "imagePullSecrets": [{ "name": "registry" }] });
        let mut admitted = pod(
            json!({ "serviceAccount": "builder", "containers": [{ "name": "c", "image": "i" }] }),
        );
        admit_pod(&mut admitted, Some(&account), "abcde");
        assert_eq!(admitted["spec"]["serviceAccountName"], "builder");
        assert_eq!(admitted["spec"]["imagePullSecrets"], json!([{ "name": "registry" }]));

        let mut own = pod(json!({
            "serviceAccountName": "builder",
            "imagePullSecrets": [{ "name": "mine" }],
            "containers": [{ "name": "c", "image": "i" }],
        }));
        admit_pod(&mut own, Some(&account), "abcde");
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{ "name": "mine" }]));
    }

    #[test]
    fn mirror_pods_are_left_alone() {
        let mut mirror = pod(json!({ "containers": [{ "name": "c", "image": "i" }] }));
        mirror["metadata"]["annotations"] = json!({ MIRROR_ANNOTATION: "hash" });
        let before = mirror.clone();
        admit_pod(&mut mirror, None, "abcde");
        assert_eq!(mirror, before);
    }
}
