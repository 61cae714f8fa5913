//! The zone's distilled view of a Service and an EndpointSlice: only what DNS answers need,
//! with names lowercased (DNS comparisons are case-insensitive) and addresses parsed.
//!
//! Conversions never fail: a field that cannot be used (an unparsable address, a port out of
//! range, an unnamed port) is left out, because one bad field must not hide a whole Service.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing::debug;

use super::names::dashed;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespaced object's identity, lowercased.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl ObjectKey {
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: namespace.to_ascii_lowercase(), name: name.to_ascii_lowercase() }
    }

    /// Returns the key of an object, or `None` when it has no name. A missing namespace is
    /// `default`, as the API server defaults it.
    pub(crate) fn of(metadata: &ObjectMeta) -> Option<Self> {
        let name = metadata.name.as_deref().filter(|name| !name.is_empty())?;
        let namespace = metadata.namespace.as_deref().unwrap_or("default");
        Some(Self::new(namespace, name))
    }
}

/// How a Service is addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceShape {
    /// A virtual IP per family (ClusterIP, NodePort, LoadBalancer). Empty until one is
    /// allocated.
    ClusterIp(ClusterIps),
    /// `clusterIP: None`: the name resolves to the endpoints.
    Headless,
    /// An alias; `None` when `spec.externalName` is not a usable name.
    ExternalName(Option<Name>),
}

/// A Service's cluster IPs: one per family at most, as the API server allows, kept inline so
/// that answering for a Service reads no memory beyond its entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClusterIps {
    addresses: [IpAddr; MAX_CLUSTER_IPS],
    len: usize,
}

/// The most cluster IPs a Service has: one IPv4 and one IPv6.
const MAX_CLUSTER_IPS: usize = 2;

impl ClusterIps {
    /// Keeps the first two addresses; more are left out (the API server never sends more).
    pub(crate) fn new(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut kept =
            Self { addresses: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); MAX_CLUSTER_IPS], len: 0 };
        for address in addresses {
            if kept.len == MAX_CLUSTER_IPS {
                debug!(address = %address, "ignoring a cluster ip beyond one per family");
                continue;
            }
            kept.addresses[kept.len] = address;
            kept.len += 1;
        }
        kept
    }
}

impl std::ops::Deref for ClusterIps {
    type Target = [IpAddr];

    fn deref(&self) -> &[IpAddr] {
        &self.addresses[..self.len]
    }
}

impl PartialEq for ClusterIps {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for ClusterIps {}

/// A named port (unnamed ports have no SRV record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamedPort {
    pub(crate) name: String,
    /// `tcp`, `udp` or `sctp`.
    pub(crate) protocol: String,
    pub(crate) port: u16,
}

impl NamedPort {
    fn new(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<Self> {
        let name = name.filter(|name| !name.is_empty())?;
        Some(Self {
            name: name.to_ascii_lowercase(),
            protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
            port: u16::try_from(port?).ok().filter(|port| *port != 0)?,
        })
    }

    /// Returns true when this is the port `_<name>._<protocol>` names.
    pub(crate) fn matches(&self, name: &str, protocol: &str) -> bool {
        self.name == name && self.protocol == protocol
    }
}

/// What the zone keeps of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) shape: ServiceShape,
    pub(crate) ports: Vec<NamedPort>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are published too.
    pub(crate) publish_not_ready: bool,
}

impl ServiceEntry {
    pub(crate) fn from_service(service: &Service) -> Self {
        let no_spec = ServiceSpec::default();
        let spec = service.spec.as_ref().unwrap_or(&no_spec);
        let shape = if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.as_deref().and_then(|target| {
                let parsed = Name::from_ascii(target.trim_end_matches('.'))
                    .ok()
                    .filter(|name| !name.is_root());
                if parsed.is_none() {
                    debug!(external_name = %target, "ignoring an unusable externalName");
                }
                parsed.map(|mut name| {
                    name.set_fqdn(true);
                    name
                })
            });
            ServiceShape::ExternalName(target)
        } else {
            let addresses: Vec<&str> = match spec.cluster_ips.as_deref() {
                Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
                _ => spec.cluster_ip.as_deref().into_iter().collect(),
            };
            if addresses.contains(&"None") {
                ServiceShape::Headless
            } else {
                ServiceShape::ClusterIp(ClusterIps::new(
                    addresses.iter().filter_map(|address| address.parse().ok()),
                ))
            }
        };
        let ports = spec
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|port: &ServicePort| {
                NamedPort::new(port.name.as_deref(), port.protocol.as_deref(), Some(port.port))
            })
            .collect();
        Self { shape, ports, publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false) }
    }

    /// Returns the cluster IPs, empty unless the Service has the ClusterIP shape.
    pub(crate) fn cluster_ips(&self) -> &[IpAddr] {
        match &self.shape {
            ServiceShape::ClusterIp(ips) => ips,
            _ => &[],
        }
    }
}

/// What the zone keeps of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointEntry {
    pub(crate) addresses: Vec<IpAddr>,
    /// `hostname`, lowercased: the endpoint's own name under a headless Service.
    pub(crate) hostname: Option<String>,
    /// `conditions.ready`; unset counts as ready.
    pub(crate) ready: bool,
}

impl EndpointEntry {
    /// Returns true when DNS publishes this endpoint.
    pub(crate) fn is_published(&self, publish_not_ready: bool) -> bool {
        self.ready || publish_not_ready
    }

    /// Returns the endpoint's label for one of its addresses: its hostname, or the dashed
    /// address when it has none.
    pub(crate) fn label(&self, address: IpAddr) -> String {
        self.hostname.clone().unwrap_or_else(|| dashed(address))
    }
}

/// What the zone keeps of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct SliceEntry {
    /// The owning Service's name, from the `kubernetes.io/service-name` label.
    pub(crate) service: Option<String>,
    pub(crate) endpoints: Vec<EndpointEntry>,
    pub(crate) ports: Vec<NamedPort>,
}

impl SliceEntry {
    pub(crate) fn from_slice(slice: &EndpointSlice) -> Self {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            .filter(|name| !name.is_empty())
            .map(|name| name.to_ascii_lowercase());
        let endpoints = slice
            .endpoints
            .iter()
            .map(|endpoint| EndpointEntry {
                addresses: endpoint
                    .addresses
                    .iter()
                    .filter_map(|address| address.parse().ok())
                    .collect(),
                hostname: endpoint
                    .hostname
                    .as_deref()
                    .filter(|hostname| !hostname.is_empty())
                    .map(str::to_ascii_lowercase),
                ready: endpoint
                    .conditions
                    .as_ref()
                    .and_then(|conditions| conditions.ready)
                    .unwrap_or(true),
            })
            .filter(|endpoint| !endpoint.addresses.is_empty())
            .collect();
        let ports = slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|port: &EndpointPort| {
                NamedPort::new(port.name.as_deref(), port.protocol.as_deref(), port.port)
            })
            .collect();
        Self { service, endpoints, ports }
    }

    /// Returns every address this slice lists, published or not.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.endpoints.iter().flat_map(|endpoint| endpoint.addresses.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_keeps_one_cluster_ip_per_family_in_order() {
        let addresses: Vec<IpAddr> =
            ["10.96.0.1", "fd00::1", "10.96.0.2"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(*ClusterIps::new(addresses.clone()), addresses[..2]);
        assert_eq!(*ClusterIps::new(addresses[1..2].to_vec()), addresses[1..2]);
        assert!(ClusterIps::new([]).is_empty());
        assert_eq!(ClusterIps::new(addresses.clone()), ClusterIps::new(addresses[..2].to_vec()));
    }
}
