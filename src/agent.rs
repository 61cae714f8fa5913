//! `flotilla agent`: one node's agent.

mod memory;

pub use memory::return_freed_memory_at_once;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_agent::{
    Agent, AgentConfig, Layout, DEFAULT_CLUSTER_DNS, DEFAULT_GOSSIP_PORT, DEFAULT_IMAGES_DIR,
    DEFAULT_PAUSE_IMAGE, DEFAULT_SERVER_PORT,
};

#[derive(Args, Clone, Debug)]
pub struct AgentArgs {
    /// The Node's name.
    #[arg(long)]
    pub name: String,
    /// The masters' Kubernetes API URLs, comma separated (the agent moves to another when one
    /// stops answering).
    #[arg(long, value_delimiter = ',', required = true)]
    pub api_servers: Vec<String>,
    /// The cluster CA certificate.
    #[arg(long)]
    pub ca_file: PathBuf,
    /// The agent's certificate (CN system:node:<name>, O system:nodes; client use towards the
    /// masters, server use for NODE_IP) and key.
    #[arg(long)]
    pub cert_file: PathBuf,
    #[arg(long)]
    pub key_file: PathBuf,
    /// The node's address, as other nodes and the masters reach it.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: String,
    /// Where the agent keeps its state.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// How often the machine is looked at again, in seconds (the Node is written only when
    /// something changed).
    #[arg(long, default_value_t = 10)]
    pub status_interval: u64,
    /// The CRI socket of a running container runtime; without it the agent runs a containerd
    /// of its own under DATA_DIR/containerd.
    #[arg(long)]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Image archives (OCI or Docker `*.tar`) to import at start, or directories of them;
    /// repeatable.
    #[arg(long = "image", default_value = DEFAULT_IMAGES_DIR)]
    pub images: Vec<PathBuf>,
    /// The sandbox (pause) image.
    #[arg(long, default_value = DEFAULT_PAUSE_IMAGE)]
    pub pause_image: String,
    /// The DNS server address pods are given; the agent answers it for its own pods. The
    /// masters create `kube-system/kube-dns` on the tenth address of the service range.
    #[arg(long, default_value = DEFAULT_CLUSTER_DNS)]
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The UDP port the agent gossips on, at NODE_IP. Masters gossip on their API port, so
    /// the agent joins through the API servers' addresses.
    #[arg(long, default_value_t = DEFAULT_GOSSIP_PORT)]
    pub gossip_port: u16,
    /// The TCP port of the agent's HTTPS API at NODE_IP (kubelet's port), through which the
    /// masters serve `kubectl logs`. The certificate must be valid for NODE_IP as a server.
    #[arg(long, default_value_t = DEFAULT_SERVER_PORT)]
    pub kubelet_port: u16,
    /// A network namespace to run in (a file such as /run/netns/NAME): several agents on one
    /// machine, each its own node. The agent's containerd and pods' networking live there too.
    #[arg(long)]
    pub netns: Option<PathBuf>,
}

/// `flotilla reset`: what a node's agent ran, removed.
#[derive(Args, Clone, Debug)]
pub struct ResetArgs {
    /// The Node's name.
    #[arg(long)]
    pub name: String,
    /// The agent's data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The network namespace the agent ran in (its `--netns`).
    #[arg(long)]
    pub netns: Option<PathBuf>,
}

/// Moves this process into the network namespace at `path`. Only the calling thread moves, so
/// it must run before any other thread starts.
pub fn join_network_namespace(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the network namespace {}", path.display()))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("joining the network namespace {}", path.display()))?;
    Ok(())
}

/// Stops and removes every pod of the node's containerd, its network leftovers and pod
/// cgroups, then stops containerd and detaches the node's service dataplane.
pub async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let layout = Layout::new(&args.data_dir, &args.name)?;
    flotilla_agent::reset(&layout).await.context("resetting the node")?;
    Ok(())
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = AgentConfig {
        name: args.name.clone(),
        api_urls: args.api_servers,
        ca_file: args.ca_file,
        cert_file: args.cert_file,
        key_file: args.key_file,
        address: args.node_ip,
        data_dir: args.data_dir,
        status_interval: Duration::from_secs(args.status_interval.max(1)),
        runtime_endpoint: args.container_runtime_endpoint,
        images: args.images,
        pause_image: args.pause_image,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        gossip_port: args.gossip_port,
        server_port: args.kubelet_port,
    };
    let agent = Agent::start(config).await.context("starting the agent")?;
    match memory::release_start_only_code() {
        Ok(kb) => tracing::info!(node = %args.name, code_unmapped_kb = kb, "agent started"),
        Err(error) => tracing::warn!(%error, "agent started; its start-only code stays mapped"),
    }
    crate::up::shutdown_signal().await;
    agent.shutdown().await;
    Ok(())
}
