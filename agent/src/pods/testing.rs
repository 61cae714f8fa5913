//! Builders shared by the table tests, and kubectl's `get pods` columns to assert on.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::pods::observed::{ContainerState, Observed, RunState, SandboxState};

pub const UID: &str = "0b1c2d3e-aaaa-bbbb-cccc-123456789abc";

pub fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

pub fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
}

pub fn container(name: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some("nginx:1.27".to_owned()),
        ..Container::default()
    }
}

/// Pod "web" in "default" on node n1 with one container "app".
pub fn pod() -> Pod {
    pod_with(vec![container("app")])
}

pub fn pod_with(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some(UID.to_owned()),
            labels: Some(map(&[("app", "web")])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec { containers, node_name: Some("n1".to_owned()), ..PodSpec::default() }),
        status: None,
    }
}

pub fn with<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut value);
    value
}

pub fn sandbox() -> SandboxState {
    SandboxState {
        id: "sb1".to_owned(),
        attempt: 0,
        ready: true,
        ips: vec!["10.244.1.7".to_owned()],
        host_network: false,
    }
}

fn instance(name: &str, id: &str, attempt: u32, state: RunState) -> ContainerState {
    ContainerState {
        id: id.to_owned(),
        sandbox_id: "sb1".to_owned(),
        name: name.to_owned(),
        attempt,
        state,
        image: "docker.io/library/nginx:1.27".to_owned(),
        image_ref: "docker.io/library/nginx@sha256:abc".to_owned(),
        ..ContainerState::default()
    }
}

/// An instance running since `started_ago` seconds.
pub fn running(name: &str, id: &str, attempt: u32, started_ago: i64) -> ContainerState {
    ContainerState {
        created_at: ago(started_ago + 1),
        started_at: Some(ago(started_ago)),
        ..instance(name, id, attempt, RunState::Running)
    }
}

/// An instance that ran for `ran` seconds and exited `finished_ago` seconds ago.
pub fn exited(name: &str, id: &str, attempt: u32, code: i32, finished_ago: i64) -> ContainerState {
    ContainerState {
        exit_code: code,
        created_at: ago(finished_ago + 6),
        started_at: Some(ago(finished_ago + 5)),
        finished_at: Some(ago(finished_ago)),
        ..instance(name, id, attempt, RunState::Exited)
    }
}

pub fn created(name: &str, id: &str, attempt: u32) -> ContainerState {
    ContainerState { created_at: ago(1), ..instance(name, id, attempt, RunState::Created) }
}

pub fn observed(containers: Vec<ContainerState>) -> Observed {
    Observed { sandbox: Some(sandbox()), containers, ..Observed::default() }
}

/// The READY, STATUS and RESTARTS columns of `kubectl get pods` (kubectl's `printPod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub ready: String,
    pub status: String,
    pub restarts: i32,
}

pub fn columns(ready: &str, status: &str, restarts: i32) -> Columns {
    Columns { ready: ready.to_owned(), status: status.to_owned(), restarts }
}

pub fn kubectl(pod: &Pod, status: &PodStatus) -> Columns {
    let spec = pod.spec.as_ref().unwrap();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let sidecar = |name: &str| {
        inits.iter().any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let mut total = spec.containers.len();
    total += inits.iter().filter(|c| sidecar(&c.name)).count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut reason =
        status.reason.clone().unwrap_or_else(|| status.phase.clone().unwrap_or_default());
    let mut initializing = false;
    for (index, init) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += init.restart_count;
        if sidecar(&init.name) {
            sidecar_restarts += init.restart_count;
        }
        let state = init.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar(&init.name) && init.started == Some(true) {
            if init.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(terminated) = state.terminated {
            reason = match terminated.reason {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", terminated.exit_code),
            };
        } else if let Some(r) =
            state.waiting.and_then(|w| w.reason).filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{index}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    let initialized =
        status.conditions.iter().flatten().any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for container in status.container_statuses.iter().flatten().rev() {
            restarts += container.restart_count;
            let state = container.state.clone().unwrap_or_default();
            if let Some(r) =
                state.waiting.as_ref().and_then(|w| w.reason.clone()).filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(terminated) = state.terminated.as_ref() {
                reason = match terminated.reason.clone() {
                    Some(r) if !r.is_empty() => r,
                    _ => format!("ExitCode:{}", terminated.exit_code),
                };
            } else if container.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }
    let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if pod.metadata.deletion_timestamp.is_some() && !terminal {
        reason = "Terminating".to_owned();
    }
    Columns { ready: format!("{ready}/{total}"), status: reason, restarts }
}
