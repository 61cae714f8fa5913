//! The OpenAPI v3 documents the API server serves at `/openapi/v3` (an index of group
//! versions) and `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>` (one document per
//! group version), and strict field validation against the same schemas.
//!
//! Everything here is pure: documents are computed from the [`Catalog`] and k8s-openapi's
//! schemas. [`OpenApi`] caches one document per group version and rebuilds it when the
//! catalog's types of that group version change (custom resources come and go), so the
//! hash in the index always names the document served.
//!
//! What kubectl relies on:
//! - `kubectl explain` finds the kind through `x-kubernetes-group-version-kind` on the
//!   operations of the resource's paths, then the schema in `components.schemas` whose
//!   `x-kubernetes-group-version-kind` list holds an identical object, and follows `$ref` and
//!   `allOf` down the field path, printing descriptions;
//! - kubectl's `QueryParamVerifierV3` looks for a `fieldValidation` query parameter on the
//!   PATCH operations carrying the kind's `x-kubernetes-group-version-kind`;
//! - client-side apply reads `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`
//!   from properties, which the `patch_extensions` hook supplies.

mod builtin;
mod fields;
mod parameters;
mod paths;
mod schemas;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};

pub use self::fields::{strict_decoding_message, FieldChecker};
use self::schemas::Components;
pub use self::schemas::{custom_definition_name, Gvk, GVK_EXTENSION};
use crate::patch::SchemaMeta;
use crate::resources::{Catalog, ResourceType};

/// Strategic merge metadata of built-in definitions: given a definition name
/// (`io.k8s.api.core.v1.PodSpec`) and one of its properties (`containers`), the object of
/// `x-kubernetes-*` keys to merge into that property's schema, if any.
pub type PatchExtensions = dyn Fn(&str, &str) -> Option<Value> + Send + Sync;

/// A hook that adds nothing.
pub fn no_patch_extensions(_definition: &str, _field: &str) -> Option<Value> {
    None
}

/// The path of a group version's document below `/openapi/v3/`: `api/v1`, `apis/apps/v1`.
pub fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index: every group version of the catalog, each with the URL of its
/// document, whose `hash` query parameter changes whenever the document does. Builds every
/// document without strategic merge metadata; [`OpenApi::index`] is the cached equivalent.
pub fn index(catalog: &Catalog) -> Value {
    let mut paths = Map::new();
    for group in catalog.groups() {
        for version in &group.versions {
            let types = catalog.in_group_version(&group.group, version);
            let json = serialize(&build(&types, &no_patch_extensions).document);
            let path = document_path(&group.group, version);
            paths.insert(path.clone(), index_entry(&path, &content_hash(&json)));
        }
    }
    json!({"paths": paths})
}

/// The OpenAPI 3.0 document of one group version, or None when the catalog serves nothing
/// there.
pub fn document(
    catalog: &Catalog,
    group: &str,
    version: &str,
    patch_extensions: &dyn Fn(&str, &str) -> Option<Value>,
) -> Option<Value> {
    let types = catalog.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    Some(build(&types, patch_extensions).document)
}

fn index_entry(path: &str, hash: &str) -> Value {
    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")})
}

struct Built {
    document: Value,
    /// Definition name of each kind the document defines.
    kinds: BTreeMap<Gvk, String>,
}

