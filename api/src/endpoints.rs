//! Resource requests: the verb from method and path, authorization, then the registry call
//! and the response in the negotiated shape.

use std::sync::Arc;

use bytes::Bytes;
use flotilla_store::KvStore;
use http::request::Parts;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::User;
use crate::error::{success_status, ApiError};
use crate::handler::{json_response, watch_response, Api, Body};
use crate::negotiate::{decode_body, Accept, BodyType};
use crate::patch::PatchType;
use crate::rbac::Attributes;
use crate::registry::{
    DeleteOptions, EncodedList, FieldValidation, ListOptions, Part, Target, WatchOptions,
    WriteOptions, Written,
};
use crate::render::{self, IncludeObject};
use crate::request::{Query, ResourcePath};
use crate::resources::{ResourceType, Subresource, Verbs};

/// The Kubernetes verb of a resource request.
fn verb(method: &Method, path: &ResourcePath, query: &Query) -> Result<&'static str, ApiError> {
    Ok(match (method, path.name.is_some()) {
        (&Method::GET, false) if query.flag("watch") => "watch",
        (&Method::GET, true) if query.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return Err(ApiError::MethodNotAllowed),
    })
}

/// The field manager a client that names none is recorded as: its User-Agent up to the first
/// `/`, as Kubernetes does.
fn default_manager(parts: &Parts) -> Option<String> {
    let agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())?;
    let prefix = agent.split('/').next().unwrap_or(agent).trim();
    (!prefix.is_empty())
        .then(|| prefix.chars().take(crate::apply::FIELD_MANAGER_MAX_LENGTH).collect())
}

pub(crate) fn write_options(
    parts: &Parts,
    query: &Query,
    user: &User,
) -> Result<WriteOptions, ApiError> {
    let dry_run = match query.get("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )))
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_manager: query
            .get("fieldManager")
            .map(str::to_string)
            .or_else(|| default_manager(parts)),
        field_validation: FieldValidation::parse(query.get("fieldValidation"))?,
        force: query.flag("force"),
        user: Some(user.clone()),
    })
}

pub(crate) fn body_object(parts: &Parts, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body_type = BodyType::from_content_type(content_type)?;
    decode_body(body, body_type)
}

/// A create or update body, with duplicate fields refused under strict field validation (a
/// decoded object cannot hold them, so the raw JSON is read for them).
fn written_body<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    body: &Bytes,
    resource: &ResourceType,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    let object = body_object(parts, body)?;
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|content_type| content_type.starts_with("application/json"));
    if json && options.field_validation == FieldValidation::Strict {
        let openapi = &api.registry.openapi;
        let errors = openapi
            .strict_field_errors(&resource.group, &resource.version, &resource.kind, body)
            .unwrap_or_default();
        let duplicates: Vec<String> =
            errors.into_iter().filter(|error| error.starts_with("duplicate field")).collect();
        if !duplicates.is_empty() {
            return Err(ApiError::BadRequest(crate::openapi::strict_decoding_message(
                &resource.kind,
                &resource.version,
                &duplicates,
            )));
        }
    }
    Ok(object)
}

