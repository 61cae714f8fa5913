//! Table tests of server-side apply and managed fields, phrased as what a user of
//! `kubectl apply --server-side`, `kubectl scale` and controllers sees.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};

use super::*;
use crate::patch::{PlainMeta, SchemaMeta};

mod apply;
mod conflicts;
mod fields;
mod merge;
mod update;
mod updater;

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

fn deployment_meta() -> SchemaMeta {
    SchemaMeta::for_type::<Deployment>()
}

/// A Deployment configuration with one container per `(name, image)`.
fn deployment(replicas: Option<i64>, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> =
        containers.iter().map(|(name, image)| json!({"name": name, "image": image})).collect();
    let mut config = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": containers}}},
    });
    if let Some(replicas) = replicas {
        config["spec"]["replicas"] = json!(replicas);
    }
    config
}

/// Returns the managedFields entry of `manager` with `operation`.
fn entry<'v>(object: &'v Value, manager: &str, operation: &str) -> Option<&'v Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|entry| entry["manager"] == json!(manager) && entry["operation"] == json!(operation))
}

fn owned(object: &Value, manager: &str, operation: &str) -> FieldSet {
    let fields = &entry(object, manager, operation).expect("entry")["fieldsV1"];
    FieldSet::from_fields_v1(fields).unwrap()
}

/// Parses a path written as `.spec.replicas` or `.spec.containers[name="c"].image`.
fn path(text: &str) -> Path {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            out.push(PathElement::Field(after[..end].to_owned()));
            rest = &after[end..];
        } else {
            let end = rest.find(']').unwrap();
            let (name, value) = rest[1..end].split_once('=').unwrap();
            out.push(PathElement::Key(vec![(
                name.to_owned(),
                serde_json::from_str(value).unwrap(),
            )]));
            rest = &rest[end + 1..];
        }
    }
    out
}
