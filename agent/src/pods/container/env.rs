//! The environment kubelet gives a container (`makeEnvironmentVariables`): `envFrom` first,
//! then `env` in order (each value expanded against what came before it and the service
//! variables), then the service variables nobody overrode.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{ConfigError, Context};
use crate::pods::expansion::expand;
use crate::pods::{pod, qos, quantity};

/// An ordered environment: names keep the position of their first definition.
#[derive(Debug, Default)]
pub(super) struct Environment {
    order: Vec<String>,
    values: BTreeMap<String, String>,
}

impl Environment {
    fn set(&mut self, name: String, value: String) {
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value);
    }

    pub(super) fn get(&self, name: &str) -> Option<&String> {
        self.values.get(name)
    }

    pub(super) fn into_pairs(self) -> Vec<(String, String)> {
        let Environment { order, mut values } = self;
        order
            .into_iter()
            .filter_map(|name| values.remove(&name).map(|value| (name, value)))
            .collect()
    }
}

/// Returns the container's final environment.
pub(super) fn environment(
    pod: &Pod,
    container: &Container,
    context: &Context,
) -> Result<Environment, ConfigError> {
    let namespace = pod::namespace(pod);
    let services = service_environment(pod, &context.services);
    let mut env = Environment::default();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            let name = reference.name.as_str();
            let Some(config_map) = context.config_maps.get(name) else {
                if reference.optional == Some(true) {
                    continue;
                }
                return Err(ConfigError::ConfigMapNotFound { name: name.to_owned() });
            };
            for (key, value) in config_map.data.iter().flatten() {
                env.set(format!("{prefix}{key}"), value.clone());
            }
        } else if let Some(reference) = &source.secret_ref {
            let name = reference.name.as_str();
            let Some(secret) = context.secrets.get(name) else {
                if reference.optional == Some(true) {
                    continue;
                }
                return Err(ConfigError::SecretNotFound { name: name.to_owned() });
            };
            for (key, value) in secret_data(secret) {
                env.set(format!("{prefix}{key}"), value);
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref(), var.value_from.as_ref()) {
            (Some(value), _) if !value.is_empty() => {
                expand(value, |name| env.get(name).or_else(|| services.get(name)).cloned())
            }
            (_, Some(source)) => {
                if let Some(field) = &source.field_ref {
                    field_value(pod, field, context)?
                } else if let Some(resource) = &source.resource_field_ref {
                    resource_value(pod, container, resource, context)?
                } else if let Some(key_ref) = &source.config_map_key_ref {
                    let optional = key_ref.optional == Some(true);
                    let name = key_ref.name.as_str();
                    let Some(config_map) = context.config_maps.get(name) else {
                        if optional {
                            continue;
                        }
                        return Err(ConfigError::ConfigMapNotFound { name: name.to_owned() });
                    };
                    match config_map.data.as_ref().and_then(|data| data.get(&key_ref.key)) {
                        Some(value) => value.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError::ConfigMapKeyNotFound {
                                key: key_ref.key.clone(),
                                namespace: namespace.to_owned(),
                                name: name.to_owned(),
                            })
                        }
                    }
                } else if let Some(key_ref) = &source.secret_key_ref {
                    let optional = key_ref.optional == Some(true);
                    let name = key_ref.name.as_str();
                    let Some(secret) = context.secrets.get(name) else {
                        if optional {
                            continue;
                        }
                        return Err(ConfigError::SecretNotFound { name: name.to_owned() });
                    };
                    match secret_data(secret).remove(&key_ref.key) {
                        Some(value) => value,
                        None if optional => continue,
                        None => {
                            return Err(ConfigError::SecretKeyNotFound {
                                key: key_ref.key.clone(),
                                namespace: namespace.to_owned(),
                                name: name.to_owned(),
                            })
                        }
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        env.set(var.name.clone(), value);
    }

    for (name, value) in services {
        if env.get(&name).is_none() {
            env.set(name, value);
        }
    }
    Ok(env)
}

/// A secret's data as strings (`stringData` entries count only when `data` lacks the key,
/// which an API server that merges them on write never shows).
fn secret_data(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret.string_data.clone().unwrap_or_default();
    for (key, value) in secret.data.iter().flatten() {
        out.insert(key.clone(), String::from_utf8_lossy(&value.0).into_owned());
    }
    out
}

/// The service link variables kubelet injects: `default/kubernetes` always, and every service
/// of the pod's namespace unless `enableServiceLinks` is false. Headless services and services
/// without a cluster IP contribute nothing.
fn service_environment(pod: &Pod, services: &[Service]) -> BTreeMap<String, String> {
    let links = pod::spec(pod).enable_service_links != Some(false);
    let namespace = pod::namespace(pod);
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let spec = service.spec.as_ref();
        let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default();
        if cluster_ip.is_empty() || cluster_ip == "None" {
            continue;
        }
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        if service_namespace == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(service);
        } else if service_namespace == namespace && links {
            chosen.insert(name, service);
        }
    }
    let mut out = BTreeMap::new();
    for (name, service) in chosen {
        let Some(spec) = service.spec.as_ref() else { continue };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = name.replace('-', "_").to_uppercase();
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!("{prefix}_SERVICE_PORT_{}", port_name.replace('-', "_").to_uppercase()),
                    port.port.to_string(),
                );
            }
        }
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let url = format!("{lower}://{host}:{}", port.port);
            if index == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            out.insert(format!("{port_prefix}_PROTO"), lower);
            out.insert(format!("{port_prefix}_PORT"), port.port.to_string());
            out.insert(format!("{port_prefix}_ADDR"), ip.clone());
            out.insert(port_prefix, url);
        }
    }
    out
}

