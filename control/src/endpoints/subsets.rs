//! Decides the core/v1 Endpoints object of one Service, as Kubernetes 1.33's
//! `pkg/controller/endpoint` does, without IO.
//!
//! [`plan`] takes the Service, the pods of its namespace and the current Endpoints (if any) and
//! returns the Endpoints to write, or `None` when nothing needs writing.
//!
//! Invariants:
//! - Only Services with a non-empty selector and a type other than `ExternalName` are managed;
//!   for others the plan is `None` (their Endpoints are the user's).
//! - Subsets are in the canonical form of upstream's `RepackSubsets`: addresses offering the
//!   same ports share a subset; an address not ready for one port is not ready for all; addresses
//!   are sorted by IP then pod uid; ports and subsets are in a fixed, deterministic order.
//! - At most [`MAX_CAPACITY`] addresses are written; beyond that the addresses are truncated,
//!   ready ones first and proportionally per subset, and [`OVER_CAPACITY_ANNOTATION`] is set to
//!   `truncated`; it is removed once the Service fits again.
//! - Labels are the Service's, plus `service.kubernetes.io/headless: ""` when it has no
//!   cluster IP. As upstream, the headless label is ignored when deciding whether to write.
//!
//! `endpoints.kubernetes.io/last-change-trigger-time` is never set (nothing in kubectl reads it;
//! upstream derives it from state kept between syncs) and is dropped from written objects, as
//! upstream does when it has no trigger time. Deleting the Endpoints of a deleted Service is
//! the caller's job: this plan needs the Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::service_pods::{
    belongs_in_endpoints, has_cluster_ip, is_headless, managed_selector, parse_ip, pod_ips,
    pod_reference, protocol, published_hostname, selects, target_port, without_resource_version,
    Family, PlanError, HEADLESS_LABEL, LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
};
use crate::objects::is_ready;

#[cfg(test)]
mod tests;

/// Most addresses (ready and not ready) one Endpoints object holds.
pub const MAX_CAPACITY: usize = 1000;
/// Annotation set to [`TRUNCATED`] on Endpoints whose addresses were cut at [`MAX_CAPACITY`].
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Value of [`OVER_CAPACITY_ANNOTATION`].
pub const TRUNCATED: &str = "truncated";

/// Returns the Endpoints to write for `service`, or `None` when `existing` is already right or
/// the Service is not managed.
///
/// When `existing` is `None` (or has no resourceVersion) the result is to be created; otherwise
/// it is `existing` with new subsets, labels and annotations, to replace conditionally on its
/// resourceVersion.
pub fn plan(
    service: &Service,
    pods: &[Pod],
    existing: Option<&Endpoints>,
) -> Result<Option<Endpoints>, PlanError> {
    let Some(selector) = managed_selector(service) else { return Ok(None) };
    let name = service
        .metadata
        .name
        .as_deref()
        .ok_or(PlanError::MissingField { field: "metadata.name" })?;
    let spec = service.spec.as_ref().ok_or(PlanError::MissingField { field: "spec" })?;
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let service_ports = spec.ports.as_deref().unwrap_or_default();

    let mut unpacked = Vec::new();
    let mut selected: Vec<&Pod> = pods
        .iter()
        .filter(|pod| selects(service, selector, pod))
        .filter(|pod| belongs_in_endpoints(pod, publish_not_ready))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in selected {
        let Some(address) = address_for(service, pod) else { continue };
        let ready = publish_not_ready || is_ready(pod);
        if service_ports.is_empty() {
            // Headless Services may have no ports; their pods are listed without any.
            if is_headless(service) {
                unpacked.push((address, None, ready));
            }
            continue;
        }
        for service_port in service_ports {
            let Some(number) = target_port(pod, service_port) else { continue };
            let port = EndpointPort {
                name: service_port.name.clone().filter(|name| !name.is_empty()),
                port: number,
                protocol: Some(protocol(service_port.protocol.as_ref())),
                app_protocol: service_port.app_protocol.clone(),
            };
            unpacked.push((address.clone(), Some(port), ready));
        }
    }
    let subsets = repack(unpacked);
    let (subsets, truncated) = truncate(subsets);

    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    let current = existing.filter(|endpoints| {
        endpoints.metadata.resource_version.as_deref().is_some_and(|version| !version.is_empty())
    });
    if let Some(current) = current {
        let mut current_labels = current.metadata.labels.clone().unwrap_or_default();
        current_labels.remove(HEADLESS_LABEL);
        let annotated = current
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|annotations| annotations.contains_key(OVER_CAPACITY_ANNOTATION));
        if normalized(current.subsets.as_deref().unwrap_or_default()) == normalized(&subsets)
            && current_labels == labels
            && annotated == truncated
        {
            return Ok(None);
        }
    }

    let mut endpoints = match current {
        Some(current) => current.clone(),
        None => Endpoints {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: service.metadata.namespace.clone(),
                ..ObjectMeta::default()
            },
            subsets: None,
        },
    };
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    annotations.remove(LAST_CHANGE_TRIGGER_TIME_ANNOTATION);
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_owned(), TRUNCATED.to_owned());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    endpoints.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    if has_cluster_ip(service) {
        labels.remove(HEADLESS_LABEL);
    } else {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    endpoints.metadata.labels = (!labels.is_empty()).then_some(labels);
    endpoints.subsets = (!subsets.is_empty()).then_some(subsets);
    Ok(Some(endpoints))
}

