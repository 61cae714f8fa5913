//! Turns objects, lists and watch events into the shape a client asked for: the object itself,
//! a server-side `Table`, or `PartialObjectMetadata`.

use serde_json::{json, Value};

use crate::negotiate::Shape;
use crate::resources::ResourceType;
use crate::table;

/// Whether a Table row carries the whole object, its metadata, or nothing (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> IncludeObject {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// An object reduced to `PartialObjectMetadata`.
pub fn partial_metadata(object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    partial_of(metadata)
}

/// An object reduced to `PartialObjectMetadata`, its metadata moved rather than copied.
fn into_partial_metadata(mut object: Value) -> Value {
    let metadata = object.get_mut("metadata").map(Value::take).unwrap_or_else(|| json!({}));
    partial_of(metadata)
}

fn partial_of(metadata: Value) -> Value {
    let mut partial = serde_json::Map::new();
    partial.insert("kind".into(), "PartialObjectMetadata".into());
    partial.insert("apiVersion".into(), "meta.k8s.io/v1".into());
    partial.insert("metadata".into(), metadata);
    Value::Object(partial)
}

/// The Table of `objects`; `list_metadata` is the list's metadata (resourceVersion,
/// continue). Watch events after the first carry no column definitions.
pub fn table(
    resource: &ResourceType,
    objects: Vec<Value>,
    list_metadata: Value,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    // Objects are consumed: a row takes its object's metadata or the object itself.
    let row_object = |object: Value| match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => into_partial_metadata(object),
        IncludeObject::Object => object,
    };
    let mut table = match &resource.printer_columns {
        Some(printer_columns) => {
            let columns = table::custom_columns(printer_columns);
            let rows = objects
                .into_iter()
                .map(|o| (table::custom_cells(&columns, &o, now), row_object(o)))
                .collect();
            table::table_json(&columns, rows)
        }
        None => {
            let columns = table::columns(&resource.group, &resource.kind);
            let rows = objects
                .into_iter()
                .map(|o| (table::cells(&resource.group, &resource.kind, &o, now), row_object(o)))
                .collect();
            table::table_json(&columns, rows)
        }
    };
    table["metadata"] = list_metadata;
    if !with_columns {
        table["columnDefinitions"] = json!([]);
    }
    table
}

/// One object in the requested shape.
pub fn object(
    resource: &ResourceType,
    object: Value,
    shape: Shape,
    include: IncludeObject,
) -> Value {
    match shape {
        Shape::Table => {
            let metadata = json!({
                "resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            });
            table(resource, vec![object], metadata, include, true)
        }
        Shape::Metadata => partial_metadata(&object),
        Shape::Object | Shape::AggregatedDiscovery => object,
    }
}

/// A list in the requested shape.
pub fn list(
    resource: &ResourceType,
    items: Vec<Value>,
    list_metadata: Value,
    shape: Shape,
    include: IncludeObject,
) -> Value {
    match shape {
        Shape::Table => table(resource, items, list_metadata, include, true),
        Shape::Metadata => {
            let items = items.into_iter().map(into_partial_metadata).collect();
            list_object(
                "PartialObjectMetadataList".into(),
                "meta.k8s.io/v1".into(),
                list_metadata,
                items,
            )
        }
        Shape::Object | Shape::AggregatedDiscovery => {
            let kind = format!("{}List", resource.kind);
            list_object(kind, resource.api_version(), list_metadata, items)
        }
    }
}

/// A list object, built by moving its parts in: `json!` would copy every item.
fn list_object(kind: String, api_version: String, metadata: Value, items: Vec<Value>) -> Value {
    let mut list = serde_json::Map::new();
    list.insert("kind".into(), Value::String(kind));
    list.insert("apiVersion".into(), Value::String(api_version));
    list.insert("metadata".into(), metadata);
    list.insert("items".into(), Value::Array(items));
    Value::Object(list)
}
