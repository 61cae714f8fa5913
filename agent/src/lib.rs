//! Flotilla's node agent (its kubelet): registers the machine as a Node with its own
//! credentials (CN `system:node:<name>`, O `system:nodes`) and keeps the Node's status true,
//! writing only when something changed.
//!
//! It reaches the masters through [`upstream::Upstream`], a local forwarder that moves to
//! another master when one stops answering. It runs the node's pods through the CRI
//! ([`worker`]) in a containerd of its own ([`containerd`]), or in one given by
//! `--container-runtime-endpoint`, and reports the node Ready once the runtime and its pod
//! network are. Its networking ([`flotilla_net::node`]) load-balances Services in the eBPF
//! dataplane and answers the cluster DNS for its pods.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod containerd;
mod cri;
mod machine;
mod node;
mod pods;
mod server;
mod upstream;
mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use containerd::{Containerd, Tools};
pub use containerd::{Layout, DEFAULT_IMAGES_DIR, DEFAULT_PAUSE_IMAGE};
use cri::{CriRuntime, CriRuntimeConfig, Runtime};
use flotilla_control::events::Recorder;
use flotilla_ebpf::{Dataplane, DataplaneConfig};
use flotilla_net::dns::{parse_resolv_conf, ZoneConfig};
use flotilla_net::gossip::{Gossip, GossipConfig, GossipError, Role, Timing};
use flotilla_net::node::NodeNetConfig;
use flotilla_store::pki::TlsFiles;
pub use machine::Machine;
use node::Identity;
use pods::qos::CgroupDriver;
use pods::sandbox::{DnsSettings, NodeSettings};
use upstream::Upstream;
use worker::sync::{NodeContext, Syncer};

/// The field manager the agent writes as.
const MANAGER: &str = "flotilla-agent";
/// How soon a failed registration or status write is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the runtime's status is checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

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
    #[error("node address {0} is not an IP address (gossip needs one)")]
    NodeAddress(String),
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

/// A running agent.
pub struct Agent {
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The containerd this agent runs; it keeps running after the agent stops, as k3s'.
    containerd: Option<Containerd>,
    gossip: Gossip,
}

/// The wildcard address of `ip`'s family.
fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// `host:port` of an `https://host:port` URL, resolved.
async fn socket_address(url: &str) -> Result<(String, SocketAddr), AgentError> {
    let invalid = |reason: &str| AgentError::ApiUrl { url: url.into(), reason: reason.into() };
    let authority = url.strip_prefix("https://").ok_or_else(|| invalid("not https://"))?;
    let authority = authority.trim_end_matches('/');
    let host =
        authority.rsplit_once(':').map(|(host, _)| host).ok_or_else(|| invalid("no port"))?;
    let address = tokio::net::lookup_host(authority)
        .await
        .map_err(|err| invalid(&err.to_string()))?
        .next()
        .ok_or_else(|| invalid("resolves to nothing"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), address))
}

async fn client(
    config: &AgentConfig,
    local: SocketAddr,
    server_name: &str,
) -> Result<kube::Client, AgentError> {
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: masters
  cluster:
    server: https://{local}
    tls-server-name: {server_name}
    certificate-authority: {}
contexts:
- name: agent
  context: {{cluster: masters, user: agent}}
current-context: agent
users:
- name: agent
  user:
    client-certificate: {}
    client-key: {}
",
        config.ca_file.display(),
        config.cert_file.display(),
        config.key_file.display()
    );
    let error = |e: &dyn std::fmt::Display| AgentError::Client(e.to_string());
    let kubeconfig = Kubeconfig::from_yaml(&yaml).map_err(|e| error(&e))?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| error(&e))?;
    kube::Client::try_from(client_config).map_err(|e| error(&e))
}

