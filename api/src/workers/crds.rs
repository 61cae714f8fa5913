//! Custom resources: every CustomResourceDefinition's served versions become resource types
//! in the catalog (so discovery, OpenAPI, tables and the registry serve them), its status
//! reports the names as accepted and the definition as established, and deleting it first
//! deletes its objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_store::KvStore;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::meta;
use crate::registry::{DeleteOptions, Part, Registry, Target, WriteOptions};
use crate::resources::{ResourceType, Subresource, Verbs};
use crate::validation::NameRule;

/// The finalizer that holds a definition until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub async fn run<S: KvStore>(registry: Arc<Registry<S>>, shutdown: CancellationToken) {
    let Some(crds) =
        registry.catalog.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    let prefix = crds.list_prefix(None);
    let mut served: BTreeMap<(String, String), Vec<ResourceType>> = BTreeMap::new();
    loop {
        let revision = match sync(&registry, &prefix, &mut served).await {
            Ok(revision) => revision,
            Err(err) => {
                tracing::debug!(error = %err, "custom resource definitions not synced yet");
                if !super::pause(&shutdown, Duration::from_millis(500)).await {
                    return;
                }
                continue;
            }
        };
        let mut watcher = match registry.objects.watch(&prefix, revision + 1) {
            Ok(watcher) => watcher,
            Err(_) => continue,
        };
        // Any change (or a lost watch) leads to a full resync: definitions are few.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = watcher.next() => {}
        }
    }
}