/// A list whose items were never decoded, written around them.
fn encoded_list_response(resource: &ResourceType, listed: EncodedList) -> Response<Body> {
    let mut metadata = json!({ "resourceVersion": listed.revision.to_string() });
    if let Some(token) = &listed.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(remaining) = listed.remaining {
        metadata["remainingItemCount"] = json!(remaining);
    }
    let head = json!({ "kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata });
    let head = head.to_string();
    let mut body = Vec::with_capacity(head.len() + listed.items.len() + 16);
    // `head` is an object: its closing brace gives way to the items.
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":");
    body.extend_from_slice(&listed.items);
    body.push(b'}');
    let mut response = Response::new(crate::handler::full(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Delete options from the query, overridden by a `DeleteOptions` body if there is one.
fn delete_options(parts: &Parts, body: &Bytes, query: &Query) -> Result<DeleteOptions, ApiError> {
    let delete_body = (!body.is_empty()).then(|| body_object(parts, body)).transpose()?;
    DeleteOptions::from_request(query, delete_body.as_ref())
}

fn written_response(
    written: Written,
    resource: &ResourceType,
    accept: Accept,
    include: IncludeObject,
) -> Response<Body> {
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    let object = render::object(resource, written.object, accept.shape, include);
    let mut response = json_response(status, &object, accept.encoding);
    for warning in written.warnings {
        if let Ok(value) = HeaderValue::from_str(&format!("299 - {:?}", warning)) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

pub async fn resource<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    body: Bytes,
    path: ResourcePath,
    user: &User,
    query: &Query,
    accept: Accept,
) -> Result<Response<Body>, ApiError> {
    let registry = &api.registry;
    let resource =
        registry.catalog.get(&path.group, &path.version, &path.plural).ok_or(ApiError::NoRoute)?;
    if !resource.namespaced && path.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    let verb = if path.subresource.as_deref() == Some("proxy") {
        crate::proxy::verb(&parts.method).ok_or(ApiError::MethodNotAllowed)?
    } else {
        verb(&parts.method, &path, query)?
    };
    let subresource = match path.subresource.as_deref() {
        None => None,
        Some(name) => {
            Some(Subresource::parse(name).filter(|s| resource.has(*s)).ok_or(ApiError::NoRoute)?)
        }
    };
    let attributes = Attributes {
        verb: verb.to_string(),
        group: resource.group.clone(),
        resource: resource.plural.clone(),
        subresource: path.subresource.clone().unwrap_or_default(),
        name: path.name.clone().unwrap_or_default(),
        namespace: path.namespace.clone().unwrap_or_default(),
        path: None,
    };
    api.authorize(user, &attributes).await?;
    if resource.verbs == Verbs::CreateOnly {
        if verb != "create" {
            return Err(ApiError::MethodNotAllowed);
        }
        let review = body_object(parts, &body)?;
        let answer = crate::reviews::review(api, &resource, user, review).await?;
        return Ok(json_response(StatusCode::CREATED, &answer, accept.encoding));
    }
    let include = IncludeObject::parse(query.get("includeObject"));
    let namespace = path.namespace.as_deref();
    let target = |name: &str| Target {
        resource: resource.clone(),
        namespace: path.namespace.clone(),
        name: name.to_string(),
    };
    match (subresource, path.name.as_deref()) {
        (None, None) => {
            collection(api, parts, body, &resource, namespace, verb, user, query, accept, include)
                .await
        }
        (None, Some(name)) => {
            object(api, parts, body, target(name), verb, user, query, accept, include).await
        }
        (Some(sub), Some(name)) => {
            crate::subresources::serve(
                api,
                parts,
                body,
                target(name),
                sub,
                verb,
                user,
                query,
                accept,
            )
            .await
        }
        (Some(_), None) => Err(ApiError::NoRoute),
    }
}

#[allow(clippy::too_many_arguments)]
async fn collection<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    body: Bytes,
    resource: &Arc<ResourceType>,
    namespace: Option<&str>,
    verb: &str,
    user: &User,
    query: &Query,
    accept: Accept,
    include: IncludeObject,
) -> Result<Response<Body>, ApiError> {
    let registry = &api.registry;
    match verb {
        "list" => {
            let options = ListOptions::from_query(resource, query)?;
            if accept == Accept::JSON && options.filter.is_everything() {
                let listed = registry.list_encoded(resource, namespace, &options).await?;
                return Ok(encoded_list_response(resource, listed));
            }
            let listed = registry.list(resource, namespace, &options).await?;
            let mut metadata = json!({ "resourceVersion": listed.revision.to_string() });
            if let Some(token) = &listed.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(remaining) = listed.remaining {
                metadata["remainingItemCount"] = json!(remaining);
            }
            let items = listed.items.into_iter().map(|stored| stored.object).collect();
            let list = render::list(resource, items, metadata, accept.shape, include);
            Ok(json_response(StatusCode::OK, &list, accept.encoding))
        }
        "watch" => {
            let options = WatchOptions::from_query(resource, query)?;
            let stream = registry.watch(resource, namespace, options).await?;
            Ok(watch_response(resource.clone(), stream, accept, include))
        }
        "create" => {
            let options = write_options(parts, query, user)?;
            let object = written_body(api, parts, &body, resource, &options)?;
            let written = registry.create(resource, namespace, object, &options).await?;
            Ok(written_response(written, resource, accept, include))
        }
        "deletecollection" => {
            let options = delete_options(parts, &body, query)?;
            let list = ListOptions::from_query(resource, query)?;
            let listed = registry.list(resource, namespace, &list).await?;
            let mut deleted = Vec::new();
            for stored in listed.items {
                let target = Target {
                    resource: resource.clone(),
                    namespace: crate::meta::namespace(&stored.object).map(str::to_string),
                    name: crate::meta::name(&stored.object).to_string(),
                };
                match registry.delete(&target, &options).await {
                    Ok(result) => deleted.push(result.object),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            let list = render::list(resource, deleted, json!({}), accept.shape, include);
            Ok(json_response(StatusCode::OK, &list, accept.encoding))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

#[allow(clippy::too_many_arguments)]
async fn object<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    body: Bytes,
    target: Target,
    verb: &str,
    user: &User,
    query: &Query,
    accept: Accept,
    include: IncludeObject,
) -> Result<Response<Body>, ApiError> {
    let registry = &api.registry;
    let resource = target.resource.clone();
    match verb {
        "get" => {
            let any_version = query.get("resourceVersion") == Some("0");
            let stored = registry.get(&target, any_version).await?;
            let object = render::object(&resource, stored.object, accept.shape, include);
            Ok(json_response(StatusCode::OK, &object, accept.encoding))
        }
        "watch" => {
            // A watch on one object is a watch of its collection filtered by name.
            let mut options = WatchOptions::from_query(&resource, query)?;
            let selector = format!("metadata.name={}", target.name);
            options.filter = crate::registry::Filter::from_query(
                &resource,
                &Query::parse(Some(&format!("fieldSelector={selector}"))),
            )?;
            let stream = registry.watch(&resource, target.namespace.as_deref(), options).await?;
            Ok(watch_response(resource, stream, accept, include))
        }
        "update" => {
            let options = write_options(parts, query, user)?;
            let object = written_body(api, parts, &body, &resource, &options)?;
            let written = registry.update(&target, object, Part::Main, &options).await?;
            Ok(written_response(written, &resource, accept, include))
        }
        "patch" => {
            let written = patch(api, parts, &body, &target, Part::Main, user, query).await?;
            Ok(written_response(written, &resource, accept, include))
        }
        "delete" => {
            let options = delete_options(parts, &body, query)?;
            let deleted = registry.delete(&target, &options).await?;
            let status = if deleted.gone { StatusCode::OK } else { StatusCode::ACCEPTED };
            let object = render::object(&resource, deleted.object, accept.shape, include);
            Ok(json_response(status, &object, accept.encoding))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// A PATCH of the object or one of its parts, by content type.
pub(crate) async fn patch<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    body: &Bytes,
    target: &Target,
    part: Part,
    user: &User,
    query: &Query,
) -> Result<Written, ApiError> {
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let patch_type = PatchType::from_content_type(essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, \
             application/apply-patch+yaml, application/strategic-merge-patch+json"
                .into(),
        )
    })?;
    let mut options = write_options(parts, query, user)?;
    if patch_type == PatchType::Apply {
        // An apply names its manager; it is never guessed.
        options.field_manager = query.get("fieldManager").map(str::to_string);
    } else if options.force {
        return Err(ApiError::BadRequest(
            "force: Invalid value: true: may not be specified for non-apply patch".into(),
        ));
    }
    api.registry.patch(target, patch_type, body, part, &options).await
}

/// A deletion answered with a Status rather than the object (subresources use it).
pub(crate) fn deleted_status(target: &Target) -> Value {
    success_status(json!({
        "name": target.name,
        "group": target.resource.group,
        "kind": target.resource.plural,
        "uid": "",
    }))
}
