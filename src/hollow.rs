//! `flotilla hollow`: many simulated nodes in one process, for scale tests (kubemark's hollow
//! nodes): each registers a Node, reports its status, gossips and runs the pods bound to it
//! through the agent's pod workers over an in-memory runtime.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_agent::{HollowConfig, HollowNodes, SimulatedSize, DEFAULT_CLUSTER_DNS};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// File descriptors one hollow node holds: its gossip socket, its API's listener, its
/// connections to the masters (the pods' and the Node's watches, requests) and their other
/// ends in the forwarder.
const DESCRIPTORS_PER_NODE: u64 = 8;

#[derive(Args, Clone, Debug)]
pub struct HollowArgs {
    /// How many hollow nodes to run.
    #[arg(long)]
    pub nodes: usize,
    /// The nodes are named PREFIX1 to PREFIX<NODES>.
    #[arg(long, default_value = "hollow-")]
    pub prefix: String,
    /// The masters' Kubernetes API URLs, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub api_servers: Vec<String>,
    /// The cluster CA certificate (`flotilla up` keeps it in DIR/pki/ca.crt).
    #[arg(long)]
    pub ca_file: PathBuf,
    /// The cluster CA's key, from which every node's certificate (CN system:node:<name>, O
    /// system:nodes) is issued at start (`flotilla up`: DIR/pki/ca.key).
    #[arg(long)]
    pub ca_key_file: PathBuf,
    /// Where the nodes' certificates and pod directories go.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// How often each node looks at its simulated machine again, in seconds (the Node is
    /// written only when something changed).
    #[arg(long, default_value_t = 10)]
    pub status_interval: u64,
    /// The DNS server address pods are given.
    #[arg(long, default_value = DEFAULT_CLUSTER_DNS)]
    pub cluster_dns: Ipv4Addr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// CPUs each simulated machine has.
    #[arg(long, default_value_t = SimulatedSize::default().cpus)]
    pub cpus: u64,
    /// Memory each simulated machine has, in GiB.
    #[arg(long, default_value_t = SimulatedSize::default().memory_bytes >> 30)]
    pub memory_gib: u64,
    /// How many nodes start per second at most (their registrations and TLS handshakes
    /// spread over the start).
    #[arg(long, default_value_t = 20)]
    pub start_rate: u32,
}

/// Raises the soft limit of open files to the hard one: a thousand nodes need several
/// thousand descriptors, more than the usual soft limit of 1024.
fn raise_open_files_limit(nodes: usize) {
    let needed = nodes as u64 * DESCRIPTORS_PER_NODE + 256;
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %err, "raising the open files limit");
            }
            if hard < needed {
                tracing::warn!(limit = hard, needed, "the open files limit may be too low");
            }
        }
        Ok((soft, _)) if soft < needed => {
            tracing::warn!(limit = soft, needed, "the open files limit may be too low");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "reading the open files limit"),
    }
}

pub async fn run(args: HollowArgs) -> anyhow::Result<()> {
    raise_open_files_limit(args.nodes);
    let config = HollowConfig {
        count: args.nodes,
        prefix: args.prefix,
        api_urls: args.api_servers,
        ca_file: args.ca_file,
        ca_key_file: args.ca_key_file,
        data_dir: args.data_dir,
        status_interval: Duration::from_secs(args.status_interval.max(1)),
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        size: SimulatedSize {
            cpus: args.cpus,
            memory_bytes: args.memory_gib << 30,
            ..SimulatedSize::default()
        },
        start_rate: args.start_rate,
    };
    let started = std::time::Instant::now();
    let nodes = tokio::select! {
        nodes = HollowNodes::start(config) => nodes.context("starting the hollow nodes")?,
        _ = crate::up::shutdown_signal() => anyhow::bail!("interrupted while starting"),
    };
    tracing::info!(nodes = nodes.len(), elapsed = ?started.elapsed(), "hollow nodes started");
    crate::up::shutdown_signal().await;
    nodes.shutdown().await;
    Ok(())
}
