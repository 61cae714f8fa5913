//! The pod network between nodes: routes to every other node's pods and the node's egress
//! masquerade, kept from the Nodes the masters hold (flannel's `host-gw` way, with no overlay).
//!
//! Each node's pods live on its bridge, in the pod CIDR the masters assigned it. For a pod on
//! one node to reach a pod on another with both keeping their addresses, as the Kubernetes
//! network model requires, every node routes each other node's pod CIDR through that node's
//! InternalIP ([`plan::plan`]). Such a route needs the nodes on one link (a LAN, a cloud
//! subnet); a node whose address is on no directly connected network is logged as unreachable
//! once, as its pods need a router or an overlay. Routes carry `proto 95`, so the module
//! changes only its own.
//!
//! The node's own pods leave the pod networks masqueraded behind the node's address, through
//! a small nftables table ([`plan::egress_script`]): the CNI bridge's own `ipMasq` would
//! masquerade traffic to other nodes' pods too.
//!
//! A machine without pods of its own (the masters' host of a local cluster) runs the same
//! sync with no node name: it routes to every node, so its processes reach every pod.

pub mod plan;
mod system;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

pub use plan::{Ipv4Net, PeerNode, Plan, RouteChange};
pub use system::{Commands, PodNetworkError, PodNetworkSystem, ROUTE_PROTOCOL};

/// How often the routes and the table are checked against the kernel even without a change
/// of Nodes: a route deleted by hand, or an address that came up late, is repaired by then.
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// The Node this machine is; `None` for a machine without pods of its own.
    pub node: Option<String>,
    /// The egress table's name (nftables family `ip`).
    pub egress_table: String,
    /// Sources masqueraded besides the node's pod CIDR when they leave the internal networks.
    pub masquerade: BTreeSet<Ipv4Net>,
    /// Networks never masqueraded to, besides every pod CIDR.
    pub internal: BTreeSet<Ipv4Net>,
}

/// The Nodes as the pod network sees them, and what was last made of them.
pub struct PodNetwork<S> {
    config: PodNetworkConfig,
    system: S,
    nodes: BTreeMap<String, PeerNode>,
    /// The egress table's sources and internal networks as last written.
    egress: Option<(BTreeSet<Ipv4Net>, BTreeSet<Ipv4Net>)>,
    /// Nodes already reported unreachable, with the address they had.
    reported: BTreeMap<String, std::net::Ipv4Addr>,
}

impl<S: PodNetworkSystem> PodNetwork<S> {
    pub fn new(config: PodNetworkConfig, system: S) -> PodNetwork<S> {
        PodNetwork {
            config,
            system,
            nodes: BTreeMap::new(),
            egress: None,
            reported: BTreeMap::new(),
        }
    }

    /// Replaces the known Nodes (a new listing).
    pub fn set_nodes(&mut self, nodes: BTreeMap<String, PeerNode>) {
        self.nodes = nodes;
    }

    /// Records a Node's change; whether anything the network depends on changed.
    pub fn apply_node(&mut self, node: &Node) -> bool {
        let peer = PeerNode::of(node);
        self.nodes.insert(node.name_any(), peer.clone()) != Some(peer)
    }

    pub fn delete_node(&mut self, name: &str) -> bool {
        self.nodes.remove(name).is_some()
    }

