//! What one Service asks of the dataplane: its frontends (cluster IPs and external IPs ×
//! ports) and, for each, the backends new connections go to — a pure function of the Service,
//! its EndpointSlices and the node it is computed on.
//!
//! Backends follow kube-proxy: ready endpoints; when none is ready, the serving ones that are
//! terminating (so a rolling restart drains instead of failing); `internalTrafficPolicy: Local`
//! keeps only this node's. A frontend with no backends stays in the table so connections to it
//! are refused instead of leaving the machine.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flotilla_ebpf::{Backends, Frontend, Protocol};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY: Duration = Duration::from_secs(10_800);

/// The frontends a Service needs and their backends.
pub type Frontends = BTreeMap<Frontend, Backends>;

/// The node a plan is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// The addresses node ports answer on (the node's addresses and loopback).
    pub addresses: Vec<Ipv4Addr>,
}

impl NodeView {
    /// A node answering node ports on `addresses` and on 127.0.0.1.
    pub fn new(name: &str, addresses: &[Ipv4Addr]) -> NodeView {
        let mut all: Vec<Ipv4Addr> =
            addresses.iter().copied().chain([Ipv4Addr::LOCALHOST]).collect();
        all.sort();
        all.dedup();
        NodeView { name: name.to_owned(), addresses: all }
    }
}

/// Returns the frontends of `service` given the EndpointSlices that belong to it, as seen by
/// `node`: every cluster IP, external IP and load-balancer ingress IP per port and, for
/// NodePort and LoadBalancer
/// Services, every node address per node port. Services without a cluster IP (headless,
/// ExternalName) have none.
pub fn frontends(service: &Service, slices: &[&EndpointSlice], node: &NodeView) -> Frontends {
    let mut planned = Frontends::new();
    let Some(spec) = service.spec.as_ref() else { return planned };
    if spec.type_.as_deref() == Some("ExternalName") {
        return planned;
    }
    let ips = virtual_ips(service);
    if ips.is_empty() {
        return planned;
    }
    let affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => Some(
            spec.session_affinity_config
                .as_ref()
                .and_then(|config| config.client_ip.as_ref())
                .and_then(|client| client.timeout_seconds)
                .and_then(|seconds| u64::try_from(seconds).ok())
                .map_or(DEFAULT_AFFINITY, Duration::from_secs),
        ),
        _ => None,
    };
    let local_only = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local_only = spec.external_traffic_policy.as_deref() == Some("Local");
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    for port in spec.ports.iter().flatten() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            // SCTP is not balanced at the socket layer.
            Some(_) => continue,
        };
        let Ok(service_port) = u16::try_from(port.port) else { continue };
        let name = port.name.as_deref().unwrap_or("");
        let addresses = backends(slices, name, protocol, local_only, &node.name);
        for ip in &ips {
            planned.insert(
                Frontend { ip: *ip, port: service_port, protocol },
                Backends { addresses: addresses.clone(), affinity },
            );
        }
        let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
        if let Some(node_port) = node_port.filter(|_| node_ports) {
            // `externalTrafficPolicy: Local` keeps node-port traffic on this node's pods.
            let addresses = backends(slices, name, protocol, external_local_only, &node.name);
            for ip in &node.addresses {
                planned.insert(
                    Frontend { ip: *ip, port: node_port, protocol },
                    Backends { addresses: addresses.clone(), affinity },
                );
            }
        }
    }
    planned
}

/// The Service's IPv4 cluster IPs, external IPs and, for a LoadBalancer Service, the ingress
/// IPs its load balancer reported (unless `ipMode: Proxy`, whose balancer must see the
/// traffic): as kube-proxy does, a node's clients reach the Service there without a trip
/// through the balancer.
fn virtual_ips(service: &Service) -> Vec<Ipv4Addr> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let cluster = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    };
    let balanced = spec.type_.as_deref() == Some("LoadBalancer");
    let ingress = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|balancer| balancer.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|ingress| balanced && ingress.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|ingress| ingress.ip.clone());
    if cluster.iter().all(|ip| ip.is_empty() || ip == "None") {
        return Vec::new();
    }
    let mut ips: Vec<Ipv4Addr> = cluster
        .iter()
        .cloned()
        .chain(spec.external_ips.iter().flatten().cloned())
        .chain(ingress)
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Whether an endpoint's condition is true; an unset `ready` or `serving` means true, an
/// unset `terminating` false (the EndpointSlice API's rules).
fn ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

fn serving_but_terminating(endpoint: &Endpoint) -> bool {
    let conditions = endpoint.conditions.as_ref();
    let serving = conditions.and_then(|c| c.serving.or(c.ready)).unwrap_or(true);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    serving && terminating
}