fn build(
    types: &[Arc<ResourceType>],
    patch_extensions: &dyn Fn(&str, &str) -> Option<Value>,
) -> Built {
    let mut components = Components::new();
    components.add_meta();
    let mut paths = Map::new();
    for resource in types {
        let gvk = Gvk::new(&resource.group, &resource.version, &resource.kind);
        let object = match &resource.schema {
            Some(schema) => Some(components.add_custom(resource, schema)),
            None => components.add_builtin(&gvk),
        };
        let list = match &object {
            Some(object) if resource.verbs.names().contains(&"list") => {
                Some(components.add_list(object, &gvk))
            }
            _ => None,
        };
        paths::add_resource(&mut paths, resource, object.as_deref(), list.as_deref());
        for &subresource in &resource.subresources {
            let (group, kind, _) = subresource.discovery(&resource.kind);
            // An empty group means the resource's own group version.
            let served = if group.is_empty() {
                Gvk::new(&resource.group, &resource.version, &kind)
            } else {
                Gvk::new(group, "v1", &kind)
            };
            let definition =
                if served == gvk { object.clone() } else { components.add_builtin(&served) };
            paths::add_subresource(
                &mut paths,
                resource,
                subresource,
                &served,
                definition.as_deref(),
            );
        }
    }
    let definitions = components.finish(patch_extensions);
    let kinds = tagged_kinds(&definitions);
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
        "security": [{"BearerToken": []}],
    });
    Built { document, kinds }
}

fn tagged_kinds(definitions: &Map<String, Value>) -> BTreeMap<Gvk, String> {
    let mut kinds = BTreeMap::new();
    for (name, definition) in definitions {
        let Some(Value::Array(tags)) = definition.get(GVK_EXTENSION) else { continue };
        for tag in tags {
            let text = |key: &str| tag.get(key).and_then(Value::as_str).unwrap_or_default();
            kinds.insert(Gvk::new(text("group"), text("version"), text("kind")), name.clone());
        }
    }
    kinds
}

fn serialize(document: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail: its map keys are strings.
    serde_json::to_vec(document).unwrap_or_default()
}

/// A stable hash of a document's bytes: 128-bit FNV-1a, in upper-case hex.
fn content_hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let hash =
        bytes.iter().fold(OFFSET, |hash, &byte| (hash ^ u128::from(byte)).wrapping_mul(PRIME));
    format!("{hash:032X}")
}

/// One group version's document, serialized once.
pub struct GroupVersionDocument {
    /// The types it was built from, to notice when the catalog changes.
    source: Vec<Arc<ResourceType>>,
    document: Value,
    json: Vec<u8>,
    hash: String,
    kinds: BTreeMap<Gvk, String>,
}

impl GroupVersionDocument {
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The document as served (`application/json`).
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The hash the index puts in the document's URL; also a good `ETag`.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    fn definitions(&self) -> Option<&Map<String, Value>> {
        self.document.get("components")?.get("schemas")?.as_object()
    }
}

/// Schemas of a built-in kind that no served document defines (`autoscaling/v1` Scale when
/// only `autoscaling/v2` is served), for field validation.
struct KindSchemas {
    definitions: Arc<Map<String, Value>>,
    root: String,
}

