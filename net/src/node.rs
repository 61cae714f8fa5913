//! A node's networking, run by its agent: one feed of Services and EndpointSlices drives the
//! service proxy (the dataplane's table) and the cluster DNS zone, and the node-local DNS
//! server answers on the pod network's gateway address.
//!
//! Pods are given the cluster DNS address (kubelet's `clusterDNS`); the dataplane sends that
//! address's port 53 (UDP and TCP) to this node's own server, so every node answers its own
//! pods' queries and no DNS pod exists. Where the masters listen on loopback only, the
//! `kubernetes` Service's address is sent to the node's [`ApiRelay`] the same way.
//!
//! The same feed drives the node ports' nftables table ([`crate::node_ports`]), which serves
//! clients on other machines: every Service the proxy syncs is planned again there, and the
//! table is updated once per batch of events (everything the watches had ready).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use flotilla_ebpf::{Backends, Frontend, Protocol, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api_relay::ApiRelay;
use crate::dns::{DnsConfig, DnsError, DnsServer, Zone, ZoneConfig, ZoneHandle};
use crate::feed::{Feed, Sink};
use crate::node_ports::{NodePortSync, NodePortTable};
use crate::proxy::plan::Frontends;
use crate::proxy::{NodeView, Proxy};

/// How often Services whose programming failed are tried again.
const RETRY: Duration = Duration::from_secs(1);
/// The most events handed over before the node ports are flushed: a burst (a first listing,
/// a large rollout) costs one `nft` run per batch, not one per event.
const BATCH: usize = 256;

