//! Shared test harness: bounded waits, and clusters of in-process masters over real TLS.
//!
//! Nothing here sleeps for a fixed time to "let things settle"; each wait names what it waits
//! for and fails with that name when it times out.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flotilla_store::etcd::EtcdOptions;
use flotilla_store::pki::{Authority, CertFiles, CertRequest};
use flotilla_store::raft::{Master, MasterConfig, NodeId, PeerUrlSpec, TlsFiles};
use flotilla_store::{WatchBatch, Watcher};
use tokio::time::Instant;

/// How often a condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a watch event may take to arrive once its write has been acknowledged.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a cluster may take to agree on a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a master may take to shut down.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Some`, for at most `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Returns the watcher's next batch, failing if none arrives within [`WATCH_TIMEOUT`].
pub async fn next_batch(watcher: &mut Watcher, what: &str) -> Result<WatchBatch> {
    match tokio::time::timeout(WATCH_TIMEOUT, watcher.next()).await {
        Err(_) => bail!("timed out after {WATCH_TIMEOUT:?} waiting for a watch batch: {what}"),
        Ok(None) => bail!("the watch ended while waiting for {what}"),
        Ok(Some(Err(err))) => bail!("the watch failed while waiting for {what}: {err:?}"),
        Ok(Some(Ok(batch))) => Ok(batch),
    }
}

// ---- masters -------------------------------------------------------------------------------

/// Returns a free local port outside the ephemeral range, for a master to bind.
pub fn free_port() -> Result<u16> {
    Ok(flotilla_store::ports::free_local_port()?)
}

/// A test cluster's certificate authority, with its files in one directory.
pub struct Pki {
    authority: Authority,
    ca: PathBuf,
    dir: PathBuf,
}

impl Pki {
    /// Creates a CA and writes it to `dir`.
    pub fn new(dir: &Path) -> Result<Pki> {
        let authority = Authority::generate("flotilla-test-ca")?;
        let ca = authority.write(dir)?.cert;
        Ok(Pki { authority, ca, dir: dir.to_path_buf() })
    }

    /// Issues a certificate for `name`, valid for client use and, for a master, server use on
    /// 127.0.0.1.
    pub fn issue(&self, name: &str, server: bool) -> Result<CertFiles> {
        Ok(self.authority.issue(
            &CertRequest {
                common_name: name,
                organizations: &[],
                hosts: &["127.0.0.1", "localhost"],
                server,
                client: true,
            },
            &self.dir,
            name,
        )?)
    }

    /// Returns the configurations of a new cluster's masters, on fresh local ports.
    pub fn cluster_configs(&self, names: &[&str]) -> Result<Vec<MasterConfig>> {
        let mut ports = Vec::new();
        for _ in names {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster: Vec<PeerUrlSpec> = names
            .iter()
            .zip(&ports)
            .map(|(name, (peer, _))| PeerUrlSpec {
                name: name.to_string(),
                peer_url: format!("https://127.0.0.1:{peer}"),
            })
            .collect();
        names
            .iter()
            .zip(ports)
            .map(|(name, ports)| self.master_config(name, ports, initial_cluster.clone(), None))
            .collect()
    }

    /// Returns the configuration of a new master that joins through the member at `contact`
    /// (a peer URL).
    pub fn joining_config(&self, name: &str, contact: &str) -> Result<MasterConfig> {
        let ports = (free_port()?, free_port()?);
        self.master_config(name, ports, Vec::new(), Some(contact.to_string()))
    }

    fn master_config(
        &self,
        name: &str,
        (peer, client): (u16, u16),
        initial_cluster: Vec<PeerUrlSpec>,
        join: Option<String>,
    ) -> Result<MasterConfig> {
        let cert = self.issue(name, true)?;
        Ok(MasterConfig {
            name: name.to_string(),
            data_dir: self.dir.join(name),
            listen_peer: SocketAddr::from((Ipv4Addr::LOCALHOST, peer)),
            listen_client: SocketAddr::from((Ipv4Addr::LOCALHOST, client)),
            advertise_peer_url: format!("https://127.0.0.1:{peer}"),
            advertise_client_url: format!("https://127.0.0.1:{client}"),
            initial_cluster,
            initial_cluster_token: "test".into(),
            join,
            tls: TlsFiles { ca: self.ca.clone(), cert: cert.cert, key: cert.key },
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
            snapshot_entries: 1000,
            etcd: EtcdOptions::default(),
        })
    }

    /// Returns TLS settings for an etcd client: the cluster CA and a fresh client certificate.
    pub fn etcd_client_tls(&self, name: &str) -> Result<etcd_client::TlsOptions> {
        let cert = self.issue(name, false)?;
        let read = |path: &Path| std::fs::read(path).with_context(|| path.display().to_string());
        Ok(etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)?))
            .identity(etcd_client::Identity::from_pem(read(&cert.cert)?, read(&cert.key)?)))
    }
}

/// Writes a CA and one server+client certificate per master; returns the configurations.
pub fn cluster_configs(dir: &Path, names: &[&str]) -> Result<Vec<MasterConfig>> {
    Pki::new(dir)?.cluster_configs(names)
}

/// Waits until every master names the same leader and that master leads.
///
/// Returns the leader's id.
pub async fn wait_for_leader(masters: &[Master]) -> Result<NodeId> {
    agreed_leader(masters.iter().collect()).await
}

