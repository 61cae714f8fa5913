//! The CRI `PodSandboxConfig` kubelet sends to `RunPodSandbox` for a pod
//! (`generatePodSandboxConfig`), and the `/etc/hosts` file it mounts into containers.
//!
//! Invariants:
//! - Metadata, labels and log directory identify the pod by namespace, name and UID, so the
//!   caller can find its sandboxes again by label (`io.kubernetes.pod.uid`).
//! - A host-network sandbox gets no hostname (the runtime keeps the node's).
//! - The cgroup parent follows the pod's QoS class and the node's cgroup driver.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1::{
    security_profile, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
    SecurityProfile,
};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::pods::event::PodEvent;
use crate::pods::qos::{self, CgroupDriver};
use crate::pods::resources;
use crate::pods::{pod, quantity};

mod dns;
#[cfg(test)]
mod tests;

/// Label naming the pod on sandboxes and containers.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label naming the pod's namespace on sandboxes and containers.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label carrying the pod's UID on sandboxes and containers.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// The rule a DNS label breaks, as Kubernetes' validation words it.
const DNS_LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
    characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  \
    or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Where kubelet keeps pod logs by default.
pub const DEFAULT_LOG_ROOT: &str = "/var/log/pods";

/// The node's DNS settings (kubelet's `clusterDNS`, `clusterDomain` and `resolvConf`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsSettings {
    /// Cluster DNS server IPs; empty makes ClusterFirst fall back to Default.
    pub cluster_dns: Vec<String>,
    /// Cluster domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// Contents of the node's resolv.conf; `None` when kubelet runs with `--resolv-conf=""`.
    pub resolv_conf: Option<String>,
    /// The node's IPs, used only when there is no resolv.conf.
    pub node_ips: Vec<String>,
}

/// Node-wide settings the sandbox configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// DNS settings.
    pub dns: DnsSettings,
    /// Root of the pod log directories (`/var/log/pods`).
    pub log_root: String,
    /// The cgroup driver.
    pub cgroup_driver: CgroupDriver,
    /// The node uses the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// The cgroup every pod cgroup of this node goes under (kubelet's `--cgroup-root`), e.g.
    /// `/flotilla/<node>`; empty for the hierarchy's root. Only for the cgroupfs driver.
    pub cgroup_root: String,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            dns: DnsSettings::default(),
            log_root: DEFAULT_LOG_ROOT.to_owned(),
            cgroup_driver: CgroupDriver::Systemd,
            cgroup_v2: true,
            cgroup_root: String::new(),
        }
    }
}

impl NodeSettings {
    /// The cgroup the pod's sandbox and containers go in.
    pub fn pod_cgroup(&self, pod: &Pod) -> String {
        let within = qos::cgroup_parent(pod, self.cgroup_driver);
        match self.cgroup_driver {
            CgroupDriver::Cgroupfs => format!("{}{within}", self.cgroup_root.trim_end_matches('/')),
            CgroupDriver::Systemd => within,
        }
    }
}

/// A sandbox configuration and the warnings kubelet records while building it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// What to pass to `RunPodSandbox`.
    pub config: PodSandboxConfig,
    /// Events to record on the pod (`DNSConfigForming`, `MissingClusterDNS`).
    pub events: Vec<PodEvent>,
}

/// Why no sandbox configuration could be built; the caller records `FailedCreatePodSandBox`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// `spec.hostname` or `spec.subdomain` is not a DNS label.
    #[error("pod {field} {value:?} is not a valid DNS label: {DNS_LABEL_RULE}")]
    InvalidDnsLabel { field: &'static str, value: String },
    /// The hostname is empty after truncation to 63 characters.
    #[error("hostname for pod {pod:?} was invalid: {hostname:?}")]
    InvalidHostname { pod: String, hostname: String },
    /// `setHostnameAsFQDN` would give a hostname longer than the kernel accepts.
    #[error(
        "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long \
         (64 characters is the max, {length} characters requested)"
    )]
    FqdnTooLong { fqdn: String, length: usize },
    /// The node's resolv.conf has a `nameserver` line without a server.
    #[error("Encountered error while parsing resolv conf file. Error: nameserver list is empty ")]
    ResolvConf,
}

/// Returns the sandbox configuration for `pod`; `attempt` is 0 for the first sandbox and the
/// previous sandbox's attempt plus one for a replacement.
pub fn config(pod: &Pod, attempt: u32, node: &NodeSettings) -> Result<Sandbox, SandboxError> {
    let (dns_config, events) = dns::pod_dns(pod, &node.dns)?;
    let hostname = if pod::host_network(pod) {
        String::new()
    } else {
        kernel_hostname(pod, &node.dns.cluster_domain)?
    };
    let spec = pod::spec(pod);
    let port_mappings = spec.containers.iter().flat_map(port_mappings).collect();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod::name(pod).to_owned(),
            uid: pod::uid(pod).to_owned(),
            namespace: pod::namespace(pod).to_owned(),
            attempt,
        }),
        hostname,
        log_directory: log_directory(pod, &node.log_root),
        dns_config: Some(dns_config),
        port_mappings,
        labels: pod_labels(pod),
        annotations: to_hash_map(pod.metadata.annotations.as_ref()),
        linux: Some(linux_config(pod, node)),
        windows: None,
    };
    Ok(Sandbox { config, events })
}

