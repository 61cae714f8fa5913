//! [`HollowRuntime`]: a container runtime that keeps sandboxes, containers and images in memory
//! and runs nothing, for hollow nodes (`flotilla hollow`, Kubernetes' kubemark): many simulated
//! nodes in one process whose pods go through exactly the agent's pod workers, the same code
//! as on a real node, down to the [`Runtime`] calls.
//!
//! What it simulates, and how it answers where the real runtime would do something:
//! - A sandbox is ready at once, with the next free address of the node's pod CIDR (from
//!   `.2`, the bridge holding `.1`, as `host-local` allocates), released when it stops. A
//!   host-network sandbox has no address of its own. Until the node has a pod CIDR the runtime
//!   reports its network not ready, as containerd does before its CNI configuration exists, so
//!   the node is not Ready before it could give pods addresses.
//! - A container runs from `start_container` until it is stopped or removed; a stopped one
//!   exits with code 0 (`Completed`), as a process ending on SIGTERM. No process exists, so
//!   nothing ever exits by itself and no log is written.
//! - Every image is pulled at once (and then present); `exec_sync` succeeds (exit code 0, no
//!   output) in a running container; streaming sessions are refused.
//!
//! The runtime's errors follow containerd's where the agent tells them apart: unknown ids are
//! `NotFound`, a name reused within a pod or an operation on an object in the wrong state is
//! refused.
//!
//! Invariant: every call takes the state's lock once and never holds it across an await, so
//! calls are atomic with respect to each other, as the CRI's are.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerState, ContainerStatus, Image, ImageSpec,
    LinuxPodSandboxStatus, Namespace, NamespaceMode, NamespaceOption, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus, RuntimeCondition,
    RuntimeStatus,
};
use tokio::sync::watch;

use super::{CriError, ExecOutput, Runtime, RuntimeVersion, StreamRequest};

/// The runtime name nodes report (`containerRuntimeVersion: hollow://<version>`).
pub const HOLLOW_RUNTIME_NAME: &str = "hollow";
/// The exit code of a stopped container.
const STOPPED_EXIT_CODE: i32 = 0;

/// An in-memory runtime for one hollow node. Clones share the node's state.
#[derive(Clone)]
pub struct HollowRuntime {
    state: Arc<Mutex<State>>,
    /// The node's pod CIDR once the masters gave it.
    pod_cidr: watch::Receiver<Option<String>>,
}

/// Everything the node's runtime holds.
#[derive(Default)]
struct State {
    sandboxes: HashMap<String, SandboxRecord>,
    containers: HashMap<String, ContainerRecord>,
    /// Pulled images by the reference they were pulled as.
    images: HashMap<String, Image>,
    /// Pod addresses held by sandboxes that have not stopped.
    addresses: BTreeSet<Ipv4Addr>,
    /// Makes ids unique within the process: a per-runtime random prefix and a counter.
    id_prefix: u64,
    ids: u64,
}

struct SandboxRecord {
    status: PodSandboxStatus,
    /// Where the sandbox's container logs would go (container log paths are relative to it).
    log_directory: String,
    address: Option<Ipv4Addr>,
}

struct ContainerRecord {
    status: ContainerStatus,
    sandbox_id: String,
}

/// Why no pod address could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("pod CIDR {0:?} is not an IPv4 network (hollow nodes give IPv4 addresses only)")]
    NotIpv4(String),
    #[error("no free address left in pod CIDR {0}")]
    Exhausted(String),
}

