//! `kubectl exec`, `attach` and `port-forward` on the node, as kubelet serves them: the agent
//! asks the runtime to open the session (CRI `Exec`, `Attach`, `PortForward`) and relays the
//! client's upgraded connection to the URL the runtime answers with, byte for byte. Whatever
//! streaming protocol the client and the runtime agree on (SPDY/3.1 or WebSocket, with the
//! `channel.k8s.io` versions) passes through unchanged, stdin half-close and terminal resizes
//! included.
//!
//! Invariants:
//! - Only a running container is exec'd into or attached to; only a ready sandbox is
//!   forwarded to.
//! - The request's headers are passed on as they came (the master sends only those that
//!   negotiate the upgrade), except its `Host` and body framing.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    AttachRequest, ContainerFilter, ContainerState, ContainerStateValue, ExecRequest,
    PodSandboxFilter, PodSandboxState, PodSandboxStateValue, PortForwardRequest,
};

use super::{status, Body, ContainerRef};
use crate::cri::{Runtime, StreamRequest};

/// Which session a request opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    Exec,
    Attach,
    PortForward,
}

/// What the query of an exec, attach or port-forward request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub ports: Vec<i32>,
}

impl StreamOptions {
    /// Reads `command` (repeated), `stdin`, `stdout`, `stderr`, `tty` and `ports` (repeated
    /// or comma separated) from a query string.
    pub fn from_query(query: Option<&str>) -> Result<StreamOptions, String> {
        let mut options = StreamOptions::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let on = matches!(value.as_ref(), "true" | "1");
            match key.as_ref() {
                "command" => options.command.push(value.into_owned()),
                "input" | "stdin" => options.stdin = on,
                "output" | "stdout" => options.stdout = on,
                "error" | "stderr" => options.stderr = on,
                "tty" => options.tty = on,
                "ports" => {
                    for port in value.split(',').filter(|p| !p.is_empty()) {
                        let valid = port.parse::<u16>().ok().filter(|p| *p > 0);
                        let port = valid.ok_or_else(|| format!("invalid port {port:?}"))?;
                        options.ports.push(i32::from(port));
                    }
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Opens the session in the runtime and relays the request's upgrade to it.
pub async fn serve<R: Runtime>(
    mut request: Request<Incoming>,
    session: Session,
    target: &ContainerRef<'_>,
    runtime: R,
) -> Response<Body> {
    let options = match StreamOptions::from_query(request.uri().query()) {
        Ok(options) => options,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    if session == Session::Exec && options.command.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
        );
    }
    let opened = match session {
        Session::Exec | Session::Attach => {
            let Some(container_id) = running_container(&runtime, target).await else {
                let message = format!("container not found ({:?})", target.container);
                return status(StatusCode::NOT_FOUND, "NotFound", &message);
            };
            let StreamOptions { command, stdin, stdout, stderr, tty, .. } = options;
            runtime
                .stream_url(if session == Session::Exec {
                    StreamRequest::Exec(ExecRequest {
                        container_id,
                        cmd: command,
                        tty,
                        stdin,
                        stdout,
                        stderr,
                    })
                } else {
                    StreamRequest::Attach(AttachRequest {
                        container_id,
                        stdin,
                        tty,
                        stdout,
                        stderr,
                    })
                })
                .await
        }
        Session::PortForward => {
            let Some(pod_sandbox_id) = ready_sandbox(&runtime, target).await else {
                let message = format!("pod not found ({:?})", target.pod);
                return status(StatusCode::NOT_FOUND, "NotFound", &message);
            };
            let request = PortForwardRequest { pod_sandbox_id, port: options.ports };
            runtime.stream_url(StreamRequest::PortForward(request)).await
        }
    };
    let url = match opened {
        Ok(url) => url,
        Err(err) => {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &err.to_string())
        }
    };
    match relay(&mut request, &url).await {
        Ok(response) => response,
        Err(message) => status(StatusCode::BAD_GATEWAY, "InternalError", &message),
    }
}

/// The newest running instance of the container.
async fn running_container<R: Runtime>(runtime: &R, target: &ContainerRef<'_>) -> Option<String> {
    let filter = ContainerFilter {
        state: Some(ContainerStateValue { state: ContainerState::ContainerRunning as i32 }),
        label_selector: target.labels(true),
        ..ContainerFilter::default()
    };
    let containers = runtime.list_containers(filter).await.ok()?;
    containers.into_iter().max_by_key(|c| c.created_at).map(|c| c.id)
}

/// The newest ready sandbox of the pod.
async fn ready_sandbox<R: Runtime>(runtime: &R, target: &ContainerRef<'_>) -> Option<String> {
    let filter = PodSandboxFilter {
        state: Some(PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 }),
        label_selector: target.labels(false),
        ..PodSandboxFilter::default()
    };
    let sandboxes = runtime.list_pod_sandboxes(filter).await.ok()?;
    sandboxes.into_iter().max_by_key(|s| s.created_at).map(|s| s.id)
}

/// Sends the request's method and upgrade headers to `url` (the runtime's streaming server,
/// plain HTTP on loopback) and answers with the runtime's response; once both sides have
/// switched protocols, the two connections are joined.
async fn relay(request: &mut Request<Incoming>, url: &str) -> Result<Response<Body>, String> {
    let uri: http::Uri =
        url.parse().map_err(|_| format!("the runtime answered an invalid URL {url:?}"))?;
    let authority = uri.authority().ok_or_else(|| format!("no address in {url:?}"))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((authority.host(), port)).await.map_err(|err| {
        format!("connecting to the runtime's streaming server {authority}: {err}")
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|err| format!("streaming server {authority}: {err}"))?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(error = %err, "a streaming server connection ended");
        }
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::builder().method(request.method()).uri(path);
    let framing = [header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];
    for (name, value) in request.headers().iter().filter(|(name, _)| !framing.contains(name)) {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream
        .header(header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
    let mut response = sender
        .send_request(upstream)
        .await
        .map_err(|err| format!("streaming server {authority}: {err}"))?;
    let mut relayed = Response::builder().status(response.status());
    for (name, value) in response.headers() {
        relayed = relayed.header(name, value);
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let client = hyper::upgrade::on(request);
        let runtime = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client, runtime) {
                Ok((client, runtime)) => {
                    let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut runtime).await;
                }
                Err(err) => tracing::debug!(error = %err, "a streaming upgrade failed"),
            }
        });
        return relayed.body(Empty::new().boxed_unsync()).map_err(|err| err.to_string());
    }
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    relayed.body(http_body_util::Full::new(body).boxed_unsync()).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_command_streams_and_ports() {
        let options = StreamOptions::from_query(Some(
            "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&stderr=false&tty=true",
        ))
        .unwrap();
        assert_eq!(options.command, ["sh", "-c", "echo hi"]);
        assert!(options.stdin && options.stdout && !options.stderr && options.tty);
        let ports = StreamOptions::from_query(Some("ports=8080,9090&ports=53")).unwrap();
        assert_eq!(ports.ports, [8080, 9090, 53]);
        assert_eq!(StreamOptions::from_query(Some("ports=0")).unwrap_err(), "invalid port \"0\"");
        assert_eq!(StreamOptions::from_query(None).unwrap(), StreamOptions::default());
    }
}
