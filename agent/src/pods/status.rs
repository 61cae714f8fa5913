//! The pod status kubelet writes (`generateAPIPodStatus`): phase, conditions, container
//! statuses, IPs, start time and QoS class, computed from the pod, its previous status and
//! what the runtime reports.
//!
//! Invariants:
//! - A pod never leaves `Succeeded` or `Failed`.
//! - A condition keeps its `lastTransitionTime` while its status does not change; a new or
//!   changed one gets `now`.
//! - `containerStatuses` are sorted by name and `initContainerStatuses` follow the spec, so an
//!   unchanged pod yields an equal status and the caller can skip the write.
//! - Times are truncated to seconds, as the API stores them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
    VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pods::container::recursive_read_only;
use crate::pods::observed::{container_uri, ContainerState, Observed, RunState};
use crate::pods::{pod, qos, restart};

mod conditions;
#[cfg(test)]
mod tests;

use conditions::{
    condition, containers_ready_condition, initialized_condition, ready_condition,
    ready_to_start_condition,
};

/// Waiting reason of a regular container before its first start.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting reason of a regular container while init containers run.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// Reason and message of a pod past `activeDeadlineSeconds`.
const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// Terminated reason of a container that vanished while it was running.
const STATUS_UNKNOWN: &str = "ContainerStatusUnknown";

/// Condition types kubelet owns; it rewrites them on every status.
const KUBELET_CONDITIONS: [&str; 5] =
    ["PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers"];

/// Returns the status kubelet would write for `pod` (whose `status` is the previous one),
/// given what the runtime reports and the node's IPs (primary first).
pub fn pod_status(
    pod: &Pod,
    observed: &Observed,
    host_ips: &[String],
    now: Timestamp,
) -> PodStatus {
    let spec = pod::spec(pod);
    let old = pod.status.clone().unwrap_or_default();
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let has_init = !init_containers.is_empty();

    let mut container_statuses = statuses(
        pod,
        observed,
        old.container_statuses.as_deref().unwrap_or_default(),
        &spec.containers,
        has_init,
        false,
    );
    let mut init_statuses = statuses(
        pod,
        observed,
        old.init_container_statuses.as_deref().unwrap_or_default(),
        init_containers,
        has_init,
        true,
    );

    let terminal = pod.metadata.deletion_timestamp.is_some();
    let mut phase =
        phase(pod, &container_statuses, &init_statuses, terminal, has_initialized(pod, observed));
    let old_phase = old.phase.clone().unwrap_or_default();
    let old_terminal = matches!(old_phase.as_str(), "Succeeded" | "Failed");
    if !matches!(phase, "Succeeded" | "Failed") && old_terminal {
        phase = if old_phase == "Succeeded" { "Succeeded" } else { "Failed" };
    }
    let (mut reason, mut message) = (None, None);
    if phase == old_phase {
        reason = old.reason.clone();
        message = old.message.clone();
    }
    let start_time = old.start_time.clone().unwrap_or_else(|| time(now));
    if !old_terminal && past_deadline(pod, start_time.0, now) {
        phase = "Failed";
        reason = Some(DEADLINE_REASON.to_owned());
        message = Some(DEADLINE_MESSAGE.to_owned());
    }

    apply_probes(pod, observed, &mut container_statuses, &mut init_statuses);

    let mut all: Vec<&ContainerStatus> = init_statuses.iter().collect();
    all.extend(container_statuses.iter());
    let mut conditions: Vec<PodCondition> = old
        .conditions
        .iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    conditions.push(ready_to_start_condition(pod, observed));
    conditions.push(initialized_condition(pod, &all, phase));
    let containers_ready = containers_ready_condition(pod, &all, phase);
    conditions.push(ready_condition(pod, &conditions, &containers_ready));
    conditions.push(containers_ready);
    conditions.push(condition("PodScheduled", "True", None, None));
    for condition in &mut conditions {
        let previous = old.conditions.iter().flatten().find(|c| c.type_ == condition.type_);
        if KUBELET_CONDITIONS.contains(&condition.type_.as_str()) {
            condition.last_transition_time = match previous {
                Some(previous) if previous.status == condition.status => {
                    previous.last_transition_time.clone()
                }
                _ => Some(time(now)),
            };
        }
    }

    let mut pod_ips = observed
        .sandbox
        .as_ref()
        .filter(|sandbox| sandbox.ready)
        .map(|sandbox| pod::sort_pod_ips(&sandbox.ips, host_ips))
        .unwrap_or_default();
    if pod_ips.is_empty() {
        pod_ips = old.pod_ips.iter().flatten().map(|ip| ip.ip.clone()).collect();
    }
    if pod_ips.is_empty() && pod::host_network(pod) {
        pod_ips = host_ips.iter().take(2).cloned().collect();
    }

    PodStatus {
        phase: Some(phase.to_owned()),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: host_ips.first().cloned().or(old.host_ip),
        host_ips: if host_ips.is_empty() {
            old.host_ips
        } else {
            Some(host_ips.iter().take(2).map(|ip| HostIP { ip: ip.clone() }).collect())
        },
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.into_iter().map(|ip| PodIP { ip }).collect()),
        start_time: Some(start_time),
        qos_class: Some(qos::qos_class(pod).as_str().to_owned()),
        container_statuses: Some(container_statuses),
        init_container_statuses: has_init.then_some(init_statuses),
        ephemeral_container_statuses: old.ephemeral_container_statuses,
        nominated_node_name: old.nominated_node_name,
        ..PodStatus::default()
    }
}

