//! Pod READY / STATUS / RESTARTS cases, mirroring what `kubectl get pods` shows.

use serde_json::{json, Value};

use super::{ago, cell, now};
use crate::table::cells;

fn running(name: &str) -> Value {
    json!({"name": name, "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(600)}}})
}

fn waiting(name: &str, reason: &str) -> Value {
    json!({"name": name, "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}})
}

fn terminated(name: &str, reason: &str, exit_code: i64) -> Value {
    json!({"name": name, "ready": false, "restartCount": 0,
        "state": {"terminated": {"reason": reason, "exitCode": exit_code}}})
}

fn pod(containers: &[&str], init: Value, status: Value) -> Value {
    let specs: Vec<Value> =
        containers.iter().map(|name| json!({"name": name, "image": "nginx"})).collect();
    json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(3600)},
        "spec": {"containers": specs, "initContainers": init},
        "status": status,
    })
}

/// Returns (READY, STATUS, RESTARTS).
fn summary(pod: &Value) -> (String, String, String) {
    let printed = cells("", "Pod", pod, now());
    let text = |index: usize| printed[index].as_str().expect("string cell").to_string();
    (text(1), text(2), text(3))
}

#[test]
fn pod_status_cases() {
    let sidecar = json!([{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]);
    let two_inits = json!([{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]);
    let one_init = json!([{"name": "a", "image": "busybox"}]);
    let cases: Vec<(&str, Value, [&str; 3])> = vec![
        (
            "running",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Running",
            "containerStatuses": [running("app")]}),
            ),
            ["1/1", "Running", "0"],
        ),
        ("unset phase reads Pending", pod(&["app"], json!([]), json!({})), ["0/1", "Pending", "0"]),
        (
            "container creating",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Pending",
            "containerStatuses": [waiting("app", "ContainerCreating")]}),
            ),
            ["0/1", "ContainerCreating", "0"],
        ),
        (
            "image pull error",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Pending",
            "containerStatuses": [waiting("app", "ErrImagePull")]}),
            ),
            ["0/1", "ErrImagePull", "0"],
        ),
        (
            "oom killed",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Running",
            "containerStatuses": [terminated("app", "OOMKilled", 137)]}),
            ),
            ["0/1", "OOMKilled", "0"],
        ),
        (
            "completed",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Succeeded",
            "containerStatuses": [terminated("app", "Completed", 0)]}),
            ),
            ["0/1", "Completed", "0"],
        ),
        (
            "error",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Failed",
            "containerStatuses": [terminated("app", "Error", 1)]}),
            ),
            ["0/1", "Error", "0"],
        ),
        (
            "exit code without reason",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Failed",
            "containerStatuses": [terminated("app", "", 2)]}),
            ),
            ["0/1", "ExitCode:2", "0"],
        ),
        (
            "signal without reason",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Failed",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
            ),
            ["0/1", "Signal:9", "0"],
        ),
        (
            "first container's state wins",
            pod(
                &["a", "b"],
                json!([]),
                json!({"phase": "Running",
            "containerStatuses": [waiting("a", "CrashLoopBackOff"), running("b")]}),
            ),
            ["1/2", "CrashLoopBackOff", "0"],
        ),
        (
            "completed with a running container and Ready",
            pod(
                &["a", "b"],
                json!([]),
                json!({
            "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [terminated("a", "Completed", 0), running("b")]}),
            ),
            ["1/2", "Running", "0"],
        ),
        (
            "completed with a running container, not Ready",
            pod(
                &["a", "b"],
                json!([]),
                json!({
            "phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [terminated("a", "Completed", 0), running("b")]}),
            ),
            ["1/2", "NotReady", "0"],
        ),
        (
            "init running",
            pod(
                &["app"],
                two_inits.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [running("a"), waiting("b", "PodInitializing")],
            "containerStatuses": [waiting("app", "PodInitializing")]}),
            ),
            ["0/1", "Init:0/2", "0"],
        ),
        (
            "second init running",
            pod(
                &["app"],
                two_inits.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [terminated("a", "Completed", 0), running("b")]}),
            ),
            ["0/1", "Init:1/2", "0"],
        ),
        (
            "init waiting PodInitializing",
            pod(
                &["app"],
                one_init.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [waiting("a", "PodInitializing")]}),
            ),
            ["0/1", "Init:0/1", "0"],
        ),
        (
            "init crash loop",
            pod(
                &["app"],
                one_init.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [waiting("a", "CrashLoopBackOff")]}),
            ),
            ["0/1", "Init:CrashLoopBackOff", "0"],
        ),
        (
            "init error",
            pod(
                &["app"],
                one_init.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [terminated("a", "Error", 1)]}),
            ),
            ["0/1", "Init:Error", "0"],
        ),
        (
            "init exit code",
            pod(
                &["app"],
                one_init.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [terminated("a", "", 3)]}),
            ),
            ["0/1", "Init:ExitCode:3", "0"],
        ),
        (
            "init signal",
            pod(
                &["app"],
                one_init.clone(),
                json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 1, "signal": 15}}}]}),
            ),
            ["0/1", "Init:Signal:15", "0"],
        ),
        (
            "inits done, app running",
            pod(
                &["app"],
                one_init,
                json!({"phase": "Running",
            "initContainerStatuses": [terminated("a", "Completed", 0)],
            "containerStatuses": [running("app")]}),
            ),
            ["1/1", "Running", "0"],
        ),
        (
            "terminating",
            {
                let mut p = pod(
                    &["app"],
                    json!([]),
                    json!({"phase": "Running",
                "containerStatuses": [running("app")]}),
                );
                p["metadata"]["deletionTimestamp"] = json!(ago(5));
                p
            },
            ["1/1", "Terminating", "0"],
        ),
        (
            "terminal pods do not show Terminating",
            {
                let mut p = pod(
                    &["app"],
                    json!([]),
                    json!({"phase": "Succeeded",
                "containerStatuses": [terminated("app", "Completed", 0)]}),
                );
                p["metadata"]["deletionTimestamp"] = json!(ago(5));
                p
            },
            ["0/1", "Completed", "0"],
        ),
        (
            "node lost",
            pod(&["app"], json!([]), json!({"phase": "Running", "reason": "NodeLost"})),
            ["0/1", "NodeLost", "0"],
        ),
        (
            "node lost while deleting",
            {
                let mut p =
                    pod(&["app"], json!([]), json!({"phase": "Running", "reason": "NodeLost"}));
                p["metadata"]["deletionTimestamp"] = json!(ago(5));
                p
            },
            ["0/1", "Unknown", "0"],
        ),
        (
            "evicted keeps the status reason",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Failed",
            "reason": "Evicted"}),
            ),
            ["0/1", "Evicted", "0"],
        ),
        (
            "scheduling gated",
            pod(
                &["app"],
                json!([]),
                json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            ),
            ["0/1", "SchedulingGated", "0"],
        ),
        (
            "sidecar started and ready",
            pod(
                &["app"],
                sidecar.clone(),
                json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true,
                "restartCount": 1, "lastState": {"terminated": {"finishedAt": ago(120)}},
                "state": {"running": {}}}],
            "containerStatuses": [running("app")]}),
            ),
            ["2/2", "Running", "1 (2m ago)"],
        ),
        (
            "sidecar not started",
            pod(
                &["app"],
                sidecar,
                json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "proxy", "ready": false, "started": false,
                "state": {"running": {}}}]}),
            ),
            ["0/2", "Init:0/1", "0"],
        ),
    ];
    for (case, pod, want) in cases {
        let (ready, status, restarts) = summary(&pod);
        assert_eq!([ready.as_str(), status.as_str(), restarts.as_str()], want, "{case}");
    }
}

