//! Authorization by RBAC: Roles and ClusterRoles bound to users, groups and service accounts.
//! Members of `system:masters` may do anything; every authenticated user may use discovery,
//! health and version endpoints and review their own access (Kubernetes' `system:discovery`
//! and `system:basic-user`).

use flotilla_store::KvStore;
use serde_json::Value;

use crate::auth::User;
use crate::error::ApiError;
use crate::resources::Catalog;
use crate::storage::Objects;

/// What a request wants to do.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// Set for requests outside the resource tree (`/version`, `/metrics`).
    pub path: Option<String>,
}

impl Attributes {
    /// The error a refused request gets, worded as Kubernetes words it.
    pub fn forbidden(&self, user: &User) -> ApiError {
        if let Some(path) = &self.path {
            return ApiError::Forbidden(format!(
                "forbidden: User \"{}\" cannot {} path \"{path}\"",
                user.name, self.verb
            ));
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let qualified = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let subject =
            if self.name.is_empty() { qualified } else { format!("{qualified} \"{}\"", self.name) };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        ApiError::Forbidden(format!(
            "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, self.verb, self.group
        ))
    }
}

/// Paths every authenticated user may read (`system:discovery` and
/// `system:public-info-viewer`, which exist as ClusterRoles too). The service-account issuer
/// documents are not among them: as in Kubernetes, RBAC grants them to service accounts.
const PUBLIC_PATHS: [&str; 7] =
    ["/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi"];

fn rule_allows(rule: &Value, attributes: &Attributes) -> bool {
    let list = |field: &str| -> Vec<&str> {
        rule.get(field)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let verbs = list("verbs");
    if !verbs.iter().any(|v| *v == "*" || *v == attributes.verb) {
        return false;
    }
    if let Some(path) = &attributes.path {
        return list("nonResourceURLs").iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => pattern == path,
        });
    }
    let groups = list("apiGroups");
    if !groups.iter().any(|g| *g == "*" || *g == attributes.group) {
        return false;
    }
    let wanted = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    let any_sub = format!("*/{}", attributes.subresource);
    let resources = list("resources");
    let resource_ok = resources.iter().any(|r| {
        *r == "*" || *r == wanted || (!attributes.subresource.is_empty() && *r == any_sub)
    });
    if !resource_ok {
        return false;
    }
    let names = list("resourceNames");
    names.is_empty() || names.contains(&attributes.name.as_str())
}

fn subject_matches(subject: &Value, user: &User, binding_namespace: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let namespace = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{namespace}:{name}")
        }
        _ => false,
    }
}

fn binds(binding: &Value, user: &User) -> bool {
    let namespace = binding.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| subjects.iter().any(|s| subject_matches(s, user, namespace)))
}

fn strings<'v>(rule: &'v Value, field: &str) -> Vec<&'v str> {
    rule.get(field)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `wanted` is among `held`: a held `*` covers anything, a wanted `*` only a held one.
fn holds(held: &[&str], wanted: &str) -> bool {
    held.contains(&"*") || held.contains(&wanted)
}

/// Whether the rules a user holds cover every permission `rule` grants.
pub(crate) fn covered(held: &[Value], rule: &Value) -> bool {
    let verbs = strings(rule, "verbs");
    let urls = strings(rule, "nonResourceURLs");
    if !urls.is_empty() {
        return urls.iter().all(|url| {
            verbs.iter().all(|verb| {
                held.iter().any(|h| {
                    holds(&strings(h, "verbs"), verb)
                        && strings(h, "nonResourceURLs").iter().any(|pattern| {
                            *pattern == *url
                                || pattern.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                        })
                })
            })
        });
    }
    let names = strings(rule, "resourceNames");
    strings(rule, "apiGroups").iter().all(|group| {
        strings(rule, "resources").iter().all(|resource| {
            verbs.iter().all(|verb| {
                held.iter().any(|h| {
                    let held_names = strings(h, "resourceNames");
                    let names_ok = held_names.is_empty()
                        || (!names.is_empty() && names.iter().all(|n| held_names.contains(n)));
                    holds(&strings(h, "verbs"), verb)
                        && holds(&strings(h, "apiGroups"), group)
                        && holds(&strings(h, "resources"), resource)
                        && names_ok
                })
            })
        })
    })
}

/// The RBAC authorizer over the objects in the store.
pub struct Authorizer<'a, S> {
    pub catalog: &'a Catalog,
    pub objects: &'a Objects<S>,
}

