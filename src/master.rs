//! `flotilla master`: flags in etcd's spelling where etcd has one, mapped onto `MasterConfig`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use flotilla_api::allocate::ServiceRanges;
use flotilla_api::{ApiConfig, ApiServer};
use flotilla_control::{
    AgentLiveness, ApiServers, ControlConfig, ControlPlane, LeaseConfig, Liveness,
};
use flotilla_net::gossip::{Gossip, GossipConfig, Members, Role, Timing};
use flotilla_store::etcd::EtcdOptions;
use flotilla_store::raft::{Master, MasterConfig, PeerUrlSpec, TlsFiles};
use tokio::sync::watch;

/// The range Service cluster IPs are allocated from unless `--service-cluster-ip-range` says
/// otherwise (kubeadm's default).
pub const DEFAULT_SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/12";

/// The names in-cluster clients reach the API by (the `kubernetes` Service's): every master's
/// serving certificate is valid for them and for [`kubernetes_service_ip`].
pub const KUBERNETES_SERVICE_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The `kubernetes` Service's cluster IP in `range`: the range's first address.
pub fn kubernetes_service_ip(range: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    let (network, prefix_len) = ServiceRanges::parse_cidr(range).map_err(anyhow::Error::msg)?;
    Ok(ServiceRanges { network, prefix_len, ..ServiceRanges::default() }.nth(1))
}

#[derive(Args, Clone, Debug)]
pub struct MasterArgs {
    /// This member's name, unique in the cluster.
    #[arg(long)]
    pub name: String,
    /// Where this member keeps its data; restarting with the same directory rejoins with it.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The URL to serve other masters on, e.g. https://127.0.0.1:2380.
    #[arg(long)]
    pub listen_peer_urls: String,
    /// The URL to serve clients (etcdctl) on, e.g. https://127.0.0.1:2379.
    #[arg(long)]
    pub listen_client_urls: String,
    /// The peer URL other masters use to reach this one (default: the listen URL).
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// The client URL published in the member list (default: the listen URL).
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// The members of a new cluster: name=https://host:port,...
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// A token that distinguishes this cluster from others.
    #[arg(long, default_value = "flotilla")]
    pub initial_cluster_token: String,
    /// The peer URL of a member of an existing cluster to join.
    #[arg(long, conflicts_with = "initial_cluster")]
    pub join: Option<String>,
    /// The cluster CA certificate (PEM): peers and clients must present certificates it signed.
    #[arg(long)]
    pub trusted_ca_file: PathBuf,
    /// This member's certificate (PEM), used on both ports and toward peers.
    #[arg(long)]
    pub cert_file: PathBuf,
    /// The key of --cert-file (PEM).
    #[arg(long)]
    pub key_file: PathBuf,
    /// Milliseconds between leader heartbeats.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_interval: u64,
    /// Milliseconds without a heartbeat before a follower starts an election.
    #[arg(long, default_value_t = 150)]
    pub election_timeout: u64,
    /// Log entries between snapshots.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_count: u64,
    /// Seconds between progress notifications on watches that ask for them.
    #[arg(long, default_value_t = 600)]
    pub watch_progress_notify_interval: u64,
    /// The URL to serve the Kubernetes API on, e.g. https://127.0.0.1:6443 (none: no API).
    #[arg(long)]
    pub listen_api_url: Option<String>,
    /// The API URL clients are told to use (default: the listen URL).
    #[arg(long)]
    pub advertise_api_url: Option<String>,
    /// Static bearer tokens for the API: lines of token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// The key service-account tokens are signed and verified with (ECDSA P-256, PKCS#8 PEM);
    /// every master must use the same file. Default: sa.key beside --trusted-ca-file, where
    /// `flotilla up` creates it. A master serving the API does not start without it.
    #[arg(long)]
    pub service_account_key_file: Option<PathBuf>,
    /// The range Service cluster IPs are allocated from.
    #[arg(long, default_value = DEFAULT_SERVICE_CLUSTER_IP_RANGE)]
    pub service_cluster_ip_range: String,
    /// Seconds between compactions of the store's history (watches and list continuations
    /// can resume from anything newer).
    #[arg(long, default_value_t = 300)]
    pub compaction_interval: u64,
    /// Let `kubectl proxy` and the `proxy` subresources reach pods and nodes at loopback
    /// addresses, which are refused by default as kube-apiserver refuses them: only for nodes
    /// that share the masters' machine and network (agents run with `--node-ip 127.0.0.1`).
    #[arg(long)]
    pub proxy_allow_loopback: bool,
    /// The range node ports are allocated from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
}

