//! What strategic merge patch needs to know about a schema: per field, its patch strategy, its
//! merge key, and the schema of its value.
//!
//! [`PatchMeta`] is the question; [`SchemaMeta`] answers it for the Kubernetes built-in types by
//! walking k8s-openapi's schemars definitions and looking strategies up in a table extracted from
//! the Kubernetes 1.33 API types (`strategies.rs`). Fields a schema does not know answer with
//! [`FieldMeta::plain`]: maps merge recursively and lists are replaced.

use std::fmt;
use std::sync::Arc;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::strategies::PATCH_STRATEGIES;

/// A field's `x-kubernetes-patch-strategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PatchStrategy {
    /// No strategy declared: maps merge, lists are replaced.
    #[default]
    Unspecified,
    /// `merge`: lists merge (by merge key for lists of objects, as sets for primitives).
    Merge,
    /// `replace`: the patch value replaces the field whole, maps included.
    Replace,
    /// `retainKeys`: the patch may carry `$retainKeys` to clear the fields it does not list.
    RetainKeys,
    /// `merge,retainKeys`: both of the above.
    MergeRetainKeys,
}

impl PatchStrategy {
    /// Parses an `x-kubernetes-patch-strategy` value; `None` for combinations Kubernetes rejects.
    pub fn parse(text: &str) -> Option<PatchStrategy> {
        Some(match text {
            "" => PatchStrategy::Unspecified,
            "merge" => PatchStrategy::Merge,
            "replace" => PatchStrategy::Replace,
            "retainKeys" => PatchStrategy::RetainKeys,
            "merge,retainKeys" | "retainKeys,merge" => PatchStrategy::MergeRetainKeys,
            _ => return None,
        })
    }

    /// The `x-kubernetes-patch-strategy` spelling; empty when unspecified.
    pub fn name(self) -> &'static str {
        match self {
            PatchStrategy::Unspecified => "",
            PatchStrategy::Merge => "merge",
            PatchStrategy::Replace => "replace",
            PatchStrategy::RetainKeys => "retainKeys",
            PatchStrategy::MergeRetainKeys => "merge,retainKeys",
        }
    }

    /// Returns whether lists under this strategy merge instead of being replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, PatchStrategy::Merge | PatchStrategy::MergeRetainKeys)
    }

    /// Returns whether the field takes `$retainKeys` directives.
    pub fn retains_keys(self) -> bool {
        matches!(self, PatchStrategy::RetainKeys | PatchStrategy::MergeRetainKeys)
    }
}

/// How one field is patched.
pub struct FieldMeta {
    pub strategy: PatchStrategy,
    /// The member that identifies items of a merging list of objects.
    pub merge_key: Option<String>,
    /// The schema of the field's value; for a list, the schema of its items.
    pub value: Box<dyn PatchMeta>,
}

impl FieldMeta {
    /// Returns the metadata of a field nothing is known about.
    pub fn plain() -> FieldMeta {
        FieldMeta {
            strategy: PatchStrategy::Unspecified,
            merge_key: None,
            value: Box::new(PlainMeta),
        }
    }
}

impl fmt::Debug for FieldMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldMeta")
            .field("strategy", &self.strategy)
            .field("merge_key", &self.merge_key)
            .finish_non_exhaustive()
    }
}

/// A schema node strategic merge patch can ask about the fields of the objects it describes.
/// Implementations are plain data, shareable across request handlers.
pub trait PatchMeta: Send + Sync {
    /// Returns how the member `name` of an object this node describes is patched. For a map
    /// (an object with arbitrary keys) every `name` answers with the map's value schema. Unknown
    /// names answer [`FieldMeta::plain`]; the lookup never fails.
    fn field(&self, name: &str) -> FieldMeta;
}

/// A schema that knows nothing: every field merges like a JSON merge patch, except that lists
/// are replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlainMeta;

impl PatchMeta for PlainMeta {
    fn field(&self, _name: &str) -> FieldMeta {
        FieldMeta::plain()
    }
}