impl Agent {
    /// Connects to the masters and starts registering and reporting the Node.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|err| AgentError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let mut masters = Vec::new();
        let mut server_name = String::new();
        for url in &config.api_urls {
            let (host, address) = socket_address(url).await?;
            if server_name.is_empty() {
                server_name = host;
            }
            masters.push(address);
        }
        if masters.is_empty() {
            return Err(AgentError::ApiUrl {
                url: String::new(),
                reason: "no master given".into(),
            });
        }
        // Gossip first: a restarted agent is back in the membership, under its new generation,
        // before the old one could be found dead.
        let ip: IpAddr =
            config.address.parse().map_err(|_| AgentError::NodeAddress(config.address.clone()))?;
        let gossip = Gossip::start(GossipConfig {
            name: config.name.clone(),
            role: Role::Agent,
            bind: SocketAddr::new(unspecified(ip), config.gossip_port),
            advertise: SocketAddr::new(ip, config.gossip_port),
            seeds: masters.clone(),
            timing: Timing::default(),
        })
        .await?;
        let stop = CancellationToken::new();
        let upstream =
            Upstream::start(masters, stop.clone()).await.map_err(AgentError::Upstream)?;
        let client = client(&config, upstream.local, &server_name).await?;
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
        let version = runtime.version().await?;
        let identity = Identity {
            name: config.name.clone(),
            address: config.address.clone(),
            version: format!("v1.33.0+flotilla.{}", env!("CARGO_PKG_VERSION")),
            runtime: format!("{}://{}", version.runtime_name, version.runtime_version),
            port: i32::from(config.server_port),
            runtime_problem: Some(
                "container runtime status check may not have completed yet".into(),
            ),
        };
        let (health_tx, health) = watch::channel(identity.runtime_problem.clone());
        tasks.spawn(runtime_health(runtime.clone(), health_tx, stop.clone()));
        let (pod_cidr_tx, pod_cidr) = watch::channel(None);
        tasks.spawn(pod_network(
            client.clone(),
            containerd.is_some().then(|| layout.clone()),
            config.name.clone(),
            pod_cidr_tx,
            stop.clone(),
        ));
        let dataplane = Dataplane::open(&DataplaneConfig::for_node(&config.name))?;
        let network = NodeNetConfig {
            node: config.name.clone(),
            addresses: config.address.parse().into_iter().collect(),
            cluster_dns: config.cluster_dns,
            zone: ZoneConfig { domain: config.cluster_domain.clone(), ..ZoneConfig::default() },
            upstreams: parse_resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
        };
        let (net_client, net_stop) = (client.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(err) =
                flotilla_net::node::run(net_client, network, dataplane, pod_cidr, net_stop).await
            {
                tracing::error!(error = %err, "node networking stopped");
            }
        });
        let machine = Machine::read(&config.data_dir).map_err(|err| AgentError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let files =
            TlsFiles { ca: &config.ca_file, cert: &config.cert_file, key: &config.key_file };
        let listen = SocketAddr::new(unspecified(ip), config.server_port);
        server::start(listen, files, runtime.clone(), &tasks, stop.clone()).await?;
        let node = node_context(&config, &layout, &machine);
        let syncer = Syncer {
            runtime,
            client: client.clone(),
            node: Arc::new(node),
            recorder: Recorder::new(client.clone(), "kubelet").on_host(config.name.clone()),
            services: services(client.clone(), &tasks, stop.clone()),
        };
        tasks.spawn(worker::run(syncer, config.name.clone(), stop.clone()));
        tasks.spawn(report(client, identity, health, config, stop.clone()));
        Ok(Agent { stop, tasks, containerd, gossip })
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
/// leftovers, then its service dataplane (the programs stop translating Service addresses).
pub async fn reset(layout: &Layout) -> Result<(), AgentError> {
    let pods = containerd::reset(layout).await;
    flotilla_ebpf::reset(&DataplaneConfig::for_node(layout.node()).pin_dir)?;
    Ok(pods?)
}

/// What the pod workers need to know about the node.
fn node_context(config: &AgentConfig, layout: &Layout, machine: &Machine) -> NodeContext {
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").ok();
    let settings = NodeSettings {
        dns: DnsSettings {
            cluster_dns: vec![config.cluster_dns.to_string()],
            cluster_domain: config.cluster_domain.clone(),
            resolv_conf,
            node_ips: vec![config.address.clone()],
        },
        log_root: layout.pod_log_dir().display().to_string(),
        cgroup_driver: CgroupDriver::Cgroupfs,
        cgroup_v2: machine_uses_cgroup_v2(),
        cgroup_root: layout.cgroup_parent(),
    };
    let allocatable = node::allocatable(machine);
    NodeContext {
        host_ips: vec![config.address.clone()],
        settings,
        memory_capacity: i64::try_from(machine.memory_bytes).unwrap_or(i64::MAX),
        allocatable,
        pods_dir: config.data_dir.join("pods"),
        node_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
    }
}

/// Whether `/sys/fs/cgroup` is the unified (v2) hierarchy.
fn machine_uses_cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A cache of every Service, for the environment variables pods get (service links).
fn services(
    client: kube::Client,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> kube::runtime::reflector::Store<Service> {
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(Api::<Service>::all(client), Default::default()))
            .default_backoff();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => tracing::debug!(error = %err, "watching services"),
                    None => return,
                },
            }
        }
    });
    store
}

