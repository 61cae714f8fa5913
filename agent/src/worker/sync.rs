//! One pass over one pod, as kubelet's `SyncPod`: read what the runtime holds, let the pure core
//! decide, carry the decision out through the CRI, and report the pod's status. A pod being
//! deleted is stopped within its grace period, its sandboxes removed, and its deletion
//! confirmed to the API (a delete with grace 0, preconditioned on its uid).
//!
//! Every pass starts from the runtime's state, so a pass that fails half-way is repaired by the
//! next one; nothing here retries by itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_control::events::{reference, EventType, Recorder};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::objects_cache::ObjectReader;
use super::observe::{observe, sandbox_state, Sandboxes};
use super::probe::{Prober, Target};
use super::volumes::token::TokenCache;
use super::volumes::{self, Scope, Sources};
use crate::containerd::{cgroup_dirs, mount_points_under};
use crate::cri::{CriError, Runtime};
use crate::pods::container::Context;
use crate::pods::event::PodEvent;
use crate::pods::observed::{ContainerState, Observed, RunState, StartFailure};
use crate::pods::restart::{decide, Backoff};
use crate::pods::sandbox::{self, NodeSettings};
use crate::pods::status::pod_status;

/// The field manager pod status is written as.
const MANAGER: &str = "flotilla-agent";
/// How soon a pass that could not finish is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What stays the same for every pod of the node.
#[derive(Debug, Clone)]
pub(crate) struct NodeContext {
    /// The node's IPs, primary first.
    pub host_ips: Vec<String>,
    pub settings: NodeSettings,
    pub memory_capacity: i64,
    pub allocatable: BTreeMap<String, Quantity>,
    /// Where each pod's directory (`<uid>/`: volumes, hosts file) is made.
    pub pods_dir: PathBuf,
    /// The node's own `/etc/hosts`, for host-network pods.
    pub node_hosts: String,
}

/// What the agent remembers about a pod between passes.
pub(crate) struct PodState {
    pub backoff: Backoff,
    pub start_failures: BTreeMap<String, StartFailure>,
    pub prober: Prober,
    /// Service account tokens of the pod's projected volumes, refreshed when due.
    pub tokens: TokenCache,
    /// The node's watched ConfigMaps and Secrets, which the pod's passes read.
    pub objects: ObjectReader,
}

impl PodState {
    /// A new pod's state; `wake` is its worker's, which the probes wake on a changed result,
    /// and `objects` the node's cache of ConfigMaps and Secrets.
    pub(crate) fn new(wake: Arc<Notify>, objects: ObjectReader) -> PodState {
        PodState {
            backoff: Backoff::default(),
            start_failures: BTreeMap::new(),
            prober: Prober::new(wake),
            tokens: TokenCache::default(),
            objects,
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Look again after this long at the latest (sooner if something changes).
    Again(Option<Duration>),
    /// The pod is gone from the node and its deletion confirmed: the worker can stop.
    Finished,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("container runtime: {0}")]
    Runtime(#[from] CriError),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
}

/// Carries out passes for the node's pods.
#[derive(Clone)]
pub(crate) struct Syncer<R> {
    pub runtime: R,
    pub client: kube::Client,
    pub node: Arc<NodeContext>,
    pub recorder: Recorder,
    pub services: Store<Service>,
}

pub(super) fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

pub(super) fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The pod as kubelet names it in messages: `name_namespace(uid)`.
pub(super) fn kubelet_pod_name(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    format!("{name}_{}({})", namespace_of(pod), uid_of(pod))
}

/// Whether the pod is in a terminal phase (`Succeeded` or `Failed`): it starts nothing and
/// its volumes are no longer read.
pub(super) fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The grace period containers get when stopped: the deletion's, else the pod's.
pub(super) fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds));
    Duration::from_secs(seconds.unwrap_or(DEFAULT_GRACE_SECONDS).max(0) as u64)
}

/// The spec container (init or regular) named `name`.
pub(super) fn container_named<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name)
}

