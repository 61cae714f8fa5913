//! The service proxy's state: every Service and EndpointSlice it has seen, and which
//! frontends it has programmed for which Service.
//!
//! Invariants: the dataplane holds exactly the frontends some Service (or a fixed entry) asks
//! for, once [`Proxy::remove_stale`] has run after the first complete listing; a change to one
//! Service or one of its slices touches only that Service's frontends, and only those whose
//! backends changed. Fixed entries (the node-local cluster DNS) win over Services that claim
//! the same frontend.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flotilla_ebpf::{Backends, Frontend, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::plan::{self, Frontends, NodeView};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service's namespace and name.
pub type ServiceKey = (String, String);

/// What a call changed in the dataplane.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub upserted: usize,
    pub removed: usize,
}

impl Changes {
    fn add(&mut self, other: Changes) {
        self.upserted += other.upserted;
        self.removed += other.removed;
    }
}

/// The proxy over a dataplane table `T`.
pub struct Proxy<T: ServiceTable> {
    table: T,
    node: NodeView,
    fixed: Frontends,
    services: HashMap<ServiceKey, Service>,
    /// Slices by owning Service, then by slice name.
    slices: HashMap<ServiceKey, BTreeMap<String, EndpointSlice>>,
    /// The Service each slice (namespace, slice name) was filed under.
    slice_owners: HashMap<(String, String), ServiceKey>,
    /// What the table holds, as this proxy believes.
    programmed: BTreeMap<Frontend, Backends>,
    /// The frontends each Service got.
    owned: HashMap<ServiceKey, BTreeSet<Frontend>>,
    /// Services whose last sync failed, tried again by [`Proxy::retry_failed`].
    failed: BTreeSet<ServiceKey>,
    /// Whether the first complete listing is in; before it, changes are only recorded, so a
    /// restarted agent never programs a Service whose slices it has not seen yet.
    listed: bool,
    /// Services synced since [`Proxy::take_touched`] last ran: what other consumers of the
    /// same objects (the node ports) must look at again.
    touched: BTreeSet<ServiceKey>,
}

impl<T: ServiceTable> Proxy<T> {
    /// Starts from what `table` already holds (an earlier agent's work) and programs the fixed
    /// entries.
    pub fn new(table: T, node: NodeView, fixed: Frontends) -> Result<Self, T::Error> {
        let programmed = table.list()?;
        let mut proxy = Proxy {
            table,
            node,
            fixed: Frontends::new(),
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_owners: HashMap::new(),
            programmed,
            owned: HashMap::new(),
            failed: BTreeSet::new(),
            listed: false,
            touched: BTreeSet::new(),
        };
        for (frontend, backends) in &fixed {
            proxy.program(*frontend, backends)?;
        }
        proxy.fixed = fixed;
        Ok(proxy)
    }

    pub fn table(&self) -> &T {
        &self.table
    }

    /// The Service `key` (if known) and the EndpointSlices filed under it.
    pub fn service_inputs(&self, key: &ServiceKey) -> (Option<&Service>, Vec<&EndpointSlice>) {
        let slices = self.slices.get(key).map(|s| s.values().collect()).unwrap_or_default();
        (self.services.get(key), slices)
    }

    /// Returns and forgets the Services synced since the last call: after the first listing,
    /// every Service a call may have changed (its object, its slices, or a slice that left it).
    pub fn take_touched(&mut self) -> BTreeSet<ServiceKey> {
        std::mem::take(&mut self.touched)
    }

    /// Replaces the fixed entries. Services that wanted a frontend no longer fixed get it.
    pub fn set_fixed(&mut self, fixed: Frontends) -> Result<Changes, T::Error> {
        let mut changes = Changes::default();
        let released: Vec<Frontend> =
            self.fixed.keys().filter(|f| !fixed.contains_key(f)).copied().collect();
        for frontend in &released {
            self.table.remove(*frontend)?;
            self.programmed.remove(frontend);
            changes.removed += 1;
        }
        for (frontend, backends) in &fixed {
            if self.program(*frontend, backends)? {
                changes.upserted += 1;
            }
        }
        self.fixed = fixed;
        if !released.is_empty() {
            // Rare (the node's pod network changed): every Service is looked at again.
            let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
            for key in keys {
                changes.add(self.sync(&key)?);
            }
        }
        Ok(changes)
    }

    /// Records a Service (created or changed) and reprograms its frontends.
    pub fn apply_service(&mut self, service: Service) -> Result<Changes, T::Error> {
        let key = key_of(&service.metadata);
        self.services.insert(key.clone(), service);
        self.sync(&key)
    }

    /// Forgets a Service and removes its frontends.
    pub fn delete_service(&mut self, namespace: &str, name: &str) -> Result<Changes, T::Error> {
        let key = (namespace.to_owned(), name.to_owned());
        self.services.remove(&key);
        self.sync(&key)
    }

