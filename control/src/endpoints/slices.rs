//! Decides what the EndpointSlice controller writes for one Service, as Kubernetes 1.33's
//! `pkg/controller/endpointslice` (the reconciler in `k8s.io/endpointslice`) does, without IO.
//!
//! [`plan`] takes the Service, the pods of its namespace, the EndpointSlices labelled with its
//! name and the nodes, and returns a [`Plan`]: slices to create, to update in place and to delete.
//!
//! Invariants:
//! - Only Services with a non-empty selector and a type other than `ExternalName` get slices;
//!   for others the plan is empty (their slices are the user's).
//! - Only slices labelled `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`
//!   and not being deleted are considered; other slices are never touched.
//! - Every address family the Service uses has at least one slice: with no endpoints, an empty
//!   placeholder slice (no ports, no endpoints) stands in, as upstream keeps one.
//! - Endpoints are grouped by their resolved ports (a named `targetPort` may resolve differently
//!   per pod); a slice holds one group's endpoints and at most [`MAX_ENDPOINTS_PER_SLICE`].
//! - Churn is minimal, as upstream's reconciler: a slice whose endpoints and labels are unchanged
//!   is not written; changed slices are updated in place and filled before an unchanged slice is
//!   topped up, and new slices are created only for what does not fit; a slice that would be
//!   deleted while another is created is reused (updated) instead.
//! - A Service being deleted gets no new slices (the garbage collector is removing them).
//!
//! Left out: topology hints (`trafficDistribution`, the `topology-mode` annotation) are never
//! added, and `endpoints.kubernetes.io/last-change-trigger-time` is never set (upstream derives
//! it from state kept between syncs; written slices drop it as upstream does without a time).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::service_pods::{
    belongs_in_endpoints, has_cluster_ip, is_headless, managed_selector, parse_ip, pod_ips,
    pod_reference, protocol, published_hostname, selects, target_port, without_resource_version,
    Family, PlanError, LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
};
use crate::objects::is_ready;

#[cfg(test)]
mod tests;

/// Most endpoints one slice holds (kube-controller-manager's `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Label on slices of headless Services (value `""`).
pub const HEADLESS_LABEL: &str = super::service_pods::HEADLESS_LABEL;
/// Node label whose value becomes an endpoint's `zone`.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What the controller should write for one Service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Slices to create (they have `generateName: <service>-`, no name).
    pub create: Vec<EndpointSlice>,
    /// Whole slices to write over existing ones, each with the name, uid and resourceVersion of
    /// the slice it replaces: replace conditionally on that resourceVersion.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete; a slice already gone counts as deleted.
    pub delete: Vec<SliceRef>,
    /// Pods left out because the node they run on is unknown (upstream reports an error so the
    /// Service is synced again with backoff); empty when nothing needs a retry.
    pub pods_on_missing_nodes: Vec<String>,
}

/// An existing slice to delete: its name, and its uid as a delete precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceRef {
    pub name: String,
    pub uid: Option<String>,
}

