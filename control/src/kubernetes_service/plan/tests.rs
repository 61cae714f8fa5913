//! Table tests for the endpoints of the `kubernetes` Service: which addresses are published,
//! the shapes of the Endpoints and the slices, and that only changes are written.

use std::net::SocketAddr;

use serde_json::json;

use super::*;

fn servers(addresses: &[&str]) -> ApiServers {
    addresses.iter().map(|a| a.parse::<SocketAddr>().unwrap()).collect()
}

/// The Endpoints' subsets as `ip,ip:port` strings.
fn subsets_of(endpoints: &Endpoints) -> Vec<String> {
    endpoints
        .subsets
        .iter()
        .flatten()
        .map(|subset| {
            let ips: Vec<String> =
                subset.addresses.iter().flatten().map(|a| a.ip.clone()).collect();
            let ports: Vec<String> = subset
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.name.as_deref().unwrap_or(""),
                        p.port,
                        p.protocol.as_deref().unwrap_or("")
                    )
                })
                .collect();
            format!("{} {}", ips.join(","), ports.join(","))
        })
        .collect()
}

/// A slice as `name: ip,ip port`.
fn summary(slice: &EndpointSlice) -> String {
    let ips: Vec<String> = slice.endpoints.iter().flat_map(|e| e.addresses.clone()).collect();
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port.unwrap_or(0)))
        .collect();
    format!(
        "{}: {} {}",
        slice.metadata.name.as_deref().unwrap_or(""),
        ips.join(","),
        ports.join(",")
    )
}

fn summaries(slices: &[EndpointSlice]) -> Vec<String> {
    slices.iter().map(summary).collect()
}

#[test]
fn only_ipv4_addresses_that_are_specified_are_published_grouped_by_port() {
    let published = published(&servers(&[
        "10.0.0.2:6443",
        "10.0.0.1:6443",
        "0.0.0.0:6443",
        "[::1]:6443",
        "127.0.0.1:6444",
        "127.0.0.1:0",
    ]));
    let summary: Vec<(u16, Vec<String>)> = published
        .iter()
        .map(|(port, ips)| (*port, ips.iter().map(|ip| ip.to_string()).collect()))
        .collect();
    assert_eq!(
        summary,
        [(6443, vec!["10.0.0.1".to_string(), "10.0.0.2".into()]), (6444, vec!["127.0.0.1".into()])]
    );
}

#[test]
fn masters_sharing_a_port_make_one_subset_and_one_slice() {
    let plan = plan(&servers(&["10.0.0.3:6443", "10.0.0.1:6443", "10.0.0.2:6443"]), None, &[]);
    let endpoints = plan.endpoints.as_ref().unwrap();
    assert_eq!(subsets_of(endpoints), ["10.0.0.1,10.0.0.2,10.0.0.3 https:6443/TCP"]);
    assert_eq!(endpoints.metadata.name.as_deref(), Some("kubernetes"));
    assert_eq!(endpoints.metadata.namespace.as_deref(), Some("default"));
    let labels = endpoints.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get(SKIP_MIRROR_LABEL).map(String::as_str), Some("true"));

    assert_eq!(summaries(&plan.create), ["kubernetes: 10.0.0.1,10.0.0.2,10.0.0.3 https:6443"]);
    let slice = &plan.create[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.metadata.namespace.as_deref(), Some("default"));
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels, BTreeMap::from([(SERVICE_NAME_LABEL.into(), "kubernetes".into())]));
    assert!(slice.endpoints.iter().all(|e| e.conditions.as_ref().unwrap().ready == Some(true)));
    assert_eq!(slice.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
    assert!(plan.update.is_empty() && plan.delete.is_empty());
}

#[test]
fn masters_on_different_ports_get_a_subset_and_a_slice_each() {
    let local = servers(&["127.0.0.1:6445", "127.0.0.1:6443", "127.0.0.1:6444"]);
    let plan = plan(&local, None, &[]);
    assert_eq!(
        subsets_of(plan.endpoints.as_ref().unwrap()),
        ["127.0.0.1 https:6443/TCP", "127.0.0.1 https:6444/TCP", "127.0.0.1 https:6445/TCP"]
    );
    assert_eq!(
        summaries(&plan.create),
        [
            "kubernetes: 127.0.0.1 https:6443",
            "kubernetes-6444: 127.0.0.1 https:6444",
            "kubernetes-6445: 127.0.0.1 https:6445",
        ]
    );
}

/// `object` as the API server would return it: with a resourceVersion, a uid and fields it
/// adds itself.
fn stored<T: serde::Serialize + serde::de::DeserializeOwned>(object: &T, version: &str) -> T {
    let mut value = serde_json::to_value(object).unwrap();
    value["metadata"]["resourceVersion"] = json!(version);
    value["metadata"]["uid"] = json!(format!("uid-{version}"));
    value["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    if let Some(endpoints) = value.get_mut("endpoints").and_then(|e| e.as_array_mut()) {
        for endpoint in endpoints {
            endpoint["conditions"]["serving"] = json!(true);
            endpoint["conditions"]["terminating"] = json!(false);
        }
    }
    serde_json::from_value(value).unwrap()
}