/// How a node's networking is set up.
#[derive(Debug, Clone)]
pub struct NodeNetConfig {
    /// The Node's name (for `internalTrafficPolicy: Local`).
    pub node: String,
    /// The node's addresses, where node ports answer (besides 127.0.0.1).
    pub addresses: Vec<Ipv4Addr>,
    /// The address pods send DNS queries to.
    pub cluster_dns: Ipv4Addr,
    pub zone: ZoneConfig,
    /// Where names outside the cluster are resolved (the node's resolv.conf).
    pub upstreams: Vec<SocketAddr>,
    /// The masters' API addresses when pods cannot reach them (they listen on loopback): the
    /// `kubernetes` Service is then relayed to them through the node. Empty: the Service is
    /// programmed from its endpoints like any other.
    pub api_relay: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeNetError {
    #[error("the service dataplane: {0}")]
    Dataplane(String),
    #[error("the cluster DNS: {0}")]
    Dns(#[from] DnsError),
}

/// The first address of a pod CIDR (`10.244.1.0/24` → `10.244.1.1`): the bridge's gateway.
pub fn gateway(pod_cidr: &str) -> Option<Ipv4Addr> {
    let (network, _) = pod_cidr.split_once('/')?;
    let network: Ipv4Addr = network.parse().ok()?;
    Some(Ipv4Addr::from(u32::from(network).checked_add(1)?))
}

/// The dataplane entries that send the cluster DNS address to this node's server.
fn dns_frontends(cluster_dns: Ipv4Addr, server: Ipv4Addr) -> Frontends {
    let backends = Backends { addresses: vec![SocketAddrV4::new(server, 53)], affinity: None };
    [Protocol::Udp, Protocol::Tcp]
        .into_iter()
        .map(|protocol| (Frontend { ip: cluster_dns, port: 53, protocol }, backends.clone()))
        .collect()
}

/// The dataplane entries that send the `kubernetes` Service's address to the node's relay.
fn relay_frontends(kubernetes: Frontend, relay: SocketAddr) -> Frontends {
    let SocketAddr::V4(relay) = relay else { return Frontends::new() };
    let backends = Backends { addresses: vec![relay], affinity: None };
    Frontends::from([(kubernetes, backends)])
}

/// The `default/kubernetes` Service's HTTPS frontend, if it has a cluster IP.
fn kubernetes_frontend(service: &Service) -> Option<Frontend> {
    let spec = service.spec.as_ref()?;
    let ip = spec.cluster_ip.as_deref()?.parse().ok()?;
    let port = spec.ports.iter().flatten().find(|p| p.name.as_deref() == Some("https"))?;
    Some(Frontend { ip, port: u16::try_from(port.port).ok()?, protocol: Protocol::Tcp })
}

fn is_kubernetes_service(namespace: &str, name: &str) -> bool {
    namespace == "default" && name == "kubernetes"
}

/// Hands every change to the proxy, the zone and the node ports.
struct Follower<T: ServiceTable, N: NodePortTable> {
    proxy: Proxy<T>,
    zone: ZoneHandle,
    /// The `kubernetes` Service's frontend, once seen.
    kubernetes: Option<Frontend>,
    /// Node ports for other machines; `None` where nftables is missing.
    node_ports: Option<NodePortSync<N>>,
}

impl<T: ServiceTable, N: NodePortTable> Follower<T, N> {
    /// Plans again the node ports of every Service the proxy synced since the last call.
    fn follow_node_ports(&mut self) {
        let touched = self.proxy.take_touched();
        let Some(node_ports) = self.node_ports.as_mut() else { return };
        for key in &touched {
            let (service, slices) = self.proxy.service_inputs(key);
            node_ports.service_changed(key, service, &slices);
        }
    }

    fn report(&self, what: &str, result: Result<crate::proxy::Changes, T::Error>) {
        match result {
            Ok(changes) if changes.upserted + changes.removed > 0 => {
                tracing::debug!(
                    what,
                    upserted = changes.upserted,
                    removed = changes.removed,
                    "programmed services"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(what, error = %err, "programming the service dataplane"),
        }
    }
}

impl<T: ServiceTable, N: NodePortTable> Sink for Follower<T, N> {
    fn apply_service(&mut self, service: Service) {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if is_kubernetes_service(namespace, service.metadata.name.as_deref().unwrap_or_default()) {
            self.kubernetes = kubernetes_frontend(&service);
        }
        self.zone.upsert_service(&service);
        let result = self.proxy.apply_service(service);
        self.report("service", result);
        self.follow_node_ports();
    }

    fn delete_service(&mut self, namespace: &str, name: &str) {
        if is_kubernetes_service(namespace, name) {
            self.kubernetes = None;
        }
        self.zone.remove_service(namespace, name);
        let result = self.proxy.delete_service(namespace, name);
        self.report("service", result);
        self.follow_node_ports();
    }

    fn apply_slice(&mut self, slice: EndpointSlice) {
        self.zone.upsert_slice(&slice);
        let result = self.proxy.apply_slice(slice);
        self.report("endpointslice", result);
        self.follow_node_ports();
    }

    fn delete_slice(&mut self, namespace: &str, name: &str) {
        self.zone.remove_slice(namespace, name);
        let result = self.proxy.delete_slice(namespace, name);
        self.report("endpointslice", result);
        self.follow_node_ports();
    }

    fn listed(&mut self) {
        let result = self.proxy.listed();
        if let Ok(changes) = &result {
            tracing::info!(
                upserted = changes.upserted,
                removed = changes.removed,
                "service dataplane in sync"
            );
        }
        self.report("listing", result);
        self.follow_node_ports();
        if let Some(node_ports) = self.node_ports.as_mut() {
            node_ports.listed();
        }
    }
}

/// The node-local DNS server, restarted on a new address when the pod network changes.
struct LocalDns {
    address: Option<Ipv4Addr>,
    stop: CancellationToken,
}

impl LocalDns {
    /// Serves on `address` unless already there.
    async fn serve_on(
        &mut self,
        address: Ipv4Addr,
        config: &NodeNetConfig,
        zone: &ZoneHandle,
        tasks: &TaskTracker,
        parent: &CancellationToken,
    ) -> Result<(), DnsError> {
        if self.address == Some(address) {
            return Ok(());
        }
        let listen = SocketAddr::from((address, 53));
        let server =
            DnsServer::bind(DnsConfig::new(vec![listen], config.upstreams.clone()), zone.clone())
                .await?;
        self.stop.cancel();
        self.stop = parent.child_token();
        tasks.spawn(server.run(self.stop.clone()));
        self.address = Some(address);
        tracing::info!(address = %listen, "cluster DNS serving");
        Ok(())
    }
}

/// The node's API relay, moved with the pod network's gateway.
#[derive(Default)]
struct LocalRelay {
    relay: Option<(Ipv4Addr, ApiRelay)>,
}

impl LocalRelay {
    /// Relays on `address` to `masters` unless already there; none when `masters` is empty.
    async fn serve_on(
        &mut self,
        address: Ipv4Addr,
        masters: &[SocketAddr],
        tasks: &TaskTracker,
        parent: &CancellationToken,
    ) -> std::io::Result<()> {
        if masters.is_empty() || self.relay.as_ref().is_some_and(|(ip, _)| *ip == address) {
            return Ok(());
        }
        let relay = ApiRelay::start(address, masters.to_vec(), tasks, parent.child_token()).await?;
        // The previous relay stops when dropped.
        self.relay = Some((address, relay));
        Ok(())
    }

    fn address(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|(_, relay)| relay.address)
    }
}

/// The entries the node itself decides: the cluster DNS and, with a relay, the `kubernetes`
/// Service.
fn fixed_entries(
    cluster_dns: Ipv4Addr,
    dns: Option<Ipv4Addr>,
    kubernetes: Option<Frontend>,
    relay: Option<SocketAddr>,
) -> Frontends {
    let mut entries = Frontends::new();
    if let Some(server) = dns {
        entries.extend(dns_frontends(cluster_dns, server));
    }
    if let (Some(kubernetes), Some(relay)) = (kubernetes, relay) {
        entries.extend(relay_frontends(kubernetes, relay));
    }
    entries
}

/// Runs the node's networking over `table` (and, for clients on other machines, `node_ports`)
/// until `stop`. `pod_cidr` carries the node's pod CIDR once the masters assigned it; the DNS
/// server starts then.
pub async fn run<T: ServiceTable, N: NodePortTable>(
    client: kube::Client,
    config: NodeNetConfig,
    table: T,
    node_ports: Option<N>,
    mut pod_cidr: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) -> Result<(), NodeNetError> {
    let view = NodeView::new(&config.node, &config.addresses);
    let proxy = Proxy::new(table, view, Frontends::new())
        .map_err(|err| NodeNetError::Dataplane(err.to_string()))?;
    let zone = ZoneHandle::new(Zone::new(&config.zone)?);
    let node_ports = node_ports.map(|table| NodePortSync::new(table, &config.node));
    let mut follower = Follower { proxy, zone: zone.clone(), kubernetes: None, node_ports };
    let mut feed = Feed::watch(client);
    let tasks = TaskTracker::new();
    let mut dns = LocalDns { address: None, stop: stop.child_token() };
    let mut relay = LocalRelay::default();
    let mut fixed = Frontends::new();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Marked changed so the first pass looks at a CIDR already known.
    pod_cidr.mark_changed();
    let mut cidr_open = true;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = retry.tick() => {
                follower.proxy.retry_failed();
                let address = pod_cidr.borrow().as_deref().and_then(gateway);
                if let Some(address) = address {
                    if let Err(err) = dns.serve_on(address, &config, &zone, &tasks, &stop).await {
                        tracing::warn!(error = %err, "starting the cluster DNS");
                    }
                    if let Err(err) = relay.serve_on(address, &config.api_relay, &tasks, &stop).await {
                        tracing::warn!(error = %err, "starting the API relay");
                    }
                }
            }
            changed = pod_cidr.changed(), if cidr_open => {
                // A closed channel: the DNS server keeps its last address.
                cidr_open = changed.is_ok();
                retry.reset_immediately();
            }
            alive = feed.step(&mut follower) => {
                if !alive || !drain_ready(&mut feed, &mut follower) {
                    break;
                }
            }
        }
        if let Some(node_ports) = follower.node_ports.as_mut() {
            // Also after a retry tick: a failed update is asked for again.
            node_ports.flush().await;
        }
        let wanted =
            fixed_entries(config.cluster_dns, dns.address, follower.kubernetes, relay.address());
        if wanted != fixed {
            let result = follower.proxy.set_fixed(wanted.clone());
            if result.is_ok() {
                fixed = wanted;
            }
            follower.report("node entries", result);
        }
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Hands over the events the watches already hold, up to [`BATCH`], without waiting; returns
/// `false` once a watch ended.
fn drain_ready(feed: &mut Feed, sink: &mut impl Sink) -> bool {
    for _ in 0..BATCH {
        // `step` is cancel-safe: dropping it while it waits loses no event.
        match futures::FutureExt::now_or_never(feed.step(sink)) {
            Some(true) => {}
            Some(false) => return false,
            None => break,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_service_goes_to_the_relay_only_with_one() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "namespace": "default", "name": "kubernetes" },
            "spec": { "clusterIP": "10.96.0.1", "ports": [{ "name": "https", "port": 443 }] },
        }))
        .unwrap();
        let kubernetes = kubernetes_frontend(&service);
        let https =
            Frontend { ip: Ipv4Addr::new(10, 96, 0, 1), port: 443, protocol: Protocol::Tcp };
        assert_eq!(kubernetes, Some(https));
        let dns = Ipv4Addr::new(10, 96, 0, 10);
        let gateway = Ipv4Addr::new(10, 244, 1, 1);
        let relay = SocketAddr::from((gateway, 40000));
        let all = fixed_entries(dns, Some(gateway), kubernetes, Some(relay));
        assert_eq!(all.len(), 3);
        assert_eq!(all[&https].addresses, [SocketAddrV4::new(gateway, 40000)]);
        assert_eq!(fixed_entries(dns, Some(gateway), kubernetes, None).len(), 2);
        assert!(fixed_entries(dns, None, None, Some(relay)).is_empty());
    }

