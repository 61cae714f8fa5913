//! Quality-of-service classes and what kubelet derives from them: the pod's cgroup parent and
//! each container's OOM score adjustment.
//!
//! Invariant: requests are read as the API server defaults them (a missing request equals the
//! limit), so a pod that was never defaulted gets the class a defaulted one would.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::pods::pod;
use crate::pods::quantity;

/// A pod's quality-of-service class (`status.qosClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal, non-zero CPU and memory requests and limits.
    Guaranteed,
    /// Some container requests or limits something, but the pod is not Guaranteed.
    Burstable,
    /// No container requests or limits CPU or memory.
    BestEffort,
}

impl QosClass {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// How the node's cgroups are managed (kubelet's `cgroupDriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupDriver {
    /// Slices under `/kubepods.slice`, the default with containerd on systemd hosts.
    #[default]
    Systemd,
    /// Plain directories under `/kubepods`.
    Cgroupfs,
}

/// OOM score adjustment of Guaranteed and node-critical containers.
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// OOM score adjustment of BestEffort containers.
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Priority at or above which a pod is critical (`scheduling.SystemCriticalPriority`).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Returns the pod's class: `status.qosClass` when set, else computed as kubelet's `GetPodQOS`.
pub fn qos_class(pod: &Pod) -> QosClass {
    match pod.status.as_ref().and_then(|status| status.qos_class.as_deref()) {
        Some("Guaranteed") => QosClass::Guaranteed,
        Some("Burstable") => QosClass::Burstable,
        Some("BestEffort") => QosClass::BestEffort,
        _ => compute(pod::spec(pod)),
    }
}

fn compute(spec: &PodSpec) -> QosClass {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in containers {
        for (name, amount) in requests_of(container) {
            if let Some(amount) = compute_resource(&name, &amount) {
                *requests.entry(compute_name(&name)).or_default() += amount;
            }
        }
        let mut limited = (false, false);
        let container_limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
        for (name, amount) in container_limits.into_iter().flatten() {
            if let Some(amount) = compute_resource(name, amount) {
                *limits.entry(compute_name(name)).or_default() += amount;
                match name.as_str() {
                    "cpu" => limited.0 = true,
                    _ => limited.1 = true,
                }
            }
        }
        if limited != (true, true) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(name, request)| limits.get(name) == Some(request))
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

/// Returns the amount in milli-units when `name` counts for QoS (cpu, memory) and is positive.
fn compute_resource(name: &str, amount: &Quantity) -> Option<i128> {
    matches!(name, "cpu" | "memory")
        .then(|| quantity::parse_milli(&amount.0))
        .flatten()
        .filter(|amount| *amount > 0)
}

fn compute_name(name: &str) -> &'static str {
    if name == "cpu" {
        "cpu"
    } else {
        "memory"
    }
}

/// Returns the container's requests as the API server defaults them: a resource with a limit
/// but no request is requested at its limit.
pub(crate) fn requests_of(container: &Container) -> BTreeMap<String, Quantity> {
    let resources = container.resources.as_ref();
    let mut requests = resources.and_then(|r| r.requests.clone()).unwrap_or_default();
    for (name, limit) in resources.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
        requests.entry(name.clone()).or_insert_with(|| limit.clone());
    }
    requests
}

/// Returns the cgroup kubelet places the pod in (`GetPodContainerName`), for the sandbox's
/// `cgroup_parent`.
pub fn cgroup_parent(pod: &Pod, driver: CgroupDriver) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let tier = match qos_class(pod) {
        QosClass::Guaranteed => None,
        QosClass::Burstable => Some("burstable"),
        QosClass::BestEffort => Some("besteffort"),
    };
    match driver {
        CgroupDriver::Cgroupfs => match tier {
            Some(tier) => format!("/kubepods/{tier}/pod{uid}"),
            None => format!("/kubepods/pod{uid}"),
        },
        CgroupDriver::Systemd => {
            // systemd unit names reserve '-' as the hierarchy separator.
            let uid = uid.replace('-', "_");
            match tier {
                Some(tier) => {
                    format!("/kubepods.slice/kubepods-{tier}.slice/kubepods-{tier}-pod{uid}.slice")
                }
                None => format!("/kubepods.slice/kubepods-pod{uid}.slice"),
            }
        }
    }
}

/// Returns the OOM score adjustment kubelet gives `container` (`GetContainerOOMScoreAdjust`),
/// given the node's memory capacity in bytes.
pub fn oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i64 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let capacity = i128::from(memory_capacity.max(1));
    let memory_request = |c: &Container| i128::from(quantity::value(requests_of(c).get("memory")));
    let mut adjust = 1000 - (1000 * memory_request(container)) / capacity;
    if pod::is_sidecar(pod, container) {
        // A sidecar is killed no later than the regular container requesting the least memory.
        let smallest = pod::spec(pod).containers.iter().map(memory_request).min().unwrap_or(0);
        adjust = adjust.min(1000 - (1000 * smallest) / capacity);
    }
    let adjust = i64::try_from(adjust).unwrap_or(i64::MIN);
    if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        1000 + GUARANTEED_OOM_SCORE_ADJ
    } else if adjust == BEST_EFFORT_OOM_SCORE_ADJ {
        adjust - 1
    } else {
        adjust
    }
}

/// Kubelet's `IsNodeCriticalPod`: critical priority and the `system-node-critical` class.
fn is_node_critical(pod: &Pod) -> bool {
    let spec = pod::spec(pod);
    spec.priority.is_some_and(|priority| priority >= SYSTEM_CRITICAL_PRIORITY)
        && spec.priority_class_name.as_deref() == Some("system-node-critical")
}

#[cfg(test)]
mod tests;
