//! What the runtime holds for one pod, read through the CRI and mapped into the pure core's
//! [`Observed`]: its newest sandbox and every container instance the runtime still keeps.
//!
//! The mapping functions are pure; [`observe`] is the one place that asks the runtime.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_cri::v1::{
    ContainerFilter, ContainerState as CriState, ContainerStatus, NamespaceMode, PodSandboxFilter,
    PodSandboxState, PodSandboxStatus,
};

use crate::cri::{CriError, Runtime};
use crate::pods::container::{HASH_ANNOTATION, RESTART_COUNT_ANNOTATION};
use crate::pods::observed::{
    ContainerState, Observed, ProbeResults, RunState, SandboxState, StartFailure,
};
use crate::pods::sandbox::POD_UID_LABEL;

/// A pod's sandboxes as the runtime reports them, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sandboxes {
    pub ids: Vec<String>,
    /// Whether any of them is still ready.
    pub any_ready: bool,
}

/// The time a CRI nanosecond count stands for; zero (unset) is `None`.
fn timestamp(nanoseconds: i64) -> Option<Timestamp> {
    (nanoseconds > 0).then(|| Timestamp::from_nanosecond(i128::from(nanoseconds)).ok()).flatten()
}

/// Maps a sandbox status.
pub(crate) fn sandbox_state(status: &PodSandboxStatus) -> SandboxState {
    let network = status.network.as_ref();
    let mut ips: Vec<String> = network.map(|n| n.ip.clone()).into_iter().collect();
    ips.extend(network.into_iter().flat_map(|n| n.additional_ips.iter().map(|ip| ip.ip.clone())));
    ips.retain(|ip| !ip.is_empty());
    let host_network = status
        .linux
        .as_ref()
        .and_then(|linux| linux.namespaces.as_ref())
        .and_then(|namespaces| namespaces.options.as_ref())
        .is_some_and(|options| options.network == NamespaceMode::Node as i32);
    SandboxState {
        id: status.id.clone(),
        attempt: status.metadata.as_ref().map_or(0, |m| m.attempt),
        ready: status.state == PodSandboxState::SandboxReady as i32,
        ips,
        host_network,
    }
}

/// Maps a container status; `sandbox_id` comes from the container listing, which the status
/// lacks.
pub(crate) fn container_state(status: &ContainerStatus, sandbox_id: &str) -> ContainerState {
    let state = match CriState::try_from(status.state) {
        Ok(CriState::ContainerCreated) => RunState::Created,
        Ok(CriState::ContainerRunning) => RunState::Running,
        Ok(CriState::ContainerExited) => RunState::Exited,
        Ok(CriState::ContainerUnknown) | Err(_) => RunState::Unknown,
    };
    let annotation = |key: &str| status.annotations.get(key).filter(|v| !v.is_empty()).cloned();
    let name = status.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let attempt = annotation(RESTART_COUNT_ANNOTATION)
        .and_then(|count| count.parse().ok())
        .or_else(|| status.metadata.as_ref().map(|m| m.attempt))
        .unwrap_or(0);
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    ContainerState {
        id: status.id.clone(),
        sandbox_id: sandbox_id.to_owned(),
        name,
        attempt,
        state,
        exit_code: status.exit_code,
        reason: non_empty(&status.reason),
        message: non_empty(&status.message),
        created_at: timestamp(status.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
        started_at: timestamp(status.started_at),
        finished_at: timestamp(status.finished_at),
        image: status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
        image_ref: status.image_ref.clone(),
        spec_hash: annotation(HASH_ANNOTATION),
    }
}

/// The label filter selecting everything of the pod with `uid`.
fn of_pod(uid: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(POD_UID_LABEL.to_owned(), uid.to_owned())])
}

