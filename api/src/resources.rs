//! The catalog of served resource types: one row per type (group, version, kind, names, scope,
//! verbs, subresources), so the registry, discovery, OpenAPI and tables stay generic.
//!
//! Built-in types are fixed at start; custom resources are added and removed as their
//! CustomResourceDefinitions change. Lookups go by (group, version, plural).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::validation::NameRule;

/// What clients may do with a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbs {
    /// create, delete, deletecollection, get, list, patch, update, watch.
    All,
    /// Reviews: create only, nothing is stored.
    CreateOnly,
}

impl Verbs {
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Verbs::All => {
                &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            }
            Verbs::CreateOnly => &["create"],
        }
    }
}

/// A subresource and what it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Eviction,
    Log,
    Exec,
    PortForward,
    Attach,
    Finalize,
    Proxy,
    Token,
    EphemeralContainers,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::PortForward => "portforward",
            Subresource::Attach => "attach",
            Subresource::Finalize => "finalize",
            Subresource::Proxy => "proxy",
            Subresource::Token => "token",
            Subresource::EphemeralContainers => "ephemeralcontainers",
        }
    }

    pub fn parse(name: &str) -> Option<Subresource> {
        ALL_SUBRESOURCES.iter().copied().find(|sub| sub.name() == name)
    }

    /// The kind and verbs discovery reports for this subresource of `kind`.
    pub fn discovery(self, kind: &str) -> (&'static str, String, &'static [&'static str]) {
        match self {
            Subresource::Status => ("", kind.to_string(), &["get", "patch", "update"]),
            Subresource::Scale => ("autoscaling", "Scale".into(), &["get", "patch", "update"]),
            Subresource::Binding => ("", "Binding".into(), &["create"]),
            Subresource::Eviction => ("policy", "Eviction".into(), &["create"]),
            Subresource::Log => ("", "Pod".into(), &["get"]),
            Subresource::Exec | Subresource::Attach => {
                ("", "PodExecOptions".into(), &["create", "get"])
            }
            Subresource::PortForward => ("", "PodPortForwardOptions".into(), &["create", "get"]),
            Subresource::Finalize => ("", kind.to_string(), &["update"]),
            Subresource::Proxy => {
                ("", format!("{kind}ProxyOptions"), &["create", "delete", "get", "patch", "update"])
            }
            Subresource::Token => ("authentication.k8s.io", "TokenRequest".into(), &["create"]),
            Subresource::EphemeralContainers => ("", kind.to_string(), &["get", "patch", "update"]),
        }
    }
}

const ALL_SUBRESOURCES: [Subresource; 12] = [
    Subresource::Status,
    Subresource::Scale,
    Subresource::Binding,
    Subresource::Eviction,
    Subresource::Log,
    Subresource::Exec,
    Subresource::PortForward,
    Subresource::Attach,
    Subresource::Finalize,
    Subresource::Proxy,
    Subresource::Token,
    Subresource::EphemeralContainers,
];

/// One served resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Verbs,
    pub subresources: Vec<Subresource>,
    pub name_rule: NameRule,
    /// `metadata.generation` counts changes to everything but metadata and status.
    pub generation: bool,
    /// Printer columns of a custom resource (`additionalPrinterColumns`), if any.
    pub printer_columns: Option<serde_json::Value>,
    /// The OpenAPI v3 schema of a custom resource's version, if any.
    pub schema: Option<serde_json::Value>,
    /// Scale subresource paths of a custom resource: (spec replicas, status replicas, label selector).
    pub scale_paths: Option<(String, String, Option<String>)>,
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn group_resource(&self) -> crate::error::GroupResource {
        crate::error::GroupResource::new(&self.group, &self.plural)
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The key prefix all objects of this type live under, ending in `/`.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The key prefix of one namespace's objects (or all objects when `namespace` is None).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("{}{namespace}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("{}{namespace}/{name}", self.key_prefix())
            }
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

/// A compact row of the built-in table.
struct Row {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    name_rule: NameRule,
    generation: bool,
    verbs: Verbs,
}

const fn row(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Row {
    Row {
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        name_rule: NameRule::Subdomain,
        generation: false,
        verbs: Verbs::All,
    }
}

impl Row {
    const fn short(mut self, names: &'static [&'static str]) -> Row {
        self.short_names = names;
        self
    }
    const fn all(mut self) -> Row {
        self.categories = &["all"];
        self
    }
    const fn subs(mut self, subs: &'static [Subresource]) -> Row {
        self.subresources = subs;
        self
    }
    const fn names(mut self, rule: NameRule) -> Row {
        self.name_rule = rule;
        self
    }
    const fn generation(mut self) -> Row {
        self.generation = true;
        self
    }
    const fn create_only(mut self) -> Row {
        self.verbs = Verbs::CreateOnly;
        self
    }
}

