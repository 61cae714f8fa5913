//! The `proxy` subresources: requests to pods, services and nodes go through the API server
//! to a small HTTP server each test starts on 127.0.0.1, which answers with what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::support::{wait_until, Client, TestServer, BOB_TOKEN};

const PODS: &str = "/api/v1/namespaces/default/pods";
const SERVICES: &str = "/api/v1/namespaces/default/services";

/// An HTTP server standing in for a pod, a service endpoint or an agent: it answers every
/// request with a JSON echo of its method, URI, headers and body, except for a few paths
/// that answer redirects, an error, CORS headers, a stream in two parts or an upgrade to an
/// echoing stream.
struct Backend {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// Lets `/stream` send its second part.
    release: Arc<Notify>,
}

impl Backend {
    async fn start(tls: Option<rustls::ServerConfig>) -> anyhow::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = tls.map(|config| TlsAcceptor::from(Arc::new(config)));
        let release = Arc::new(Notify::new());
        let released = release.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, release) = (tls.clone(), released.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(request, addr, release.clone()));
                    let builder = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(stream) => {
                                builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            builder
                                .serve_connection(TokioIo::new(tcp), service)
                                .with_upgrades()
                                .await
                        }
                    };
                });
            }
        });
        Ok(Backend { addr, task, release })
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BackendBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> BackendBody {
    Full::new(bytes.into()).boxed_unsync()
}

async fn answer(
    mut request: Request<Incoming>,
    addr: SocketAddr,
    release: Arc<Notify>,
) -> Result<Response<BackendBody>, Infallible> {
    let path = request.uri().path().to_string();
    let mut response = Response::new(full(Bytes::new()));
    match path.as_str() {
        "/stream" => {
            let parts = futures::stream::unfold(0, move |step| {
                let release = release.clone();
                async move {
                    let part = match step {
                        0 => r#"{"part":1}"#,
                        1 => {
                            release.notified().await;
                            r#"{"part":2}"#
                        }
                        _ => return None,
                    };
                    let frame = Frame::data(Bytes::from(format!("{part}\n")));
                    Some((Ok::<_, Infallible>(frame), step + 1))
                }
            });
            *response.body_mut() = StreamBody::new(parts).boxed_unsync();
            return Ok(response);
        }
        "/redirect-absolute" | "/redirect-relative" => {
            let location = if path == "/redirect-absolute" {
                format!("http://{addr}/landing?from=backend")
            } else {
                "/landing?from=backend".to_string()
            };
            *response.status_mut() = StatusCode::FOUND;
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert("location", location);
            }
            return Ok(response);
        }
        "/teapot" => {
            *response.status_mut() = StatusCode::IM_A_TEAPOT;
            *response.body_mut() = full(Bytes::from_static(b"short and stout"));
            return Ok(response);
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut stream = TokioIo::new(upgraded);
                    let mut buffer = [0u8; 64];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response.headers_mut().insert("connection", HeaderValue::from_static("Upgrade"));
            response.headers_mut().insert("upgrade", HeaderValue::from_static("echo"));
            return Ok(response);
        }
        _ => {}
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or("?"))))
        .collect();
    let echo = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    *response.body_mut() = full(echo.to_string());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if path == "/cors" {
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    }
    Ok(response)
}

/// Creates pod `name` with one container whose port `http` is `port`, and gives it the IP
/// 127.0.0.1 as its node would.
async fn running_pod(admin: &Client, name: &str, port: u16) -> anyhow::Result<()> {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": { "containers": [{
            "name": "app",
            "image": "nginx:1.27",
            "ports": [{ "name": "http", "containerPort": port }],
        }] },
    });
    admin.post(PODS, &pod).await?.expect(StatusCode::CREATED)?;
    let status = json!({ "status": { "podIP": "127.0.0.1", "podIPs": [{ "ip": "127.0.0.1" }] } });
    admin
        .patch(&format!("{PODS}/{name}/status"), "application/merge-patch+json", &status)
        .await?
        .expect(StatusCode::OK)?;
    Ok(())
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name].as_str()
}