/// The backend addresses for the service port named `port_name`, sorted and deduplicated so
/// equal inputs program equal tables. Also the node ports' backends ([`crate::node_ports`]), so
/// both dataplanes pick the same endpoints.
pub(crate) fn backends(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    local_only: bool,
    node: &str,
) -> Vec<SocketAddrV4> {
    let wanted = |endpoint: &Endpoint, condition: fn(&Endpoint) -> bool| {
        condition(endpoint) && (!local_only || endpoint.node_name.as_deref() == Some(node))
    };
    let collect = |condition: fn(&Endpoint) -> bool| {
        let mut addresses = Vec::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            let Some(port) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && protocol_of(p.protocol.as_deref()) == Some(protocol)
            }) else {
                continue;
            };
            let Some(number) = port.port.and_then(|n| u16::try_from(n).ok()) else { continue };
            for endpoint in slice.endpoints.iter().filter(|e| wanted(e, condition)) {
                addresses.extend(
                    endpoint
                        .addresses
                        .iter()
                        .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
                        .map(|ip| SocketAddrV4::new(ip, number)),
                );
            }
        }
        addresses.sort();
        addresses.dedup();
        addresses
    };
    let ready = collect(ready);
    if ready.is_empty() {
        collect(serving_but_terminating)
    } else {
        ready
    }
}

