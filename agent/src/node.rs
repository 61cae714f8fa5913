//! The Node object an agent registers and the status it reports, as kubelet fills them in,
//! decided from the machine's facts without IO.
//!
//! Invariants: a condition's `lastTransitionTime` changes only when its status does; a status
//! that differs from the previous one only in heartbeat times is not worth a write
//! ([`needs_update`]), so an idle node writes nothing.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::machine::Machine;

/// Pods one node runs at most (kubelet's default `maxPods`).
pub const MAX_PODS: u64 = 110;
/// Memory kept back from pods: kubelet's default hard eviction threshold `memory.available<100Mi`.
const MEMORY_EVICTION_BYTES: u64 = 100 << 20;
/// Disk kept back from pods: `nodefs.available<10%`.
const DISK_EVICTION_PERCENT: u64 = 10;

/// What the agent knows about itself beyond the machine.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    /// The address other nodes and the masters reach this node at.
    pub address: String,
    /// `kubeletVersion` as `kubectl get nodes` shows it.
    pub version: String,
    /// `containerRuntimeVersion`, e.g. `containerd://1.6.20`.
    pub runtime: String,
    /// The port the agent serves logs, exec and port-forward on.
    pub port: i32,
    /// Why pods cannot run here, when they cannot (the node is then not Ready).
    pub runtime_problem: Option<String>,
}

/// The Node to create when registering: labels kubelet sets and the first status.
pub fn registration(identity: &Identity, machine: &Machine, now: Timestamp) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), identity.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), machine.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), machine.architecture.clone()),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(identity.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(status(identity, machine, None, now)),
    }
}

fn kibibytes(bytes: u64) -> Quantity {
    Quantity(format!("{}Ki", bytes / 1024))
}

fn condition(
    kind: &str,
    is_true: bool,
    reason: &str,
    message: &str,
    previous: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeCondition {
    let status = if is_true { "True" } else { "False" };
    let before = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == kind));
    let transition = match before {
        Some(before) if before.status == status => before.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: transition,
    }
}

/// What the node offers pods: its capacity less the eviction reserves.
pub fn allocatable(machine: &Machine) -> BTreeMap<String, Quantity> {
    let disk_reserved = machine.disk_bytes * DISK_EVICTION_PERCENT / 100;
    BTreeMap::from([
        ("cpu".to_string(), Quantity(machine.cpus.to_string())),
        (
            "memory".to_string(),
            kibibytes(machine.memory_bytes.saturating_sub(MEMORY_EVICTION_BYTES)),
        ),
        ("ephemeral-storage".to_string(), kibibytes(machine.disk_bytes - disk_reserved)),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
    ])
}