#[tokio::test]
async fn pods_are_proxied_with_path_query_body_and_headers() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let backend = Backend::start(None).await?;
    let port = backend.port();
    running_pod(&admin, "web-0", port).await?;
    let proxy = format!("{PODS}/web-0:{port}/proxy");

    // --- GET with a path and a query, on the port the id names
    let reply = admin.get(&format!("{proxy}/healthz?verbose=1&q=a%20b")).await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(reply.json["method"], "GET");
    assert_eq!(reply.json["uri"], "/healthz?verbose=1&q=a%20b");
    assert_eq!(header(&reply.json, "x-forwarded-uri"), Some(format!("{proxy}/healthz").as_str()));
    assert_eq!(header(&reply.json, "x-forwarded-for"), Some("127.0.0.1"));

    // --- no port: the first container port; a port name: that container port
    let reply = admin.get(&format!("{PODS}/web-0/proxy/default")).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/default");
    let reply =
        admin.get(&format!("{PODS}/web-0:http/proxy/named/")).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/named/");
    let reply = admin.get(&format!("{PODS}/web-0%3Ahttp/proxy/escaped")).await?;
    assert_eq!(reply.expect(StatusCode::OK)?.json["uri"], "/escaped");

    // --- POST carries its body and content type
    let headers = [("content-type", "text/plain")];
    let reply = admin
        .request(Method::POST, &format!("{proxy}/submit"), &headers, "hello through the proxy")
        .await?
        .expect(StatusCode::OK)?;
    assert_eq!(reply.json["method"], "POST");
    assert_eq!(reply.json["body"], "hello through the proxy");
    assert_eq!(header(&reply.json, "content-type"), Some("text/plain"));

    // --- every method goes through
    for method in [Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS] {
        let reply = admin.request(method.clone(), &format!("{proxy}/x"), &[], "").await?;
        assert_eq!(reply.expect(StatusCode::OK)?.json["method"], method.as_str());
    }
    let reply = admin.request(Method::HEAD, &format!("{proxy}/x"), &[], "").await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());

    // --- the client's credentials stay behind; its other headers go through
    let headers = [
        ("authorization", "Basic c2VjcmV0"),
        ("impersonate-user", "mallory"),
        ("impersonate-group", "system:masters"),
        ("x-custom", "kept"),
        // A proxied request accepts whatever the backend serves.
        ("accept", "image/png"),
    ];
    let reply = admin.request(Method::GET, &format!("{proxy}/private"), &headers, "").await?;
    let echo = reply.expect(StatusCode::OK)?.json;
    assert_eq!(header(&echo, "authorization"), None, "{echo}");
    assert_eq!(header(&echo, "impersonate-user"), None, "{echo}");
    assert_eq!(header(&echo, "impersonate-group"), None, "{echo}");
    assert_eq!(header(&echo, "x-custom"), Some("kept"));
    assert_eq!(header(&echo, "accept"), Some("image/png"));

    // --- the backend's errors are passed on as they are, not as Status objects
    let reply = admin.get(&format!("{proxy}/teapot")).await?;
    assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(reply.text(), "short and stout");

    // --- redirects come back through the proxy; CORS headers are dropped
    for path in ["redirect-absolute", "redirect-relative"] {
        let reply = admin.get(&format!("{proxy}/{path}")).await?;
        assert_eq!(reply.status, StatusCode::FOUND, "{path}");
        let location = reply.headers.get("location").and_then(|v| v.to_str().ok());
        assert_eq!(location, Some(format!("{proxy}/landing?from=backend").as_str()), "{path}");
    }
    let reply = admin.get(&format!("{proxy}/cors")).await?.expect(StatusCode::OK)?;
    assert!(reply.headers.get("access-control-allow-origin").is_none());

    // --- a response streams: its first part arrives while the backend holds the second
    // (and `watch=true` is the backend's query, not a watch of the pod)
    let mut stream = admin.watch(&format!("{proxy}/stream?watch=true")).await?;
    assert_eq!(stream.next().await?, json!({ "part": 1 }));
    backend.release.notify_one();
    assert_eq!(stream.next().await?, json!({ "part": 2 }));
    assert_eq!(stream.next_within(crate::support::STEP).await?, None);

    // --- the proxy root without a slash redirects to it with one (for GET), else is `/`
    let reply = admin.get(&format!("{proxy}?page=2")).await?;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    let location = reply.headers.get("location").and_then(|v| v.to_str().ok());
    assert_eq!(location, Some(format!("{proxy}/?page=2").as_str()));
    let reply = admin.request(Method::POST, &proxy, &[], "root").await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/");

    // --- kubectl's HTTP/2 connection works the same way
    let http2 = admin.http2().await?;
    let reply = http2.get(&format!("{proxy}/over-h2?x=1")).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/over-h2?x=1");
    assert_eq!(header(&reply.json, "host"), Some(server.addr().to_string().as_str()));

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn proxy_failures_are_kubernetes_statuses() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let backend = Backend::start(None).await?;
    running_pod(&admin, "web-0", backend.port()).await?;
    let status = |reply: &crate::support::Reply| {
        (reply.status.as_u16(), reply.json["reason"].clone(), reply.json["message"].clone())
    };

    // --- no such pod
    let reply = admin.get(&format!("{PODS}/nope:80/proxy/")).await?;
    assert_eq!(status(&reply), (404, json!("NotFound"), json!(r#"pods "nope" not found"#)));
    assert_eq!(reply.json["kind"], "Status");

    // --- a pod without an IP yet: kube-apiserver's 400
    admin.post(PODS, &crate::support::pod("pending")).await?.expect(StatusCode::CREATED)?;
    let reply = admin.get(&format!("{PODS}/pending/proxy/")).await?;
    assert_eq!(status(&reply), (400, json!("BadRequest"), json!("address not allowed")));

    // --- ids kube refuses, and a port no container names
    let reply = admin.get(&format!("{PODS}/a:b:c:d/proxy/")).await?;
    assert_eq!(
        status(&reply),
        (400, json!("BadRequest"), json!(r#"invalid pod request "a:b:c:d""#))
    );
    let reply = admin.get(&format!("{PODS}/web-0:grpc/proxy/")).await?;
    assert_eq!(
        status(&reply),
        (400, json!("BadRequest"), json!(r#"pod "web-0" has no container port named "grpc""#))
    );

    // --- nothing listens on the port: 503
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let reply = admin.get(&format!("{PODS}/web-0:{closed}/proxy/")).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json["reason"], "ServiceUnavailable");
    let message = reply.json["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("error trying to reach service: dial tcp 127.0.0.1:{closed}")),
        "{message}"
    );

    // --- resources without a proxy subresource
    let reply = admin.get("/api/v1/namespaces/default/configmaps/x/proxy/").await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn https_pods_are_proxied_without_checking_their_certificate() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    // A self-signed certificate that names neither the pod nor its IP.
    let certified = rcgen::generate_simple_self_signed(vec!["somewhere.example".to_string()])?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())?;
    let backend = Backend::start(Some(tls)).await?;
    running_pod(&admin, "secure-0", backend.port()).await?;

    let path = format!("{PODS}/https:secure-0:{}/proxy/secret?x=1", backend.port());
    let reply = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/secret?x=1");

    // --- the same port over plain HTTP gets no HTTP answer
    let reply = admin.get(&format!("{PODS}/http:secure-0:{}/proxy/", backend.port())).await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());

    server.stop().await;
    Ok(())
}

/// An EndpointSlice of `service` with one endpoint at 127.0.0.1 for `pod`.
fn endpoint_slice(service: &str, port: u16, pod: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-abcde"),
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
        "endpoints": [{
            "addresses": ["127.0.0.1"],
            "conditions": { "ready": ready },
            "targetRef": { "kind": "Pod", "namespace": "default", "name": pod },
        }],
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name },
        "spec": {
            "selector": { "app": name },
            "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
        },
    })
}