use Subresource::*;

const STATUS: &[Subresource] = &[Status];
const SCALE_STATUS: &[Subresource] = &[Scale, Status];
const CORE: &str = "";

const BUILTIN: &[Row] = &[
    row(CORE, "v1", "Namespace", "namespaces", false)
        .short(&["ns"])
        .subs(&[Finalize, Status])
        .names(NameRule::Dns1123Label),
    row(CORE, "v1", "Pod", "pods", true).short(&["po"]).all().subs(&[
        Attach,
        Binding,
        EphemeralContainers,
        Eviction,
        Exec,
        Log,
        PortForward,
        Proxy,
        Status,
    ]),
    row(CORE, "v1", "Node", "nodes", false).short(&["no"]).subs(&[Proxy, Status]),
    row(CORE, "v1", "Service", "services", true)
        .short(&["svc"])
        .all()
        .subs(&[Proxy, Status])
        .names(NameRule::Dns1035Label),
    row(CORE, "v1", "Endpoints", "endpoints", true).short(&["ep"]),
    row(CORE, "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
    row(CORE, "v1", "Secret", "secrets", true),
    row(CORE, "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]).subs(&[Token]),
    row(CORE, "v1", "Event", "events", true).short(&["ev"]),
    row(CORE, "v1", "PersistentVolume", "persistentvolumes", false).short(&["pv"]).subs(STATUS),
    row(CORE, "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true)
        .short(&["pvc"])
        .subs(STATUS),
    row(CORE, "v1", "LimitRange", "limitranges", true).short(&["limits"]),
    row(CORE, "v1", "ResourceQuota", "resourcequotas", true).short(&["quota"]).subs(STATUS),
    row("apps", "v1", "Deployment", "deployments", true)
        .short(&["deploy"])
        .all()
        .subs(SCALE_STATUS)
        .generation(),
    row("apps", "v1", "ReplicaSet", "replicasets", true)
        .short(&["rs"])
        .all()
        .subs(SCALE_STATUS)
        .generation(),
    row("apps", "v1", "StatefulSet", "statefulsets", true)
        .short(&["sts"])
        .all()
        .subs(SCALE_STATUS)
        .generation(),
    row("apps", "v1", "DaemonSet", "daemonsets", true)
        .short(&["ds"])
        .all()
        .subs(STATUS)
        .generation(),
    row("apps", "v1", "ControllerRevision", "controllerrevisions", true),
    row("batch", "v1", "Job", "jobs", true).all().subs(STATUS).generation(),
    row("batch", "v1", "CronJob", "cronjobs", true).short(&["cj"]).all().subs(STATUS).generation(),
    row("coordination.k8s.io", "v1", "Lease", "leases", true),
    row("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
    row("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true)
        .short(&["hpa"])
        .all()
        .subs(STATUS)
        .generation(),
    row("networking.k8s.io", "v1", "Ingress", "ingresses", true)
        .short(&["ing"])
        .subs(STATUS)
        .generation(),
    row("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false),
    row("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true)
        .short(&["netpol"])
        .generation(),
    row("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true)
        .short(&["pdb"])
        .subs(STATUS)
        .generation(),
    row("rbac.authorization.k8s.io", "v1", "Role", "roles", true).names(NameRule::PathSegment),
    row("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true)
        .names(NameRule::PathSegment),
    row("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false)
        .names(NameRule::PathSegment),
    row("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false)
        .names(NameRule::PathSegment),
    row("storage.k8s.io", "v1", "StorageClass", "storageclasses", false).short(&["sc"]),
    row(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    )
    .short(&["crd", "crds"])
    .subs(STATUS)
    .generation(),
    row("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", false)
        .create_only(),
    row("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", false).create_only(),
    row("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false)
        .create_only(),
    row("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", false)
        .create_only(),
    row("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", false)
        .create_only(),
];

/// The built-in resource types, in discovery order.
pub fn builtin() -> Vec<ResourceType> {
    BUILTIN
        .iter()
        .map(|row| ResourceType {
            group: row.group.to_string(),
            version: row.version.to_string(),
            kind: row.kind.to_string(),
            plural: row.plural.to_string(),
            singular: row.kind.to_ascii_lowercase(),
            namespaced: row.namespaced,
            short_names: row.short_names.iter().map(|s| s.to_string()).collect(),
            categories: row.categories.iter().map(|s| s.to_string()).collect(),
            verbs: row.verbs,
            subresources: row.subresources.to_vec(),
            name_rule: row.name_rule,
            generation: row.generation,
            printer_columns: None,
            schema: None,
            scale_paths: None,
        })
        .collect()
}

/// The group's preferred order in discovery: the core group first, then the order of
/// `BUILTIN`, then custom groups by name.
fn group_rank(builtin_groups: &[String], group: &str) -> (usize, String) {
    match builtin_groups.iter().position(|g| g == group) {
        Some(position) => (position, String::new()),
        None => (builtin_groups.len(), group.to_string()),
    }
}

/// All served types, shared by every request; custom resources come and go.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<RwLock<CatalogState>>,
}

struct CatalogState {
    builtin_groups: Vec<String>,
    types: Vec<Arc<ResourceType>>,
    /// (group, version, plural) → index into `types`.
    by_path: BTreeMap<(String, String, String), usize>,
}

impl CatalogState {
    fn index(&mut self) {
        self.by_path = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.group.clone(), t.version.clone(), t.plural.clone()), i))
            .collect();
    }
}

/// A group with its versions, for discovery.
#[derive(Debug, Clone)]
pub struct GroupVersions {
    pub group: String,
    /// Preferred first.
    pub versions: Vec<String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new(builtin())
    }
}

impl Catalog {
    pub fn new(types: Vec<ResourceType>) -> Self {
        let mut builtin_groups: Vec<String> = Vec::new();
        for t in &types {
            if !builtin_groups.contains(&t.group) {
                builtin_groups.push(t.group.clone());
            }
        }
        let mut state = CatalogState {
            builtin_groups,
            types: types.into_iter().map(Arc::new).collect(),
            by_path: BTreeMap::new(),
        };
        state.index();
        Catalog { inner: Arc::new(RwLock::new(state)) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CatalogState> {
        // A panic while holding the lock leaves the catalog as it was (each writer replaces
        // whole vectors), so a poisoned lock is still safe to read.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let state = self.read();
        let key = (group.to_string(), version.to_string(), plural.to_string());
        state.by_path.get(&key).map(|&i| state.types[i].clone())
    }

    /// The type with this kind in this group (any version, preferred first).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.read().types.iter().find(|t| t.group == group && t.kind == kind).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        self.read().types.clone()
    }

    /// Types served in one group version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.read()
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    /// Groups (core group included, as "") in discovery order, versions preferred first.
    pub fn groups(&self) -> Vec<GroupVersions> {
        let state = self.read();
        let mut groups: Vec<GroupVersions> = Vec::new();
        for t in &state.types {
            match groups.iter_mut().find(|g| g.group == t.group) {
                Some(group) if !group.versions.contains(&t.version) => {
                    group.versions.push(t.version.clone())
                }
                Some(_) => {}
                None => groups.push(GroupVersions {
                    group: t.group.clone(),
                    versions: vec![t.version.clone()],
                }),
            }
        }
        groups.sort_by_key(|g| group_rank(&state.builtin_groups, &g.group));
        groups
    }

    /// Replaces the custom resource types of one CRD (`group`, `plural`) with `types`
    /// (empty to remove them).
    pub fn set_custom(&self, group: &str, plural: &str, types: Vec<ResourceType>) {
        let mut state = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let builtin = state.builtin_groups.clone();
        state
            .types
            .retain(|t| !(t.group == group && t.plural == plural && !builtin.contains(&t.group)));
        state.types.extend(types.into_iter().map(Arc::new));
        state.index();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_registry_layout() {
        let catalog = Catalog::default();
        let pods = catalog.get("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/core/pods/default/web");
        assert_eq!(pods.list_prefix(Some("default")), "/registry/core/pods/default/");
        assert_eq!(pods.list_prefix(None), "/registry/core/pods/");
        let nodes = catalog.get("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/core/nodes/n1");
        let deployments = catalog.get("apps", "v1", "deployments").unwrap();
        assert_eq!(deployments.key(Some("a"), "d"), "/registry/apps/deployments/a/d");
        assert_eq!(deployments.api_version(), "apps/v1");
        assert_eq!(deployments.group_resource().to_string(), "deployments.apps");
    }

    #[test]
    fn groups_keep_core_first_and_custom_groups_last() {
        let catalog = Catalog::default();
        let mut widget = builtin().remove(5);
        widget.group = "example.com".into();
        widget.plural = "widgets".into();
        widget.kind = "Widget".into();
        catalog.set_custom("example.com", "widgets", vec![widget]);
        let groups = catalog.groups();
        assert_eq!(groups[0].group, "");
        assert_eq!(groups.last().unwrap().group, "example.com");
        assert!(catalog.get("example.com", "v1", "widgets").is_some());
        catalog.set_custom("example.com", "widgets", Vec::new());
        assert!(catalog.get("example.com", "v1", "widgets").is_none());
        assert!(catalog.groups().iter().all(|g| g.group != "example.com"));
    }

    #[test]
    fn every_builtin_path_is_unique() {
        let types = builtin();
        let catalog = Catalog::new(types.clone());
        assert_eq!(catalog.all().len(), types.len());
        for t in &types {
            assert_eq!(catalog.get(&t.group, &t.version, &t.plural).unwrap().kind, t.kind);
        }
    }
}
