//! Where a proxied request goes, decided from the objects alone (no IO), as kube-apiserver's
//! `ResourceLocation` of pods, services and nodes decides it: the id in the path (`name`,
//! `name:port` or `scheme:name:port`), then the pod's IP and port, a ready endpoint of the
//! Service's port, or the node's agent.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::error::ApiError;

/// The scheme a proxy id names; an id without one is proxied over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn transport(self) -> Transport {
        match self {
            Scheme::Http => Transport::Plain,
            Scheme::Https => Transport::InsecureTls,
        }
    }
}

/// An object name with the scheme and port to proxy to, split as kube's
/// `SplitSchemeNamePort` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyId {
    pub scheme: Scheme,
    pub name: String,
    /// A port number or name; empty when the id names none.
    pub port: String,
}

impl ProxyId {
    /// Returns None for more than three parts, an empty name or a scheme other than `http`
    /// and `https`.
    pub fn parse(id: &str) -> Option<ProxyId> {
        let parts: Vec<&str> = id.split(':').collect();
        let (scheme, name, port) = match parts.as_slice() {
            [name] => ("", *name, ""),
            [name, port] => ("", *name, *port),
            [scheme, name, port] => (*scheme, *name, *port),
            _ => return None,
        };
        let scheme = match scheme {
            "" | "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        (!name.is_empty()).then(|| ProxyId { scheme, name: name.into(), port: port.into() })
    }
}

/// How the API server connects to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP.
    Plain,
    /// HTTPS that accepts any certificate: pods and services are reached by IP, which their
    /// certificates do not name, so kube-apiserver's proxy transport does not verify them.
    InsecureTls,
    /// The node's agent: TLS verified against the cluster CA, with the master's certificate.
    Agent,
}

/// Where a proxied request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: SocketAddr,
    /// The host of the backend URL as kube-apiserver writes it (no port when neither the id
    /// nor the pod names one); redirects to this host are rewritten to come back through the
    /// proxy.
    pub host: String,
    pub transport: Transport,
}

impl Backend {
    fn new(ip: IpAddr, port: Option<u16>, scheme: Scheme, transport: Transport) -> Backend {
        let address = SocketAddr::new(ip, port.unwrap_or(scheme.default_port()));
        let host = match (port, ip) {
            (Some(_), _) => address.to_string(),
            (None, IpAddr::V6(v6)) => format!("[{v6}]"),
            (None, IpAddr::V4(v4)) => v4.to_string(),
        };
        Backend { address, host, transport }
    }
}

/// Whether the API server may connect to `ip`. As kube-apiserver, it refuses addresses that
/// are not global unicast (unspecified, loopback, broadcast, multicast and link-local ones,
/// the cloud metadata address among them) with "address not allowed": a node or an
/// EndpointSlice must not send the masters to their own machine's services. `loopback` allows
/// loopback all the same (`--proxy-allow-loopback`, for nodes that share the masters' host
/// and network, at 127.0.0.1).
pub fn proxyable(ip: IpAddr, loopback: bool) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || v4.is_link_local())
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()),
    }
}

fn address_not_allowed() -> ApiError {
    ApiError::BadRequest("address not allowed".into())
}

fn valid_port(port: i64) -> Option<u16> {
    u16::try_from(port).ok().filter(|port| *port > 0)
}

/// The pod's IPs: `status.podIPs`, or `status.podIP` for a status written without the list
/// (Kubernetes fills one from the other).
pub fn pod_ips(pod: &Value) -> Vec<IpAddr> {
    let listed: Vec<IpAddr> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().filter_map(|ip| ip["ip"].as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    pod.pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse().ok())
        .into_iter()
        .collect()
}

/// The container ports of the pod, regular containers first, then init containers
/// (sidecars serve ports too).
fn container_ports(pod: &Value) -> impl Iterator<Item = &Value> {
    ["containers", "initContainers"]
        .into_iter()
        .filter_map(|list| pod.pointer(&format!("/spec/{list}"))?.as_array())
        .flatten()
        .filter_map(|container| container["ports"].as_array())
        .flatten()
}

/// A pod's backend: its first IP, and the port the id names (a number, or the name of one
/// of its container ports), else the first port its first container with ports declares,
/// else the scheme's port. A pod without a usable IP is a 400 "address not allowed", as
/// kube-apiserver answers.
pub fn pod_backend(pod: &Value, id: &ProxyId, loopback: bool) -> Result<Backend, ApiError> {
    let ip = pod_ips(pod).into_iter().next().filter(|ip| proxyable(*ip, loopback));
    let ip = ip.ok_or_else(address_not_allowed)?;
    let port = if id.port.is_empty() {
        // kube looks at regular containers only for the default.
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|container| container["ports"].as_array()?.first())
            .and_then(|port| valid_port(port["containerPort"].as_i64()?))
    } else if let Ok(number) = id.port.parse::<i64>() {
        Some(valid_port(number).ok_or_else(|| {
            ApiError::BadRequest(format!("invalid port {:?} for pod {:?}", id.port, id.name))
        })?)
    } else {
        let named = container_ports(pod)
            .find(|port| port["name"].as_str() == Some(id.port.as_str()))
            .and_then(|port| valid_port(port["containerPort"].as_i64()?));
        Some(named.ok_or_else(|| {
            ApiError::BadRequest(format!(
                "pod {:?} has no container port named {:?}",
                id.name, id.port
            ))
        })?)
    };
    Ok(Backend::new(ip, port, id.scheme, id.scheme.transport()))
}

