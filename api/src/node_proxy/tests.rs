use serde_json::json;

use super::*;

fn message(result: Result<impl std::fmt::Debug, ApiError>) -> String {
    match result.unwrap_err() {
        ApiError::BadRequest(message) => message,
        other => panic!("not a bad request: {other:?}"),
    }
}

fn pod(containers: &[&str], init: &[&str]) -> Value {
    let list = |names: &[&str]| names.iter().map(|n| json!({ "name": n })).collect::<Vec<_>>();
    json!({ "spec": { "containers": list(containers), "initContainers": list(init) } })
}

#[test]
fn the_container_is_the_one_named_or_the_only_one() {
    assert_eq!(log_container(&pod(&["app"], &[]), "web", None).unwrap(), "app");
    assert_eq!(
        log_container(&pod(&["app", "side"], &["init"]), "web", Some("init")).unwrap(),
        "init"
    );
    assert_eq!(
        message(log_container(&pod(&["app", "side"], &["init"]), "web", None)),
        "a container name must be specified for pod web, choose one of: [init app side]"
    );
    assert_eq!(
        message(log_container(&pod(&["app"], &[]), "web", Some("nope"))),
        "container nope is not valid for pod web"
    );
    assert_eq!(
        message(log_container(&pod(&[], &[]), "web", None)),
        "a container name must be specified for pod web"
    );
}

fn with_status(status: Value) -> Value {
    json!({ "status": { "containerStatuses": [status] } })
}

#[test]
fn the_instance_read_is_kubelets_and_one_without_a_log_is_refused_with_its_words() {
    let id = "containerd://abc";
    let running =
        json!({ "name": "app", "containerID": "containerd://new", "state": { "running": {} } });
    let cases: &[(Value, bool, Result<&str, &str>)] = &[
        (running.clone(), false, Ok("new")),
        (
            json!({ "name": "app", "state": { "waiting": { "reason": "ContainerCreating" } } }),
            false,
            Err("container \"app\" in pod \"web\" is waiting to start: ContainerCreating"),
        ),
        (
            json!({ "name": "app", "state": { "waiting": { "reason": "ErrImagePull" } } }),
            false,
            Err("container \"app\" in pod \"web\" is waiting to start: image can't be pulled"),
        ),
        (
            json!({ "name": "app", "state": { "waiting": { "reason": "ImagePullBackOff" } } }),
            false,
            Err("container \"app\" in pod \"web\" is waiting to start: trying and failing to pull image"),
        ),
        // CrashLoopBackOff: the last run's log is read.
        (
            json!({ "name": "app", "state": { "waiting": { "reason": "CrashLoopBackOff" } },
                    "lastState": { "terminated": { "containerID": id } } }),
            false,
            Ok("abc"),
        ),
        (json!({ "name": "app", "state": { "terminated": { "containerID": id } } }), false, Ok("abc")),
        (
            json!({ "name": "app", "state": { "terminated": {} } }),
            false,
            Err("container \"app\" in pod \"web\" is terminated"),
        ),
        (
            running.clone(),
            true,
            Err("previous terminated container \"app\" in pod \"web\" not found"),
        ),
        (
            json!({ "name": "app", "containerID": "containerd://new", "state": { "running": {} },
                    "lastState": { "terminated": { "containerID": id } } }),
            true,
            Ok("abc"),
        ),
        (
            json!({ "name": "other", "state": { "running": {} } }),
            false,
            Err("container \"app\" in pod \"web\" is not available"),
        ),
    ];
    for (status, previous, expected) in cases {
        let result = log_instance(&with_status(status.clone()), "web", "app", *previous);
        match expected {
            Ok(instance) => assert_eq!(result.unwrap(), *instance, "{status} {previous}"),
            Err(expected) => assert_eq!(message(result), *expected, "{status}"),
        }
    }
}

#[test]
fn the_agent_is_found_at_the_internal_ip_and_daemon_port() {
    let node = json!({ "status": {
        "addresses": [
            { "type": "Hostname", "address": "agent-1" },
            { "type": "InternalIP", "address": "10.0.0.7" },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 41234 } },
    }});
    assert_eq!(node_agent_address(&node), Some("10.0.0.7:41234".parse().unwrap()));
    let bare =
        json!({ "status": { "addresses": [{ "type": "ExternalIP", "address": "192.0.2.1" }] } });
    assert_eq!(node_agent_address(&bare), Some("192.0.2.1:10250".parse().unwrap()));
    assert_eq!(node_agent_address(&json!({ "status": {} })), None);
}