/// Parses `https://host:port` into a socket address.
fn listen_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let Some(rest) = url.strip_prefix("https://") else {
        bail!("{url}: listen URLs must be https:// (TLS is always on)");
    };
    rest.trim_end_matches('/').parse().with_context(|| format!("{url}: expected https://IP:PORT"))
}

impl MasterArgs {
    pub fn config(&self) -> anyhow::Result<MasterConfig> {
        let initial_cluster = match &self.initial_cluster {
            Some(list) => PeerUrlSpec::parse_list(list).map_err(anyhow::Error::msg)?,
            None => Vec::new(),
        };
        Ok(MasterConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone(),
            listen_peer: listen_addr(&self.listen_peer_urls)?,
            listen_client: listen_addr(&self.listen_client_urls)?,
            advertise_peer_url: self
                .initial_advertise_peer_urls
                .clone()
                .unwrap_or_else(|| self.listen_peer_urls.clone()),
            advertise_client_url: self
                .advertise_client_urls
                .clone()
                .unwrap_or_else(|| self.listen_client_urls.clone()),
            initial_cluster,
            initial_cluster_token: self.initial_cluster_token.clone(),
            join: self.join.clone(),
            tls: TlsFiles {
                ca: self.trusted_ca_file.clone(),
                cert: self.cert_file.clone(),
                key: self.key_file.clone(),
            },
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_entries: self.snapshot_count,
            etcd: EtcdOptions {
                progress_notify_interval: Duration::from_secs(
                    self.watch_progress_notify_interval.max(1),
                ),
            },
        })
    }
}

impl MasterArgs {
    /// `--service-account-key-file`, or its default beside the CA.
    fn service_account_key_file(&self) -> PathBuf {
        self.service_account_key_file.clone().unwrap_or_else(|| {
            let dir = self.trusted_ca_file.parent().unwrap_or(std::path::Path::new("."));
            dir.join(flotilla_store::pki::SERVICE_ACCOUNT_KEY_FILE)
        })
    }

    /// The API server's configuration, if this master serves the API.
    pub fn api_config(&self) -> anyhow::Result<Option<ApiConfig>> {
        let Some(listen_url) = &self.listen_api_url else {
            return Ok(None);
        };
        let listen = listen_addr(listen_url)?;
        let advertise = self.advertise_api_url.clone().unwrap_or_else(|| listen_url.clone());
        let advertise = advertise.trim_start_matches("https://").trim_end_matches('/').to_string();
        let (network, prefix_len) = ServiceRanges::parse_cidr(&self.service_cluster_ip_range)
            .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range: {e}"))?;
        let node_ports = self
            .service_node_port_range
            .split_once('-')
            .and_then(|(low, high)| Some((low.parse().ok()?, high.parse().ok()?)))
            .filter(|(low, high): &(u16, u16)| low <= high)
            .with_context(|| {
                format!(
                    "--service-node-port-range {}: expected LOW-HIGH",
                    self.service_node_port_range
                )
            })?;
        Ok(Some(ApiConfig {
            listen,
            advertise,
            ca_file: self.trusted_ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            token_file: self.token_auth_file.clone(),
            service_account_key_file: self.service_account_key_file(),
            ranges: ServiceRanges { network, prefix_len, node_ports },
            compaction_interval: Duration::from_secs(self.compaction_interval.max(1)),
            proxy_loopback: self.proxy_allow_loopback,
        }))
    }
}

impl MasterArgs {
    /// The control plane's configuration, for controllers talking to this master's API at
    /// `api_url`, judging nodes by `liveness` and publishing `api_servers` as the endpoints of
    /// the `kubernetes` Service.
    fn control_config(
        &self,
        api_url: String,
        liveness: watch::Receiver<Liveness>,
        api_servers: watch::Receiver<ApiServers>,
    ) -> anyhow::Result<ControlConfig> {
        let lease = LeaseConfig::default();
        lease.validate().map_err(anyhow::Error::msg)?;
        let root_ca = std::fs::read_to_string(&self.trusted_ca_file).with_context(|| {
            format!("reading --trusted-ca-file {}", self.trusted_ca_file.display())
        })?;
        Ok(ControlConfig {
            api_url,
            ca_file: self.trusted_ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            identity: format!("{}_{}", self.name, std::process::id()),
            lease,
            liveness,
            api_servers,
            root_ca,
        })
    }
}

