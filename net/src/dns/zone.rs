//! The cluster zone: every Service and EndpointSlice the DNS answers from, kept as plain data.
//!
//! Invariants:
//! - Each change costs O(the changed object): upserting or removing a Service touches only its
//!   own entry and its cluster IPs; upserting or removing an EndpointSlice touches only that
//!   slice, its service index entry and its addresses. Nothing is rebuilt.
//! - `slices_by_service` lists exactly the slices whose `kubernetes.io/service-name` label names
//!   that service, and `owners_by_address` lists exactly the services whose cluster IPs and the
//!   slices whose endpoints hold that address. Whether an owner is *published* (a headless
//!   service, a ready endpoint) is decided at query time, so a Service change never needs to
//!   revisit its slices.
//! - A slice may arrive before its Service and outlive it; it is simply not answered for while
//!   the Service is absent.
//! - The serial grows by one on every change (it is the SOA serial).
//! - Services and slices are found by borrowed (namespace, name) in O(1), without allocating;
//!   a namespace exists while it holds a Service.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::debug;

use super::config::ZoneConfig;
use super::error::DnsError;
use super::namespaced::NamespacedMap;
use super::objects::{ObjectKey, ServiceEntry, SliceEntry};

/// What holds an address: a Service's cluster IP or an endpoint listed in a slice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum AddressOwner {
    Service(ObjectKey),
    Slice(ObjectKey),
}

/// The records of the cluster domain, built incrementally from Services and EndpointSlices.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    ttl: u32,
    serial: u32,
    services: NamespacedMap<ServiceEntry>,
    slices: NamespacedMap<SliceEntry>,
    /// The names of the slices labelled with each Service's name.
    slices_by_service: NamespacedMap<BTreeSet<String>>,
    owners_by_address: HashMap<IpAddr, BTreeSet<AddressOwner>>,
}

impl Zone {
    /// Returns an empty zone for the configured cluster domain.
    pub fn new(config: &ZoneConfig) -> Result<Self, DnsError> {
        Ok(Self {
            origin: config.origin()?,
            ttl: config.ttl,
            serial: 1,
            services: NamespacedMap::default(),
            slices: NamespacedMap::default(),
            slices_by_service: NamespacedMap::default(),
            owners_by_address: HashMap::new(),
        })
    }

    /// Returns the cluster domain, lowercase and fully qualified (`cluster.local.`).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Returns the TTL of every record served.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Returns the SOA serial, which changes on every update.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Returns how many Services the zone holds.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Returns how many EndpointSlices the zone holds.
    pub fn slice_count(&self) -> usize {
        self.slices.len()
    }

    /// Adds or replaces a Service. A Service without a name is ignored.
    pub fn upsert_service(&mut self, service: &Service) {
        let Some(key) = ObjectKey::of(&service.metadata) else {
            debug!("ignoring a service without a name");
            return;
        };
        let entry = ServiceEntry::from_service(service);
        for address in entry.cluster_ips() {
            self.add_owner(*address, AddressOwner::Service(key.clone()));
        }
        if let Some(previous) = self.services.insert(&key.namespace, &key.name, entry) {
            self.forget_stale_service_addresses(&key, &previous);
        }
        self.bump();
    }

    /// Removes a Service; returns whether it was present. Its slices stay until they are
    /// removed themselves, unanswered in the meantime.
    pub fn remove_service(&mut self, namespace: &str, name: &str) -> bool {
        let Some(previous) = self.services.remove(namespace, name) else {
            return false;
        };
        let key = ObjectKey::new(namespace, name);
        for address in previous.cluster_ips() {
            self.remove_owner(*address, &AddressOwner::Service(key.clone()));
        }
        self.bump();
        true
    }

    /// Adds or replaces an EndpointSlice. A slice without a name is ignored.
    pub fn upsert_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = ObjectKey::of(&slice.metadata) else {
            debug!("ignoring an endpoint slice without a name");
            return;
        };
        self.detach_slice(&key);
        let entry = SliceEntry::from_slice(slice);
        for address in entry.addresses() {
            self.add_owner(address, AddressOwner::Slice(key.clone()));
        }
        if let Some(service) = &entry.service {
            self.slices_by_service.get_or_default(&key.namespace, service).insert(key.name.clone());
        }
        self.slices.insert(&key.namespace, &key.name, entry);
        self.bump();
    }

    /// Removes an EndpointSlice; returns whether it was present.
    pub fn remove_slice(&mut self, namespace: &str, name: &str) -> bool {
        let key = ObjectKey::new(namespace, name);
        let removed = self.detach_slice(&key);
        if removed {
            self.bump();
        }
        removed
    }

    /// Returns a Service, named case-insensitively.
    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(namespace, name)
    }

    /// Returns true when the namespace holds at least one Service.
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.services.has_namespace(namespace)
    }

    /// Returns the slices labelled with the Service's name.
    pub(crate) fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        service: &str,
    ) -> impl Iterator<Item = &'a SliceEntry> + 'a {
        self.slices_by_service
            .get(namespace, service)
            .into_iter()
            .flatten()
            .filter_map(move |slice| self.slices.get(namespace, slice))
    }

    pub(crate) fn slice(&self, key: &ObjectKey) -> Option<&SliceEntry> {
        self.slices.get(&key.namespace, &key.name)
    }

    /// Returns what holds an address.
    pub(crate) fn owners_of(&self, address: IpAddr) -> impl Iterator<Item = &AddressOwner> {
        self.owners_by_address.get(&address).into_iter().flatten()
    }

    /// Removes a slice's entry and every index entry pointing at it; returns whether it was
    /// present.
    fn detach_slice(&mut self, key: &ObjectKey) -> bool {
        let Some(previous) = self.slices.remove(&key.namespace, &key.name) else {
            return false;
        };
        for address in previous.addresses() {
            self.remove_owner(address, &AddressOwner::Slice(key.clone()));
        }
        if let Some(service) = &previous.service {
            if let Some(names) = self.slices_by_service.get_mut(&key.namespace, service) {
                names.remove(&key.name);
                if names.is_empty() {
                    self.slices_by_service.remove(&key.namespace, service);
                }
            }
        }
        true
    }

    fn forget_stale_service_addresses(&mut self, key: &ObjectKey, previous: &ServiceEntry) {
        let current: Vec<IpAddr> = self
            .services
            .get(&key.namespace, &key.name)
            .map(|entry| entry.cluster_ips().to_vec())
            .unwrap_or_default();
        for address in previous.cluster_ips() {
            if !current.contains(address) {
                self.remove_owner(*address, &AddressOwner::Service(key.clone()));
            }
        }
    }

    fn add_owner(&mut self, address: IpAddr, owner: AddressOwner) {
        self.owners_by_address.entry(address).or_default().insert(owner);
    }

    fn remove_owner(&mut self, address: IpAddr, owner: &AddressOwner) {
        if let Some(owners) = self.owners_by_address.get_mut(&address) {
            owners.remove(owner);
            if owners.is_empty() {
                self.owners_by_address.remove(&address);
            }
        }
    }

    fn bump(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }
}
