//! A node's networking, run by its agent: one feed of Services and EndpointSlices drives the
//! service proxy (the dataplane's table) and the cluster DNS zone, and the node-local DNS
//! server answers on the pod network's gateway address.
//!
//! Pods are given the cluster DNS address (kubelet's `clusterDNS`); the dataplane sends that
//! address's port 53 (UDP and TCP) to this node's own server, so every node answers its own
//! pods' queries and no DNS pod exists.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use flotilla_ebpf::{Backends, Frontend, Protocol, ServiceTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dns::{DnsConfig, DnsError, DnsServer, Zone, ZoneConfig, ZoneHandle};
use crate::feed::{Feed, Sink};
use crate::proxy::plan::Frontends;
use crate::proxy::{NodeView, Proxy};

/// How often Services whose programming failed are tried again.
const RETRY: Duration = Duration::from_secs(1);

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

/// Hands every change to the proxy and the zone.
struct Follower<T: ServiceTable> {
    proxy: Proxy<T>,
    zone: ZoneHandle,
}

impl<T: ServiceTable> Follower<T> {
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

impl<T: ServiceTable> Sink for Follower<T> {
    fn apply_service(&mut self, service: Service) {
        self.zone.upsert_service(&service);
        let result = self.proxy.apply_service(service);
        self.report("service", result);
    }

    fn delete_service(&mut self, namespace: &str, name: &str) {
        self.zone.remove_service(namespace, name);
        let result = self.proxy.delete_service(namespace, name);
        self.report("service", result);
    }

    fn apply_slice(&mut self, slice: EndpointSlice) {
        self.zone.upsert_slice(&slice);
        let result = self.proxy.apply_slice(slice);
        self.report("endpointslice", result);
    }

    fn delete_slice(&mut self, namespace: &str, name: &str) {
        self.zone.remove_slice(namespace, name);
        let result = self.proxy.delete_slice(namespace, name);
        self.report("endpointslice", result);
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
    }
}

/// The node-local DNS server, restarted on a new address when the pod network changes.
struct LocalDns {
    address: Option<Ipv4Addr>,
    stop: CancellationToken,
}

impl LocalDns {
    /// Serves on `address` unless already there; returns whether it serves there now.
    async fn serve_on(
        &mut self,
        address: Ipv4Addr,
        config: &NodeNetConfig,
        zone: &ZoneHandle,
        tasks: &TaskTracker,
        parent: &CancellationToken,
    ) -> Result<bool, DnsError> {
        if self.address == Some(address) {
            return Ok(false);
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
        Ok(true)
    }
}

/// Runs the node's networking over `table` until `stop`. `pod_cidr` carries the node's pod
/// CIDR once the masters assigned it; the DNS server starts then.
pub async fn run<T: ServiceTable>(
    client: kube::Client,
    config: NodeNetConfig,
    table: T,
    mut pod_cidr: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) -> Result<(), NodeNetError> {
    let view = NodeView::new(&config.node, &config.addresses);
    let proxy = Proxy::new(table, view, Frontends::new())
        .map_err(|err| NodeNetError::Dataplane(err.to_string()))?;
    let zone = ZoneHandle::new(Zone::new(&config.zone)?);
    let mut follower = Follower { proxy, zone: zone.clone() };
    let mut feed = Feed::watch(client);
    let tasks = TaskTracker::new();
    let mut dns = LocalDns { address: None, stop: stop.child_token() };
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
                    match dns.serve_on(address, &config, &zone, &tasks, &stop).await {
                        Ok(true) => {
                            let entries = dns_frontends(config.cluster_dns, address);
                            let result = follower.proxy.set_fixed(entries);
                            follower.report("cluster dns", result);
                        }
                        Ok(false) => {}
                        Err(err) => tracing::warn!(error = %err, "starting the cluster DNS"),
                    }
                }
            }
            changed = pod_cidr.changed(), if cidr_open => {
                // A closed channel: the DNS server keeps its last address.
                cidr_open = changed.is_ok();
                retry.reset_immediately();
            }
            alive = feed.step(&mut follower) => {
                if !alive {
                    break;
                }
            }
        }
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address_of_the_pod_cidr() {
        assert_eq!(gateway("10.244.1.0/24"), Some(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(gateway("10.244.1.0"), None);
        assert_eq!(gateway("nonsense/24"), None);
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
