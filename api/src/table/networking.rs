//! Printers for `networking.k8s.io` and `discovery.k8s.io` kinds: Ingress, IngressClass,
//! NetworkPolicy, EndpointSlice, ServiceCIDR and IPAddress.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{text, Column, AGE, NAME};
use crate::table::core::load_balancer_ingress;
use crate::table::format::{
    age, at, format_label_selector, list_at, list_with_more, name, opt_int_at, opt_str_at, str_at,
};
use crate::table::Printer;

/// Returns the printer of a networking or discovery kind, if it has one.
pub(crate) fn printer(kind: &str) -> Option<Printer> {
    let printer = match kind {
        "Ingress" => Printer::new(ingress_columns, ingress_cells),
        "IngressClass" => Printer::new(ingress_class_columns, ingress_class_cells),
        "NetworkPolicy" => Printer::new(network_policy_columns, network_policy_cells),
        "EndpointSlice" => Printer::new(endpoint_slice_columns, endpoint_slice_cells),
        "ServiceCIDR" => Printer::new(service_cidr_columns, service_cidr_cells),
        "IPAddress" => Printer::new(ip_address_columns, ip_address_cells),
        _ => return None,
    };
    Some(printer)
}

fn ingress_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Class", "The name of the IngressClass resource that should be used for additional configuration"),
        text("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        text("Address", "Address is a list containing ingress points for the load-balancer"),
        text("Ports", "Ports of TLS configurations that open"),
        AGE,
    ]
}

fn ingress_cells(ingress: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if list_at(ingress, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        name(ingress).into(),
        opt_str_at(ingress, &["spec", "ingressClassName"]).unwrap_or("<none>").into(),
        ingress_hosts(list_at(ingress, &["spec", "rules"])).into(),
        load_balancer_ingress(ingress).join(",").into(),
        ports.into(),
        age(ingress, now).into(),
    ]
}

/// Returns `formatHosts`: up to three rule hosts, `*` when no rule names a host.
pub(crate) fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

fn ingress_class_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Controller", "Controller that is responsible for handling this class"),
        text("Parameters", "A reference to a resource with additional parameters"),
        AGE,
    ]
}

fn ingress_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match at(class, &["spec", "parameters"]) {
        Some(parameters) => {
            let mut text = str_at(parameters, &["kind"]).to_string();
            if let Some(group) = opt_str_at(parameters, &["apiGroup"]) {
                text = format!("{text}.{group}");
            }
            format!("{text}/{}", str_at(parameters, &["name"]))
        }
        None => "<none>".to_string(),
    };
    vec![
        name(class).into(),
        str_at(class, &["spec", "controller"]).into(),
        parameters.into(),
        age(class, now).into(),
    ]
}

fn network_policy_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Pod-Selector", "Selects the pods to which this NetworkPolicy object applies."),
        AGE,
    ]
}

fn network_policy_cells(policy: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(policy).into(),
        format_label_selector(at(policy, &["spec", "podSelector"])).into(),
        age(policy, now).into(),
    ]
}

fn endpoint_slice_columns() -> Vec<Column> {
    vec![
        NAME,
        text(
            "AddressType",
            "addressType specifies the type of address carried by this EndpointSlice.",
        ),
        text(
            "Ports",
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
        ),
        text("Endpoints", "endpoints is a list of unique endpoints in this slice."),
        AGE,
    ]
}

fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list_at(slice, &["ports"])
        .iter()
        .map(|port| match opt_int_at(port, &["port"]) {
            Some(number) => number.to_string(),
            None => opt_str_at(port, &["name"]).unwrap_or("*").to_string(),
        })
        .collect();
    let addresses: Vec<String> = list_at(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| list_at(endpoint, &["addresses"]))
        .map(|address| address.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        name(slice).into(),
        str_at(slice, &["addressType"]).into(),
        list_with_more(&ports, 3).into(),
        list_with_more(&addresses, 3).into(),
        age(slice, now).into(),
    ]
}

fn service_cidr_columns() -> Vec<Column> {
    vec![NAME, text("CIDRs", "CIDRs defines the IP blocks in CIDR notation from which to assign service cluster IPs."), AGE]
}

fn service_cidr_cells(cidr: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> =
        list_at(cidr, &["spec", "cidrs"]).iter().filter_map(Value::as_str).collect();
    vec![name(cidr).into(), cidrs.join(",").into(), age(cidr, now).into()]
}

fn ip_address_columns() -> Vec<Column> {
    vec![
        NAME,
        text("ParentRef", "ParentRef references the resource that an IPAddress is attached to."),
    ]
}

/// Prints NAME and PARENTREF; the Go printer also appends an age cell that has no column,
/// which is left out here to keep one cell per column.
fn ip_address_cells(address: &Value, _now: Timestamp) -> Vec<Value> {
    let parent = match at(address, &["spec", "parentRef"]) {
        Some(parent) => {
            let resource = str_at(parent, &["resource"]);
            let mut text = match str_at(parent, &["group"]) {
                "" => resource.to_lowercase(),
                group => format!("{resource}.{group}").to_lowercase(),
            };
            if let Some(namespace) = opt_str_at(parent, &["namespace"]).filter(|ns| !ns.is_empty())
            {
                text = format!("{text}/{namespace}");
            }
            format!("{text}/{}", str_at(parent, &["name"]))
        }
        None => "<none>".to_string(),
    };
    vec![name(address).into(), parent.into()]
}
