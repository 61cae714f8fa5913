//! What kubelet's `SyncPod` does next for a pod (`computePodActions` plus the crash-loop
//! back-off of `doBackOff`): which sandbox to create, which containers to kill, which to start
//! and in which order, and which stay held back.
//!
//! Invariants:
//! - Init containers run one at a time in spec order, each after the previous one succeeded;
//!   sidecars (init containers with `restartPolicy: Always`) keep running and are restarted
//!   whenever they exit, and the next init container starts once a sidecar has started.
//! - Regular containers start only after every init container succeeded.
//! - A container that exited is restarted no sooner than its back-off allows: 10 s, doubling
//!   up to 5 min, starting over when it ran for more than 10 minutes since the last restart.
//! - A pod being deleted, past its active deadline or in a terminal phase starts nothing.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::pods::container::spec_hash;
use crate::pods::event::PodEvent;
use crate::pods::observed::{ContainerState, Observed, RunState, StartFailure};
use crate::pods::pod;

mod backoff;
#[cfg(test)]
mod tests;

pub use backoff::Backoff;
#[cfg(test)]
use backoff::BackoffEntry;

/// First crash-loop (and image pull) back-off.
pub const INITIAL_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
/// Longest crash-loop (and image pull) back-off.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(300);
/// A back-off starts over when this long passed since it was last extended.
pub const BACKOFF_RESET: SignedDuration = SignedDuration::from_secs(600);

/// Kubelet's `GetStableKey` for a container's restart back-off.
fn crash_key(pod: &Pod, container: &Container) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        pod::name(pod),
        pod::namespace(pod),
        pod::uid(pod),
        container.name,
        spec_hash(container)
    )
}

/// Why a container is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// The pod is stopping as a whole (deleted, done, or its sandbox is replaced).
    PodStopping,
    /// The container's spec (its image) changed.
    SpecChanged,
    /// The liveness probe failed.
    LivenessProbe,
    /// The startup probe failed.
    StartupProbe,
    /// The runtime cannot tell whether it runs.
    Unknown,
}

/// A container instance to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// Runtime container ID.
    pub container_id: String,
    /// Container name.
    pub name: String,
    /// Why.
    pub reason: KillReason,
    /// The `Killing` event message.
    pub message: String,
}

/// A container to create and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Container name.
    pub name: String,
    /// It is an init container (sidecars included).
    pub init: bool,
    /// Restart count to create it with ([`crate::pods::container::Context::restart_count`]).
    pub restart_count: u32,
}

/// What to do for a pod, in order: kill, stop the sandbox, remove, create the sandbox, start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Containers to stop (with the grace period), each recorded as a `Killing` event.
    pub kill: Vec<Kill>,
    /// Stop the pod's sandbox after the kills.
    pub stop_sandbox: bool,
    /// Exited container instances to remove (old init container runs).
    pub remove: Vec<String>,
    /// Create a new sandbox with this attempt before starting anything.
    pub create_sandbox: Option<u32>,
    /// Containers to start, in order. If starting a non-sidecar init container fails, start
    /// nothing after it.
    pub start: Vec<Start>,
    /// Containers held back by crash-loop back-off: put these into the start failures
    /// ([`Observed::start_failures`]); remove the entry of each container started.
    pub held: BTreeMap<String, StartFailure>,
    /// The back-off counters to keep for the next decision.
    pub backoff: Backoff,
    /// Events to record.
    pub events: Vec<PodEvent>,
    /// Sync again after this long, when the earliest back-off ends.
    pub requeue_after: Option<SignedDuration>,
}

/// Kubelet's `ShouldContainerBeRestarted`: whether a container that is not running should run.
pub(crate) fn should_restart(pod: &Pod, container: &Container, observed: &Observed) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(latest) = observed.latest(&container.name) else { return true };
    match latest.state {
        RunState::Running => false,
        RunState::Created | RunState::Unknown => true,
        RunState::Exited => match pod::restart_policy(pod) {
            "Never" => false,
            "OnFailure" => latest.exit_code != 0,
            _ => true,
        },
    }
}

