//! Table tests of the resolver against one small cluster, and of incremental zone updates.

use std::str::FromStr;

use hickory_proto::op::Query;
use hickory_proto::rr::{Name, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::*;
use crate::dns::config::ZoneConfig;
use crate::dns::names::reverse_name;

fn service(namespace: &str, name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": { "namespace": namespace, "name": name },
        "spec": spec,
    }))
    .unwrap()
}

fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    endpoints: Value,
    ports: Value,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .unwrap()
}

/// The cluster every table case runs against.
fn cluster() -> Zone {
    let mut zone = Zone::new(&ZoneConfig::default()).unwrap();
    zone.upsert_service(&service(
        "default",
        "web",
        json!({
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [
                { "name": "http", "protocol": "TCP", "port": 80 },
                { "name": "dns", "protocol": "UDP", "port": 53 },
                { "port": 8080 },
            ],
        }),
    ));
    zone.upsert_service(&service(
        "default",
        "dual",
        json!({ "type": "NodePort", "clusterIPs": ["10.96.0.11", "fd00::11"] }),
    ));
    zone.upsert_service(&service(
        "other",
        "web",
        json!({ "type": "LoadBalancer", "clusterIP": "10.96.1.1" }),
    ));
    zone.upsert_service(&service(
        "default",
        "db",
        json!({ "clusterIP": "None", "ports": [{ "name": "pg", "port": 5432 }] }),
    ));
    zone.upsert_slice(&slice(
        "default",
        "db-a",
        "db",
        json!([
            { "addresses": ["10.1.0.1"], "hostname": "db-0", "conditions": { "ready": true } },
            { "addresses": ["10.1.0.2"], "hostname": "db-1" },
            { "addresses": ["10.1.0.3"], "hostname": "db-2", "conditions": { "ready": false } },
        ]),
        json!([{ "name": "pg", "protocol": "TCP", "port": 5432 }]),
    ));
    zone.upsert_slice(&slice(
        "default",
        "db-b",
        "db",
        json!([{ "addresses": ["10.1.0.4"], "conditions": { "ready": true } }]),
        json!([{ "name": "pg", "protocol": "TCP", "port": 5432 }]),
    ));
    zone.upsert_service(&service(
        "default",
        "starting",
        json!({ "clusterIP": "None", "publishNotReadyAddresses": true }),
    ));
    zone.upsert_slice(&slice(
        "default",
        "starting-a",
        "starting",
        json!([{ "addresses": ["10.2.0.1"], "hostname": "s-0", "conditions": { "ready": false } }]),
        json!([]),
    ));
    zone.upsert_service(&service("default", "empty", json!({ "clusterIP": "None" })));
    zone.upsert_service(&service(
        "default",
        "ext",
        json!({ "type": "ExternalName", "externalName": "db.example.com" }),
    ));
    zone.upsert_service(&service(
        "default",
        "inner",
        json!({ "type": "ExternalName", "externalName": "web.default.svc.cluster.local." }),
    ));
    zone
}

fn ask(zone: &Zone, name: &str, query_type: RecordType) -> Resolution {
    resolve(zone, &Query::query(Name::from_str(name).unwrap(), query_type))
}

fn answer(zone: &Zone, name: &str, query_type: RecordType) -> Answer {
    match ask(zone, name, query_type) {
        Resolution::Answer(answer) => answer,
        Resolution::Forward => panic!("{name} {query_type} was forwarded"),
    }
}

fn render(records: &[Record]) -> Vec<String> {
    let mut rendered: Vec<String> = records
        .iter()
        .map(|record| format!("{} {} {}", record.name, record.record_type(), record.data))
        .collect();
    rendered.sort();
    rendered
}

/// The outcome a user sees: the code, the answers, and whether the SOA came along.
#[derive(Debug, PartialEq)]
struct Seen {
    code: ResponseCode,
    answers: Vec<String>,
    soa: bool,
}

fn seen(answer: &Answer) -> Seen {
    Seen {
        code: answer.response_code,
        answers: render(&answer.answers),
        soa: answer.authorities.iter().any(|record| record.record_type() == RecordType::SOA),
    }
}

fn ok(answers: &[&str]) -> Seen {
    let mut answers: Vec<String> = answers.iter().map(|answer| answer.to_string()).collect();
    answers.sort();
    Seen { code: ResponseCode::NoError, answers, soa: false }
}

