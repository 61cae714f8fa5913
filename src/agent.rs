//! `flotilla agent`: one node's agent.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_agent::{Agent, AgentConfig};

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
    /// The agent's client certificate (CN system:node:<name>, O system:nodes) and key.
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
    };
    let agent = Agent::start(config).await.context("starting the agent")?;
    tracing::info!(node = %args.name, "agent started");
    crate::up::shutdown_signal().await;
    agent.shutdown().await;
    Ok(())
}
