//! What Flotilla's API benchmarks share: HTTP/2 connections to the masters' APIs with the
//! administrator's client certificate, closed- and open-loop request drivers, and tallies of
//! latencies and failures.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsConnector;

/// How long a request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const JSON: (&str, &str) = ("content-type", "application/json");
pub const MERGE_PATCH: (&str, &str) = ("content-type", "application/merge-patch+json");

/// Why one request failed; `kind` groups failures in the error summary.
#[derive(Debug)]
pub enum RequestError {
    Status {
        method: Method,
        status: StatusCode,
        reason: String,
        message: String,
    },
    Timeout {
        method: Method,
        after: Duration,
    },
    Transport {
        method: Method,
        message: String,
    },
    /// A 2xx answer whose content is wrong (unparsable, wrong item count, missed events).
    Invalid {
        what: &'static str,
        detail: String,
    },
}

impl RequestError {
    pub fn kind(&self) -> String {
        match self {
            RequestError::Status { method, status, reason, .. } => {
                format!("{method} {status} {reason}")
            }
            RequestError::Timeout { method, after } => format!("{method} no answer in {after:?}"),
            RequestError::Transport { method, .. } => format!("{method} transport error"),
            RequestError::Invalid { what, .. } => what.to_string(),
        }
    }

    pub fn detail(&self) -> String {
        match self {
            RequestError::Status { message, .. } => message.clone(),
            RequestError::Timeout { .. } => String::new(),
            RequestError::Transport { message, .. } => message.clone(),
            RequestError::Invalid { detail, .. } => detail.clone(),
        }
    }
}

/// Failed requests by kind: how many, and the first one's detail.
#[derive(Default)]
pub struct Tally {
    by_kind: BTreeMap<String, (u64, String)>,
}

impl Tally {
    pub fn add(&mut self, error: &RequestError) {
        self.by_kind.entry(error.kind()).or_insert_with(|| (0, error.detail())).0 += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        for (kind, (count, detail)) in other.by_kind {
            self.by_kind.entry(kind).or_insert((0, detail)).0 += count;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().map(|(count, _)| count).sum()
    }

    pub fn lines(&self) -> Vec<String> {
        self.by_kind
            .iter()
            .map(|(kind, (count, detail))| format!("{count:>8} x {kind}: {detail}"))
            .collect()
    }
}

/// What a workload measured: latencies of the successful requests, failures, wall time.
#[derive(Default)]
pub struct Measured {
    pub latencies: Vec<Duration>,
    pub errors: Tally,
    pub elapsed: Duration,
}

impl Measured {
    pub fn record<T>(&mut self, outcome: &Result<T, RequestError>, latency: Duration) {
        match outcome {
            Ok(_) => self.latencies.push(latency),
            Err(e) => self.errors.add(e),
        }
    }