fn nodata() -> Seen {
    Seen { code: ResponseCode::NoError, answers: Vec::new(), soa: true }
}

fn nxdomain() -> Seen {
    Seen { code: ResponseCode::NXDomain, answers: Vec::new(), soa: true }
}

#[test]
fn names_in_the_cluster_domain_resolve_as_the_specification_says() {
    use RecordType::*;
    let zone = cluster();
    let cases: Vec<(&str, &str, RecordType, Seen)> = vec![
        (
            "cluster ip",
            "web.default.svc.cluster.local.",
            A,
            ok(&["web.default.svc.cluster.local. A 10.96.0.10"]),
        ),
        (
            "names are case-insensitive",
            "WEB.Default.SVC.Cluster.LOCAL.",
            A,
            ok(&["web.default.svc.cluster.local. A 10.96.0.10"]),
        ),
        ("no ipv6 cluster ip", "web.default.svc.cluster.local.", AAAA, nodata()),
        ("no mx", "web.default.svc.cluster.local.", MX, nodata()),
        (
            "same name in another namespace",
            "web.other.svc.cluster.local.",
            A,
            ok(&["web.other.svc.cluster.local. A 10.96.1.1"]),
        ),
        (
            "dual stack a",
            "dual.default.svc.cluster.local.",
            A,
            ok(&["dual.default.svc.cluster.local. A 10.96.0.11"]),
        ),
        (
            "dual stack aaaa",
            "dual.default.svc.cluster.local.",
            AAAA,
            ok(&["dual.default.svc.cluster.local. AAAA fd00::11"]),
        ),
        (
            "headless: ready endpoints of both slices, not the unready one",
            "db.default.svc.cluster.local.",
            A,
            ok(&[
                "db.default.svc.cluster.local. A 10.1.0.1",
                "db.default.svc.cluster.local. A 10.1.0.2",
                "db.default.svc.cluster.local. A 10.1.0.4",
            ]),
        ),
        (
            "statefulset pod by hostname",
            "db-0.db.default.svc.cluster.local.",
            A,
            ok(&["db-0.db.default.svc.cluster.local. A 10.1.0.1"]),
        ),
        (
            "ready unset counts as ready",
            "db-1.db.default.svc.cluster.local.",
            A,
            ok(&["db-1.db.default.svc.cluster.local. A 10.1.0.2"]),
        ),
        ("an unready endpoint has no name", "db-2.db.default.svc.cluster.local.", A, nxdomain()),
        (
            "an endpoint without hostname is named by its dashed address",
            "10-1-0-4.db.default.svc.cluster.local.",
            A,
            ok(&["10-1-0-4.db.default.svc.cluster.local. A 10.1.0.4"]),
        ),
        ("cluster ip services have no endpoint names", "db-0.web.default.svc.cluster.local.", A, nxdomain()),
        (
            "publishNotReadyAddresses publishes unready endpoints",
            "starting.default.svc.cluster.local.",
            A,
            ok(&["starting.default.svc.cluster.local. A 10.2.0.1"]),
        ),
        (
            "publishNotReadyAddresses publishes unready hostnames",
            "s-0.starting.default.svc.cluster.local.",
            A,
            ok(&["s-0.starting.default.svc.cluster.local. A 10.2.0.1"]),
        ),
        ("headless without endpoints", "empty.default.svc.cluster.local.", A, nxdomain()),
        (
            "srv of a cluster ip service",
            "_http._tcp.web.default.svc.cluster.local.",
            SRV,
            ok(&["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."]),
        ),
        (
            "srv of a udp port",
            "_dns._udp.web.default.svc.cluster.local.",
            SRV,
            ok(&["_dns._udp.web.default.svc.cluster.local. SRV 0 100 53 web.default.svc.cluster.local."]),
        ),
        ("srv with the wrong protocol", "_dns._tcp.web.default.svc.cluster.local.", SRV, nxdomain()),
        ("srv of an unknown port", "_nope._tcp.web.default.svc.cluster.local.", SRV, nxdomain()),
        ("an srv name asked for a", "_http._tcp.web.default.svc.cluster.local.", A, nodata()),
        ("the protocol level exists", "_tcp.web.default.svc.cluster.local.", A, nodata()),
        (
            "srv of a headless service: one per ready endpoint",
            "_pg._tcp.db.default.svc.cluster.local.",
            SRV,
            ok(&[
                "_pg._tcp.db.default.svc.cluster.local. SRV 0 100 5432 db-0.db.default.svc.cluster.local.",
                "_pg._tcp.db.default.svc.cluster.local. SRV 0 100 5432 db-1.db.default.svc.cluster.local.",
                "_pg._tcp.db.default.svc.cluster.local. SRV 0 100 5432 10-1-0-4.db.default.svc.cluster.local.",
            ]),
        ),
        (
            "externalname is a cname",
            "ext.default.svc.cluster.local.",
            A,
            ok(&["ext.default.svc.cluster.local. CNAME db.example.com."]),
        ),
        (
            "a cname inside the zone is followed",
            "inner.default.svc.cluster.local.",
            A,
            ok(&[
                "inner.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. A 10.96.0.10",
            ]),
        ),
        (
            "pod name from its dashed address",
            "10-244-1-7.anything.pod.cluster.local.",
            A,
            ok(&["10-244-1-7.anything.pod.cluster.local. A 10.244.1.7"]),
        ),
        ("pod names have no ipv6", "10-244-1-7.default.pod.cluster.local.", AAAA, nodata()),
        ("not an address", "10-244-1-300.default.pod.cluster.local.", A, nxdomain()),
        ("unknown service", "missing.default.svc.cluster.local.", A, nxdomain()),
        ("unknown namespace", "nowhere.svc.cluster.local.", A, nxdomain()),
        ("a namespace with services exists", "default.svc.cluster.local.", A, nodata()),
        ("svc exists", "svc.cluster.local.", A, nodata()),
        ("unknown top-level name", "www.cluster.local.", A, nxdomain()),
        ("too deep", "a.b.db-0.db.default.svc.cluster.local.", A, nxdomain()),
        (
            "dns schema version",
            "dns-version.cluster.local.",
            TXT,
            ok(&["dns-version.cluster.local. TXT 1.0.1"]),
        ),
    ];
    for (description, name, query_type, expected) in cases {
        let answer = answer(&zone, name, query_type);
        assert_eq!(seen(&answer), expected, "{description}: {name} {query_type}");
        assert!(answer.authoritative, "{description}: answers in the zone are authoritative");
    }
}

