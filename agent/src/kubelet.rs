//! What every agent runs above its container runtime, the same for a node on a machine
//! ([`crate::Agent`]) and a hollow one ([`crate::HollowNodes`]): registering the Node and
//! writing its status when it changes, the node's Lease, following the pod CIDR, the runtime's
//! health, and the pod workers.
//!
//! Invariants: the Node's status is written only when something other than heartbeat times
//! changed, so an idle node writes nothing; the node reads its own Node through one watch (no
//! polling), so an idle node sends nothing either.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::containerd::{self, Layout};
use crate::cri::Runtime;
use crate::machine::{Machine, MachineSource};
use crate::node::{self, Identity};
use crate::node_lease;
use crate::pods::qos::CgroupDriver;
use crate::pods::sandbox::{DnsSettings, NodeSettings};
use crate::worker::{self, sync::NodeContext, sync::Syncer};
use crate::AgentError;
use flotilla_control::events::Recorder;

/// The field manager the agent writes as.
const MANAGER: &str = "flotilla-agent";
/// How soon a failed registration or status write is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the runtime's status is checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// One node's work above its runtime `R`, ready to spawn.
pub(crate) struct Kubelet<R> {
    /// The Node's name.
    pub name: String,
    /// The node's address (InternalIP).
    pub address: String,
    /// The port of the agent's own API, reported in the Node's status.
    pub server_port: u16,
    /// How often the machine is looked at again (a write follows only a change).
    pub status_interval: Duration,
    /// The API client, with the node's own credentials.
    pub client: kube::Client,
    pub runtime: R,
    pub machine: MachineSource,
    pub node: NodeContext,
    /// Every Service, for the environment variables of pods (service links).
    pub services: Store<Service>,
    /// Where the CNI network is written once the pod CIDR is known: the agent's own
    /// containerd; `None` when the runtime configures its network itself.
    pub cni: Option<Layout>,
    /// Where the pod CIDR is published once known (and, with `cni`, written).
    pub pod_cidr: watch::Sender<Option<String>>,
}

