//! Decides the endpoints of the `default/kubernetes` Service from the masters' API addresses,
//! without IO, as Kubernetes' API server reconciler (`pkg/controlplane/reconcilers`, its
//! `EndpointsAdapter`) writes them.
//!
//! [`plan`] takes the API addresses of the masters alive in the membership, the Service's
//! Endpoints and the EndpointSlices labelled `kubernetes.io/service-name: kubernetes` in
//! `default`, and returns a [`Plan`]: the Endpoints to write, the slices to create, update and
//! delete.
//!
//! Invariants:
//! - Only IPv4 addresses are published, and never an unspecified one (`0.0.0.0`): a master
//!   that advertises one is left out.
//! - The Endpoints object has one subset per distinct port (masters of a local cluster share
//!   127.0.0.1 on different ports), each listing its addresses sorted, with the port named
//!   `https` (TCP); it is labelled `endpointslice.kubernetes.io/skip-mirror: "true"`, as
//!   upstream labels it.
//! - There is one slice per distinct port, lowest port first: `kubernetes` for the first and
//!   `kubernetes-<port>` for each other; every endpoint is ready. The slices carry only the
//!   `kubernetes.io/service-name` label, as upstream's do (upstream sets no
//!   `endpointslice.kubernetes.io/managed-by` on them), so the EndpointSlice controller, which
//!   handles only slices labelled as its own and only Services with a selector, never touches
//!   them.
//! - With no master to publish, the Endpoints has no subsets and the slice `kubernetes` stays,
//!   empty.
//! - Every other slice labelled with the Service's name is deleted, as upstream deletes them.
//! - Nothing is written unless it changes what a client would see: addresses, ports, readiness,
//!   labels, address type. Fields the API server adds are not compared.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ApiServers;
use crate::endpoints::slice_ref;
pub use crate::endpoints::SliceRef;

#[cfg(test)]
mod tests;

/// The Service's namespace and name.
pub const NAMESPACE: &str = "default";
pub const NAME: &str = "kubernetes";
/// The name of the Service's one port.
pub const PORT_NAME: &str = "https";
/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label telling an EndpointSlice mirroring controller to leave the Endpoints alone.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// What to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The Endpoints to create (none exists) or to write over the existing one (it carries the
    /// existing resourceVersion: replace conditionally on it), when it changes.
    pub endpoints: Option<Endpoints>,
    /// Slices to delete first (a slice of the wrong address type is deleted, then created).
    pub delete: Vec<SliceRef>,
    /// Slices to create.
    pub create: Vec<EndpointSlice>,
    /// Whole slices to write over existing ones, each with the existing resourceVersion.
    pub update: Vec<EndpointSlice>,
}

impl Plan {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_none()
            && self.delete.is_empty()
            && self.create.is_empty()
            && self.update.is_empty()
    }
}

/// The addresses to publish, by port, lowest port first: the IPv4 ones that are not
/// unspecified.
pub fn published(servers: &ApiServers) -> BTreeMap<u16, BTreeSet<Ipv4Addr>> {
    let mut by_port: BTreeMap<u16, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for server in servers {
        let IpAddr::V4(ip) = server.ip() else { continue };
        if ip.is_unspecified() || server.port() == 0 {
            continue;
        }
        by_port.entry(server.port()).or_default().insert(ip);
    }
    by_port
}

/// The name of the slice of the `index`th port (from 0), `port`.
pub fn slice_name(index: usize, port: u16) -> String {
    if index == 0 {
        NAME.to_owned()
    } else {
        format!("{NAME}-{port}")
    }
}

