//! `components.schemas` of one OpenAPI document: built-in kinds generated from k8s-openapi's
//! `JsonSchema` impls (schemars walks every referenced type and records it as a definition under
//! its Kubernetes name), list kinds, custom resources from their CRD schema, and the
//! `x-kubernetes-group-version-kind` tags that kubectl uses to find a kind's schema.
//!
//! References always have the form `#/components/schemas/<definition name>`; a reference with
//! sibling keywords (a description) is wrapped as `allOf: [{$ref}]`, as OpenAPI 3.0 requires and
//! Kubernetes publishes it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

use super::builtin;
use crate::resources::ResourceType;

pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// The extension kubectl matches, on schemas (a list) and on operations (one object).
pub const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// A group, version and kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Gvk { group: group.to_string(), version: version.to_string(), kind: kind.to_string() }
    }

    /// The extension value exactly as kubectl compares it: these three keys and no others.
    pub fn to_value(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// `#/components/schemas/<name>`.
pub fn reference(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// A property that refers to a definition and describes itself, in the OpenAPI 3.0 form.
pub fn described_reference(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": reference(name)}], "description": description})
}

/// The definition name Kubernetes gives a custom kind: the group reversed, then version and
/// kind (`stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab`).
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

fn api_version_property() -> Value {
    json!({
        "description": "APIVersion names the versioned schema of this object; servers convert \
            recognized versions to the latest internal one.",
        "type": "string",
    })
}

fn kind_property() -> Value {
    json!({
        "description": "Kind is the REST resource this object represents, in CamelCase. Servers \
            may infer it from the endpoint the request is sent to.",
        "type": "string",
    })
}

/// Collects the definitions of one document.
pub struct Components {
    generator: SchemaGenerator,
    /// Definitions written here rather than generated: lists and custom resources. Strategic
    /// merge metadata never applies to them (merge patches of custom resources are JSON merge
    /// patches, and list kinds are never patched).
    written: Map<String, Value>,
    gvks: BTreeMap<String, Vec<Gvk>>,
}

impl Default for Components {
    fn default() -> Self {
        Components::new()
    }
}

impl Components {
    pub fn new() -> Self {
        Components {
            generator: SchemaSettings::openapi3().into_generator(),
            written: Map::new(),
            gvks: BTreeMap::new(),
        }
    }

    /// Adds the definitions every resource document references: ObjectMeta, DeleteOptions,
    /// Status and Patch.
    pub fn add_meta(&mut self) {
        self.generator.subschema_for::<meta::ObjectMeta>();
        self.generator.subschema_for::<meta::DeleteOptions>();
        self.generator.subschema_for::<meta::Status>();
        self.generator.subschema_for::<meta::Patch>();
    }

    /// Adds a built-in kind and tags it with its group, version and kind; returns its
    /// definition name, or None when k8s-openapi does not know the kind.
    pub fn add_builtin(&mut self, gvk: &Gvk) -> Option<String> {
        let name = builtin::add(&mut self.generator, &gvk.group, &gvk.version, &gvk.kind)?;
        self.tag(&name, gvk);
        Some(name)
    }

    /// Adds a custom resource's kind from its CRD schema, with `apiVersion`, `kind` and
    /// `metadata` (ObjectMeta) filled in at the root; returns its definition name.
    pub fn add_custom(&mut self, resource: &ResourceType, schema: &Value) -> String {
        self.generator.subschema_for::<meta::ObjectMeta>();
        let name = custom_definition_name(&resource.group, &resource.version, &resource.kind);
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        root.entry("type").or_insert_with(|| json!("object"));
        let properties = root.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(properties) = properties {
            properties.insert("apiVersion".into(), api_version_property());
            properties.insert("kind".into(), kind_property());
            properties.insert(
                "metadata".into(),
                described_reference(
                    OBJECT_META,
                    "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                ),
            );
        }
        self.written.insert(name.clone(), Value::Object(root));
        self.tag(&name, &Gvk::new(&resource.group, &resource.version, &resource.kind));
        name
    }

    /// Adds `<item>List` for a kind whose definition is `item`; returns its definition name.
    pub fn add_list(&mut self, item: &str, gvk: &Gvk) -> String {
        self.generator.subschema_for::<meta::ListMeta>();
        let kind = &gvk.kind;
        let name = format!("{item}List");
        let schema = json!({
            "description": format!("{kind}List is a list of {kind} objects."),
            "type": "object",
            "properties": {
                "apiVersion": api_version_property(),
                "items": {
                    "description": format!("The {kind} objects of the list."),
                    "type": "array",
                    "items": {"$ref": reference(item)},
                },
                "kind": kind_property(),
                "metadata": described_reference(LIST_META, "Standard list metadata."),
            },
            "required": ["items"],
        });
        self.written.insert(name.clone(), schema);
        self.tag(&name, &Gvk::new(&gvk.group, &gvk.version, &format!("{kind}List")));
        name
    }

    fn tag(&mut self, name: &str, gvk: &Gvk) {
        let tags = self.gvks.entry(name.to_string()).or_default();
        if !tags.contains(gvk) {
            tags.push(gvk.clone());
        }
    }

    /// Returns the definitions, tagged, with the strategic merge metadata `patch_extensions`
    /// gives for each (definition, property) of a built-in definition merged into that property.
    pub fn finish(
        mut self,
        patch_extensions: &dyn Fn(&str, &str) -> Option<Value>,
    ) -> Map<String, Value> {
        let mut definitions = self.generator.take_definitions(true);
        for (name, definition) in definitions.iter_mut() {
            merge_patch_extensions(name, definition, patch_extensions);
        }
        definitions.extend(std::mem::take(&mut self.written));
        for (name, gvks) in &self.gvks {
            if let Some(Value::Object(definition)) = definitions.get_mut(name) {
                let tags = gvks.iter().map(Gvk::to_value).collect();
                definition.insert(GVK_EXTENSION.into(), Value::Array(tags));
            }
        }
        definitions
    }
}

fn merge_patch_extensions(
    name: &str,
    definition: &mut Value,
    patch_extensions: &dyn Fn(&str, &str) -> Option<Value>,
) {
    let Some(Value::Object(properties)) = definition.get_mut("properties") else {
        return;
    };
    for (field, property) in properties.iter_mut() {
        let Some(Value::Object(extensions)) = patch_extensions(name, field) else {
            continue;
        };
        if let Value::Object(property) = property {
            for (key, value) in extensions {
                property.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_names_reverse_the_group() {
        assert_eq!(
            custom_definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
        assert_eq!(custom_definition_name("example", "v2", "Widget"), "example.v2.Widget");
    }

    #[test]
    fn builtin_references_use_components_and_allof() {
        let mut components = Components::new();
        let name = components.add_builtin(&Gvk::new("apps", "v1", "Deployment")).unwrap();
        let definitions = components.finish(&|_, _| None);
        assert_eq!(name, "io.k8s.api.apps.v1.Deployment");
        let spec = &definitions[&name]["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(spec["description"].is_string());
        assert!(definitions.contains_key(OBJECT_META));
        assert!(definitions.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert_eq!(
            definitions[&name][GVK_EXTENSION],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
    }
}
