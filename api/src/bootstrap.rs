//! Objects every cluster starts with: the system namespaces and the default cluster roles.
//! Every master writes them at start if absent, so a new cluster and an upgraded one agree.

use flotilla_store::KvStore;
use serde_json::{json, Value};

use crate::allocate::ServiceRanges;
use crate::error::ApiError;
use crate::registry::{Registry, WriteOptions};

/// The namespaces Kubernetes creates itself.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The user-facing cluster roles (`cluster-admin`, `admin`, `edit`, `view`), in the spirit of
/// Kubernetes' defaults.
fn cluster_roles() -> Vec<(&'static str, Value)> {
    let workloads = [
        rule(
            &[""],
            &[
                "pods",
                "pods/log",
                "pods/status",
                "services",
                "endpoints",
                "configmaps",
                "persistentvolumeclaims",
                "serviceaccounts",
                "events",
                "limitranges",
                "resourcequotas",
            ],
            READ,
        ),
        rule(
            &["apps"],
            &[
                "deployments",
                "replicasets",
                "statefulsets",
                "daemonsets",
                "controllerrevisions",
                "deployments/scale",
                "replicasets/scale",
                "statefulsets/scale",
            ],
            READ,
        ),
        rule(&["batch"], &["jobs", "cronjobs"], READ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], READ),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], READ),
        rule(&["policy"], &["poddisruptionbudgets"], READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&["coordination.k8s.io"], &["leases"], READ),
    ];
    let editable = [
        rule(
            &[""],
            &[
                "pods",
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "pods/eviction",
                "services",
                "endpoints",
                "configmaps",
                "secrets",
                "persistentvolumeclaims",
                "serviceaccounts",
            ],
            WRITE,
        ),
        rule(
            &["apps"],
            &[
                "deployments",
                "replicasets",
                "statefulsets",
                "daemonsets",
                "deployments/scale",
                "replicasets/scale",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["batch"], &["jobs", "cronjobs"], WRITE),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(&["coordination.k8s.io"], &["leases"], WRITE),
    ];
    let view: Vec<Value> = workloads.to_vec();
    let mut edit = view.clone();
    edit.extend(editable.iter().cloned());
    let mut admin = edit.clone();
    admin.push(rule(&["rbac.authorization.k8s.io"], &["roles", "rolebindings"], WRITE));
    vec![
        (
            "cluster-admin",
            json!([
                { "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] },
                { "nonResourceURLs": ["*"], "verbs": ["*"] },
            ]),
        ),
        ("admin", json!(admin)),
        ("edit", json!(edit)),
        ("view", json!(view)),
        ("system:node", json!(node_rules())),
    ]
}

/// What a node agent may do (Kubernetes' `system:node` role): register and report its Node,
/// read the pods and what they mount, report pod status and confirm deletions, record events.
fn node_rules() -> Vec<Value> {
    const READ: &[&str] = &["get", "list", "watch"];
    vec![
        rule(&[""], &["nodes"], &["get", "list", "watch", "create", "update", "patch"]),
        rule(&[""], &["nodes/status"], &["patch", "update"]),
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
        rule(&[""], &["pods/status"], &["patch", "update"]),
        rule(&[""], &["configmaps", "secrets", "services", "endpoints"], READ),
        rule(&[""], &["persistentvolumeclaims", "persistentvolumes"], &["get"]),
        rule(&[""], &["events"], &["create", "patch", "update"]),
        rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"]),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
    ]
}

/// The Services every cluster has: `default/kubernetes` on the first address of the service
/// range, and `kube-system/kube-dns` on the tenth, which every agent answers itself (its
/// cluster DNS is node-local, so the Service has no endpoints).
fn services(ranges: &ServiceRanges) -> Vec<Value> {
    let kubernetes = ranges.nth(1);
    let dns = ranges.nth(10);
    vec![
        json!({
            "metadata": {
                "name": "kubernetes", "namespace": "default",
                "labels": { "component": "apiserver", "provider": "kubernetes" },
            },
            "spec": {
                "type": "ClusterIP", "clusterIP": kubernetes.to_string(),
                "clusterIPs": [kubernetes.to_string()], "sessionAffinity": "None",
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443 }],
            },
        }),
        json!({
            "metadata": {
                "name": "kube-dns", "namespace": "kube-system",
                "labels": {
                    "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS",
                },
            },
            "spec": {
                "type": "ClusterIP", "clusterIP": dns.to_string(), "clusterIPs": [dns.to_string()],
                "sessionAffinity": "None",
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                ],
            },
        }),
    ]
}

/// Creates whatever of the bootstrap objects is missing.
pub async fn ensure<S: KvStore>(registry: &Registry<S>) -> Result<(), ApiError> {
    let options = WriteOptions {
        field_validation: crate::registry::FieldValidation::Ignore,
        ..Default::default()
    };
    let mut objects: Vec<(&str, &str, Value)> = SYSTEM_NAMESPACES
        .iter()
        .map(|name| ("", "namespaces", json!({ "metadata": { "name": name } })))
        .collect();
    objects.extend(services(&registry.ranges).into_iter().map(|service| ("", "services", service)));
    for (name, rules) in cluster_roles() {
        objects.push((
            "rbac.authorization.k8s.io",
            "clusterroles",
            json!({
                "metadata": { "name": name, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
                "rules": rules,
            }),
        ));
    }
    objects.push((
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        json!({
            "metadata": { "name": "cluster-admin", "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters" }],
        }),
    ));
    objects.push((
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        json!({
            "metadata": { "name": "system:node", "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes" }],
        }),
    ));
    // Created last: `flotilla up` waits for this one to know the bootstrap is complete.
    objects.push((
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        json!({
            "metadata": { "name": "flotilla:masters" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "flotilla:masters" }],
        }),
    ));
    for (group, plural, object) in objects {
        let Some(resource) = registry.catalog.get(group, "v1", plural) else { continue };
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
        let key = resource.key(namespace.as_deref(), crate::meta::name(&object));
        if registry.objects.get(&key, false).await?.is_some() {
            continue;
        }
        match registry.create(&resource, namespace.as_deref(), object, &options).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
