//! Object-metadata validation on create (apimachinery `ValidateObjectMeta` and its helpers).
//!
//! Maps are walked in sorted key order (Go walks them randomly; sorting keeps messages
//! deterministic and is one of the orders Kubernetes can produce).

use serde_json::{Map, Value};

use super::field_error::FieldError;
use super::names::{
    is_dns1123_label, is_qualified_name, is_valid_label_value, validate_generate_name,
    validate_name, NameRule,
};

/// Maximum total size of `metadata.annotations` (keys plus values), in bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * (1 << 10);

/// Finalizers Kubernetes defines itself; built-in kinds accept them without a domain prefix.
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// Validates `metadata` of an object being created, like apimachinery's `ValidateObjectMeta`:
/// name or generateName, name format, namespace presence, generation, labels, annotations,
/// owner references and finalizers. Paths start at `metadata`. Like Kubernetes it expects
/// `metadata.name` to be generated from `generateName` before it is called.
///
/// Built-in kinds additionally check finalizer names with [`validate_builtin_finalizers`].
pub fn validate_object_meta(meta: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let empty = Map::new();
    let meta = match meta {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => {
            errors.push(FieldError::type_invalid("metadata", other.clone(), "must be an object"));
            return errors;
        }
    };

    let generate_name = string_field(meta, "generateName", "metadata.generateName", &mut errors);
    if !generate_name.is_empty() {
        for message in validate_generate_name(generate_name, rule) {
            errors.push(FieldError::invalid("metadata.generateName", generate_name, message));
        }
    }
    let name = string_field(meta, "name", "metadata.name", &mut errors);
    if name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for message in validate_name(name, rule) {
            errors.push(FieldError::invalid("metadata.name", name, message));
        }
    }
    let namespace = string_field(meta, "namespace", "metadata.namespace", &mut errors);
    if namespaced {
        if namespace.is_empty() {
            errors.push(FieldError::required("metadata.namespace", ""));
        } else {
            for message in is_dns1123_label(namespace) {
                errors.push(FieldError::invalid("metadata.namespace", namespace, message));
            }
        }
    } else if !namespace.is_empty() {
        errors.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
        if generation < 0 {
            errors.push(FieldError::invalid(
                "metadata.generation",
                generation,
                "must be greater than or equal to 0",
            ));
        }
    }
    errors.extend(validate_labels(meta.get("labels").unwrap_or(&Value::Null), "metadata.labels"));
    errors.extend(validate_annotations(
        meta.get("annotations").unwrap_or(&Value::Null),
        "metadata.annotations",
    ));
    errors.extend(validate_owner_references(
        meta.get("ownerReferences").unwrap_or(&Value::Null),
        "metadata.ownerReferences",
    ));
    errors.extend(validate_finalizers(
        meta.get("finalizers").unwrap_or(&Value::Null),
        "metadata.finalizers",
    ));
    errors
}

/// Validates a label map (`ValidateLabels`): keys are qualified names, values label values.
/// Errors carry the map's path, without the key, as Kubernetes reports them.
pub fn validate_labels(labels: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in string_map(labels, path, &mut errors) {
        for message in is_qualified_name(key) {
            errors.push(FieldError::invalid(path, key, message));
        }
        for message in is_valid_label_value(value) {
            errors.push(FieldError::invalid(path, value, message));
        }
    }
    errors
}

/// Validates an annotation map (`ValidateAnnotations`): keys are qualified names in any case,
/// and keys plus values total at most 256 KiB.
pub fn validate_annotations(annotations: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total_size = 0usize;
    for (key, value) in string_map(annotations, path, &mut errors) {
        for message in is_qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path, key, message));
        }
        total_size += key.len() + value.len();
    }
    if total_size > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(path, Some(TOTAL_ANNOTATION_SIZE_LIMIT)));
    }
    errors
}