/// Returns the pod's log directory, `<root>/<namespace>_<name>_<uid>`.
pub fn log_directory(pod: &Pod, log_root: &str) -> String {
    format!(
        "{}/{}_{}_{}",
        log_root.trim_end_matches('/'),
        pod::namespace(pod),
        pod::name(pod),
        pod::uid(pod)
    )
}

/// Returns the pod's hostname and its domain (`<subdomain>.<namespace>.svc.<cluster domain>`,
/// empty without subdomain), as kubelet's `GeneratePodHostNameAndDomain`.
pub fn hostname_and_domain(
    pod: &Pod,
    cluster_domain: &str,
) -> Result<(String, String), SandboxError> {
    let spec = pod::spec(pod);
    let mut hostname = pod::name(pod).to_owned();
    if let Some(requested) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if !is_dns_label(requested) {
            return Err(SandboxError::InvalidDnsLabel {
                field: "Hostname",
                value: requested.to_owned(),
            });
        }
        hostname = requested.to_owned();
    }
    if hostname.len() > 63 {
        let truncated = hostname[..63].trim_end_matches(['-', '.']).to_owned();
        if truncated.is_empty() {
            return Err(SandboxError::InvalidHostname { pod: pod::name(pod).to_owned(), hostname });
        }
        hostname = truncated;
    }
    let domain = match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(subdomain) if !is_dns_label(subdomain) => {
            return Err(SandboxError::InvalidDnsLabel {
                field: "Subdomain",
                value: subdomain.to_owned(),
            })
        }
        Some(subdomain) => format!("{subdomain}.{}.svc.{cluster_domain}", pod::namespace(pod)),
        None => String::new(),
    };
    Ok((hostname, domain))
}

/// The hostname the kernel gets: the FQDN when `setHostnameAsFQDN` and a domain are set.
fn kernel_hostname(pod: &Pod, cluster_domain: &str) -> Result<String, SandboxError> {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain)?;
    if domain.is_empty() || pod::spec(pod).set_hostname_as_fqdn != Some(true) {
        return Ok(hostname);
    }
    let fqdn = format!("{hostname}.{domain}");
    if fqdn.len() > 64 {
        return Err(SandboxError::FqdnTooLong { length: fqdn.len(), fqdn });
    }
    Ok(fqdn)
}

/// Returns the `/etc/hosts` kubelet writes for the pod's containers. `node_hosts` is the
/// node's own hosts file, which host-network pods get instead of the managed entries.
pub fn hosts_file(
    pod: &Pod,
    pod_ips: &[String],
    cluster_domain: &str,
    node_hosts: &str,
) -> Result<String, SandboxError> {
    let mut out = String::new();
    if pod::host_network(pod) {
        out.push_str("# Kubernetes-managed hosts file (host network).\n");
        out.push_str(node_hosts);
    } else {
        let (hostname, domain) = hostname_and_domain(pod, cluster_domain)?;
        out.push_str("# Kubernetes-managed hosts file.\n");
        out.push_str("127.0.0.1\tlocalhost\n");
        out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        out.push_str("fe00::0\tip6-localnet\n");
        out.push_str("fe00::0\tip6-mcastprefix\n");
        out.push_str("fe00::1\tip6-allnodes\n");
        out.push_str("fe00::2\tip6-allrouters\n");
        for ip in pod_ips {
            if domain.is_empty() {
                out.push_str(&format!("{ip}\t{hostname}\n"));
            } else {
                out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
            }
        }
    }
    let aliases = pod::spec(pod).host_aliases.iter().flatten();
    for (index, alias) in aliases.enumerate() {
        if index == 0 {
            out.push_str("\n# Entries added by HostAliases.\n");
        }
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    Ok(out)
}

/// Returns the namespace modes kubelet gives the pod's sandbox and containers
/// (`NamespacesForPod`).
pub(crate) fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod::spec(pod);
    let node_or = |host: Option<bool>, otherwise: NamespaceMode| {
        if host == Some(true) {
            NamespaceMode::Node
        } else {
            otherwise
        }
    };
    let pid_otherwise = if spec.share_process_namespace == Some(true) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: node_or(spec.host_network, NamespaceMode::Pod).into(),
        pid: node_or(spec.host_pid, pid_otherwise).into(),
        ipc: node_or(spec.host_ipc, NamespaceMode::Pod).into(),
        target_id: String::new(),
        userns_options: None,
    }
}

/// The pod's labels plus the three kubelet uses to find its sandboxes.
fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let mut labels = to_hash_map(pod.metadata.labels.as_ref());
    labels.insert(POD_NAME_LABEL.to_owned(), pod::name(pod).to_owned());
    labels.insert(POD_NAMESPACE_LABEL.to_owned(), pod::namespace(pod).to_owned());
    labels.insert(POD_UID_LABEL.to_owned(), pod::uid(pod).to_owned());
    labels
}

