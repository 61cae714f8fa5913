//! The sandbox's DNS configuration per `dnsPolicy`, as kubelet's DNS configurer builds it.
//!
//! Invariants: at most 3 nameservers and 32 search domains of at most 253 characters each,
//! 2048 characters in all, as resolvers accept; anything cut is reported as a
//! `DNSConfigForming` warning event.

use k8s_cri::v1::DnsConfig;
use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use super::{DnsSettings, SandboxError};
use crate::pods::event::PodEvent;
use crate::pods::pod;

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_LINE_CHARS: usize = 2048;
const MAX_SEARCH_DOMAIN_CHARS: usize = 253;

/// The ndots option kubelet gives ClusterFirst pods.
const CLUSTER_OPTIONS: &str = "ndots:5";

enum Kind {
    Cluster,
    Host,
    None,
}

/// Returns the pod's DNS configuration and the warnings kubelet would record.
pub(super) fn pod_dns(
    pod: &Pod,
    settings: &DnsSettings,
) -> Result<(DnsConfig, Vec<PodEvent>), SandboxError> {
    let mut events = Vec::new();
    let host = host_config(settings)?;
    let kind = match pod::spec(pod).dns_policy.as_deref() {
        Some("None") => Kind::None,
        Some("ClusterFirstWithHostNet") => Kind::Cluster,
        Some("Default") => Kind::Host,
        // ClusterFirst falls back to the node's resolv.conf for host-network pods.
        _ if pod::host_network(pod) => Kind::Host,
        _ => Kind::Cluster,
    };
    let mut config = match kind {
        Kind::None => DnsConfig::default(),
        Kind::Cluster if !settings.cluster_dns.is_empty() => DnsConfig {
            servers: settings.cluster_dns.clone(),
            searches: cluster_searches(pod, settings, host.searches),
            options: vec![CLUSTER_OPTIONS.to_owned()],
        },
        Kind::Cluster | Kind::Host => {
            if matches!(kind, Kind::Cluster) {
                let message = "kubelet does not have ClusterDNS IP configured and cannot create \
                               Pod using \"ClusterFirst\" policy. Falling back to \"Default\" \
                               policy.";
                events.push(PodEvent::warning(
                    "MissingClusterDNS",
                    format!("pod: \"{}\". {message}", pod::display(pod)),
                ));
            }
            without_resolv_conf(host, settings)
        }
    };
    if let Some(extra) = pod::spec(pod).dns_config.as_ref() {
        append(&mut config, extra);
    }
    fit_limits(&mut config, &mut events);
    Ok((config, events))
}

/// The node's resolv.conf as a DNS config (empty when kubelet runs with `--resolv-conf=""`).
fn host_config(settings: &DnsSettings) -> Result<DnsConfig, SandboxError> {
    let Some(contents) = settings.resolv_conf.as_deref() else {
        return Ok(DnsConfig::default());
    };
    let mut config = DnsConfig::default();
    for line in contents.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["nameserver"] => return Err(SandboxError::ResolvConf),
            ["nameserver", server, ..] => config.servers.push((*server).to_owned()),
            // The last search line wins; a trailing dot is dropped so a domain counts once.
            ["search", domains @ ..] => {
                config.searches = domains
                    .iter()
                    .filter(|domain| **domain != ".")
                    .map(|domain| domain.trim_end_matches('.').to_owned())
                    .collect();
            }
            ["options", options @ ..] => {
                for option in options {
                    set_option(&mut config.options, option);
                }
            }
            _ => {}
        }
    }
    Ok(config)
}

/// With no resolv.conf, kubelet points the pod at the node itself and disables search.
fn without_resolv_conf(host: DnsConfig, settings: &DnsSettings) -> DnsConfig {
    if settings.resolv_conf.is_some() {
        return host;
    }
    let mut servers: Vec<String> = settings
        .node_ips
        .iter()
        .map(|ip| if ip.contains(':') { "::1" } else { "127.0.0.1" }.to_owned())
        .collect();
    if servers.is_empty() {
        servers.push("127.0.0.1".to_owned());
    }
    DnsConfig { servers, searches: vec![".".to_owned()], options: host.options }
}

fn cluster_searches(pod: &Pod, settings: &DnsSettings, host: Vec<String>) -> Vec<String> {
    let domain = settings.cluster_domain.as_str();
    if domain.is_empty() {
        return host;
    }
    let mut searches = vec![
        format!("{}.svc.{domain}", pod::namespace(pod)),
        format!("svc.{domain}"),
        domain.to_owned(),
    ];
    searches.extend(host);
    without_duplicates(searches)
}

/// Adds the pod's `dnsConfig` to the policy's configuration; pod options override same-named
/// ones.
fn append(config: &mut DnsConfig, extra: &PodDNSConfig) {
    config.servers.extend(extra.nameservers.iter().flatten().cloned());
    config.servers = without_duplicates(std::mem::take(&mut config.servers));
    config.searches.extend(extra.searches.iter().flatten().cloned());
    config.searches = without_duplicates(std::mem::take(&mut config.searches));
    for option in extra.options.iter().flatten() {
        let name = option.name.as_deref().unwrap_or_default();
        match option.value.as_deref() {
            Some(value) if !value.is_empty() => {
                set_option(&mut config.options, &format!("{name}:{value}"))
            }
            _ => set_option(&mut config.options, name),
        }
    }
}

/// Sets `option` (`name` or `name:value`), replacing any option of the same name in place.
fn set_option(options: &mut Vec<String>, option: &str) {
    let name = option.split(':').next().unwrap_or_default();
    match options.iter_mut().find(|existing| existing.split(':').next() == Some(name)) {
        Some(existing) => *existing = option.to_owned(),
        None => options.push(option.to_owned()),
    }
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    items.into_iter().filter(|item| seen.insert(item.clone())).collect()
}

fn fit_limits(config: &mut DnsConfig, events: &mut Vec<PodEvent>) {
    if config.servers.len() > MAX_NAMESERVERS {
        config.servers.truncate(MAX_NAMESERVERS);
        events.push(PodEvent::warning(
            "DNSConfigForming",
            format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the \
                 applied nameserver line is: {}",
                config.servers.join(" ")
            ),
        ));
    }
    let mut exceeded = config.searches.len() > MAX_SEARCH_PATHS;
    config.searches.truncate(MAX_SEARCH_PATHS);
    let before = config.searches.len();
    config.searches.retain(|domain| domain.len() <= MAX_SEARCH_DOMAIN_CHARS);
    exceeded |= config.searches.len() != before;
    while config.searches.join(" ").len() > MAX_SEARCH_LINE_CHARS {
        config.searches.pop();
        exceeded = true;
    }
    if exceeded {
        events.push(PodEvent::warning(
            "DNSConfigForming",
            format!(
                "Search Line limits were exceeded, some search paths have been omitted, the \
                 applied search line is: {}",
                config.searches.join(" ")
            ),
        ));
    }
}