async fn agreed_leader(masters: Vec<&Master>) -> Result<NodeId> {
    wait_until(LEADER_TIMEOUT, "every master to agree on a leader", || async {
        let leaders: Vec<Option<NodeId>> =
            masters.iter().map(|m| m.store().consensus().leader_id()).collect();
        let Some(leader) = leaders.first().copied().flatten() else { return Ok(None) };
        let agreed = leaders.iter().all(|l| *l == Some(leader));
        let leads = masters
            .iter()
            .any(|m| m.store().consensus().id() == leader && m.store().consensus().is_leader());
        Ok((agreed && leads).then_some(leader))
    })
    .await
}

/// Stops a master, failing if it takes longer than [`SHUTDOWN_TIMEOUT`].
pub async fn shut_down(master: Master) -> Result<()> {
    tokio::time::timeout(SHUTDOWN_TIMEOUT, master.shutdown())
        .await
        .with_context(|| format!("a master did not shut down within {SHUTDOWN_TIMEOUT:?}"))
}

/// In-process masters sharing one CA; a member may be stopped and started again from its data
/// directory. Members keep their index (the order of their configurations) for the whole test.
pub struct Cluster {
    pub pki: Pki,
    pub configs: Vec<MasterConfig>,
    masters: Vec<Option<Master>>,
    // Dropped last: the data directories must outlive the masters.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a new cluster of `names`, each configuration first adjusted by `tune`.
    pub async fn start(names: &[&str], tune: impl Fn(&mut MasterConfig)) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::new(dir.path())?;
        let mut configs = pki.cluster_configs(names)?;
        configs.iter_mut().for_each(&tune);
        let mut cluster = Cluster { pki, configs, masters: Vec::new(), _dir: dir };
        for index in 0..cluster.configs.len() {
            cluster.masters.push(None);
            cluster.start_member(index).await?;
        }
        Ok(cluster)
    }

    /// Starts member `index` from its configuration (and data directory, if it has one).
    pub async fn start_member(&mut self, index: usize) -> Result<&Master> {
        let config = self.configs[index].clone();
        let name = config.name.clone();
        let master = Master::start(config).await.with_context(|| format!("starting {name}"))?;
        Ok(self.masters[index].insert(master))
    }

    /// Starts one more master with `config` (for example one that joins); returns its index.
    pub async fn add_member(&mut self, config: MasterConfig) -> Result<usize> {
        self.configs.push(config);
        self.masters.push(None);
        let index = self.configs.len() - 1;
        self.start_member(index).await?;
        Ok(index)
    }

    /// Stops member `index` cleanly; its data directory stays.
    pub async fn stop_member(&mut self, index: usize) -> Result<()> {
        let master = self.masters[index].take().with_context(|| format!("member {index}"))?;
        shut_down(master).await
    }

    /// Returns running member `index`.
    pub fn master(&self, index: usize) -> Result<&Master> {
        self.masters[index].as_ref().with_context(|| format!("member {index} is not running"))
    }

    /// Returns the running members' indexes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.masters.len()).filter(|i| self.masters[*i].is_some()).collect()
    }

    /// Returns the index of the running member with this Raft id.
    pub fn index_of(&self, id: NodeId) -> Result<usize> {
        self.running()
            .into_iter()
            .find(|i| self.masters[*i].as_ref().is_some_and(|m| m.store().consensus().id() == id))
            .with_context(|| format!("no running member has id {id:x}"))
    }

    /// Waits until every running member agrees on a leader; returns the leader's index.
    pub async fn wait_for_leader(&self) -> Result<usize> {
        let leader = agreed_leader(self.masters.iter().flatten().collect()).await?;
        self.index_of(leader)
    }

    /// Waits for a leader; returns the index of a running member that does not lead.
    pub async fn a_follower(&self) -> Result<usize> {
        let leader = self.wait_for_leader().await?;
        self.running().into_iter().find(|i| *i != leader).context("a running follower")
    }

    /// Returns an etcd client of member `index`'s client URL, with a fresh client certificate.
    pub async fn etcd_client(
        &self,
        index: usize,
        options: etcd_client::ConnectOptions,
    ) -> Result<etcd_client::Client> {
        let tls = self.pki.etcd_client_tls("admin")?;
        let options = options.with_tls(tls).with_connect_timeout(Duration::from_secs(5));
        let url = &self.configs[index].advertise_client_url;
        etcd_client::Client::connect([url.as_str()], Some(options))
            .await
            .with_context(|| format!("connecting an etcd client to {url}"))
    }

    /// Stops every running member.
    pub async fn shutdown(mut self) -> Result<()> {
        for index in self.running() {
            self.stop_member(index).await?;
        }
        Ok(())
    }
}

/// Starts a cluster, runs `body` on it, and shuts every member down whatever its outcome.
pub async fn with_cluster<F>(
    names: &[&str],
    tune: impl Fn(&mut MasterConfig),
    body: F,
) -> Result<()>
where
    F: AsyncFnOnce(&mut Cluster) -> Result<()>,
{
    eprintln!("--- start {} masters", names.len());
    let mut cluster = Cluster::start(names, tune).await?;
    let outcome = body(&mut cluster).await;
    eprintln!("--- shut every master down");
    let stopped = cluster.shutdown().await;
    outcome.and(stopped)
}