#[test]
fn srv_answers_carry_their_targets_addresses() {
    let zone = cluster();
    let headless = answer(&zone, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        render(&headless.additionals),
        [
            "10-1-0-4.db.default.svc.cluster.local. A 10.1.0.4",
            "db-0.db.default.svc.cluster.local. A 10.1.0.1",
            "db-1.db.default.svc.cluster.local. A 10.1.0.2",
        ]
    );
    let cluster_ip = answer(&zone, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(render(&cluster_ip.additionals), ["web.default.svc.cluster.local. A 10.96.0.10"]);
}

#[test]
fn the_apex_has_an_soa_and_negative_answers_carry_it() {
    let zone = cluster();
    let apex = answer(&zone, "cluster.local.", RecordType::SOA);
    assert_eq!(apex.answers.len(), 1);
    assert_eq!(apex.answers[0].record_type(), RecordType::SOA);
    let missing = answer(&zone, "missing.default.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.authorities[0].name, Name::from_str("cluster.local.").unwrap());
    assert_eq!(missing.authorities[0].ttl, crate::dns::DEFAULT_TTL);
}

#[test]
fn an_externalname_leaves_its_target_to_the_server() {
    let zone = cluster();
    let asked_a = answer(&zone, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(asked_a.external_target, Some(Name::from_str("db.example.com.").unwrap()));
    let asked_cname = answer(&zone, "ext.default.svc.cluster.local.", RecordType::CNAME);
    assert_eq!(asked_cname.answers.len(), 1);
}

#[test]
fn reverse_lookups_name_cluster_ips_and_published_endpoints() {
    let zone = cluster();
    let ptr = |address: &str| {
        let name = reverse_name(address.parse().unwrap()).unwrap();
        match resolve(&zone, &Query::query(name, RecordType::PTR)) {
            Resolution::Answer(answer) => Some(render(&answer.answers)),
            Resolution::Forward => None,
        }
    };
    assert_eq!(
        ptr("10.96.0.10"),
        Some(vec!["10.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local.".to_owned()])
    );
    assert_eq!(
        ptr("fd00::11").map(|answers| answers.len()),
        Some(1),
        "an ipv6 cluster ip has a ptr"
    );
    assert_eq!(
        ptr("10.1.0.1"),
        Some(vec!["1.0.1.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local.".to_owned()])
    );
    assert_eq!(
        ptr("10.1.0.4"),
        Some(vec!["4.0.1.10.in-addr.arpa. PTR 10-1-0-4.db.default.svc.cluster.local.".to_owned()])
    );
    assert_eq!(ptr("10.1.0.3"), None, "an unready endpoint is forwarded");
    assert_eq!(ptr("8.8.8.8"), None, "an address outside the zone is forwarded");
}

#[test]
fn names_outside_the_cluster_domain_are_forwarded() {
    let zone = cluster();
    for (name, query_type) in [
        ("example.com.", RecordType::A),
        ("cluster.local.example.com.", RecordType::A),
        ("local.", RecordType::SOA),
        ("0.10.in-addr.arpa.", RecordType::PTR),
        ("10.0.96.10.in-addr.arpa.", RecordType::A),
    ] {
        assert_eq!(ask(&zone, name, query_type), Resolution::Forward, "{name} {query_type}");
    }
}

#[test]
fn the_ttl_and_domain_are_configurable() {
    let mut zone = Zone::new(&ZoneConfig { domain: "Corp.Internal".to_owned(), ttl: 30 }).unwrap();
    zone.upsert_service(&service("default", "web", json!({ "clusterIP": "10.96.0.10" })));
    let found = answer(&zone, "web.default.svc.corp.internal.", RecordType::A);
    assert_eq!(found.answers[0].ttl, 30);
    assert_eq!(ask(&zone, "web.default.svc.cluster.local.", RecordType::A), Resolution::Forward);
}

#[test]
fn a_removed_slice_takes_its_endpoints_away() {
    let mut zone = cluster();
    assert!(zone.remove_slice("default", "db-b"));
    assert_eq!(
        seen(&answer(&zone, "db.default.svc.cluster.local.", RecordType::A)),
        ok(&[
            "db.default.svc.cluster.local. A 10.1.0.1",
            "db.default.svc.cluster.local. A 10.1.0.2",
        ])
    );
    assert_eq!(
        seen(&answer(&zone, "10-1-0-4.db.default.svc.cluster.local.", RecordType::A)),
        nxdomain()
    );
    assert!(!zone.remove_slice("default", "db-b"), "a second removal finds nothing");
    assert!(zone.remove_slice("default", "db-a"));
    assert_eq!(zone.slice_count(), 1, "the other service's slice stays");
    assert_eq!(
        seen(&answer(&zone, "db.default.svc.cluster.local.", RecordType::A)),
        nxdomain(),
        "no endpoints left"
    );
}

#[test]
fn an_updated_slice_replaces_its_endpoints() {
    let mut zone = cluster();
    zone.upsert_slice(&slice(
        "default",
        "db-b",
        "db",
        json!([{ "addresses": ["10.1.0.9"], "hostname": "db-9" }]),
        json!([{ "name": "pg", "port": 6432 }]),
    ));
    assert_eq!(
        seen(&answer(&zone, "db-9.db.default.svc.cluster.local.", RecordType::A)),
        ok(&["db-9.db.default.svc.cluster.local. A 10.1.0.9"])
    );
    assert_eq!(
        seen(&answer(&zone, "10-1-0-4.db.default.svc.cluster.local.", RecordType::A)),
        nxdomain()
    );
    let srv = answer(&zone, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    assert!(render(&srv.answers).contains(
        &"_pg._tcp.db.default.svc.cluster.local. SRV 0 100 6432 db-9.db.default.svc.cluster.local."
            .to_owned()
    ));
    let old_ptr = reverse_name("10.1.0.4".parse().unwrap()).unwrap();
    assert_eq!(resolve(&zone, &Query::query(old_ptr, RecordType::PTR)), Resolution::Forward);
}

#[test]
fn a_relabelled_slice_moves_to_its_new_service() {
    let mut zone = cluster();
    zone.upsert_service(&service("default", "cache", json!({ "clusterIP": "None" })));
    zone.upsert_slice(&slice(
        "default",
        "db-b",
        "cache",
        json!([{ "addresses": ["10.1.0.4"] }]),
        json!([]),
    ));
    assert_eq!(
        seen(&answer(&zone, "cache.default.svc.cluster.local.", RecordType::A)),
        ok(&["cache.default.svc.cluster.local. A 10.1.0.4"])
    );
    assert_eq!(answer(&zone, "db.default.svc.cluster.local.", RecordType::A).answers.len(), 2);
}

#[test]
fn a_removed_service_and_its_slices_disappear() {
    let mut zone = cluster();
    assert!(zone.remove_service("default", "db"));
    for name in [
        "db.default.svc.cluster.local.",
        "db-0.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local.",
    ] {
        assert_eq!(seen(&answer(&zone, name, RecordType::A)), nxdomain(), "{name}");
    }
    let endpoint_ptr = reverse_name("10.1.0.1".parse().unwrap()).unwrap();
    assert_eq!(resolve(&zone, &Query::query(endpoint_ptr, RecordType::PTR)), Resolution::Forward);
    assert!(zone.remove_slice("default", "db-a"));
    assert!(zone.remove_slice("default", "db-b"));
    zone.upsert_service(&service("default", "db", json!({ "clusterIP": "None" })));
    assert_eq!(
        seen(&answer(&zone, "db.default.svc.cluster.local.", RecordType::A)),
        nxdomain(),
        "a recreated service does not see the removed slices"
    );

    assert!(zone.remove_service("default", "web"));
    assert!(!zone.remove_service("default", "web"));
    let cluster_ip_ptr = reverse_name("10.96.0.10".parse().unwrap()).unwrap();
    assert_eq!(resolve(&zone, &Query::query(cluster_ip_ptr, RecordType::PTR)), Resolution::Forward);
}

#[test]
fn a_slice_before_its_service_is_answered_once_the_service_arrives() {
    let mut zone = Zone::new(&ZoneConfig::default()).unwrap();
    zone.upsert_slice(&slice(
        "default",
        "late-a",
        "late",
        json!([{ "addresses": ["10.3.0.1"] }]),
        json!([]),
    ));
    assert_eq!(seen(&answer(&zone, "late.default.svc.cluster.local.", RecordType::A)), nxdomain());
    zone.upsert_service(&service("default", "late", json!({ "clusterIP": "None" })));
    assert_eq!(
        seen(&answer(&zone, "late.default.svc.cluster.local.", RecordType::A)),
        ok(&["late.default.svc.cluster.local. A 10.3.0.1"])
    );
}

#[test]
fn a_changed_cluster_ip_moves_the_reverse_name() {
    let mut zone = cluster();
    let serial = zone.serial();
    zone.upsert_service(&service("default", "web", json!({ "clusterIP": "10.96.0.99" })));
    assert_ne!(zone.serial(), serial, "every change moves the soa serial");
    let old = reverse_name("10.96.0.10".parse().unwrap()).unwrap();
    let new = reverse_name("10.96.0.99".parse().unwrap()).unwrap();
    assert_eq!(resolve(&zone, &Query::query(old, RecordType::PTR)), Resolution::Forward);
    assert!(matches!(resolve(&zone, &Query::query(new, RecordType::PTR)), Resolution::Answer(_)));
    zone.upsert_service(&service("default", "web", json!({ "clusterIP": "None" })));
    let became_headless = reverse_name("10.96.0.99".parse().unwrap()).unwrap();
    assert_eq!(
        resolve(&zone, &Query::query(became_headless, RecordType::PTR)),
        Resolution::Forward
    );
}

#[test]
fn a_namespace_exists_while_it_holds_a_service() {
    let mut zone = cluster();
    let namespace = "other.svc.cluster.local.";
    assert_eq!(seen(&answer(&zone, namespace, RecordType::A)), nodata());

    // --- a second service, named in capitals, is found in lowercase
    zone.upsert_service(&service("Other", "API", json!({ "clusterIP": "10.96.1.2" })));
    assert_eq!(
        seen(&answer(&zone, "api.other.svc.cluster.local.", RecordType::A)),
        ok(&["api.other.svc.cluster.local. A 10.96.1.2"])
    );

    // --- removing one keeps the namespace, removing the last one drops it
    assert!(zone.remove_service("other", "web"));
    assert_eq!(seen(&answer(&zone, namespace, RecordType::A)), nodata());
    assert!(zone.remove_service("OTHER", "api"));
    assert_eq!(seen(&answer(&zone, namespace, RecordType::A)), nxdomain());
    assert_eq!(zone.service_count(), 7, "the default namespace keeps its services");
}
