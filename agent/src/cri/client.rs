//! [`CriRuntime`]: the [`Runtime`] trait over a CRI v1 gRPC Unix socket (containerd, CRI-O).
//!
//! One HTTP/2 connection carries every call; clones share it. tonic's channel redials the socket
//! after the runtime restarts, so a handle stays valid across containerd restarts (calls made
//! while it is down fail with [`CriError::Unavailable`]). Each call has a deadline, sent to the
//! runtime as `grpc-timeout` and enforced locally as well.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, Image, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListPodSandboxRequest, PodSandbox, PodSandboxConfig, PodSandboxFilter,
    PodSandboxStatus, PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, RuntimeStatus, StartContainerRequest,
    StatusRequest, StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;
use tracing::debug;

use super::{CriError, ExecOutput, Runtime, RuntimeVersion, StreamRequest};

/// The CRI API version this client speaks, sent in `Version` requests.
const CRI_API_VERSION: &str = "v1";

/// How to reach the runtime. Plain data; defaults match kubelet's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriRuntimeConfig {
    /// Path of the runtime's gRPC Unix socket.
    pub socket: PathBuf,
    /// Limit on dialing the socket.
    pub connect_timeout: Duration,
    /// Deadline of each call (kubelet's `--runtime-request-timeout`, 2 minutes). Calls that wait
    /// on a container (`exec_sync`, `stop_container`) get their own wait added to it.
    pub request_timeout: Duration,
    /// Largest response accepted; a node with many containers exceeds tonic's 4 MiB default in
    /// `ListContainers` (kubelet uses 16 MiB).
    pub max_message_bytes: usize,
}

