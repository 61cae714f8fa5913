//! One request, end to end: authenticate, route, authorize, serve, log and count. Errors
//! become Kubernetes `Status` responses here and nowhere else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_store::KvStore;
use futures::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Tokens, User};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::negotiate::{self, Accept, Encoding, Shape, MAX_BODY_BYTES};
use crate::node_proxy::{ClientUpgrade, NodeClient};
use crate::proxy::{ClientAddress, ProxyBody, Upstreams};
use crate::rbac::{Attributes, Authorizer};
use crate::registry::{Registry, WatchStream};
use crate::request::{self, Query, Route};
use crate::resources::{Catalog, ResourceType};
use crate::server::ApiConfig;
use crate::serviceaccount::{self, Issuer};
use crate::{discovery, render};

/// A response body: a whole buffer or a stream of watch events.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// The Kubernetes version whose API this server serves.
pub const KUBERNETES_MINOR: &str = "33";

/// The API over one store replica.
pub struct Api<S> {
    pub(crate) registry: Registry<S>,
    tokens: Tokens,
    /// Signs and checks service-account tokens.
    pub(crate) issuer: Issuer,
    pub(crate) config: ApiConfig,
    /// Connections to the nodes' agents, for the subresources a node serves.
    pub(crate) nodes: NodeClient,
    /// Connections to the backends of the `proxy` subresources.
    pub(crate) upstreams: Upstreams,
    metrics: Metrics,
    ready: AtomicBool,
}

/// What the request log and metrics record.
struct Outcome {
    response: Response<Body>,
    verb: String,
    resource: String,
    user: String,
}

impl<S: KvStore> Api<S> {
    pub fn new(
        store: S,
        tokens: Tokens,
        issuer: Issuer,
        config: ApiConfig,
        nodes: NodeClient,
        upstreams: Upstreams,
    ) -> Self {
        Api {
            registry: Registry::new(Catalog::default(), store, config.ranges),
            tokens,
            issuer,
            config,
            nodes,
            upstreams,
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
        }
    }