/// Returns what the controller should write for `service`, given the pods of its namespace, the
/// slices labelled `kubernetes.io/service-name=<service>` in it, and all nodes.
pub fn plan(
    service: &Service,
    pods: &[Pod],
    slices: &[EndpointSlice],
    nodes: &[Node],
) -> Result<Plan, PlanError> {
    let Some(selector) = managed_selector(service) else { return Ok(Plan::default()) };
    let name = service
        .metadata
        .name
        .as_deref()
        .ok_or(PlanError::MissingField { field: "metadata.name" })?;
    let uid =
        service.metadata.uid.as_deref().ok_or(PlanError::MissingField { field: "metadata.uid" })?;
    let reconciler = Reconciler {
        service,
        name,
        uid,
        nodes: nodes
            .iter()
            .filter_map(|node| Some((node.metadata.name.as_deref()?, node)))
            .collect(),
        publish_not_ready: service
            .spec
            .as_ref()
            .and_then(|spec| spec.publish_not_ready_addresses)
            .unwrap_or(false),
    };

    let mut ours: Vec<&EndpointSlice> =
        slices.iter().filter(|slice| reconciler.manages(slice)).collect();
    ours.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut selected: Vec<&Pod> = pods
        .iter()
        .filter(|pod| selects(service, selector, pod) && belongs_in_endpoints(pod, true))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let families = address_families(service);
    let mut out = Plan::default();
    let mut missing_nodes = BTreeSet::new();
    for family in &families {
        let existing: Vec<&EndpointSlice> = ours
            .iter()
            .copied()
            .filter(|slice| slice.address_type == family.address_type())
            .collect();
        let changes =
            reconciler.reconcile_family(*family, &existing, &selected, &mut missing_nodes);
        out.create.extend(changes.create);
        out.update.extend(changes.update);
        out.delete.extend(changes.delete.into_iter().map(slice_ref));
    }
    // Slices of an address type the Service no longer uses go, whoever owns them.
    let unsupported = ours
        .iter()
        .filter(|slice| !families.iter().any(|family| family.address_type() == slice.address_type));
    out.delete.extend(unsupported.map(|slice| slice_ref(slice)));
    out.pods_on_missing_nodes = missing_nodes.into_iter().collect();
    Ok(out)
}

/// Returns the address families whose slices the Service gets: its `ipFamilies`, else the
/// family of its cluster IP, else (headless, families not yet defaulted) both.
fn address_families(service: &Service) -> Vec<Family> {
    let spec = service.spec.as_ref();
    let declared: BTreeSet<Family> = spec
        .and_then(|spec| spec.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|family| match family.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect();
    if !declared.is_empty() {
        return declared.into_iter().collect();
    }
    if has_cluster_ip(service) {
        let cluster_ip = spec.and_then(|spec| spec.cluster_ip.as_deref()).unwrap_or_default();
        let family = parse_ip(cluster_ip).map_or(Family::V4, |(family, _)| family);
        return vec![family];
    }
    vec![Family::V4, Family::V6]
}

pub fn slice_ref(slice: &EndpointSlice) -> SliceRef {
    SliceRef {
        name: slice.metadata.name.clone().unwrap_or_default(),
        uid: slice.metadata.uid.clone(),
    }
}

/// Identifies an endpoint across syncs as upstream's `hashEndpoint`: sorted addresses, hostname
/// and the pod's namespace and name. Other fields may change in place.
type EndpointKey = (Vec<String>, String, String, String);

/// Identifies a set of ports regardless of order (upstream's `PortMapKey`).
type PortsKey = Vec<(Option<String>, Option<i32>, Option<String>, Option<String>)>;

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone().unwrap_or_default(),
        target.and_then(|target| target.namespace.clone()).unwrap_or_default(),
        target.and_then(|target| target.name.clone()).unwrap_or_default(),
    )
}

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|port| {
            (port.name.clone(), port.port, port.protocol.clone(), port.app_protocol.clone())
        })
        .collect();
    key.sort();
    key
}

/// Returns whether two endpoints with the same key differ in nothing the slice must carry
/// (upstream's `EndpointsEqualBeyondHash`; the target's resourceVersion is ignored).
fn same_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |endpoint: &Endpoint| endpoint.conditions.clone().unwrap_or_default();
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && without_resource_version(a.target_ref.as_ref())
            == without_resource_version(b.target_ref.as_ref())
}

/// The desired endpoints of one port group.
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

/// The writes decided for one address family.
#[derive(Default)]
struct Changes<'a> {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<&'a EndpointSlice>,
}

struct Reconciler<'a> {
    service: &'a Service,
    name: &'a str,
    uid: &'a str,
    nodes: BTreeMap<&'a str, &'a Node>,
    publish_not_ready: bool,
}