/// An init container that keeps running beside the app containers (restartPolicy Always).
pub(super) fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// A JSON merge patch turning `old` into `new`: changed members set, removed ones null.
pub(crate) fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(current) if current == value => {}
                    Some(current) => {
                        patch.insert(key.clone(), merge_patch(current, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// The event reference of a pod's container: the pod, with the container's field path.
pub(super) fn container_reference(pod: &Pod, name: &str) -> ObjectReference {
    let mut involved = reference(pod);
    let init = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.init_containers.iter().flatten().any(|c| c.name == name));
    let list = if init { "initContainers" } else { "containers" };
    involved.field_path = Some(format!("spec.{list}{{{name}}}"));
    involved
}

/// Exited instances a restarting container no longer needs: all but the newest exited one of
/// each container, which `lastState` and the restart count are read from (kubelet's container
/// garbage collection keeps one dead instance per container).
fn dead_instances(observed: &Observed) -> Vec<String> {
    let mut newest: BTreeMap<&str, &ContainerState> = BTreeMap::new();
    for instance in observed.containers.iter().filter(|c| c.state == RunState::Exited) {
        let kept = newest.entry(&instance.name).or_insert(instance);
        if (instance.created_at, &instance.id) > (kept.created_at, &kept.id) {
            *kept = instance;
        }
    }
    observed
        .containers
        .iter()
        .filter(|c| c.state == RunState::Exited)
        .filter(|c| newest.get(c.name.as_str()).is_some_and(|kept| kept.id != c.id))
        .map(|c| c.id.clone())
        .collect()
}

/// The kernel's table of this process's mounts.
fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Removes the pod's cgroup from every mounted hierarchy (runc creates it, nobody else removes
/// it). Directories still holding processes stay; the next pass tries again.
fn remove_cgroup(parent: &str) {
    for path in cgroup_dirs(&mountinfo(), parent) {
        if path.is_dir() {
            if let Err(err) = std::fs::remove_dir(&path) {
                tracing::debug!(path = %path.display(), error = %err, "removing a pod cgroup");
            }
        }
    }
}

impl<R: Runtime> Syncer<R> {
    pub(super) async fn record(&self, pod: &Pod, event: &PodEvent) {
        let involved = match &event.container {
            Some(name) => container_reference(pod, name),
            None => reference(pod),
        };
        let kind = if event.warning { EventType::Warning } else { EventType::Normal };
        self.recorder.record_for(involved, kind, event.reason, &event.message).await;
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.node.pods_dir.join(uid_of(pod))
    }

    /// One pass over `pod`.
    pub(crate) async fn sync(&self, pod: &Pod, state: &mut PodState) -> Result<Outcome, SyncError> {
        let now = Timestamp::now();
        let uid = uid_of(pod);
        state.backoff.collect_garbage(now);
        let (mut observed, mut sandboxes) =
            observe(&self.runtime, uid, state.prober.results(), state.start_failures.clone())
                .await?;
        let decision = decide(pod, &observed, &state.backoff, now);
        tracing::debug!(
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            sandbox = ?observed.sandbox.as_ref().map(|s| (&s.id, s.ready)),
            containers = observed.containers.len(),
            kill = decision.kill.len(),
            create_sandbox = ?decision.create_sandbox,
            start = decision.start.len(),
            "pod pass"
        );
        state.backoff = decision.backoff.clone();
        for event in &decision.events {
            self.record(pod, event).await;
        }

        let grace = grace_period(pod);
        let pod_ip = self.pod_ip(observed.sandbox.as_ref());
        let kills = decision.kill.iter().map(|kill| {
            let target = container_named(pod, &kill.name).map(|container| Target {
                container_id: kill.container_id.clone(),
                container: container.clone(),
                pod_ip: pod_ip.clone(),
                reference: container_reference(pod, &kill.name),
            });
            self.stop_container(pod, &kill.container_id, target, grace)
        });
        for (kill, outcome) in decision.kill.iter().zip(futures::future::join_all(kills).await) {
            if let Err(err) = outcome {
                tracing::warn!(pod = %uid, container = %kill.name, error = %err, "stopping a container");
            }
        }
        if decision.stop_sandbox {
            if let Some(sandbox) = &observed.sandbox {
                self.runtime.stop_pod_sandbox(&sandbox.id).await?;
            }
        }
        let removed: Vec<String> =
            decision.remove.iter().cloned().chain(dead_instances(&observed)).collect();
        for id in &removed {
            self.runtime.remove_container(id).await?;
        }

        let mut retry_soon = false;
        let starting = decision.create_sandbox.is_some() || !decision.start.is_empty();
        if starting {
            retry_soon |= !self.create_and_start(pod, state, &decision, &observed).await?;
        } else if pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod) {
            self.refresh_volumes(pod, state).await?;
        }
        for (name, failure) in &decision.held {
            state.start_failures.insert(name.clone(), failure.clone());
        }

        // The runtime is read again only if this pass changed something in it.
        let acted =
            starting || decision.stop_sandbox || !decision.kill.is_empty() || !removed.is_empty();
        if acted {
            (observed, sandboxes) =
                observe(&self.runtime, uid, state.prober.results(), state.start_failures.clone())
                    .await?;
        } else {
            observed.start_failures = state.start_failures.clone();
        }
        let status = pod_status(pod, &observed, &self.node.host_ips, now);
        self.write_status(pod, &status).await?;
        state.prober.update(&self.runtime, &self.recorder, &self.probe_targets(pod, &observed));

        if pod.metadata.deletion_timestamp.is_some() {
            let running = observed
                .containers
                .iter()
                .any(|c| matches!(c.state, RunState::Running | RunState::Unknown));
            if running || sandboxes.any_ready {
                return Ok(Outcome::Again(Some(RETRY)));
            }
            self.remove_everything(pod, &sandboxes).await?;
            self.confirm_deletion(pod).await?;
            return Ok(Outcome::Finished);
        }
        let requeue = decision.requeue_after.map(|wait| wait.unsigned_abs());
        Ok(Outcome::Again(if retry_soon { Some(RETRY) } else { requeue }))
    }

    /// Rewrites the files of the pod's configMap, secret, downwardAPI and projected volumes
    /// from the objects and the pod as they are now, so a change reaches running containers
    /// at once (the pod's watch wakes the worker on a label change, the object's watch on an
    /// object change). Unchanged files are left alone; tokens are requested only when due.
    async fn refresh_volumes(&self, pod: &Pod, state: &mut PodState) -> Result<(), SyncError> {
        let pod_dir = self.pod_dir(pod);
        if !volumes::has_updated_volumes(pod) || !pod_dir.exists() {
            return Ok(());
        }
        let sources = self.sources(pod, state, Scope::Refresh).await?;
        if let Err(err) = volumes::refresh(pod, &pod_dir, &sources, Timestamp::now()) {
            self.record(pod, &PodEvent::warning("FailedMount", err.to_string())).await;
        }
        Ok(())
    }

    /// The running containers of the pod's current sandbox, to probe; none once it stops.
    fn probe_targets(&self, pod: &Pod, observed: &Observed) -> Vec<Target> {
        let Some(sandbox) = observed.sandbox.as_ref().filter(|s| s.ready) else {
            return Vec::new();
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let pod_ip = self.pod_ip(Some(sandbox));
        observed
            .containers
            .iter()
            .filter(|c| c.state == RunState::Running && c.sandbox_id == sandbox.id)
            .filter_map(|c| {
                let container = container_named(pod, &c.name)?;
                Some(Target {
                    container_id: c.id.clone(),
                    container: container.clone(),
                    pod_ip: pod_ip.clone(),
                    reference: container_reference(pod, &c.name),
                })
            })
            .collect()
    }

    /// Creates the sandbox if the decision says so, then starts the decided containers.
    /// Returns false when the sandbox or the volumes failed and the pod should be looked at
    /// again soon.
    async fn create_and_start(
        &self,
        pod: &Pod,
        state: &mut PodState,
        decision: &crate::pods::restart::Decision,
        observed: &Observed,
    ) -> Result<bool, SyncError> {
        let attempt = decision
            .create_sandbox
            .or_else(|| observed.sandbox.as_ref().map(|s| s.attempt))
            .unwrap_or(0);
        let built = match sandbox::config(pod, attempt, &self.node.settings) {
            Ok(built) => built,
            Err(err) => {
                let message = format!("Failed to create pod sandbox: {err}");
                self.record(pod, &PodEvent::warning("FailedCreatePodSandBox", message)).await;
                return Ok(false);
            }
        };
        // DNS warnings belong to the sandbox's creation, not to every pass.
        if decision.create_sandbox.is_some() {
            for event in &built.events {
                self.record(pod, event).await;
            }
        }
        let pod_dir = self.pod_dir(pod);
        if let Err(err) = std::fs::create_dir_all(&pod_dir)
            .and_then(|()| std::fs::create_dir_all(&built.config.log_directory))
        {
            let message =
                format!("Failed to create pod sandbox: preparing the pod's directories: {err}");
            self.record(pod, &PodEvent::warning("FailedCreatePodSandBox", message)).await;
            return Ok(false);
        }
        let sources = self.sources(pod, state, Scope::Start).await?;
        let volumes = match volumes::set_up(pod, &pod_dir, &sources, Timestamp::now()) {
            Ok(volumes) => volumes,
            Err(err) => {
                self.record(pod, &PodEvent::warning("FailedMount", err.to_string())).await;
                return Ok(false);
            }
        };

        let sandbox = match decision.create_sandbox {
            Some(_) => match self.runtime.run_pod_sandbox(built.config.clone(), "").await {
                Ok(id) => sandbox_state(&self.runtime.pod_sandbox_status(&id).await?),
                Err(err) => {
                    let message = format!("Failed to create pod sandbox: {err}");
                    self.record(pod, &PodEvent::warning("FailedCreatePodSandBox", message)).await;
                    return Ok(false);
                }
            },
            None => match observed.sandbox.clone() {
                Some(sandbox) => sandbox,
                None => return Ok(false),
            },
        };

        let pod_ips =
            if sandbox.host_network { self.node.host_ips.clone() } else { sandbox.ips.clone() };
        let etc_hosts = self.write_hosts_file(pod, &pod_dir, &pod_ips);
        let base = Context {
            config_maps: sources.config_maps,
            secrets: sources.secrets,
            services: self.services.state().iter().map(|s| (**s).clone()).collect(),
            pod_ips,
            host_ips: self.node.host_ips.clone(),
            node_allocatable: self.node.allocatable.clone(),
            memory_capacity: self.node.memory_capacity,
            volumes,
            etc_hosts,
            cgroup_v2: self.node.settings.cgroup_v2,
            ..Context::default()
        };
        // A container that fails to start is retried on the back-off the decision keeps, or
        // at the next resync; only the sandbox and volumes above are retried soon.
        for start in &decision.start {
            let Some(container) = container_named(pod, &start.name) else { continue };
            let outcome =
                self.start(pod, container, start, &sandbox.id, &built.config, &base, state).await;
            match outcome {
                Ok(()) => {
                    state.start_failures.remove(&start.name);
                }
                Err(failure) => {
                    state.start_failures.insert(start.name.clone(), failure);
                    // Init containers run in order: nothing after a failed one starts.
                    if start.init && !is_sidecar(container) {
                        break;
                    }
                }
            }
        }
        Ok(true)
    }

    /// Writes the pod's managed `/etc/hosts`; `None` (no mount) when it cannot be written.
    fn write_hosts_file(&self, pod: &Pod, pod_dir: &Path, pod_ips: &[String]) -> Option<String> {
        let domain = &self.node.settings.dns.cluster_domain;
        let text = sandbox::hosts_file(pod, pod_ips, domain, &self.node.node_hosts).ok()?;
        let path = pod_dir.join("etc-hosts");
        match std::fs::write(&path, text) {
            Ok(()) => Some(path.display().to_string()),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "writing a pod's hosts file");
                None
            }
        }
    }

    /// What the pod's containers and volumes read ([`volumes::fetch`]).
    async fn sources(
        &self,
        pod: &Pod,
        state: &mut PodState,
        scope: Scope,
    ) -> Result<Sources, SyncError> {
        let allocatable = &self.node.allocatable;
        let objects = &state.objects;
        Ok(volumes::fetch(&self.client, objects, pod, scope, &mut state.tokens, allocatable)
            .await?)
    }

    /// Writes `status` as a merge patch from the pod's current status, if it differs.
    async fn write_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), SyncError> {
        let old = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        let new = serde_json::to_value(status).unwrap_or_default();
        if old == new {
            return Ok(());
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace_of(pod));
        let patch = json!({ "status": merge_patch(&old, &new) });
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pods.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile: the watch says so next.
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes the pod's sandboxes (and with them its containers), cgroup and directory.
    async fn remove_everything(&self, pod: &Pod, sandboxes: &Sandboxes) -> Result<(), SyncError> {
        for id in &sandboxes.ids {
            self.runtime.stop_pod_sandbox(id).await?;
            self.runtime.remove_pod_sandbox(id).await?;
        }
        remove_cgroup(&self.node.settings.pod_cgroup(pod));
        remove_pod_dir(&self.pod_dir(pod));
        Ok(())
    }

    /// Deletes the pod object for good, only if it is still this pod (same uid).
    async fn confirm_deletion(&self, pod: &Pod) -> Result<(), SyncError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace_of(pod));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pods.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if matches!(response.code, 404 | 409) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Stops and removes whatever the runtime still holds for a pod the API no longer has
    /// (deleted with grace 0, or while the agent was down).
    pub(crate) async fn tear_down(&self, uid: &str) -> Result<(), SyncError> {
        let (observed, sandboxes) =
            observe(&self.runtime, uid, BTreeMap::new(), BTreeMap::new()).await?;
        for container in &observed.containers {
            if matches!(container.state, RunState::Running | RunState::Unknown) {
                self.runtime.stop_container(&container.id, Duration::ZERO).await?;
            }
        }
        for id in &sandboxes.ids {
            self.runtime.stop_pod_sandbox(id).await?;
            self.runtime.remove_pod_sandbox(id).await?;
        }
        for tier in ["", "burstable/", "besteffort/"] {
            let root = self.node.settings.cgroup_root.trim_end_matches('/');
            remove_cgroup(&format!("{root}/kubepods/{tier}pod{uid}"));
        }
        remove_pod_dir(&self.node.pods_dir.join(uid));
        Ok(())
    }
}