    pub fn merge(&mut self, other: Measured) {
        self.latencies.extend(other.latencies);
        self.errors.merge(other.errors);
    }
}

/// Returns the nearest-rank `q` quantile of sorted samples (zero when there are none).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Returns a pseudo-random number below `bound` for `n` (SplitMix64), the same on every run.
pub fn spread(n: usize, bound: usize) -> usize {
    let mut z = (n as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % bound as u64) as usize
}

pub fn unix_nanos(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Aborts the task driving a connection when the last handle to it drops.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/2 connection to one master; clones share it, each request is a stream.
#[derive(Clone)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    base: Arc<str>,
    _driver: Arc<AbortOnDrop>,
}

impl Connection {
    /// Sends a request; answers other than 2xx are errors carrying the Status reason.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response<Incoming>, RequestError> {
        let transport = |method: &Method, e: &dyn std::fmt::Display| RequestError::Transport {
            method: method.clone(),
            message: e.to_string(),
        };
        let mut request =
            Request::builder().method(method.clone()).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| transport(&method, &e))?;
        let response =
            self.sender.clone().send_request(request).await.map_err(|e| transport(&method, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = match parsed["message"].as_str() {
            Some(message) => message.to_string(),
            None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        };
        let reason = parsed["reason"].as_str().unwrap_or_default().to_string();
        Err(RequestError::Status { method, status, reason, message })
    }

    /// Sends a request and reads the whole answer, all within `timeout`.
    pub async fn call_within(
        &self,
        timeout: Duration,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Bytes, RequestError> {
        let exchange = async {
            let response = self.send(method.clone(), path, headers, body).await?;
            let body = response.into_body().collect().await.map_err(|e| {
                RequestError::Transport { method: method.clone(), message: e.to_string() }
            })?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(RequestError::Timeout { method: method.clone(), after: timeout }))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Bytes, RequestError> {
        self.call_within(REQUEST_TIMEOUT, method, path, headers, body).await
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let body = self.call(Method::GET, path, &[], Bytes::new()).await.map_err(describe)?;
        Ok(serde_json::from_slice(&body)?)
    }

    pub async fn create(&self, path: &str, object: &Value) -> Result<(), RequestError> {
        let body = Bytes::from(object.to_string());
        self.call(Method::POST, path, &[JSON], body).await.map(drop)
    }
}

pub fn describe(error: RequestError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", error.kind(), error.detail())
}

/// Opens connections to the masters' APIs as the administrator.
pub struct Dialer {
    urls: Vec<String>,
    tls: TlsConnector,
}

impl Dialer {
    /// Reads the TLS material the kubeconfig `flotilla up` wrote names.
    pub fn new(urls: Vec<String>, kubeconfig: &Path) -> anyhow::Result<Dialer> {
        let text = std::fs::read_to_string(kubeconfig)
            .with_context(|| kubeconfig.display().to_string())?;
        let field = |name: &str| -> anyhow::Result<PathBuf> {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(name))
                .map(|value| PathBuf::from(value.trim()))
                .with_context(|| format!("the kubeconfig has no {name}"))
        };
        let (ca, cert, key) = (
            field("certificate-authority:")?,
            field("client-certificate:")?,
            field("client-key:")?,
        );
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca)? {
            roots.add(cert?)?;
        }
        let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&key)?)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Dialer { urls, tls: TlsConnector::from(Arc::new(config)) })
    }

    /// Dials every master of `cluster` and waits until each answers `/readyz`.
    pub async fn ready(cluster: &crate::Cluster) -> anyhow::Result<Dialer> {
        let urls =
            cluster.members.iter().map(|m| m.api_url()).collect::<anyhow::Result<Vec<_>>>()?;
        let dialer = Dialer::new(urls, &cluster.kubeconfig())?;
        for master in 0..dialer.urls.len() {
            crate::wait_until(Duration::from_secs(30), "the API to be ready", || async {
                match dialer.connect(master).await {
                    Ok(connection) => {
                        connection.call(Method::GET, "/readyz", &[], Bytes::new()).await.is_ok()
                    }
                    Err(_) => false,
                }
            })
            .await?;
        }
        Ok(dialer)
    }

    /// Connects to master `index` modulo the number of masters.
    pub async fn connect(&self, index: usize) -> anyhow::Result<Connection> {
        let url = &self.urls[index % self.urls.len()];
        let addr: SocketAddr = url.strip_prefix("https://").unwrap_or(url).parse()?;
        let tcp = TcpStream::connect(addr).await.with_context(|| url.clone())?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(ServerName::IpAddress(addr.ip().into()), tcp).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("{url} did not choose HTTP/2");
        }
        // Windows as Go's HTTP/2 transport (client-go) sets them.
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(1 << 30)
            .handshake(TokioIo::new(tls))
            .await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, base: url.as_str().into(), _driver: Arc::new(AbortOnDrop(driver)) })
    }

    /// Opens `count` connections, spread evenly over the masters.
    pub async fn connections(&self, count: usize) -> anyhow::Result<Vec<Connection>> {
        let mut connections = Vec::with_capacity(count);
        for index in 0..count {
            connections.push(self.connect(index).await?);
        }
        Ok(connections)
    }
}

/// When a closed loop stops: at a deadline, or once operations `0..count` were sent.
#[derive(Clone, Copy)]
pub enum Until {
    Deadline(Instant),
    Count(usize),
}