impl<'a> Reconciler<'a> {
    /// Returns whether the slice is one of this Service's managed, live slices.
    fn manages(&self, slice: &EndpointSlice) -> bool {
        let labels = slice.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|labels| labels.get(key)).map(String::as_str);
        slice.metadata.namespace == self.service.metadata.namespace
            && slice.metadata.deletion_timestamp.is_none()
            && label(SERVICE_NAME_LABEL) == Some(self.name)
            && label(MANAGED_BY_LABEL) == Some(CONTROLLER_NAME)
    }

    /// Returns whether the Service is the slice's owner (upstream's `ownedBy`).
    fn owns(&self, slice: &EndpointSlice) -> bool {
        slice.metadata.owner_references.iter().flatten().any(|owner| {
            owner.uid == self.uid && owner.kind == "Service" && owner.api_version == "v1"
        })
    }

    /// Upstream's `reconcileByAddressType` followed by `finalize`.
    fn reconcile_family(
        &self,
        family: Family,
        existing: &[&'a EndpointSlice],
        pods: &[&Pod],
        missing_nodes: &mut BTreeSet<String>,
    ) -> Changes<'a> {
        let mut changes = Changes::default();
        let mut existing_by_ports: BTreeMap<PortsKey, Vec<&'a EndpointSlice>> = BTreeMap::new();
        for slice in existing {
            if self.owns(slice) {
                let key = ports_key(slice.ports.as_deref().unwrap_or_default());
                existing_by_ports.entry(key).or_default().push(slice);
            } else {
                changes.delete.push(slice);
            }
        }

        let mut desired: BTreeMap<PortsKey, Group> = BTreeMap::new();
        for pod in pods {
            let ports = self.endpoint_ports(pod);
            // The group exists even when this pod adds no endpoint to it, as upstream.
            let group = desired
                .entry(ports_key(&ports))
                .or_insert_with(|| Group { ports, endpoints: BTreeMap::new() });
            let node_name = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
            let node = node_name.and_then(|name| self.nodes.get(name).copied());
            if node.is_none() && !self.publish_not_ready {
                missing_nodes.insert(pod.metadata.name.clone().unwrap_or_default());
                continue;
            }
            let endpoint = self.endpoint(pod, node, family);
            if !endpoint.addresses.is_empty() {
                group.endpoints.insert(endpoint_key(&endpoint), endpoint);
            }
        }

        for (key, group) in &mut desired {
            let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
            let mut group_changes = self.reconcile_ports(slices, group, family);
            changes.create.append(&mut group_changes.create);
            changes.update.append(&mut group_changes.update);
            changes.delete.append(&mut group_changes.delete);
        }
        for (key, slices) in &existing_by_ports {
            if !desired.contains_key(key) {
                changes.delete.extend(slices.iter().copied());
            }
        }

        // Every family keeps one slice, an empty placeholder when nothing else remains.
        if existing.len() == changes.delete.len() && changes.create.is_empty() {
            let placeholder = self.new_slice(Vec::new(), family);
            match changes.delete.as_slice() {
                [only] if same_as_placeholder(only, &placeholder) => changes.delete.clear(),
                _ => changes.create.push(placeholder),
            }
        }

        self.reuse_deleted_slices(&mut changes, family);
        if self.service.metadata.deletion_timestamp.is_some() {
            changes.create.clear();
        }
        changes.update.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        changes.delete.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        changes
    }

    /// Upstream's `reconcileByPortMapping` for one port group: keeps, updates or deletes the
    /// group's existing slices and creates slices for the endpoints that do not fit.
    fn reconcile_ports(
        &self,
        existing: &[&'a EndpointSlice],
        group: &mut Group,
        family: Family,
    ) -> Changes<'a> {
        let mut changes = Changes::default();
        let mut changed: BTreeMap<String, EndpointSlice> = BTreeMap::new();
        let mut unchanged: BTreeMap<String, &'a EndpointSlice> = BTreeMap::new();

        // 1. Keep the desired endpoints found in existing slices, in their current place.
        for slice in existing {
            let name = slice.metadata.name.clone().unwrap_or_default();
            let mut kept = Vec::new();
            let mut endpoint_changed = false;
            for endpoint in &slice.endpoints {
                if let Some(wanted) = group.endpoints.remove(&endpoint_key(endpoint)) {
                    endpoint_changed |= !same_beyond_key(&wanted, endpoint);
                    kept.push(wanted);
                }
            }
            let (labels, labels_changed) = self.slice_labels(slice.metadata.labels.as_ref());
            if endpoint_changed || kept.len() != slice.endpoints.len() {
                if kept.is_empty() {
                    changes.delete.push(slice);
                } else {
                    let mut copy = (*slice).clone();
                    copy.endpoints = kept;
                    copy.metadata.labels = Some(labels);
                    changed.insert(name, copy);
                }
            } else if labels_changed {
                let mut copy = (*slice).clone();
                copy.metadata.labels = Some(labels);
                changed.insert(name, copy);
            } else {
                unchanged.insert(name, slice);
            }
        }

        // 2. Top up the slices being written anyway, fullest first.
        let mut by_fullness: Vec<&mut EndpointSlice> = changed.values_mut().collect();
        by_fullness.sort_by_key(|slice| Reverse(slice.endpoints.len()));
        for slice in by_fullness {
            fill(slice, &mut group.endpoints);
        }

        // 3. Put what is left into the unchanged slice it fills best, else into new slices.
        while !group.endpoints.is_empty() {
            let remaining = group.endpoints.len();
            let best = (remaining < MAX_ENDPOINTS_PER_SLICE)
                .then(|| slice_to_fill(&unchanged, remaining))
                .flatten();
            match best {
                Some(name) => {
                    if let Some(slice) = unchanged.remove(&name) {
                        let mut copy = slice.clone();
                        fill(&mut copy, &mut group.endpoints);
                        changed.insert(name, copy);
                    }
                }
                None => {
                    let mut slice = self.new_slice(group.ports.clone(), family);
                    fill(&mut slice, &mut group.endpoints);
                    changes.create.push(slice);
                }
            }
        }

        changes.update = changed.into_values().map(without_trigger_time).collect();
        changes
    }

    /// Upstream's `finalize`: instead of creating a slice while deleting another of this
    /// Service and family, writes the new content over the slice that would be deleted.
    fn reuse_deleted_slices(&self, changes: &mut Changes<'a>, family: Family) {
        let mut index = 0;
        while index < changes.delete.len() && !changes.create.is_empty() {
            let candidate = changes.delete[index];
            if candidate.address_type != family.address_type() || !self.owns(candidate) {
                index += 1;
                continue;
            }
            let Some(mut slice) = changes.create.pop() else { break };
            slice.metadata.name = candidate.metadata.name.clone();
            slice.metadata.uid = candidate.metadata.uid.clone();
            slice.metadata.resource_version = candidate.metadata.resource_version.clone();
            changes.update.push(slice);
            changes.delete.remove(index);
        }
    }

    /// Returns the slice labels (upstream's `setEndpointSliceLabels`): the Service's labels
    /// except the reserved ones, the headless label when it has no cluster IP, the Service name
    /// and the manager. Also whether the slice's non-reserved labels differ from the Service's.
    fn slice_labels(
        &self,
        current: Option<&BTreeMap<String, String>>,
    ) -> (BTreeMap<String, String>, bool) {
        let unreserved = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
            labels
                .into_iter()
                .flatten()
                .filter(|(key, _)| !is_reserved_label(key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        };
        let mut labels = unreserved(self.service.metadata.labels.as_ref());
        let changed = unreserved(current) != labels;
        if !has_cluster_ip(self.service) {
            labels.insert(HEADLESS_LABEL.to_owned(), String::new());
        }
        labels.insert(SERVICE_NAME_LABEL.to_owned(), self.name.to_owned());
        labels.insert(MANAGED_BY_LABEL.to_owned(), CONTROLLER_NAME.to_owned());
        (labels, changed)
    }

    /// Returns an empty slice for `ports` and `family` (upstream's `newEndpointSlice`).
    fn new_slice(&self, ports: Vec<EndpointPort>, family: Family) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", self.name)),
                namespace: self.service.metadata.namespace.clone(),
                labels: Some(self.slice_labels(None).0),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Service".to_owned(),
                    name: self.name.to_owned(),
                    uid: self.uid.to_owned(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            address_type: family.address_type().to_owned(),
            endpoints: Vec::new(),
            ports: Some(ports),
        }
    }

    /// Returns the ports the Service reaches on this pod, in a canonical order (upstream's
    /// `getEndpointPorts`); Service ports whose named target the pod lacks are left out.
    fn endpoint_ports(&self, pod: &Pod) -> Vec<EndpointPort> {
        let service_ports = self.service.spec.as_ref().and_then(|spec| spec.ports.as_deref());
        let service_ports = service_ports.unwrap_or_default();
        if service_ports.is_empty() && is_headless(self.service) {
            return Vec::new();
        }
        let mut ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    port: Some(target_port(pod, port)?),
                    protocol: Some(protocol(port.protocol.as_ref())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        ports.sort_by_key(|port| ports_key(std::slice::from_ref(port)));
        ports
    }

    /// Returns the pod's endpoint for `family` (upstream's `podToEndpoint`).
    fn endpoint(&self, pod: &Pod, node: Option<&Node>, family: Family) -> Endpoint {
        let serving = is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        // A terminating pod is never ready unless the Service publishes not-ready addresses.
        let ready = self.publish_not_ready || (serving && !terminating);
        let zone = node
            .and_then(|node| node.metadata.labels.as_ref())
            .and_then(|labels| labels.get(ZONE_LABEL))
            .filter(|zone| !zone.is_empty())
            .cloned();
        Endpoint {
            addresses: pod_ips(pod)
                .into_iter()
                .filter_map(parse_ip)
                .filter(|(ip_family, _)| *ip_family == family)
                .map(|(_, ip)| ip)
                .collect(),
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            target_ref: Some(pod_reference(pod)),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.node_name.clone())
                .filter(|name| !name.is_empty()),
            zone,
            hostname: published_hostname(pod, self.service),
            ..Endpoint::default()
        }
    }
}