impl<R: Runtime> Kubelet<R> {
    /// Asks the runtime who it is, then spawns the node's tasks on `tasks` until `stop`.
    pub async fn spawn(
        self,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<(), AgentError> {
        let version = self.runtime.version().await?;
        let identity = Identity {
            name: self.name.clone(),
            address: self.address,
            version: format!("v1.33.0+flotilla.{}", env!("CARGO_PKG_VERSION")),
            runtime: format!("{}://{}", version.runtime_name, version.runtime_version),
            port: i32::from(self.server_port),
            runtime_problem: Some(
                "container runtime status check may not have completed yet".into(),
            ),
        };
        let (health_tx, health) = watch::channel(identity.runtime_problem.clone());
        tasks.spawn(runtime_health(self.runtime.clone(), health_tx, stop.clone()));
        let own = follow_node(self.client.clone(), &self.name, tasks, stop.clone());
        tasks.spawn(pod_network(own.clone(), self.cni, self.pod_cidr, stop.clone()));
        let syncer = Syncer {
            runtime: self.runtime,
            client: self.client.clone(),
            node: Arc::new(self.node),
            recorder: Recorder::new(self.client.clone(), "kubelet").on_host(self.name.clone()),
            services: self.services,
        };
        tasks.spawn(worker::run(syncer, self.name, stop.clone()));
        let status = StatusLoop {
            client: self.client,
            identity,
            machine: self.machine,
            interval: self.status_interval,
        };
        tasks.spawn(status.run(health, own, stop));
        Ok(())
    }
}

/// Where a node keeps its pods' files.
pub(crate) struct PodPaths {
    /// Each pod's directory (`<uid>/`: volumes, hosts file) is made here.
    pub pods_dir: PathBuf,
    /// The root of the pod log directories.
    pub log_root: PathBuf,
    /// The cgroup every pod cgroup goes under (cgroupfs driver).
    pub cgroup_root: String,
}

/// What the pod workers need to know about the node.
pub(crate) fn node_context(
    address: &str,
    cluster_dns: Ipv4Addr,
    cluster_domain: &str,
    paths: PodPaths,
    machine: &Machine,
) -> NodeContext {
    let settings = NodeSettings {
        dns: DnsSettings {
            cluster_dns: vec![cluster_dns.to_string()],
            cluster_domain: cluster_domain.to_owned(),
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").ok(),
            node_ips: vec![address.to_owned()],
        },
        log_root: paths.log_root.display().to_string(),
        cgroup_driver: CgroupDriver::Cgroupfs,
        cgroup_v2: std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        cgroup_root: paths.cgroup_root,
    };
    NodeContext {
        host_ips: vec![address.to_owned()],
        settings,
        memory_capacity: i64::try_from(machine.memory_bytes).unwrap_or(i64::MAX),
        allocatable: node::allocatable(machine),
        pods_dir: paths.pods_dir,
        node_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
    }
}

/// A cache of every Service, for the environment variables pods get (service links).
pub(crate) fn services(
    client: kube::Client,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Store<Service> {
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

/// Follows the node's own Node as the API has it, through one watch: the status loop and the
/// pod network both read it.
fn follow_node(
    client: kube::Client,
    name: &str,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> watch::Receiver<Option<Node>> {
    let (publish, own) = watch::channel(None);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let nodes = watcher(Api::<Node>::all(client), config).default_backoff().applied_objects();
    let name = name.to_owned();
    tasks.spawn(async move {
        let mut nodes = std::pin::pin!(nodes);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = nodes.next() => match next {
                    Some(Ok(node)) => {
                        publish.send_replace(Some(node));
                    }
                    Some(Err(err)) => tracing::debug!(node = %name, error = %err, "watching the node"),
                    None => return,
                },
            }
        }
    });
    own
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
async fn runtime_health<R: Runtime>(
    runtime: R,
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

/// Follows the pod CIDR the masters give the node: when the agent runs its own containerd
/// (`layout`), writes the CNI network for it, then publishes it (for the node's networking, or
/// a hollow runtime's addresses). A failed write is tried again every second.
async fn pod_network(
    mut own: watch::Receiver<Option<Node>>,
    layout: Option<Layout>,
    published: watch::Sender<Option<String>>,
    stop: CancellationToken,
) {
    let mut written: Option<String> = None;
    loop {
        let cidr = own
            .borrow_and_update()
            .as_ref()
            .and_then(|node| node.spec.as_ref())
            .and_then(|spec| spec.pod_cidr.clone());
        let mut failed = false;
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
                Err(err) => {
                    tracing::warn!(error = %err, "writing the pod network");
                    failed = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = own.changed(), if !failed => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(RETRY), if failed => {}
        }
    }
}

/// Registers the Node, then writes its status whenever it changes.
struct StatusLoop {
    client: kube::Client,
    identity: Identity,
    machine: MachineSource,
    interval: Duration,
}

impl StatusLoop {
    /// Runs until `stop`; `health` is the runtime's problem, `own` the Node as the API has it.
    async fn run(
        mut self,
        mut health: watch::Receiver<Option<String>>,
        mut own: watch::Receiver<Option<Node>>,
        stop: CancellationToken,
    ) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut reported: Option<NodeStatus> = None;
        let mut leased = false;
        loop {
            self.identity.runtime_problem = health.borrow_and_update().clone();
            let mut outcome = match self.machine.read() {
                Ok(machine) => sync(&nodes, &self.identity, &machine, &mut reported).await,
                Err(err) => Err(err.to_string()),
            };
            if outcome.is_ok() && !leased {
                outcome = match nodes.get(&self.identity.name).await {
                    Ok(node) => node_lease::ensure(self.client.clone(), &node, MANAGER).await,
                    Err(err) => Err(err),
                }
                .map_err(|err| format!("writing the node's lease: {err}"));
                leased = outcome.is_ok();
            }
            let pause = match outcome {
                Ok(()) => self.interval,
                Err(err) => {
                    let name = &self.identity.name;
                    tracing::warn!(node = %name, error = %err, "reporting the node failed");
                    RETRY
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = health.changed() => {}
                // When the masters found this agent dead and marked the node unreachable, the
                // agent takes that as its last report, so the next one puts Ready back.
                Ok(()) = own.changed() => {
                    let seen = own.borrow_and_update().as_ref().map(|node| node.status.clone());
                    if let Some(seen) = seen {
                        if reported.is_some() && node::ready(seen.as_ref()) != node::ready(reported.as_ref()) {
                            tracing::info!(node = %self.identity.name, "the node was marked not ready; reporting it again");
                            reported = seen;
                        }
                    }
                }
                _ = tokio::time::sleep(pause) => {}
            }
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
