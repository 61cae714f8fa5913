use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodIP, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::endpoints::fixtures::{self, labels, pod, with};

fn now() -> Time {
    Time("2025-01-01T12:00:00Z".parse::<Timestamp>().unwrap())
}

/// Service "web" selecting app=web, port "http" 80 -> named target "http" (TCP, appProtocol
/// http), IPv4.
fn service() -> Service {
    let mut service = fixtures::service();
    if let Some(port) =
        service.spec.as_mut().and_then(|s| s.ports.as_mut()).and_then(|p| p.first_mut())
    {
        port.protocol = Some("TCP".into());
        port.app_protocol = Some("http".into());
    }
    service
}

fn pods(count: usize) -> Vec<Pod> {
    (0..count)
        .map(|i| pod(&format!("p{i:03}"), &format!("10.0.{}.{}", i / 250, i % 250 + 1)))
        .collect()
}

fn not_ready(pod: &mut Pod) {
    pod.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
}

fn node(name: &str, zone: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(&[(ZONE_LABEL, zone)]),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn nodes() -> Vec<Node> {
    vec![node("n1", "zone-a"), node("n2", "zone-b")]
}

fn plan_of(service: &Service, pods: &[Pod], slices: &[EndpointSlice]) -> Plan {
    plan(service, pods, slices, &nodes()).unwrap()
}

/// Applies a plan as the API server would: creates get a name, uid and resourceVersion 1,
/// updates bump the resourceVersion, deletes remove.
fn apply(mut slices: Vec<EndpointSlice>, plan: &Plan) -> Vec<EndpointSlice> {
    slices.retain(|slice| {
        !plan.delete.iter().any(|gone| Some(&gone.name) == slice.metadata.name.as_ref())
    });
    for updated in &plan.update {
        let current =
            slices.iter_mut().find(|slice| slice.metadata.name == updated.metadata.name).unwrap();
        assert_eq!(
            current.metadata.resource_version, updated.metadata.resource_version,
            "precondition"
        );
        let version: u32 = current.metadata.resource_version.as_deref().unwrap().parse().unwrap();
        *current = updated.clone();
        current.metadata.resource_version = Some((version + 1).to_string());
    }
    for (index, created) in plan.create.iter().enumerate() {
        let mut slice = created.clone();
        let name =
            format!("{}{}{index}", created.metadata.generate_name.clone().unwrap(), slices.len());
        slice.metadata.uid = Some(format!("{name}-uid"));
        slice.metadata.name = Some(name);
        slice.metadata.resource_version = Some("1".into());
        slices.push(slice);
    }
    slices
}

fn endpoint_count(slices: &[EndpointSlice]) -> usize {
    slices.iter().map(|slice| slice.endpoints.len()).sum()
}

fn is_empty(plan: &Plan) -> bool {
    plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty()
}

#[test]
fn new_service_gets_a_labelled_owned_slice_with_resolved_ports() {
    let mut svc = service();
    svc.metadata.labels = labels(&[("team", "a"), (SERVICE_NAME_LABEL, "spoof")]);
    let plan = plan_of(&svc, &[pod("a", "10.0.0.1")], &[]);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
    let [slice] = plan.create.as_slice() else { panic!("one slice: {plan:?}") };
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        slice.metadata.labels,
        labels(&[
            ("team", "a"),
            (SERVICE_NAME_LABEL, "web"),
            (MANAGED_BY_LABEL, "endpointslice-controller.k8s.io"),
        ]),
        "service labels copied except reserved ones"
    );
    assert_eq!(
        slice.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: "web".into(),
            uid: "svc-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.ports,
        Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            app_protocol: Some("http".into()),
        }])
    );
    let [endpoint] = slice.endpoints.as_slice() else { panic!("one endpoint") };
    assert_eq!(endpoint.addresses, vec!["10.0.0.1".to_owned()]);
    assert_eq!(
        endpoint.conditions,
        Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false)
        })
    );
    assert_eq!(endpoint.node_name.as_deref(), Some("n1"));
    assert_eq!(endpoint.zone.as_deref(), Some("zone-a"));
    assert_eq!(endpoint.hostname, None);
    assert_eq!(
        endpoint.target_ref,
        Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some("a".into()),
            uid: Some("a-uid".into()),
            ..ObjectReference::default()
        })
    );
}

#[test]
fn more_than_a_hundred_endpoints_are_split_across_slices() {
    let plan = plan_of(&service(), &pods(250), &[]);
    let mut sizes: Vec<usize> = plan.create.iter().map(|slice| slice.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![50, 100, 100]);
}