/// Removes a pod's directory, unmounting memory-backed emptyDirs first.
fn remove_pod_dir(dir: &Path) {
    for target in mount_points_under(&mountinfo(), dir) {
        if let Err(err) = nix::mount::umount(&target) {
            tracing::warn!(target = %target.display(), error = %err, "unmounting a pod volume");
        }
    }
    if let Err(err) = std::fs::remove_dir_all(dir) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %err, "removing a pod's directory");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn merge_patches_set_changes_and_null_removals() {
        let old = json!({"phase": "Pending", "podIP": "10.0.0.1", "conditions": [1], "same": 1});
        let new = json!({"phase": "Running", "conditions": [1, 2], "same": 1, "hostIP": "h"});
        let patch = merge_patch(&old, &new);
        assert_eq!(
            patch,
            json!({"phase": "Running", "podIP": null, "conditions": [1, 2], "hostIP": "h"})
        );
    }

    #[test]
    fn only_the_newest_exited_instance_of_each_container_is_kept() {
        let instance = |id: &str, name: &str, state: RunState, second: i64| ContainerState {
            id: id.into(),
            name: name.into(),
            state,
            created_at: Timestamp::from_second(second).unwrap(),
            ..ContainerState::default()
        };
        let observed = Observed {
            containers: vec![
                instance("a1", "app", RunState::Exited, 1),
                instance("a3", "app", RunState::Running, 3),
                instance("a2", "app", RunState::Exited, 2),
                instance("b1", "init", RunState::Exited, 1),
            ],
            ..Observed::default()
        };
        assert_eq!(dead_instances(&observed), ["a1"]);
    }

    #[test]
    fn only_succeeded_and_failed_pods_are_terminal() {
        let with_phase = |phase: Option<&str>| Pod {
            status: Some(PodStatus { phase: phase.map(str::to_owned), ..PodStatus::default() }),
            ..Pod::default()
        };
        let cases = [
            (None, false),
            (Some("Pending"), false),
            (Some("Running"), false),
            (Some("Unknown"), false),
            (Some("Succeeded"), true),
            (Some("Failed"), true),
        ];
        for (phase, terminal) in cases {
            assert_eq!(is_terminal(&with_phase(phase)), terminal, "{phase:?}");
        }
        assert!(!is_terminal(&Pod::default()), "a pod without status");
    }

    #[test]
    fn grace_periods_prefer_the_deletion() {
        let mut pod = Pod::default();
        assert_eq!(grace_period(&pod), Duration::from_secs(30));
        pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        });
        assert_eq!(grace_period(&pod), Duration::from_secs(5));
        pod.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&pod), Duration::ZERO);
    }
}
