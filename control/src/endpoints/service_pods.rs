//! What both endpoint controllers read from a Service and its pods, as Kubernetes'
//! `k8s.io/endpointslice/util` and `pkg/api/v1/pod` helpers do: which pods a Service selects,
//! whether a pod belongs in its endpoints, its readiness, its addresses by IP family, its
//! hostname, and which container port a Service port targets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label marking endpoints of a Service without a cluster IP.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation the upstream controllers set to when the change that caused a write happened.
pub(crate) const LAST_CHANGE_TRIGGER_TIME_ANNOTATION: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";

/// An IP family, as a Service's `ipFamilies` and an EndpointSlice's `addressType` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Family {
    V4,
    V6,
}

/// Why no plan could be made for a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field the controller needs is absent.
    #[error("service has no {field}")]
    MissingField { field: &'static str },
}

impl Family {
    /// Returns the EndpointSlice `addressType` for this family.
    pub(crate) fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Returns the Service's selector, or `None` when the controllers leave it alone: no selector,
/// an empty one (the API drops an empty map, so it reads back as none), or `type: ExternalName`.
pub(crate) fn managed_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|selector| !selector.is_empty())
}

/// Returns whether `pod` lives in the Service's namespace and carries every selector label.
pub(crate) fn selects(service: &Service, selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    pod.metadata.namespace == service.metadata.namespace
        && selector.iter().all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
}

/// Returns whether the pod belongs in endpoints at all (`ShouldPodBeInEndpoints`): not
/// `Succeeded`/`Failed`, has an IP, and is not terminating unless `include_terminating`.
pub(crate) fn belongs_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let has_ip = status.is_some_and(|status| {
        status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || status.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// Returns the pod's IPs in `status.podIPs` order, falling back to `status.podIP` when the list
/// is absent (the API server always fills the list; the fallback only helps hand-made pods).
pub(crate) fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    match status.pod_ips.as_ref().filter(|ips| !ips.is_empty()) {
        Some(ips) => ips.iter().map(|ip| ip.ip.as_str()).collect(),
        None => status.pod_ip.as_deref().into_iter().collect(),
    }
}

/// Parses an IP as Go's `ParseIPSloppy` does (IPv4 octets may have leading zeros) and returns
/// its family and canonical text. An IPv4-mapped IPv6 address counts as IPv4, as in Go.
pub(crate) fn parse_ip(text: &str) -> Option<(Family, String)> {
    let ip = text.parse::<IpAddr>().ok().or_else(|| sloppy_ipv4(text).map(IpAddr::V4))?;
    Some(match ip {
        IpAddr::V4(v4) => (Family::V4, v4.to_string()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (Family::V4, v4.to_string()),
            None => (Family::V6, v6.to_string()),
        },
    })
}

fn sloppy_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// Returns whether the Service has a cluster IP (`IsServiceIPSet`); headless Services do not.
pub(crate) fn has_cluster_ip(service: &Service) -> bool {
    let cluster_ip = service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref());
    !matches!(cluster_ip, None | Some("") | Some("None"))
}

/// Returns whether the Service is explicitly headless (`clusterIP: None`).
pub(crate) fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()) == Some("None")
}

/// Returns the hostname to publish for the pod: its `spec.hostname` when its `spec.subdomain`
/// names this Service in the same namespace (`ShouldSetHostname`).
pub(crate) fn published_hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|hostname| !hostname.is_empty())?;
    let subdomain = spec.subdomain.as_deref().unwrap_or_default();
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_namespace && Some(subdomain) == service.metadata.name.as_deref())
        .then(|| hostname.to_owned())
}

/// Returns the protocol of a Service or container port, defaulted as the API does.
pub(crate) fn protocol(protocol: Option<&String>) -> String {
    protocol.cloned().unwrap_or_else(|| "TCP".to_owned())
}

/// Returns the container port a Service port reaches on this pod (`FindPort`): a numeric
/// `targetPort` as is (defaulting to `port`), a named one looked up among the ports of the
/// pod's containers, then of its sidecars (init containers with `restartPolicy: Always`), with
/// the same protocol. `None` when the name is found nowhere.
pub(crate) fn target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(0)) => return Some(port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) => name,
    };
    let wanted_protocol = protocol(port.protocol.as_ref());
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|container| container.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|candidate| {
            candidate.name.as_ref() == Some(name)
                && protocol(candidate.protocol.as_ref()) == wanted_protocol
        })
        .map(|candidate| candidate.container_port)
}

/// Returns the reference endpoints carry to their pod: kind, namespace, name and uid.
pub(crate) fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_owned()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Returns `reference` without its resourceVersion, which endpoint comparisons ignore.
pub(crate) fn without_resource_version(
    reference: Option<&ObjectReference>,
) -> Option<ObjectReference> {
    reference.map(|reference| ObjectReference { resource_version: None, ..reference.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_parsing_table() {
        let cases = [
            ("10.0.0.1", Some((Family::V4, "10.0.0.1"))),
            ("010.000.000.001", Some((Family::V4, "10.0.0.1"))),
            ("fd00:0:0::1", Some((Family::V6, "fd00::1"))),
            ("::ffff:10.1.2.3", Some((Family::V4, "10.1.2.3"))),
            ("10.0.0", None),
            ("not-an-ip", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_ip(text);
            let expected = expected.map(|(family, ip)| (family, ip.to_owned()));
            assert_eq!(parsed, expected, "{text}");
        }
    }
}