#[test]
fn unchanged_slices_are_left_alone_and_changes_touch_the_fewest_slices() {
    let svc = service();
    let mut world = pods(150);
    let slices = apply(Vec::new(), &plan_of(&svc, &world, &[]));
    assert_eq!(slices.len(), 2);

    // --- nothing changed: nothing to write
    assert!(is_empty(&plan_of(&svc, &world, &slices)));

    // --- one pod turns not ready: only its slice is updated, in place, with its resourceVersion
    world[120] = with(world[120].clone(), not_ready);
    let plan = plan_of(&svc, &world, &slices);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let [updated] = plan.update.as_slice() else { panic!("one update: {plan:?}") };
    let holder = slices
        .iter()
        .find(|slice| slice.endpoints.iter().any(|e| e.addresses == ["10.0.0.121"]))
        .unwrap();
    assert_eq!(updated.metadata.name, holder.metadata.name);
    assert_eq!(updated.metadata.resource_version, holder.metadata.resource_version);
    assert_eq!(updated.metadata.uid, holder.metadata.uid);
    let endpoint = updated.endpoints.iter().find(|e| e.addresses == ["10.0.0.121"]).unwrap();
    assert_eq!(endpoint.conditions.as_ref().unwrap().ready, Some(false));
    let slices = apply(slices, &plan);

    // --- a new pod tops up the slice that has room instead of creating one
    world.push(pod("new", "10.9.9.9"));
    let plan = plan_of(&svc, &world, &slices);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    let [topped] = plan.update.as_slice() else { panic!("one update") };
    assert_eq!(topped.endpoints.len(), 51);
    let slices = apply(slices, &plan);

    // --- a removed pod shrinks its slice; the other slice stays untouched
    world.retain(|pod| pod.metadata.name.as_deref() != Some("p000"));
    let plan = plan_of(&svc, &world, &slices);
    assert_eq!(plan.update.len(), 1);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let slices = apply(slices, &plan);
    assert_eq!(endpoint_count(&slices), 150);
}

#[test]
fn losing_every_pod_turns_a_slice_into_the_placeholder_in_place() {
    let svc = service();
    let slices = apply(Vec::new(), &plan_of(&svc, &pods(3), &[]));
    let plan = plan_of(&svc, &[], &slices);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    let [placeholder] = plan.update.as_slice() else { panic!("one update") };
    assert_eq!(placeholder.metadata.name, slices[0].metadata.name);
    assert_eq!(placeholder.metadata.resource_version.as_deref(), Some("1"));
    assert!(placeholder.endpoints.is_empty());
    assert_eq!(placeholder.ports, Some(vec![]));

    // The placeholder, once written, is kept as is.
    let slices = apply(slices, &plan);
    assert!(is_empty(&plan_of(&svc, &[], &slices)));
}

#[test]
fn a_service_without_pods_gets_a_placeholder_slice() {
    let plan = plan_of(&service(), &[], &[]);
    let [slice] = plan.create.as_slice() else { panic!("one placeholder") };
    assert!(slice.endpoints.is_empty());
    assert_eq!(slice.ports, Some(vec![]));
}

/// A case, a pod, publishNotReadyAddresses, and the expected (ready, serving, terminating).
type ConditionsRow = (&'static str, Pod, bool, (bool, bool, bool));

#[test]
fn endpoint_conditions_table() {
    let terminating = |pod: &mut Pod| pod.metadata.deletion_timestamp = Some(now());
    // Each row: case, pod, publishNotReadyAddresses, expected (ready, serving, terminating).
    let cases: Vec<ConditionsRow> = vec![
        ("ready", pod("a", "10.0.0.1"), false, (true, true, false)),
        ("not ready", with(pod("a", "10.0.0.1"), not_ready), false, (false, false, false)),
        ("not ready, published", with(pod("a", "10.0.0.1"), not_ready), true, (true, false, false)),
        (
            "terminating, still ready",
            with(pod("a", "10.0.0.1"), terminating),
            false,
            (false, true, true),
        ),
        (
            "terminating, not ready",
            with(pod("a", "10.0.0.1"), |pod| {
                terminating(pod);
                not_ready(pod);
            }),
            false,
            (false, false, true),
        ),
        (
            "terminating, published",
            with(pod("a", "10.0.0.1"), terminating),
            true,
            (true, true, true),
        ),
    ];
    for (case, pod, publish, (ready, serving, terminating)) in cases {
        let mut svc = service();
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(publish);
        let plan = plan_of(&svc, &[pod], &[]);
        let conditions = plan.create[0].endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            conditions,
            EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating)
            },
            "{case}"
        );
    }
}

