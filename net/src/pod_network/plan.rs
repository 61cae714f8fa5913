//! The pure half of the pod network: from the Nodes (their pod CIDRs and addresses) and this
//! machine's directly connected networks, the routes to other nodes' pods, what changes to
//! reach them from the routes the kernel holds, and the egress table's text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Node;

/// An IPv4 network, `address/prefix`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network `address` belongs to with a `prefix`-bit mask (host bits cleared).
    pub fn containing(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32)
            .then(|| Ipv4Net { network: Ipv4Addr::from(u32::from(address) & mask(prefix)), prefix })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    /// `a.b.c.d/n` with no host bits set; a bare address is a /32.
    fn from_str(text: &str) -> Result<Ipv4Net, String> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, "32"));
        let address: Ipv4Addr =
            address.parse().map_err(|_| format!("{text:?} is not an IPv4 network"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{text:?} has no prefix length between 0 and 32"))?;
        match Ipv4Net::containing(address, prefix) {
            Some(net) if net.network == address => Ok(net),
            _ => Err(format!("{text:?} has host bits set")),
        }
    }
}

/// What the pod network needs to know of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode {
    pub pod_cidr: Option<Ipv4Net>,
    /// The first InternalIP (IPv4) of its status.
    pub address: Option<Ipv4Addr>,
}

impl PeerNode {
    pub fn of(node: &Node) -> PeerNode {
        let pod_cidr =
            node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse().ok());
        let address = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok());
        PeerNode { pod_cidr, address }
    }
}

/// Where other nodes' pods are and which of them this machine cannot route to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// A route per other node's pod CIDR, through that node's address.
    pub routes: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// Every node's pod CIDR, this node's included: traffic between them is never
    /// masqueraded.
    pub pod_networks: BTreeSet<Ipv4Net>,
    /// Nodes with a pod CIDR whose address is on no directly connected network (they need a
    /// router that knows their pods, or an overlay), by name.
    pub unreachable: BTreeMap<String, Ipv4Addr>,
}

/// The plan for the machine of node `own` (`None`: a machine without pods of its own, which
/// routes to every node) whose directly connected networks are `links`. A node on loopback
/// shares this machine (local clusters started without network namespaces, hollow nodes):
/// its pods are reached through their bridge here, with no route.
pub fn plan(own: Option<&str>, nodes: &BTreeMap<String, PeerNode>, links: &[Ipv4Net]) -> Plan {
    let mut plan = Plan::default();
    for (name, node) in nodes {
        let Some(cidr) = node.pod_cidr else { continue };
        plan.pod_networks.insert(cidr);
        if Some(name.as_str()) == own {
            continue;
        }
        let Some(address) = node.address.filter(|a| !a.is_loopback() && !a.is_unspecified()) else {
            continue;
        };
        if links.iter().any(|link| link.contains(address)) {
            plan.routes.insert(cidr, address);
        } else {
            plan.unreachable.insert(name.clone(), address);
        }
    }
    plan
}

/// One change to the kernel's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// Add the route, or change its gateway.
    Replace {
        to: Ipv4Net,
        via: Ipv4Addr,
    },
    Delete {
        to: Ipv4Net,
    },
}

/// What turns `current` (the routes this module owns in the kernel) into `wanted`.
pub fn route_changes(
    current: &BTreeMap<Ipv4Net, Ipv4Addr>,
    wanted: &BTreeMap<Ipv4Net, Ipv4Addr>,
) -> Vec<RouteChange> {
    let deletions = current
        .keys()
        .filter(|to| !wanted.contains_key(to))
        .map(|to| RouteChange::Delete { to: *to });
    let replacements = wanted
        .iter()
        .filter(|(to, via)| current.get(to) != Some(via))
        .map(|(to, via)| RouteChange::Replace { to: *to, via: *via });
    deletions.chain(replacements).collect()
}