    #[test]
    fn the_gateway_is_the_first_address_of_the_pod_cidr() {
        assert_eq!(gateway("10.244.1.0/24"), Some(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(gateway("10.244.1.0"), None);
        assert_eq!(gateway("nonsense/24"), None);
    }

    #[tokio::test]
    async fn node_ports_follow_the_services_the_proxy_syncs() {
        use crate::node_ports::{Destination, MemoryNodePortTable, NodePort, Verdict};
        use flotilla_ebpf::MemoryTable;
        let node = NodeView::new("node-1", &[]);
        let proxy = Proxy::new(MemoryTable::default(), node, Frontends::new()).unwrap();
        let zone = ZoneHandle::new(Zone::new(&ZoneConfig::default()).unwrap());
        let node_ports = Some(NodePortSync::new(MemoryNodePortTable::default(), "node-1"));
        let mut follower = Follower { proxy, zone, kubernetes: None, node_ports };
        let node_port_service = |name: &str, port: u16| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": name},
                "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                         "ports": [{"port": 80, "nodePort": port}]},
            }))
            .unwrap()
        };
        let slice = |service: &str| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": "shared",
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4", "ports": [{"port": 8080}],
                "endpoints": [{"addresses": ["10.244.1.5"]}],
            }))
            .unwrap()
        };
        let verdicts = |follower: &Follower<MemoryTable, MemoryNodePortTable>| {
            let table = follower.node_ports.as_ref().unwrap().table();
            let rules = table.rules.clone().unwrap_or_default();
            let of = |port| {
                let port = Destination::from(NodePort { protocol: Protocol::Tcp, port });
                rules.get(&port).map(|rule| matches!(rule.verdict, Verdict::Forward { .. }))
            };
            (of(30001), of(30002))
        };
        follower.apply_service(node_port_service("a", 30001));
        follower.apply_service(node_port_service("b", 30002));
        follower.apply_slice(slice("a"));
        follower.listed();
        follower.node_ports.as_mut().unwrap().flush().await;
        assert_eq!(verdicts(&follower), (Some(true), Some(false)), "a forwards, b refuses");
        follower.apply_slice(slice("b"));
        follower.node_ports.as_mut().unwrap().flush().await;
        assert_eq!(verdicts(&follower), (Some(false), Some(true)), "the slice moved to b");
        follower.delete_service("default", "b");
        follower.node_ports.as_mut().unwrap().flush().await;
        assert_eq!(verdicts(&follower), (Some(false), None));
    }

    #[test]
    fn the_cluster_dns_address_goes_to_the_local_server_over_udp_and_tcp() {
        let entries = dns_frontends(Ipv4Addr::new(10, 96, 0, 10), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(entries.len(), 2);
        for (frontend, backends) in entries {
            assert_eq!((frontend.ip, frontend.port), (Ipv4Addr::new(10, 96, 0, 10), 53));
            assert_eq!(backends.addresses, vec!["10.244.1.1:53".parse().unwrap()]);
        }
    }
}