impl HollowRuntime {
    /// A runtime holding nothing; pods get addresses from the CIDR `pod_cidr` publishes.
    pub fn new(pod_cidr: watch::Receiver<Option<String>>) -> HollowRuntime {
        let id_prefix = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let state = State { id_prefix, ..State::default() };
        HollowRuntime { state: Arc::new(Mutex::new(state)), pod_cidr }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole records behind (every call inserts or
        // replaces records only after building them), so the state stays usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Nanoseconds since the epoch, as CRI timestamps are.
fn now_nanos() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// A stable content-like id for an image reference (`sha256:` and 64 hex digits).
fn image_id(reference: &str) -> String {
    let mut id = String::from("sha256:");
    for salt in 0u8..4 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (salt, reference).hash(&mut hasher);
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id
}

/// The lowest address of `cidr` that is neither the network, its first address (the pod
/// network's gateway), its broadcast address nor in `used`.
pub fn next_free_address(
    cidr: &str,
    used: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr, AllocationError> {
    let not_ipv4 = || AllocationError::NotIpv4(cidr.to_owned());
    let (network, prefix) = cidr.split_once('/').ok_or_else(not_ipv4)?;
    let network: Ipv4Addr = network.parse().map_err(|_| not_ipv4())?;
    let prefix: u32 = prefix.parse().map_err(|_| not_ipv4())?;
    if prefix > 30 {
        return Err(AllocationError::Exhausted(cidr.to_owned()));
    }
    let size = 1u64 << (32 - prefix);
    let base = u64::from(u32::from(network)) & !(size - 1);
    (base + 2..base + size - 1)
        .filter_map(|address| u32::try_from(address).ok().map(Ipv4Addr::from))
        .find(|address| !used.contains(address))
        .ok_or_else(|| AllocationError::Exhausted(cidr.to_owned()))
}

/// Whether `labels` has every pair of `selector`.
fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Whether a sandbox passes every set field of `filter` (an id matches by prefix, as
/// containerd's does).
fn sandbox_matches(filter: &PodSandboxFilter, sandbox: &PodSandboxStatus) -> bool {
    sandbox.id.starts_with(&filter.id)
        && filter.state.as_ref().is_none_or(|wanted| wanted.state == sandbox.state)
        && labels_match(&filter.label_selector, &sandbox.labels)
}

/// Whether a container passes every set field of `filter`.
fn container_matches(filter: &ContainerFilter, container: &ContainerRecord) -> bool {
    container.status.id.starts_with(&filter.id)
        && (filter.pod_sandbox_id.is_empty() || filter.pod_sandbox_id == container.sandbox_id)
        && filter.state.as_ref().is_none_or(|wanted| wanted.state == container.status.state)
        && labels_match(&filter.label_selector, &container.status.labels)
}

/// Whether the sandbox shares the node's network namespace.
fn host_network(config: &PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|linux| linux.security_context.as_ref())
        .and_then(|context| context.namespace_options.as_ref())
        .is_some_and(|options| options.network == NamespaceMode::Node as i32)
}

fn not_found(operation: &'static str, what: &str, id: &str) -> CriError {
    CriError::NotFound { operation, message: format!("{what} {id:?}: not found") }
}

fn refused(operation: &'static str, code: tonic::Code, message: String) -> CriError {
    CriError::Rpc { operation, code, message }
}

/// Marks a running or created container exited now.
fn exit(status: &mut ContainerStatus, at: i64) {
    if status.state == ContainerState::ContainerExited as i32 {
        return;
    }
    status.state = ContainerState::ContainerExited as i32;
    status.finished_at = at;
    status.exit_code = STOPPED_EXIT_CODE;
    status.reason = "Completed".into();
}

impl State {
    fn next_id(&mut self) -> String {
        self.ids += 1;
        format!("{:016x}{:048x}", self.id_prefix, self.ids)
    }

    /// Stops the sandbox's containers and releases its address.
    fn stop_sandbox(&mut self, sandbox_id: &str, at: i64) {
        for container in self.containers.values_mut().filter(|c| c.sandbox_id == sandbox_id) {
            exit(&mut container.status, at);
        }
        if let Some(sandbox) = self.sandboxes.get_mut(sandbox_id) {
            sandbox.status.state = PodSandboxState::SandboxNotready as i32;
            if let Some(address) = sandbox.address.take() {
                self.addresses.remove(&address);
            }
        }
    }
}

impl Runtime for HollowRuntime {
    async fn version(&self) -> Result<RuntimeVersion, CriError> {
        Ok(RuntimeVersion {
            runtime_name: HOLLOW_RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self) -> Result<RuntimeStatus, CriError> {
        let network = if self.pod_cidr.borrow().is_some() {
            RuntimeCondition { r#type: "NetworkReady".into(), status: true, ..Default::default() }
        } else {
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: "Network plugin returns error: the node has no pod CIDR yet".into(),
            }
        };
        let runtime =
            RuntimeCondition { r#type: "RuntimeReady".into(), status: true, ..Default::default() };
        Ok(RuntimeStatus { conditions: vec![runtime, network] })
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, CriError> {
        Ok(self.lock().images.get(image).cloned())
    }

    async fn pull_image(
        &self,
        image: &str,
        _sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, CriError> {
        if image.is_empty() {
            return Err(refused("PullImage", tonic::Code::InvalidArgument, "no image".into()));
        }
        let id = image_id(image);
        let pulled = Image {
            id: id.clone(),
            repo_tags: vec![image.to_owned()],
            spec: Some(ImageSpec { image: image.to_owned(), ..Default::default() }),
            ..Default::default()
        };
        self.lock().images.insert(image.to_owned(), pulled);
        Ok(id)
    }

    async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, CriError> {
        const OPERATION: &str = "RunPodSandbox";
        let metadata = config.metadata.clone().unwrap_or_default();
        let host = host_network(&config);
        let cidr = self.pod_cidr.borrow().clone();
        let mut state = self.lock();
        let taken = state.sandboxes.values().any(|s| s.status.metadata.as_ref() == Some(&metadata));
        if taken {
            let name = format!(
                "{}_{}_{}_{}",
                metadata.name, metadata.namespace, metadata.uid, metadata.attempt
            );
            let message = format!("failed to reserve sandbox name {name:?}: name is reserved");
            return Err(refused(OPERATION, tonic::Code::Unknown, message));
        }
        let address = if host {
            None
        } else {
            let Some(cidr) = cidr else {
                let message = "failed to setup network for sandbox: the node has no pod CIDR";
                return Err(refused(OPERATION, tonic::Code::Unknown, message.into()));
            };
            let address = next_free_address(&cidr, &state.addresses).map_err(|err| {
                refused(OPERATION, tonic::Code::Unknown, format!("failed to setup network: {err}"))
            })?;
            state.addresses.insert(address);
            Some(address)
        };
        let id = state.next_id();
        let options = NamespaceOption {
            network: if host { NamespaceMode::Node } else { NamespaceMode::Pod } as i32,
            ..Default::default()
        };
        let status = PodSandboxStatus {
            id: id.clone(),
            metadata: Some(metadata),
            state: PodSandboxState::SandboxReady as i32,
            created_at: now_nanos(),
            network: Some(PodSandboxNetworkStatus {
                ip: address.map(|a| a.to_string()).unwrap_or_default(),
                additional_ips: Vec::new(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace { options: Some(options) }),
            }),
            labels: config.labels,
            annotations: config.annotations,
            runtime_handler: runtime_handler.to_owned(),
        };
        let record = SandboxRecord { status, log_directory: config.log_directory, address };
        state.sandboxes.insert(id.clone(), record);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut state = self.lock();
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(not_found("StopPodSandbox", "sandbox", sandbox_id));
        }
        state.stop_sandbox(sandbox_id, now_nanos());
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut state = self.lock();
        state.stop_sandbox(sandbox_id, now_nanos());
        state.sandboxes.remove(sandbox_id);
        state.containers.retain(|_, container| container.sandbox_id != sandbox_id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, CriError> {
        let state = self.lock();
        let sandbox = state.sandboxes.get(sandbox_id);
        sandbox
            .map(|s| s.status.clone())
            .ok_or_else(|| not_found("PodSandboxStatus", "sandbox", sandbox_id))
    }

    async fn list_pod_sandboxes(
        &self,
        filter: PodSandboxFilter,
    ) -> Result<Vec<PodSandbox>, CriError> {
        let state = self.lock();
        let matching = state.sandboxes.values().map(|s| &s.status);
        Ok(matching
            .filter(|status| sandbox_matches(&filter, status))
            .map(|status| PodSandbox {
                id: status.id.clone(),
                metadata: status.metadata.clone(),
                state: status.state,
                created_at: status.created_at,
                labels: status.labels.clone(),
                annotations: status.annotations.clone(),
                runtime_handler: status.runtime_handler.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        _sandbox_config: PodSandboxConfig,
    ) -> Result<String, CriError> {
        const OPERATION: &str = "CreateContainer";
        let mut state = self.lock();
        let Some(sandbox) = state.sandboxes.get(sandbox_id) else {
            return Err(not_found(OPERATION, "sandbox", sandbox_id));
        };
        if sandbox.status.state != PodSandboxState::SandboxReady as i32 {
            let message = format!("sandbox {sandbox_id:?} is not ready");
            return Err(refused(OPERATION, tonic::Code::FailedPrecondition, message));
        }
        let log_path = match (sandbox.log_directory.as_str(), config.log_path.as_str()) {
            (_, "") => String::new(),
            ("", path) => path.to_owned(),
            (directory, path) => format!("{}/{path}", directory.trim_end_matches('/')),
        };
        let metadata = config.metadata.clone().unwrap_or_default();
        let taken = state
            .containers
            .values()
            .any(|c| c.sandbox_id == sandbox_id && c.status.metadata.as_ref() == Some(&metadata));
        if taken {
            let message = format!(
                "failed to reserve container name {:?} (attempt {}): name is reserved",
                metadata.name, metadata.attempt
            );
            return Err(refused(OPERATION, tonic::Code::Unknown, message));
        }
        let image = config.image.clone().unwrap_or_default();
        let image_ref = state
            .images
            .get(&image.image)
            .map(|found| found.id.clone())
            .unwrap_or_else(|| image_id(&image.image));
        let id = state.next_id();
        let status = ContainerStatus {
            id: id.clone(),
            metadata: Some(metadata),
            state: ContainerState::ContainerCreated as i32,
            created_at: now_nanos(),
            image: Some(image),
            image_id: image_ref.clone(),
            image_ref,
            labels: config.labels,
            annotations: config.annotations,
            mounts: config.mounts,
            log_path,
            ..Default::default()
        };
        let record = ContainerRecord { status, sandbox_id: sandbox_id.to_owned() };
        state.containers.insert(id.clone(), record);
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), CriError> {
        const OPERATION: &str = "StartContainer";
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(container_id) else {
            return Err(not_found(OPERATION, "container", container_id));
        };
        if container.status.state != ContainerState::ContainerCreated as i32 {
            let message = format!("container {container_id:?} is not in created state");
            return Err(refused(OPERATION, tonic::Code::FailedPrecondition, message));
        }
        container.status.state = ContainerState::ContainerRunning as i32;
        container.status.started_at = now_nanos();
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, _grace: Duration) -> Result<(), CriError> {
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(container_id) else {
            return Err(not_found("StopContainer", "container", container_id));
        };
        // A container never started has nothing to stop and stays created, as in containerd.
        if container.status.state == ContainerState::ContainerRunning as i32 {
            exit(&mut container.status, now_nanos());
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), CriError> {
        self.lock().containers.remove(container_id);
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, CriError> {
        let state = self.lock();
        let container = state.containers.get(container_id);
        container
            .map(|c| c.status.clone())
            .ok_or_else(|| not_found("ContainerStatus", "container", container_id))
    }

    async fn list_containers(&self, filter: ContainerFilter) -> Result<Vec<Container>, CriError> {
        let state = self.lock();
        let matching = state.containers.values().filter(|c| container_matches(&filter, c));
        Ok(matching
            .map(|container| {
                let status = &container.status;
                Container {
                    id: status.id.clone(),
                    pod_sandbox_id: container.sandbox_id.clone(),
                    metadata: status.metadata.clone(),
                    image: status.image.clone(),
                    image_ref: status.image_ref.clone(),
                    state: status.state,
                    created_at: status.created_at,
                    labels: status.labels.clone(),
                    annotations: status.annotations.clone(),
                    image_id: status.image_id.clone(),
                }
            })
            .collect())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        _command: Vec<String>,
        _timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        const OPERATION: &str = "ExecSync";
        let state = self.lock();
        let Some(container) = state.containers.get(container_id) else {
            return Err(not_found(OPERATION, "container", container_id));
        };
        if container.status.state != ContainerState::ContainerRunning as i32 {
            let message = format!("container {container_id:?} is not running");
            return Err(refused(OPERATION, tonic::Code::FailedPrecondition, message));
        }
        Ok(ExecOutput { stdout: Vec::new(), stderr: Vec::new(), exit_code: 0 })
    }

    async fn stream_url(&self, request: StreamRequest) -> Result<String, CriError> {
        let operation = match request {
            StreamRequest::Exec(_) => "Exec",
            StreamRequest::Attach(_) => "Attach",
            StreamRequest::PortForward(_) => "PortForward",
        };
        let message = "a hollow node runs no processes to stream from".to_owned();
        Err(refused(operation, tonic::Code::Unimplemented, message))
    }
}

#[cfg(test)]
mod tests;
