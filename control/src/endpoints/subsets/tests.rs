use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, PodIP,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

use crate::endpoints::fixtures::{labels, pod, service, with};

fn not_ready(pod: &mut Pod) {
    pod.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
}

fn on_port(port: i32) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| {
        pod.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].container_port = port
    }
}

fn address(name: &str, ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        node_name: Some("n1".into()),
        hostname: None,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("{name}-uid")),
            ..ObjectReference::default()
        }),
    }
}

fn http(port: i32) -> EndpointPort {
    EndpointPort {
        name: Some("http".into()),
        port,
        protocol: Some("TCP".into()),
        app_protocol: None,
    }
}

/// Returns the planned object as the API server stores it, with a resourceVersion.
fn stored(endpoints: Endpoints) -> Endpoints {
    let mut endpoints = endpoints;
    endpoints.metadata.resource_version = Some("7".into());
    endpoints
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    list.iter().flatten().map(|address| address.ip.as_str()).collect()
}

#[test]
fn ready_and_not_ready_pods_share_a_sorted_subset() {
    let pods =
        [pod("b", "10.0.0.20"), with(pod("c", "10.0.0.3"), not_ready), pod("a", "10.0.0.100")];
    let endpoints = plan(&service(), &pods, None).unwrap().unwrap();
    assert_eq!(endpoints.metadata.name.as_deref(), Some("web"));
    assert_eq!(endpoints.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(endpoints.metadata.labels, labels(&[("team", "a")]));
    assert_eq!(endpoints.metadata.owner_references, None);
    assert_eq!(endpoints.metadata.annotations, None);
    assert_eq!(
        endpoints.subsets,
        Some(vec![EndpointSubset {
            // Sorted by IP text, as upstream.
            addresses: Some(vec![address("a", "10.0.0.100"), address("b", "10.0.0.20")]),
            not_ready_addresses: Some(vec![address("c", "10.0.0.3")]),
            ports: Some(vec![http(8080)]),
        }])
    );
}

#[test]
fn pods_with_different_ports_get_different_subsets() {
    let mut svc = service();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap().push(ServicePort {
        name: Some("metrics".into()),
        port: 9100,
        ..ServicePort::default()
    });
    let pods = [
        with(pod("a", "10.0.0.1"), on_port(8080)),
        with(pod("b", "10.0.0.2"), on_port(9090)),
        with(pod("c", "10.0.0.3"), |pod| pod.spec.as_mut().unwrap().containers[0].ports = None),
    ];
    let subsets = plan(&svc, &pods, None).unwrap().unwrap().subsets.unwrap();
    let metrics = EndpointPort {
        name: Some("metrics".into()),
        port: 9100,
        protocol: Some("TCP".into()),
        app_protocol: None,
    };
    let mut shape: Vec<(Vec<&str>, Vec<EndpointPort>)> = subsets
        .iter()
        .map(|subset| (ips(&subset.addresses), subset.ports.clone().unwrap_or_default()))
        .collect();
    shape.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        shape,
        vec![
            (vec!["10.0.0.1"], vec![http(8080)]),
            (vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"], vec![metrics]),
            (vec!["10.0.0.2"], vec![http(9090)]),
        ]
    );
}

#[test]
fn an_address_not_ready_for_a_port_is_not_ready_for_it() {
    let subsets = repack(vec![
        (address("a", "10.0.0.1"), Some(http(8080)), true),
        (address("a", "10.0.0.1"), Some(http(8080)), false),
        (address("b", "10.0.0.2"), Some(http(8080)), true),
    ]);
    assert_eq!(
        subsets,
        vec![EndpointSubset {
            addresses: Some(vec![address("b", "10.0.0.2")]),
            not_ready_addresses: Some(vec![address("a", "10.0.0.1")]),
            ports: Some(vec![http(8080)]),
        }]
    );
}

#[test]
fn terminating_pods_count_only_when_not_ready_addresses_are_published() {
    let terminating = with(pod("t", "10.0.0.9"), |pod| {
        pod.metadata.deletion_timestamp =
            Some(Time("2025-01-01T00:00:00Z".parse::<Timestamp>().unwrap()));
    });
    let pods = [pod("a", "10.0.0.1"), terminating, with(pod("n", "10.0.0.5"), not_ready)];
    let subsets = plan(&service(), &pods, None).unwrap().unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.0.0.5"]);

    let mut publish = service();
    publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let subsets = plan(&publish, &pods, None).unwrap().unwrap().subsets.unwrap();
    assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1", "10.0.0.5", "10.0.0.9"]);
    assert_eq!(subsets[0].not_ready_addresses, None);
}

#[test]
fn an_up_to_date_endpoints_is_not_written_again() {
    let svc = service();
    let pods = [pod("a", "10.0.0.1"), with(pod("b", "10.0.0.2"), not_ready)];
    let current = stored(plan(&svc, &pods, None).unwrap().unwrap());
    assert_eq!(plan(&svc, &pods, Some(&current)).unwrap(), None);

    // A newer pod resourceVersion in a target reference is no reason to write.
    let mut with_version = current.clone();
    with_version.subsets.as_mut().unwrap()[0].addresses.as_mut().unwrap()[0]
        .target_ref
        .as_mut()
        .unwrap()
        .resource_version = Some("42".into());
    assert_eq!(plan(&svc, &pods, Some(&with_version)).unwrap(), None);

    // A pod turning ready is written over the current object, keeping its metadata.
    let ready_now = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")];
    let mut annotated = current.clone();
    annotated.metadata.annotations = labels(&[
        ("keep", "me"),
        ("endpoints.kubernetes.io/last-change-trigger-time", "2025-01-01T00:00:00Z"),
    ]);
    let updated = plan(&svc, &ready_now, Some(&annotated)).unwrap().unwrap();
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(updated.metadata.annotations, labels(&[("keep", "me")]));
    assert_eq!(ips(&updated.subsets.unwrap()[0].addresses), vec!["10.0.0.1", "10.0.0.2"]);

    // New Service labels are copied.
    let mut relabeled = service();
    relabeled.metadata.labels = labels(&[("team", "b")]);
    let updated = plan(&relabeled, &pods, Some(&current)).unwrap().unwrap();
    assert_eq!(updated.metadata.labels, labels(&[("team", "b")]));
}

#[test]
fn headless_services_are_labelled_and_may_have_no_ports() {
    let mut headless = service();
    headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    headless.spec.as_mut().unwrap().ports = None;
    let named = with(pod("db-0", "10.0.0.1"), |pod| {
        let spec = pod.spec.as_mut().unwrap();
        spec.hostname = Some("db-0".into());
        spec.subdomain = Some("web".into());
    });
    let endpoints = plan(&headless, std::slice::from_ref(&named), None).unwrap().unwrap();
    assert_eq!(endpoints.metadata.labels, labels(&[("team", "a"), (HEADLESS_LABEL, "")]));
    let subsets = endpoints.subsets.clone().unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].ports, None);
    let listed = subsets[0].addresses.as_ref().unwrap();
    assert_eq!(listed[0].hostname.as_deref(), Some("db-0"));

    // The headless label alone never causes a write, as upstream compares without it.
    let mut unlabeled = stored(endpoints);
    unlabeled.metadata.labels = labels(&[("team", "a")]);
    assert_eq!(plan(&headless, std::slice::from_ref(&named), Some(&unlabeled)).unwrap(), None);

    // A Service with a cluster IP and no ports has no subsets.
    let mut portless = service();
    portless.spec.as_mut().unwrap().ports = None;
    let endpoints = plan(&portless, &[named], None).unwrap().unwrap();
    assert_eq!(endpoints.subsets, None);
}

