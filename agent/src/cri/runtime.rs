//! The container runtime operations the agent needs, as a trait.
//!
//! The vocabulary is the CRI v1 message types themselves (as kubelet's `internalapi.RuntimeService`
//! does): translating a Pod into a `PodSandboxConfig` is the agent's pure logic, and the runtime
//! only executes. Implementations: [`CriRuntime`](super::CriRuntime) over containerd's socket,
//! and [`HollowRuntime`](super::HollowRuntime), which keeps everything in memory and runs
//! nothing (hollow nodes).

use std::future::Future;
use std::time::Duration;

use k8s_cri::v1::{
    AttachRequest, Container, ContainerConfig, ContainerFilter, ContainerStatus, ExecRequest,
    Image, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStatus, PortForwardRequest,
    RuntimeStatus,
};

use super::CriError;

/// Names and versions a runtime reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// Name of the runtime, e.g. "containerd".
    pub runtime_name: String,
    /// Version of the runtime, e.g. "1.6.20~ds1".
    pub runtime_version: String,
    /// CRI API version the runtime serves, e.g. "v1".
    pub runtime_api_version: String,
}

/// What a command run by [`Runtime::exec_sync`] printed and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A streaming session to open in the runtime (kubelet's `exec`, `attach`, `port-forward`).
#[derive(Clone, Debug, PartialEq)]
pub enum StreamRequest {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// A container runtime reached through the CRI v1 contract.
///
/// Every method is one runtime call with a deadline; none retries. Sandbox and container ids are
/// opaque strings chosen by the runtime.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Returns the runtime's name and versions; a cheap liveness check.
    fn version(&self) -> impl Future<Output = Result<RuntimeVersion, CriError>> + Send;

    /// Returns the runtime's conditions (`RuntimeReady`, `NetworkReady`); a node is ready only when
    /// both hold.
    fn status(&self) -> impl Future<Output = Result<RuntimeStatus, CriError>> + Send;

    /// Returns the image if present on the node, `None` if absent (absence is not an error).
    fn image_status(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<Image>, CriError>> + Send;

    /// Pulls an image and returns its reference (an image id or digest). The sandbox config lets
    /// the runtime pick a platform or a per-pod mirror.
    fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> impl Future<Output = Result<String, CriError>> + Send;

    /// Creates and starts a sandbox (namespaces, network, pause process) and returns its id.
    /// The sandbox is READY when this returns; its IP is in [`Runtime::pod_sandbox_status`].
    fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> impl Future<Output = Result<String, CriError>> + Send;

    /// Stops every container of the sandbox and the sandbox itself, and releases its network.
    /// Idempotent: stopping a stopped sandbox succeeds.
    fn stop_pod_sandbox(
        &self,
        sandbox_id: &str,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// Removes the sandbox and its containers. Idempotent: removing an absent sandbox succeeds.
    fn remove_pod_sandbox(
        &self,
        sandbox_id: &str,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// Returns the sandbox's state, metadata and network status (`network.ip` for pod networks).
    /// Fails with [`CriError::NotFound`] for an unknown id.
    fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
    ) -> impl Future<Output = Result<PodSandboxStatus, CriError>> + Send;

    /// Lists sandboxes matching every set field of the filter (labels must all match).
    fn list_pod_sandboxes(
        &self,
        filter: PodSandboxFilter,
    ) -> impl Future<Output = Result<Vec<PodSandbox>, CriError>> + Send;

    /// Creates (does not start) a container in a ready sandbox and returns its id.
    /// `sandbox_config` must be the config the sandbox was started with.
    fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> impl Future<Output = Result<String, CriError>> + Send;

    /// Starts a created container.
    fn start_container(
        &self,
        container_id: &str,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// Sends SIGTERM (or the image's stop signal), then SIGKILL after `grace` (whole seconds).
    /// Idempotent: stopping an exited container succeeds.
    fn stop_container(
        &self,
        container_id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// Removes a container, killing it first if it still runs. Idempotent.
    fn remove_container(
        &self,
        container_id: &str,
    ) -> impl Future<Output = Result<(), CriError>> + Send;

    /// Returns the container's state, exit code, timestamps and log path.
    /// Fails with [`CriError::NotFound`] for an unknown id.
    fn container_status(
        &self,
        container_id: &str,
    ) -> impl Future<Output = Result<ContainerStatus, CriError>> + Send;

    /// Lists containers matching every set field of the filter (labels must all match).
    fn list_containers(
        &self,
        filter: ContainerFilter,
    ) -> impl Future<Output = Result<Vec<Container>, CriError>> + Send;

    /// Runs a command in a running container and waits for it, at most `timeout` (whole seconds;
    /// zero means no limit on the runtime side). A non-zero exit code is an `Ok` output.
    fn exec_sync(
        &self,
        container_id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, CriError>> + Send;

    /// Opens a streaming session and returns the URL of the runtime's streaming server that
    /// serves it, once, to the first client that connects (kubelet relays it there).
    fn stream_url(
        &self,
        request: StreamRequest,
    ) -> impl Future<Output = Result<String, CriError>> + Send;
}