/// The cached documents of a catalog, and field validation against them.
pub struct OpenApi {
    catalog: Catalog,
    patch_extensions: Arc<PatchExtensions>,
    documents: Mutex<BTreeMap<(String, String), Arc<GroupVersionDocument>>>,
    kinds: Mutex<BTreeMap<Gvk, Option<Arc<KindSchemas>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Entries are replaced whole, so a panic elsewhere never leaves one half-written.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn same_types(a: &[Arc<ResourceType>], b: &[Arc<ResourceType>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
}

impl OpenApi {
    pub fn new(catalog: Catalog) -> Self {
        OpenApi {
            catalog,
            patch_extensions: Arc::new(no_patch_extensions),
            documents: Mutex::new(BTreeMap::new()),
            kinds: Mutex::new(BTreeMap::new()),
        }
    }

    /// Merges strategic merge metadata into built-in definitions (see [`PatchExtensions`]).
    pub fn with_patch_extensions(
        mut self,
        patch_extensions: impl Fn(&str, &str) -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        self.patch_extensions = Arc::new(patch_extensions);
        lock(&self.documents).clear();
        self
    }

    /// The `/openapi/v3` index of every group version the catalog serves now.
    pub fn index(&self) -> Value {
        let mut paths = Map::new();
        for group in self.catalog.groups() {
            for version in &group.versions {
                if let Some(document) = self.document(&group.group, version) {
                    let path = document_path(&group.group, version);
                    paths.insert(path.clone(), index_entry(&path, document.hash()));
                }
            }
        }
        json!({"paths": paths})
    }

    /// The document of one group version, built on first use and whenever the catalog's
    /// types there have changed since; None when nothing is served there.
    pub fn document(&self, group: &str, version: &str) -> Option<Arc<GroupVersionDocument>> {
        let types = self.catalog.in_group_version(group, version);
        let key = (group.to_string(), version.to_string());
        if types.is_empty() {
            lock(&self.documents).remove(&key);
            return None;
        }
        if let Some(cached) = lock(&self.documents).get(&key) {
            if same_types(&cached.source, &types) {
                return Some(cached.clone());
            }
        }
        // Built outside the lock so other group versions stay servable meanwhile. A racing
        // build from older types may land last; the next call sees the mismatch and rebuilds.
        let Built { document, kinds } = build(&types, &*self.patch_extensions);
        let json = serialize(&document);
        let hash = content_hash(&json);
        let built = Arc::new(GroupVersionDocument { source: types, document, json, hash, kinds });
        lock(&self.documents).insert(key, built.clone());
        Some(built)
    }

    /// The fields of `object` (of `kind` in `group`/`version`) its schema does not define, as
    /// `unknown field "<path>"` messages; empty when the kind is unknown.
    pub fn unknown_fields(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        object: &Value,
    ) -> Vec<String> {
        self.with_checker(group, version, kind, |checker| checker.unknown_fields(object))
            .unwrap_or_default()
    }

    /// Removes the fields of `object` its schema does not define.
    pub fn prune_unknown(&self, group: &str, version: &str, kind: &str, object: &mut Value) {
        self.with_checker(group, version, kind, |checker| checker.prune(object));
    }

    /// The unknown and duplicate fields of a JSON request body, in order, as the API server's
    /// strict decoding reports them; empty when the kind is unknown. Fails when the body is
    /// not JSON.
    pub fn strict_field_errors(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        body: &[u8],
    ) -> Result<Vec<String>, serde_json::Error> {
        self.with_checker(group, version, kind, |checker| checker.strict_errors(body))
            .unwrap_or(Ok(Vec::new()))
    }

    fn with_checker<T>(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        check: impl FnOnce(&FieldChecker<'_>) -> T,
    ) -> Option<T> {
        let gvk = Gvk::new(group, version, kind);
        if let Some(document) = self.document(group, version) {
            if let (Some(root), Some(definitions)) =
                (document.kinds.get(&gvk), document.definitions())
            {
                let structural =
                    document.source.iter().any(|t| t.kind == kind && t.schema.is_some());
                return FieldChecker::new(definitions, root, structural)
                    .map(|checker| check(&checker));
            }
        }
        let schemas = self.kind_schemas(&gvk)?;
        FieldChecker::new(&schemas.definitions, &schemas.root, false).map(|checker| check(&checker))
    }

    /// Strategic merge metadata of a built-in kind; None for custom resources, which take no
    /// strategic merge patches.
    pub fn patch_meta(&self, group: &str, version: &str, kind: &str) -> Option<SchemaMeta> {
        let schemas = self.kind_schemas(&Gvk::new(group, version, kind))?;
        SchemaMeta::from_definitions(schemas.definitions.clone(), &schemas.root)
    }

    fn kind_schemas(&self, gvk: &Gvk) -> Option<Arc<KindSchemas>> {
        if let Some(cached) = lock(&self.kinds).get(gvk) {
            return cached.clone();
        }
        let mut components = Components::new();
        let schemas = components.add_builtin(gvk).map(|root| {
            let definitions = Arc::new(components.finish(&no_patch_extensions));
            Arc::new(KindSchemas { definitions, root })
        });
        lock(&self.kinds).insert(gvk.clone(), schemas.clone());
        schemas
    }
}

/// The API server shares one `OpenApi` between all request tasks.
fn _assert_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<OpenApi>();
    shareable::<GroupVersionDocument>();
}

#[cfg(test)]
mod tests;