/// Joins the gossip membership on the API server's address and port (UDP beside the API's
/// TCP), where agents find the masters.
async fn start_gossip(name: &str, api: &ApiConfig) -> anyhow::Result<Gossip> {
    let advertise = tokio::net::lookup_host(&api.advertise)
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .with_context(|| format!("resolving the advertised API address {}", api.advertise))?;
    let config = GossipConfig {
        name: name.to_owned(),
        role: Role::Master,
        bind: api.listen,
        advertise,
        seeds: Vec::new(),
        timing: Timing::default(),
    };
    Ok(Gossip::start(config).await?)
}

/// The agents' liveness from the membership, for the node lifecycle controller.
fn agent_liveness(members: watch::Receiver<Members>) -> watch::Receiver<Liveness> {
    follow(members, |members| {
        members
            .iter()
            .filter(|(_, member)| member.role == Role::Agent)
            .map(|(name, member)| {
                let liveness = AgentLiveness { alive: member.alive, generation: member.generation };
                (name.clone(), liveness)
            })
            .collect()
    })
}

/// The API addresses of the masters alive in the membership and of this one (`own`, which the
/// membership leaves out), published as the `kubernetes` Service's endpoints. Masters gossip on
/// their advertised API address and port, so a member's address is its API's.
fn api_servers(own: SocketAddr, members: watch::Receiver<Members>) -> watch::Receiver<ApiServers> {
    follow(members, move |members| {
        let others = members
            .values()
            .filter(|member| member.role == Role::Master && member.alive)
            .map(|member| member.addr);
        std::iter::once(own).chain(others).collect()
    })
}

/// A view derived from the membership by `of`, kept current (and published only when it
/// changes) until no one holds it or the membership stops.
fn follow<T>(
    mut members: watch::Receiver<Members>,
    of: impl Fn(&Members) -> T + Send + 'static,
) -> watch::Receiver<T>
where
    T: PartialEq + Send + Sync + 'static,
{
    let (publish, view) = watch::channel(of(&members.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = publish.closed() => return,
                changed = members.changed() => if changed.is_err() { return },
            }
            let next = of(&members.borrow_and_update());
            publish.send_if_modified(|current| {
                let changed = *current != next;
                *current = next;
                changed
            });
        }
    });
    view
}

/// What a master runs besides the store, stopped in reverse order.
#[derive(Default)]
struct Services {
    api: Option<ApiServer>,
    gossip: Option<Gossip>,
    control: Option<ControlPlane>,
}

impl Services {
    async fn start(args: &MasterArgs, master: &Master) -> anyhow::Result<Services> {
        let mut services = Services::default();
        let Some(api_config) = args.api_config()? else { return Ok(services) };
        let api = ApiServer::start(master.store().clone(), api_config.clone()).await?;
        // The controllers talk to this master's own API: where it listens, or on loopback when
        // it listens on every address.
        let local = api.local_addr();
        let host = match local.ip() {
            ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let api_url = format!("https://{}", std::net::SocketAddr::new(host, local.port()));
        services.api = Some(api);
        let gossip = match start_gossip(&args.name, &api_config).await {
            Ok(gossip) => services.gossip.insert(gossip),
            Err(e) => {
                services.shutdown().await;
                return Err(e);
            }
        };
        let servers = api_servers(gossip.advertise(), gossip.members());
        let started = match args.control_config(api_url, agent_liveness(gossip.members()), servers)
        {
            Ok(config) => ControlPlane::start(config, master.store().clone())
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match started {
            Ok(control) => services.control = Some(control),
            Err(e) => {
                services.shutdown().await;
                return Err(e);
            }
        }
        Ok(services)
    }

    async fn shutdown(self) {
        if let Some(control) = self.control {
            control.shutdown().await;
        }
        if let Some(gossip) = self.gossip {
            gossip.shutdown().await;
        }
        if let Some(api) = self.api {
            api.shutdown().await;
        }
    }
}

pub async fn run(args: MasterArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let master = Master::start(config).await?;
    let services = match Services::start(&args, &master).await {
        Ok(services) => services,
        Err(e) => {
            master.shutdown().await;
            return Err(e);
        }
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => false,
        _ = terminate.recv() => false,
        _ = master.failed() => true,
    };
    services.shutdown().await;
    master.shutdown().await;
    if failed {
        bail!("stopped on a fatal storage error (see the log above)");
    }
    Ok(())
}
