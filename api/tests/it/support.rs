//! The test harness: an API server over an in-memory store with its own certificate authority,
//! and a small HTTPS client that speaks as the administrator, as a bearer-token user or as
//! nobody.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use flotilla_api::allocate::ServiceRanges;
use flotilla_api::{ApiConfig, ApiServer};
use flotilla_store::mvcc::MemBackend;
use flotilla_store::pki::{CertRequest, ClientAuth, ClusterPki, TlsFiles};
use flotilla_store::LocalStore;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// How long any single step of a test may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// The bearer token of `bob`, a user with no roles until a test binds one.
pub const BOB_TOKEN: &str = "bob-secret-token";

/// A running API server over its own in-memory store.
pub struct TestServer {
    server: ApiServer,
    /// The store the server serves; tests use it to compact history.
    pub store: LocalStore,
    pki: ClusterPki,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server and waits until `/readyz` answers 200.
    pub async fn start() -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let pki = ClusterPki::create(&dir.path().join("pki"))?;
        let serving = pki.issue_master("master-0", &["127.0.0.1", "localhost"])?;
        let token_file = dir.path().join("tokens.csv");
        std::fs::write(&token_file, format!("{BOB_TOKEN},bob,uid-bob\n"))?;
        let store = LocalStore::open_local(Box::new(MemBackend::default()))?;
        let config = ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            advertise: "127.0.0.1:6443".into(),
            ca_file: pki.ca.cert.clone(),
            cert_file: serving.cert,
            key_file: serving.key,
            token_file: Some(token_file),
            service_account_key_file: pki.service_account_key.clone(),
            ranges: ServiceRanges::default(),
            // Tests compact the store themselves when they need to.
            compaction_interval: Duration::from_secs(3600),
            // The tests' backends listen on loopback.
            proxy_loopback: true,
        };
        let server = ApiServer::start(store.clone(), config).await?;
        let test = TestServer { server, store, pki, dir };
        let anonymous = test.anonymous()?;
        wait_until("the server is ready", || async {
            Ok(anonymous.get("/readyz").await?.status == StatusCode::OK)
        })
        .await?;
        Ok(test)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A client with the administrator's certificate (O `system:masters`).
    pub fn admin(&self) -> anyhow::Result<Client> {
        let identity = (self.pki.admin.cert.clone(), self.pki.admin.key.clone());
        Client::new(self.addr(), &self.pki.ca.cert, Some(identity), None)
    }

    /// A client with a certificate from the cluster CA naming `user` in `groups`.
    pub fn certificate_user(&self, user: &str, groups: &[&str]) -> anyhow::Result<Client> {
        let request = CertRequest {
            common_name: user,
            organizations: groups,
            hosts: &[],
            server: false,
            client: true,
        };
        let files = self.pki.authority.issue(&request, &self.pki.dir, user)?;
        Client::new(self.addr(), &self.pki.ca.cert, Some((files.cert, files.key)), None)
    }

    /// A client whose certificate says `system:masters` but comes from another CA.
    pub fn impostor(&self) -> anyhow::Result<Client> {
        let other = ClusterPki::create(&self.dir.path().join("other-pki"))?;
        let identity = (other.admin.cert.clone(), other.admin.key.clone());
        Client::new(self.addr(), &self.pki.ca.cert, Some(identity), None)
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> anyhow::Result<Client> {
        Client::new(self.addr(), &self.pki.ca.cert, None, None)
    }

    /// A client that sends `Authorization: Bearer <token>`.
    pub fn bearer(&self, token: &str) -> anyhow::Result<Client> {
        Client::new(self.addr(), &self.pki.ca.cert, None, Some(token.to_string()))
    }

    /// The TLS settings of a node agent's API on 127.0.0.1: a certificate from the cluster
    /// CA, and client certificates required, as the agent requires them.
    pub fn agent_tls(&self, node: &str) -> anyhow::Result<rustls::ServerConfig> {
        let files = self.pki.issue_agent(node, &["127.0.0.1"])?;
        let tls = TlsFiles { ca: &self.pki.ca.cert, cert: &files.cert, key: &files.key };
        Ok(tls.server_config(ClientAuth::Required)?)
    }

    /// Stops the server, then the store.
    pub async fn stop(self) {
        self.server.shutdown().await;
        self.store.shutdown().await;
    }
}

