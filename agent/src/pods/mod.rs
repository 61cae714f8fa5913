//! The pure core of Flotilla's node agent: what Kubernetes 1.33's kubelet decides for a pod,
//! without any IO or clock.
//!
//! - [`sandbox::config`] builds the CRI `PodSandboxConfig` (metadata, hostname, DNS, port
//!   mappings, labels, namespaces, cgroup parent).
//! - [`container::config`] builds a CRI `ContainerConfig` (command, environment, mounts,
//!   resources, security context, labels), or the `CreateContainerConfigError` message.
//! - [`status::pod_status`] computes the `PodStatus` kubelet writes (phase, conditions,
//!   container statuses).
//! - [`restart::decide`] says what `SyncPod` does next (sandbox, kills, starts in order,
//!   crash-loop back-off).
//!
//! The caller maps CRI statuses into [`observed::Observed`], resolves the objects a container
//! references into a [`container::Context`], executes decisions and passes `now`.

pub mod container;
pub mod event;
pub mod observed;
pub mod qos;
pub mod restart;
pub mod sandbox;
pub mod status;

mod expansion;
mod pod;
mod quantity;
mod resources;

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod testing;
