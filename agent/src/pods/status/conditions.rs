//! The pod conditions kubelet owns (`pkg/kubelet/status/generate.go`), with its reasons and
//! messages word for word.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

use crate::pods::observed::Observed;
use crate::pods::pod;

pub(super) fn condition(
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..PodCondition::default()
    }
}

/// `PodReadyToStartContainers`: the newest sandbox is ready, in the right network namespace
/// and has an IP (unless host-network).
pub(super) fn ready_to_start_condition(pod: &Pod, observed: &Observed) -> PodCondition {
    let host_network = pod::host_network(pod);
    let ready = observed.sandbox.as_ref().is_some_and(|sandbox| {
        sandbox.ready
            && sandbox.host_network == host_network
            && (host_network || !sandbox.ips.is_empty())
    });
    condition("PodReadyToStartContainers", if ready { "True" } else { "False" }, None, None)
}

fn find<'a>(statuses: &[&'a ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|status| status.name == name).copied()
}

/// Go's `%s` rendering of a string slice.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// Kubelet's `GeneratePodInitializedCondition`.
pub(super) fn initialized_condition(
    pod: &Pod,
    statuses: &[&ContainerStatus],
    phase: &str,
) -> PodCondition {
    let spec = pod::spec(pod);
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for container in spec.init_containers.iter().flatten() {
        let Some(status) = find(statuses, &container.name) else {
            unknown.push(container.name.clone());
            continue;
        };
        let done = if pod::is_restartable(container) {
            status.started == Some(true)
        } else {
            status.ready
        };
        if !done {
            incomplete.push(container.name.clone());
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", "True", Some("PodCompleted"), None);
    }
    let regular_started = statuses.iter().any(|status| {
        spec.containers.iter().any(|c| c.name == status.name)
            && status.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    });
    if regular_started {
        return condition("Initialized", "True", None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", go_list(&unknown)));
    }
    if !incomplete.is_empty() {
        messages.push(format!("containers with incomplete status: {}", go_list(&incomplete)));
    }
    if messages.is_empty() {
        return condition("Initialized", "True", None, None);
    }
    condition("Initialized", "False", Some("ContainersNotInitialized"), Some(messages.join(", ")))
}

/// Kubelet's `GenerateContainersReadyCondition`: sidecars and regular containers all ready.
pub(super) fn containers_ready_condition(
    pod: &Pod,
    statuses: &[&ContainerStatus],
    phase: &str,
) -> PodCondition {
    let spec = pod::spec(pod);
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let sidecars = spec.init_containers.iter().flatten().filter(|c| pod::is_restartable(c));
    for container in sidecars.chain(spec.containers.iter()) {
        match find(statuses, &container.name) {
            Some(status) if !status.ready => unready.push(container.name.clone()),
            Some(_) => {}
            None => unknown.push(container.name.clone()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("ContainersReady", "False", Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return condition("ContainersReady", "False", Some("PodFailed"), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", go_list(&unknown)));
    }
    if !unready.is_empty() {
        messages.push(format!("containers with unready status: {}", go_list(&unready)));
    }
    if messages.is_empty() {
        return condition("ContainersReady", "True", None, None);
    }
    condition("ContainersReady", "False", Some("ContainersNotReady"), Some(messages.join(", ")))
}

/// Kubelet's `GeneratePodReadyCondition`: containers ready and every readiness gate `True`.
pub(super) fn ready_condition(
    pod: &Pod,
    conditions: &[PodCondition],
    containers_ready: &PodCondition,
) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition { type_: "Ready".to_owned(), ..containers_ready.clone() };
    }
    let mut messages = Vec::new();
    for gate in pod::spec(pod).readiness_gates.iter().flatten() {
        let found = conditions.iter().find(|c| c.type_ == gate.condition_type);
        match found {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition("Ready", "True", None, None)
    } else {
        condition("Ready", "False", Some("ReadinessGatesNotReady"), Some(messages.join(", ")))
    }
}
