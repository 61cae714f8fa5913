//! Subresources: status, scale, binding, eviction, namespace finalize and a service account's
//! token ([`crate::serviceaccount`]); a pod's log, exec, attach and port-forward through its
//! node's agent ([`crate::node_proxy`]); the `proxy` of pods, services and nodes
//! ([`crate::proxy`]).

use bytes::Bytes;
use flotilla_store::KvStore;
use http::request::Parts;
use http::{header, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::User;
use crate::endpoints::{body_object, deleted_status, patch};
use crate::error::ApiError;
use crate::handler::{json_response, Api, Body};
use crate::meta;
use crate::negotiate::Accept;
use crate::node_proxy::Stream;
use crate::registry::{DeleteOptions, Part, Target, WriteOptions};
use crate::request::Query;
use crate::resources::Subresource;
use crate::storage::Stored;

#[allow(clippy::too_many_arguments)]
pub async fn serve<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    body: Bytes,
    target: Target,
    sub: Subresource,
    verb: &str,
    user: &User,
    query: &Query,
    accept: Accept,
) -> Result<Response<Body>, ApiError> {
    if sub == Subresource::Proxy {
        // The query is the backend's: none of it is read here.
        return crate::proxy::serve(api, parts, &target).await;
    }
    let registry = &api.registry;
    let options = crate::endpoints::write_options(parts, query, user)?;
    match (sub, verb) {
        (Subresource::Status, "get") => {
            let stored = registry.get(&target, false).await?;
            Ok(json_response(StatusCode::OK, &stored.object, accept.encoding))
        }
        (Subresource::Status, "update") => {
            let written = registry
                .update(&target, body_object(parts, &body)?, Part::Status, &options)
                .await?;
            Ok(json_response(StatusCode::OK, &written.object, accept.encoding))
        }
        (Subresource::Status, "patch") => {
            let written = patch(api, parts, &body, &target, Part::Status, user, query).await?;
            Ok(json_response(StatusCode::OK, &written.object, accept.encoding))
        }
        (Subresource::Finalize, "update") => {
            let written = registry
                .update(&target, body_object(parts, &body)?, Part::Finalize, &options)
                .await?;
            Ok(json_response(StatusCode::OK, &written.object, accept.encoding))
        }
        (Subresource::Scale, "get") => {
            let stored = registry.get(&target, false).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&target, &stored)?, accept.encoding))
        }
        (Subresource::Scale, "update" | "patch") => {
            let mut last = None;
            for _ in 0..8 {
                let stored = registry.get(&target, false).await?;
                let current_scale = scale_of(&target, &stored)?;
                let wanted = if verb == "update" {
                    body_object(parts, &body)?
                } else {
                    let content_type = parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let patch_type = crate::patch::PatchType::from_content_type(
                        content_type.split(';').next().unwrap_or(""),
                    )
                    .ok_or_else(|| {
                        ApiError::UnsupportedMediaType(format!(
                            "unsupported patch type {content_type:?}"
                        ))
                    })?;
                    let meta = registry.openapi.patch_meta("autoscaling", "v1", "Scale");
                    let meta = meta.as_ref().map(|m| m as &dyn crate::patch::PatchMeta);
                    // Patched without its resourceVersion, so one in the result is the client's.
                    let mut base = current_scale.clone();
                    meta::metadata_mut(&mut base).remove("resourceVersion");
                    crate::patch::apply_patch(patch_type, &base, &body, meta)?
                };
                let pinned = meta::str_field(&wanted, &["metadata", "resourceVersion"])
                    .filter(|rv| !rv.is_empty());
                if let Some(pinned) = pinned {
                    if pinned != stored.revision.to_string() {
                        return Err(target.conflict());
                    }
                }
                let replicas =
                    wanted.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::Invalid {
                        group: "autoscaling".into(),
                        kind: "Scale".into(),
                        name: target.name.clone(),
                        causes: vec![crate::validation::FieldError::invalid(
                            "spec.replicas",
                            replicas,
                            "must be greater than or equal to 0",
                        )],
                    });
                }
                let mut object = stored.object.clone();
                set_replicas(&target, &mut object, replicas);
                match registry.replace(&target, stored, object, Part::Scale, &options).await {
                    Ok(written) => {
                        let stored = Stored {
                            key: target.key(),
                            revision: revision_of(&written.object),
                            object: written.object,
                        };
                        return Ok(json_response(
                            StatusCode::OK,
                            &scale_of(&target, &stored)?,
                            accept.encoding,
                        ));
                    }
                    Err(err @ ApiError::Conflict { .. }) if pinned.is_none() => last = Some(err),
                    Err(err) => return Err(err),
                }
            }
            Err(last.unwrap_or_else(|| target.conflict()))
        }
        (Subresource::Binding, "create") => {
            let binding = body_object(parts, &body)?;
            let node =
                binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
            if node.is_empty() {
                return Err(ApiError::BadRequest("Binding.target.name is required".into()));
            }
            bind(api, &target, &node, &options).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &crate::error::success_status(json!({})),
                accept.encoding,
            ))
        }
        (Subresource::Eviction, "create") => {
            let eviction = body_object(parts, &body)?;
            let options = DeleteOptions::from_request(query, eviction.get("deleteOptions"))?;
            registry.delete(&target, &options).await?;
            Ok(json_response(StatusCode::CREATED, &deleted_status(&target), accept.encoding))
        }
        (Subresource::Token, "create") => {
            let request = body_object(parts, &body)?;
            let answer = crate::serviceaccount::create_token(api, &target, request, user).await?;
            Ok(json_response(StatusCode::CREATED, &answer, accept.encoding))
        }
        (Subresource::Log, "get") => crate::node_proxy::log(api, parts, &target, query).await,
        (Subresource::Exec, "get" | "create") => {
            crate::node_proxy::stream(api, parts, &target, query, Stream::Exec).await
        }
        (Subresource::Attach, "get" | "create") => {
            crate::node_proxy::stream(api, parts, &target, query, Stream::Attach).await
        }
        (Subresource::PortForward, "get" | "create") => {
            crate::node_proxy::stream(api, parts, &target, query, Stream::PortForward).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn revision_of(object: &Value) -> i64 {
    meta::str_field(object, &["metadata", "resourceVersion"])
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// The replicas path of a scalable type: built-ins use `spec.replicas`; custom resources name
/// theirs in the CRD.
fn replicas_paths(target: &Target) -> (String, String, Option<String>) {
    match &target.resource.scale_paths {
        Some(paths) => paths.clone(),
        None => {
            (".spec.replicas".into(), ".status.replicas".into(), Some(".status.selector".into()))
        }
    }
}

fn pointer(path: &str) -> String {
    path.trim_start_matches('.').split('.').fold(String::new(), |acc, part| format!("{acc}/{part}"))
}

fn set_replicas(target: &Target, object: &mut Value, replicas: i64) {
    let (spec_path, _, _) = replicas_paths(target);
    let mut cursor = object;
    let parts: Vec<String> =
        spec_path.trim_start_matches('.').split('.').map(str::to_string).collect();
    for (index, part) in parts.iter().enumerate() {
        if !cursor.is_object() {
            *cursor = json!({});
        }
        if index + 1 == parts.len() {
            cursor[part.as_str()] = json!(replicas);
            return;
        }
        cursor = &mut cursor[part.as_str()];
    }
}

/// The `autoscaling/v1` Scale view of an object.
fn scale_of(target: &Target, stored: &Stored) -> Result<Value, ApiError> {
    let object = &stored.object;
    let (spec_path, status_path, selector_path) = replicas_paths(target);
    let spec = object.pointer(&pointer(&spec_path)).and_then(Value::as_i64).unwrap_or(0);
    let status = object.pointer(&pointer(&status_path)).and_then(Value::as_i64).unwrap_or(0);
    let selector = match &selector_path {
        Some(path) if target.resource.scale_paths.is_some() => {
            object.pointer(&pointer(path)).and_then(Value::as_str).unwrap_or("").to_string()
        }
        _ => object
            .pointer("/spec/selector")
            .and_then(|selector| crate::selector::LabelSelector::from_json(selector).ok())
            .map(|selector| selector.to_string())
            .unwrap_or_default(),
    };
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_metadata = json!({});
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(value) = metadata.get(field) {
            scale_metadata[field] = value.clone();
        }
    }
    let mut scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": { "replicas": spec },
        "status": { "replicas": status },
    });
    if !selector.is_empty() {
        scale["status"]["selector"] = json!(selector);
    }
    Ok(scale)
}

/// Binds a pod to a node: sets `spec.nodeName` once and marks it scheduled.
async fn bind<S: KvStore>(
    api: &Api<S>,
    target: &Target,
    node: &str,
    options: &WriteOptions,
) -> Result<(), ApiError> {
    let registry = &api.registry;
    for _ in 0..8 {
        let stored = registry.get(target, false).await?;
        if meta::is_deleting(&stored.object) {
            return Err(ApiError::Conflict {
                resource: target.resource.group_resource(),
                name: target.name.clone(),
                message: "pod is being deleted, cannot be assigned to a host".into(),
            });
        }
        let current = stored.object.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::Conflict {
                resource: target.resource.group_resource(),
                name: target.name.clone(),
                message: format!("pod {} is already assigned to node \"{current}\"", target.name),
            });
        }
        let mut object = stored.object.clone();
        object["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
        conditions.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": meta::now_rfc3339(),
        }));
        object["status"]["conditions"] = json!(conditions);
        match registry.replace(target, stored, object, Part::System, options).await {
            Ok(_) => return Ok(()),
            Err(ApiError::Conflict { .. }) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(target.conflict())
}
