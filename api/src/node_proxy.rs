//! Reaching a pod's node: the API server connects to the agent of the node a pod runs on
//! (its InternalIP and `status.daemonEndpoints.kubeletEndpoint.port`, as kube-apiserver finds
//! kubelets), over TLS verified against the cluster CA and with the master's own certificate,
//! and relays the agent's answer. `pods/log` is served this way, and `exec`, `attach` and
//! `portforward`, whose upgraded connections are joined to the agent's.
//!
//! Invariants:
//! - What the pod's spec and status already answer (no such container, a container still
//!   waiting to start, no previous instance) is answered here, with kubelet's wording, before
//!   any node is contacted.
//! - The agent's response is relayed as it arrives (a followed log streams), and a broken
//!   connection to the agent ends the response instead of failing the request midway.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_store::pki::{TlsError, TlsFiles};
use flotilla_store::KvStore;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::ApiError;
use crate::handler::{Api, Body};
use crate::registry::Target;
use crate::request::Query;

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// kubelet's port, for a node that does not say.
const DEFAULT_AGENT_PORT: u16 = 10250;

/// Connections to the nodes' agents.
pub struct NodeClient {
    tls: TlsConnector,
}

impl NodeClient {
    /// A client presenting the master's certificate and trusting agents the cluster CA signed.
    pub fn new(files: TlsFiles<'_>) -> Result<NodeClient, TlsError> {
        Ok(NodeClient { tls: TlsConnector::from(Arc::new(files.client_config()?)) })
    }

    /// The TLS settings agents are reached with, for the node proxy.
    pub(crate) fn connector(&self) -> TlsConnector {
        self.tls.clone()
    }

    /// Sends a request without body to the agent at `address` and returns its response head;
    /// the body arrives as the agent sends it. `headers` are added to the request.
    async fn send(
        &self,
        node: &str,
        address: SocketAddr,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let unreachable = |err: &dyn std::fmt::Display| {
            ApiError::Unavailable(format!(
                "the agent of node {node} at {address} is not reachable: {err}"
            ))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| unreachable(&"no answer within 5s"))?
            .map_err(|err| unreachable(&err))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(ServerName::IpAddress(address.ip().into()), tcp)
            .await
            .map_err(|err| unreachable(&err))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|err| unreachable(&err))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "a connection to an agent ended");
            }
        });
        let mut request = Request::builder().method(method).uri(path_and_query);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .header(header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|err| ApiError::Internal(err.to_string()))?;
        sender.send_request(request).await.map_err(|err| unreachable(&err))
    }
}

/// `GET pods/<name>/log`: the container's log from its node's agent.
pub async fn log<S: KvStore>(
    api: &Api<S>,
    parts: &http::request::Parts,
    target: &Target,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let pod = api.registry.get(target, true).await?.object;
    let container = log_container(&pod, &target.name, query.get("container"))?;
    let previous = query.flag("previous");
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    if node.is_empty() {
        // kube-apiserver answers an unscheduled pod's log with nothing.
        return Ok(crate::handler::text(StatusCode::OK, ""));
    }
    let instance = log_instance(&pod, &target.name, &container, previous)?;
    let address = agent_address(api, node).await?;
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let mut path =
        format!("/containerLogs/{namespace}/{}/{container}?containerID={instance}", target.name);
    if let Some(raw) = parts.uri.query().filter(|q| !q.is_empty()) {
        path.push('&');
        path.push_str(raw);
    }
    let response = api.nodes.send(node, address, &Method::GET, &path, &HeaderMap::new()).await?;
    Ok(relay(response))
}

/// The request headers that negotiate an upgrade, passed on to the agent (never the
/// client's credentials).
const UPGRADE_HEADERS: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// The client's side of an upgraded connection, taken from the request before it is
/// dispatched so the handler of a streaming subresource can claim it.
#[derive(Clone, Default)]
pub struct ClientUpgrade(Arc<std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>>);

impl ClientUpgrade {
    pub fn new(upgrade: hyper::upgrade::OnUpgrade) -> ClientUpgrade {
        ClientUpgrade(Arc::new(std::sync::Mutex::new(Some(upgrade))))
    }

    pub(crate) fn take(&self) -> Option<hyper::upgrade::OnUpgrade> {
        self.0.lock().ok()?.take()
    }
}

/// Which streaming subresource a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Exec,
    Attach,
    PortForward,
}