/// Returns the pod's address for the Service (upstream's `podToEndpointAddressForService`): its
/// first IP of the Service's primary family (`ipFamilies[0]`, else the cluster IP's family, else
/// for headless Services the family of the pod's primary IP).
fn address_for(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = service.spec.as_ref();
    let family = match spec.and_then(|spec| spec.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(family) if family == "IPv6" => Family::V6,
        Some(_) => Family::V4,
        None if has_cluster_ip(service) => {
            let cluster_ip = spec.and_then(|spec| spec.cluster_ip.as_deref()).unwrap_or_default();
            parse_ip(cluster_ip).map_or(Family::V4, |(family, _)| family)
        }
        None => {
            let primary = pod.status.as_ref().and_then(|status| status.pod_ip.as_deref());
            primary.and_then(parse_ip).map_or(Family::V4, |(family, _)| family)
        }
    };
    let ip = pod_ips(pod)
        .into_iter()
        .find(|ip| parse_ip(ip).is_some_and(|(ip_family, _)| ip_family == family))?;
    Some(EndpointAddress {
        ip: ip.to_owned(),
        // Upstream always points nodeName at the pod's node name, even an empty one.
        node_name: Some(
            pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).unwrap_or_default(),
        ),
        target_ref: Some(pod_reference(pod)),
        hostname: published_hostname(pod, service),
    })
}

/// Identifies an address as upstream's repacking does: IP, then the pod's uid.
type AddressKey = (String, Option<String>);
/// Identifies a port by value; `None` stands for "no ports" (headless without ports).
type PortKey = Option<(Option<String>, i32, Option<String>, Option<String>)>;

fn port_key(port: Option<&EndpointPort>) -> PortKey {
    port.map(|port| {
        (port.name.clone(), port.port, port.protocol.clone(), port.app_protocol.clone())
    })
}

/// Groups `(address, port, ready)` triples into canonical subsets (upstream's `RepackSubsets`).
fn repack(unpacked: Vec<(EndpointAddress, Option<EndpointPort>, bool)>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut ports: BTreeMap<PortKey, Option<EndpointPort>> = BTreeMap::new();
    let mut readiness: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for (address, port, ready) in unpacked {
        let address_key =
            (address.ip.clone(), address.target_ref.as_ref().and_then(|target| target.uid.clone()));
        let key = port_key(port.as_ref());
        // Not ready for a port once means not ready for it.
        let entry = readiness.entry(key.clone()).or_default().entry(address_key.clone());
        let was_ready = entry.or_insert(ready);
        *was_ready &= ready;
        addresses.entry(address_key).or_insert(address);
        ports.entry(key).or_insert(port);
    }

    // Ports offered by exactly the same addresses (with the same readiness) share a subset.
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (key, members) in readiness {
        let group = by_addresses.entry(members.into_iter().collect()).or_default();
        if let Some(Some(port)) = ports.get(&key) {
            group.push(port.clone());
        }
    }
    by_addresses
        .into_iter()
        .map(|(members, ports)| {
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for (key, is_ready) in members {
                let Some(address) = addresses.get(&key).cloned() else { continue };
                if is_ready {
                    ready.push(address);
                } else {
                    not_ready.push(address);
                }
            }
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Cuts the subsets to [`MAX_CAPACITY`] addresses as upstream's `truncateEndpoints`: ready
/// addresses are kept first; whichever kind must be cut is cut in each subset to its share of
/// the room left, rounded up, until the room runs out. Returns whether anything was cut.
fn truncate(mut subsets: Vec<EndpointSubset>) -> (Vec<EndpointSubset>, bool) {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|subset| count(&subset.addresses)).sum();
    let total_not_ready: usize =
        subsets.iter().map(|subset| count(&subset.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return (subsets, false);
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (room, total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut left = room;
    for subset in &mut subsets {
        let list =
            if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let in_subset = count(list);
        // Upstream computes the share in floating point; doing the same keeps the same rounding.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let share = ((in_subset as f64 / total as f64) * room as f64).ceil() as usize;
        let share = share.min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        left -= count(list);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    subsets.retain(|subset| subset.addresses.is_some() || subset.not_ready_addresses.is_some());
    (subsets, true)
}

/// Returns subsets in the form upstream compares them: empty lists equal absent ones, empty
/// port names equal absent ones, and target resourceVersions are ignored.
fn normalized(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let addresses = |list: &Option<Vec<EndpointAddress>>| -> Option<Vec<EndpointAddress>> {
        let list: Vec<EndpointAddress> = list
            .iter()
            .flatten()
            .map(|address| EndpointAddress {
                target_ref: without_resource_version(address.target_ref.as_ref()),
                hostname: address.hostname.clone().filter(|hostname| !hostname.is_empty()),
                ..address.clone()
            })
            .collect();
        (!list.is_empty()).then_some(list)
    };
    subsets
        .iter()
        .map(|subset| EndpointSubset {
            addresses: addresses(&subset.addresses),
            not_ready_addresses: addresses(&subset.not_ready_addresses),
            ports: subset
                .ports
                .as_ref()
                .map(|ports| {
                    ports
                        .iter()
                        .map(|port| EndpointPort {
                            name: port.name.clone().filter(|name| !name.is_empty()),
                            ..port.clone()
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|ports| !ports.is_empty()),
        })
        .collect()
}