/// Returns the patch strategy and merge key Kubernetes 1.33 declares for `field` of the OpenAPI
/// definition `definition` (e.g. `io.k8s.api.core.v1.PodSpec`), or `None` if it declares none.
pub fn declared_patch_meta(
    definition: &str,
    field: &str,
) -> Option<(PatchStrategy, Option<&'static str>)> {
    let index = PATCH_STRATEGIES
        .binary_search_by(|(d, f, _, _)| (*d, *f).cmp(&(definition, field)))
        .ok()?;
    let (_, _, strategy, merge_key) = PATCH_STRATEGIES[index];
    // Every table entry parses; `strategies_table_is_sorted_and_parses` checks it.
    let strategy = PatchStrategy::parse(strategy).unwrap_or_default();
    Some((strategy, Some(merge_key).filter(|key| !key.is_empty())))
}

/// [`PatchMeta`] for Kubernetes built-in types, read from k8s-openapi's JSON schemas.
///
/// A node is a JSON pointer into one named schema definition. Cloning is cheap: the definitions
/// are shared.
#[derive(Clone)]
pub struct SchemaMeta {
    definitions: Arc<Map<String, Value>>,
    definition: String,
    pointer: String,
}

/// References longer than this are treated as unknown schemas instead of being followed.
const MAX_REFERENCE_DEPTH: usize = 32;

impl SchemaMeta {
    /// Returns the metadata of the k8s-openapi type `T`, e.g.
    /// `SchemaMeta::for_type::<k8s_openapi::api::apps::v1::Deployment>()`.
    ///
    /// This generates the JSON schemas of `T` and every type it contains; build it once per type
    /// and clone it.
    pub fn for_type<T: JsonSchema>() -> SchemaMeta {
        let mut generator = SchemaSettings::draft2020_12().into_generator();
        let root = generator.subschema_for::<T>();
        let definitions = Arc::new(generator.take_definitions(false));
        let definition = root
            .get("$ref")
            .and_then(Value::as_str)
            .map(definition_name)
            .unwrap_or_else(|| T::schema_name().into_owned());
        SchemaMeta { definitions, definition, pointer: String::new() }
    }

    /// Returns the metadata of the definition `name` (e.g. `io.k8s.api.core.v1.Pod`) among
    /// `definitions`, the schemas a schemars generator collected, or `None` if it is not there.
    pub fn from_definitions(
        definitions: Arc<Map<String, Value>>,
        name: &str,
    ) -> Option<SchemaMeta> {
        definitions.contains_key(name).then(|| SchemaMeta {
            definitions,
            definition: name.to_owned(),
            pointer: String::new(),
        })
    }

    /// Returns the metadata of another definition sharing this node's definitions.
    pub fn definition(&self, name: &str) -> Option<SchemaMeta> {
        SchemaMeta::from_definitions(self.definitions.clone(), name)
    }

    /// Returns the name of the definition this node is the root of, if it is one.
    pub fn definition_name(&self) -> Option<&str> {
        self.pointer.is_empty().then_some(self.definition.as_str())
    }

    fn schema(&self) -> Option<&Value> {
        self.definitions.get(&self.definition)?.pointer(&self.pointer)
    }

    fn child(&self, suffix: &str) -> SchemaMeta {
        SchemaMeta {
            definitions: self.definitions.clone(),
            definition: self.definition.clone(),
            pointer: format!("{}{suffix}", self.pointer),
        }
    }

    /// Follows `$ref`s until the node is a schema of its own.
    fn resolved(&self) -> Option<SchemaMeta> {
        let mut node = self.clone();
        for _ in 0..MAX_REFERENCE_DEPTH {
            // OpenAPI 3.0 forbids siblings of `$ref`, so documented references are wrapped
            // in a one-element `allOf`.
            let schema = node.schema()?;
            let wrapped = || schema.get("allOf")?.as_array()?.first()?.get("$ref");
            let Some(reference) = schema.get("$ref").or_else(wrapped) else {
                return Some(node);
            };
            let name = definition_name(reference.as_str()?);
            node = SchemaMeta::from_definitions(self.definitions.clone(), &name)?;
        }
        None
    }

    /// Returns the node of a field's value: the items of an array, the node itself otherwise.
    fn value_node(self) -> Box<dyn PatchMeta> {
        match self.resolved() {
            Some(node) if node.schema().and_then(|schema| schema.get("items")).is_some() => {
                Box::new(node.child("/items"))
            }
            Some(node) => Box::new(node),
            None => Box::new(PlainMeta),
        }
    }
}