fn is_reserved_label(key: &str) -> bool {
    matches!(key, SERVICE_NAME_LABEL | MANAGED_BY_LABEL | HEADLESS_LABEL)
}

/// Moves desired endpoints (in key order) into `slice` until it is full.
fn fill(slice: &mut EndpointSlice, desired: &mut BTreeMap<EndpointKey, Endpoint>) {
    while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
        let Some((_, endpoint)) = desired.pop_first() else { break };
        slice.endpoints.push(endpoint);
    }
}

/// Returns the unchanged slice closest to full once `count` endpoints are added, if any has room
/// (upstream's `getSliceToFill`; ties go to the first name).
fn slice_to_fill(unchanged: &BTreeMap<String, &EndpointSlice>, count: usize) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for (name, slice) in unchanged {
        let Some(room) = MAX_ENDPOINTS_PER_SLICE.checked_sub(count + slice.endpoints.len()) else {
            continue;
        };
        if best.is_none_or(|(best_room, _)| room < best_room) {
            best = Some((room, name));
        }
    }
    best.map(|(_, name)| name.clone())
}

/// Returns whether an existing slice already is the placeholder upstream would create (it
/// compares namespace, labels, address type, ports and endpoints only).
fn same_as_placeholder(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    let labels = |slice: &EndpointSlice| slice.metadata.labels.clone().unwrap_or_default();
    existing.metadata.namespace == placeholder.metadata.namespace
        && labels(existing) == labels(placeholder)
        && existing.address_type == placeholder.address_type
        && existing.endpoints.is_empty()
        && existing.ports.as_deref().unwrap_or_default().is_empty()
}

/// Drops the trigger-time annotation from a slice about to be written, as upstream does when it
/// has no trigger time to record.
fn without_trigger_time(mut slice: EndpointSlice) -> EndpointSlice {
    if let Some(annotations) = slice.metadata.annotations.as_mut() {
        annotations.remove(LAST_CHANGE_TRIGGER_TIME_ANNOTATION);
        if annotations.is_empty() {
            slice.metadata.annotations = None;
        }
    }
    slice
}
