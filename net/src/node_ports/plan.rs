//! What one Service asks of the node's packet-level frontends: for each of its node ports,
//! external IPs and load balancer ingress IPs, what a connection arriving from another machine
//! meets — a pure function of the Service, its EndpointSlices and the node it is computed on.
//!
//! The backends are the service proxy's ([`crate::proxy::plan`]): ready endpoints, else the
//! serving ones that are terminating; `externalTrafficPolicy: Local` keeps this node's. As
//! kube-proxy does, `Cluster` traffic is masqueraded (so replies from a pod on another node come
//! back through this one, which undoes the translation), `Local` traffic keeps the client's
//! address, a Service with no endpoint at all rejects, and a `Local` one whose endpoints all run
//! elsewhere drops (an external load balancer's health check then steers clients away). The
//! external traffic policy governs external IPs and load balancer IPs as it does node ports.
//! `sessionAffinity: ClientIP` keeps a client on its backend, per destination.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flotilla_ebpf::Protocol;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::proxy::plan::backends;

/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours), as the
/// service proxy's.
pub const DEFAULT_AFFINITY: Duration = Duration::from_secs(10_800);

/// A port the node answers on, on every local address, for one transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePort {
    pub protocol: Protocol,
    pub port: u16,
}

/// A Service port on an address that other machines send to this node: one of the Service's
/// external IPs or its load balancer's ingress IPs. The node need not hold the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalAddress {
    pub ip: Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
}

/// Where a new connection arrives: the key of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    NodePort(NodePort),
    External(ExternalAddress),
}

impl From<NodePort> for Destination {
    fn from(port: NodePort) -> Destination {
        Destination::NodePort(port)
    }
}

impl From<ExternalAddress> for Destination {
    fn from(address: ExternalAddress) -> Destination {
        Destination::External(address)
    }
}

impl Destination {
    pub fn protocol(&self) -> Protocol {
        match self {
            Destination::NodePort(port) => port.protocol,
            Destination::External(address) => address.protocol,
        }
    }
}

/// What a new connection to a destination meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Translated to one of `backends`, picked at random per connection unless `affinity`
    /// keeps the client on the backend it last went to (for that long after its last
    /// connection, while the backend stays); with `masquerade` its source becomes the node's
    /// address too.
    Forward { backends: Vec<SocketAddrV4>, masquerade: bool, affinity: Option<Duration> },
    /// Dropped: `externalTrafficPolicy: Local` and no endpoint on this node.
    Drop,
    /// Refused (TCP with a reset, UDP with ICMP port unreachable: "connection refused"): the
    /// Service has no endpoint anywhere.
    Reject,
}

/// One destination's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The Service port it belongs to, `namespace/name` or `namespace/name:port`, for people
    /// reading the table.
    pub service: String,
    pub verdict: Verdict,
}

/// Destinations and their rules.
pub type Rules = BTreeMap<Destination, Rule>;

/// Returns the rules of `service`'s node ports, external IPs and load balancer ingress IPs
/// given the EndpointSlices that belong to it, as seen by node `node`.
///
/// Node ports: NodePort and LoadBalancer Services, ports with a node port (not with
/// `allocateLoadBalancerNodePorts: false`). External IPs: any Service but headless and
/// ExternalName ones, on the Service port. Ingress IPs: LoadBalancer Services, on the Service
/// port, unless the load balancer proxies (`ipMode: Proxy`: its packets come to a node port).
/// All of a Service port's destinations get the same rule. SCTP ports are skipped.
pub fn rules(service: &Service, slices: &[&EndpointSlice], node: &str) -> Rules {
    let mut rules = Rules::new();
    let Some(spec) = service.spec.as_ref() else { return rules };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return rules;
    }
    let has_node_ports = matches!(kind, "NodePort" | "LoadBalancer");
    // A headless Service is not proxied, whatever external IPs it lists.
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let external_ips =
        if headless { Vec::new() } else { external_ips(service, kind == "LoadBalancer") };
    let local_only = spec.external_traffic_policy.as_deref() == Some("Local");
    let affinity = affinity(spec);
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    for port in spec.ports.iter().flatten() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(_) => continue,
        };
        let node_port = port
            .node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0 && has_node_ports)
            .map(|port| Destination::from(NodePort { protocol, port }));
        let service_port = u16::try_from(port.port).ok().filter(|p| *p > 0);
        let addresses = service_port.into_iter().flat_map(|port| {
            external_ips.iter().map(move |ip| ExternalAddress { ip: *ip, protocol, port }.into())
        });
        let destinations: Vec<Destination> = node_port.into_iter().chain(addresses).collect();
        if destinations.is_empty() {
            continue;
        }
        let port_name = port.name.as_deref().unwrap_or("");
        let everywhere = backends(slices, port_name, protocol, false, node);
        let verdict = if everywhere.is_empty() {
            Verdict::Reject
        } else if local_only {
            let here = backends(slices, port_name, protocol, true, node);
            if here.is_empty() {
                Verdict::Drop
            } else {
                Verdict::Forward { backends: here, masquerade: false, affinity }
            }
        } else {
            Verdict::Forward { backends: everywhere, masquerade: true, affinity }
        };
        let service = if port_name.is_empty() {
            format!("{namespace}/{name}")
        } else {
            format!("{namespace}/{name}:{port_name}")
        };
        for destination in destinations {
            rules.insert(destination, Rule { service: service.clone(), verdict: verdict.clone() });
        }
    }
    rules
}

