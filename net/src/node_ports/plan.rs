//! What one Service asks of the node's packet-level node ports: for each of its node ports,
//! what a connection arriving from another machine meets — a pure function of the Service,
//! its EndpointSlices and the node it is computed on.
//!
//! The backends are the service proxy's ([`crate::proxy::plan`]): ready endpoints, else the
//! serving ones that are terminating; `externalTrafficPolicy: Local` keeps this node's. As
//! kube-proxy does, `Cluster` traffic is masqueraded (so replies from a pod on another node come
//! back through this one, which undoes the translation), `Local` traffic keeps the client's
//! address, a Service with no endpoint at all rejects, and a `Local` one whose endpoints all run
//! elsewhere drops (an external load balancer's health check then steers clients away).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use flotilla_ebpf::Protocol;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::proxy::plan::backends;

/// A port the node answers on, on every local address, for one transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePort {
    pub protocol: Protocol,
    pub port: u16,
}

/// What a new connection to a node port meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Translated to one of `backends`, picked at random per connection; with `masquerade`
    /// its source becomes the node's address too.
    Forward { backends: Vec<SocketAddrV4>, masquerade: bool },
    /// Dropped: `externalTrafficPolicy: Local` and no endpoint on this node.
    Drop,
    /// Refused (TCP with a reset, UDP with ICMP port unreachable: "connection refused"): the
    /// Service has no endpoint anywhere.
    Reject,
}

/// One node port's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The Service port it belongs to, `namespace/name` or `namespace/name:port`, for people
    /// reading the table.
    pub service: String,
    pub verdict: Verdict,
}

/// Node ports and their rules.
pub type Rules = BTreeMap<NodePort, Rule>;

/// Returns the rules of `service`'s node ports given the EndpointSlices that belong to it,
/// as seen by node `node`. Only NodePort and LoadBalancer Services have node ports; SCTP ports
/// and ports without a node port (`allocateLoadBalancerNodePorts: false`) are skipped.
pub fn rules(service: &Service, slices: &[&EndpointSlice], node: &str) -> Rules {
    let mut rules = Rules::new();
    let Some(spec) = service.spec.as_ref() else { return rules };
    if !matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
        return rules;
    }
    let local_only = spec.external_traffic_policy.as_deref() == Some("Local");
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    for port in spec.ports.iter().flatten() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(_) => continue,
        };
        let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
        let Some(node_port) = node_port else { continue };
        let port_name = port.name.as_deref().unwrap_or("");
        let everywhere = backends(slices, port_name, protocol, false, node);
        let verdict = if everywhere.is_empty() {
            Verdict::Reject
        } else if local_only {
            let here = backends(slices, port_name, protocol, true, node);
            if here.is_empty() {
                Verdict::Drop
            } else {
                Verdict::Forward { backends: here, masquerade: false }
            }
        } else {
            Verdict::Forward { backends: everywhere, masquerade: true }
        };
        let service = if port_name.is_empty() {
            format!("{namespace}/{name}")
        } else {
            format!("{namespace}/{name}:{port_name}")
        };
        rules.insert(NodePort { protocol, port: node_port }, Rule { service, verdict });
    }
    rules
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
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

    fn tcp(port: u16) -> NodePort {
        NodePort { protocol: Protocol::Tcp, port }
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
                Verdict::Forward {
                    backends: vec![backend(1, 8080), backend(2, 8080)],
                    masquerade: true,
                },
            ),
            (
                "a LoadBalancer's node port is the same",
                "LoadBalancer",
                Some("Cluster"),
                there.clone(),
                Verdict::Forward { backends: vec![backend(2, 8080)], masquerade: true },
            ),
            (
                "local: this node's endpoints, the client's address kept",
                "NodePort",
                Some("Local"),
                here_and_there.clone(),
                Verdict::Forward { backends: vec![backend(1, 8080)], masquerade: false },
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
                Verdict::Forward { backends: vec![backend(1, 8080)], masquerade: false },
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
                vec![tcp(30080), NodePort { protocol: Protocol::Udp, port: 30080 }],
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
        let udp = NodePort { protocol: Protocol::Udp, port: 30080 };
        let spec = json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30080}]});
        let planned = rules(&service(spec), &[&slice], "node-1");
        assert_eq!(
            planned[&udp].verdict,
            Verdict::Forward { backends: vec![backend(1, 53)], masquerade: true },
            "the target port is the endpoint's port of the same name and protocol"
        );
    }

    #[test]
    fn an_unnamed_port_is_labelled_by_its_service() {
        let svc = service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(rules(&svc, &[], "node-1")[&tcp(30080)].service, "default/web");
    }
}