#[test]
fn over_capacity_endpoints_are_truncated_and_annotated() {
    let svc = service();
    let many: Vec<Pod> = (0..1200)
        .map(|i| pod(&format!("p{i:04}"), &format!("10.0.{}.{}", i / 200, i % 200 + 1)))
        .collect();
    let endpoints = plan(&svc, &many, None).unwrap().unwrap();
    assert_eq!(endpoints.metadata.annotations, labels(&[(OVER_CAPACITY_ANNOTATION, "truncated")]));
    let subsets = endpoints.subsets.clone().unwrap();
    assert_eq!(
        subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum::<usize>(),
        1000
    );

    // Once written, the truncated object is not written again.
    let current = stored(endpoints);
    assert_eq!(plan(&svc, &many, Some(&current)).unwrap(), None);

    // Back under capacity, the annotation goes.
    let fewer = &many[..900];
    let updated = plan(&svc, fewer, Some(&current)).unwrap().unwrap();
    assert_eq!(updated.metadata.annotations, None);

    // Ready addresses are kept before not-ready ones.
    let mixed: Vec<Pod> = many
        .iter()
        .enumerate()
        .map(|(i, pod)| if i % 3 == 0 { with(pod.clone(), not_ready) } else { pod.clone() })
        .collect();
    let subsets = plan(&svc, &mixed, None).unwrap().unwrap().subsets.unwrap();
    let ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
    let not_ready: usize =
        subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
    assert_eq!((ready, not_ready), (800, 200));
}

#[test]
fn truncation_shares_room_between_subsets_in_proportion() {
    let subset = |prefix: &str, count: usize, port: i32| EndpointSubset {
        addresses: Some(
            (0..count)
                .map(|i| address(&format!("{prefix}{i}"), &format!("10.{port}.0.{i}")))
                .collect(),
        ),
        not_ready_addresses: None,
        ports: Some(vec![http(port)]),
    };
    let (subsets, truncated) = truncate(vec![subset("a", 900, 1), subset("b", 300, 2)]);
    assert!(truncated);
    let sizes: Vec<usize> = subsets.iter().map(|s| s.addresses.as_ref().unwrap().len()).collect();
    assert_eq!(sizes, vec![750, 250]);
}

#[test]
fn the_primary_ip_family_decides_the_address() {
    let mut v6_first = service();
    v6_first.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
    let dual = with(pod("a", "10.0.0.1"), |pod| {
        pod.status.as_mut().unwrap().pod_ips =
            Some(vec![PodIP { ip: "10.0.0.1".into() }, PodIP { ip: "fd00::1".into() }]);
    });
    let subsets = plan(&v6_first, &[dual.clone(), pod("v4-only", "10.0.0.2")], None)
        .unwrap()
        .unwrap()
        .subsets
        .unwrap();
    assert_eq!(ips(&subsets[0].addresses), vec!["fd00::1"], "the IPv4-only pod is left out");
}

#[test]
fn services_the_controller_leaves_alone_get_no_write() {
    let mut no_selector = service();
    no_selector.spec.as_mut().unwrap().selector = None;
    let mut external = service();
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    for svc in [no_selector, external] {
        assert_eq!(plan(&svc, &[pod("a", "10.0.0.1")], None).unwrap(), None);
    }
}