/// The Service's IPv4 external IPs and, for a LoadBalancer, the ingress IPs its load balancer
/// delivers to the nodes unchanged; sorted and deduplicated.
fn external_ips(service: &Service, load_balancer: bool) -> Vec<Ipv4Addr> {
    let from_spec = service.spec.iter().flat_map(|spec| spec.external_ips.iter().flatten());
    let ingress = service
        .status
        .iter()
        .filter(|_| load_balancer)
        .filter_map(|status| status.load_balancer.as_ref())
        .flat_map(|balancer| balancer.ingress.iter().flatten())
        .filter(|ingress| ingress.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|ingress| ingress.ip.as_ref());
    let mut ips: Vec<Ipv4Addr> =
        from_spec.chain(ingress).filter_map(|ip| ip.parse().ok()).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// How long `sessionAffinity: ClientIP` keeps a client on its backend; `None` without it.
fn affinity(spec: &ServiceSpec) -> Option<Duration> {
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let seconds = spec
        .session_affinity_config
        .as_ref()
        .and_then(|config| config.client_ip.as_ref())
        .and_then(|client| client.timeout_seconds)
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|seconds| *seconds > 0);
    Some(seconds.map_or(DEFAULT_AFFINITY, Duration::from_secs))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(spec: serde_json::Value) -> Service {
        with_status(spec, json!({}))
    }

    fn with_status(spec: serde_json::Value, status: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn backend(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    fn tcp(port: u16) -> Destination {
        NodePort { protocol: Protocol::Tcp, port }.into()
    }

    fn external(ip: [u8; 4], port: u16) -> Destination {
        ExternalAddress { ip: Ipv4Addr::from(ip), protocol: Protocol::Tcp, port }.into()
    }

    fn forward(backends: Vec<SocketAddrV4>, masquerade: bool) -> Verdict {
        Verdict::Forward { backends, masquerade, affinity: None }
    }

    #[test]
    fn what_a_node_port_connection_meets() {
        let here_and_there = json!([
            {"addresses": ["10.0.0.1"], "nodeName": "node-1"},
            {"addresses": ["10.0.0.2"], "nodeName": "node-2"},
        ]);
        let there = json!([{"addresses": ["10.0.0.2"], "nodeName": "node-2"}]);
        let terminating_here = json!([
            {"addresses": ["10.0.0.1"], "nodeName": "node-1",
             "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.0.0.2"], "nodeName": "node-2"},
        ]);
        let not_ready = json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}]);
        let cases = [
            // (case, type, externalTrafficPolicy, endpoints, expected verdict)
            (
                "cluster: every endpoint, masqueraded",
                "NodePort",
                None,
                here_and_there.clone(),
                forward(vec![backend(1, 8080), backend(2, 8080)], true),
            ),
            (
                "a LoadBalancer's node port is the same",
                "LoadBalancer",
                Some("Cluster"),
                there.clone(),
                forward(vec![backend(2, 8080)], true),
            ),
            (
                "local: this node's endpoints, the client's address kept",
                "NodePort",
                Some("Local"),
                here_and_there.clone(),
                forward(vec![backend(1, 8080)], false),
            ),
            (
                "local with endpoints elsewhere only: dropped",
                "NodePort",
                Some("Local"),
                there,
                Verdict::Drop,
            ),
            (
                "local: a terminating endpoint here still serves",
                "NodePort",
                Some("Local"),
                terminating_here,
                forward(vec![backend(1, 8080)], false),
            ),
            ("no endpoint at all: rejected", "NodePort", None, json!([]), Verdict::Reject),
            ("no ready endpoint: rejected", "NodePort", Some("Local"), not_ready, Verdict::Reject),
        ];
        for (case, kind, policy, endpoints, expected) in cases {
            let mut spec = json!({
                "type": kind, "clusterIP": "10.96.0.20",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
            });
            if let Some(policy) = policy {
                spec["externalTrafficPolicy"] = json!(policy);
            }
            let slice = slice(endpoints);
            let planned = rules(&service(spec), &[&slice], "node-1");
            assert_eq!(planned.len(), 1, "{case}: {planned:?}");
            assert_eq!(planned[&tcp(30080)].verdict, expected, "{case}");
            assert_eq!(planned[&tcp(30080)].service, "default/web:http", "{case}");
        }
    }

    #[test]
    fn which_ports_become_node_ports() {
        let slice = slice(json!([{"addresses": ["10.0.0.1"]}]));
        let cases = [
            // (spec, expected node ports)
            (
                json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
                vec![],
            ),
            (
                json!({"type": "NodePort", "clusterIP": "10.96.0.20", "ports": [
                    {"name": "http", "port": 80, "nodePort": 30080},
                    {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30080},
                    {"name": "sctp", "port": 9, "protocol": "SCTP", "nodePort": 30009},
                ]}),
                vec![tcp(30080), NodePort { protocol: Protocol::Udp, port: 30080 }.into()],
            ),
            (
                json!({"type": "LoadBalancer", "clusterIP": "10.96.0.20",
                       "allocateLoadBalancerNodePorts": false, "ports": [{"name": "http", "port": 80}]}),
                vec![],
            ),
            (json!({"type": "ExternalName", "externalName": "example.com"}), vec![]),
        ];
        for (spec, expected) in cases {
            let planned = rules(&service(spec.clone()), &[&slice], "node-1");
            assert_eq!(planned.keys().copied().collect::<Vec<_>>(), expected, "{spec}");
        }
        let udp = NodePort { protocol: Protocol::Udp, port: 30080 }.into();
        let spec = json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30080}]});
        let planned = rules(&service(spec), &[&slice], "node-1");
        assert_eq!(
            planned[&udp].verdict,
            forward(vec![backend(1, 53)], true),
            "the target port is the endpoint's port of the same name and protocol"
        );
    }

    #[test]
    fn external_ips_and_load_balancer_ips_take_the_service_port() {
        let slice = slice(json!([
            {"addresses": ["10.0.0.1"], "nodeName": "node-1"},
            {"addresses": ["10.0.0.2"], "nodeName": "node-2"},
        ]));
        let ingress = json!({"loadBalancer": {"ingress": [
            {"ip": "198.51.100.1"},
            {"ip": "198.51.100.2", "ipMode": "Proxy"},
            {"hostname": "lb.example.com"},
            {"ip": "2001:db8::1"},
        ]}});
        let cases = [
            // (case, spec, status, expected destinations)
            (
                "a ClusterIP Service's external IPs, deduplicated, IPv4 only",
                json!({"clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.7", "192.0.2.7", "fd00::7"],
                       "ports": [{"name": "http", "port": 80}]}),
                json!({}),
                vec![external([192, 0, 2, 7], 80)],
            ),
            (
                "a LoadBalancer: node port, external IP and the ingress IPs it delivers unchanged",
                json!({"type": "LoadBalancer", "clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.7"],
                       "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
                ingress.clone(),
                vec![tcp(30080), external([192, 0, 2, 7], 80), external([198, 51, 100, 1], 80)],
            ),
            (
                "a load balancer that no longer is one leaves no ingress IP",
                json!({"type": "NodePort", "clusterIP": "10.96.0.20",
                       "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
                ingress,
                vec![tcp(30080)],
            ),
            (
                "a headless Service is not proxied",
                json!({"clusterIP": "None", "externalIPs": ["192.0.2.7"], "ports": [{"name": "http", "port": 80}]}),
                json!({}),
                vec![],
            ),
        ];
        for (case, spec, status, expected) in cases {
            let planned = rules(&with_status(spec, status), &[&slice], "node-1");
            assert_eq!(planned.keys().copied().collect::<Vec<_>>(), expected, "{case}");
            for rule in planned.values() {
                assert_eq!(rule.verdict, forward(vec![backend(1, 8080), backend(2, 8080)], true));
            }
        }
        let local = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.20",
                           "externalTrafficPolicy": "Local", "externalIPs": ["192.0.2.7"],
                           "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
        let planned = rules(&service(local), &[&slice], "node-1");
        assert_eq!(
            planned[&external([192, 0, 2, 7], 80)].verdict,
            forward(vec![backend(1, 8080)], false),
            "externalTrafficPolicy governs external IPs as it does node ports"
        );
    }

    #[test]
    fn client_ip_affinity_and_its_timeout() {
        let slice = slice(json!([{"addresses": ["10.0.0.1"]}]));
        let cases = [
            // (sessionAffinity, timeoutSeconds, expected affinity)
            (None, None, None),
            (Some("None"), Some(60), None),
            (Some("ClientIP"), None, Some(DEFAULT_AFFINITY)),
            (Some("ClientIP"), Some(60), Some(Duration::from_secs(60))),
        ];
        for (kind, timeout, expected) in cases {
            let mut spec = json!({"type": "NodePort", "clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.7"],
                                  "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
            if let Some(kind) = kind {
                spec["sessionAffinity"] = json!(kind);
            }
            if let Some(seconds) = timeout {
                spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": seconds}});
            }
            let planned = rules(&service(spec), &[&slice], "node-1");
            assert_eq!(planned.len(), 2);
            for rule in planned.values() {
                let Verdict::Forward { affinity, .. } = &rule.verdict else { panic!("{rule:?}") };
                assert_eq!(*affinity, expected, "{kind:?} {timeout:?}");
            }
        }
    }

    #[test]
    fn an_unnamed_port_is_labelled_by_its_service() {
        let svc = service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(rules(&svc, &[], "node-1")[&tcp(30080)].service, "default/web");
    }
}
