//! What the caller observed on the node, mapped from CRI statuses into plain structs so the
//! status and restart decisions never see protobuf types or do IO.
//!
//! Invariant: one [`Observed`] describes one pod: its newest sandbox, every container instance
//! the runtime still knows (old exited instances included, which `lastState` and crash-loop
//! back-off read), the latest probe results and the last start failure of each container.

use std::collections::BTreeMap;

use jiff::Timestamp;

/// The pod's newest sandbox as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxState {
    /// Sandbox ID.
    pub id: String,
    /// Sandbox metadata attempt; a replacement sandbox gets `attempt + 1`.
    pub attempt: u32,
    /// The sandbox is `SANDBOX_READY`.
    pub ready: bool,
    /// Pod IPs the network plugin assigned (empty for a host-network sandbox).
    pub ips: Vec<String>,
    /// The sandbox runs in the node's network namespace.
    pub host_network: bool,
}

/// A container's CRI state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunState {
    /// Created but never started (or failed to start).
    #[default]
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime could not tell.
    Unknown,
}

/// One container instance as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerState {
    /// Runtime container ID (without the `containerd://` prefix).
    pub id: String,
    /// Sandbox the instance belongs to.
    pub sandbox_id: String,
    /// Container name (label `io.kubernetes.container.name`).
    pub name: String,
    /// Restart count this instance was created with (annotation
    /// `io.kubernetes.container.restartCount`).
    pub attempt: u32,
    /// The CRI state.
    pub state: RunState,
    /// Exit code, for exited instances.
    pub exit_code: i32,
    /// The runtime's reason for exiting (`Completed`, `Error`, `OOMKilled`, ...); when absent,
    /// `Completed` or `Error` is derived from the exit code as containerd does.
    pub reason: Option<String>,
    /// The runtime's message plus the termination message, if any.
    pub message: Option<String>,
    /// When the instance was created; orders instances of the same container.
    pub created_at: Timestamp,
    /// When it started, unless it never did.
    pub started_at: Option<Timestamp>,
    /// When it exited, for exited instances.
    pub finished_at: Option<Timestamp>,
    /// Image as the runtime reports it (`status.containerStatuses[].image`).
    pub image: String,
    /// Digested image reference (`imageID`).
    pub image_ref: String,
    /// Spec hash the instance was created with (annotation `io.kubernetes.container.hash`);
    /// `None` when unknown, which never counts as a spec change.
    pub spec_hash: Option<String>,
}

/// The latest probe results for one container instance; `None` while a probe has not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeResults {
    /// Readiness probe succeeded.
    pub readiness: Option<bool>,
    /// Startup probe succeeded.
    pub startup: Option<bool>,
    /// Liveness probe succeeded.
    pub liveness: Option<bool>,
}

/// Why a container could not be started in the last sync (kubelet's reason cache); it becomes
/// the container's `waiting` state until a start succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// `CrashLoopBackOff`, `ErrImagePull`, `ImagePullBackOff`, `CreateContainerConfigError`,
    /// `RunContainerError`, ...
    pub reason: String,
    /// The detail shown by `kubectl describe`.
    pub message: String,
}

/// Everything observed about one pod on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The newest sandbox, if any.
    pub sandbox: Option<SandboxState>,
    /// Every container instance the runtime knows for the pod.
    pub containers: Vec<ContainerState>,
    /// Probe results by container ID.
    pub probes: BTreeMap<String, ProbeResults>,
    /// The last start failure by container name; remove an entry when a start succeeds.
    pub start_failures: BTreeMap<String, StartFailure>,
}

impl Observed {
    /// Instances of `name`, newest first.
    pub(crate) fn instances<'a>(&'a self, name: &str) -> Vec<&'a ContainerState> {
        let mut found: Vec<&ContainerState> =
            self.containers.iter().filter(|c| c.name == name).collect();
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        found
    }

    /// The newest instance of `name` (kubelet's `FindContainerStatusByName`).
    pub(crate) fn latest(&self, name: &str) -> Option<&ContainerState> {
        self.instances(name).into_iter().next()
    }

    pub(crate) fn probe(&self, id: &str) -> ProbeResults {
        self.probes.get(id).copied().unwrap_or_default()
    }
}

impl ContainerState {
    /// The termination reason kubectl shows: the runtime's, else derived from the exit code.
    pub(crate) fn exit_reason(&self) -> String {
        match self.reason.as_deref() {
            Some(reason) if !reason.is_empty() => reason.to_owned(),
            _ if self.exit_code == 0 => "Completed".to_owned(),
            _ => "Error".to_owned(),
        }
    }
}

/// The `containerID` kubectl shows for a containerd container.
pub(crate) fn container_uri(id: &str) -> String {
    format!("containerd://{id}")
}