/// `pods/<name>/exec`, `attach` and `portforward`: the request is sent on to the pod's agent
/// with its upgrade headers, and once the agent has switched protocols the client's
/// connection and the agent's are joined, so the client and the runtime speak their
/// streaming protocol end to end.
pub async fn stream<S: KvStore>(
    api: &Api<S>,
    parts: &http::request::Parts,
    target: &Target,
    query: &Query,
    kind: Stream,
) -> Result<Response<Body>, ApiError> {
    let pod = api.registry.get(target, true).await?.object;
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let mut path = match kind {
        Stream::Exec | Stream::Attach => {
            let container = log_container(&pod, &target.name, query.get("container"))?;
            let verb = if kind == Stream::Exec { "exec" } else { "attach" };
            format!("/{verb}/{namespace}/{}/{container}", target.name)
        }
        Stream::PortForward => format!("/portForward/{namespace}/{}", target.name),
    };
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {} does not have a host assigned",
            target.name
        )));
    }
    if let Some(raw) = parts.uri.query().filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(raw);
    }
    let mut headers = HeaderMap::new();
    for name in UPGRADE_HEADERS {
        let name = HeaderName::from_static(name);
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let address = agent_address(api, node).await?;
    let mut response = api.nodes.send(node, address, &parts.method, &path, &headers).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relay(response));
    }
    let client =
        parts.extensions.get::<ClientUpgrade>().and_then(ClientUpgrade::take).ok_or_else(|| {
            ApiError::BadRequest("the request does not ask for an upgrade".into())
        })?;
    splice(client, hyper::upgrade::on(&mut response));
    let mut switched = Response::new(Empty::new().boxed_unsync());
    *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *switched.headers_mut() = response.headers().clone();
    Ok(switched)
}

/// Joins the client's upgraded connection to the backend's once both have switched
/// protocols; the bytes flow both ways until either side closes.
pub(crate) fn splice(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
            }
            Err(err) => tracing::debug!(error = %err, "an upgrade failed"),
        }
    });
}

/// The agent's response with its status and content type, its body streamed until it ends
/// or the connection breaks.
fn relay(response: Response<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let chunks = body
        .into_data_stream()
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| std::future::ready(chunk.ok()))
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut relayed = Response::new(StreamBody::new(chunks).boxed_unsync());
    *relayed.status_mut() = parts.status;
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE) {
        relayed.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
    }
    relayed
}

/// Where the agent of `node` listens: its first InternalIP (else its first address) and its
/// daemon endpoint's port.
async fn agent_address<S: KvStore>(api: &Api<S>, node: &str) -> Result<SocketAddr, ApiError> {
    let nodes = api
        .registry
        .catalog
        .get("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("the nodes resource is not served".into()))?;
    let target = Target { resource: nodes, namespace: None, name: node.to_owned() };
    let object = api.registry.get(&target, true).await?.object;
    node_agent_address(&object).ok_or_else(|| {
        ApiError::Unavailable(format!("node {node} has no address its agent can be reached at"))
    })
}

/// Where a node's agent listens, from the Node object (None without a usable address).
pub(crate) fn node_agent_address(node: &Value) -> Option<SocketAddr> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let address_of = |kind: Option<&str>| {
        addresses
            .iter()
            .filter(|a| kind.is_none_or(|kind| a["type"] == kind))
            .find_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())
    };
    let ip = address_of(Some("InternalIP")).or_else(|| address_of(None))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_AGENT_PORT);
    Some(SocketAddr::new(ip, port))
}

fn container_names<'a>(pod: &'a Value, list: &str) -> Vec<&'a str> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|containers| containers.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

/// The container whose log is read, as kube-apiserver chooses it: the one asked for, which
/// must be in the pod, or the pod's only container.
fn log_container(pod: &Value, pod_name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let all: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| container_names(pod, list))
        .collect();
    if let Some(requested) = requested {
        return if all.contains(&requested) {
            Ok(requested.to_owned())
        } else {
            Err(ApiError::BadRequest(format!(
                "container {requested} is not valid for pod {pod_name}"
            )))
        };
    }
    match container_names(pod, "containers").as_slice() {
        [only] => Ok((*only).to_owned()),
        [] => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            all.join(" ")
        ))),
    }
}

/// The runtime's id of the container instance whose log is read, judged from the pod's
/// status as kubelet judges it: the running one, else the last that ran (a crash-looping
/// container's last run), or with `previous` the one before the current. The errors are
/// kubelet's.
fn log_instance(
    pod: &Value,
    pod_name: &str,
    container: &str,
    previous: bool,
) -> Result<String, ApiError> {
    let status = ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .filter_map(|list| pod.pointer(&format!("/status/{list}"))?.as_array())
        .flatten()
        .find(|s| s["name"] == container);
    let refuse = |what: &str| {
        ApiError::BadRequest(format!("container {container:?} in pod {pod_name:?} {what}"))
    };
    let Some(status) = status else {
        return Err(refuse("is not available"));
    };
    // `containerd://<id>` → `<id>`.
    let id = |state: &Value| {
        let id = state["containerID"].as_str().unwrap_or_default();
        Some(id.split_once("://").map_or(id, |(_, id)| id).to_owned()).filter(|id| !id.is_empty())
    };
    let (state, last) = (&status["state"], &status["lastState"]["terminated"]);
    if previous {
        return id(last).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))
        });
    }
    if state["running"].is_object() {
        return id(status).ok_or_else(|| refuse("is waiting to start - no logs yet"));
    }
    if state["terminated"].is_object() || last.is_object() {
        return id(&state["terminated"])
            .or_else(|| id(last))
            .ok_or_else(|| refuse("is terminated"));
    }
    Err(match state["waiting"]["reason"].as_str() {
        Some("ErrImagePull") => refuse("is waiting to start: image can't be pulled"),
        Some("ImagePullBackOff") => refuse("is waiting to start: trying and failing to pull image"),
        Some(reason) => refuse(&format!("is waiting to start: {reason}")),
        None => refuse("is waiting to start - no logs yet"),
    })
}

#[cfg(test)]
mod tests;
