//! API discovery: the legacy documents (`/api`, `/apis`, `/apis/{group}`, resource lists) and
//! aggregated discovery (`apidiscovery.k8s.io/v2`), both generated from the catalog.

use serde_json::{json, Value};

use crate::resources::{Catalog, GroupVersions, ResourceType};

/// The content type of an aggregated discovery response.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn api_group(group: &GroupVersions) -> Value {
    let versions: Vec<Value> = group
        .versions
        .iter()
        .map(|v| json!({ "groupVersion": group_version(&group.group, v), "version": v }))
        .collect();
    json!({
        "name": group.group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn groups(catalog: &Catalog) -> Value {
    let groups: Vec<Value> =
        catalog.groups().iter().filter(|g| !g.group.is_empty()).map(api_group).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/{group}`.
pub fn group(catalog: &Catalog, name: &str) -> Option<Value> {
    let groups = catalog.groups();
    let group = groups.iter().find(|g| g.group == name && !name.is_empty())?;
    let mut document = api_group(group);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

/// `/api/v1`, `/apis/{group}/{version}`.
pub fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let types = catalog.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        let mut resource = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs.names(),
        });
        if !t.short_names.is_empty() {
            resource["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            resource["categories"] = json!(t.categories);
        }
        resources.push(resource);
        for sub in &t.subresources {
            let (sub_group, kind, verbs) = sub.discovery(&t.kind);
            let mut entry = json!({
                "name": format!("{}/{}", t.plural, sub.name()),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !sub_group.is_empty() {
                entry["group"] = json!(sub_group);
                entry["version"] = json!("v1");
            }
            resources.push(entry);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let mut resource = json!({
        "resource": t.plural,
        "responseKind": { "group": t.group, "version": t.version, "kind": t.kind },
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs.names(),
    });
    if !t.short_names.is_empty() {
        resource["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        resource["categories"] = json!(t.categories);
    }
    let subresources: Vec<Value> = t
        .subresources
        .iter()
        .map(|sub| {
            let (sub_group, kind, verbs) = sub.discovery(&t.kind);
            let (group, version) = if sub_group.is_empty() {
                (t.group.as_str(), t.version.as_str())
            } else {
                (sub_group, "v1")
            };
            json!({
                "subresource": sub.name(),
                "responseKind": { "group": group, "version": version, "kind": kind },
                "verbs": verbs,
            })
        })
        .collect();
    if !subresources.is_empty() {
        resource["subresources"] = json!(subresources);
    }
    resource
}

/// Aggregated discovery of the core group (`/api`) or of all other groups (`/apis`).
pub fn aggregated(catalog: &Catalog, core: bool) -> Value {
    let items: Vec<Value> = catalog
        .groups()
        .iter()
        .filter(|g| g.group.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = catalog
                        .in_group_version(&g.group, v)
                        .iter()
                        .map(|t| aggregated_resource(t))
                        .collect();
                    json!({ "version": v, "resources": resources, "freshness": "Current" })
                })
                .collect();
            let metadata = if g.group.is_empty() { json!({}) } else { json!({ "name": g.group }) };
            json!({ "metadata": metadata, "versions": versions })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_documents_list_groups_and_resources() {
        let catalog = Catalog::default();
        let groups = groups(&catalog);
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "apps");
        assert!(names.contains(&"rbac.authorization.k8s.io"));
        assert!(!names.contains(&""));
        let core = resource_list(&catalog, "", "v1").unwrap();
        let resources = core["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(resources.iter().any(|r| r["name"] == "pods/log"));
        let scale = resource_list(&catalog, "apps", "v1").unwrap()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .cloned()
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list(&catalog, "nope", "v1").is_none());
        assert_eq!(group(&catalog, "apps").unwrap()["preferredVersion"]["groupVersion"], "apps/v1");
    }

    #[test]
    fn aggregated_discovery_separates_core_from_groups() {
        let catalog = Catalog::default();
        let core = aggregated(&catalog, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let apps = aggregated(&catalog, false)["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .cloned()
            .unwrap();
        let deployments = &apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .cloned()
            .unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        assert_eq!(deployments["subresources"][0]["subresource"], "scale");
        assert_eq!(deployments["subresources"][0]["responseKind"]["kind"], "Scale");
    }
}