    /// Records an EndpointSlice and reprograms its Service (both Services, if the slice moved).
    pub fn apply_slice(&mut self, slice: EndpointSlice) -> Result<Changes, T::Error> {
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        let name = slice.metadata.name.clone().unwrap_or_default();
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            .map(|service| (namespace.clone(), service.clone()));
        let mut changes = Changes::default();
        let previous = self.slice_owners.get(&(namespace.clone(), name.clone())).cloned();
        if previous.is_some() && previous != owner {
            changes.add(self.unfile_slice(&namespace, &name)?);
        }
        if let Some(owner) = owner {
            self.slices.entry(owner.clone()).or_default().insert(name.clone(), slice);
            self.slice_owners.insert((namespace, name), owner.clone());
            changes.add(self.sync(&owner)?);
        }
        Ok(changes)
    }

    /// Forgets an EndpointSlice and reprograms its Service.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) -> Result<Changes, T::Error> {
        self.unfile_slice(namespace, name)
    }

    /// Ends the first listing: programs every Service seen, then removes frontends nothing
    /// asks for (what an earlier agent programmed for Services deleted while no agent ran).
    pub fn listed(&mut self) -> Result<Changes, T::Error> {
        self.listed = true;
        let mut changes = Changes::default();
        let mut keys: BTreeSet<ServiceKey> = self.services.keys().cloned().collect();
        keys.extend(self.slices.keys().cloned());
        keys.extend(std::mem::take(&mut self.failed));
        for key in keys {
            changes.add(self.sync(&key)?);
        }
        let wanted: BTreeSet<Frontend> =
            self.owned.values().flatten().chain(self.fixed.keys()).copied().collect();
        let stale: Vec<Frontend> =
            self.programmed.keys().filter(|f| !wanted.contains(f)).copied().collect();
        for frontend in &stale {
            self.table.remove(*frontend)?;
            self.programmed.remove(frontend);
            changes.removed += 1;
        }
        Ok(changes)
    }

    /// Syncs again the Services whose last sync failed; returns how many still fail.
    pub fn retry_failed(&mut self) -> usize {
        for key in std::mem::take(&mut self.failed) {
            // A failure files the key again.
            let _ = self.sync(&key);
        }
        self.failed.len()
    }

    fn unfile_slice(&mut self, namespace: &str, name: &str) -> Result<Changes, T::Error> {
        let Some(owner) = self.slice_owners.remove(&(namespace.to_owned(), name.to_owned())) else {
            return Ok(Changes::default());
        };
        if let Some(slices) = self.slices.get_mut(&owner) {
            slices.remove(name);
            if slices.is_empty() {
                self.slices.remove(&owner);
            }
        }
        self.sync(&owner)
    }

    /// Makes the table hold what Service `key` asks for now.
    fn sync(&mut self, key: &ServiceKey) -> Result<Changes, T::Error> {
        if !self.listed {
            return Ok(Changes::default());
        }
        self.touched.insert(key.clone());
        let result = self.try_sync(key);
        if result.is_err() {
            self.failed.insert(key.clone());
        }
        result
    }

    fn try_sync(&mut self, key: &ServiceKey) -> Result<Changes, T::Error> {
        let desired = match self.service_inputs(key) {
            (Some(service), slices) => plan::frontends(service, &slices, &self.node),
            (None, _) => Frontends::new(),
        };
        let owned: BTreeSet<Frontend> =
            desired.keys().filter(|f| !self.fixed.contains_key(f)).copied().collect();
        let previous = self.owned.get(key).cloned().unwrap_or_default();
        // Until this sync completes the Service owns both sets, so a retry after a failure
        // still removes what it no longer wants.
        self.owned.insert(key.clone(), previous.union(&owned).copied().collect());
        let mut changes = Changes::default();
        for frontend in &owned {
            if self.program(*frontend, &desired[frontend])? {
                changes.upserted += 1;
            }
        }
        for frontend in previous.difference(&owned) {
            self.table.remove(*frontend)?;
            self.programmed.remove(frontend);
            changes.removed += 1;
        }
        if owned.is_empty() {
            self.owned.remove(key);
        } else {
            self.owned.insert(key.clone(), owned);
        }
        Ok(changes)
    }

    /// Writes one frontend unless the table already holds exactly that; returns whether it
    /// wrote.
    fn program(&mut self, frontend: Frontend, backends: &Backends) -> Result<bool, T::Error> {
        if self.programmed.get(&frontend) == Some(backends) {
            return Ok(false);
        }
        self.table.upsert(frontend, backends)?;
        self.programmed.insert(frontend, backends.clone());
        Ok(true)
    }
}