impl Default for CriRuntimeConfig {
    fn default() -> Self {
        CriRuntimeConfig {
            socket: PathBuf::from("/run/flotilla/containerd/containerd.sock"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A CRI v1 runtime reached over a Unix socket. Cheap to clone; clones share one connection.
#[derive(Clone, Debug)]
pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    request_timeout: Duration,
}

impl CriRuntime {
    /// Dials the socket once (so a wrong path fails here, not at the first call) and returns a
    /// runtime handle. Does not check that the runtime speaks CRI v1: call [`Runtime::version`].
    pub async fn connect(config: CriRuntimeConfig) -> Result<Self, CriError> {
        let socket = Arc::new(config.socket.clone());
        let connect_timeout = config.connect_timeout;
        // The URI only supplies the HTTP/2 `:authority`; the connector ignores it and dials the
        // socket. "localhost" is what kubelet's dialer sends as well.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(connect_timeout)
            .connect_with_connector(service_fn(move |_: Uri| {
                let socket = Arc::clone(&socket);
                async move {
                    let stream =
                        tokio::time::timeout(connect_timeout, UnixStream::connect(&*socket))
                            .await
                            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|source| CriError::Connect { socket: config.socket.clone(), source })?;

        let limit = config.max_message_bytes;
        Ok(CriRuntime {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            request_timeout: config.request_timeout,
        })
    }

    /// Runs one call with a deadline, maps its status, and logs its duration.
    async fn call<T, Fut>(
        &self,
        operation: &'static str,
        timeout: Duration,
        call: impl FnOnce(Duration) -> Fut,
    ) -> Result<T, CriError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, call(timeout)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(CriError::from_status(operation, timeout, status)),
            Err(_) => Err(CriError::Timeout { operation, timeout }),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => debug!(operation, elapsed_ms, "cri call"),
            Err(error) => debug!(operation, elapsed_ms, %error, "cri call failed"),
        }
        result
    }
}

/// Wraps a message in a request carrying the deadline as `grpc-timeout`.
fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Converts a wait to the CRI's whole seconds, rounding up so a sub-second wait is not "none".
fn whole_seconds(wait: Duration) -> i64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

impl Runtime for CriRuntime {
    async fn version(&self) -> Result<RuntimeVersion, CriError> {
        let mut client = self.runtime.clone();
        let message = VersionRequest { version: CRI_API_VERSION.to_owned() };
        let response = self
            .call("Version", self.request_timeout, |t| client.version(request(message, t)))
            .await?;
        Ok(RuntimeVersion {
            runtime_name: response.runtime_name,
            runtime_version: response.runtime_version,
            runtime_api_version: response.runtime_api_version,
        })
    }

    async fn status(&self) -> Result<RuntimeStatus, CriError> {
        let mut client = self.runtime.clone();
        let message = StatusRequest { verbose: false };
        let response = self
            .call("Status", self.request_timeout, |t| client.status(request(message, t)))
            .await?;
        response.status.ok_or(CriError::MissingField { operation: "Status", field: "status" })
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>, CriError> {
        let mut client = self.images.clone();
        let message = ImageStatusRequest {
            image: Some(ImageSpec { image: image.to_owned(), ..Default::default() }),
            verbose: false,
        };
        let response = self
            .call("ImageStatus", self.request_timeout, |t| client.image_status(request(message, t)))
            .await?;
        // The CRI contract: an absent image is an OK response with no image, not NOT_FOUND.
        Ok(response.image)
    }

    async fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let mut client = self.images.clone();
        let message = PullImageRequest {
            image: Some(ImageSpec { image: image.to_owned(), ..Default::default() }),
            auth: None,
            sandbox_config,
        };
        let response = self
            .call("PullImage", self.request_timeout, |t| client.pull_image(request(message, t)))
            .await?;
        Ok(response.image_ref)
    }

    async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, CriError> {
        let mut client = self.runtime.clone();
        let message = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        };
        let response = self
            .call("RunPodSandbox", self.request_timeout, |t| {
                client.run_pod_sandbox(request(message, t))
            })
            .await?;
        Ok(response.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        let message = StopPodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        self.call("StopPodSandbox", self.request_timeout, |t| {
            client.stop_pod_sandbox(request(message, t))
        })
        .await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        let message = RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        let result = self
            .call("RemovePodSandbox", self.request_timeout, |t| {
                client.remove_pod_sandbox(request(message, t))
            })
            .await;
        // The contract says idempotent; older runtimes answer NOT_FOUND for an absent sandbox.
        match result {
            Err(error) if error.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus, CriError> {
        let mut client = self.runtime.clone();
        let message =
            PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.to_owned(), verbose: false };
        let response = self
            .call("PodSandboxStatus", self.request_timeout, |t| {
                client.pod_sandbox_status(request(message, t))
            })
            .await?;
        response
            .status
            .ok_or(CriError::MissingField { operation: "PodSandboxStatus", field: "status" })
    }

    async fn list_pod_sandboxes(
        &self,
        filter: PodSandboxFilter,
    ) -> Result<Vec<PodSandbox>, CriError> {
        let mut client = self.runtime.clone();
        let message = ListPodSandboxRequest { filter: Some(filter) };
        let response = self
            .call("ListPodSandbox", self.request_timeout, |t| {
                client.list_pod_sandbox(request(message, t))
            })
            .await?;
        Ok(response.items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, CriError> {
        let mut client = self.runtime.clone();
        let message = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let response = self
            .call("CreateContainer", self.request_timeout, |t| {
                client.create_container(request(message, t))
            })
            .await?;
        Ok(response.container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        let message = StartContainerRequest { container_id: container_id.to_owned() };
        self.call("StartContainer", self.request_timeout, |t| {
            client.start_container(request(message, t))
        })
        .await?;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, grace: Duration) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        let message = StopContainerRequest {
            container_id: container_id.to_owned(),
            timeout: whole_seconds(grace),
        };
        self.call("StopContainer", grace + self.request_timeout, |t| {
            client.stop_container(request(message, t))
        })
        .await?;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        let message = RemoveContainerRequest { container_id: container_id.to_owned() };
        let result = self
            .call("RemoveContainer", self.request_timeout, |t| {
                client.remove_container(request(message, t))
            })
            .await;
        match result {
            Err(error) if error.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus, CriError> {
        let mut client = self.runtime.clone();
        let message =
            ContainerStatusRequest { container_id: container_id.to_owned(), verbose: false };
        let response = self
            .call("ContainerStatus", self.request_timeout, |t| {
                client.container_status(request(message, t))
            })
            .await?;
        response
            .status
            .ok_or(CriError::MissingField { operation: "ContainerStatus", field: "status" })
    }

    async fn list_containers(&self, filter: ContainerFilter) -> Result<Vec<Container>, CriError> {
        let mut client = self.runtime.clone();
        let message = ListContainersRequest { filter: Some(filter) };
        let response = self
            .call("ListContainers", self.request_timeout, |t| {
                client.list_containers(request(message, t))
            })
            .await?;
        Ok(response.containers)
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        let mut client = self.runtime.clone();
        let message = ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: command,
            timeout: whole_seconds(timeout),
        };
        let response = self
            .call("ExecSync", timeout + self.request_timeout, |t| {
                client.exec_sync(request(message, t))
            })
            .await?;
        Ok(ExecOutput {
            stdout: response.stdout,
            stderr: response.stderr,
            exit_code: response.exit_code,
        })
    }

    async fn stream_url(&self, session: StreamRequest) -> Result<String, CriError> {
        let mut client = self.runtime.clone();
        let timeout = self.request_timeout;
        let url = match session {
            StreamRequest::Exec(message) => {
                self.call("Exec", timeout, |t| client.exec(request(message, t))).await?.url
            }
            StreamRequest::Attach(message) => {
                self.call("Attach", timeout, |t| client.attach(request(message, t))).await?.url
            }
            StreamRequest::PortForward(message) => {
                self.call("PortForward", timeout, |t| client.port_forward(request(message, t)))
                    .await?
                    .url
            }
        };
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::from_millis(30_500)), 31);
    }

    #[tokio::test]
    async fn connect_to_a_missing_socket_fails_with_its_path() {
        let config = CriRuntimeConfig {
            socket: PathBuf::from("/nonexistent/flotilla/cri.sock"),
            ..CriRuntimeConfig::default()
        };
        let error = CriRuntime::connect(config).await.expect_err("no socket there");
        assert!(error.is_retryable());
        assert!(error.to_string().contains("/nonexistent/flotilla/cri.sock"), "{error}");
    }
}
