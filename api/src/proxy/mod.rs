//! The `proxy` subresources of pods, services and nodes, as kube-apiserver serves them:
//! `…/pods/NAME[:PORT | SCHEME:NAME:PORT]/proxy[/PATH]` goes to the pod's IP, `…/services/…`
//! to a ready endpoint of the Service's port, `…/nodes/NAME[:PORT]/proxy[/PATH]` to the node's
//! agent (or another port of the node). Any method; the query and the body go through as
//! they are, the response comes back as the backend sends it.
//!
//! Invariants:
//! - The client's credentials (`Authorization`, `Impersonate-*`) never reach a backend.
//! - Where the request goes is decided from the objects before any connection is made
//!   ([`location`]); what the request and response carry is decided without IO
//!   ([`rewrite`]); [`upstream`] only connects, sends and relays.
//! - Errors before the backend answers are Kubernetes `Status` objects (404 for a missing
//!   object, 400 for an id or address kube refuses, 503 when nothing can be reached); once the
//!   backend has answered, its status and body are the client's, even when they are errors.

mod location;
mod rewrite;
mod upstream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use flotilla_store::KvStore;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use rand::Rng;
use serde_json::Value;

use crate::error::ApiError;
use crate::handler::{Api, Body};
use crate::node_proxy::ClientUpgrade;
use crate::registry::{ListOptions, Target};
use crate::request::Query;
use location::{Backend, ProxyId};
use rewrite::{Forwarded, Redirect};
pub use upstream::Upstreams;
use upstream::{Relayed, UpstreamBody};

/// The Kubernetes verb of a proxy request, from its method alone as kube's `RequestInfo`
/// derives it (a `watch=true` in the query is the backend's business). OPTIONS has no verb:
/// only a rule granting `*` allows it. None for methods the proxy does not serve.
pub fn verb(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "",
        _ => return None,
    })
}

/// The body of a proxied request, set aside unread by the handler so it streams to the
/// backend as it arrives.
#[derive(Clone)]
pub struct ProxyBody(Arc<Mutex<Option<Incoming>>>);

impl ProxyBody {
    pub fn new(body: Incoming) -> ProxyBody {
        ProxyBody(Arc::new(Mutex::new(Some(body))))
    }

    fn take(&self) -> Option<Incoming> {
        self.0.lock().ok()?.take()
    }
}

/// The address of the client, for the backend's `X-Forwarded-For`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub SocketAddr);

/// `pods|services|nodes/<id>/proxy[/path]`: resolves the backend, sends it the request and
/// relays its answer.
pub async fn serve<S: KvStore>(
    api: &Api<S>,
    parts: &Parts,
    target: &Target,
) -> Result<Response<Body>, ApiError> {
    let backend = resolve(api, target).await?;
    let request_path = parts.uri.path();
    let (prefix, rest) = rewrite::split_after_segment(request_path, proxy_segment_index(target))
        .ok_or_else(|| ApiError::Internal(format!("no proxy segment in {request_path}")))?;
    let mut path = rewrite::backend_path(rest);
    if path.is_empty() {
        if parts.method == Method::GET || parts.method == Method::HEAD {
            return redirect_with_slash(parts);
        }
        path.push('/');
    }
    let host = request_host(parts);
    let forwarded = Forwarded {
        host: host.as_ref(),
        client_ip: parts.extensions.get::<ClientAddress>().map(|client| client.0.ip()),
        uri: &rewrite::forwarded_uri(prefix, &path),
    };
    let body: UpstreamBody = match parts.extensions.get::<ProxyBody>().and_then(ProxyBody::take) {
        Some(body) => body.boxed_unsync(),
        None => Empty::new().map_err(|never| match never {}).boxed_unsync(),
    };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    let mut request =
        Request::builder().method(parts.method.clone()).uri(path_and_query).body(body).map_err(
            |err| ApiError::BadRequest(format!("the proxied request is not valid: {err}")),
        )?;
    *request.headers_mut() = rewrite::request_headers(&parts.headers, &forwarded);
    tracing::debug!(backend = %backend.address, path = %path, "proxying");
    let response = api.upstreams.send(&backend, request).await?;

    let request_host = host.as_ref().and_then(|host| host.to_str().ok()).unwrap_or_default();
    let redirect = Redirect { backend_host: &backend.host, request_host, prefix };
    respond(parts, &backend, &redirect, response)
}

/// The backend of a proxy request: the object named by the id, then where it is reached.
/// An id kube cannot split is a 400; a missing object a 404.
async fn resolve<S: KvStore>(api: &Api<S>, target: &Target) -> Result<Backend, ApiError> {
    let raw_id = decode_segment(&target.name);
    let plural = target.resource.plural.as_str();
    let kind = plural.strip_suffix('s').unwrap_or(plural);
    let id = ProxyId::parse(&raw_id)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid {kind} request {raw_id:?}")))?;
    let named = Target { name: id.name.clone(), ..target.clone() };
    match plural {
        "pods" => location::pod_backend(
            &api.registry.get(&named, true).await?.object,
            &id,
            api.config.proxy_loopback,
        ),
        "services" => service_backend(api, &named, &id, &raw_id).await,
        "nodes" => location::node_backend(
            &api.registry.get(&named, true).await?.object,
            &id,
            api.config.proxy_loopback,
        ),
        _ => Err(ApiError::NoRoute),
    }
}

