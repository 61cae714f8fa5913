//! Flotilla's node agent (its kubelet): registers the machine as a Node with its own
//! credentials (CN `system:node:<name>`, O `system:nodes`) and keeps the Node's status true,
//! writing only when something changed.
//!
//! It reaches the masters through [`upstream::Upstream`], a local forwarder that moves to
//! another master when one stops answering. Running pods through containerd's CRI, probes,
//! volumes and gossip are built on top of this.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod machine;
mod node;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use machine::Machine;
use node::Identity;
use upstream::Upstream;

/// The field manager the agent writes as.
const MANAGER: &str = "flotilla-agent";
/// How soon a failed registration or status write is tried again.
const RETRY: Duration = Duration::from_secs(1);

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
}

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
}

/// A running agent.
pub struct Agent {
    stop: CancellationToken,
    tasks: TaskTracker,
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
        let stop = CancellationToken::new();
        let upstream =
            Upstream::start(masters, stop.clone()).await.map_err(AgentError::Upstream)?;
        let client = client(&config, upstream.local, &server_name).await?;
        let tasks = TaskTracker::new();
        let identity = Identity {
            name: config.name.clone(),
            address: config.address.clone(),
            version: format!("v1.33.0+flotilla.{}", env!("CARGO_PKG_VERSION")),
            runtime: String::new(),
            port: 10250,
            // Pods run once the agent drives containerd; until then it says so.
            runtime_problem: Some(
                "container runtime network not ready: the agent runs no container runtime yet"
                    .into(),
            ),
        };
        tasks.spawn(report(client, identity, config, stop.clone()));
        Ok(Agent { stop, tasks })
    }

    /// Stops the agent's work and waits for it.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Registers the Node, then writes its status whenever it changes, until `stop`.
async fn report(
    client: kube::Client,
    identity: Identity,
    config: AgentConfig,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut reported: Option<NodeStatus> = None;
    loop {
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