/// The egress table: connections from `sources` to anywhere but `internal` leave with the
/// machine's address (`masquerade`), so pods reach other networks while traffic between pods,
/// on any node, keeps its addresses. One transaction that replaces the table whole.
pub fn egress_script(
    table: &str,
    sources: &BTreeSet<Ipv4Net>,
    internal: &BTreeSet<Ipv4Net>,
) -> String {
    let list = |nets: &BTreeSet<Ipv4Net>| {
        nets.iter().map(Ipv4Net::to_string).collect::<Vec<_>>().join(", ")
    };
    let mut script =
        format!("table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n");
    script.push_str("\tset internal {\n\t\ttype ipv4_addr\n\t\tflags interval\n");
    if !internal.is_empty() {
        script.push_str(&format!("\t\telements = {{ {} }}\n", list(internal)));
    }
    script.push_str("\t}\n");
    script.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    if !sources.is_empty() {
        script.push_str(&format!(
            "\t\tip saddr {{ {} }} ip daddr != @internal masquerade\n",
            list(sources)
        ));
    }
    script.push_str("\t}\n}\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn peer(cidr: Option<&str>, address: Option<&str>) -> PeerNode {
        PeerNode { pod_cidr: cidr.map(net), address: address.map(ip) }
    }

    #[test]
    fn networks_parse_as_the_kernel_prints_them_and_refuse_host_bits() {
        assert_eq!(net("10.244.1.0/24").to_string(), "10.244.1.0/24");
        assert_eq!(net("172.30.0.11").to_string(), "172.30.0.11/32");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in ["10.244.1.1/24", "10.244.1.0/33", "10.244.1.0/x", "fd00::/64", "nope"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        assert!(net("10.244.1.0/24").contains(ip("10.244.1.200")));
        assert!(!net("10.244.1.0/24").contains(ip("10.244.2.1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert_eq!(Ipv4Net::containing(ip("172.30.0.11"), 24), Some(net("172.30.0.0/24")));
    }

    #[test]
    fn a_node_reads_its_pod_cidr_and_first_internal_ip() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"podCIDR": "10.244.3.0/24"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "a"},
                {"type": "InternalIP", "address": "fd00::3"},
                {"type": "InternalIP", "address": "172.30.0.13"},
            ]},
        }))
        .unwrap();
        assert_eq!(PeerNode::of(&node), peer(Some("10.244.3.0/24"), Some("172.30.0.13")));
        let bare: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "b"}})).unwrap();
        assert_eq!(PeerNode::of(&bare), peer(None, None));
    }

    #[test]
    fn routes_go_to_other_nodes_on_connected_networks() {
        let nodes: BTreeMap<String, PeerNode> = [
            ("agent-1", peer(Some("10.244.1.0/24"), Some("172.30.0.11"))),
            ("agent-2", peer(Some("10.244.2.0/24"), Some("172.30.0.12"))),
            // Elsewhere: needs a router.
            ("far", peer(Some("10.244.3.0/24"), Some("192.168.9.4"))),
            // On this machine's loopback (hollow nodes, agents without namespaces).
            ("hollow-1", peer(Some("10.244.4.0/24"), Some("127.0.0.1"))),
            // Not assigned a CIDR yet, or no address yet.
            ("new", peer(None, Some("172.30.0.14"))),
            ("starting", peer(Some("10.244.5.0/24"), None)),
        ]
        .into_iter()
        .map(|(name, node)| (name.to_string(), node))
        .collect();
        let links = [net("172.30.0.0/24")];
        let on_agent = plan(Some("agent-1"), &nodes, &links);
        assert_eq!(on_agent.routes, BTreeMap::from([(net("10.244.2.0/24"), ip("172.30.0.12"))]));
        assert_eq!(on_agent.unreachable, BTreeMap::from([("far".to_string(), ip("192.168.9.4"))]));
        let all: BTreeSet<Ipv4Net> =
            ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24", "10.244.5.0/24"]
                .into_iter()
                .map(net)
                .collect();
        assert_eq!(on_agent.pod_networks, all);
        // A machine without pods (the masters' host of a local cluster) routes to every node.
        let on_router = plan(None, &nodes, &links);
        assert_eq!(on_router.routes.len(), 2);
        assert_eq!(on_router.routes[&net("10.244.1.0/24")], ip("172.30.0.11"));
        // Without connected networks nothing is routed.
        assert!(plan(Some("agent-1"), &nodes, &[]).routes.is_empty());
    }

    #[test]
    fn route_changes_touch_only_what_differs() {
        let current = BTreeMap::from([
            (net("10.244.2.0/24"), ip("172.30.0.12")),
            (net("10.244.3.0/24"), ip("172.30.0.13")),
            (net("10.244.9.0/24"), ip("172.30.0.19")),
        ]);
        let wanted = BTreeMap::from([
            (net("10.244.2.0/24"), ip("172.30.0.12")),
            (net("10.244.3.0/24"), ip("172.30.0.23")),
            (net("10.244.4.0/24"), ip("172.30.0.14")),
        ]);
        assert_eq!(
            route_changes(&current, &wanted),
            [
                RouteChange::Delete { to: net("10.244.9.0/24") },
                RouteChange::Replace { to: net("10.244.3.0/24"), via: ip("172.30.0.23") },
                RouteChange::Replace { to: net("10.244.4.0/24"), via: ip("172.30.0.14") },
            ]
        );
        assert!(route_changes(&wanted, &wanted).is_empty());
    }

    #[test]
    fn the_egress_table_masquerades_sources_leaving_the_internal_networks() {
        let sources = BTreeSet::from([net("10.244.1.0/24")]);
        let internal = BTreeSet::from([net("10.244.1.0/24"), net("10.244.2.0/24")]);
        assert_eq!(
            egress_script("flotilla-abc-egress", &sources, &internal),
            "table ip flotilla-abc-egress {}\n\
             delete table ip flotilla-abc-egress\n\
             table ip flotilla-abc-egress {\n\
             \tset internal {\n\t\ttype ipv4_addr\n\t\tflags interval\n\
             \t\telements = { 10.244.1.0/24, 10.244.2.0/24 }\n\t}\n\
             \tchain postrouting {\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr { 10.244.1.0/24 } ip daddr != @internal masquerade\n\
             \t}\n}\n"
        );
        // No pod CIDR yet: the table exists with nothing to masquerade.
        let empty = egress_script("t", &BTreeSet::new(), &BTreeSet::new());
        assert!(!empty.contains("masquerade") && !empty.contains("elements"));
    }
}