    /// Brings the kernel's routes and the egress table to what the Nodes call for. Every step
    /// is tried; the first error is returned (the next sync tries again).
    pub async fn sync(&mut self) -> Result<(), PodNetworkError> {
        let links = self.system.links().await?;
        let plan = plan::plan(self.config.node.as_deref(), &self.nodes, &links);
        self.report_unreachable(&plan);
        let mut first_error = None;
        match self.system.routes().await {
            Ok(current) => {
                for change in plan::route_changes(&current, &plan.routes) {
                    match self.system.change_route(&change).await {
                        Ok(()) => tracing::info!(?change, "pod network route"),
                        Err(err) => {
                            first_error.get_or_insert(err);
                        }
                    }
                }
            }
            Err(err) => first_error = Some(err),
        }
        let own_cidr = self.config.node.as_ref().and_then(|n| self.nodes.get(n)?.pod_cidr);
        let mut sources = self.config.masquerade.clone();
        sources.extend(own_cidr);
        let mut internal = self.config.internal.clone();
        internal.extend(plan.pod_networks.iter().copied());
        let egress = (sources, internal);
        if self.egress.as_ref() != Some(&egress) {
            let script = plan::egress_script(&self.config.egress_table, &egress.0, &egress.1);
            match self.system.nft(&script).await {
                Ok(()) => self.egress = Some(egress),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Forgets what was written, so the next sync writes the egress table again.
    fn forget_egress(&mut self) {
        self.egress = None;
    }

    fn report_unreachable(&mut self, plan: &Plan) {
        for (name, address) in &plan.unreachable {
            if self.reported.insert(name.clone(), *address) != Some(*address) {
                tracing::warn!(
                    node = %name, %address,
                    "no route to the node's pods: its address is on no network of this machine"
                );
            }
        }
        self.reported.retain(|name, _| plan.unreachable.contains_key(name));
    }
}

/// Keeps the pod network of this machine in line with the Nodes until `stop`. Routes and the
/// table stay when it stops, so pods keep reaching each other while the agent restarts.
pub async fn run<S: PodNetworkSystem>(
    client: kube::Client,
    config: PodNetworkConfig,
    system: S,
    stop: CancellationToken,
) {
    let mut network = PodNetwork::new(config, system);
    let mut events =
        watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff().boxed();
    let mut listing: Option<BTreeMap<String, PeerNode>> = None;
    let mut listed = false;
    let mut resync = tokio::time::interval(RESYNC);
    resync.tick().await;
    loop {
        let changed = tokio::select! {
            _ = stop.cancelled() => return,
            _ = resync.tick() => {
                network.forget_egress();
                listed
            }
            event = events.next() => match event {
                None => return,
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "watching Nodes for the pod network");
                    false
                }
                Some(Ok(Event::Init)) => {
                    listing = Some(BTreeMap::new());
                    false
                }
                Some(Ok(Event::InitApply(node))) => {
                    if let Some(nodes) = &mut listing {
                        nodes.insert(node.name_any(), PeerNode::of(&node));
                    }
                    false
                }
                Some(Ok(Event::InitDone)) => {
                    network.set_nodes(listing.take().unwrap_or_default());
                    listed = true;
                    true
                }
                Some(Ok(Event::Apply(node))) => network.apply_node(&node) && listed,
                Some(Ok(Event::Delete(node))) => network.delete_node(&node.name_any()) && listed,
            },
        };
        if changed {
            if let Err(err) = network.sync().await {
                tracing::warn!(error = %err, "updating the pod network (tried again within 30 s)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The kernel as a map, with a log of what was run.
    #[derive(Default)]
    struct Kernel {
        links: Vec<Ipv4Net>,
        routes: BTreeMap<Ipv4Net, Ipv4Addr>,
        scripts: Vec<String>,
        changes: Vec<RouteChange>,
    }

    impl PodNetworkSystem for Kernel {
        async fn links(&mut self) -> Result<Vec<Ipv4Net>, PodNetworkError> {
            Ok(self.links.clone())
        }
        async fn routes(&mut self) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, PodNetworkError> {
            Ok(self.routes.clone())
        }
        async fn change_route(&mut self, change: &RouteChange) -> Result<(), PodNetworkError> {
            match change {
                RouteChange::Replace { to, via } => self.routes.insert(*to, *via),
                RouteChange::Delete { to } => self.routes.remove(to),
            };
            self.changes.push(change.clone());
            Ok(())
        }
        async fn nft(&mut self, script: &str) -> Result<(), PodNetworkError> {
            self.scripts.push(script.to_string());
            Ok(())
        }
    }

    fn node(name: &str, cidr: &str, address: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_sync_writes_only_what_the_nodes_changed() {
        let kernel = Kernel { links: vec!["172.30.0.0/24".parse().unwrap()], ..Kernel::default() };
        let config = PodNetworkConfig {
            node: Some("agent-1".into()),
            egress_table: "t".into(),
            masquerade: BTreeSet::new(),
            internal: BTreeSet::new(),
        };
        let mut network = PodNetwork::new(config, kernel);
        network.apply_node(&node("agent-1", "10.244.1.0/24", "172.30.0.11"));
        network.apply_node(&node("agent-2", "10.244.2.0/24", "172.30.0.12"));
        network.sync().await.unwrap();
        assert_eq!(network.system.routes.len(), 1);
        assert_eq!(network.system.scripts.len(), 1);
        assert!(network.system.scripts[0].contains("ip saddr { 10.244.1.0/24 }"));
        // The same Node again changes nothing, and nothing is written.
        assert!(!network.apply_node(&node("agent-2", "10.244.2.0/24", "172.30.0.12")));
        network.sync().await.unwrap();
        assert_eq!((network.system.changes.len(), network.system.scripts.len()), (1, 1));
        // A node that moved gets its route changed; one that left loses it.
        network.apply_node(&node("agent-3", "10.244.3.0/24", "172.30.0.13"));
        assert!(network.apply_node(&node("agent-2", "10.244.2.0/24", "172.30.0.22")));
        network.sync().await.unwrap();
        assert_eq!(
            network.system.routes[&"10.244.2.0/24".parse().unwrap()],
            Ipv4Addr::new(172, 30, 0, 22)
        );
        assert!(network.delete_node("agent-3"));
        network.sync().await.unwrap();
        assert_eq!(network.system.routes.len(), 1);
        assert_eq!(network.system.scripts.len(), 3, "agent-3's CIDR came and went");
        // A resync writes the table again even though nothing changed.
        network.forget_egress();
        network.sync().await.unwrap();
        assert_eq!(network.system.scripts.len(), 4);
    }
}