fn time(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

/// Kubelet's `convertToAPIContainerStatuses` for one list of containers.
fn statuses(
    pod: &Pod,
    observed: &Observed,
    previous: &[ContainerStatus],
    containers: &[Container],
    has_init: bool,
    is_init: bool,
) -> Vec<ContainerStatus> {
    let old: BTreeMap<&str, &ContainerStatus> =
        previous.iter().map(|status| (status.name.as_str(), status)).collect();
    let default_reason = if has_init { POD_INITIALIZING } else { CONTAINER_CREATING };
    let mut out: BTreeMap<&str, ContainerStatus> = BTreeMap::new();
    for container in containers {
        let mut status = ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            state: Some(waiting(Some(default_reason), None)),
            volume_mounts: volume_mounts(container),
            ..ContainerStatus::default()
        };
        if let Some(previous) = old.get(container.name.as_str()) {
            if previous.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                status = (*previous).clone();
            } else {
                status.restart_count = previous.restart_count;
                status.last_state = previous.last_state.clone();
            }
        }
        // A container the runtime forgot while it was running has terminated, not restarted
        // from scratch: record that so the pod does not fall back to Pending.
        let previous_running = old
            .get(container.name.as_str())
            .is_some_and(|p| p.state.as_ref().is_some_and(|s| s.running.is_some()));
        let is_default = status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some(default_reason));
        let has_last = status.last_state.as_ref().is_some_and(|s| s.terminated.is_some());
        if observed.latest(&container.name).is_none() && previous_running && is_default && !has_last
        {
            status.last_state = Some(ApiState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some(STATUS_UNKNOWN.to_owned()),
                    message: Some(
                        "The container could not be located when the pod was deleted.  The \
                         container used to be Running"
                            .to_owned(),
                    ),
                    ..ContainerStateTerminated::default()
                }),
                ..ApiState::default()
            });
            if pod.metadata.deletion_timestamp.is_none() {
                status.restart_count += 1;
            }
        }
        out.insert(container.name.as_str(), status);
    }

    for container in containers {
        let instances = observed.instances(&container.name);
        let previous = old.get(container.name.as_str()).copied();
        let mut iter = instances.into_iter();
        if let Some(latest) = iter.next() {
            let mut status = convert(latest, previous, container);
            if let Some(older) = iter.next() {
                status.last_state = convert(older, previous, container).state;
            }
            out.insert(container.name.as_str(), status);
        }
    }

    for container in containers {
        let latest = observed.latest(&container.name);
        if is_init && latest.is_some_and(|l| l.state == RunState::Exited && l.exit_code == 0) {
            continue;
        }
        if !restart::should_restart(pod, container, observed) {
            continue;
        }
        let Some(failure) = observed.start_failures.get(&container.name) else { continue };
        let Some(status) = out.get_mut(container.name.as_str()) else { continue };
        if status.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
            status.last_state = status.state.clone();
        }
        status.state = Some(waiting(Some(&failure.reason), Some(failure.message.clone())));
    }

    if is_init {
        containers.iter().filter_map(|c| out.remove(c.name.as_str())).collect()
    } else {
        out.into_values().collect()
    }
}

/// One runtime instance as an API container status (`convertContainerStatus`).
fn convert(
    instance: &ContainerState,
    previous: Option<&ContainerStatus>,
    container: &Container,
) -> ContainerStatus {
    let id = container_uri(&instance.id);
    let mut status = ContainerStatus {
        name: instance.name.clone(),
        restart_count: i32::try_from(instance.attempt).unwrap_or(i32::MAX),
        image: instance.image.clone(),
        image_id: instance.image_ref.clone(),
        container_id: Some(id.clone()),
        volume_mounts: previous
            .and_then(|p| p.volume_mounts.clone())
            .or_else(|| volume_mounts(container)),
        ..ContainerStatus::default()
    };
    let previous_running =
        previous.is_some_and(|p| p.state.as_ref().is_some_and(|s| s.running.is_some()));
    status.state = Some(match instance.state {
        RunState::Running => ApiState {
            running: Some(ContainerStateRunning { started_at: instance.started_at.map(time) }),
            ..ApiState::default()
        },
        RunState::Exited => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: instance.exit_code,
                reason: Some(instance.exit_reason()),
                message: instance.message.clone().filter(|m| !m.is_empty()),
                started_at: instance.started_at.map(time),
                finished_at: instance.finished_at.map(time),
                container_id: Some(id),
                signal: None,
            }),
            ..ApiState::default()
        },
        RunState::Unknown if previous_running => {
            status.restart_count = previous.map_or(0, |p| p.restart_count) + 1;
            ApiState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some(STATUS_UNKNOWN.to_owned()),
                    message: Some(
                        "The container could not be located when the pod was terminated".to_owned(),
                    ),
                    ..ContainerStateTerminated::default()
                }),
                ..ApiState::default()
            }
        }
        RunState::Created | RunState::Unknown => waiting(None, None),
    });
    status
}