/// Brings the catalog and the definitions' status in line with the stored definitions;
/// returns the revision it read at.
async fn sync<S: KvStore>(
    registry: &Registry<S>,
    prefix: &str,
    served: &mut BTreeMap<(String, String), Vec<ResourceType>>,
) -> Result<i64, ApiError> {
    let page = registry.objects.list(prefix, None, 0, 0, true).await?;
    let mut wanted: BTreeMap<(String, String), Vec<ResourceType>> = BTreeMap::new();
    let mut deleting = Vec::new();
    for stored in &page.items {
        let crd = &stored.object;
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
        let plural =
            crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
        wanted.insert((group, plural), resource_types(crd));
        if meta::is_deleting(crd) {
            deleting.push(crd.clone());
        }
    }
    for ((group, plural), types) in &wanted {
        if served.get(&(group.clone(), plural.clone())) != Some(types) {
            registry.catalog.set_custom(group, plural, types.clone());
        }
    }
    for (group, plural) in served.keys() {
        if !wanted.contains_key(&(group.clone(), plural.clone())) {
            registry.catalog.set_custom(group, plural, Vec::new());
        }
    }
    *served = wanted;
    for stored in &page.items {
        establish(registry, &stored.object).await?;
    }
    for crd in deleting {
        clean_up(registry, &crd).await?;
    }
    Ok(page.revision)
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first, then
/// anything else by name.
fn version_rank(version: &str) -> (u8, i64, i64, String) {
    let parse = |rest: &str| -> Option<(u8, i64, i64)> {
        let rest = rest.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (rank, label) in [(1u8, "beta"), (2u8, "alpha")] {
            if let Some(minor) = tail.strip_prefix(label) {
                return Some((rank, -major, -minor.parse::<i64>().ok()?));
            }
        }
        None
    };
    match parse(version) {
        Some((rank, major, minor)) => (rank, major, minor, String::new()),
        None => (3, 0, 0, version.to_string()),
    }
}

/// The resource types a definition serves, preferred version first.
pub fn resource_types(crd: &Value) -> Vec<ResourceType> {
    let text =
        |pointer: &str| crd.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |pointer: &str| -> Vec<String> {
        crd.pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let kind = text("/spec/names/kind");
    let plural = text("/spec/names/plural");
    if kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = Some(text("/spec/names/singular"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let mut versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|versions| versions.iter().filter(|v| v.get("served") == Some(&json!(true))).collect())
        .unwrap_or_default();
    versions.sort_by_key(|v| version_rank(v.get("name").and_then(Value::as_str).unwrap_or("")));
    versions
        .into_iter()
        .map(|version| {
            let mut subresources = Vec::new();
            if version.pointer("/subresources/status").is_some() {
                subresources.push(Subresource::Status);
            }
            let scale = version.pointer("/subresources/scale").map(|scale| {
                let path =
                    |field: &str| scale.get(field).and_then(Value::as_str).map(str::to_string);
                subresources.push(Subresource::Scale);
                (
                    path("specReplicasPath").unwrap_or_else(|| ".spec.replicas".into()),
                    path("statusReplicasPath").unwrap_or_else(|| ".status.replicas".into()),
                    path("labelSelectorPath"),
                )
            });
            ResourceType {
                group: text("/spec/group"),
                version: version.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced: text("/spec/scope") != "Cluster",
                short_names: list("/spec/names/shortNames"),
                categories: list("/spec/names/categories"),
                verbs: Verbs::All,
                subresources,
                name_rule: NameRule::Subdomain,
                generation: true,
                printer_columns: Some(
                    version.get("additionalPrinterColumns").cloned().unwrap_or(Value::Null),
                ),
                schema: Some(version.pointer("/schema/openAPIV3Schema").cloned().unwrap_or_else(
                    || json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
                )),
                scale_paths: scale,
            }
        })
        .collect()
}

/// The definition as stored now, with its target.
async fn stored_definition<S: KvStore>(
    registry: &Registry<S>,
    crd: &Value,
) -> Result<Option<(Target, crate::storage::Stored)>, ApiError> {
    let Some(resource) =
        registry.catalog.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return Ok(None);
    };
    let target = Target { resource, namespace: None, name: meta::name(crd).to_string() };
    let current = registry.get(&target, false).await?;
    Ok(Some((target, current)))
}

/// Marks a definition's names accepted and the definition established.
async fn establish<S: KvStore>(registry: &Registry<S>, crd: &Value) -> Result<(), ApiError> {
    let established =
        crd.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|conditions| {
            conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True")
        });
    let names = crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    if established && crd.pointer("/status/acceptedNames") == Some(&names) {
        return Ok(());
    }
    let Some((target, current)) = stored_definition(registry, crd).await? else {
        return Ok(());
    };
    let now = meta::now_rfc3339();
    let condition = |kind: &str, reason: &str, message: &str| json!({ "type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message });
    let stored_versions: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut updated = current.object.clone();
    updated["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored_versions,
    });
    match registry.replace(&target, current, updated, Part::Status, &WriteOptions::default()).await
    {
        Ok(_) | Err(ApiError::Conflict { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Deletes a deleted definition's objects, then releases the definition.
async fn clean_up<S: KvStore>(registry: &Registry<S>, crd: &Value) -> Result<(), ApiError> {
    if !meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(());
    }
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
    let types = resource_types(crd);
    if let Some(resource) = types.first() {
        let resource = Arc::new(resource.clone());
        let page = registry.objects.list(&resource.list_prefix(None), None, 0, 0, false).await?;
        for stored in page.items {
            let target = Target {
                resource: resource.clone(),
                namespace: meta::namespace(&stored.object).map(str::to_string),
                name: meta::name(&stored.object).to_string(),
            };
            match registry.delete(&target, &DeleteOptions::default()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let left = registry.objects.list(&resource.list_prefix(None), None, 0, 1, false).await?;
        if !left.items.is_empty() {
            return Err(ApiError::Conflict {
                resource: crate::error::GroupResource::new(group, plural),
                name: meta::name(crd).to_string(),
                message: "custom resources are still being deleted".into(),
            });
        }
    }
    let Some((target, current)) = stored_definition(registry, crd).await? else {
        return Ok(());
    };
    let mut released = current.object.clone();
    let finalizers: Vec<String> =
        meta::finalizers(&current.object).into_iter().filter(|f| f != CLEANUP_FINALIZER).collect();
    meta::metadata_mut(&mut released).insert("finalizers".into(), json!(finalizers));
    registry.replace(&target, current, released, Part::Main, &WriteOptions::default()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rank_like_kubernetes() {
        let mut versions = vec!["v1alpha1", "v2beta1", "v1", "foo", "v2", "v1beta2", "v1beta1"];
        versions.sort_by_key(|v| version_rank(v));
        assert_eq!(versions, ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn definitions_become_resource_types() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        });
        let types = resource_types(&crd);
        assert_eq!(types.iter().map(|t| t.version.as_str()).collect::<Vec<_>>(), ["v1", "v1beta1"]);
        let v1 = &types[0];
        assert!(v1.namespaced && v1.has(Subresource::Status) && v1.has(Subresource::Scale));
        assert_eq!(v1.scale_paths.as_ref().unwrap().0, ".spec.size");
        assert_eq!(v1.short_names, ["wd"]);
        assert_eq!(v1.key(Some("ns"), "w"), "/registry/example.com/widgets/ns/w");
        assert!(!types[1].has(Subresource::Status));
    }
}