    /// Work that runs beside request serving: the bootstrap objects once the store accepts
    /// writes, then the workers (namespace deletion, custom resources, compaction).
    pub async fn run_background(self: Arc<Self>, shutdown: CancellationToken, tasks: TaskTracker) {
        let mut delay = Duration::from_millis(100);
        loop {
            match crate::bootstrap::ensure(&self.registry).await {
                Ok(()) => break,
                Err(err) => tracing::debug!(error = %err, "bootstrap objects not written yet"),
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        crate::workers::spawn(&self.registry, &shutdown, &tasks, self.config.compaction_interval);
        self.ready.store(true, Ordering::Release);
        tracing::info!("API ready");
    }

    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        cert_user: Option<User>,
        peer: SocketAddr,
    ) -> Response<Body> {
        request.extensions_mut().insert(ClientAddress(peer));
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let outcome = match self.serve(request, cert_user).await {
            Ok(outcome) => outcome,
            Err((err, verb, resource, user)) => {
                Outcome { response: error_response(&err), verb, resource, user }
            }
        };
        let status = outcome.response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.observe(&outcome.verb, &outcome.resource, status, elapsed);
        tracing::info!(
            verb = %outcome.verb,
            method = %method,
            path = %path,
            user = %outcome.user,
            peer = %peer,
            status,
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
        outcome.response
    }

    async fn serve(
        &self,
        request: Request<Incoming>,
        cert_user: Option<User>,
    ) -> Result<Outcome, (ApiError, String, String, String)> {
        let (mut parts, body) = request.into_parts();
        if let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            parts.extensions.insert(ClientUpgrade::new(upgrade));
        }
        let route = request::route(parts.uri.path());
        let query = Query::parse(parts.uri.query());
        let verb = http_verb(&parts.method, route.as_ref(), &query);
        let fail = |err: ApiError, resource: &str, user: &str| {
            (err, verb.clone(), resource.to_string(), user.to_string())
        };
        if route == Some(Route::Health) {
            let ready =
                self.ready.load(Ordering::Acquire) || !parts.uri.path().starts_with("/readyz");
            let response = if ready {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]bootstrap failed: not finished\nreadyz check failed",
                )
            };
            return Ok(Outcome { response, verb, resource: String::new(), user: String::new() });
        }
        let user =
            self.authenticate(&parts.headers, cert_user).await.map_err(|e| fail(e, "", ""))?;
        let name = user.name.clone();
        let proxied = matches!(
            &route,
            Some(Route::Resource(path)) if path.subresource.as_deref() == Some("proxy")
        );
        let accept = match Accept::negotiate(header_str(&parts.headers, header::ACCEPT)) {
            Ok(accept) => accept,
            // A proxied request's Accept is the backend's business; errors are JSON.
            Err(_) if proxied => Accept::JSON,
            Err(err) => return Err(fail(err, "", &name)),
        };
        let Some(route) = route else {
            return Err(fail(ApiError::NoRoute, "", &name));
        };
        let resource_label = match &route {
            Route::Resource(path) => path.plural.clone(),
            _ => String::new(),
        };
        let response = match route {
            Route::Resource(path) => {
                let body = if proxied {
                    // Streamed to the backend as it arrives, without the size limit.
                    parts.extensions.insert(ProxyBody::new(body));
                    Bytes::new()
                } else {
                    read_body(body).await.map_err(|e| fail(e, &resource_label, &name))?
                };
                crate::endpoints::resource(self, &parts, body, path, &user, &query, accept)
                    .await
                    .map_err(|e| fail(e, &resource_label, &name))?
            }
            other => {
                self.authorize_path(&user, parts.uri.path(), &parts.method)
                    .await
                    .map_err(|e| fail(e, "", &name))?;
                self.non_resource(other, accept).map_err(|e| fail(e, "", &name))?
            }
        };
        Ok(Outcome { response, verb, resource: resource_label, user: name })
    }

    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        cert_user: Option<User>,
    ) -> Result<User, ApiError> {
        if let Some(user) = cert_user {
            return Ok(user);
        }
        let token = header_str(headers, header::AUTHORIZATION)
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let found = self.token_user(token, &self.issuer.audiences).await?;
        found.map(|(user, _)| user).ok_or(ApiError::Unauthorized)
    }

    /// The user a bearer token stands for, and the audiences of `wanted` it is good for: a
    /// static token (good for any audience the server accepts), else a service-account token.
    /// None for a token that is neither; an error only when the store could not be read.
    pub(crate) async fn token_user(
        &self,
        token: &str,
        wanted: &[String],
    ) -> Result<Option<(User, Vec<String>)>, ApiError> {
        if let Some(user) = self.tokens.user(token) {
            let audiences: Vec<String> = (self.issuer.audiences.iter())
                .filter(|audience| wanted.contains(audience))
                .cloned()
                .collect();
            return Ok((!audiences.is_empty()).then_some((user, audiences)));
        }
        if !serviceaccount::looks_like_jwt(token) {
            return Ok(None);
        }
        let now = jiff::Timestamp::now().as_second();
        let checked =
            serviceaccount::authenticate(&self.registry, &self.issuer, token, wanted, now).await?;
        match checked {
            Ok(found) => Ok(Some((found.user, found.audiences))),
            Err(refused) => {
                tracing::debug!(reason = %refused, "service account token refused");
                Ok(None)
            }
        }
    }

    async fn authorize_path(
        &self,
        user: &User,
        path: &str,
        method: &Method,
    ) -> Result<(), ApiError> {
        let attributes = Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            path: Some(path.to_string()),
            ..Default::default()
        };
        self.authorize(user, &attributes).await
    }

    pub(crate) async fn authorize(
        &self,
        user: &User,
        attributes: &Attributes,
    ) -> Result<(), ApiError> {
        let authorizer =
            Authorizer { catalog: &self.registry.catalog, objects: &self.registry.objects };
        if authorizer.allowed(user, attributes).await? {
            Ok(())
        } else {
            Err(attributes.forbidden(user))
        }
    }

    pub(crate) fn authorizer(&self) -> Authorizer<'_, S> {
        Authorizer { catalog: &self.registry.catalog, objects: &self.registry.objects }
    }

    fn non_resource(&self, route: Route, accept: Accept) -> Result<Response<Body>, ApiError> {
        let catalog = &self.registry.catalog;
        let aggregated = accept.shape == Shape::AggregatedDiscovery;
        let document = match route {
            Route::Version => version_info(),
            Route::Metrics => {
                let mut response = Response::new(full(self.metrics.render()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                return Ok(response);
            }
            Route::CoreVersions if aggregated => {
                return Ok(discovery_response(discovery::aggregated(catalog, true)))
            }
            Route::Groups if aggregated => {
                return Ok(discovery_response(discovery::aggregated(catalog, false)))
            }
            Route::CoreVersions => discovery::core_versions(&self.config.advertise),
            Route::Groups => discovery::groups(catalog),
            Route::Group { group } => discovery::group(catalog, &group).ok_or(ApiError::NoRoute)?,
            Route::Resources { group, version } => {
                discovery::resource_list(catalog, &group, &version).ok_or(ApiError::NoRoute)?
            }
            Route::OpenApiV3Index => self.registry.openapi.index(),
            Route::OpenApiV3 { group, version } => {
                let document =
                    self.registry.openapi.document(&group, &version).ok_or(ApiError::NoRoute)?;
                let mut response = Response::new(full(Bytes::copy_from_slice(document.json())));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return Ok(response);
            }
            Route::OpenIdConfiguration => {
                let document =
                    serviceaccount::openid_configuration(&self.issuer, &self.config.advertise);
                return Ok(json_response(StatusCode::OK, &document, Encoding::Json));
            }
            Route::Jwks => {
                let mut response = json_response(
                    StatusCode::OK,
                    &serviceaccount::jwks(&self.issuer),
                    Encoding::Json,
                );
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwk-set+json"),
                );
                return Ok(response);
            }
            // Only OpenAPI v3 is served; kubectl uses it for validation, patches and explain.
            Route::OpenApiV2 => return Err(ApiError::NoRoute),
            Route::Health | Route::Resource(_) => return Err(ApiError::NoRoute),
        };
        Ok(json_response(StatusCode::OK, &document, accept.encoding))
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0+flotilla.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// The verb as metrics label it: GET, LIST, WATCH, POST, PUT, PATCH, DELETE.
fn http_verb(method: &Method, route: Option<&Route>, query: &Query) -> String {
    match *method {
        Method::GET if query.flag("watch") => "WATCH".into(),
        Method::GET => {
            let is_collection =
                matches!(route, Some(Route::Resource(request::ResourcePath { name: None, .. })));
            if is_collection {
                "LIST".into()
            } else {
                "GET".into()
            }
        }
        ref other => other.as_str().to_string(),
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case, as kube-apiserver does: the Python client sends `bearer`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn header_str(headers: &http::HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Reads a request body up to the size limit; larger bodies are a 413.
async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge { limit: MAX_BODY_BYTES })
        }
        Err(err) => Err(ApiError::BadRequest(format!("reading the request body: {err}"))),
    }
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

pub fn json_response(status: StatusCode, value: &Value, encoding: Encoding) -> Response<Body> {
    let mut response = Response::new(full(negotiate::encode(value, encoding)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    response
}

fn discovery_response(value: Value) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &value, Encoding::Json);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE));
    response
}

