//! Small readers over a pod shared by every module.

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

/// Returns the pod's spec, or an empty one for a pod without spec.
pub(crate) fn spec(pod: &Pod) -> &PodSpec {
    static EMPTY: OnceLock<PodSpec> = OnceLock::new();
    pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(PodSpec::default))
}

pub(crate) fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

pub(crate) fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// Kubelet's `format.Pod`: `name_namespace(uid)`, used in messages.
pub(crate) fn display(pod: &Pod) -> String {
    format!("{}_{}({})", name(pod), namespace(pod), uid(pod))
}

/// Returns the pod's restart policy, `Always` when unset (the API default).
pub(crate) fn restart_policy(pod: &Pod) -> &str {
    spec(pod).restart_policy.as_deref().unwrap_or("Always")
}

pub(crate) fn host_network(pod: &Pod) -> bool {
    spec(pod).host_network == Some(true)
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub(crate) fn is_restartable(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// Whether `container` is one of the pod's sidecars.
pub(crate) fn is_sidecar(pod: &Pod, container: &Container) -> bool {
    is_restartable(container)
        && spec(pod).init_containers.iter().flatten().any(|init| init.name == container.name)
}

/// Returns the container of the pod (regular, then init) with this name.
pub(crate) fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = spec(pod);
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// Kubelet's `sortPodIPs`: at most one IP per family, the node's primary family first.
pub(crate) fn sort_pod_ips(pod_ips: &[String], host_ips: &[String]) -> Vec<String> {
    use std::net::IpAddr;
    let is_v6 = |ip: &str| matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V6(_)));
    let is_v4 = |ip: &str| matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V4(_)));
    let node_v6 = host_ips.first().is_some_and(|ip| is_v6(ip));
    let first = pod_ips.iter().find(|ip| if node_v6 { is_v6(ip) } else { is_v4(ip) });
    let second = pod_ips.iter().find(|ip| if node_v6 { is_v4(ip) } else { is_v6(ip) });
    let mut out = Vec::new();
    out.extend(first.cloned());
    out.extend(second.cloned());
    out
}