/// The node's status now, keeping transition times from `previous`.
pub fn status(
    identity: &Identity,
    machine: &Machine,
    previous: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let disk_reserved = machine.disk_bytes * DISK_EVICTION_PERCENT / 100;
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(machine.cpus.to_string())),
        ("memory".to_string(), kibibytes(machine.memory_bytes)),
        ("ephemeral-storage".to_string(), kibibytes(machine.disk_bytes)),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
    ]);
    let allocatable = allocatable(machine);
    let memory_pressure = machine.memory_available_bytes < MEMORY_EVICTION_BYTES;
    let disk_pressure = machine.disk_available_bytes < disk_reserved;
    let conditions = vec![
        if memory_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                previous,
                now,
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                previous,
                now,
            )
        },
        if disk_pressure {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                previous,
                now,
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                previous,
                now,
            )
        },
        condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            previous,
            now,
        ),
        match &identity.runtime_problem {
            None => condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
                previous,
                now,
            ),
            Some(problem) => condition("Ready", false, "KubeletNotReady", problem, previous, now),
        },
    ];
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: identity.address.clone() },
            NodeAddress { type_: "Hostname".into(), address: identity.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: identity.port,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: machine.architecture.clone(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: identity.runtime.clone(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: identity.version.clone(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.machine_id.clone(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// The status of the Ready condition in `status`, if it has one.
pub fn ready(status: Option<&NodeStatus>) -> Option<&str> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// Whether `next` says anything `previous` does not, heartbeat times aside.
pub fn needs_update(previous: &NodeStatus, next: &NodeStatus) -> bool {
    let without_heartbeats = |status: &NodeStatus| {
        let mut status = status.clone();
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        status
    };
    without_heartbeats(previous) != without_heartbeats(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 4,
            memory_bytes: 8 << 30,
            memory_available_bytes: 6 << 30,
            disk_available_bytes: 50 << 30,
            disk_bytes: 100 << 30,
            kernel_version: "6.18.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            boot_id: "b".into(),
            machine_id: "m".into(),
        }
    }

    fn identity() -> Identity {
        Identity {
            name: "agent-1".into(),
            address: "10.0.0.7".into(),
            version: "v1.33.0+flotilla.0.1.0".into(),
            runtime: "containerd://1.6.20".into(),
            port: 10250,
            runtime_problem: None,
        }
    }

    fn ready(status: &NodeStatus) -> &NodeCondition {
        status.conditions.iter().flatten().find(|c| c.type_ == "Ready").unwrap()
    }

    #[test]
    fn registration_carries_kubelet_labels_capacity_and_ready() {
        let node = registration(&identity(), &machine(), Timestamp::UNIX_EPOCH);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "agent-1");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        let status = node.status.unwrap();
        let capacity = status.capacity.clone().unwrap();
        assert_eq!(capacity["cpu"].0, "4");
        assert_eq!(capacity["memory"].0, "8388608Ki");
        assert_eq!(capacity["pods"].0, "110");
        let allocatable = status.allocatable.clone().unwrap();
        assert_eq!(allocatable["memory"].0, format!("{}Ki", ((8u64 << 30) - (100 << 20)) / 1024));
        assert_eq!(ready(&status).status, "True");
        assert_eq!(ready(&status).reason.as_deref(), Some("KubeletReady"));
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].address, "10.0.0.7");
    }

    #[test]
    fn an_unchanged_machine_needs_no_write_and_keeps_transition_times() {
        let first = status(&identity(), &machine(), None, Timestamp::UNIX_EPOCH);
        let later = Timestamp::from_second(600).unwrap();
        let second = status(&identity(), &machine(), Some(&first), later);
        assert!(!needs_update(&first, &second));
        assert_eq!(ready(&second).last_transition_time, ready(&first).last_transition_time);
        assert_eq!(ready(&second).last_heartbeat_time, Some(Time(later)));
    }

    #[test]
    fn a_node_without_a_working_runtime_is_not_ready() {
        let mut broken = identity();
        broken.runtime_problem = Some("container runtime is down".into());
        let status = status(&broken, &machine(), None, Timestamp::UNIX_EPOCH);
        assert_eq!(ready(&status).status, "False");
        assert_eq!(ready(&status).reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready(&status).message.as_deref(), Some("container runtime is down"));
    }

    #[test]
    fn pressure_is_reported_and_transitions_are_stamped() {
        let first = status(&identity(), &machine(), None, Timestamp::UNIX_EPOCH);
        let mut starved = machine();
        starved.memory_available_bytes = 50 << 20;
        starved.disk_available_bytes = 1 << 30;
        let later = Timestamp::from_second(60).unwrap();
        let second = status(&identity(), &starved, Some(&first), later);
        assert!(needs_update(&first, &second));
        let find = |kind: &str| {
            second.conditions.iter().flatten().find(|c| c.type_ == kind).unwrap().clone()
        };
        assert_eq!(find("MemoryPressure").status, "True");
        assert_eq!(find("MemoryPressure").last_transition_time, Some(Time(later)));
        assert_eq!(find("DiskPressure").reason.as_deref(), Some("KubeletHasDiskPressure"));
        assert_eq!(find("Ready").last_transition_time, Some(Time(Timestamp::UNIX_EPOCH)));
    }
}
