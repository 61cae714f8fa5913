#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStatus, PodCondition,
    PodReadinessGate, PodStatus, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::pods::observed::{ProbeResults, StartFailure};
use crate::pods::testing::*;

fn failure(reason: &str, message: &str) -> StartFailure {
    StartFailure { reason: reason.to_owned(), message: message.to_owned() }
}

fn policy(policy: &'static str) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| pod.spec.as_mut().unwrap().restart_policy = Some(policy.to_owned())
}

fn inits(names: &[&str]) -> impl FnOnce(&mut Pod) {
    let containers: Vec<Container> = names.iter().map(|n| container(n)).collect();
    move |pod: &mut Pod| pod.spec.as_mut().unwrap().init_containers = Some(containers)
}

fn sidecar(name: &str) -> Container {
    Container { restart_policy: Some("Always".to_owned()), ..container(name) }
}

fn readiness_probe(pod: &mut Pod) {
    pod.spec.as_mut().unwrap().containers[0].readiness_probe = Some(Probe::default());
}

fn with_failure(mut observed: Observed, name: &str, f: StartFailure) -> Observed {
    observed.start_failures.insert(name.to_owned(), f);
    observed
}

fn ready_probe(mut observed: Observed, id: &str, ready: bool) -> Observed {
    observed
        .probes
        .insert(id.to_owned(), ProbeResults { readiness: Some(ready), ..ProbeResults::default() });
    observed
}