#[test]
fn pods_that_do_not_belong_are_left_out() {
    let pods = vec![
        pod("kept", "10.0.0.1"),
        with(pod("succeeded", "10.0.0.2"), |p| {
            p.status.as_mut().unwrap().phase = Some("Succeeded".into())
        }),
        with(pod("failed", "10.0.0.3"), |p| {
            p.status.as_mut().unwrap().phase = Some("Failed".into())
        }),
        with(pod("no-ip", "10.0.0.4"), |p| {
            let status = p.status.as_mut().unwrap();
            status.pod_ip = None;
            status.pod_ips = None;
        }),
        with(pod("other-app", "10.0.0.5"), |p| p.metadata.labels = labels(&[("app", "db")])),
        with(pod("other-namespace", "10.0.0.6"), |p| p.metadata.namespace = Some("other".into())),
    ];
    let plan = plan_of(&service(), &pods, &[]);
    let names: Vec<_> = plan.create[0]
        .endpoints
        .iter()
        .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["kept".to_owned()]);
}

#[test]
fn pods_resolving_a_named_port_differently_get_separate_slices() {
    let on_port = |port: i32| {
        move |pod: &mut Pod| {
            pod.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].container_port =
                port
        }
    };
    let pods = vec![
        with(pod("a", "10.0.0.1"), on_port(8080)),
        with(pod("b", "10.0.0.2"), on_port(9090)),
        with(pod("c", "10.0.0.3"), on_port(9090)),
        with(pod("unnamed", "10.0.0.4"), |pod| {
            pod.spec.as_mut().unwrap().containers[0].ports = None
        }),
        with(pod("udp", "10.0.0.5"), |pod| {
            pod.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].protocol =
                Some("UDP".into());
        }),
    ];
    let plan = plan_of(&service(), &pods, &[]);
    let mut groups: Vec<(Vec<i32>, usize)> = plan
        .create
        .iter()
        .map(|slice| {
            let ports = slice.ports.iter().flatten().filter_map(|port| port.port).collect();
            (ports, slice.endpoints.len())
        })
        .collect();
    groups.sort();
    // Pods whose container lacks the named port (or has it for another protocol) get a slice
    // without ports, as upstream.
    assert_eq!(groups, vec![(vec![], 2), (vec![8080], 1), (vec![9090], 2)]);
}

#[test]
fn numeric_and_defaulted_target_ports_are_used_as_is() {
    let mut svc = service();
    svc.spec.as_mut().unwrap().ports = Some(vec![
        ServicePort { name: Some("metrics".into()), port: 9100, ..ServicePort::default() },
        ServicePort {
            name: Some("grpc".into()),
            port: 81,
            target_port: Some(IntOrString::Int(5000)),
            ..ServicePort::default()
        },
    ]);
    let plan = plan_of(&svc, &[pod("a", "10.0.0.1")], &[]);
    let ports: Vec<(String, i32)> = plan.create[0]
        .ports
        .iter()
        .flatten()
        .map(|port| (port.name.clone().unwrap(), port.port.unwrap()))
        .collect();
    assert_eq!(ports, vec![("grpc".into(), 5000), ("metrics".into(), 9100)]);
}

#[test]
fn hostname_is_published_only_under_the_service_subdomain() {
    let named = |subdomain: &'static str| {
        move |pod: &mut Pod| {
            let spec = pod.spec.as_mut().unwrap();
            spec.hostname = Some("db-0".into());
            spec.subdomain = Some(subdomain.into());
        }
    };
    for (subdomain, expected) in [("web", Some("db-0")), ("other", None)] {
        let plan = plan_of(&service(), &[with(pod("a", "10.0.0.1"), named(subdomain))], &[]);
        assert_eq!(plan.create[0].endpoints[0].hostname.as_deref(), expected, "{subdomain}");
    }
}

#[test]
fn dual_stack_services_get_a_slice_per_family() {
    let mut svc = service();
    svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    let dual = with(pod("a", "10.0.0.1"), |pod| {
        pod.status.as_mut().unwrap().pod_ips =
            Some(vec![PodIP { ip: "10.0.0.1".into() }, PodIP { ip: "fd00::0:1".into() }]);
    });
    let plan = plan_of(&svc, &[dual, pod("v4-only", "10.0.0.2")], &[]);
    let mut slices: Vec<(String, usize, Vec<String>)> = plan
        .create
        .iter()
        .map(|slice| {
            let first = slice.endpoints.first().map(|e| e.addresses.clone()).unwrap_or_default();
            (slice.address_type.clone(), slice.endpoints.len(), first)
        })
        .collect();
    slices.sort();
    assert_eq!(
        slices,
        vec![
            ("IPv4".into(), 2, vec!["10.0.0.1".into()]),
            ("IPv6".into(), 1, vec!["fd00::1".into()]),
        ]
    );
}