/// The downward API value of a `fieldRef` (`podFieldSelectorRuntimeValue`).
fn field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    context: &Context,
) -> Result<String, ConfigError> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if !version.is_empty() && version != "v1" {
        return Err(ConfigError::UnsupportedPodVersion { version: version.to_owned() });
    }
    let path = selector.field_path.as_str();
    if let Some((field, key)) = subscripted(path) {
        let map = match field {
            "metadata.labels" => pod.metadata.labels.as_ref(),
            "metadata.annotations" => pod.metadata.annotations.as_ref(),
            _ => return Err(ConfigError::FieldLabelNoSubscript { label: path.to_owned() }),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let spec = pod::spec(pod);
    let pod_ips = pod::sort_pod_ips(&context.pod_ips, &context.host_ips);
    Ok(match path {
        "metadata.name" => pod::name(pod).to_owned(),
        "metadata.namespace" => pod::namespace(pod).to_owned(),
        "metadata.uid" => pod::uid(pod).to_owned(),
        "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
        "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
        "spec.nodeName" | "spec.host" => spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" => context.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => context.host_ips.join(","),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            return Err(ConfigError::UnsupportedFieldPath { path: path.to_owned() })
        }
        _ => return Err(ConfigError::FieldLabelNotSupported { label: path.to_owned() }),
    })
}

/// Splits `metadata.labels['key']` into the field and the key.
pub(crate) fn subscripted(path: &str) -> Option<(&str, &str)> {
    let (field, key) = path.strip_suffix("']")?.split_once("['")?;
    (!field.is_empty()).then_some((field, key))
}

/// Kubelet's `FormatMap`: sorted `key="value"` lines (Go-quoted values), as env vars and
/// downward API volume files show labels and annotations.
pub(crate) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` (`%q`): printable characters as they are, `\a \b \f \n \r \t \v`
/// and the other ASCII controls escaped, other non-printable characters as `\u`/`\U`.
pub(crate) fn go_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if !go_printable(c) && (c as u32) < 0x10000 => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if !go_printable(c) => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` without Unicode tables: control, separator
/// (other than the ASCII space), format and private-use characters and noncharacters are not
/// printable; unassigned code points count as printable (Go escapes those too).
fn go_printable(c: char) -> bool {
    let code = c as u32;
    let not_printable = matches!(code,
        0x80..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000 | 0xd800..=0xf8ff
        | 0xfdd0..=0xfdef | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
        || code & 0xfffe == 0xfffe;
    !not_printable
}

/// The downward API value of a `resourceFieldRef`, with limits the container does not set
/// read as the node's allocatable amount (`defaultPodLimitsForDownwardAPI`). Downward API
/// volumes pass the named container as `container`, so its limits are defaulted too, as
/// kubelet's `ExtractResourceValueByContainerNameAndNodeAllocatable` does.
pub(crate) fn resource_value(
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
    context: &Context,
) -> Result<String, ConfigError> {
    let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) => pod::container(pod, name)
            .ok_or_else(|| ConfigError::ResourceContainerNotFound { name: name.to_owned() })?,
    };
    // Only regular containers (and the one being configured) get allocatable limits.
    let defaulted = std::ptr::eq(target, container)
        || pod::spec(pod).containers.iter().any(|c| c.name == target.name);
    let mut limits = target.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    if defaulted {
        for name in ["cpu", "memory", "ephemeral-storage"] {
            let missing = limits.get(name).is_none_or(|q| quantity::milli(Some(q)) == 0);
            if let (true, Some(allocatable)) = (missing, context.node_allocatable.get(name)) {
                limits.insert(name.to_owned(), allocatable.clone());
            }
        }
    }
    let requests = qos::requests_of(target);
    let resource = selector.resource.as_str();
    let (list, name) = match resource.split_once('.') {
        Some(("limits", name)) => (&limits, name),
        Some(("requests", name)) => (&requests, name),
        _ => return Err(ConfigError::UnsupportedResource { resource: resource.to_owned() }),
    };
    if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !name.starts_with("hugepages-") {
        return Err(ConfigError::UnsupportedResource { resource: resource.to_owned() });
    }
    let amount = list.get(name);
    let one = Quantity("1".to_owned());
    let divisor =
        selector.divisor.as_ref().filter(|d| quantity::milli(Some(d)) != 0).unwrap_or(&one);
    let value = if name == "cpu" {
        ceil_div(quantity::milli(amount), quantity::milli(Some(divisor)))
    } else {
        ceil_div(quantity::value(amount), quantity::value(Some(divisor)))
    };
    Ok(value.to_string())
}

fn ceil_div(value: i64, divisor: i64) -> i64 {
    let divisor = divisor.max(1);
    let quotient = value / divisor;
    if value % divisor > 0 {
        quotient + 1
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_as_go_quotes_them() {
        let cases = [
            ("plain", "\"plain\""),
            ("say \"hi\" \\ now", "\"say \\\"hi\\\" \\\\ now\""),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", "\"\\a\\b\\f\\n\\r\\t\\v\""),
            ("\u{1}\u{7f}", "\"\\x01\\x7f\""),
            ("é ü 日本 🚀", "\"é ü 日本 🚀\""),
            ("\u{85}\u{a0}\u{200b}\u{feff}", "\"\\u0085\\u00a0\\u200b\\ufeff\""),
            ("\u{e0001}\u{10ffff}", "\"\\U000e0001\\U0010ffff\""),
        ];
        for (value, quoted) in cases {
            assert_eq!(go_quote(value), quoted, "{value:?}");
        }
    }
}