fn waiting(reason: Option<&str>, message: Option<String>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting { reason: reason.map(str::to_owned), message }),
        ..ApiState::default()
    }
}

/// `status.volumeMounts` as the RecursiveReadOnlyMounts feature reports them.
fn volume_mounts(container: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts = container.volume_mounts.as_ref().filter(|m| !m.is_empty())?;
    Some(
        mounts
            .iter()
            .map(|mount| {
                let read_only = mount.read_only == Some(true);
                VolumeMountStatus {
                    name: mount.name.clone(),
                    mount_path: mount.mount_path.clone(),
                    read_only: read_only.then_some(true),
                    recursive_read_only: read_only.then(|| {
                        if recursive_read_only(mount) { "Enabled" } else { "Disabled" }.to_owned()
                    }),
                }
            })
            .collect(),
    )
}

/// Sets `started` and `ready` from probe results (the probe manager's `UpdatePodStatus`).
fn apply_probes(
    pod: &Pod,
    observed: &Observed,
    containers: &mut [ContainerStatus],
    init: &mut [ContainerStatus],
) {
    let started = |spec: Option<&Container>, status: &ContainerStatus| -> bool {
        if !is_running(status) {
            return false;
        }
        match probe_of(observed, status).startup {
            Some(result) => result,
            None => spec.is_none_or(|c| c.startup_probe.is_none()),
        }
    };
    let ready = |spec: Option<&Container>, status: &ContainerStatus| -> bool {
        if !is_running(status) {
            return false;
        }
        probe_of(observed, status).readiness == Some(true)
            || spec.is_none_or(|c| c.readiness_probe.is_none())
    };
    for status in containers.iter_mut() {
        let spec = pod::spec(pod).containers.iter().find(|c| c.name == status.name);
        let is_started = started(spec, status);
        status.started = Some(is_started);
        status.ready = is_started && ready(spec, status);
    }
    for status in init.iter_mut() {
        let spec = pod::spec(pod).init_containers.iter().flatten().find(|c| c.name == status.name);
        let is_started = started(spec, status);
        status.started = Some(is_started);
        if spec.is_some_and(pod::is_restartable) {
            status.ready = is_started && ready(spec, status);
        } else {
            status.ready = exit_code(status) == Some(0);
        }
    }
}

fn probe_of(observed: &Observed, status: &ContainerStatus) -> crate::pods::observed::ProbeResults {
    let id = status.container_id.as_deref().unwrap_or_default();
    observed.probe(id.strip_prefix("containerd://").unwrap_or(id))
}

fn is_running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn exit_code(status: &ContainerStatus) -> Option<i32> {
    status.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// Whether any regular container exists in the current sandbox
/// (`HasAnyActiveRegularContainerStarted`).
fn has_initialized(pod: &Pod, observed: &Observed) -> bool {
    let Some(sandbox) = observed.sandbox.as_ref() else { return false };
    observed.containers.iter().any(|instance| {
        instance.sandbox_id == sandbox.id
            && pod::spec(pod).containers.iter().any(|c| c.name == instance.name)
    })
}

/// Kubelet's `getPhase`.
fn phase(
    pod: &Pod,
    containers: &[ContainerStatus],
    init: &[ContainerStatus],
    terminal: bool,
    has_initialized: bool,
) -> &'static str {
    let spec = pod::spec(pod);
    let find = |name: &str| init.iter().chain(containers.iter()).find(|status| status.name == name);
    let last_terminated =
        |s: &ContainerStatus| s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).cloned();
    let (mut pending_sidecars, mut pending_init, mut failed_init) = (0, 0, 0);
    for container in spec.init_containers.iter().flatten() {
        let Some(status) = find(&container.name) else {
            if pod::is_restartable(container) {
                pending_sidecars += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let state = status.state.clone().unwrap_or_default();
        if pod::is_restartable(container) {
            if state.running.is_none() || status.started != Some(true) {
                pending_sidecars += 1;
            }
            continue;
        }
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(terminated) = state.terminated {
            if terminated.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last_terminated(status) {
                Some(last) if last.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }

    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for container in &spec.containers {
        let Some(status) = find(&container.name) else {
            unknown += 1;
            continue;
        };
        let state = status.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(terminated) = state.terminated {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if last_terminated(status).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }

    let policy = pod::restart_policy(pod);
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !has_initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

/// Kubelet's `activeDeadlineHandler`.
fn past_deadline(pod: &Pod, start: Timestamp, now: Timestamp) -> bool {
    pod::spec(pod).active_deadline_seconds.is_some_and(|seconds| {
        now.duration_since(start) >= jiff::SignedDuration::from_secs(seconds)
    })
}
