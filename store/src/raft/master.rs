//! One master's store: configuration, the designed startup sequence, and shutdown.
//!
//! Startup: validate the configuration → open sled and verify the log and snapshot checksums →
//! learn this member's id (from the data directory, the initial cluster, or by joining) → start
//! Raft → bind the peer and client ports (TLS, client certificates required) → bootstrap the
//! initial cluster if it is new → publish this member's name and client URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, Raft, SnapshotPolicy};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

use super::log_store::LogStore;
use super::proto::peer_server::PeerServer;
use super::service::PeerService;
use super::state_machine::StateMachine;
use super::{
    initial_members, member_id, ForwardRequest, MemberNode, NodeId, PeerChannels, RaftConsensus,
};
use crate::mvcc::{Mvcc, SledBackend};
use crate::shared::Shared;
use crate::store::Store;

/// A `name=peer-url` pair of `--initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUrlSpec {
    pub name: String,
    pub peer_url: String,
}

impl PeerUrlSpec {
    /// Parses etcd's `name=url,name=url` form.
    pub fn parse_list(list: &str) -> Result<Vec<PeerUrlSpec>, String> {
        list.split(',').filter(|s| !s.is_empty()).map(PeerUrlSpec::from_str).collect()
    }
}

impl FromStr for PeerUrlSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| format!("initial cluster member {s:?} is not name=https://host:port"))?;
        if name.is_empty() || !url.starts_with("https://") {
            return Err(format!("initial cluster member {s:?} is not name=https://host:port"));
        }
        Ok(PeerUrlSpec { name: name.to_string(), peer_url: url.to_string() })
    }
}

/// PEM files for TLS: the cluster CA (trusted for peers and clients) and this master's
/// certificate, used for both its ports and as its client identity toward peers.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn load(&self) -> Result<(ServerTlsConfig, ClientTlsConfig), MasterError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| MasterError::Config(format!("{}: {e}", path.display())))
        };
        let ca = Certificate::from_pem(read(&self.ca)?);
        let identity = Identity::from_pem(read(&self.cert)?, read(&self.key)?);
        let server = ServerTlsConfig::new().identity(identity.clone()).client_ca_root(ca.clone());
        let client = ClientTlsConfig::new().ca_certificate(ca).identity(identity);
        Ok((server, client))
    }
}

/// Everything one master needs; validated once by [`MasterConfig::validate`].
#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_peer: SocketAddr,
    pub listen_client: SocketAddr,
    pub advertise_peer_url: String,
    pub advertise_client_url: String,
    /// The members of a new cluster (empty when joining one).
    pub initial_cluster: Vec<PeerUrlSpec>,
    pub initial_cluster_token: String,
    /// The peer URL of any member of an existing cluster to join.
    pub join: Option<String>,
    pub tls: TlsFiles,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// A snapshot is taken after this many log entries.
    pub snapshot_entries: u64,
    pub etcd: crate::etcd::EtcdOptions,
}

impl MasterConfig {
    pub fn validate(&self) -> Result<(), MasterError> {
        let fail = |msg: String| Err(MasterError::Config(msg));
        if self.name.is_empty() {
            return fail("--name must not be empty".into());
        }
        if self.initial_cluster.is_empty() == self.join.is_none() && !self.has_member_id() {
            return fail("give exactly one of --initial-cluster (a new cluster) and --join (an existing one)".into());
        }
        if !self.initial_cluster.is_empty()
            && !self.initial_cluster.iter().any(|m| m.name == self.name)
        {
            return fail(format!("--initial-cluster does not name this member ({})", self.name));
        }
        if self.election_timeout < self.heartbeat_interval * 3 {
            return fail("--election-timeout must be at least 3 heartbeat intervals".into());
        }
        Ok(())
    }

    fn member_id_path(&self) -> PathBuf {
        self.data_dir.join("member_id")
    }

    fn has_member_id(&self) -> bool {
        self.member_id_path().exists()
    }

    fn local_node(&self) -> MemberNode {
        MemberNode {
            name: self.name.clone(),
            peer_url: self.advertise_peer_url.clone(),
            client_urls: vec![self.advertise_client_url.clone()],
        }
    }