/// Runs one closed-loop client per connection: each sends its next request when the previous
/// answered. Operation `n` is `op(connection, n)`; client `c` sends `c`, `c + clients`, ….
pub async fn closed_loop<F, Fut>(
    connections: &[Connection],
    until: Until,
    op: F,
) -> anyhow::Result<Measured>
where
    F: Fn(Connection, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), RequestError>> + Send + 'static,
{
    let started = Instant::now();
    let clients = connections.len();
    let mut tasks = JoinSet::new();
    for (client, connection) in connections.iter().cloned().enumerate() {
        let op = op.clone();
        tasks.spawn(async move {
            let mut measured = Measured::default();
            let mut n = client;
            loop {
                match until {
                    Until::Deadline(deadline) if Instant::now() >= deadline => break,
                    Until::Count(count) if n >= count => break,
                    _ => {}
                }
                let sent = Instant::now();
                let outcome = op(connection.clone(), n).await;
                measured.record(&outcome, sent.elapsed());
                n += clients;
            }
            measured
        });
    }
    let mut total = Measured::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Sends `rate` requests per second in all for `duration`, round-robin over the connections,
/// each at its scheduled time whether or not earlier ones answered. Latency counts from the
/// scheduled time, so queueing anywhere (client, connection, server) counts.
pub async fn open_loop<F, Fut>(
    connections: &[Connection],
    rate: f64,
    duration: Duration,
    op: F,
) -> anyhow::Result<Measured>
where
    F: Fn(Connection, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), RequestError>> + Send + 'static,
{
    let clients = connections.len();
    let total = (rate * duration.as_secs_f64()) as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = JoinSet::new();
    for (client, connection) in connections.iter().cloned().enumerate() {
        let op = op.clone();
        tasks.spawn(async move {
            let mut requests = JoinSet::new();
            for n in (client..total).step_by(clients) {
                let scheduled = start + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(scheduled).await;
                let request = op(connection.clone(), n);
                requests.spawn(async move {
                    let outcome = request.await;
                    (outcome, scheduled.elapsed())
                });
            }
            let mut measured = Measured::default();
            while let Some(done) = requests.join_next().await {
                let (outcome, latency) = done?;
                measured.record(&outcome, latency);
            }
            anyhow::Ok(measured)
        });
    }
    let mut all = Measured::default();
    while let Some(done) = tasks.join_next().await {
        all.merge(done??);
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

/// When each object was first seen in a state, by name, filled in by [`record_first_seen`].
pub type FirstSeen = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>;

/// Reads the watch at `path` (a `?watch=1&resourceVersion=…` URL) and records, for every
/// object for which `reached` holds, when it was first seen so. Ends with the watch; fails on
/// an `ERROR` event.
pub async fn record_first_seen(
    connection: Connection,
    path: &str,
    reached: fn(&Value) -> bool,
    seen: FirstSeen,
) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let response = connection
        .send(hyper::Method::GET, path, &[], bytes::Bytes::new())
        .await
        .map_err(describe)?;
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let now = Instant::now();
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line)?;
            if event["type"] == "ERROR" {
                anyhow::bail!("the watch failed: {}", event["object"]["message"]);
            }
            let object = &event["object"];
            if reached(object) {
                if let Some(name) = object["metadata"]["name"].as_str() {
                    seen.lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .entry(name.into())
                        .or_insert(now);
                }
            }
        }
    }
    Ok(())
}

/// Pods created in one burst and watched until each reached a state.
pub struct Burst {
    /// When the first create was sent.
    pub started: Instant,
    /// How long the creates took, all of them.
    pub create_elapsed: Duration,
    /// When each pod was first seen in the state, by name.
    pub reached: std::collections::HashMap<String, Instant>,
    /// From each pod's create to its first sighting in the state, sorted.
    pub latencies: Vec<Duration>,
}

/// Creates `count` pods (`pod(n)`, named `pod-{n:0width$}` by the caller's `pod`) in
/// `namespace` as fast as the connections can, watches them from just before, and waits up to
/// `timeout` for every one to reach the state `reached` tests. Fails on a failed create, an
/// ended watch, or pods that never got there.
pub async fn create_and_watch(
    dialer: &Dialer,
    connections: &[Connection],
    namespace: &str,
    count: usize,
    pod: fn(usize) -> Value,
    reached: fn(&Value) -> bool,
    timeout: Duration,
) -> anyhow::Result<Burst> {
    use std::sync::Mutex;
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    let list = connections[0].get_json(&format!("{path}?limit=1")).await?;
    let from = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let seen: FirstSeen = Arc::default();
    let watch_path = format!("{path}?watch=1&resourceVersion={from}");
    let watch = tokio::spawn({
        let (connection, seen) = (dialer.connect(1).await?, seen.clone());
        async move { record_first_seen(connection, &watch_path, reached, seen).await }
    });
    // The watch ends with this function, however it returns.
    struct StopWatch(tokio::task::AbortHandle);
    impl Drop for StopWatch {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _stop_watch = StopWatch(watch.abort_handle());

    // Each create's pod name and when it was sent, by index.
    type SentAt = Arc<Mutex<Vec<Option<(String, Instant)>>>>;
    let sent_at: SentAt = Arc::new(Mutex::new(vec![None; count]));
    let started = Instant::now();
    let created = {
        let sent_at = sent_at.clone();
        closed_loop(connections, Until::Count(count), move |connection, n| {
            let (sent_at, path) = (sent_at.clone(), path.clone());
            async move {
                let object = pod(n);
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let sent = Instant::now();
                connection.create(&path, &object).await?;
                if let Ok(mut at) = sent_at.lock() {
                    at[n] = Some((name, sent));
                }
                Ok(())
            }
        })
        .await?
    };
    if created.errors.total() > 0 {
        bail!("creating pods failed: {}", created.errors.lines().join("; "));
    }

    let deadline = Instant::now() + timeout;
    let seen_count = || seen.lock().map(|s| s.len()).unwrap_or(0);
    while seen_count() < count && Instant::now() < deadline && !watch.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if watch.is_finished() {
        watch.await??;
        bail!("the watch ended early");
    }
    let reached = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    if reached.len() < count {
        bail!("only {} of {count} pods got there within {timeout:?}", reached.len());
    }
    let sent_at = sent_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut latencies: Vec<Duration> = sent_at
        .iter()
        .flatten()
        .filter_map(|(name, at)| Some(reached.get(name)?.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    Ok(Burst { started, create_elapsed: created.elapsed, reached, latencies })
}

/// Whether a pod or node's `Ready` condition is `True`.
pub fn is_ready(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
