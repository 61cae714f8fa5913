//! Flotilla's node agent (its kubelet): registers the machine as a Node with its own
//! credentials (CN `system:node:<name>`, O `system:nodes`) and keeps the Node's status true,
//! writing only when something changed.
//!
//! It reaches the masters through [`upstream::Upstream`], a local forwarder that moves to
//! another master when one stops answering. It runs the node's pods through the CRI
//! ([`worker`]) in a containerd of its own ([`containerd`]), or in one given by
//! `--container-runtime-endpoint`, and reports the node Ready once the runtime and its pod
//! network are. Its networking ([`flotilla_net::node`]) load-balances Services in the eBPF
//! dataplane, translates node ports for other machines in nftables, routes to other nodes' pods
//! ([`flotilla_net::pod_network`]) and answers the cluster DNS for its pods.
//!
//! Everything above the container runtime ([`kubelet`]: registration, status, the pod CIDR,
//! the pod workers) is the same for [`HollowNodes`], many simulated nodes in one process over
//! in-memory runtimes, for scale tests (Kubernetes' kubemark).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod claim;
pub mod containerd;
mod cri;
mod hollow;
mod kubelet;
mod machine;
mod masters;
mod node;
mod node_lease;
mod pods;
mod server;
mod upstream;
mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use claim::NodeClaim;
use containerd::{Containerd, Tools};
pub use containerd::{Layout, DEFAULT_IMAGES_DIR, DEFAULT_PAUSE_IMAGE};
use cri::{CriRuntime, CriRuntimeConfig};
use flotilla_ebpf::{Dataplane, DataplaneConfig};
use flotilla_net::dns::{parse_resolv_conf, ZoneConfig};
use flotilla_net::gossip::{Gossip, GossipConfig, GossipError, Role, Timing};
use flotilla_net::node::NodeNetConfig;
use flotilla_net::node_ports::NftTable;
use flotilla_net::pod_network::{self, PodNetworkConfig};
use flotilla_store::pki::TlsFiles;
pub use hollow::{HollowConfig, HollowNodes};
use kubelet::{node_context, services, Kubelet, PodPaths};
use machine::MachineSource;
pub use machine::{Machine, SimulatedSize};
use masters::Masters;
use upstream::Upstream;

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub name: String,
    /// Every master's API, e.g. `https://10.0.0.1:6443`.
    pub api_urls: Vec<String>,
    pub ca_file: PathBuf,
    /// The agent's client certificate and key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The node's address (InternalIP).
    pub address: String,
    /// Where the agent keeps its state; its filesystem is the node's ephemeral storage.
    pub data_dir: PathBuf,
    /// How often the machine is looked at again (a write follows only a change).
    pub status_interval: Duration,
    /// The CRI socket of a container runtime to use; `None` runs the agent's own containerd.
    pub runtime_endpoint: Option<PathBuf>,
    /// Image archives to import at start: `*.tar` files, or directories of them.
    pub images: Vec<PathBuf>,
    /// The sandbox (pause) image.
    pub pause_image: String,
    /// The address pods send DNS queries to (kubelet's `clusterDNS`); the agent answers it.
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain (kubelet's `clusterDomain`).
    pub cluster_domain: String,
    /// The UDP port the agent gossips on (at `address`).
    pub gossip_port: u16,
    /// The TCP port of the agent's own API (kubelet's 10250), at `address`; the masters
    /// read logs through it.
    pub server_port: u16,
}

/// The gossip port of agents, as serf's and Docker Swarm's.
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;

pub use server::DEFAULT_PORT as DEFAULT_SERVER_PORT;