    fn raft_config(&self) -> Result<Arc<Config>, MasterError> {
        let election = self.election_timeout.as_millis() as u64;
        let config = Config {
            cluster_name: self.initial_cluster_token.clone(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            // A follower campaigns after the leader lease (openraft: the maximum timeout) plus a
            // random timeout in [min, max): 350-400 ms after the last heartbeat by default.
            election_timeout_min: election,
            election_timeout_max: election + election / 3,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_entries),
            max_in_snapshot_log_to_keep: 1000,
            // openraft bounds an AppendEntries by entry count and gives it one heartbeat
            // interval; keep batches of large values small enough to make it.
            max_payload_entries: 64,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        config.validate().map(Arc::new).map_err(|e| MasterError::Config(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("opening the data directory: {0}")]
    Storage(String),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("joining the cluster: {0}")]
    Join(String),
    #[error("starting raft: {0}")]
    Raft(String),
}

/// A running master store.
pub struct Master {
    config: MasterConfig,
    store: Store<RaftConsensus>,
    db: sled::Db,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    fatal: CancellationToken,
}

/// How long shutdown waits for connections to drain and storage to be released.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long a new master keeps trying to join before it gives up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Master {
    pub async fn start(config: MasterConfig) -> Result<Master, MasterError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| MasterError::Storage(format!("{}: {e}", config.data_dir.display())))?;
        let (server_tls, client_tls) = config.tls.load()?;
        let db_config =
            sled::Config::new().path(config.data_dir.join("db")).flush_every_ms(Some(500));
        // sled refuses a data directory whose lock a killed predecessor still holds.
        let db = crate::ports::after_predecessor(
            || std::future::ready(db_config.open()),
            |error| error.to_string().contains("could not acquire lock"),
        )
        .await
        .map_err(|e| MasterError::Storage(e.to_string()))?;
        let log_store = LogStore::open(&db).map_err(|e| MasterError::Storage(e.to_string()))?;
        let backend =
            SledBackend::open(&db, "kv").map_err(|e| MasterError::Storage(e.to_string()))?;
        let engine =
            Mvcc::open(Box::new(backend)).map_err(|e| MasterError::Storage(e.to_string()))?;
        let shared = Arc::new(Shared::new(engine));
        let state_machine = StateMachine::open(shared.clone(), &config.data_dir)
            .map_err(|e| MasterError::Storage(e.to_string()))?;
        let peers = PeerChannels::new(client_tls);
        let id = Self::member_id(&config, &peers).await?;

        let raft = Raft::new(id, config.raft_config()?, peers.clone(), log_store, state_machine)
            .await
            .map_err(|e| MasterError::Raft(e.to_string()))?;
        let consensus = RaftConsensus::new(id, raft.clone(), peers);
        let store = Store::new(shared, consensus.clone());

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let peer_listener = crate::ports::bind_after_predecessor(config.listen_peer)
            .await
            .map_err(|source| MasterError::Bind { addr: config.listen_peer, source })?;
        let client_listener = crate::ports::bind_after_predecessor(config.listen_client)
            .await
            .map_err(|source| MasterError::Bind { addr: config.listen_client, source })?;

        let peer_server = Server::builder()
            .tls_config(server_tls.clone())
            .map_err(|e| MasterError::Config(e.to_string()))?
            .add_service(
                PeerServer::new(PeerService::new(store.clone()))
                    .max_decoding_message_size(256 << 20),
            )
            .serve_with_incoming_shutdown(
                crate::incoming(peer_listener),
                shutdown.clone().cancelled_owned(),
            );
        tasks.spawn(async move {
            if let Err(e) = peer_server.await {
                tracing::error!(error = %e, "peer server failed");
            }
        });
        let client_server = crate::etcd::serve(
            store.clone(),
            client_listener,
            server_tls,
            config.etcd,
            shutdown.clone(),
        )
        .map_err(|e| MasterError::Config(e.to_string()))?;
        tasks.spawn(client_server);