/// What the API would hold once `plan` (made from nothing) is written.
fn written(plan: &Plan) -> (Endpoints, Vec<EndpointSlice>) {
    let endpoints = stored(plan.endpoints.as_ref().unwrap(), "10");
    let slices = plan.create.iter().enumerate().map(|(i, s)| stored(s, &format!("2{i}"))).collect();
    (endpoints, slices)
}

#[test]
fn nothing_is_written_once_the_endpoints_are_right() {
    for addresses in [
        vec!["10.0.0.1:6443", "10.0.0.2:6443"],
        vec!["127.0.0.1:6443", "127.0.0.1:6444"],
        vec!["0.0.0.0:6443"],
    ] {
        let servers = servers(&addresses);
        let (endpoints, slices) = written(&plan(&servers, None, &[]));
        let again = plan(&servers, Some(&endpoints), &slices);
        assert!(again.is_empty(), "{addresses:?}: {again:?}");
    }
}

#[test]
fn a_master_leaving_updates_in_place_and_deletes_what_is_left_over() {
    let before = servers(&["127.0.0.1:6443", "127.0.0.1:6444", "127.0.0.1:6445"]);
    let (endpoints, slices) = written(&plan(&before, None, &[]));
    let after = servers(&["127.0.0.1:6444", "127.0.0.1:6445"]);
    let plan = plan(&after, Some(&endpoints), &slices);

    let replaced = plan.endpoints.as_ref().unwrap();
    assert_eq!(replaced.metadata.resource_version.as_deref(), Some("10"), "conditional");
    assert_eq!(subsets_of(replaced), ["127.0.0.1 https:6444/TCP", "127.0.0.1 https:6445/TCP"]);
    // `kubernetes` now holds the lowest port; `kubernetes-6445` is unchanged.
    assert_eq!(summaries(&plan.update), ["kubernetes: 127.0.0.1 https:6444"]);
    assert_eq!(plan.update[0].metadata.resource_version.as_deref(), Some("20"), "conditional");
    assert_eq!(
        plan.delete,
        [SliceRef { name: "kubernetes-6444".into(), uid: Some("uid-21".into()) }]
    );
    assert!(plan.create.is_empty());

    // A master joining adds its address where its port is.
    let joined = servers(&["127.0.0.1:6443", "127.0.0.1:6444", "127.0.0.1:6445", "10.0.0.9:6444"]);
    let plan = super::plan(&joined, Some(&endpoints), &slices);
    assert_eq!(summaries(&plan.update), ["kubernetes-6444: 10.0.0.9,127.0.0.1 https:6444"]);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
}

#[test]
fn slices_someone_else_changed_are_put_back() {
    let servers = servers(&["10.0.0.1:6443"]);
    let (endpoints, slices) = written(&plan(&servers, None, &[]));

    // Another address type: deleted and made again.
    let mut ipv6 = slices[0].clone();
    ipv6.address_type = "IPv6".into();
    let plan_v6 = plan(&servers, Some(&endpoints), &[ipv6]);
    assert_eq!(
        plan_v6.delete,
        [SliceRef { name: "kubernetes".into(), uid: Some("uid-20".into()) }]
    );
    assert_eq!(summaries(&plan_v6.create), ["kubernetes: 10.0.0.1 https:6443"]);

    // Labels edited, an endpoint marked not ready, a stray slice labelled with the Service.
    let mut edited = slices[0].clone();
    edited.metadata.labels.as_mut().unwrap().insert("extra".into(), "x".into());
    let mut not_ready = slices[0].clone();
    not_ready.endpoints[0].conditions.as_mut().unwrap().ready = Some(false);
    let mut stray = stored(&slices[0], "30");
    stray.metadata.name = Some("kubernetes-abcde".into());
    for existing in [edited, not_ready] {
        let plan = plan(&servers, Some(&endpoints), &[existing, stray.clone()]);
        assert_eq!(summaries(&plan.update), ["kubernetes: 10.0.0.1 https:6443"]);
        let labels = plan.update[0].metadata.labels.clone().unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(
            plan.delete,
            [SliceRef { name: "kubernetes-abcde".into(), uid: Some("uid-30".into()) }]
        );
        assert!(plan.endpoints.is_none());
    }

    // Endpoints whose subsets were edited are written back, conditionally.
    let mut edited = endpoints.clone();
    edited.subsets = None;
    let plan = plan(&servers, Some(&edited), &slices);
    assert_eq!(subsets_of(plan.endpoints.as_ref().unwrap()), ["10.0.0.1 https:6443/TCP"]);
    assert_eq!(plan.endpoints.as_ref().unwrap().metadata.resource_version.as_deref(), Some("10"));
}

#[test]
fn with_no_master_to_publish_the_endpoints_are_empty() {
    let plan = plan(&servers(&["0.0.0.0:6443", "[::]:6443"]), None, &[]);
    assert_eq!(plan.endpoints.as_ref().unwrap().subsets, None);
    assert_eq!(summaries(&plan.create), ["kubernetes:  "]);
    assert_eq!(plan.create[0].ports, None);
}
