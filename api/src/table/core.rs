//! Printers for core (`v1`) kinds other than Pod.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{integer, text, Column, AGE, CONTAINERS, IMAGES, NAME};
use crate::table::format::{
    access_modes, age, at, container_cells, format_labels, int_at, is_deleting, len_at, list_at,
    map_at, name, opt_int_at, opt_str_at, or, since, str_at, time_at,
};
use crate::table::quantity::canonical_at;
use crate::table::{pod, Printer};

/// Returns the printer of a core kind, if it has one.
pub(crate) fn printer(kind: &str) -> Option<Printer> {
    let printer = match kind {
        "Pod" => Printer::new(pod::columns, pod::cells),
        "Node" => Printer::new(node_columns, node_cells),
        "Namespace" => Printer::new(namespace_columns, namespace_cells),
        "Service" => Printer::new(service_columns, service_cells),
        "Endpoints" => Printer::new(endpoints_columns, endpoints_cells),
        "ConfigMap" => Printer::new(config_map_columns, config_map_cells),
        "Secret" => Printer::new(secret_columns, secret_cells),
        "ServiceAccount" => Printer::new(service_account_columns, service_account_cells),
        "Event" => Printer::new(event_columns, event_cells),
        "PersistentVolume" => Printer::new(pv_columns, pv_cells),
        "PersistentVolumeClaim" => Printer::new(pvc_columns, pvc_cells),
        "ResourceQuota" => Printer::new(quota_columns, quota_cells),
        "PodTemplate" => Printer::new(pod_template_columns, pod_template_cells),
        "ReplicationController" => Printer::new(rc_columns, rc_cells),
        "ComponentStatus" => Printer::new(component_status_columns, component_status_cells),
        _ => return None,
    };
    Some(printer)
}

fn node_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Status", "The status of the node"),
        text("Roles", "The roles of the node"),
        AGE,
        text("Version", "Kubelet Version reported by the node."),
        text("Internal-IP", "List of addresses reachable to the node.").wide(),
        text("External-IP", "List of addresses reachable to the node.").wide(),
        text("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
        text("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
        text("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
    ]
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // The last Ready condition wins, as with the Go printer's condition map.
    let ready = list_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let roles = node_roles(node);
    let info =
        |field: &str| or(str_at(node, &["status", "nodeInfo", field]), "<unknown>").to_string();
    vec![
        name(node).into(),
        status.join(",").into(),
        (if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }).into(),
        age(node, now).into(),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Returns the sorted, distinct roles from `node-role.kubernetes.io/<role>` and
/// `kubernetes.io/role=<role>` labels.
pub(crate) fn node_roles(node: &Value) -> Vec<String> {
    let mut roles: Vec<String> = map_at(node, &["metadata", "labels"])
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then(|| role.to_string())
            } else if key == "kubernetes.io/role" {
                value.as_str().filter(|role| !role.is_empty()).map(str::to_string)
            } else {
                None
            }
        })
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    list_at(node, &["status", "addresses"])
        .iter()
        .find(|address| str_at(address, &["type"]) == kind)
        .map_or("<none>", |address| str_at(address, &["address"]))
}

fn namespace_columns() -> Vec<Column> {
    vec![NAME, text("Status", "The status of the namespace"), AGE]
}

fn namespace_cells(namespace: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(namespace).into(),
        or(str_at(namespace, &["status", "phase"]), "Active").into(),
        age(namespace, now).into(),
    ]
}

fn service_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Type", "type determines how the Service is exposed."),
        text("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly."),
        text("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
        text("Port(s)", "The list of ports that are exposed by this service."),
        AGE,
        text("Selector", "Route service traffic to pods with label keys and values matching this selector.").wide(),
    ]
}

fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let kind = or(str_at(service, &["spec", "type"]), "ClusterIP");
    let cluster_ip = list_at(service, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_str_at(service, &["spec", "clusterIP"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let ports = service_ports(list_at(service, &["spec", "ports"]));
    vec![
        name(service).into(),
        kind.into(),
        cluster_ip.into(),
        service_external_ip(service, kind).into(),
        or(&ports, "<none>").into(),
        age(service, now).into(),
        format_labels(map_at(service, &["spec", "selector"])).into(),
    ]
}

/// Returns `getServiceExternalIP` as printed server-side (wide, so never truncated).
pub(crate) fn service_external_ip(service: &Value, kind: &str) -> String {
    let external: Vec<&str> =
        list_at(service, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match kind {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer_ingress(service);
            all.extend(external.iter().map(|ip| ip.to_string()));
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// Returns the sorted, distinct IPs (or hostnames) of `status.loadBalancer.ingress`.
pub(crate) fn load_balancer_ingress(obj: &Value) -> Vec<String> {
    let mut found: Vec<String> = list_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|ingress| or(str_at(ingress, &["ip"]), str_at(ingress, &["hostname"])).to_string())
        .filter(|address| !address.is_empty())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Returns `makePortString`: `port[:nodePort]/protocol` joined by commas.
pub(crate) fn service_ports(ports: &[Value]) -> String {
    let pieces: Vec<String> = ports
        .iter()
        .map(|port| {
            let protocol = or(str_at(port, &["protocol"]), "TCP");
            let number = int_at(port, &["port"]);
            match int_at(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

fn endpoints_columns() -> Vec<Column> {
    vec![NAME, text("Endpoints", "The set of all endpoints is the union of all subsets."), AGE]
}

fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(endpoints).into(), format_endpoints(endpoints).into(), age(endpoints, now).into()]
}

/// Returns `formatEndpoints`: up to three `ip:port` pairs then `+ N more...`.
pub(crate) fn format_endpoints(endpoints: &Value) -> String {
    let subsets = list_at(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for subset in subsets {
        let addresses = list_at(subset, &["addresses"]);
        let ports = list_at(subset, &["ports"]);
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|port| Some(int_at(port, &["port"]))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = str_at(address, &["ip"]);
                list.push(match port {
                    None => ip.to_string(),
                    Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
                    Some(port) => format!("{ip}:{port}"),
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn config_map_columns() -> Vec<Column> {
    vec![NAME, text("Data", "Data contains the configuration data."), AGE]
}

fn config_map_cells(config_map: &Value, now: Timestamp) -> Vec<Value> {
    let entries = len_at(config_map, &["data"]) + len_at(config_map, &["binaryData"]);
    vec![name(config_map).into(), entries.into(), age(config_map, now).into()]
}

fn secret_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Type", "Used to facilitate programmatic handling of secret data."),
        text("Data", "Data contains the secret data."),
        AGE,
    ]
}

fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret).into(),
        or(str_at(secret, &["type"]), "Opaque").into(),
        len_at(secret, &["data"]).into(),
        age(secret, now).into(),
    ]
}

fn service_account_columns() -> Vec<Column> {
    vec![NAME, text("Secrets", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE]
}

fn service_account_cells(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(account).into(), len_at(account, &["secrets"]).into(), age(account, now).into()]
}

fn event_columns() -> Vec<Column> {
    vec![
        text("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
        text("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
        text("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        text("Object", "The object that this event is about."),
        text("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.").wide(),
        text("Source", "The component reporting this event. Should be a short machine understandable string.").wide(),
        text("Message", "A human-readable description of the status of this operation."),
        text("First Seen", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)").wide(),
        text("Count", "The number of times this event has occurred.").wide(),
        Column { priority: 1, ..NAME },
    ]
}

/// Prints a `v1` Event or an `events.k8s.io/v1` Event (whose fields carry other names).
fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let field = |core: &str, events: &str| at(event, &[core]).or_else(|| at(event, &[events]));
    let text_of = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_string();
    let time_of =
        |value: Option<&Value>| value.and_then(Value::as_str).and_then(|t| t.parse().ok());

    let first_time = time_of(field("firstTimestamp", "deprecatedFirstTimestamp"));
    let first = match first_time {
        Some(time) => since(Some(time), now),
        None => since(time_at(event, &["eventTime"]), now),
    };
    let mut last = match time_of(field("lastTimestamp", "deprecatedLastTimestamp")) {
        Some(time) => since(Some(time), now),
        None => first.clone(),
    };
    let mut count = field("count", "deprecatedCount").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = at(event, &["series"]) {
        last = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let involved = field("involvedObject", "regarding").unwrap_or(&Value::Null);
    let kind = str_at(involved, &["kind"]).to_lowercase();
    let target = match str_at(involved, &["name"]) {
        "" => kind,
        object => format!("{kind}/{object}"),
    };
    let source = field("source", "deprecatedSource").unwrap_or(&Value::Null);
    let reporter = text_of(field("reportingComponent", "reportingController"));
    let component = or(str_at(source, &["component"]), &reporter);
    let instance = or(str_at(source, &["host"]), str_at(event, &["reportingInstance"]));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last.into(),
        str_at(event, &["type"]).into(),
        str_at(event, &["reason"]).into(),
        target.into(),
        str_at(involved, &["fieldPath"]).into(),
        source.into(),
        text_of(field("message", "note")).trim().into(),
        first.into(),
        count.into(),
        name(event).into(),
    ]
}

fn pv_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Capacity", "capacity is the description of the persistent volume's resources and capacity."),
        text("Access Modes", "accessModes contains all ways the volume can be mounted."),
        text("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        text("Status", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
        text("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        text("StorageClass", "StorageClass of the pv"),
        text("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
        text("Reason", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        text("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.").wide(),
    ]
}

fn pv_cells(volume: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(volume, &["spec", "claimRef"]) {
        Some(claim) => format!("{}/{}", str_at(claim, &["namespace"]), str_at(claim, &["name"])),
        None => String::new(),
    };
    let phase =
        if is_deleting(volume) { "Terminating" } else { str_at(volume, &["status", "phase"]) };
    let class = opt_str_at(volume, &["metadata", "annotations", BETA_STORAGE_CLASS])
        .unwrap_or_else(|| str_at(volume, &["spec", "storageClassName"]));
    vec![
        name(volume).into(),
        canonical_at(volume, &["spec", "capacity", "storage"]).into(),
        access_modes(list_at(volume, &["spec", "accessModes"])).into(),
        or(str_at(volume, &["spec", "persistentVolumeReclaimPolicy"]), "Retain").into(),
        phase.into(),
        claim.into(),
        class.into(),
        opt_str_at(volume, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>").into(),
        str_at(volume, &["status", "reason"]).into(),
        age(volume, now).into(),
        opt_str_at(volume, &["spec", "volumeMode"]).unwrap_or("Filesystem").into(),
    ]
}

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn pvc_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Status", "phase represents the current phase of PersistentVolumeClaim."),
        text(
            "Volume",
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
        ),
        text("Capacity", "capacity represents the actual resources of the underlying volume."),
        text(
            "Access Modes",
            "accessModes contains the actual access modes the volume backing the PVC has.",
        ),
        text("StorageClass", "StorageClass of the pvc"),
        text("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
        AGE,
        text("VolumeMode", "volumeMode defines what type of volume is required by the claim.")
            .wide(),
    ]
}

fn pvc_cells(claim: &Value, now: Timestamp) -> Vec<Value> {
    let phase =
        if is_deleting(claim) { "Terminating" } else { str_at(claim, &["status", "phase"]) };
    let volume = str_at(claim, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            canonical_at(claim, &["status", "capacity", "storage"]),
            access_modes(list_at(claim, &["status", "accessModes"])),
        )
    };
    let class = opt_str_at(claim, &["metadata", "annotations", BETA_STORAGE_CLASS])
        .unwrap_or_else(|| str_at(claim, &["spec", "storageClassName"]));
    vec![
        name(claim).into(),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        opt_str_at(claim, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>").into(),
        age(claim, now).into(),
        opt_str_at(claim, &["spec", "volumeMode"]).unwrap_or("Filesystem").into(),
    ]
}

fn quota_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
        text("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        AGE,
    ]
}

/// Prints `resource: used/hard` pairs sorted by resource name; `limits.*` go to LIMIT.
fn quota_cells(quota: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> =
        map_at(quota, &["status", "hard"]).into_iter().flat_map(|hard| hard.keys()).collect();
    resources.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for resource in resources {
        let used = canonical_at(quota, &["status", "used", resource]);
        let hard = canonical_at(quota, &["status", "hard", resource]);
        let entry = format!("{resource}: {used}/{hard}");
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    vec![
        name(quota).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, now).into(),
    ]
}

fn pod_template_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Containers", crate::table::columns::CONTAINERS_DESCRIPTION),
        text("Images", crate::table::columns::IMAGES_DESCRIPTION),
        text("Pod Labels", "The labels for the pod template."),
    ]
}

fn pod_template_cells(template: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) =
        container_cells(at(template, &["template", "spec"]).unwrap_or(&Value::Null));
    vec![
        name(template).into(),
        names.into(),
        images.into(),
        format_labels(map_at(template, &["template", "metadata", "labels"])).into(),
    ]
}

fn rc_columns() -> Vec<Column> {
    vec![
        NAME,
        integer("Desired", "Replicas is the number of desired replicas."),
        integer("Current", "Replicas is the most recently observed number of replicas."),
        integer("Ready", "The number of ready replicas for this replication controller."),
        AGE,
        CONTAINERS,
        IMAGES,
        text(
            "Selector",
            "Selector is a label query over pods that should match the Replicas count.",
        )
        .wide(),
    ]
}

fn rc_cells(controller: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(controller, &["spec", "template", "spec"]).unwrap_or(&Value::Null);
    let (names, images) = container_cells(spec);
    vec![
        name(controller).into(),
        opt_int_at(controller, &["spec", "replicas"]).unwrap_or(1).into(),
        int_at(controller, &["status", "replicas"]).into(),
        int_at(controller, &["status", "readyReplicas"]).into(),
        age(controller, now).into(),
        names.into(),
        images.into(),
        format_labels(map_at(controller, &["spec", "selector"])).into(),
    ]
}

fn component_status_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Status", "Status of the component conditions"),
        text("Message", "Message of the component conditions"),
        text("Error", "Error of the component conditions"),
    ]
}

fn component_status_cells(component: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy =
        list_at(component, &["conditions"]).iter().find(|c| str_at(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if str_at(c, &["status"]) == "True" { "Healthy" } else { "Unhealthy" },
            str_at(c, &["message"]),
            str_at(c, &["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![name(component).into(), status.into(), message.into(), error.into()]
}