fn condition_of<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
    status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn kubectl_columns_follow_the_containers() {
    let cases: Vec<(&str, Pod, Observed, &str, Columns)> = vec![
        (
            "no sandbox yet",
            pod(),
            Observed::default(),
            "Pending",
            columns("0/1", "ContainerCreating", 0),
        ),
        (
            "running without readiness probe is ready",
            pod(),
            observed(vec![running("app", "c1", 0, 30)]),
            "Running",
            columns("1/1", "Running", 0),
        ),
        (
            "readiness probe not run yet",
            with(pod(), readiness_probe),
            observed(vec![running("app", "c1", 0, 30)]),
            "Running",
            columns("0/1", "Running", 0),
        ),
        (
            "readiness probe succeeded",
            with(pod(), readiness_probe),
            ready_probe(observed(vec![running("app", "c1", 0, 30)]), "c1", true),
            "Running",
            columns("1/1", "Running", 0),
        ),
        (
            "crash loop shows back-off and restarts",
            pod(),
            with_failure(
                observed(vec![exited("app", "c4", 3, 1, 5), exited("app", "c3", 2, 1, 40)]),
                "app",
                failure("CrashLoopBackOff", "back-off 40s restarting failed container=app"),
            ),
            "Running",
            columns("0/1", "CrashLoopBackOff", 3),
        ),
        (
            "exited container about to restart shows its exit",
            pod(),
            observed(vec![exited("app", "c1", 0, 2, 1)]),
            "Running",
            columns("0/1", "Error", 0),
        ),
        (
            "success with restartPolicy Never completes",
            with(pod(), policy("Never")),
            observed(vec![exited("app", "c1", 0, 0, 1)]),
            "Succeeded",
            columns("0/1", "Completed", 0),
        ),
        (
            "failure with restartPolicy Never fails",
            with(pod(), policy("Never")),
            observed(vec![exited("app", "c1", 0, 1, 1)]),
            "Failed",
            columns("0/1", "Error", 0),
        ),
        (
            "OOM kill with restartPolicy OnFailure keeps running",
            with(pod(), policy("OnFailure")),
            observed(vec![with(exited("app", "c1", 0, 137, 1), |c| {
                c.reason = Some("OOMKilled".to_owned())
            })]),
            "Running",
            columns("0/1", "OOMKilled", 0),
        ),
        (
            "image pull error",
            pod(),
            with_failure(observed(vec![]), "app", failure("ErrImagePull", "not found")),
            "Pending",
            columns("0/1", "ErrImagePull", 0),
        ),
        (
            "image pull back-off",
            pod(),
            with_failure(
                observed(vec![]),
                "app",
                failure("ImagePullBackOff", "Back-off pulling image \"nginx:1.27\""),
            ),
            "Pending",
            columns("0/1", "ImagePullBackOff", 0),
        ),
        (
            "missing configmap",
            pod(),
            with_failure(
                observed(vec![]),
                "app",
                failure("CreateContainerConfigError", "configmap \"x\" not found"),
            ),
            "Pending",
            columns("0/1", "CreateContainerConfigError", 0),
        ),
        (
            "first init container running",
            with(pod(), inits(&["migrate", "seed"])),
            observed(vec![running("migrate", "i1", 0, 3)]),
            "Pending",
            columns("0/1", "Init:0/2", 0),
        ),
        (
            "second init container running",
            with(pod(), inits(&["migrate", "seed"])),
            observed(vec![exited("migrate", "i1", 0, 0, 3), running("seed", "i2", 0, 2)]),
            "Pending",
            columns("0/1", "Init:1/2", 0),
        ),
        (
            "init container failed with restartPolicy Never",
            with(with(pod(), inits(&["migrate"])), policy("Never")),
            observed(vec![exited("migrate", "i1", 0, 3, 3)]),
            "Failed",
            columns("0/1", "Init:Error", 0),
        ),
        (
            "init container crash-looping",
            with(pod(), inits(&["migrate"])),
            with_failure(
                observed(vec![exited("migrate", "i2", 2, 1, 3)]),
                "migrate",
                failure("CrashLoopBackOff", "back-off 20s"),
            ),
            "Pending",
            columns("0/1", "Init:CrashLoopBackOff", 2),
        ),
        (
            "init done and app running",
            with(pod(), inits(&["migrate"])),
            observed(vec![exited("migrate", "i1", 0, 0, 30), running("app", "c1", 0, 20)]),
            "Running",
            columns("1/1", "Running", 0),
        ),
        (
            "sidecar and app running count both",
            with(pod(), |p| {
                p.spec.as_mut().unwrap().init_containers = Some(vec![sidecar("proxy")])
            }),
            observed(vec![running("proxy", "s1", 1, 30), running("app", "c1", 0, 20)]),
            "Running",
            columns("2/2", "Running", 1),
        ),
        (
            "sidecar started but app not created yet",
            with(pod(), |p| {
                p.spec.as_mut().unwrap().init_containers = Some(vec![sidecar("proxy")])
            }),
            observed(vec![running("proxy", "s1", 0, 3)]),
            "Pending",
            columns("1/2", "PodInitializing", 0),
        ),
        (
            "deleted pod with running containers is terminating",
            with(pod(), |p| p.metadata.deletion_timestamp = Some(Time(ago(1)))),
            observed(vec![running("app", "c1", 0, 30)]),
            "Running",
            columns("1/1", "Terminating", 0),
        ),
        (
            "deleted pod whose container was killed fails",
            with(pod(), |p| p.metadata.deletion_timestamp = Some(Time(ago(1)))),
            observed(vec![exited("app", "c1", 0, 137, 1)]),
            "Failed",
            columns("0/1", "Error", 0),
        ),
        (
            "deleted pod whose container exited cleanly succeeds",
            with(pod(), |p| p.metadata.deletion_timestamp = Some(Time(ago(1)))),
            observed(vec![exited("app", "c1", 0, 0, 1)]),
            "Succeeded",
            columns("0/1", "Completed", 0),
        ),
    ];
    for (name, pod, observed, phase, expected) in cases {
        let status = pod_status(&pod, &observed, &["192.168.1.10".to_owned()], now());
        assert_eq!(status.phase.as_deref(), Some(phase), "{name}: phase");
        let with_status = with(pod.clone(), |p| p.status = Some(status.clone()));
        assert_eq!(kubectl(&with_status, &status), expected, "{name}: columns");
    }
}