/// Returns what to write so the Service's endpoints are `servers`, given its Endpoints
/// (`existing`, if any) and the slices labelled with its name.
pub fn plan(servers: &ApiServers, existing: Option<&Endpoints>, slices: &[EndpointSlice]) -> Plan {
    let published = published(servers);
    let mut out = Plan::default();

    let subsets = subsets(&published);
    let labels = BTreeMap::from([(SKIP_MIRROR_LABEL.to_owned(), "true".to_owned())]);
    let unchanged = existing.is_some_and(|current| {
        endpoints_key(current.subsets.as_deref().unwrap_or_default()) == endpoints_key(&subsets)
            && current.metadata.labels.as_ref() == Some(&labels)
    });
    if !unchanged {
        let mut endpoints = existing.cloned().unwrap_or_else(|| Endpoints {
            metadata: meta(NAME.to_owned(), BTreeMap::new()),
            subsets: None,
        });
        endpoints.metadata.labels = Some(labels);
        endpoints.subsets = (!subsets.is_empty()).then_some(subsets);
        out.endpoints = Some(endpoints);
    }

    let mut wanted: BTreeMap<String, EndpointSlice> = published
        .iter()
        .enumerate()
        .map(|(index, (port, ips))| (slice_name(index, *port), slice(index, *port, ips)))
        .collect();
    if wanted.is_empty() {
        let placeholder = EndpointSlice {
            metadata: meta(NAME.to_owned(), slice_labels()),
            address_type: "IPv4".into(),
            endpoints: Vec::new(),
            ports: None,
        };
        wanted.insert(NAME.to_owned(), placeholder);
    }
    let mut sorted: Vec<&EndpointSlice> = slices.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for current in sorted {
        let name = current.metadata.name.clone().unwrap_or_default();
        let Some(desired) = wanted.remove(&name) else {
            out.delete.push(slice_ref(current));
            continue;
        };
        if current.address_type != desired.address_type {
            // The address type cannot change: the slice is made again.
            out.delete.push(slice_ref(current));
            out.create.push(desired);
        } else if slice_key(current) != slice_key(&desired) {
            let mut updated = current.clone();
            updated.metadata.labels = desired.metadata.labels;
            updated.endpoints = desired.endpoints;
            updated.ports = desired.ports;
            out.update.push(updated);
        }
    }
    out.create.extend(wanted.into_values());
    out
}

/// One subset per port, with its addresses in order.
fn subsets(published: &BTreeMap<u16, BTreeSet<Ipv4Addr>>) -> Vec<EndpointSubset> {
    published
        .iter()
        .map(|(port, ips)| EndpointSubset {
            addresses: Some(
                ips.iter()
                    .map(|ip| EndpointAddress { ip: ip.to_string(), ..EndpointAddress::default() })
                    .collect(),
            ),
            not_ready_addresses: None,
            ports: Some(vec![EndpointPort {
                name: Some(PORT_NAME.into()),
                port: i32::from(*port),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        })
        .collect()
}

fn slice_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(SERVICE_NAME_LABEL.to_owned(), NAME.to_owned())])
}

fn meta(name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(NAMESPACE.into()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

/// The slice of the `index`th port, `port`, listing `ips`.
fn slice(index: usize, port: u16, ips: &BTreeSet<Ipv4Addr>) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(slice_name(index, port), slice_labels()),
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![SlicePort {
            name: Some(PORT_NAME.into()),
            port: Some(i32::from(port)),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
    }
}

/// What a client sees of Endpoints subsets: per subset, its ready and not ready addresses and
/// its ports, in order.
type SubsetsKey = Vec<(Vec<String>, Vec<String>, Vec<(Option<String>, i32, String)>)>;

fn endpoints_key(subsets: &[EndpointSubset]) -> SubsetsKey {
    let ips = |addresses: Option<&Vec<EndpointAddress>>| -> Vec<String> {
        addresses.into_iter().flatten().map(|address| address.ip.clone()).collect()
    };
    subsets
        .iter()
        .map(|subset| {
            let ports = subset.ports.iter().flatten().map(|port| {
                let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                (port.name.clone(), port.port, protocol)
            });
            (
                ips(subset.addresses.as_ref()),
                ips(subset.not_ready_addresses.as_ref()),
                ports.collect(),
            )
        })
        .collect()
}

/// What a client sees of a slice: labels, each endpoint's addresses and readiness (unset counts
/// as ready), and the ports.
type SliceKey = (
    Option<BTreeMap<String, String>>,
    Vec<(Vec<String>, bool)>,
    Vec<(Option<String>, Option<i32>, String)>,
);

fn slice_key(slice: &EndpointSlice) -> SliceKey {
    let endpoints = slice.endpoints.iter().map(|endpoint| {
        let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        (endpoint.addresses.clone(), ready)
    });
    let ports = slice.ports.iter().flatten().map(|port| {
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        (port.name.clone(), port.port, protocol)
    });
    let labels = slice.metadata.labels.clone().filter(|labels| !labels.is_empty());
    (labels, endpoints.collect(), ports.collect())
}