        if !config.initial_cluster.is_empty()
            && !raft.is_initialized().await.map_err(|e| MasterError::Raft(e.to_string()))?
        {
            let members = initial_members(&config.initial_cluster_token, &config.initial_cluster);
            // Every initial member initializes with the same membership; openraft allows that.
            if let Err(e) = raft.initialize(members).await {
                tracing::debug!(error = %e, "cluster already initialized");
            }
        }

        let fatal = CancellationToken::new();
        let master = Master { config, store, db, shutdown, tasks, fatal };
        master.spawn_publisher();
        master.spawn_fatal_monitor();
        tracing::info!(name = %master.config.name, id = format_args!("{id:x}"), "master started");
        Ok(master)
    }

    /// Returns this member's id: from the data directory, from the initial cluster, or by
    /// joining through an existing member.
    async fn member_id(config: &MasterConfig, peers: &PeerChannels) -> Result<NodeId, MasterError> {
        let path = config.member_id_path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            return u64::from_str_radix(text.trim(), 16)
                .map_err(|e| MasterError::Storage(format!("{}: {e}", path.display())));
        }
        let id = match &config.join {
            None => member_id(&config.initial_cluster_token, &config.name),
            Some(url) => {
                let contact = MemberNode { peer_url: url.clone(), ..Default::default() };
                let request = ForwardRequest::Join { node: config.local_node() };
                let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
                loop {
                    match peers.forward::<NodeId>(&contact, &request).await {
                        Ok(id) => break id,
                        Err(e) if tokio::time::Instant::now() < deadline => {
                            tracing::info!(error = %e, contact = %url, "join not accepted yet; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => return Err(MasterError::Join(e.to_string())),
                    }
                }
            }
        };
        std::fs::write(&path, format!("{id:x}\n"))
            .map_err(|e| MasterError::Storage(format!("{}: {e}", path.display())))?;
        Ok(id)
    }

    /// Publishes this member's name and client URL to the cluster (etcd's "publish"), and, for a
    /// member that joined as a learner, promotes it once it is in sync.
    fn spawn_publisher(&self) {
        let consensus = self.store.consensus().clone();
        let node = self.config.local_node();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let id = consensus.id();
            loop {
                let published = consensus
                    .members()
                    .iter()
                    .find(|m| m.id == id)
                    .map(|m| (m.node == node, m.is_learner));
                let step = match published {
                    Some((false, _)) => consensus.update_member(id, node.clone()).await,
                    Some((true, true)) => consensus.promote_member(id).await,
                    Some((true, false)) => return,
                    None => Err(crate::StoreError::MemberNotFound),
                };
                if let Err(e) = step {
                    tracing::debug!(error = %e, "publishing member not done yet");
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
    }

    /// Watches Raft for a fatal error (a storage failure): the master must stop, not go on.
    fn spawn_fatal_monitor(&self) {
        let mut metrics = self.store.consensus().raft().metrics();
        let shutdown = self.shutdown.clone();
        let fatal = self.fatal.clone();
        self.tasks.spawn(async move {
            loop {
                if let Err(e) = &metrics.borrow().running_state {
                    tracing::error!(error = %e, "raft stopped on a fatal error");
                    fatal.cancel();
                    return;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    changed = metrics.changed() => if changed.is_err() {
                        if !shutdown.is_cancelled() {
                            tracing::error!("raft stopped unexpectedly");
                            fatal.cancel();
                        }
                        return;
                    }
                }
            }
        });
    }

    pub fn store(&self) -> &Store<RaftConsensus> {
        &self.store
    }

    /// Resolves when the master hits a fatal error and must exit.
    pub async fn failed(&self) {
        self.fatal.cancelled().await
    }

    /// Stops serving, stops Raft, flushes, and waits for every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        if let Err(e) = self.store.consensus().raft().shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.store.shutdown().await;
        // Servers drain their connections; a connection to an unreachable peer never drains,
        // so draining gets a grace period.
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await.is_err() {
            tracing::warn!("connections still open after the grace period; stopping anyway");
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::error!(error = %e, "final flush failed");
        }
        // openraft's state-machine worker may still hold the state for a moment after Raft
        // has stopped; wait for it so the data directory can be opened again at once.
        let shared = self.store.shared().clone();
        drop(self.store);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while Arc::strong_count(&shared) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(name = %self.config.name, "master stopped");
    }
}
