//! Table tests for the printers: each case is an object fragment and the cells a user
//! would see in `kubectl get`.

mod custom;
mod pod;
mod resources;
mod workloads;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::table::{cells, columns, human_duration, table_json};

/// The fixed "current time" of every test.
pub(super) fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().expect("valid timestamp")
}

/// Returns the RFC 3339 time `seconds` before [`now`].
pub(super) fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

/// Returns the cell of `column` (by header name) for `obj`.
pub(super) fn cell(group: &str, kind: &str, obj: &Value, column: &str) -> Value {
    let names: Vec<&str> = columns(group, kind).iter().map(|c| c.name).collect();
    let index = names
        .iter()
        .position(|name| *name == column)
        .unwrap_or_else(|| panic!("{kind} has no column {column}: {names:?}"));
    cells(group, kind, obj, now())[index].clone()
}

#[test]
fn human_duration_matches_kubernetes() {
    let cases = [
        (0, "0s"),
        (-1, "0s"),
        (-2, "<invalid>"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 30 * 60, "3h30m"),
        (7 * 3600 + 59 * 60, "7h59m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (7 * 86400 + 23 * 3600, "7d23h"),
        (8 * 86400, "8d"),
        (45 * 86400, "45d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (733 * 86400, "2y3d"),
        (8 * 365 * 86400, "8y"),
        (10 * 365 * 86400 + 100 * 86400, "10y"),
    ];
    for (seconds, want) in cases {
        assert_eq!(human_duration(SignedDuration::from_secs(seconds)), want, "{seconds}s");
    }
    // Sub-second precision truncates toward zero like Go's int(d.Seconds()).
    assert_eq!(human_duration(SignedDuration::from_millis(-1999)), "0s");
    assert_eq!(human_duration(SignedDuration::from_millis(119_999)), "119s");
}

#[test]
fn age_is_unknown_without_creation_timestamp() {
    let pod = json!({"metadata": {"name": "p"}});
    assert_eq!(cell("", "Pod", &pod, "Age"), "<unknown>");
    let pod = json!({"metadata": {"name": "p", "creationTimestamp": ago(3 * 86400 + 7200)}});
    assert_eq!(cell("", "Pod", &pod, "Age"), "3d2h");
}

/// Every printer returns exactly one cell per column, even for an empty object.
#[test]
fn every_kind_prints_one_cell_per_column() {
    let kinds = [
        ("", "Pod"),
        ("", "Node"),
        ("", "Namespace"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "LimitRange"),
        ("", "ResourceQuota"),
        ("", "PodTemplate"),
        ("", "ReplicationController"),
        ("", "ComponentStatus"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("networking.k8s.io", "IPAddress"),
        ("policy", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("example.com", "Widget"),
    ];
    for (group, kind) in kinds {
        for obj in [json!({}), json!({"metadata": {"name": "x"}, "spec": {}, "status": {}})] {
            let printed = cells(group, kind, &obj, now());
            assert_eq!(printed.len(), columns(group, kind).len(), "{group}/{kind}");
        }
        let headers = columns(group, kind);
        assert!(headers.iter().all(|c| c.priority == 0 || c.priority == 1), "{kind}");
        let names = headers.iter().filter(|c| c.format == "name").count();
        assert!(names >= 1, "{kind} has a name column");
    }
}

#[test]
fn kinds_without_printer_use_name_and_age_or_created_at() {
    let role =
        json!({"metadata": {"name": "reader", "creationTimestamp": "2024-05-01T08:09:10.5Z"}});
    let group = "rbac.authorization.k8s.io";
    let names: Vec<_> = columns(group, "ClusterRole").iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Created At"]);
    assert_eq!(columns(group, "Role")[1].kind, "date");
    assert_eq!(
        cells(group, "Role", &role, now()),
        [json!("reader"), json!("2024-05-01T08:09:10Z")]
    );
    assert_eq!(cells("", "LimitRange", &json!({}), now())[1], "0001-01-01T00:00:00Z");

    let widget = json!({"metadata": {"name": "w", "creationTimestamp": ago(90)}});
    let names: Vec<_> = columns("example.com", "Widget").iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Age"]);
    assert_eq!(cells("example.com", "Widget", &widget, now()), [json!("w"), json!("90s")]);
}

#[test]
fn table_json_builds_a_meta_v1_table() {
    let pod = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)},
        "status": {"phase": "Running"}});
    let partial = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "web"}});
    let header = columns("", "Pod");
    let table = table_json(
        &header,
        vec![(cells("", "Pod", &pod, now()), partial.clone()), (vec![json!("x")], Value::Null)],
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        table["columnDefinitions"][0],
        json!({"name": "Name", "type": "string",
        "format": "name", "description": crate::table::columns::NAME_DESCRIPTION, "priority": 0})
    );
    assert_eq!(table["columnDefinitions"][5]["name"], "IP");
    assert_eq!(table["columnDefinitions"][5]["priority"], 1);
    let row = table["rows"][0]["cells"].as_array().expect("cells");
    assert_eq!(row[..5], [json!("web"), json!("0/0"), json!("Running"), json!("0"), json!("60s")]);
    assert_eq!(table["rows"][0]["object"], partial);
    assert!(table["rows"][1].get("object").is_none());
}