impl PatchMeta for SchemaMeta {
    fn field(&self, name: &str) -> FieldMeta {
        let Some(node) = self.resolved() else {
            return FieldMeta::plain();
        };
        let Some(schema) = node.schema() else {
            return FieldMeta::plain();
        };
        if schema.get("properties").and_then(|properties| properties.get(name)).is_some() {
            let declared = node.definition_name().and_then(|def| declared_patch_meta(def, name));
            let (strategy, merge_key) = declared.unwrap_or_default();
            let value = node.child(&format!("/properties/{}", escape_token(name))).value_node();
            return FieldMeta { strategy, merge_key: merge_key.map(str::to_owned), value };
        }
        if schema.get("additionalProperties").is_some_and(Value::is_object) {
            let value = node.child("/additionalProperties").value_node();
            return FieldMeta { strategy: PatchStrategy::Unspecified, merge_key: None, value };
        }
        FieldMeta::plain()
    }
}

impl fmt::Debug for SchemaMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaMeta")
            .field("definition", &self.definition)
            .field("pointer", &self.pointer)
            .finish_non_exhaustive()
    }
}

/// Returns the definition a schemars `$ref` such as `#/$defs/io.k8s.api.core.v1.Pod` names.
fn definition_name(reference: &str) -> String {
    let encoded = reference.rsplit('/').next().unwrap_or(reference);
    encoded.replace("~1", "/").replace("~0", "~")
}