/// Returns what to do next for `pod`, given what the runtime reports and the back-off state.
pub fn decide(pod: &Pod, observed: &Observed, backoff: &Backoff, now: Timestamp) -> Decision {
    let mut decision = Decision { backoff: backoff.clone(), ..Decision::default() };
    if stopping(pod, now) {
        stop_pod(observed, &mut decision);
        return decision;
    }
    let spec = pod::spec(pod);
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let restart_on_failure = pod::restart_policy(pod) != "Never";

    if let Some(attempt) = sandbox_needed(pod, observed) {
        stop_pod(observed, &mut decision);
        if !restart_on_failure && attempt != 0 && !observed.containers.is_empty() {
            return decision;
        }
        let to_start: Vec<&Container> = spec
            .containers
            .iter()
            .filter(|c| !(pod::restart_policy(pod) == "OnFailure" && succeeded(observed, c)))
            .collect();
        let created = spec
            .containers
            .iter()
            .any(|c| observed.latest(&c.name).is_some_and(|l| l.state != RunState::Unknown));
        if created && to_start.is_empty() {
            return decision;
        }
        decision.create_sandbox = Some(attempt);
        // Init containers run again from the first one in a new sandbox.
        for container in init_containers {
            decision
                .remove
                .extend(observed.instances(&container.name).iter().map(|c| c.id.clone()));
        }
        match init_containers.first() {
            Some(first) => schedule(pod, observed, &[(first, true)], &mut decision, now),
            None => {
                let starts: Vec<(&Container, bool)> =
                    to_start.into_iter().map(|c| (c, false)).collect();
                schedule(pod, observed, &starts, &mut decision, now)
            }
        }
        return decision;
    }

    let mut kills: Vec<Kill> = Vec::new();
    let mut init_starts: Vec<usize> = Vec::new();
    let init_outcome = init_actions(pod, observed, &mut kills, &mut init_starts);
    if init_outcome == InitOutcome::Failed {
        stop_pod(observed, &mut decision);
        return decision;
    }
    let mut starts: Vec<(&Container, bool)> =
        init_starts.iter().map(|&index| (&init_containers[index], true)).collect();

    if init_outcome == InitOutcome::Done {
        let mut keep = 0;
        for container in &spec.containers {
            let latest = observed.latest(&container.name);
            let Some(instance) = latest.filter(|l| l.state == RunState::Running) else {
                if should_restart(pod, container, observed) {
                    starts.push((container, false));
                    if let Some(unknown) = latest.filter(|l| l.state == RunState::Unknown) {
                        kills.push(kill(
                            unknown,
                            KillReason::Unknown,
                            "Container is in \"unknown\" state, try killing it before restart"
                                .to_owned(),
                        ));
                    }
                }
                continue;
            };
            let probes = observed.probe(&instance.id);
            let mut restart = restart_on_failure;
            let (reason, message) = if spec_changed(instance, container) {
                restart = true;
                (
                    KillReason::SpecChanged,
                    format!("Container {} definition changed", container.name),
                )
            } else if probes.liveness == Some(false) {
                (
                    KillReason::LivenessProbe,
                    format!("Container {} failed liveness probe", container.name),
                )
            } else if probes.startup == Some(false) {
                (
                    KillReason::StartupProbe,
                    format!("Container {} failed startup probe", container.name),
                )
            } else {
                keep += 1;
                continue;
            };
            let message = if restart {
                starts.push((container, false));
                format!("{message}, will be restarted")
            } else {
                message
            };
            kills.push(kill(instance, reason, message));
        }
        if keep == 0 && !starts.iter().any(|(_, init)| !*init) {
            // Nothing runs or will run: the pod is done, and its sidecars stop too.
            stop_pod(observed, &mut decision);
            return decision;
        }
    }

    for kill in &kills {
        decision.events.push(PodEvent::normal("Killing", kill.message.clone()).on(&kill.name));
    }
    decision.kill = kills;
    decision.remove = prune_init_containers(init_containers, observed);
    schedule(pod, observed, &starts, &mut decision, now);
    decision
}