#[test]
fn restarts_show_the_latest_restart_time() {
    let crashing = pod(
        &["a", "b"],
        json!([]),
        json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}},
            {"name": "b", "restartCount": 1, "ready": true, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3 * 3600)}}},
        ]}),
    );
    assert_eq!(summary(&crashing), ("1/2".into(), "CrashLoopBackOff".into(), "3 (5m ago)".into()));

    // Without a termination time only the count is shown.
    let no_time = pod(
        &["a"],
        json!([]),
        json!({"phase": "Running", "containerStatuses": [
        {"name": "a", "restartCount": 4, "ready": true, "state": {"running": {}}}]}),
    );
    assert_eq!(summary(&no_time).2, "4");

    // While initialising, init container restarts are what counts.
    let init = pod(
        &["app"],
        json!([{"name": "setup"}]),
        json!({"phase": "Pending",
        "initContainerStatuses": [{"name": "setup", "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}],
        "containerStatuses": [{"name": "app", "restartCount": 0,
            "state": {"waiting": {"reason": "PodInitializing"}}}]}),
    );
    assert_eq!(
        summary(&init),
        ("0/1".into(), "Init:CrashLoopBackOff".into(), "2 (30s ago)".into())
    );
}

#[test]
fn wide_pod_columns() {
    let mut scheduled = pod(
        &["app"],
        json!([]),
        json!({"phase": "Running",
        "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}],
        "nominatedNodeName": "n2",
        "conditions": [{"type": "example.com/gate-a", "status": "True"},
            {"type": "example.com/gate-b", "status": "False"}]}),
    );
    scheduled["spec"]["nodeName"] = json!("n1");
    scheduled["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/gate-a"}, {"conditionType": "example.com/gate-b"}]);
    assert_eq!(cell("", "Pod", &scheduled, "IP"), "10.0.0.7");
    assert_eq!(cell("", "Pod", &scheduled, "Node"), "n1");
    assert_eq!(cell("", "Pod", &scheduled, "Nominated Node"), "n2");
    assert_eq!(cell("", "Pod", &scheduled, "Readiness Gates"), "1/2");

    let legacy_ip = pod(&["app"], json!([]), json!({"podIP": "10.0.0.9"}));
    assert_eq!(cell("", "Pod", &legacy_ip, "IP"), "10.0.0.9");

    let fresh = pod(&["app"], json!([]), json!({}));
    for column in ["IP", "Node", "Nominated Node", "Readiness Gates"] {
        assert_eq!(cell("", "Pod", &fresh, column), "<none>", "{column}");
    }
}