/// Polls `condition` until it holds, failing after [`STEP`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if condition().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A response: status, headers, the raw body and the body as JSON (Null when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Value,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `metadata.resourceVersion` as a number.
    pub fn resource_version(&self) -> i64 {
        resource_version(&self.json)
    }

    /// Fails with the body when the status is not `expected`.
    pub fn expect(self, expected: StatusCode) -> anyhow::Result<Reply> {
        if self.status != expected {
            bail!("expected {expected}, got {}: {}", self.status, self.text());
        }
        Ok(self)
    }
}

/// An object's `metadata.resourceVersion` as a number (0 when absent).
pub fn resource_version(object: &Value) -> i64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// The names of a list's items.
pub fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.pointer("/metadata/name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An HTTPS client of one server; every request uses a new connection.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    /// TLS settings without ALPN; each connection picks its protocol.
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl Client {
    fn new(
        addr: SocketAddr,
        ca: &Path,
        identity: Option<(PathBuf, PathBuf)>,
        token: Option<String>,
    ) -> anyhow::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Client { addr, tls: Arc::new(config), token })
    }

    /// Opens a TLS connection offering one application protocol.
    async fn connect(
        &self,
        alpn: &[u8],
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await;
        let tls = tls.context("TLS handshake")?;
        let negotiated = tls.get_ref().1.alpn_protocol();
        if negotiated != Some(alpn) {
            bail!("the server chose {negotiated:?} instead of {:?}", String::from_utf8_lossy(alpn));
        }
        Ok(tls)
    }

    /// Opens one HTTP/2 connection, as kubectl and client-go use, for many requests.
    pub async fn http2(&self) -> anyhow::Result<Http2> {
        let tls = self.connect(b"h2").await?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Http2 {
            sender,
            base: format!("https://{}", self.addr),
            token: self.token.clone(),
            driver,
        })
    }

    /// Opens a connection and sends one request; returns the response head and its body
    /// stream, with the task driving the connection.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<(http::Response<Incoming>, JoinHandle<()>)> {
        let tls = self.connect(b"http/1.1").await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.addr.to_string());
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let response = tokio::time::timeout(STEP, sender.send_request(request))
            .await
            .map_err(|_| anyhow!("no response to a request within {STEP:?}"))??;
        Ok((response, driver))
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let (response, driver) = self.send(method, path, headers, body.into()).await?;
        let reply = read_reply(response).await;
        driver.abort();
        reply
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn get_as(&self, path: &str, accept: &str) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, &[("accept", accept)], Bytes::new()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.request(Method::POST, path, &[("content-type", "application/json")], body.to_string())
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.request(Method::PUT, path, &[("content-type", "application/json")], body.to_string())
            .await
    }

    pub async fn patch(
        &self,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> anyhow::Result<Reply> {
        self.request(Method::PATCH, path, &[("content-type", content_type)], body.to_string()).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        self.request(Method::DELETE, path, &[], Bytes::new()).await
    }

    pub async fn delete_with(&self, path: &str, options: &Value) -> anyhow::Result<Reply> {
        let headers = [("content-type", "application/json")];
        self.request(Method::DELETE, path, &headers, options.to_string()).await
    }

    /// Sends `GET path` asking to switch to `protocol`. Returns the response status, and the
    /// switched connection when the server answered 101.
    pub async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
    ) -> anyhow::Result<(StatusCode, Option<TokioIo<hyper::upgrade::Upgraded>>)> {
        let headers = [("connection", "Upgrade"), ("upgrade", protocol)];
        let (response, driver) = self.send(Method::GET, path, &headers, Bytes::new()).await?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            driver.abort();
            return Ok((status, None));
        }
        let upgraded = tokio::time::timeout(STEP, hyper::upgrade::on(response))
            .await
            .map_err(|_| anyhow!("the connection did not switch within {STEP:?}"))??;
        Ok((status, Some(TokioIo::new(upgraded))))
    }

    /// Starts a watch (`path` carries `watch=true`) and returns its event stream once the
    /// response head arrived with 200.
    pub async fn watch(&self, path: &str) -> anyhow::Result<Watch> {
        let (response, driver) = self.send(Method::GET, path, &[], Bytes::new()).await?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            driver.abort();
            bail!("watch {path} answered {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(Watch { body: response.into_body(), buffer: Vec::new(), driver: Some(driver) })
    }
}

