//! The HTTPS listener: TLS with optional client certificates (verified against the cluster
//! CA), HTTP/1.1 and HTTP/2 by ALPN, one task per connection, and a graceful stop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_store::pki::{ClientAuth, TlsError, TlsFiles};
use flotilla_store::KvStore;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::allocate::ServiceRanges;
use crate::auth::{self, Tokens};
use crate::handler::Api;
use crate::node_proxy::NodeClient;
use crate::proxy::Upstreams;
use crate::serviceaccount::{Issuer, KeyError, SigningKey};

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish when the server stops.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The API server's configuration, validated before anything binds.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// The address clients are told to use (`host:port`), in `/api`.
    pub advertise: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Static bearer tokens (`token,user,uid,"groups"` per line).
    pub token_file: Option<PathBuf>,
    /// The service-account signing key (PKCS#8 PEM, ECDSA P-256), the same file on every
    /// master: tokens one master signs must verify on all.
    pub service_account_key_file: PathBuf,
    pub ranges: ServiceRanges,
    /// How often the store's history is compacted.
    pub compaction_interval: Duration,
    /// Whether the `proxy` subresources may reach loopback addresses, which kube-apiserver
    /// refuses (nodes sharing the masters' host and network are at 127.0.0.1).
    pub proxy_loopback: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Tokens(#[from] auth::TokenFileError),
    #[error(transparent)]
    ServiceAccountKey(#[from] KeyError),
    #[error("the TLS client of the proxy: {0}")]
    ProxyTls(#[from] rustls::Error),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Builds the rustls configuration: the server certificate, and client certificates that
/// are optional (bearer tokens are the other way in) but must chain to the CA when present.
pub fn tls_config(config: &ApiConfig) -> Result<rustls::ServerConfig, ApiServerError> {
    let files = TlsFiles { ca: &config.ca_file, cert: &config.cert_file, key: &config.key_file };
    let mut server = files.server_config(ClientAuth::Optional)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// A running API server.
pub struct ApiServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl ApiServer {
    /// Binds the listener and starts serving `store`.
    pub async fn start<S: KvStore>(
        store: S,
        config: ApiConfig,
    ) -> Result<ApiServer, ApiServerError> {
        let tls = TlsAcceptor::from(Arc::new(tls_config(&config)?));
        let tokens = match &config.token_file {
            Some(path) => Tokens::load(path)?,
            None => Tokens::default(),
        };
        let issuer = Issuer::new(SigningKey::load(&config.service_account_key_file)?);
        let listener = flotilla_store::ports::bind_after_predecessor(config.listen)
            .await
            .map_err(|source| ApiServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Bind { addr: config.listen, source })?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let files =
            TlsFiles { ca: &config.ca_file, cert: &config.cert_file, key: &config.key_file };
        let nodes = NodeClient::new(files)?;
        let upstreams = Upstreams::new(nodes.connector())?;
        let api = Arc::new(Api::new(store, tokens, issuer, config, nodes, upstreams));
        tasks.spawn(api.clone().run_background(shutdown.clone(), tasks.clone()));
        tasks.spawn(accept_loop(listener, tls, api, shutdown.clone(), tasks.clone()));
        tracing::info!(address = %local_addr, "serving the Kubernetes API");
        Ok(ApiServer { local_addr, shutdown, tasks })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets connections drain for a moment, and waits for every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn accept_loop<S: KvStore>(
    listener: TcpListener,
    tls: TlsAcceptor,
    api: Arc<Api<S>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let api = api.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(peer = %peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| auth::user_from_certificate(cert));
            let service = service_fn(move |request| {
                let api = api.clone();
                let user = user.clone();
                async move { Ok::<_, Infallible>(api.handle(request, user, peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_GRACE, connection).await;
                }
            }
        });
    }
}