#[test]
fn services_the_controller_leaves_alone_get_an_empty_plan() {
    let mut no_selector = service();
    no_selector.spec.as_mut().unwrap().selector = None;
    let mut empty_selector = service();
    empty_selector.spec.as_mut().unwrap().selector = labels(&[]);
    let mut external = service();
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    for svc in [no_selector, empty_selector, external] {
        assert_eq!(plan_of(&svc, &pods(2), &[]), Plan::default());
    }
}

#[test]
fn label_changes_rewrite_labels_only_and_headless_services_are_marked() {
    let svc = service();
    let slices = apply(Vec::new(), &plan_of(&svc, &pods(2), &[]));
    let mut relabeled = service();
    relabeled.metadata.labels = labels(&[("team", "b")]);
    let plan = plan_of(&relabeled, &pods(2), &slices);
    let [updated] = plan.update.as_slice() else { panic!("one update") };
    assert_eq!(
        updated.metadata.labels.as_ref().unwrap().get("team").map(String::as_str),
        Some("b")
    );
    assert_eq!(updated.endpoints, slices[0].endpoints);

    let mut headless = service();
    headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    headless.spec.as_mut().unwrap().ports = None;
    let plan = plan_of(&headless, &pods(1), &[]);
    let slice = &plan.create[0];
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap().get(HEADLESS_LABEL).map(String::as_str),
        Some("")
    );
    assert_eq!(slice.ports, Some(vec![]), "headless without ports");
    assert_eq!(slice.endpoints.len(), 1);
}

#[test]
fn foreign_stale_and_unsupported_slices_are_handled_like_upstream() {
    let svc = service();
    let mut slices = apply(Vec::new(), &plan_of(&svc, &pods(2), &[]));
    // A slice owned by a previous Service of the same name is deleted.
    let mut stale = slices[0].clone();
    stale.metadata.name = Some("web-stale".into());
    stale.metadata.uid = Some("stale-uid".into());
    stale.metadata.owner_references.as_mut().unwrap()[0].uid = "old-svc-uid".into();
    // A slice of an address family the Service no longer uses is deleted.
    let mut v6 = slices[0].clone();
    v6.metadata.name = Some("web-v6".into());
    v6.metadata.uid = Some("v6-uid".into());
    v6.address_type = "IPv6".into();
    // A slice another controller manages is never touched.
    let mut mirrored = slices[0].clone();
    mirrored.metadata.name = Some("web-mirror".into());
    mirrored
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(MANAGED_BY_LABEL.into(), "someone-else".into());
    mirrored.endpoints.clear();
    slices.extend([stale, v6, mirrored]);

    let plan = plan_of(&svc, &pods(2), &slices);
    assert!(plan.create.is_empty() && plan.update.is_empty(), "{plan:?}");
    let mut deleted = plan.delete.clone();
    deleted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        deleted,
        vec![
            SliceRef { name: "web-stale".into(), uid: Some("stale-uid".into()) },
            SliceRef { name: "web-v6".into(), uid: Some("v6-uid".into()) },
        ]
    );
}

#[test]
fn pods_on_unknown_nodes_are_left_out_and_reported() {
    let lost = with(pod("lost", "10.0.0.9"), |pod| {
        pod.spec.as_mut().unwrap().node_name = Some("gone".into())
    });
    let plan = plan_of(&service(), &[pod("a", "10.0.0.1"), lost.clone()], &[]);
    assert_eq!(plan.create[0].endpoints.len(), 1);
    assert_eq!(plan.pods_on_missing_nodes, vec!["lost".to_owned()]);

    let mut publish = service();
    publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let plan = plan_of(&publish, &[lost], &[]);
    assert_eq!(plan.create[0].endpoints[0].zone, None);
    assert!(plan.pods_on_missing_nodes.is_empty());
}

#[test]
fn a_service_being_deleted_gets_no_new_slices() {
    let mut svc = service();
    svc.metadata.deletion_timestamp = Some(now());
    let plan = plan_of(&svc, &pods(3), &[]);
    assert!(plan.create.is_empty());
}