/// The backend's answer as the client gets it: its status, headers (see
/// [`rewrite::response_headers`]) and body as it arrives, or a switch of protocols joined to
/// the client's connection. An upgrade the backend refuses with a non-error status is a
/// 500, as kube answers it.
fn respond(
    parts: &Parts,
    backend: &Backend,
    redirect: &Redirect<'_>,
    mut response: Response<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let status = response.status();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    if rewrite::is_upgrade(&parts.headers) && !switching && status.as_u16() < 400 {
        return Err(ApiError::Internal(format!(
            "invalid upgrade response: status code {}",
            status.as_u16()
        )));
    }
    let headers = rewrite::response_headers(response.headers(), redirect, switching);
    let body = if switching {
        let client = parts.extensions.get::<ClientUpgrade>().and_then(ClientUpgrade::take);
        let client = client.ok_or_else(|| {
            ApiError::BadRequest("the backend switched protocols but the request cannot".into())
        })?;
        crate::node_proxy::splice(client, hyper::upgrade::on(&mut response));
        Empty::new().boxed_unsync()
    } else {
        Relayed::new(response.into_body(), backend.address).boxed_unsync()
    };
    let mut relayed = Response::new(body);
    *relayed.status_mut() = status;
    *relayed.headers_mut() = headers;
    Ok(relayed)
}

/// The index of the `proxy` segment among the request path's segments: after `api/v1` (or
/// `apis/GROUP/VERSION`), `namespaces/NS` for a namespaced object, then the resource and the
/// object.
fn proxy_segment_index(target: &Target) -> usize {
    let version = if target.resource.group.is_empty() { 2 } else { 3 };
    let namespace = if target.namespace.is_some() { 2 } else { 0 };
    version + namespace + 2
}

/// A path segment with its `%XX` escapes decoded (clients that escape `:` send `%3A`).
fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| segment.get(index + 1..index + 3))
            .flatten()
            .filter(|hex| hex.bytes().all(|digit| digit.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host the client asked for: its `Host` header, or an HTTP/2 request's authority.
fn request_host(parts: &Parts) -> Option<HeaderValue> {
    if let Some(host) = parts.headers.get(header::HOST) {
        return Some(host.clone());
    }
    parts.uri.authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
}

/// `301` to the request path with a slash added, so relative links in the backend's root
/// page resolve below the proxy (kube answers so for GET and HEAD without a path).
fn redirect_with_slash(parts: &Parts) -> Result<Response<Body>, ApiError> {
    let mut location = format!("{}/", parts.uri.path());
    if let Some(query) = parts.uri.query().filter(|query| !query.is_empty()) {
        location.push('?');
        location.push_str(query);
    }
    let location = HeaderValue::from_str(&location)
        .map_err(|err| ApiError::BadRequest(format!("the request path is not valid: {err}")))?;
    let mut response = Response::new(crate::handler::full(""));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// A Service's backend: a ready endpoint of the port the id names, from the Service's
/// EndpointSlices, whose pod holds its address (kube-apiserver checks the pod the same way,
/// so an EndpointSlice cannot send the API server to an address no pod has).
async fn service_backend<S: KvStore>(
    api: &Api<S>,
    service: &Target,
    id: &ProxyId,
    raw_id: &str,
) -> Result<Backend, ApiError> {
    let object = api.registry.get(service, true).await?.object;
    let port_name = location::service_port_name(&object, id)?;
    let catalog = &api.registry.catalog;
    let missing = |plural: &str| ApiError::Internal(format!("the {plural} resource is not served"));
    let slices_resource = catalog
        .get("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| missing("endpointslices"))?;
    let selector = format!(
        "labelSelector=kubernetes.io%2Fservice-name%3D{}&resourceVersion=0",
        encode_query_value(&id.name)
    );
    let options = ListOptions::from_query(&slices_resource, &Query::parse(Some(&selector)))?;
    let namespace = service.namespace.as_deref();
    let listed = api.registry.list(&slices_resource, namespace, &options).await?;
    let slices: Vec<Value> = listed.items.into_iter().map(|stored| stored.object).collect();
    if location::no_endpoints(&slices) {
        return Err(ApiError::Unavailable(format!(
            "no endpoints available for service {:?}",
            id.name
        )));
    }
    let candidates = location::service_candidates(&slices, &port_name, &mut |count| {
        rand::thread_rng().gen_range(0..count)
    });
    let pods = catalog.get("", "v1", "pods").ok_or_else(|| missing("pods"))?;
    for candidate in candidates {
        if !location::proxyable(candidate.address.ip(), api.config.proxy_loopback) {
            tracing::debug!(endpoint = %candidate.address, "an endpoint at an address not allowed is skipped");
            continue;
        }
        let Some((pod_namespace, pod_name)) = &candidate.pod else {
            tracing::debug!(endpoint = %candidate.address, "an endpoint without a pod is skipped");
            continue;
        };
        if Some(pod_namespace.as_str()) != namespace {
            continue;
        }
        let pod = Target {
            resource: pods.clone(),
            namespace: Some(pod_namespace.clone()),
            name: pod_name.clone(),
        };
        let holds_address = match api.registry.get(&pod, true).await {
            Ok(stored) => location::pod_ips(&stored.object).contains(&candidate.address.ip()),
            Err(ApiError::NotFound { .. }) => false,
            Err(err) => return Err(err),
        };
        if holds_address {
            return Ok(candidate.backend(id.scheme));
        }
        tracing::debug!(endpoint = %candidate.address, pod = %pod_name, "an endpoint its pod does not hold is skipped");
    }
    Err(ApiError::Unavailable(format!("no endpoints available for service {raw_id:?}")))
}

/// Percent-encodes a query value.
fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