/// Validates owner references (`ValidateOwnerReferences`). Errors for the fields of an entry use
/// the list's path without an index, as Kubernetes does.
pub fn validate_owner_references(references: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let references = match references {
        Value::Null => return errors,
        Value::Array(items) => items,
        other => {
            errors.push(FieldError::type_invalid(path, other.clone(), "must be of type array"));
            return errors;
        }
    };
    let mut first_controller: Option<String> = None;
    for reference in references {
        let empty = Map::new();
        let fields = reference.as_object().unwrap_or(&empty);
        let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, name, uid) =
            (text("apiVersion"), text("kind"), text("name"), text("uid"));
        let (group, version) = parse_group_version(api_version);
        if version.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.kind"),
                kind,
                "kind must not be empty",
            ));
        }
        if name.is_empty() {
            errors.push(FieldError::invalid(
                format!("{path}.name"),
                name,
                "name must not be empty",
            ));
        }
        if uid.is_empty() {
            errors.push(FieldError::invalid(format!("{path}.uid"), uid, "uid must not be empty"));
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errors.push(FieldError::invalid(
                path,
                reference.clone(),
                format!("{group}/{version}, Kind={kind} is disallowed from being an owner"),
            ));
        }
        if fields.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => errors.push(FieldError::invalid(
                    path,
                    Value::Array(references.clone()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in \
                         references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errors
}

/// Splits an apiVersion like `schema.ParseGroupVersion`; unparseable input yields empty parts.
fn parse_group_version(api_version: &str) -> (&str, &str) {
    if api_version.is_empty() || api_version == "/" {
        return ("", "");
    }
    match api_version.matches('/').count() {
        0 => ("", api_version),
        1 => api_version.split_once('/').unwrap_or(("", "")),
        _ => ("", ""),
    }
}

/// Validates finalizers (`ValidateFinalizers`): each a qualified name, and `orphan` and
/// `foregroundDeletion` not both. Errors use the list's path without an index.
pub fn validate_finalizers(finalizers: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let names = string_list(finalizers, path, &mut errors);
    for name in &names {
        for message in is_qualified_name(name) {
            errors.push(FieldError::invalid(path, *name, message));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        let listed: Vec<Value> = names.iter().map(|name| Value::from(*name)).collect();
        errors.push(FieldError::invalid(
            path,
            Value::Array(listed),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errors
}

/// The extra finalizer check of built-in kinds (core `validateKubeFinalizerName`): a finalizer
/// without a `/` must be one of Kubernetes' own. Call it in addition to
/// [`validate_object_meta`]; custom resources only get a warning for this in Kubernetes.
pub fn validate_builtin_finalizers(meta: &Value) -> Vec<FieldError> {
    let finalizers = meta.get("finalizers").unwrap_or(&Value::Null);
    // Type errors are already reported by `validate_object_meta`.
    let mut ignored = Vec::new();
    string_list(finalizers, "metadata.finalizers", &mut ignored)
        .into_iter()
        .enumerate()
        .filter(|(_, name)| !name.contains('/') && !STANDARD_FINALIZERS.contains(name))
        .map(|(index, name)| {
            FieldError::invalid(
                format!("metadata.finalizers[{index}]"),
                name,
                "name is neither a standard finalizer name nor is it fully qualified",
            )
        })
        .collect()
}

/// Reads an optional string field; a non-string value is reported and treated as empty.
fn string_field<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> &'a str {
    match map.get(key) {
        None | Some(Value::Null) => "",
        Some(Value::String(text)) => text,
        Some(other) => {
            errors.push(FieldError::type_invalid(path, other.clone(), "must be of type string"));
            ""
        }
    }
}

/// Reads an optional map of strings in key order; non-string entries are reported and skipped.
fn string_map<'a>(
    value: &'a Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<(&'a str, &'a str)> {
    let map = match value {
        Value::Null => return Vec::new(),
        Value::Object(map) => map,
        other => {
            errors.push(FieldError::type_invalid(path, other.clone(), "must be of type object"));
            return Vec::new();
        }
    };
    let mut entries: Vec<(&str, &str)> = Vec::with_capacity(map.len());
    for (key, value) in map {
        match value.as_str() {
            Some(text) => entries.push((key, text)),
            None => errors.push(FieldError::type_invalid(
                format!("{path}[{key}]"),
                value.clone(),
                "must be of type string",
            )),
        }
    }
    entries.sort_unstable();
    entries
}

/// Reads an optional list of strings; non-string entries are reported and skipped.
fn string_list<'a>(value: &'a Value, path: &str, errors: &mut Vec<FieldError>) -> Vec<&'a str> {
    let items = match value {
        Value::Null => return Vec::new(),
        Value::Array(items) => items,
        other => {
            errors.push(FieldError::type_invalid(path, other.clone(), "must be of type array"));
            return Vec::new();
        }
    };
    let mut names = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(text) => names.push(text),
            None => errors.push(FieldError::type_invalid(
                format!("{path}[{index}]"),
                item.clone(),
                "must be of type string",
            )),
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
        alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
        character (e.g. 'example.com', regex used for validation is \
        '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const QUALIFIED: &str = "name part must consist of alphanumeric characters, '-', '_' or \
        '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
        'my.name',  or '123-abc', regex used for validation is \
        '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
        characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
        'MyValue',  or 'my_value',  or '12345', regex used for validation is \
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn object_meta_table() {
        let cases: Vec<(&str, Value, bool, NameRule, Vec<String>)> = vec![
            ("valid namespaced", json!({"name": "web", "namespace": "default"}), true, NameRule::Subdomain, vec![]),
            ("valid cluster-scoped", json!({"name": "node-1"}), false, NameRule::Subdomain, vec![]),
            (
                "generated name",
                json!({"generateName": "web-", "name": "web-x7k2p", "namespace": "default"}),
                true,
                NameRule::Subdomain,
                vec![],
            ),
            (
                "missing name",
                json!({"namespace": "default"}),
                true,
                NameRule::Subdomain,
                vec!["metadata.name: Required value: name or generateName is required".into()],
            ),
            (
                "null metadata",
                Value::Null,
                false,
                NameRule::Subdomain,
                vec!["metadata.name: Required value: name or generateName is required".into()],
            ),
            (
                "bad name",
                json!({"name": "Bad_Name", "namespace": "default"}),
                true,
                NameRule::Subdomain,
                vec![format!("metadata.name: Invalid value: \"Bad_Name\": {SUBDOMAIN}")],
            ),
            (
                "bad generateName",
                json!({"generateName": "Web-", "namespace": "default"}),
                true,
                NameRule::Subdomain,
                vec![
                    format!("metadata.generateName: Invalid value: \"Web-\": {SUBDOMAIN}"),
                    "metadata.name: Required value: name or generateName is required".into(),
                ],
            ),
            (
                "namespace required",
                json!({"name": "web"}),
                true,
                NameRule::Subdomain,
                vec!["metadata.namespace: Required value".into()],
            ),
            (
                "namespace forbidden",
                json!({"name": "node-1", "namespace": "default"}),
                false,
                NameRule::Subdomain,
                vec!["metadata.namespace: Forbidden: not allowed on this type".into()],
            ),
            (
                "namespace must be a label",
                json!({"name": "web", "namespace": "a.b"}),
                true,
                NameRule::Subdomain,
                vec!["metadata.namespace: Invalid value: \"a.b\": must not contain dots".into()],
            ),
            (
                "negative generation",
                json!({"name": "web", "generation": -1}),
                false,
                NameRule::Subdomain,
                vec!["metadata.generation: Invalid value: -1: must be greater than or equal to 0".into()],
            ),
            (
                "labels",
                json!({"name": "web", "labels": {"ok": "yes", "bad_": "-v", "a/b/c": "x"}}),
                false,
                NameRule::Subdomain,
                vec![
                    "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of \
                     alphanumeric characters, '-', '_' or '.', and must start and end with an \
                     alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
                     used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an \
                     optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                        .into(),
                    format!("metadata.labels: Invalid value: \"bad_\": {QUALIFIED}"),
                    format!("metadata.labels: Invalid value: \"-v\": {LABEL_VALUE}"),
                ],
            ),
            (
                "annotation keys are case-insensitive qualified names",
                json!({"name": "web", "annotations": {"Example.COM/Key": "x", "bad key": "y"}}),
                false,
                NameRule::Subdomain,
                vec![format!("metadata.annotations: Invalid value: \"bad key\": {QUALIFIED}")],
            ),
            (
                "finalizers",
                json!({"name": "web", "finalizers": ["example.com/ok", "bad_", "orphan", "foregroundDeletion"]}),
                false,
                NameRule::Subdomain,
                vec![
                    format!("metadata.finalizers: Invalid value: \"bad_\": {QUALIFIED}"),
                    "metadata.finalizers: Invalid value: []string{\"example.com/ok\", \"bad_\", \
                     \"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion \
                     cannot be both set"
                        .into(),
                ],
            ),
            (
                "owner references",
                json!({"name": "web", "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true},
                    {"apiVersion": "", "kind": "", "name": "", "uid": ""},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs2", "uid": "2"}
                ]}),
                false,
                NameRule::Subdomain,
                vec![
                    "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty".into(),
                    "metadata.ownerReferences.kind: Invalid value: \"\": kind must not be empty".into(),
                    "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty".into(),
                    "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty".into(),
                ],
            ),
            (
                "path-segment names",
                json!({"name": "system:controller:x"}),
                false,
                NameRule::PathSegment,
                vec![],
            ),
            (
                "wrong types",
                json!({"name": 5, "labels": {"a": 1}}),
                false,
                NameRule::Subdomain,
                vec![
                    "metadata.name: Invalid value: 5: must be of type string".into(),
                    "metadata.name: Required value: name or generateName is required".into(),
                    "metadata.labels[a]: Invalid value: 1: must be of type string".into(),
                ],
            ),
        ];
        for (name, meta, namespaced, rule, expected) in cases {
            let errors = validate_object_meta(&meta, namespaced, rule);
            assert_eq!(messages(&errors), expected, "case {name}");
        }
    }

    #[test]
    fn second_controller_is_reported_with_both_owners() {
        let meta = json!({"name": "web", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
        ]});
        let errors = validate_object_meta(&meta, false, NameRule::Subdomain);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.ownerReferences");
        assert_eq!(
            errors[0].message,
            "Only one reference can have Controller set to true. Found \"true\" in references \
             for ReplicaSet/a and ReplicaSet/b"
        );
    }

    #[test]
    fn events_cannot_own_objects() {
        let meta = json!({"name": "web", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "1"}
        ]});
        let errors = validate_object_meta(&meta, false, NameRule::Subdomain);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "/v1, Kind=Event is disallowed from being an owner");
    }

    #[test]
    fn annotations_are_limited_to_256_kib() {
        let just_fits = json!({"name": "web", "annotations": {"k": "v".repeat(262143)}});
        assert!(validate_object_meta(&just_fits, false, NameRule::Subdomain).is_empty());
        let too_big = json!({"name": "web", "annotations": {"k": "v".repeat(262144)}});
        assert_eq!(
            messages(&validate_object_meta(&too_big, false, NameRule::Subdomain)),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes".to_string()]
        );
    }

    #[test]
    fn builtin_finalizers_need_a_domain() {
        let meta = json!({"finalizers": ["kubernetes", "example.com/x", "custom", "bad_"]});
        let suffix = "name is neither a standard finalizer name nor is it fully qualified";
        assert_eq!(
            messages(&validate_builtin_finalizers(&meta)),
            vec![
                format!("metadata.finalizers[2]: Invalid value: \"custom\": {suffix}"),
                format!("metadata.finalizers[3]: Invalid value: \"bad_\": {suffix}"),
            ]
        );
    }
}
