//! Workload printers: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision,
//! Job and CronJob.

use serde_json::{json, Value};

use super::{ago, cell, now};
use crate::table::{cells, columns};

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}})
}

#[test]
fn deployment_ready_counts_and_wide_columns() {
    let names: Vec<_> = columns("apps", "Deployment").iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    );
    let deployment = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(200)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}}, "template": template()},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        cells("apps", "Deployment", &deployment, now()),
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3m20s"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web,tier=fe")
        ]
    );
    // Unset replicas default to 1 and missing status counts are 0.
    let fresh = json!({"metadata": {"name": "web"}, "spec": {"selector": {}}});
    assert_eq!(cell("apps", "Deployment", &fresh, "Ready"), "0/1");
    assert_eq!(cell("apps", "Deployment", &fresh, "Up-to-date"), 0);
    // An empty selector prints as an empty string for Deployments, `<none>` elsewhere.
    assert_eq!(cell("apps", "Deployment", &fresh, "Selector"), "");
    assert_eq!(cell("apps", "ReplicaSet", &fresh, "Selector"), "<none>");
    let scaled_down = json!({"spec": {"replicas": 0}, "status": {}});
    assert_eq!(cell("apps", "Deployment", &scaled_down, "Ready"), "0/0");
}

#[test]
fn label_selectors_print_like_kubernetes() {
    let selector = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["fe", "be"]},
        {"key": "env", "operator": "NotIn", "values": ["dev"]},
        {"key": "canary", "operator": "DoesNotExist"},
        {"key": "zone", "operator": "Exists"}]});
    let set = json!({"spec": {"selector": selector}});
    assert_eq!(
        cell("apps", "ReplicaSet", &set, "Selector"),
        "app=web,!canary,env notin (dev),tier in (be,fe),zone"
    );
    let invalid =
        json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
    assert_eq!(cell("apps", "Deployment", &invalid, "Selector"), "<invalid>");
    assert_eq!(cell("apps", "DaemonSet", &invalid, "Selector"), "<error>");
}

#[test]
fn replica_stateful_and_daemon_sets() {
    let replica_set = json!({"metadata": {"name": "web-5d4f"}, "spec": {"replicas": 3, "template": template()},
        "status": {"replicas": 3, "readyReplicas": 1}});
    assert_eq!(
        cells("apps", "ReplicaSet", &replica_set, now())[1..4],
        [json!(3), json!(3), json!(1)]
    );

    let stateful = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template()},
        "status": {"readyReplicas": 2}});
    assert_eq!(cell("apps", "StatefulSet", &stateful, "Ready"), "2/3");
    assert_eq!(cell("apps", "StatefulSet", &stateful, "Images"), "nginx:1.27,busybox");

    let daemon = json!({"metadata": {"name": "agent"}, "spec": {"template": {"spec": {
        "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
            "updatedNumberScheduled": 3, "numberAvailable": 2}});
    let printed = cells("apps", "DaemonSet", &daemon, now());
    assert_eq!(
        printed[1..7],
        [json!(3), json!(3), json!(2), json!(3), json!(2), json!("kubernetes.io/os=linux")]
    );
    assert_eq!(cell("apps", "DaemonSet", &json!({}), "Node Selector"), "<none>");
}

#[test]
fn controller_revision_names_its_controller() {
    let revision = json!({"metadata": {"name": "agent-7c9", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "other"},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true}]},
        "revision": 4});
    assert_eq!(cell("apps", "ControllerRevision", &revision, "Controller"), "daemonset.apps/agent");
    assert_eq!(cell("apps", "ControllerRevision", &revision, "Revision"), 4);
    assert_eq!(cell("apps", "ControllerRevision", &json!({}), "Controller"), "<none>");
}

#[test]
fn job_completions() {
    let cases = [
        (json!({"completions": 1}), json!({"succeeded": 1}), "1/1"),
        (json!({"completions": 5, "parallelism": 2}), json!({"succeeded": 2}), "2/5"),
        (json!({"parallelism": 3}), json!({}), "0/1 of 3"),
        (json!({"parallelism": 1}), json!({"succeeded": 3}), "3/1"),
        (json!({}), json!({}), "0/1"),
    ];
    for (spec, status, want) in cases {
        let job = json!({"spec": spec, "status": status});
        assert_eq!(cell("batch", "Job", &job, "Completions"), want, "{spec} {status}");
    }
}

#[test]
fn job_status_and_duration() {
    let condition = |kind: &str, status: &str| json!([{"type": kind, "status": status}]);
    let cases = [
        (json!({}), false, "Running"),
        (json!({"conditions": condition("Complete", "True")}), false, "Complete"),
        (json!({"conditions": condition("Failed", "True")}), true, "Failed"),
        (json!({"conditions": condition("Complete", "False")}), false, "Running"),
        (json!({"conditions": condition("Suspended", "True")}), false, "Suspended"),
        (json!({"conditions": condition("Suspended", "True")}), true, "Terminating"),
        (json!({"conditions": condition("FailureTarget", "True")}), false, "FailureTarget"),
        (json!({}), true, "Terminating"),
    ];
    for (status, deleting, want) in cases {
        let mut job = json!({"metadata": {"name": "j"}, "status": status});
        if deleting {
            job["metadata"]["deletionTimestamp"] = json!(ago(1));
        }
        assert_eq!(cell("batch", "Job", &job, "Status"), want, "{job}");
    }

    let pending = json!({"status": {}});
    assert_eq!(cell("batch", "Job", &pending, "Duration"), "");
    let running = json!({"status": {"startTime": ago(150)}});
    assert_eq!(cell("batch", "Job", &running, "Duration"), "2m30s");
    let done = json!({"status": {"startTime": ago(3600), "completionTime": ago(3555)}});
    assert_eq!(cell("batch", "Job", &done, "Duration"), "45s");
}

#[test]
fn cron_job_cells() {
    let cron = json!({"metadata": {"name": "backup", "creationTimestamp": ago(86400)},
        "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {
            "template": {"spec": {"containers": [{"name": "b", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(61)}});
    assert_eq!(
        cells("batch", "CronJob", &cron, now()),
        [
            json!("backup"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("61s"),
            json!("24h"),
            json!("b"),
            json!("busybox"),
            json!("<none>")
        ]
    );
    let never = json!({"spec": {"timeZone": "Etc/UTC"}});
    assert_eq!(cell("batch", "CronJob", &never, "Last Schedule"), "<none>");
    assert_eq!(cell("batch", "CronJob", &never, "Timezone"), "Etc/UTC");
    assert_eq!(cell("batch", "CronJob", &never, "Suspend"), "False");
    assert_eq!(cell("batch", "CronJob", &json!({"spec": {"suspend": true}}), "Suspend"), "True");
}