/// Why the runtime cannot run pods, as kubelet words it; `None` when it can.
fn runtime_problem(status: &k8s_cri::v1::RuntimeStatus) -> Option<String> {
    let condition = |kind: &str| status.conditions.iter().find(|c| c.r#type == kind);
    for (kind, what) in
        [("RuntimeReady", "container runtime"), ("NetworkReady", "container runtime network")]
    {
        match condition(kind) {
            Some(c) if c.status => {}
            Some(c) => {
                return Some(format!(
                    "{what} not ready: {kind}=false reason:{} message:{}",
                    c.reason, c.message
                ))
            }
            None => return Some(format!("{what} not ready: {kind} not reported")),
        }
    }
    None
}

/// Asks the runtime for its status every few seconds and publishes what keeps pods from
/// running, if anything.
async fn runtime_health(
    runtime: CriRuntime,
    health: watch::Sender<Option<String>>,
    stop: CancellationToken,
) {
    loop {
        let problem = match runtime.status().await {
            Ok(status) => runtime_problem(&status),
            Err(err) => Some(format!("container runtime is down: {err}")),
        };
        health.send_if_modified(|current| {
            let changed = *current != problem;
            *current = problem.clone();
            changed
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

/// Waits for the masters to give the node its pod CIDR, then writes the CNI network for it.
/// Follows the pod CIDR the masters give the node: publishes it for the node's networking
/// and, when the agent runs its own containerd (`layout`), writes the CNI network from it.
async fn pod_network(
    client: kube::Client,
    layout: Option<Layout>,
    name: String,
    published: watch::Sender<Option<String>>,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut written: Option<String> = None;
    loop {
        let cidr = match nodes.get_opt(&name).await {
            Ok(node) => node.and_then(|n| n.spec).and_then(|s| s.pod_cidr),
            Err(err) => {
                tracing::debug!(error = %err, "reading the node's pod CIDR");
                None
            }
        };
        if let Some(cidr) = cidr.filter(|c| written.as_ref() != Some(c)) {
            let outcome = match &layout {
                Some(layout) => containerd::write_cni(layout, &cidr).await.map(|_| ()),
                None => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    published.send_replace(Some(cidr.clone()));
                    written = Some(cidr);
                }
                Err(err) => tracing::warn!(error = %err, "writing the pod network"),
            }
        }
        let pause = if written.is_some() { Duration::from_secs(10) } else { RETRY };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Registers the Node, then writes its status whenever it changes, until `stop`.
async fn report(
    client: kube::Client,
    mut identity: Identity,
    mut health: watch::Receiver<Option<String>>,
    config: AgentConfig,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut reported: Option<NodeStatus> = None;
    // The Node as the API has it: when the masters found this agent dead and marked the node
    // unreachable, the agent takes that as its last report, so the next one puts Ready back.
    let own = watcher::Config::default().fields(&format!("metadata.name={}", identity.name));
    let mut own = watcher(nodes.clone(), own).default_backoff().applied_objects().boxed();
    loop {
        identity.runtime_problem = health.borrow_and_update().clone();
        let outcome = match Machine::read(&config.data_dir) {
            Ok(machine) => sync(&nodes, &identity, &machine, &mut reported).await,
            Err(err) => Err(err.to_string()),
        };
        let pause = match outcome {
            Ok(()) => config.status_interval,
            Err(err) => {
                tracing::warn!(node = %identity.name, error = %err, "reporting the node failed");
                RETRY
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = health.changed() => {}
            Some(Ok(node)) = own.next() => {
                if reported.is_some() && node::ready(node.status.as_ref()) != node::ready(reported.as_ref()) {
                    tracing::info!(node = %identity.name, "the node was marked not ready; reporting it again");
                    reported = node.status;
                }
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Registers the Node if this agent has not yet, and writes its status if it changed.
async fn sync(
    nodes: &Api<Node>,
    identity: &Identity,
    machine: &Machine,
    reported: &mut Option<NodeStatus>,
) -> Result<(), String> {
    let now = jiff::Timestamp::now();
    let Some(previous) = reported.as_ref() else {
        let node = node::registration(identity, machine, now);
        let post = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
        let status = match nodes.create(&post, &node).await {
            Ok(created) => {
                tracing::info!(node = %identity.name, "registered the node");
                created.status
            }
            // Registered before (the agent restarted): take over the existing Node.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = nodes.get(&identity.name).await.map_err(|e| e.to_string())?;
                tracing::info!(node = %identity.name, "the node was registered before");
                let next = node::status(identity, machine, existing.status.as_ref(), now);
                write_status(nodes, &identity.name, &next).await?;
                Some(next)
            }
            Err(err) => return Err(err.to_string()),
        };
        *reported = status;
        return Ok(());
    };
    let next = node::status(identity, machine, Some(previous), now);
    if node::needs_update(previous, &next) {
        write_status(nodes, &identity.name, &next).await?;
        *reported = Some(next);
    }
    Ok(())
}

async fn write_status(nodes: &Api<Node>, name: &str, status: &NodeStatus) -> Result<(), String> {
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
    let patch = json!({ "status": status });
    nodes.patch_status(name, &params, &Patch::Merge(&patch)).await.map_err(|e| e.to_string())?;
    tracing::debug!(node = %name, "wrote the node status");
    Ok(())
}