#[test]
fn conditions_match_kubelet_wording() {
    // (case, pod, observed, [(type, status, reason, message)])
    type Expected = [(&'static str, &'static str, Option<&'static str>, Option<&'static str>); 5];
    let cases: Vec<(&str, Pod, Observed, Expected)> = vec![
        (
            "fresh pod",
            pod(),
            Observed::default(),
            [
                ("PodReadyToStartContainers", "False", None, None),
                ("Initialized", "True", None, None),
                ("Ready", "False", Some("ContainersNotReady"), Some("containers with unready status: [app]")),
                ("ContainersReady", "False", Some("ContainersNotReady"), Some("containers with unready status: [app]")),
                ("PodScheduled", "True", None, None),
            ],
        ),
        (
            "running and ready",
            pod(),
            observed(vec![running("app", "c1", 0, 3)]),
            [
                ("PodReadyToStartContainers", "True", None, None),
                ("Initialized", "True", None, None),
                ("Ready", "True", None, None),
                ("ContainersReady", "True", None, None),
                ("PodScheduled", "True", None, None),
            ],
        ),
        (
            "init container running",
            with(pod(), inits(&["migrate", "seed"])),
            observed(vec![running("migrate", "i1", 0, 3)]),
            [
                ("PodReadyToStartContainers", "True", None, None),
                ("Initialized", "False", Some("ContainersNotInitialized"), Some("containers with incomplete status: [migrate seed]")),
                ("Ready", "False", Some("ContainersNotReady"), Some("containers with unready status: [app]")),
                ("ContainersReady", "False", Some("ContainersNotReady"), Some("containers with unready status: [app]")),
                ("PodScheduled", "True", None, None),
            ],
        ),
        (
            "completed",
            with(pod(), policy("Never")),
            observed(vec![exited("app", "c1", 0, 0, 1)]),
            [
                ("PodReadyToStartContainers", "True", None, None),
                ("Initialized", "True", Some("PodCompleted"), None),
                ("Ready", "False", Some("PodCompleted"), None),
                ("ContainersReady", "False", Some("PodCompleted"), None),
                ("PodScheduled", "True", None, None),
            ],
        ),
        (
            "failed",
            with(pod(), policy("Never")),
            observed(vec![exited("app", "c1", 0, 1, 1)]),
            [
                ("PodReadyToStartContainers", "True", None, None),
                ("Initialized", "True", None, None),
                ("Ready", "False", Some("PodFailed"), None),
                ("ContainersReady", "False", Some("PodFailed"), None),
                ("PodScheduled", "True", None, None),
            ],
        ),
        (
            "readiness gate missing",
            with(pod(), |p| {
                p.spec.as_mut().unwrap().readiness_gates =
                    Some(vec![PodReadinessGate { condition_type: "example.com/lb".to_owned() }])
            }),
            observed(vec![running("app", "c1", 0, 3)]),
            [
                ("PodReadyToStartContainers", "True", None, None),
                ("Initialized", "True", None, None),
                ("Ready", "False", Some("ReadinessGatesNotReady"), Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")),
                ("ContainersReady", "True", None, None),
                ("PodScheduled", "True", None, None),
            ],
        ),
    ];
    for (name, pod, observed, expected) in cases {
        let status = pod_status(&pod, &observed, &[], now());
        let got: Vec<_> = status
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason, c.message))
            .collect();
        let expected: Vec<_> = expected
            .iter()
            .map(|(t, s, r, m)| {
                ((*t).to_owned(), (*s).to_owned(), r.map(str::to_owned), m.map(str::to_owned))
            })
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn transition_times_change_only_with_the_status() {
    let earlier = Time(ago(3600));
    let old = PodStatus {
        phase: Some("Running".to_owned()),
        conditions: Some(vec![
            PodCondition {
                type_: "Ready".to_owned(),
                status: "True".to_owned(),
                last_transition_time: Some(earlier.clone()),
                ..PodCondition::default()
            },
            PodCondition {
                type_: "PodScheduled".to_owned(),
                status: "True".to_owned(),
                last_transition_time: Some(earlier.clone()),
                ..PodCondition::default()
            },
            PodCondition {
                type_: "example.com/lb".to_owned(),
                status: "True".to_owned(),
                ..PodCondition::default()
            },
        ]),
        start_time: Some(earlier.clone()),
        ..PodStatus::default()
    };
    let pod = with(pod(), |p| p.status = Some(old));

    let still_ready = pod_status(&pod, &observed(vec![running("app", "c1", 0, 30)]), &[], now());
    assert_eq!(condition_of(&still_ready, "Ready").last_transition_time, Some(earlier.clone()));
    assert_eq!(
        condition_of(&still_ready, "PodScheduled").last_transition_time,
        Some(earlier.clone())
    );
    assert_eq!(
        condition_of(&still_ready, "ContainersReady").last_transition_time,
        Some(Time(now()))
    );
    assert_eq!(still_ready.start_time, Some(earlier.clone()), "start time is kept");
    assert_eq!(
        still_ready.conditions.as_ref().unwrap()[0].type_,
        "example.com/lb",
        "conditions kubelet does not own come first, untouched"
    );

    let not_ready = pod_status(&pod, &observed(vec![exited("app", "c1", 0, 1, 1)]), &[], now());
    assert_eq!(condition_of(&not_ready, "Ready").status, "False");
    assert_eq!(condition_of(&not_ready, "Ready").last_transition_time, Some(Time(now())));
}

#[test]
fn container_status_reports_ids_images_and_last_state() {
    let observed = observed(vec![running("app", "c2", 1, 10), exited("app", "c1", 0, 137, 12)]);
    let status = pod_status(&pod(), &observed, &["192.168.1.10".to_owned()], now());
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(app.container_id.as_deref(), Some("containerd://c2"));
    assert_eq!(app.image, "docker.io/library/nginx:1.27");
    assert_eq!(app.image_id, "docker.io/library/nginx@sha256:abc");
    assert_eq!(app.restart_count, 1);
    assert_eq!(app.started, Some(true));
    let running = app.state.as_ref().unwrap().running.as_ref().unwrap();
    assert_eq!(running.started_at, Some(Time(ago(10))));
    let last = app.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("Error")));
    assert_eq!(last.container_id.as_deref(), Some("containerd://c1"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.7"));
    assert_eq!(status.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(status.start_time, Some(Time(now())));
}

#[test]
fn statuses_are_sorted_by_name_and_init_statuses_follow_the_spec() {
    let pod =
        with(pod_with(vec![container("zeta"), container("alpha")]), inits(&["second", "first"]));
    let status = pod_status(&pod, &Observed::default(), &[], now());
    let names = |list: &Option<Vec<ContainerStatus>>| -> Vec<String> {
        list.iter().flatten().map(|s| s.name.clone()).collect()
    };
    assert_eq!(names(&status.container_statuses), ["alpha", "zeta"]);
    assert_eq!(names(&status.init_container_statuses), ["second", "first"]);
    let waiting = |s: &ContainerStatus| s.state.clone().unwrap().waiting.unwrap().reason.unwrap();
    assert_eq!(waiting(&status.container_statuses.unwrap()[0]), "PodInitializing");
    assert_eq!(waiting(&status.init_container_statuses.unwrap()[0]), "PodInitializing");
}

#[test]
fn terminal_phase_is_never_left() {
    let pod = with(pod(), |p| {
        p.status = Some(PodStatus { phase: Some("Succeeded".to_owned()), ..PodStatus::default() })
    });
    let status = pod_status(&pod, &Observed::default(), &[], now());
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
}

#[test]
fn active_deadline_fails_the_pod() {
    let pod = with(pod(), |p| {
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        p.status = Some(PodStatus {
            phase: Some("Running".to_owned()),
            start_time: Some(Time(ago(61))),
            ..PodStatus::default()
        });
    });
    let status = pod_status(&pod, &observed(vec![running("app", "c1", 0, 60)]), &[], now());
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let with_status = with(pod.clone(), |p| p.status = Some(status.clone()));
    assert_eq!(kubectl(&with_status, &status).status, "DeadlineExceeded");
}

#[test]
fn vanished_running_container_counts_as_a_restart() {
    let old = PodStatus {
        phase: Some("Running".to_owned()),
        container_statuses: Some(vec![ContainerStatus {
            name: "app".to_owned(),
            restart_count: 2,
            state: Some(ApiState {
                running: Some(ContainerStateRunning { started_at: Some(Time(ago(100))) }),
                ..ApiState::default()
            }),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    };
    let pod = with(pod(), |p| p.status = Some(old));
    let status = pod_status(&pod, &observed(vec![]), &[], now());
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(app.restart_count, 3);
    let last = app.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("ContainerStatusUnknown")));
    assert_eq!(status.phase.as_deref(), Some("Running"), "a stopped container is not Pending");
}

#[test]
fn host_network_pod_takes_the_node_ips() {
    let pod = with(pod(), |p| p.spec.as_mut().unwrap().host_network = Some(true));
    let sandbox =
        crate::pods::observed::SandboxState { ips: vec![], host_network: true, ..sandbox() };
    let observed = Observed { sandbox: Some(sandbox), ..Observed::default() };
    let hosts = ["192.168.1.10".to_owned(), "fd00::10".to_owned()];
    let status = pod_status(&pod, &observed, &hosts, now());
    let ips: Vec<_> = status.pod_ips.clone().unwrap().into_iter().map(|ip| ip.ip).collect();
    assert_eq!(ips, hosts);
    assert_eq!(status.host_ip.as_deref(), Some("192.168.1.10"));
    let ready_to_start = condition_of(&status, "PodReadyToStartContainers");
    assert_eq!(ready_to_start.status, "True", "a host-network sandbox needs no pod IP");
}

#[test]
fn dual_stack_ips_follow_the_node_family() {
    let mut observed = observed(vec![]);
    observed.sandbox.as_mut().unwrap().ips = vec!["fd00::7".to_owned(), "10.244.1.7".to_owned()];
    let v4_node = pod_status(&pod(), &observed, &["192.168.1.10".to_owned()], now());
    assert_eq!(v4_node.pod_ip.as_deref(), Some("10.244.1.7"));
    let v6_node = pod_status(&pod(), &observed, &["fd00::10".to_owned()], now());
    assert_eq!(v6_node.pod_ip.as_deref(), Some("fd00::7"));
}