/// Whether the pod must stop for good: deleted, terminal, or past its active deadline.
fn stopping(pod: &Pod, now: Timestamp) -> bool {
    let status = pod.status.as_ref();
    let terminal = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    let past_deadline = pod::spec(pod).active_deadline_seconds.is_some_and(|seconds| {
        status
            .and_then(|s| s.start_time.as_ref())
            .is_some_and(|start| now.duration_since(start.0) >= SignedDuration::from_secs(seconds))
    });
    pod.metadata.deletion_timestamp.is_some() || terminal || past_deadline
}

/// Kills every container that may run and stops the sandbox.
fn stop_pod(observed: &Observed, decision: &mut Decision) {
    for instance in &observed.containers {
        if matches!(instance.state, RunState::Running | RunState::Unknown) {
            let message = format!("Stopping container {}", instance.name);
            decision.events.push(PodEvent::normal("Killing", message.clone()).on(&instance.name));
            decision.kill.push(kill(instance, KillReason::PodStopping, message));
        }
    }
    decision.stop_sandbox = observed.sandbox.as_ref().is_some_and(|s| s.ready);
}

fn kill(instance: &ContainerState, reason: KillReason, message: String) -> Kill {
    Kill { container_id: instance.id.clone(), name: instance.name.clone(), reason, message }
}

/// Kubelet's `PodSandboxChanged`: the attempt of the sandbox to create, if one is needed.
fn sandbox_needed(pod: &Pod, observed: &Observed) -> Option<u32> {
    let Some(sandbox) = observed.sandbox.as_ref() else { return Some(0) };
    let host_network = pod::host_network(pod);
    let needed = !sandbox.ready
        || sandbox.host_network != host_network
        || (!host_network && sandbox.ips.is_empty());
    needed.then_some(sandbox.attempt + 1)
}

fn succeeded(observed: &Observed, container: &Container) -> bool {
    observed
        .latest(&container.name)
        .is_some_and(|l| l.state == RunState::Exited && l.exit_code == 0)
}

fn spec_changed(instance: &ContainerState, container: &Container) -> bool {
    instance.spec_hash.as_deref().is_some_and(|hash| hash != spec_hash(container))
}

fn init_failed(instance: &ContainerState) -> bool {
    instance.reason.as_deref() == Some("OOMKilled")
        || (instance.state == RunState::Exited && instance.exit_code != 0)
        || instance.state == RunState::Unknown
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitOutcome {
    /// Every init container succeeded (or started, for sidecars).
    Done,
    /// Initialization goes on.
    InProgress,
    /// An init container failed and the pod does not restart: the pod is done.
    Failed,
}

/// Kubelet's `computeInitContainerActions`, walking init containers from the last one so that
/// completed ones the runtime already removed are not run again.
fn init_actions(
    pod: &Pod,
    observed: &Observed,
    kills: &mut Vec<Kill>,
    starts: &mut Vec<usize>,
) -> InitOutcome {
    let spec = pod::spec(pod);
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    if init_containers.is_empty() {
        return InitOutcome::Done;
    }
    let mut initialized = spec.containers.iter().any(|c| {
        observed
            .latest(&c.name)
            .is_some_and(|l| matches!(l.state, RunState::Created | RunState::Running))
    });
    let mut previously_initialized = initialized;
    let restart_on_failure = pod::restart_policy(pod) != "Never";
    let last = init_containers.len() - 1;

    for (index, container) in init_containers.iter().enumerate().rev() {
        let sidecar = pod::is_restartable(container);
        let Some(instance) = observed.latest(&container.name) else {
            if previously_initialized && sidecar {
                starts.push(index);
            }
            continue;
        };
        if previously_initialized && !sidecar {
            continue;
        }
        match instance.state {
            RunState::Created => starts.push(index),
            RunState::Running if sidecar => 'running: {
                let probes = observed.probe(&instance.id);
                if container.startup_probe.is_some() {
                    match probes.startup {
                        None => break 'running,
                        Some(false) => {
                            kills.push(kill(
                                instance,
                                KillReason::StartupProbe,
                                format!("Init container {} failed startup probe", container.name),
                            ));
                            starts.push(index);
                            break 'running;
                        }
                        Some(true) => {}
                    }
                }
                if index == last {
                    initialized = true;
                } else if !previously_initialized {
                    starts.push(index + 1);
                }
                if spec_changed(instance, container) {
                    kills.push(kill(
                        instance,
                        KillReason::SpecChanged,
                        format!("Init container {} definition changed", container.name),
                    ));
                    starts.push(index);
                    break 'running;
                }
                if container.liveness_probe.is_some() && probes.liveness == Some(false) {
                    kills.push(kill(
                        instance,
                        KillReason::LivenessProbe,
                        format!("Init container {} failed liveness probe", container.name),
                    ));
                    starts.push(index);
                }
            }
            RunState::Running => {}
            RunState::Exited if sidecar => starts.push(index),
            RunState::Exited => {
                if init_failed(instance) {
                    if !restart_on_failure {
                        starts.clear();
                        return InitOutcome::Failed;
                    }
                    starts.push(index);
                } else if index == last {
                    initialized = true;
                } else {
                    starts.push(index + 1);
                }
            }
            RunState::Unknown => {
                if !sidecar && !restart_on_failure {
                    starts.clear();
                    return InitOutcome::Failed;
                }
                kills.push(kill(
                    instance,
                    KillReason::Unknown,
                    "Init container is in \"unknown\" state, try killing it before restart"
                        .to_owned(),
                ));
                starts.push(index);
            }
        }
        previously_initialized = true;
    }
    if !previously_initialized {
        starts.push(0);
    }
    starts.reverse();
    if initialized {
        InitOutcome::Done
    } else {
        InitOutcome::InProgress
    }
}