impl<S: KvStore> Authorizer<'_, S> {
    /// Decides a request; the reason explains an allowance.
    pub async fn allowed(&self, user: &User, attributes: &Attributes) -> Result<bool, ApiError> {
        if user.is_master() {
            return Ok(true);
        }
        if let Some(path) = &attributes.path {
            if attributes.verb == "get" && PUBLIC_PATHS.iter().any(|p| path.starts_with(p)) {
                return Ok(true);
            }
        }
        if attributes.group == "authorization.k8s.io"
            && matches!(
                attributes.resource.as_str(),
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            )
            || attributes.group == "authentication.k8s.io"
                && attributes.resource == "selfsubjectreviews"
        {
            return Ok(true);
        }
        Ok(self
            .rules(user, &attributes.namespace)
            .await?
            .iter()
            .any(|rule| rule_allows(rule, attributes)))
    }

    /// Refuses a Role, ClusterRole or binding that would grant `user` (or anyone) more than
    /// `user` holds, unless `user` may `escalate` roles or `bind` the role in question, as
    /// Kubernetes' RBAC escalation check does.
    pub async fn check_escalation(
        &self,
        user: &User,
        kind: &str,
        object: &Value,
    ) -> Result<(), ApiError> {
        if user.is_master() {
            return Ok(());
        }
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let (granted, permission, role_plural, role_name) = match kind {
            "Role" | "ClusterRole" => {
                let rules =
                    object.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
                let plural = if kind == "Role" { "roles" } else { "clusterroles" };
                (rules, "escalate", plural, name.to_string())
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role_kind =
                    object.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
                let role_name =
                    object.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
                let scope = (kind == "RoleBinding").then_some(namespace);
                let rules = self.role_of(object, scope).await?.unwrap_or_default();
                let plural = if role_kind == "Role" { "roles" } else { "clusterroles" };
                (rules, "bind", plural, role_name.to_string())
            }
            _ => return Ok(()),
        };
        let permitted = Attributes {
            verb: permission.into(),
            group: "rbac.authorization.k8s.io".into(),
            resource: role_plural.into(),
            name: role_name,
            namespace: namespace.into(),
            ..Default::default()
        };
        if self.allowed(user, &permitted).await? {
            return Ok(());
        }
        let held = self.rules(user, namespace).await?;
        let missing: Vec<String> = granted
            .iter()
            .filter(|rule| !covered(&held, rule))
            .map(|rule| rule.to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let plural = match kind {
            "Role" => "roles",
            "ClusterRole" => "clusterroles",
            "RoleBinding" => "rolebindings",
            _ => "clusterrolebindings",
        };
        Err(ApiError::Forbidden(format!(
            "{plural}.rbac.authorization.k8s.io \"{name}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            user.groups,
            missing.join("\n")
        )))
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide rules included).
    pub async fn rules(&self, user: &User, namespace: &str) -> Result<Vec<Value>, ApiError> {
        let mut rules = Vec::new();
        let cluster_bindings = self.list("clusterrolebindings", None).await?;
        for binding in cluster_bindings.iter().filter(|b| binds(b, user)) {
            if let Some(role) = self.role_of(binding, None).await? {
                rules.extend(role);
            }
        }
        if !namespace.is_empty() {
            let bindings = self.list("rolebindings", Some(namespace)).await?;
            for binding in bindings.iter().filter(|b| binds(b, user)) {
                if let Some(role) = self.role_of(binding, Some(namespace)).await? {
                    rules.extend(role);
                }
            }
        }
        Ok(rules)
    }

    async fn list(&self, plural: &str, namespace: Option<&str>) -> Result<Vec<Value>, ApiError> {
        let Some(resource) = self.catalog.get("rbac.authorization.k8s.io", "v1", plural) else {
            return Ok(Vec::new());
        };
        let page = self.objects.list(&resource.list_prefix(namespace), None, 0, 0, true).await?;
        Ok(page.items.into_iter().map(|stored| stored.object).collect())
    }

    async fn role_of(
        &self,
        binding: &Value,
        namespace: Option<&str>,
    ) -> Result<Option<Vec<Value>>, ApiError> {
        let kind = binding.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
        let name = binding.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
        let (plural, namespace) = match kind {
            "ClusterRole" => ("clusterroles", None),
            "Role" => ("roles", namespace),
            _ => return Ok(None),
        };
        let Some(resource) = self.catalog.get("rbac.authorization.k8s.io", "v1", plural) else {
            return Ok(None);
        };
        let stored = self.objects.get(&resource.key(namespace, name), true).await?;
        Ok(stored.and_then(|s| s.object.get("rules").and_then(Value::as_array).cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "default".into(),
            path: None,
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let rule =
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]});
        assert!(rule_allows(&rule, &attributes("get", "", "pods", "", "web")));
        assert!(rule_allows(&rule, &attributes("get", "", "pods", "log", "web")));
        assert!(!rule_allows(&rule, &attributes("get", "", "pods", "exec", "web")));
        assert!(!rule_allows(&rule, &attributes("delete", "", "pods", "", "web")));
        assert!(!rule_allows(&rule, &attributes("get", "apps", "pods", "", "web")));
        let named = json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["a"]});
        assert!(rule_allows(&named, &attributes("update", "", "configmaps", "", "a")));
        assert!(!rule_allows(&named, &attributes("update", "", "configmaps", "", "b")));
        let urls = json!({"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]});
        let mut path = attributes("get", "", "", "", "");
        path.path = Some("/logs/x".into());
        assert!(rule_allows(&urls, &path));
        path.path = Some("/metricsx".into());
        assert!(!rule_allows(&urls, &path));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let user = User {
            name: "system:serviceaccount:dev:robot".into(),
            groups: vec!["ops".into()],
            ..User::default()
        };
        assert!(subject_matches(&json!({"kind": "ServiceAccount", "name": "robot"}), &user, "dev"));
        assert!(!subject_matches(
            &json!({"kind": "ServiceAccount", "name": "robot"}),
            &user,
            "prod"
        ));
        assert!(subject_matches(&json!({"kind": "Group", "name": "ops"}), &user, ""));
        assert!(!subject_matches(&json!({"kind": "User", "name": "robot"}), &user, ""));
    }

    #[test]
    fn forbidden_messages_read_like_kubernetes() {
        let user = User { name: "bob".into(), ..User::default() };
        let mut list = attributes("list", "", "pods", "", "");
        assert_eq!(
            list.forbidden(&user).to_string(),
            r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        list.namespace.clear();
        list.group = "apps".into();
        list.resource = "deployments".into();
        list.name = "d".into();
        assert_eq!(
            list.forbidden(&user).to_string(),
            r#"deployments.apps "d" is forbidden: User "bob" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        );
    }
}
