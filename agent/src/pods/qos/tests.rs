#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{PodStatus, ResourceRequirements};

use super::*;
use crate::pods::testing::*;

fn sized(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    Container {
        resources: Some(ResourceRequirements {
            requests: (!requests.is_empty()).then(|| quantities(requests)),
            limits: (!limits.is_empty()).then(|| quantities(limits)),
            ..ResourceRequirements::default()
        }),
        ..container(name)
    }
}

#[test]
fn classes_follow_requests_and_limits() {
    let full = [("cpu", "500m"), ("memory", "1Gi")];
    let cases: Vec<(&str, Vec<Container>, QosClass)> = vec![
        ("nothing set", vec![container("a")], QosClass::BestEffort),
        (
            "only extended resources",
            vec![sized("a", &[("example.com/gpu", "1")], &[("example.com/gpu", "1")])],
            QosClass::BestEffort,
        ),
        ("limits only default the requests", vec![sized("a", &[], &full)], QosClass::Guaranteed),
        ("equal requests and limits", vec![sized("a", &full, &full)], QosClass::Guaranteed),
        (
            "requests below limits",
            vec![sized("a", &[("cpu", "250m"), ("memory", "1Gi")], &full)],
            QosClass::Burstable,
        ),
        ("memory limit only", vec![sized("a", &[], &[("memory", "1Gi")])], QosClass::Burstable),
        (
            "one container without limits",
            vec![sized("a", &[], &full), container("b")],
            QosClass::Burstable,
        ),
        (
            "same amount written differently",
            vec![sized("a", &[("cpu", "0.5"), ("memory", "1024Mi")], &full)],
            QosClass::Guaranteed,
        ),
    ];
    for (name, containers, expected) in cases {
        assert_eq!(qos_class(&pod_with(containers)), expected, "{name}");
    }
}

#[test]
fn recorded_class_wins() {
    let pod = with(pod(), |p| {
        p.status =
            Some(PodStatus { qos_class: Some("Burstable".to_owned()), ..PodStatus::default() })
    });
    assert_eq!(qos_class(&pod), QosClass::Burstable);
}

#[test]
fn cgroup_parent_per_class_and_driver() {
    let full = [("cpu", "1"), ("memory", "1Gi")];
    let uid = UID.replace('-', "_");
    let cases = [
        (pod(), CgroupDriver::Cgroupfs, format!("/kubepods/besteffort/pod{UID}")),
        (
            pod(),
            CgroupDriver::Systemd,
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice"),
        ),
        (
            pod_with(vec![sized("a", &[("cpu", "1")], &[])]),
            CgroupDriver::Cgroupfs,
            format!("/kubepods/burstable/pod{UID}"),
        ),
        (
            pod_with(vec![sized("a", &[], &full)]),
            CgroupDriver::Cgroupfs,
            format!("/kubepods/pod{UID}"),
        ),
        (
            pod_with(vec![sized("a", &[], &full)]),
            CgroupDriver::Systemd,
            format!("/kubepods.slice/kubepods-pod{uid}.slice"),
        ),
    ];
    for (pod, driver, expected) in cases {
        assert_eq!(cgroup_parent(&pod, driver), expected);
    }
}

#[test]
fn oom_score_protects_guaranteed_critical_pods_and_sidecars() {
    let capacity = 16i64 << 30;
    let critical = with(pod(), |p| {
        let spec = p.spec.as_mut().unwrap();
        spec.priority = Some(2_000_001_000);
        spec.priority_class_name = Some("system-node-critical".to_owned());
    });
    assert_eq!(oom_score_adj(&critical, &container("app"), capacity), -997);

    // A sidecar asking for little memory is killed no later than the app asking for more.
    let app = sized("app", &[("memory", "4Gi")], &[]);
    let proxy = Container {
        restart_policy: Some("Always".to_owned()),
        ..sized("proxy", &[("memory", "64Mi")], &[])
    };
    let pod = with(pod_with(vec![app.clone()]), |p| {
        p.spec.as_mut().unwrap().init_containers = Some(vec![proxy.clone()]);
    });
    assert_eq!(oom_score_adj(&pod, &app, capacity), 750);
    assert_eq!(oom_score_adj(&pod, &proxy, capacity), 750);
}