/// Reads the pod's sandboxes and containers from the runtime. The newest sandbox is the one
/// the pod runs in; older ones are only returned for removal.
pub(crate) async fn observe<R: Runtime>(
    runtime: &R,
    uid: &str,
    probes: BTreeMap<String, ProbeResults>,
    start_failures: BTreeMap<String, StartFailure>,
) -> Result<(Observed, Sandboxes), CriError> {
    let mut listed = runtime
        .list_pod_sandboxes(PodSandboxFilter { label_selector: of_pod(uid), ..Default::default() })
        .await?;
    listed.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let sandboxes = Sandboxes {
        ids: listed.iter().map(|s| s.id.clone()).collect(),
        any_ready: listed.iter().any(|s| s.state == PodSandboxState::SandboxReady as i32),
    };
    let sandbox = match listed.first() {
        Some(newest) => match runtime.pod_sandbox_status(&newest.id).await {
            Ok(status) => Some(sandbox_state(&status)),
            Err(err) if err.is_not_found() => None,
            Err(err) => return Err(err),
        },
        None => None,
    };
    let mut containers = Vec::new();
    let listed = runtime
        .list_containers(ContainerFilter { label_selector: of_pod(uid), ..Default::default() })
        .await?;
    for container in listed {
        match runtime.container_status(&container.id).await {
            Ok(status) => containers.push(container_state(&status, &container.pod_sandbox_id)),
            // Removed between the listing and the status: it no longer counts.
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
    }
    let observed = Observed { sandbox, containers, probes, start_failures };
    Ok((observed, sandboxes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use k8s_cri::v1::{
        ContainerMetadata, ImageSpec, LinuxPodSandboxStatus, Namespace, NamespaceOption, PodIp,
        PodSandboxMetadata, PodSandboxNetworkStatus,
    };

    use super::*;

    fn sandbox_status(state: PodSandboxState, network: NamespaceMode) -> PodSandboxStatus {
        PodSandboxStatus {
            id: "sb1".into(),
            metadata: Some(PodSandboxMetadata { attempt: 2, ..Default::default() }),
            state: state as i32,
            network: Some(PodSandboxNetworkStatus {
                ip: "10.32.1.5".into(),
                additional_ips: vec![PodIp { ip: "fd00::5".into() }],
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: network as i32,
                        ..Default::default()
                    }),
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sandboxes_map_readiness_ips_attempt_and_host_network() {
        let cases = [
            (PodSandboxState::SandboxReady, NamespaceMode::Pod, true, false),
            (PodSandboxState::SandboxNotready, NamespaceMode::Pod, false, false),
            (PodSandboxState::SandboxReady, NamespaceMode::Node, true, true),
        ];
        for (state, network, ready, host_network) in cases {
            let mapped = sandbox_state(&sandbox_status(state, network));
            assert_eq!(mapped.ready, ready, "{state:?}");
            assert_eq!(mapped.host_network, host_network, "{network:?}");
            assert_eq!(mapped.attempt, 2);
            assert_eq!(mapped.ips, ["10.32.1.5", "fd00::5"]);
        }
    }

    fn container_status(state: CriState, annotations: &[(&str, &str)]) -> ContainerStatus {
        ContainerStatus {
            id: "c1".into(),
            metadata: Some(ContainerMetadata { name: "web".into(), attempt: 7 }),
            state: state as i32,
            created_at: 1_700_000_000_000_000_000,
            started_at: 1_700_000_001_000_000_000,
            finished_at: 0,
            exit_code: 0,
            image: Some(ImageSpec {
                image: "flotilla.local/busybox:1".into(),
                ..Default::default()
            }),
            image_ref: "sha256:abc".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }
    }

    #[test]
    fn containers_map_states_times_and_kubelet_annotations() {
        let cases = [
            (CriState::ContainerCreated, RunState::Created),
            (CriState::ContainerRunning, RunState::Running),
            (CriState::ContainerExited, RunState::Exited),
            (CriState::ContainerUnknown, RunState::Unknown),
        ];
        for (state, expected) in cases {
            let status = container_status(
                state,
                &[(RESTART_COUNT_ANNOTATION, "3"), (HASH_ANNOTATION, "beef")],
            );
            let mapped = container_state(&status, "sb1");
            assert_eq!(mapped.state, expected);
            assert_eq!(mapped.sandbox_id, "sb1");
            assert_eq!(mapped.name, "web");
            assert_eq!(mapped.attempt, 3, "the restart count annotation wins over the attempt");
            assert_eq!(mapped.spec_hash.as_deref(), Some("beef"));
            assert_eq!(mapped.started_at.unwrap().as_second(), 1_700_000_001);
            assert_eq!(mapped.finished_at, None, "zero means never");
            assert_eq!(mapped.reason, None, "empty strings are absent");
        }
    }

    #[test]
    fn containers_without_annotations_fall_back_to_metadata() {
        let mapped = container_state(&container_status(CriState::ContainerRunning, &[]), "sb1");
        assert_eq!(mapped.attempt, 7);
        assert_eq!(mapped.spec_hash, None);
    }
}