/// Escapes a member name for use as a JSON pointer token.
fn escape_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Pod, Service};

    use super::*;

    /// Returns the strategy and merge key found by following `path` from `meta`.
    type Declared = (PatchStrategy, Option<String>);

    fn lookup(meta: &dyn PatchMeta, path: &[&str]) -> Declared {
        let field = meta.field(path[0]);
        match path {
            [_] => (field.strategy, field.merge_key),
            [_, rest @ ..] => lookup(field.value.as_ref(), rest),
            [] => unreachable!("lookup of an empty path"),
        }
    }

    #[test]
    fn deployment_fields_have_kubernetes_strategies() {
        let meta = SchemaMeta::for_type::<Deployment>();
        assert_eq!(meta.definition_name(), Some("io.k8s.api.apps.v1.Deployment"));
        let merge = |key: &str| (PatchStrategy::Merge, Some(key.to_owned()));
        let cases: [(&[&str], Declared); 12] = [
            (&["spec", "template", "spec", "containers"], merge("name")),
            (&["spec", "template", "spec", "initContainers"], merge("name")),
            (&["spec", "template", "spec", "containers", "env"], merge("name")),
            (&["spec", "template", "spec", "containers", "ports"], merge("containerPort")),
            (&["spec", "template", "spec", "containers", "volumeMounts"], merge("mountPath")),
            (
                &["spec", "template", "spec", "volumes"],
                (PatchStrategy::MergeRetainKeys, Some("name".to_owned())),
            ),
            (&["spec", "strategy"], (PatchStrategy::RetainKeys, None)),
            (&["metadata", "finalizers"], (PatchStrategy::Merge, None)),
            (&["metadata", "ownerReferences"], merge("uid")),
            (&["metadata", "labels"], (PatchStrategy::Unspecified, None)),
            (
                &["spec", "template", "spec", "containers", "args"],
                (PatchStrategy::Unspecified, None),
            ),
            (&["status", "conditions"], merge("type")),
        ];
        for (path, expected) in cases {
            assert_eq!(lookup(&meta, path), expected, "{path:?}");
        }
    }

    #[test]
    fn map_values_and_unknown_fields_are_plain() {
        let meta = SchemaMeta::for_type::<Pod>();
        let cases: [&[&str]; 4] = [
            &["metadata", "labels", "app"],
            &["spec", "nodeSelector", "disk"],
            &["spec", "noSuchField"],
            &["spec", "noSuchField", "deeper", "still"],
        ];
        for path in cases {
            assert_eq!(lookup(&meta, path), (PatchStrategy::Unspecified, None), "{path:?}");
        }
        let service = SchemaMeta::for_type::<Service>();
        assert_eq!(
            lookup(&service, &["spec", "ports"]),
            (PatchStrategy::Merge, Some("port".to_owned()))
        );
    }

    #[test]
    fn definitions_can_be_shared_and_rerooted() {
        let meta = SchemaMeta::for_type::<Deployment>();
        let pod_spec = meta.definition("io.k8s.api.core.v1.PodSpec").unwrap();
        assert_eq!(
            lookup(&pod_spec, &["containers"]),
            (PatchStrategy::Merge, Some("name".to_owned()))
        );
        assert!(meta.definition("io.k8s.api.batch.v1.Job").is_none());
    }

    #[test]
    fn strategies_table_is_sorted_and_parses() {
        for pair in PATCH_STRATEGIES.windows(2) {
            assert!((pair[0].0, pair[0].1) < (pair[1].0, pair[1].1), "{pair:?}");
        }
        for (definition, field, strategy, _) in PATCH_STRATEGIES {
            assert!(PatchStrategy::parse(strategy).is_some(), "{definition}.{field}");
        }
        assert_eq!(
            declared_patch_meta("io.k8s.api.core.v1.PodSpec", "volumes"),
            Some((PatchStrategy::MergeRetainKeys, Some("name")))
        );
        assert_eq!(declared_patch_meta("io.k8s.api.core.v1.PodSpec", "tolerations"), None);
    }

    /// Every table entry names a property its k8s-openapi definition has, so no strategy is lost
    /// to a renamed field.
    #[test]
    fn strategies_table_matches_k8s_openapi_schemas() {
        use k8s_openapi::api::{
            admissionregistration, apps, autoscaling, batch, core, flowcontrol, networking, policy,
            resource, storage, storagemigration,
        };
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
        use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;

        let mut generator = SchemaSettings::draft2020_12().into_generator();
        generator.subschema_for::<admissionregistration::v1::MutatingWebhookConfiguration>();
        generator.subschema_for::<admissionregistration::v1::ValidatingWebhookConfiguration>();
        generator.subschema_for::<admissionregistration::v1::ValidatingAdmissionPolicy>();
        generator.subschema_for::<admissionregistration::v1alpha1::MutatingAdmissionPolicy>();
        generator.subschema_for::<admissionregistration::v1beta1::ValidatingAdmissionPolicy>();
        generator.subschema_for::<apps::v1::DaemonSet>();
        generator.subschema_for::<apps::v1::Deployment>();
        generator.subschema_for::<apps::v1::ReplicaSet>();
        generator.subschema_for::<apps::v1::StatefulSet>();
        generator.subschema_for::<autoscaling::v2::HorizontalPodAutoscaler>();
        generator.subschema_for::<batch::v1::Job>();
        generator.subschema_for::<core::v1::ComponentStatus>();
        generator.subschema_for::<core::v1::EphemeralContainer>();
        generator.subschema_for::<core::v1::Namespace>();
        generator.subschema_for::<core::v1::Node>();
        generator.subschema_for::<core::v1::PersistentVolumeClaim>();
        generator.subschema_for::<core::v1::Pod>();
        generator.subschema_for::<core::v1::ReplicationController>();
        generator.subschema_for::<core::v1::Service>();
        generator.subschema_for::<core::v1::ServiceAccount>();
        generator.subschema_for::<flowcontrol::v1::FlowSchema>();
        generator.subschema_for::<flowcontrol::v1::PriorityLevelConfiguration>();
        generator.subschema_for::<networking::v1::ServiceCIDR>();
        generator.subschema_for::<networking::v1beta1::ServiceCIDR>();
        generator.subschema_for::<policy::v1::PodDisruptionBudget>();
        generator.subschema_for::<resource::v1alpha3::ResourceClaim>();
        generator.subschema_for::<resource::v1beta1::ResourceClaim>();
        generator.subschema_for::<resource::v1beta2::ResourceClaim>();
        generator.subschema_for::<storage::v1::CSINode>();
        generator.subschema_for::<storagemigration::v1alpha1::StorageVersionMigration>();
        generator.subschema_for::<apiextensions::v1::CustomResourceDefinition>();
        generator.subschema_for::<apiregistration::v1::APIService>();
        let definitions = Arc::new(generator.take_definitions(false));

        for (definition, field, _, _) in PATCH_STRATEGIES {
            let node = SchemaMeta::from_definitions(definitions.clone(), definition)
                .unwrap_or_else(|| panic!("{definition} is not a k8s-openapi definition"));
            let properties = node.schema().and_then(|schema| schema.get("properties"));
            assert!(
                properties.and_then(|properties| properties.get(field)).is_some(),
                "{definition} has no property {field}"
            );
        }
    }
}