pub fn error_response(err: &ApiError) -> Response<Body> {
    let (code, _) = err.code_and_reason();
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &err.status(), Encoding::Json);
    if matches!(err, ApiError::Unauthorized) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A streaming watch response: one JSON document per event, newline separated.
pub fn watch_response(
    resource: Arc<ResourceType>,
    stream: WatchStream,
    accept: Accept,
    include: render::IncludeObject,
) -> Response<Body> {
    let state = (stream, resource, true);
    let events = futures::stream::unfold(state, move |(mut stream, resource, first)| async move {
        let event = stream.next().await?;
        let kind = event.kind;
        let object_event = matches!(kind, "ADDED" | "MODIFIED" | "DELETED");
        let mut line = Vec::new();
        let written = match accept.shape {
            Shape::Table | Shape::Metadata if object_event => {
                event.object.into_value().map(|object| {
                    let object = if accept.shape == Shape::Table {
                        let version = object.pointer("/metadata/resourceVersion").cloned();
                        let metadata = json!({ "resourceVersion": version.unwrap_or(Value::Null) });
                        render::table(&resource, vec![object], metadata, include, first)
                    } else {
                        render::partial_metadata(&object)
                    };
                    line = negotiate::encode(
                        &json!({ "type": kind, "object": object }),
                        Encoding::Json,
                    );
                })
            }
            _ => event.write_json(&mut line),
        };
        if let Err(err) = written {
            tracing::warn!(error = %err, "a watch event could not be encoded");
            line = negotiate::encode(
                &json!({ "type": "ERROR", "object": err.status() }),
                Encoding::Json,
            );
        }
        line.push(b'\n');
        let first = first && !object_event;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), (stream, resource, first)))
    });
    let mut response = Response::new(StreamBody::new(events.boxed()).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_schemes_match_without_regard_to_case() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("Bearer", None),
        ];
        for (value, token) in cases {
            assert_eq!(bearer_token(value), token, "{value:?}");
        }
    }
}