pub(crate) fn to_hash_map(map: Option<&BTreeMap<String, String>>) -> HashMap<String, String> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// Kubelet's `MakePortMappings`: every declared port (the runtime maps those with a host
/// port), skipping repeats of the same name or protocol/port/host-IP tuple.
fn port_mappings(container: &Container) -> Vec<PortMapping> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for port in container.ports.iter().flatten() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let host_ip = port.host_ip.clone().unwrap_or_default();
        let host_port = port.host_port.unwrap_or(0);
        let family = match host_ip.as_str() {
            "" => "any",
            ip if ip.contains(':') => "v6",
            _ => "v4",
        };
        let key = port.name.clone().filter(|name| !name.is_empty()).unwrap_or_else(|| {
            format!("{family}-{protocol}-{host_ip}:{}:{host_port}", port.container_port)
        });
        if !seen.insert(key) {
            continue;
        }
        let protocol = match protocol {
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        out.push(PortMapping {
            protocol: protocol.into(),
            container_port: port.container_port,
            host_port,
            host_ip,
        });
    }
    out
}

fn linux_config(pod: &Pod, node: &NodeSettings) -> LinuxPodSandboxConfig {
    let spec = pod::spec(pod);
    let security = spec.security_context.as_ref();
    let mut supplemental_groups: Vec<i64> =
        security.and_then(|sc| sc.fs_group).into_iter().collect();
    supplemental_groups
        .extend(security.and_then(|sc| sc.supplemental_groups.clone()).unwrap_or_default());
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|sc| sc.privileged) == Some(true));
    LinuxPodSandboxConfig {
        cgroup_parent: node.pod_cgroup(pod),
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(namespace_options(pod)),
            run_as_user: security.and_then(|sc| sc.run_as_user).map(|value| Int64Value { value }),
            run_as_group: security.and_then(|sc| sc.run_as_group).map(|value| Int64Value { value }),
            supplemental_groups,
            privileged,
            // The sandbox always runs with the runtime's default profile.
            seccomp: Some(SecurityProfile {
                profile_type: security_profile::ProfileType::RuntimeDefault.into(),
                localhost_ref: String::new(),
            }),
            ..LinuxSandboxSecurityContext::default()
        }),
        sysctls: security
            .and_then(|sc| sc.sysctls.as_ref())
            .map(|sysctls| sysctls.iter().map(|s| (s.name.clone(), s.value.clone())).collect())
            .unwrap_or_default(),
        overhead: None,
        resources: Some(sandbox_resources(pod, node.cgroup_v2)),
    }
}

/// The pod-level resources the runtime may size the sandbox with (`calculateSandboxResources`):
/// the larger of what the regular containers and sidecars use together and what any init
/// container uses alongside the sidecars started before it.
fn sandbox_resources(pod: &Pod, cgroup_v2: bool) -> k8s_cri::v1::LinuxContainerResources {
    #[derive(Default, Clone, Copy)]
    struct Amounts {
        cpu_request: Option<i64>,
        cpu_limit: i64,
        memory_limit: i64,
    }
    impl Amounts {
        fn of(container: &Container) -> Self {
            let requests = qos::requests_of(container);
            let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
            Amounts {
                cpu_request: requests.get("cpu").map(|q| quantity::milli(Some(q))),
                cpu_limit: quantity::milli(limits.and_then(|l| l.get("cpu"))),
                memory_limit: quantity::value(limits.and_then(|l| l.get("memory"))),
            }
        }
        fn plus(self, other: Amounts) -> Amounts {
            Amounts {
                cpu_request: match (self.cpu_request, other.cpu_request) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                },
                cpu_limit: self.cpu_limit + other.cpu_limit,
                memory_limit: self.memory_limit + other.memory_limit,
            }
        }
        fn max(self, other: Amounts) -> Amounts {
            Amounts {
                cpu_request: match (self.cpu_request, other.cpu_request) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
                },
                cpu_limit: self.cpu_limit.max(other.cpu_limit),
                memory_limit: self.memory_limit.max(other.memory_limit),
            }
        }
    }
    let spec = pod::spec(pod);
    let mut total = spec.containers.iter().map(Amounts::of).fold(Amounts::default(), Amounts::plus);
    let mut sidecars = Amounts::default();
    let mut init_peak = Amounts::default();
    for init in spec.init_containers.iter().flatten() {
        let amounts = Amounts::of(init);
        let running = if pod::is_restartable(init) {
            total = total.plus(amounts);
            sidecars = sidecars.plus(amounts);
            sidecars
        } else {
            amounts.plus(sidecars)
        };
        init_peak = init_peak.max(running);
    }
    let pod_amounts = total.max(init_peak);
    let mut resources = resources::linux_resources(
        pod_amounts.cpu_request,
        pod_amounts.cpu_limit,
        pod_amounts.memory_limit,
        cgroup_v2,
    );
    resources.unified.remove("memory.swap.max");
    resources.memory_swap_limit_in_bytes = 0;
    resources
}

/// RFC 1123 label: at most 63 lowercase alphanumerics or '-', alphanumeric at both ends.
fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}