#[tokio::test]
async fn services_are_proxied_to_a_ready_endpoint_of_their_port() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let backend = Backend::start(None).await?;
    running_pod(&admin, "web-0", backend.port()).await?;
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    for (name, pod, ready) in
        [("web", "web-0", true), ("stale", "gone-0", true), ("starting", "web-0", false)]
    {
        admin.post(SERVICES, &service(name)).await?.expect(StatusCode::CREATED)?;
        let slice = endpoint_slice(name, backend.port(), pod, ready);
        admin.post(slices, &slice).await?.expect(StatusCode::CREATED)?;
    }
    admin.post(SERVICES, &service("empty")).await?.expect(StatusCode::CREATED)?;

    // --- by port name, and by port number (which stands for its name)
    let reply = admin.get(&format!("{SERVICES}/web:http/proxy/hello?x=1")).await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/hello?x=1");
    let reply = admin.get(&format!("{SERVICES}/web:80/proxy/hello")).await?;
    assert_eq!(reply.expect(StatusCode::OK)?.json["uri"], "/hello");
    let reply = admin
        .request(Method::POST, &format!("{SERVICES}/web:http/proxy/in"), &[], "payload")
        .await?
        .expect(StatusCode::OK)?;
    assert_eq!(reply.json["body"], "payload");

    // --- what kube answers 503 for
    let cases = [
        ("web:81", r#"no service port 81 found for service "web""#),
        // The only port is named, so a request without a port name matches none.
        ("web", r#"no endpoints available for service "web""#),
        ("empty:http", r#"no endpoints available for service "empty""#),
        // The endpoint's pod does not exist: the API server does not go there.
        ("stale:http", r#"no endpoints available for service "stale:http""#),
        ("starting:http", r#"no endpoints available for service "starting:http""#),
    ];
    for (id, message) in cases {
        let reply = admin.get(&format!("{SERVICES}/{id}/proxy/")).await?;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{id}: {}", reply.text());
        assert_eq!(reply.json["reason"], "ServiceUnavailable", "{id}");
        assert_eq!(reply.json["message"], message, "{id}");
    }
    let reply = admin.get(&format!("{SERVICES}/nope:http/proxy/")).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json["message"], r#"services "nope" not found"#);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn proxying_needs_the_proxy_subresource_and_keeps_tokens_from_backends() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let bob = server.bearer(BOB_TOKEN)?;
    let backend = Backend::start(None).await?;
    let port = backend.port();
    running_pod(&admin, "web-0", port).await?;
    let proxy = format!("{PODS}/web-0:{port}/proxy/whoami");

    // --- bob holds no role
    let reply = bob.get(&proxy).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json["message"],
        format!(
            r#"pods "web-0:{port}" is forbidden: User "bob" cannot get resource "pods/proxy" in API group "" in the namespace "default""#
        )
    );

    // --- a role that grants get and create on pods/proxy, and nothing else
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": "proxier" },
        "rules": [{ "apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get", "create"] }],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "bob-proxier" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxier" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob" }],
    });
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/default";
    admin.post(&format!("{rbac}/roles"), &role).await?.expect(StatusCode::CREATED)?;
    admin.post(&format!("{rbac}/rolebindings"), &binding).await?.expect(StatusCode::CREATED)?;
    wait_until("bob may proxy", || async { Ok(bob.get(&proxy).await?.status == StatusCode::OK) })
        .await?;

    // --- bob's bearer token authenticated him and went no further
    let echo = bob.get(&proxy).await?.expect(StatusCode::OK)?.json;
    assert_eq!(header(&echo, "authorization"), None, "{echo}");
    let reply = bob.request(Method::POST, &proxy, &[], "posted").await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["body"], "posted");

    // --- DELETE is the delete verb, which the role does not grant; nor the pod itself
    let reply = bob.delete(&proxy).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let message = reply.json["message"].as_str().unwrap_or_default();
    assert!(message.contains(r#"cannot delete resource "pods/proxy""#), "{message}");
    assert_eq!(bob.get(&format!("{PODS}/web-0")).await?.status, StatusCode::FORBIDDEN);
    let services = format!("{SERVICES}/web:http/proxy/");
    assert_eq!(bob.get(&services).await?.status, StatusCode::FORBIDDEN);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn nodes_are_proxied_to_their_agent() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    // The agent's API: the cluster CA's certificate, and a client certificate required.
    let agent = Backend::start(Some(server.agent_tls("n1")?)).await?;
    let other = Backend::start(None).await?;
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": "n1" },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": agent.port() } },
        },
    });
    admin.post("/api/v1/nodes", &node).await?.expect(StatusCode::CREATED)?;

    // --- no port, or the agent's: the agent, over the masters' mutual TLS
    let reply = admin.get("/api/v1/nodes/n1/proxy/healthz").await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/healthz");
    let path = format!("/api/v1/nodes/n1:{}/proxy/containerLogs/default/web-0/app", agent.port());
    let reply = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/containerLogs/default/web-0/app");

    // --- another port of the node: plain HTTP
    let path = format!("/api/v1/nodes/n1:{}/proxy/metrics", other.port());
    let reply = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["uri"], "/metrics");

    let reply = admin.get("/api/v1/nodes/n2/proxy/healthz").await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json["message"], r#"nodes "n2" not found"#);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn upgrades_are_joined_through_the_proxy() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let backend = Backend::start(None).await?;
    running_pod(&admin, "web-0", backend.port()).await?;

    // --- the backend switches protocols and echoes what it is sent
    let path = format!("{PODS}/web-0/proxy/ws");
    let (status, stream) = admin.upgrade(&path, "echo").await?;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    let mut stream = stream.ok_or_else(|| anyhow::anyhow!("no upgraded stream"))?;
    stream.write_all(b"ping").await?;
    let mut echoed = [0u8; 4];
    tokio::time::timeout(crate::support::STEP, stream.read_exact(&mut echoed)).await??;
    assert_eq!(&echoed, b"ping");

    // --- a backend that does not switch answers an upgrade with an error
    let (status, stream) = admin.upgrade(&format!("{PODS}/web-0/proxy/plain"), "echo").await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(stream.is_none());

    server.stop().await;
    Ok(())
}
