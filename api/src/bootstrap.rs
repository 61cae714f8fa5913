//! Objects every cluster starts with: the system namespaces and the default cluster roles.
//! Every master writes them at start if absent, so a new cluster and an upgraded one agree;
//! a default cluster role that lacks permissions a newer version grants gets them added (as
//! Kubernetes reconciles its bootstrap roles), unless it is annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"`.

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
                "pods/proxy",
                "services",
                "services/proxy",
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
        (
            "system:discovery",
            json!([non_resource_get(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])]),
        ),
        (
            "system:basic-user",
            json!([
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ]),
        ),
        (
            "system:public-info-viewer",
            json!([non_resource_get(&["/healthz", "/livez", "/readyz", "/version", "/version/"])]),
        ),
        (
            "system:service-account-issuer-discovery",
            json!([non_resource_get(&[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ])]),
        ),
    ]
}

fn non_resource_get(urls: &[&str]) -> Value {
    json!({ "nonResourceURLs": urls, "verbs": ["get"] })
}

/// Who the default cluster roles are bound to, each by a ClusterRoleBinding of its name.
const CLUSTER_ROLE_BINDINGS: [(&str, &[&str]); 6] = [
    ("cluster-admin", &["system:masters"]),
    ("system:node", &["system:nodes"]),
    ("system:discovery", &["system:authenticated"]),
    ("system:basic-user", &["system:authenticated"]),
    ("system:public-info-viewer", &["system:authenticated", "system:unauthenticated"]),
    ("system:service-account-issuer-discovery", &["system:serviceaccounts"]),
];

/// The rules of `defaults` that the rules of a stored role do not cover.
fn missing_rules(stored: &Value, defaults: &[Value]) -> Vec<Value> {
    let held = stored.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    defaults.iter().filter(|rule| !crate::rbac::covered(&held, rule)).cloned().collect()
}

/// What a node agent may do (Kubernetes' `system:node` role): register and report its Node,
/// read the pods and what they mount, request their service-account tokens, report pod status
/// and confirm deletions, record events.
fn node_rules() -> Vec<Value> {
    const READ: &[&str] = &["get", "list", "watch"];
    vec![
        rule(&[""], &["nodes"], &["get", "list", "watch", "create", "update", "patch"]),
        rule(&[""], &["nodes/status"], &["patch", "update"]),
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
        rule(&[""], &["pods/status"], &["patch", "update"]),
        rule(&[""], &["configmaps", "secrets", "services", "endpoints"], READ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
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

/// The annotation that keeps a default cluster role as its owner edited it.
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// Adds to a stored default cluster role the rules of `default` it lacks. The update carries
/// the stored resourceVersion, so masters starting together never undo each other; the loser
/// gets a conflict and its next pass finds nothing missing.
async fn reconcile_role<S: KvStore>(
    registry: &Registry<S>,
    resource: &std::sync::Arc<crate::resources::ResourceType>,
    mut stored: Value,
    default: &Value,
    options: &WriteOptions,
) -> Result<(), ApiError> {
    let pinned =
        stored.pointer(&format!("/metadata/annotations/{}", AUTOUPDATE.replace('/', "~1")));
    if pinned.and_then(Value::as_str) == Some("false") {
        return Ok(());
    }
    let defaults = default.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    let missing = missing_rules(&stored, &defaults);
    if missing.is_empty() {
        return Ok(());
    }
    let name = crate::meta::name(&stored).to_string();
    let mut rules = stored.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    rules.extend(missing);
    stored["rules"] = json!(rules);
    let target = crate::registry::Target { resource: resource.clone(), namespace: None, name };
    registry.update(&target, stored, crate::registry::Part::Main, options).await?;
    tracing::info!(role = %target.name, "added missing permissions to a default cluster role");
    Ok(())
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
                "metadata": {
                    "name": name,
                    "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" },
                    "annotations": { AUTOUPDATE: "true" },
                },
                "rules": rules,
            }),
        ));
    }
    for (role, groups) in CLUSTER_ROLE_BINDINGS {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|group| json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group }))
            .collect();
        objects.push((
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            json!({
                "metadata": { "name": role, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
                "subjects": subjects,
            }),
        ));
    }
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
        if let Some(stored) = registry.objects.get(&key, false).await? {
            if plural == "clusterroles" {
                reconcile_role(registry, &resource, stored.object, &object, &options).await?;
            }
            continue;
        }
        match registry.create(&resource, namespace.as_deref(), object, &options).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_role_gets_only_the_rules_it_lacks() {
        let defaults = node_rules();
        let token = rule(&[""], &["serviceaccounts/token"], &["create"]);
        let mut older: Vec<Value> = defaults.clone();
        older.retain(|r| *r != token);
        let cases = [
            ("up to date", json!({ "rules": defaults }), vec![]),
            ("an older version", json!({ "rules": older }), vec![token.clone()]),
            ("broader by hand", json!({ "rules": [rule(&["*"], &["*"], &["*"])] }), vec![]),
            ("emptied", json!({}), defaults.clone()),
        ];
        for (name, stored, expected) in cases {
            assert_eq!(missing_rules(&stored, &defaults), expected, "{name}");
        }
    }

    #[test]
    fn every_bound_default_role_exists() {
        let roles: Vec<&str> = cluster_roles().iter().map(|(name, _)| *name).collect();
        for (role, _) in CLUSTER_ROLE_BINDINGS {
            assert!(roles.contains(&role), "{role}");
        }
    }
}