fn protocol_of(protocol: Option<&str>) -> Option<Protocol> {
    match protocol {
        None | Some("TCP") => Some(Protocol::Tcp),
        Some("UDP") => Some(Protocol::Udp),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn slice(ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn node() -> NodeView {
        NodeView::new("node-1", &[Ipv4Addr::new(192, 168, 1, 5)])
    }

    fn tcp(ip: [u8; 4], port: u16) -> Frontend {
        Frontend { ip: Ipv4Addr::from(ip), port, protocol: Protocol::Tcp }
    }

    fn addr(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(ip), port)
    }

    #[test]
    fn a_cluster_ip_service_balances_over_its_ready_endpoints() {
        let svc = service(json!({
            "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                      {"name": "dns", "port": 53, "protocol": "UDP"}],
        }));
        let slice = slice(
            json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                   {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([
                {"addresses": ["10.244.1.3"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.4"]},
                {"addresses": ["10.244.2.5"], "conditions": {"ready": false}},
            ]),
        );
        let planned = frontends(&svc, &[&slice], &node());
        assert_eq!(planned.len(), 2);
        assert_eq!(
            planned[&tcp([10, 96, 0, 20], 80)].addresses,
            vec![addr([10, 244, 1, 3], 8080), addr([10, 244, 2, 4], 8080)]
        );
        let udp = Frontend { ip: Ipv4Addr::new(10, 96, 0, 20), port: 53, protocol: Protocol::Udp };
        assert_eq!(
            planned[&udp].addresses,
            vec![addr([10, 244, 1, 3], 5353), addr([10, 244, 2, 4], 5353)]
        );
        assert_eq!(planned[&udp].affinity, None);
    }

    #[test]
    fn which_endpoints_become_backends() {
        let cases = [
            // (endpoints, internalTrafficPolicy, expected backend IPs' last octet)
            (json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}]), None, vec![]),
            (
                json!([
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                ]),
                None,
                vec![1],
            ),
            (
                json!([
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                ]),
                None,
                vec![1],
            ),
            (
                json!([
                    {"addresses": ["10.0.0.1"], "nodeName": "node-1"},
                    {"addresses": ["10.0.0.2"], "nodeName": "node-2"},
                ]),
                Some("Local"),
                vec![1],
            ),
            (
                json!([
                    {"addresses": ["10.0.0.1"], "nodeName": "node-1"},
                    {"addresses": ["10.0.0.2"], "nodeName": "node-2"},
                ]),
                Some("Cluster"),
                vec![1, 2],
            ),
            (json!([{"addresses": ["fd00::1"]}]), None, vec![]),
        ];
        for (endpoints, policy, expected) in cases {
            let mut spec = json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]});
            if let Some(policy) = policy {
                spec["internalTrafficPolicy"] = json!(policy);
            }
            let svc = service(spec);
            let slice = slice(json!([{"port": 8080}]), endpoints.clone());
            let planned = frontends(&svc, &[&slice], &node());
            let got: Vec<u8> = planned[&tcp([10, 96, 0, 20], 80)]
                .addresses
                .iter()
                .map(|a| a.ip().octets()[3])
                .collect();
            assert_eq!(got, expected, "endpoints {endpoints} policy {policy:?}");
        }
    }

    #[test]
    fn services_without_a_cluster_ip_have_no_frontends() {
        for spec in [
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            json!({"type": "ExternalName", "externalName": "example.com"}),
            json!({"ports": [{"port": 80}]}),
        ] {
            assert!(frontends(&service(spec.clone()), &[], &node()).is_empty(), "{spec}");
        }
    }

    #[test]
    fn a_service_with_no_endpoints_keeps_frontends_that_refuse() {
        let svc = service(json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}));
        let planned = frontends(&svc, &[], &node());
        assert_eq!(planned[&tcp([10, 96, 0, 20], 80)].addresses, vec![]);
    }

    #[test]
    fn external_ips_and_affinity_are_programmed() {
        let svc = service(json!({
            "clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.7"],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"port": 80}],
        }));
        let slice = slice(json!([{"port": 8080}]), json!([{"addresses": ["10.0.0.1"]}]));
        let planned = frontends(&svc, &[&slice], &node());
        assert_eq!(planned.len(), 2);
        for backends in planned.values() {
            assert_eq!(backends.affinity, Some(Duration::from_secs(60)));
            assert_eq!(backends.addresses, vec![addr([10, 0, 0, 1], 8080)]);
        }
        assert!(planned.contains_key(&tcp([192, 0, 2, 7], 80)));
        let default = service(json!({
            "clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP", "ports": [{"port": 80}],
        }));
        let planned = frontends(&default, &[], &node());
        assert_eq!(planned[&tcp([10, 96, 0, 20], 80)].affinity, Some(DEFAULT_AFFINITY));
    }

    #[test]
    fn load_balancer_ingress_ips_are_programmed_unless_the_balancer_proxies() {
        let with_status = |type_: &str, ip_mode: Option<&str>| {
            let mut svc = service(json!({
                "type": type_, "clusterIP": "10.96.0.20", "ports": [{"port": 80, "nodePort": 30080}],
            }));
            svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
                {"ip": "203.0.113.9", "ipMode": ip_mode}, {"hostname": "lb.example"},
            ]}}))
            .unwrap();
            svc
        };
        let planned = frontends(&with_status("LoadBalancer", None), &[], &node());
        assert!(planned.contains_key(&tcp([203, 0, 113, 9], 80)));
        let vip = frontends(&with_status("LoadBalancer", Some("VIP")), &[], &node());
        assert!(vip.contains_key(&tcp([203, 0, 113, 9], 80)));
        let proxied = frontends(&with_status("LoadBalancer", Some("Proxy")), &[], &node());
        assert!(!proxied.contains_key(&tcp([203, 0, 113, 9], 80)));
        // A stale status on a Service that is no longer a LoadBalancer is ignored.
        let node_port = frontends(&with_status("NodePort", None), &[], &node());
        assert!(!node_port.contains_key(&tcp([203, 0, 113, 9], 80)));
    }

    #[test]
    fn ports_match_by_name_and_protocol_across_slices() {
        let svc = service(json!({
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}],
        }));
        let first = slice(
            json!([{"name": "a", "port": 8080}, {"name": "b", "port": 8081}]),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let second =
            slice(json!([{"name": "a", "port": 9090}]), json!([{"addresses": ["10.0.0.2"]}]));
        let planned = frontends(&svc, &[&first, &second], &node());
        assert_eq!(
            planned[&tcp([10, 96, 0, 20], 80)].addresses,
            vec![addr([10, 0, 0, 1], 8080), addr([10, 0, 0, 2], 9090)]
        );
        assert_eq!(planned[&tcp([10, 96, 0, 20], 81)].addresses, vec![addr([10, 0, 0, 1], 8081)]);
    }

    #[test]
    fn node_ports_answer_on_the_node_addresses_and_loopback() {
        let svc = service(json!({
            "type": "NodePort", "clusterIP": "10.96.0.20", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "nodePort": 30080}],
        }));
        let slice = slice(
            json!([{"port": 8080}]),
            json!([
                {"addresses": ["10.0.0.1"], "nodeName": "node-1"},
                {"addresses": ["10.0.0.2"], "nodeName": "node-2"},
            ]),
        );
        let planned = frontends(&svc, &[&slice], &node());
        assert_eq!(planned.len(), 3, "{planned:?}");
        assert_eq!(planned[&tcp([10, 96, 0, 20], 80)].addresses.len(), 2, "the cluster IP: all");
        for ip in [[192, 168, 1, 5], [127, 0, 0, 1]] {
            assert_eq!(
                planned[&tcp(ip, 30080)].addresses,
                vec![addr([10, 0, 0, 1], 8080)],
                "the node port: this node's pods only"
            );
        }
        let cluster_ip_only = service(json!({
            "clusterIP": "10.96.0.20", "ports": [{"port": 80, "nodePort": 30080}],
        }));
        assert_eq!(frontends(&cluster_ip_only, &[&slice], &node()).len(), 1);
    }
}