/// kubeadm's cluster DNS address: the tenth of the default service range, where the masters
/// create `kube-system/kube-dns`.
pub const DEFAULT_CLUSTER_DNS: &str = "10.96.0.10";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid API address {url}: {reason}")]
    ApiUrl { url: String, reason: String },
    #[error("preparing {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("starting the local forwarder to the masters: {0}")]
    Upstream(std::io::Error),
    #[error("building the API client: {0}")]
    Client(String),
    #[error("{0}")]
    Containerd(#[from] containerd::ContainerdError),
    #[error("{0}")]
    Runtime(#[from] cri::CriError),
    #[error("loading the service dataplane")]
    Dataplane(#[from] flotilla_ebpf::EbpfError),
    #[error("removing the node ports' nftables table: {0}")]
    NodePorts(#[from] flotilla_net::node_ports::NodePortError),
    #[error("removing the pod network: {0}")]
    PodNetwork(#[from] flotilla_net::pod_network::PodNetworkError),
    #[error("node address {0} is not an IP address (gossip needs one)")]
    NodeAddress(String),
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("issuing the node's certificate: {0}")]
    Pki(#[from] flotilla_store::pki::PkiError),
    #[error("invalid hollow node setup: {0}")]
    Hollow(String),
    #[error(transparent)]
    Claim(#[from] claim::ClaimError),
}

/// A running agent.
pub struct Agent {
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The containerd this agent runs; it keeps running after the agent stops, as k3s'.
    containerd: Option<Containerd>,
    gossip: Gossip,
    /// This machine's lock on the node name, released when the agent's process ends.
    _claim: NodeClaim,
}

/// The wildcard address of `ip`'s family.
fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

impl Agent {
    /// Connects to the masters and starts registering and reporting the Node.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|err| AgentError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        // Before anything named after the node is touched on this machine.
        let claim = NodeClaim::wait_for(&config.name, &config.data_dir).await?;
        let masters = Masters::resolve(&config.api_urls).await?;
        // Gossip first: a restarted agent is back in the membership, under its new generation,
        // before the old one could be found dead.
        let ip: IpAddr =
            config.address.parse().map_err(|_| AgentError::NodeAddress(config.address.clone()))?;
        let gossip = Gossip::start(GossipConfig {
            name: config.name.clone(),
            role: Role::Agent,
            bind: SocketAddr::new(unspecified(ip), config.gossip_port),
            advertise: SocketAddr::new(ip, config.gossip_port),
            seeds: masters.addresses.clone(),
            timing: Timing::default(),
        })
        .await?;
        let stop = CancellationToken::new();
        let upstream = Upstream::start(masters.addresses.clone(), stop.clone())
            .await
            .map_err(AgentError::Upstream)?;
        let files =
            TlsFiles { ca: &config.ca_file, cert: &config.cert_file, key: &config.key_file };
        let client = masters::client(files, upstream.local, &masters.server_name).await?;
        let tasks = TaskTracker::new();

        let layout = Layout::new(&config.data_dir, &config.name)?;
        let (socket, containerd) = match &config.runtime_endpoint {
            Some(socket) => (socket.clone(), None),
            None => {
                let tools = Tools::find()?;
                let containerd = Containerd::start(&layout, &tools, &config.pause_image).await?;
                for source in &config.images {
                    containerd.import(source).await?;
                }
                (containerd.socket().to_path_buf(), Some(containerd))
            }
        };
        let runtime =
            CriRuntime::connect(CriRuntimeConfig { socket, ..CriRuntimeConfig::default() }).await?;
        let (pod_cidr_tx, pod_cidr) = watch::channel(None);
        let dataplane = Dataplane::open(&DataplaneConfig::for_node(&config.name))?;
        let network = NodeNetConfig {
            node: config.name.clone(),
            addresses: config.address.parse().into_iter().collect(),
            cluster_dns: config.cluster_dns,
            zone: ZoneConfig { domain: config.cluster_domain.clone(), ..ZoneConfig::default() },
            upstreams: parse_resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
            api_relay: loopback_masters(&config.api_urls),
        };
        // Node ports for clients on other machines go through nftables; without `nft` the
        // node still serves them to its own clients through the eBPF programs.
        let node_ports = match NftTable::find(layout.node_port_table()) {
            Ok(table) => Some(table),
            Err(err) => {
                tracing::warn!(error = %err, "node ports are not served to other machines");
                None
            }
        };
        let (net_client, net_stop) = (client.clone(), stop.clone());
        tasks.spawn(async move {
            let ran = flotilla_net::node::run(
                net_client, network, dataplane, node_ports, pod_cidr, net_stop,
            );
            if let Err(err) = ran.await {
                tracing::error!(error = %err, "node networking stopped");
            }
        });
        // With its own containerd the agent owns the node's pod network (the CNI bridge); the
        // routes to other nodes' pods and the egress masquerade go with it.
        if containerd.is_some() {
            match pod_network::Commands::find() {
                Ok(commands) => {
                    let routes = PodNetworkConfig {
                        node: Some(config.name.clone()),
                        egress_table: layout.egress_table(),
                        masquerade: Default::default(),
                        internal: Default::default(),
                    };
                    let run = pod_network::run(client.clone(), routes, commands, stop.clone());
                    tasks.spawn(run);
                }
                Err(err) => tracing::warn!(error = %err, "pods cannot reach other nodes' pods"),
            }
        }
        let machine = Machine::read(&config.data_dir).map_err(|err| AgentError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let listen = SocketAddr::new(unspecified(ip), config.server_port);
        server::start(listen, files, runtime.clone(), &tasks, stop.clone()).await?;
        let paths = PodPaths {
            pods_dir: config.data_dir.join("pods"),
            log_root: layout.pod_log_dir(),
            cgroup_root: layout.cgroup_parent(),
        };
        let node = node_context(
            &config.address,
            config.cluster_dns,
            &config.cluster_domain,
            paths,
            &machine,
        );
        let kubelet = Kubelet {
            name: config.name.clone(),
            address: config.address.clone(),
            server_port: config.server_port,
            status_interval: config.status_interval,
            client: client.clone(),
            runtime,
            machine: MachineSource::Host { data_dir: config.data_dir.clone() },
            node,
            services: services(client, &tasks, stop.clone()),
            cni: containerd.is_some().then(|| layout.clone()),
            pod_cidr: pod_cidr_tx,
        };
        kubelet.spawn(&tasks, stop.clone()).await?;
        Ok(Agent { stop, tasks, containerd, gossip, _claim: claim })
    }

    /// Stops the agent's work and waits for it; the agent leaves the gossip membership, so the
    /// masters mark its node unreachable at once.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.gossip.shutdown().await;
        if let Some(containerd) = &self.containerd {
            tracing::info!(pid = containerd.pid(), "containerd keeps running the pods");
        }
    }
}

/// Removes what `layout`'s node left on the machine: its pods, containerd and pod network
/// leftovers, then its service dataplane (the programs stop translating Service addresses)
/// its node ports' nftables table, and its pod network (routes to other nodes' pods, the
/// egress table). Every step runs even when an earlier one failed. Refuses, after waiting a
/// few seconds for it to go, while an agent of the node's name runs on this machine.
pub async fn reset(layout: &Layout) -> Result<(), AgentError> {
    // Never under a running agent of that name, this machine's or another cluster's.
    let data_dir = layout.base().parent().unwrap_or(layout.base());
    let _claim = NodeClaim::wait_for(layout.node(), data_dir).await?;
    let pods = containerd::reset(layout).await;
    let pod_network = match pod_network::Commands::find() {
        Ok(mut commands) => {
            let routes = commands.remove_routes().await;
            let table = commands.remove_table(&layout.egress_table()).await;
            routes.and(table)
        }
        // Without the tools no agent could have made either.
        Err(_) => Ok(()),
    };
    let dataplane = flotilla_ebpf::reset(&DataplaneConfig::for_node(layout.node()).pin_dir);
    let node_ports = match NftTable::find(layout.node_port_table()) {
        Ok(table) => table.remove().await,
        // Without nft no agent could have made the table.
        Err(_) => Ok(()),
    };
    pods?;
    dataplane?;
    pod_network?;
    Ok(node_ports?)
}

/// The masters' API addresses if every one is on loopback, where pods cannot reach them (so
/// the node relays the `kubernetes` Service to them); none otherwise.
fn loopback_masters(api_urls: &[String]) -> Vec<SocketAddr> {
    let addresses: Vec<Option<SocketAddr>> = api_urls
        .iter()
        .map(|url| {
            let uri: http::Uri = url.parse().ok()?;
            let ip: IpAddr = uri.host()?.trim_matches(['[', ']']).parse().ok()?;
            Some(SocketAddr::new(ip, uri.port_u16().unwrap_or(443)))
        })
        .collect();
    if addresses.iter().all(|a| a.is_some_and(|a| a.ip().is_loopback())) {
        addresses.into_iter().flatten().collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_masters_all_on_loopback_are_relayed() {
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let local = loopback_masters(&urls(&["https://127.0.0.1:6443", "https://[::1]:7443"]));
        assert_eq!(local, ["127.0.0.1:6443".parse().unwrap(), "[::1]:7443".parse().unwrap()]);
        assert_eq!(loopback_masters(&urls(&["https://127.0.0.1"]))[0].port(), 443);
        assert!(
            loopback_masters(&urls(&["https://127.0.0.1:1", "https://10.0.0.2:6443"])).is_empty()
        );
        assert!(loopback_masters(&urls(&["https://master.example:6443"])).is_empty());
    }
}
