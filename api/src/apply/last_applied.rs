//! The bridge from client-side apply: when the manager `kubectl` applies server-side, the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation excuses conflicts on fields it
//! proves kubectl set before, and is kept up to date afterwards (Kubernetes'
//! `lastAppliedManager` and `lastAppliedUpdater`).

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::path::go_json;
use super::schema::Shape;
use super::typed::{compare, to_field_set, validate};

/// The annotation client-side apply keeps the last applied configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager whose applies the annotation takes part in.
pub(crate) const KUBECTL_MANAGER: &str = "kubectl";

/// The most bytes of keys and values an object's annotations may hold.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn annotation(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|text| !text.is_empty())
}

/// Returns the fields of the live object's last applied configuration whose values the live
/// object still has, or `None` when there is no usable annotation.
pub(crate) fn allowed_conflicts(
    live: &Value,
    api_version: &str,
    shape: &Shape<'_>,
) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if !last.is_object() || last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    validate(&last, shape, false).ok()?;
    let comparison = compare(&last, live, shape);
    Some(
        to_field_set(&last, shape)
            .difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}

/// Rewrites the annotation of `object` to hold `applied` when it holds anything, dropping it if
/// the annotations would grow past Kubernetes' size limit.
pub(crate) fn update_annotation(object: &mut Value, applied: &Value) {
    if annotation(object).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(annotations)) = config.pointer_mut("/metadata/annotations") {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let text = format!("{}\n", go_json(&config));
    let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(text));
    if annotations_size(annotations) > TOTAL_ANNOTATION_SIZE_LIMIT {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

fn annotations_size(annotations: &Map<String, Value>) -> usize {
    annotations.iter().map(|(key, value)| key.len() + value.as_str().map_or(0, str::len)).sum()
}