/// Reads a whole response.
async fn read_reply(response: http::Response<Incoming>) -> anyhow::Result<Reply> {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .map_err(|_| anyhow!("the response body did not end within {STEP:?}"))??
        .to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Reply { status: parts.status, headers: parts.headers, body, json })
}

/// One HTTP/2 connection; requests on it run concurrently as streams.
pub struct Http2 {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    base: String,
    token: Option<String>,
    driver: JoinHandle<()>,
}

impl Http2 {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut sender = self.sender.clone();
        let response =
            tokio::time::timeout(STEP, sender.send_request(request.body(Full::new(body))?))
                .await
                .map_err(|_| anyhow!("no response to a request within {STEP:?}"))??;
        Ok(response)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        read_reply(self.send(Method::GET, path, None).await?).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        read_reply(self.send(Method::POST, path, Some(body)).await?).await
    }

    /// Starts a watch on a stream of this connection.
    pub async fn watch(&self, path: &str) -> anyhow::Result<Watch> {
        let response = self.send(Method::GET, path, None).await?;
        if response.status() != StatusCode::OK {
            let reply = read_reply(response).await?;
            bail!("watch {path} answered {}: {}", reply.status, reply.text());
        }
        Ok(Watch { body: response.into_body(), buffer: Vec::new(), driver: None })
    }
}

impl Drop for Http2 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The event stream of a watch: one JSON document per line.
pub struct Watch {
    body: Incoming,
    buffer: Vec<u8>,
    /// The task driving an HTTP/1.1 watch's own connection.
    driver: Option<JoinHandle<()>>,
}

impl Watch {
    /// The next event, or None when the server ended the stream; fails after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> anyhow::Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let event = serde_json::from_slice(&line)
                    .with_context(|| format!("event {:?}", String::from_utf8_lossy(&line)))?;
                return Ok(Some(event));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .map_err(|_| anyhow!("no watch event within {timeout:?}"))?;
            match frame {
                None => {
                    if !self.buffer.is_empty() {
                        bail!("the stream ended inside an event");
                    }
                    return Ok(None);
                }
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event, which must come within [`STEP`].
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        self.next_within(STEP).await?.ok_or_else(|| anyhow!("the watch ended"))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(driver) = &self.driver {
            driver.abort();
        }
    }
}

/// The collection path of ConfigMaps in `namespace`.
pub fn configmaps(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps")
}

/// A ConfigMap with one data key.
pub fn configmap(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": { "key": "value" },
    })
}

/// A Deployment of `app` with the given (name, image) containers.
pub fn deployment(name: &str, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, image)| serde_json::json!({ "name": name, "image": image }))
        .collect();
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": containers },
            },
        },
    })
}

/// A pod with one container.
pub fn pod(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "main", "image": "nginx:1.27" }] },
    })
}

/// Creates a namespace; it accepts content as soon as the write returns.
pub async fn create_namespace(admin: &Client, name: &str) -> anyhow::Result<Reply> {
    let body = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
    admin.post("/api/v1/namespaces", &body).await?.expect(StatusCode::CREATED)
}

/// Decodes unpadded base64url text (a part of a JWT) as UTF-8.
pub fn decode_base64url(text: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text)?;
    Ok(String::from_utf8(bytes)?)
}