/// The name of the Service port a request is for. A number must be one of the Service's
/// ports (a 503 otherwise, as kube answers) and stands for that port's name; a name, or
/// nothing (an unnamed port), is taken as it is.
pub fn service_port_name(service: &Value, id: &ProxyId) -> Result<String, ApiError> {
    let Ok(number) = id.port.parse::<i64>() else {
        return Ok(id.port.clone());
    };
    let ports = service.pointer("/spec/ports").and_then(Value::as_array);
    ports
        .into_iter()
        .flatten()
        .find(|port| port["port"].as_i64() == Some(number))
        .map(|port| port["name"].as_str().unwrap_or_default().to_owned())
        .ok_or_else(|| {
            ApiError::Unavailable(format!(
                "no service port {number} found for service {:?}",
                id.name
            ))
        })
}

/// A ready endpoint of a Service's port, used once its pod is confirmed to hold the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub address: SocketAddr,
    /// The `targetRef` of the endpoint: its namespace and name.
    pub pod: Option<(String, String)>,
}

impl Candidate {
    /// The backend this endpoint is, over `scheme`.
    pub fn backend(&self, scheme: Scheme) -> Backend {
        Backend::new(self.address.ip(), Some(self.address.port()), scheme, scheme.transport())
    }
}

/// Whether the slices hold no endpoint at all (kube's Endpoints without subsets).
pub fn no_endpoints(slices: &[Value]) -> bool {
    slices.iter().all(|slice| slice["endpoints"].as_array().is_none_or(Vec::is_empty))
}

/// The ready endpoints of the slices that serve the port named `port_name`, with the port
/// number of each slice's port (the Service's target port), in the order kube-apiserver tries
/// them: from a random slice on, and in each from a random endpoint on. `pick(n)` chooses a
/// start in `0..n`. An endpoint is ready unless its `ready` condition is false; FQDN slices
/// are skipped.
pub fn service_candidates(
    slices: &[Value],
    port_name: &str,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    if slices.is_empty() {
        return candidates;
    }
    let first = pick(slices.len());
    for offset in 0..slices.len() {
        let slice = &slices[(first + offset) % slices.len()];
        if slice["addressType"].as_str() == Some("FQDN") {
            continue;
        }
        let ready: Vec<(IpAddr, Option<(String, String)>)> = slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|endpoint| endpoint.pointer("/conditions/ready") != Some(&Value::Bool(false)))
            .filter_map(|endpoint| {
                let ip = endpoint["addresses"].as_array()?.first()?.as_str()?.parse().ok()?;
                let target = &endpoint["targetRef"];
                let pod = target["name"].as_str().map(|name| {
                    (target["namespace"].as_str().unwrap_or_default().to_owned(), name.to_owned())
                });
                Some((ip, pod))
            })
            .collect();
        if ready.is_empty() {
            continue;
        }
        let ports = slice["ports"].as_array().into_iter().flatten();
        for port in ports.filter(|port| port["name"].as_str().unwrap_or_default() == port_name) {
            let Some(number) = port["port"].as_i64().and_then(valid_port) else {
                continue;
            };
            let start = pick(ready.len());
            for index in 0..ready.len() {
                let (ip, pod) = &ready[(start + index) % ready.len()];
                candidates
                    .push(Candidate { address: SocketAddr::new(*ip, number), pod: pod.clone() });
            }
        }
    }
    candidates
}

/// A node's backend: its agent when the id names no port or the agent's port; otherwise that
/// port on the node's address, over the id's scheme, if the address may be proxied to.
pub fn node_backend(node: &Value, id: &ProxyId, loopback: bool) -> Result<Backend, ApiError> {
    let agent = crate::node_proxy::node_agent_address(node).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "node {} has no address its agent can be reached at",
            id.name
        ))
    })?;
    if id.port.is_empty() || id.port == agent.port().to_string() {
        return Ok(Backend::new(agent.ip(), Some(agent.port()), Scheme::Https, Transport::Agent));
    }
    let port = id.port.parse::<i64>().ok().and_then(valid_port).ok_or_else(|| {
        ApiError::BadRequest(format!("invalid port {:?} for node {:?}", id.port, id.name))
    })?;
    if !proxyable(agent.ip(), loopback) {
        return Err(address_not_allowed());
    }
    Ok(Backend::new(agent.ip(), Some(port), id.scheme, id.scheme.transport()))
}
