//! Service cluster IPs and node ports, allocated in the same transaction as the Service write.
//!
//! Each allocated value is a key (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) that the Service's transaction creates only if
//! it does not exist yet, so two Services never get the same address even when masters
//! allocate concurrently; the loser's transaction fails and the client retries.

use std::net::Ipv4Addr;

use flotilla_store::KvStore;
use rand::Rng;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::storage::{Objects, SideWrite};
use crate::validation::FieldError;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// The address ranges Services draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRanges {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    /// kubeadm's defaults: 10.96.0.0/12 and ports 30000-32767.
    fn default() -> Self {
        ServiceRanges {
            network: Ipv4Addr::new(10, 96, 0, 0),
            prefix_len: 12,
            node_ports: (30000, 32767),
        }
    }
}

impl ServiceRanges {
    /// Parses `10.96.0.0/12`.
    pub fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), String> {
        let (ip, len) =
            cidr.split_once('/').ok_or_else(|| format!("{cidr}: expected IP/prefix"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{cidr}: bad IPv4 address"))?;
        let len: u8 = len.parse().map_err(|_| format!("{cidr}: bad prefix length"))?;
        if !(8..=30).contains(&len) {
            return Err(format!("{cidr}: prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - len);
        Ok((Ipv4Addr::from(u32::from(ip) & mask), len))
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix_len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix_len);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// The n-th address of the range (1 is the `kubernetes` Service's, 10 the DNS one's).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }
}

fn invalid(name: &str, field: &str, value: impl Into<Value>, message: &str) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: name.to_string(),
        causes: vec![FieldError::invalid(field, value, message)],
    }
}

/// Allocates (or keeps) a Service's cluster IP and node ports; returns the side writes that
/// reserve new values and release dropped ones.
pub async fn service<S: KvStore>(
    objects: &Objects<S>,
    ranges: &ServiceRanges,
    old: Option<&Value>,
    service: &mut Value,
) -> Result<Vec<SideWrite>, ApiError> {
    let owner = format!(
        "{}/{}",
        crate::meta::namespace(service).unwrap_or_default(),
        crate::meta::name(service)
    );
    let name = crate::meta::name(service).to_string();
    let mut side = Vec::new();
    let kind = service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let kind = kind.to_string();
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|ip| !ip.is_empty());
    let asked = service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    let asked = asked.to_string();
    let ip = if kind == "ExternalName" {
        None
    } else if let Some(old_ip) = &old_ip {
        if !asked.is_empty() && asked != *old_ip {
            return Err(invalid(&name, "spec.clusterIPs[0]", asked.as_str(), "field is immutable"));
        }
        Some(old_ip.clone())
    } else if asked == "None" {
        Some("None".to_string())
    } else if !asked.is_empty() {
        let ip: Ipv4Addr = asked.parse().map_err(|_| {
            invalid(&name, "spec.clusterIPs[0]", asked.as_str(), "must be a valid IP address")
        })?;
        if !ranges.contains(ip) {
            return Err(invalid(
                &name,
                "spec.clusterIPs[0]",
                asked.as_str(),
                &format!(
                    "failed to allocate IP {asked}: the provided IP ({asked}) is not in the valid \
                     range. The range of valid IPs is {}/{}",
                    ranges.network, ranges.prefix_len
                ),
            ));
        }
        if objects.exists(&format!("{IP_PREFIX}{asked}")).await? {
            return Err(invalid(
                &name,
                "spec.clusterIPs",
                json!([asked]),
                &format!("failed to allocate IP {asked}: provided IP is already allocated"),
            ));
        }
        side.push(reserve(IP_PREFIX, &asked, &owner));
        Some(asked)
    } else {
        let ip = free_ip(objects, ranges).await?;
        side.push(reserve(IP_PREFIX, &ip.to_string(), &owner));
        Some(ip.to_string())
    };
    if let Some(ip) = &ip {
        service["spec"]["clusterIP"] = json!(ip);
        service["spec"]["clusterIPs"] = json!([ip]);
        if ip != "None" {
            service["spec"]["ipFamilies"] = json!(["IPv4"]);
            service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    let needs_ports = kind == "NodePort" || kind == "LoadBalancer";
    let old_ports = node_ports(old);
    let mut kept = Vec::new();
    if let Some(ports) = service.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for (index, port) in ports.iter_mut().enumerate() {
            if !needs_ports {
                if let Some(map) = port.as_object_mut() {
                    map.remove("nodePort");
                }
                continue;
            }
            match port.get("nodePort").and_then(Value::as_u64) {
                Some(asked) if old_ports.contains(&asked) => kept.push(asked),
                Some(asked) => {
                    let (low, high) = ranges.node_ports;
                    let field = format!("spec.ports[{index}].nodePort");
                    if !(low as u64..=high as u64).contains(&asked) {
                        return Err(invalid(
                            &name,
                            &field,
                            asked,
                            &format!("provided port is not in the valid range. The range of valid ports is {low}-{high}"),
                        ));
                    }
                    if objects.exists(&format!("{PORT_PREFIX}{asked}")).await? {
                        return Err(invalid(
                            &name,
                            &field,
                            asked,
                            "provided port is already allocated",
                        ));
                    }
                    side.push(reserve(PORT_PREFIX, &asked.to_string(), &owner));
                    kept.push(asked);
                }
                None => {
                    let free = free_port(objects, ranges, &kept).await?;
                    port["nodePort"] = json!(free);
                    side.push(reserve(PORT_PREFIX, &free.to_string(), &owner));
                    kept.push(free as u64);
                }
            }
        }
    }
    for dropped in old_ports.iter().filter(|p| !kept.contains(p)) {
        side.push(SideWrite {
            key: format!("{PORT_PREFIX}{dropped}"),
            value: None,
            must_be_new: false,
        });
    }
    Ok(side)
}

/// Side writes that release everything a deleted Service held.
pub fn release_service(service: &Value) -> Vec<SideWrite> {
    let mut side = Vec::new();
    if let Some(ip) = service.pointer("/spec/clusterIP").and_then(Value::as_str) {
        if ip.parse::<Ipv4Addr>().is_ok() {
            side.push(SideWrite {
                key: format!("{IP_PREFIX}{ip}"),
                value: None,
                must_be_new: false,
            });
        }
    }
    for port in node_ports(Some(service)) {
        side.push(SideWrite {
            key: format!("{PORT_PREFIX}{port}"),
            value: None,
            must_be_new: false,
        });
    }
    side
}

fn node_ports(service: Option<&Value>) -> Vec<u64> {
    service
        .and_then(|s| s.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .map(|ports| ports.iter().filter_map(|p| p.get("nodePort")?.as_u64()).collect())
        .unwrap_or_default()
}

fn reserve(prefix: &str, value: &str, owner: &str) -> SideWrite {
    SideWrite {
        key: format!("{prefix}{value}"),
        value: Some(owner.as_bytes().to_vec()),
        must_be_new: true,
    }
}

/// How many random picks are tried before scanning the range in order.
const RANDOM_TRIES: usize = 32;

async fn free_ip<S: KvStore>(
    objects: &Objects<S>,
    ranges: &ServiceRanges,
) -> Result<Ipv4Addr, ApiError> {
    // The first ten addresses are kept for the `kubernetes` and DNS Services.
    let first = 11u32;
    let last = ranges.size() - 2;
    for _ in 0..RANDOM_TRIES {
        let candidate = ranges.nth(rand::thread_rng().gen_range(first..=last));
        if !objects.exists(&format!("{IP_PREFIX}{candidate}")).await? {
            return Ok(candidate);
        }
    }
    let taken = objects.keys(IP_PREFIX).await?;
    let taken: std::collections::HashSet<&str> =
        taken.iter().map(|key| key.trim_start_matches(IP_PREFIX)).collect();
    (first..=last)
        .map(|n| ranges.nth(n))
        .find(|ip| !taken.contains(ip.to_string().as_str()))
        .ok_or_else(|| ApiError::Internal("failed to allocate a serviceIP: range is full".into()))
}

async fn free_port<S: KvStore>(
    objects: &Objects<S>,
    ranges: &ServiceRanges,
    also_taken: &[u64],
) -> Result<u16, ApiError> {
    let (low, high) = ranges.node_ports;
    for _ in 0..RANDOM_TRIES {
        let candidate = rand::thread_rng().gen_range(low..=high);
        if also_taken.contains(&(candidate as u64)) {
            continue;
        }
        if !objects.exists(&format!("{PORT_PREFIX}{candidate}")).await? {
            return Ok(candidate);
        }
    }
    Err(ApiError::Internal("failed to allocate a nodePort: range is nearly full".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain() {
        let (network, len) = ServiceRanges::parse_cidr("10.96.3.4/12").unwrap();
        assert_eq!(network, Ipv4Addr::new(10, 96, 0, 0));
        let ranges = ServiceRanges { network, prefix_len: len, node_ports: (30000, 32767) };
        assert!(ranges.contains(Ipv4Addr::new(10, 111, 255, 1)));
        assert!(!ranges.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert_eq!(ranges.nth(10), Ipv4Addr::new(10, 96, 0, 10));
        assert!(ServiceRanges::parse_cidr("10.0.0.0").is_err());
        assert!(ServiceRanges::parse_cidr("10.0.0.0/31").is_err());
    }

    #[test]
    fn release_frees_ip_and_ports() {
        let service = json!({"spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80, "nodePort": 30080}]}});
        let keys: Vec<String> = release_service(&service).into_iter().map(|w| w.key).collect();
        assert_eq!(
            keys,
            ["/registry/ranges/serviceips/10.96.0.20", "/registry/ranges/servicenodeports/30080"]
        );
        assert!(release_service(&json!({"spec": {"clusterIP": "None"}})).is_empty());
    }
}