/// Kubelet's `pruneInitContainersBeforeStart`: only the newest finished run of each init
/// container is kept.
fn prune_init_containers(init_containers: &[Container], observed: &Observed) -> Vec<String> {
    let mut remove = Vec::new();
    for container in init_containers {
        let finished = observed
            .instances(&container.name)
            .into_iter()
            .filter(|c| matches!(c.state, RunState::Exited | RunState::Unknown));
        remove.extend(finished.skip(1).map(|c| c.id.clone()));
    }
    remove
}

/// Applies crash-loop back-off to the starts, in order, as `SyncPod`'s `start` does: a held
/// non-sidecar init container stops everything after it.
fn schedule(
    pod: &Pod,
    observed: &Observed,
    starts: &[(&Container, bool)],
    decision: &mut Decision,
    now: Timestamp,
) {
    for (container, init) in starts {
        let latest = observed.latest(&container.name);
        let last_exit =
            observed.instances(&container.name).into_iter().find(|c| c.state == RunState::Exited);
        if let Some(exited) = last_exit {
            let key = crash_key(pod, container);
            let finished = exited.finished_at.unwrap_or(exited.created_at);
            if decision.backoff.in_backoff_since(&key, finished, now) {
                let delay = decision.backoff.entry(&key).map_or(INITIAL_BACKOFF, |e| e.delay);
                decision.events.push(
                    PodEvent::warning(
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            container.name,
                            pod::display(pod)
                        ),
                    )
                    .on(&container.name),
                );
                decision.held.insert(
                    container.name.clone(),
                    StartFailure {
                        reason: "CrashLoopBackOff".to_owned(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={}",
                            go_duration(delay),
                            container.name,
                            pod::display(pod)
                        ),
                    },
                );
                let remaining = delay - now.duration_since(finished);
                decision.requeue_after =
                    Some(decision.requeue_after.map_or(remaining, |r| r.min(remaining)));
                if *init && !pod::is_restartable(container) {
                    return;
                }
                continue;
            }
            decision.backoff.next(&key, finished, now);
        }
        decision.start.push(Start {
            name: container.name.clone(),
            init: *init,
            restart_count: latest.map_or(0, |l| l.attempt + 1),
        });
    }
}

/// Go's `time.Duration` string for whole seconds and minutes (`10s`, `5m0s`, `2m40s`).
fn go_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 {
        format!("{}m{}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}
