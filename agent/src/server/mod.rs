//! The agent's own HTTPS API, as kubelet's on port 10250: the masters' API server reaches a
//! node's containers through it (`kubectl logs`, `exec`, `attach`, `port-forward`).
//!
//! Invariants:
//! - Every client presents a certificate of the cluster CA, and only the masters (O
//!   `flotilla:masters`) and cluster administrators (O `system:masters`) are served; anyone
//!   else gets 403 for every request.
//! - Errors are Kubernetes `Status` objects, so the API server passes them on as they are.

pub mod logs;
mod stream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_store::pki::{ClientAuth, Subject, TlsError, TlsFiles};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{Container, ContainerFilter, ContainerState};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cri::{CriError, Runtime};
use crate::pods::container::CONTAINER_NAME_LABEL;
use crate::pods::sandbox::{POD_NAMESPACE_LABEL, POD_NAME_LABEL};
use logs::LogOptions;
use stream::Session;

/// kubelet's port.
pub const DEFAULT_PORT: u16 = 10250;
/// The groups whose members may use a node's API.
const ALLOWED_GROUPS: [&str; 2] = ["flotilla:masters", "system:masters"];
/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("binding the agent API on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Binds `listen` and serves the node's API until `stop`, with the agent's certificate.
pub async fn start<R: Runtime>(
    listen: SocketAddr,
    files: TlsFiles<'_>,
    runtime: R,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<SocketAddr, ServerError> {
    let tls = TlsAcceptor::from(Arc::new(files.server_config(ClientAuth::Required)?));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Bind { addr: listen, source })?;
    let local =
        listener.local_addr().map_err(|source| ServerError::Bind { addr: listen, source })?;
    tasks.spawn(accept(listener, tls, runtime, tasks.clone(), stop));
    tracing::info!(address = %local, "serving the agent API");
    Ok(local)
}

async fn accept<R: Runtime>(
    listener: TcpListener,
    tls: TlsAcceptor,
    runtime: R,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting an agent API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (tls, runtime, stop) = (tls.clone(), runtime.clone(), stop.clone());
        tasks.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "agent API TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let allowed = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| Subject::read(cert))
                .is_some_and(|subject| {
                    subject.organizations.iter().any(|o| ALLOWED_GROUPS.contains(&o.as_str()))
                });
            let service = service_fn(move |request| {
                let runtime = runtime.clone();
                async move {
                    let response = if allowed {
                        route(request, runtime).await
                    } else {
                        status(
                            StatusCode::FORBIDDEN,
                            "Forbidden",
                            "only the masters may use a node's API",
                        )
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "agent API connection ended");
                    }
                }
                () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
}

async fn route<R: Runtime>(request: Request<Incoming>, runtime: R) -> Response<Body> {
    let uri_path = request.uri().path().to_owned();
    let path: Vec<&str> = uri_path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    match (&method, path.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["containerLogs", namespace, pod, container]) => {
            let target = ContainerRef { namespace, pod, container };
            container_logs(&target, request.uri().query(), runtime).await
        }
        (&Method::GET | &Method::POST, [kind @ ("exec" | "attach"), namespace, pod, container]) => {
            let session = if *kind == "exec" { Session::Exec } else { Session::Attach };
            let target = ContainerRef { namespace, pod, container };
            stream::serve(request, session, &target, runtime).await
        }
        (&Method::GET | &Method::POST, ["portForward", namespace, pod]) => {
            let target = ContainerRef { namespace, pod, container: "" };
            stream::serve(request, Session::PortForward, &target, runtime).await
        }
        (&Method::GET, _) => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

/// A container named in a request path.
struct ContainerRef<'a> {
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
}

impl ContainerRef<'_> {
    /// The runtime labels of the pod's sandboxes, or with `container` of its containers.
    fn labels(&self, container: bool) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (POD_NAMESPACE_LABEL.to_owned(), self.namespace.to_owned()),
            (POD_NAME_LABEL.to_owned(), self.pod.to_owned()),
        ]);
        if container {
            labels.insert(CONTAINER_NAME_LABEL.to_owned(), self.container.to_owned());
        }
        labels
    }
}

/// The instance of a container to read: the newest, or with `previous` the one before it.
fn instance(mut containers: Vec<Container>, previous: bool) -> Option<Container> {
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    containers.into_iter().nth(usize::from(previous))
}

async fn container_logs<R: Runtime>(
    target: &ContainerRef<'_>,
    query: Option<&str>,
    runtime: R,
) -> Response<Body> {
    let options = match LogOptions::from_query(query, jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    let labels = target.labels(true);
    let (container, pod) = (target.container, target.pod);
    let not_found = || {
        let message = if options.previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is not available")
        };
        status(StatusCode::NOT_FOUND, "NotFound", &message)
    };
    let internal = |err: CriError| {
        status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &err.to_string())
    };
    // The API server names the instance (as kubelet picks it from the pod's status); asked
    // directly, the newest instance is read, or the one before it.
    let requested = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "containerID")
        .map(|(_, id)| id.into_owned());
    let id = match requested {
        Some(id) => id,
        None => {
            let filter =
                ContainerFilter { label_selector: labels.clone(), ..ContainerFilter::default() };
            match runtime.list_containers(filter).await {
                Ok(containers) => match instance(containers, options.previous) {
                    Some(found) => found.id,
                    None => return not_found(),
                },
                Err(err) => return internal(err),
            }
        }
    };
    let log_path = match runtime.container_status(&id).await {
        Ok(found) if labels.iter().all(|(k, v)| found.labels.get(k) == Some(v)) => {
            std::path::PathBuf::from(found.log_path)
        }
        Ok(_) | Err(CriError::NotFound { .. }) => return not_found(),
        Err(err) => return internal(err),
    };
    let (out, received) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let running = || {
            let (runtime, id) = (runtime.clone(), id.clone());
            async move {
                // An unanswered status is taken as still running: following goes on.
                runtime
                    .container_status(&id)
                    .await
                    .map_or(true, |s| s.state == ContainerState::ContainerRunning as i32)
            }
        };
        if let Err(err) = logs::send(&log_path, &options, running, out).await {
            tracing::debug!(path = %log_path.display(), error = %err, "reading a container log");
        }
    });
    let body = StreamBody::new(futures::stream::unfold(received, |mut received| async move {
        let chunk = received.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), received))
    }));
    let mut response = Response::new(body.boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *response.status_mut() = code;
    response
}

/// A Kubernetes `Status` failure.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::ContainerMetadata;

    fn container(id: &str, created_at: i64) -> Container {
        Container {
            id: id.into(),
            created_at,
            metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
            ..Container::default()
        }
    }

    #[test]
    fn the_newest_instance_is_read_and_previous_is_the_one_before() {
        let containers = || vec![container("a", 1), container("c", 3), container("b", 2)];
        assert_eq!(instance(containers(), false).unwrap().id, "c");
        assert_eq!(instance(containers(), true).unwrap().id, "b");
        assert!(instance(vec![container("a", 1)], true).is_none());
        assert!(instance(Vec::new(), false).is_none());
    }
}