fn key_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ServiceKey {
    (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use flotilla_ebpf::{MemoryTable, Protocol};
    use serde_json::json;

    use super::*;

    fn service(name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
        }))
        .unwrap()
    }

    fn slice(name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn frontend(ip: &str) -> Frontend {
        Frontend { ip: ip.parse().unwrap(), port: 80, protocol: Protocol::Tcp }
    }

    fn backends_of<T: ServiceTable>(proxy: &Proxy<T>, ip: &str) -> Option<Vec<String>> {
        let entries = proxy.table().list().ok()?;
        entries.get(&frontend(ip)).map(|b| b.addresses.iter().map(|a| a.ip().to_string()).collect())
    }

    fn node() -> NodeView {
        NodeView::new("node-1", &[])
    }

    fn proxy() -> Proxy<MemoryTable> {
        let mut proxy = Proxy::new(MemoryTable::default(), node(), Frontends::new()).unwrap();
        proxy.listed().unwrap();
        proxy
    }

    #[test]
    fn services_and_slices_arrive_in_any_order() {
        let mut first = proxy();
        first.apply_service(service("web", "10.96.0.20")).unwrap();
        first.apply_slice(slice("web-a", "web", &["10.0.0.1"])).unwrap();
        let mut second = proxy();
        second.apply_slice(slice("web-a", "web", &["10.0.0.1"])).unwrap();
        assert_eq!(second.table().entries.len(), 0, "a slice alone programs nothing");
        second.apply_service(service("web", "10.96.0.20")).unwrap();
        assert_eq!(first.table().entries, second.table().entries);
        assert_eq!(backends_of(&first, "10.96.0.20"), Some(vec!["10.0.0.1".into()]));
    }

    #[test]
    fn only_what_changed_is_written() {
        let mut proxy = proxy();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        proxy.apply_service(service("api", "10.96.0.21")).unwrap();
        let changes = proxy.apply_slice(slice("web-a", "web", &["10.0.0.1"])).unwrap();
        assert_eq!(changes, Changes { upserted: 1, removed: 0 });
        let again = proxy.apply_slice(slice("web-a", "web", &["10.0.0.1"])).unwrap();
        assert_eq!(again, Changes::default(), "an unchanged slice writes nothing");
        let second = proxy.apply_slice(slice("web-b", "web", &["10.0.0.2"])).unwrap();
        assert_eq!(second, Changes { upserted: 1, removed: 0 });
        assert_eq!(
            backends_of(&proxy, "10.96.0.20"),
            Some(vec!["10.0.0.1".into(), "10.0.0.2".into()])
        );
        assert_eq!(backends_of(&proxy, "10.96.0.21"), Some(vec![]));
    }

    #[test]
    fn deleting_slices_and_services_removes_their_frontends() {
        let mut proxy = proxy();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        proxy.apply_slice(slice("web-a", "web", &["10.0.0.1"])).unwrap();
        proxy.delete_slice("default", "web-a").unwrap();
        assert_eq!(backends_of(&proxy, "10.96.0.20"), Some(vec![]), "refused, not removed");
        let changes = proxy.delete_service("default", "web").unwrap();
        assert_eq!(changes, Changes { upserted: 0, removed: 1 });
        assert!(proxy.table().entries.is_empty());
        assert_eq!(proxy.delete_slice("default", "never-seen").unwrap(), Changes::default());
    }

    #[test]
    fn a_changed_cluster_ip_moves_the_frontend() {
        let mut proxy = proxy();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        proxy.apply_service(service("web", "10.96.0.30")).unwrap();
        assert_eq!(backends_of(&proxy, "10.96.0.20"), None);
        assert_eq!(backends_of(&proxy, "10.96.0.30"), Some(vec![]));
    }

    #[test]
    fn a_slice_relabelled_to_another_service_moves_its_endpoints() {
        let mut proxy = proxy();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        proxy.apply_service(service("api", "10.96.0.21")).unwrap();
        proxy.apply_slice(slice("s", "web", &["10.0.0.1"])).unwrap();
        proxy.apply_slice(slice("s", "api", &["10.0.0.1"])).unwrap();
        assert_eq!(backends_of(&proxy, "10.96.0.20"), Some(vec![]));
        assert_eq!(backends_of(&proxy, "10.96.0.21"), Some(vec!["10.0.0.1".into()]));
    }

    #[test]
    fn a_restarted_proxy_keeps_live_entries_and_removes_stale_ones() {
        let mut table = MemoryTable::default();
        let live = Backends {
            addresses: vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 8080)],
            affinity: None,
        };
        table.entries.insert(frontend("10.96.0.20"), live);
        table.entries.insert(frontend("10.96.0.99"), Backends::default());
        let mut proxy = Proxy::new(table, node(), Frontends::new()).unwrap();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        assert_eq!(
            backends_of(&proxy, "10.96.0.20"),
            Some(vec!["10.0.0.1".into()]),
            "a Service is not programmed before its slices are listed"
        );
        let changes = proxy.apply_slice(slice("web-a", "web", &["10.0.0.1"])).unwrap();
        assert_eq!(changes, Changes::default());
        assert_eq!(proxy.listed().unwrap(), Changes { upserted: 0, removed: 1 });
        assert_eq!(backends_of(&proxy, "10.96.0.99"), None);
        assert_eq!(backends_of(&proxy, "10.96.0.20"), Some(vec!["10.0.0.1".into()]));
    }

    #[test]
    fn fixed_entries_win_over_services_claiming_them() {
        let dns = Backends {
            addresses: vec![SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 1), 53)],
            affinity: None,
        };
        let fixed = Frontends::from([(frontend("10.96.0.10"), dns.clone())]);
        let mut proxy = Proxy::new(MemoryTable::default(), node(), fixed).unwrap();
        proxy.apply_service(service("kube-dns", "10.96.0.10")).unwrap();
        proxy.listed().unwrap();
        proxy.delete_service("default", "kube-dns").unwrap();
        assert_eq!(proxy.table().entries.get(&frontend("10.96.0.10")), Some(&dns));
        proxy.apply_service(service("kube-dns", "10.96.0.10")).unwrap();
        proxy.set_fixed(Frontends::new()).unwrap();
        assert_eq!(
            backends_of(&proxy, "10.96.0.10"),
            Some(vec![]),
            "a released frontend goes to the Service that claims it"
        );
        let moved = Frontends::from([(frontend("10.96.0.11"), dns.clone())]);
        proxy.set_fixed(moved).unwrap();
        assert_eq!(proxy.table().entries.get(&frontend("10.96.0.11")), Some(&dns));
    }

    #[test]
    fn every_service_a_call_may_change_is_reported_touched_once_listed() {
        let mut proxy = Proxy::new(MemoryTable::default(), node(), Frontends::new()).unwrap();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        assert!(proxy.take_touched().is_empty(), "nothing before the listing");
        proxy.apply_service(service("api", "10.96.0.21")).unwrap();
        proxy.listed().unwrap();
        assert_eq!(proxy.take_touched(), BTreeSet::from([key("api"), key("web")]));
        proxy.apply_slice(slice("s", "web", &["10.0.0.1"])).unwrap();
        assert_eq!(proxy.take_touched(), BTreeSet::from([key("web")]));
        proxy.apply_slice(slice("s", "api", &["10.0.0.1"])).unwrap();
        assert_eq!(
            proxy.take_touched(),
            BTreeSet::from([key("api"), key("web")]),
            "a slice that moves touches the Service it left too"
        );
        let (service, slices) = proxy.service_inputs(&key("api"));
        assert!(service.is_some());
        assert_eq!(slices.len(), 1);
        proxy.delete_service("default", "web").unwrap();
        assert_eq!(proxy.take_touched(), BTreeSet::from([key("web")]));
        assert!(proxy.service_inputs(&key("web")).0.is_none());
    }

    fn key(name: &str) -> ServiceKey {
        ("default".to_owned(), name.to_owned())
    }

    /// A table whose writes fail while `broken` is set.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryTable,
        broken: bool,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("map full")]
    struct Full;

    impl ServiceTable for Flaky {
        type Error = Full;
        fn upsert(&mut self, frontend: Frontend, backends: &Backends) -> Result<(), Full> {
            if self.broken {
                return Err(Full);
            }
            let _ = self.inner.upsert(frontend, backends);
            Ok(())
        }
        fn remove(&mut self, frontend: Frontend) -> Result<(), Full> {
            if self.broken {
                return Err(Full);
            }
            let _ = self.inner.remove(frontend);
            Ok(())
        }
        fn list(&self) -> Result<BTreeMap<Frontend, Backends>, Full> {
            Ok(self.inner.entries.clone())
        }
    }

    #[test]
    fn failed_writes_are_retried_until_the_table_matches() {
        let mut proxy = Proxy::new(Flaky::default(), node(), Frontends::new()).unwrap();
        proxy.listed().unwrap();
        proxy.apply_service(service("web", "10.96.0.20")).unwrap();
        proxy.table.broken = true;
        assert!(proxy.apply_service(service("web", "10.96.0.30")).is_err());
        assert!(proxy.apply_slice(slice("web-a", "web", &["10.0.0.1"])).is_err());
        assert_eq!(proxy.retry_failed(), 1);
        proxy.table.broken = false;
        assert_eq!(proxy.retry_failed(), 0);
        assert_eq!(backends_of(&proxy, "10.96.0.20"), None, "the old address is removed");
        assert_eq!(backends_of(&proxy, "10.96.0.30"), Some(vec!["10.0.0.1".into()]));
    }
}
