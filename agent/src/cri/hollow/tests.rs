#![allow(clippy::unwrap_used)]

use k8s_cri::v1::{
    ContainerMetadata, ContainerStateValue, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    PodSandboxMetadata, PodSandboxStateValue,
};

use super::*;

fn addresses(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn addresses_come_from_the_pod_cidr_lowest_free_first() {
    let exhausted = |cidr: &str| Err(AllocationError::Exhausted(cidr.into()));
    let not_ipv4 = |cidr: &str| Err(AllocationError::NotIpv4(cidr.into()));
    let cases: [(&str, &[&str], Result<Ipv4Addr, AllocationError>); 8] = [
        ("10.32.5.0/24", &[], Ok("10.32.5.2".parse().unwrap())),
        ("10.32.5.0/24", &["10.32.5.2", "10.32.5.3"], Ok("10.32.5.4".parse().unwrap())),
        ("10.32.5.0/24", &["10.32.5.3"], Ok("10.32.5.2".parse().unwrap())),
        // A host address in the CIDR means its network.
        ("10.32.5.77/24", &[], Ok("10.32.5.2".parse().unwrap())),
        // A /30 has one address besides network, gateway and broadcast.
        ("10.0.0.0/30", &["10.0.0.2"], exhausted("10.0.0.0/30")),
        ("10.0.0.0/31", &[], exhausted("10.0.0.0/31")),
        ("fd00::/64", &[], not_ipv4("fd00::/64")),
        ("10.32.5.0", &[], not_ipv4("10.32.5.0")),
    ];
    for (cidr, used, expected) in cases {
        assert_eq!(next_free_address(cidr, &addresses(used)), expected, "{cidr} {used:?}");
    }
    let full: Vec<String> = (2..255).map(|i| format!("10.32.5.{i}")).collect();
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    assert_eq!(next_free_address("10.32.5.0/24", &addresses(&full)), exhausted("10.32.5.0/24"));
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn sandbox_filters_match_every_set_field() {
    let sandbox = PodSandboxStatus {
        id: "abc123".into(),
        state: PodSandboxState::SandboxReady as i32,
        labels: labels(&[("uid", "u1"), ("app", "web")]),
        ..Default::default()
    };
    let ready = Some(PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 });
    let not_ready = Some(PodSandboxStateValue { state: PodSandboxState::SandboxNotready as i32 });
    let cases = [
        (PodSandboxFilter::default(), true),
        (PodSandboxFilter { id: "abc".into(), ..Default::default() }, true),
        (PodSandboxFilter { id: "abd".into(), ..Default::default() }, false),
        (PodSandboxFilter { state: ready, ..Default::default() }, true),
        (PodSandboxFilter { state: not_ready, ..Default::default() }, false),
        (PodSandboxFilter { label_selector: labels(&[("uid", "u1")]), ..Default::default() }, true),
        (
            PodSandboxFilter {
                label_selector: labels(&[("uid", "u1"), ("app", "db")]),
                ..Default::default()
            },
            false,
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(sandbox_matches(&filter, &sandbox), expected, "{filter:?}");
    }
}

fn sandbox_config(name: &str, host: bool) -> PodSandboxConfig {
    let network = if host { NamespaceMode::Node } else { NamespaceMode::Pod };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: format!("/logs/{name}"),
        labels: labels(&[("io.kubernetes.pod.uid", &format!("uid-{name}"))]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: network as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, attempt: u32) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt }),
        image: Some(ImageSpec { image: "busybox:1".into(), ..Default::default() }),
        log_path: format!("{name}/{attempt}.log"),
        labels: labels(&[("io.kubernetes.container.name", name)]),
        ..Default::default()
    }
}

fn runtime(cidr: Option<&str>) -> (HollowRuntime, watch::Sender<Option<String>>) {
    let (sender, receiver) = watch::channel(cidr.map(str::to_owned));
    (HollowRuntime::new(receiver), sender)
}

fn condition(status: &RuntimeStatus, kind: &str) -> bool {
    status.conditions.iter().find(|c| c.r#type == kind).unwrap().status
}

#[tokio::test]
async fn the_network_is_ready_once_the_node_has_a_pod_cidr() {
    let (runtime, cidr) = runtime(None);
    let status = runtime.status().await.unwrap();
    assert!(condition(&status, "RuntimeReady"));
    assert!(!condition(&status, "NetworkReady"));
    let error = runtime.run_pod_sandbox(sandbox_config("web", false), "").await.unwrap_err();
    assert!(error.to_string().contains("no pod CIDR"), "{error}");
    // A host-network pod needs no address.
    runtime.run_pod_sandbox(sandbox_config("host", true), "").await.unwrap();

    cidr.send_replace(Some("10.32.7.0/24".into()));
    assert!(condition(&runtime.status().await.unwrap(), "NetworkReady"));
    let version = runtime.version().await.unwrap();
    assert_eq!(version.runtime_name, "hollow");
}

#[tokio::test]
async fn sandboxes_get_addresses_and_give_them_back_when_stopped() {
    let (runtime, _cidr) = runtime(Some("10.32.7.0/24"));
    let ip = |status: &PodSandboxStatus| status.network.as_ref().unwrap().ip.clone();
    let first = runtime.run_pod_sandbox(sandbox_config("a", false), "").await.unwrap();
    let second = runtime.run_pod_sandbox(sandbox_config("b", false), "").await.unwrap();
    let host = runtime.run_pod_sandbox(sandbox_config("h", true), "").await.unwrap();
    let first_status = runtime.pod_sandbox_status(&first).await.unwrap();
    assert_eq!(ip(&first_status), "10.32.7.2");
    assert_eq!(first_status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(first_status.metadata.as_ref().unwrap().name, "a");
    assert_eq!(ip(&runtime.pod_sandbox_status(&second).await.unwrap()), "10.32.7.3");
    let host_status = runtime.pod_sandbox_status(&host).await.unwrap();
    assert_eq!(ip(&host_status), "");
    let namespaces = host_status.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(namespaces.network, NamespaceMode::Node as i32);

    runtime.stop_pod_sandbox(&first).await.unwrap();
    runtime.stop_pod_sandbox(&first).await.unwrap();
    let stopped = runtime.pod_sandbox_status(&first).await.unwrap();
    assert_eq!(stopped.state, PodSandboxState::SandboxNotready as i32);
    let third = runtime.run_pod_sandbox(sandbox_config("c", false), "").await.unwrap();
    assert_eq!(ip(&runtime.pod_sandbox_status(&third).await.unwrap()), "10.32.7.2");

    // The same pod attempt cannot have two sandboxes.
    let error = runtime.run_pod_sandbox(sandbox_config("b", false), "").await.unwrap_err();
    assert!(error.to_string().contains("name is reserved"), "{error}");

    runtime.remove_pod_sandbox(&first).await.unwrap();
    runtime.remove_pod_sandbox(&first).await.unwrap();
    assert!(runtime.pod_sandbox_status(&first).await.unwrap_err().is_not_found());
    assert!(runtime.stop_pod_sandbox(&first).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn containers_run_from_start_until_stopped() {
    let (runtime, _cidr) = runtime(Some("10.32.7.0/24"));
    let config = sandbox_config("web", false);
    let sandbox = runtime.run_pod_sandbox(config.clone(), "").await.unwrap();
    let id = runtime
        .create_container(&sandbox, container_config("app", 0), config.clone())
        .await
        .unwrap();
    let state = |status: ContainerStatus| ContainerState::try_from(status.state).unwrap();

    let created = runtime.container_status(&id).await.unwrap();
    assert_eq!(state(created.clone()), ContainerState::ContainerCreated);
    assert_eq!(created.log_path, "/logs/web/app/0.log");
    assert!(created.image_ref.starts_with("sha256:") && created.image_ref.len() == 71);
    assert!(runtime.exec_sync(&id, vec!["true".into()], Duration::ZERO).await.is_err());

    runtime.start_container(&id).await.unwrap();
    let running = runtime.container_status(&id).await.unwrap();
    assert_eq!(state(running.clone()), ContainerState::ContainerRunning);
    assert!(running.started_at >= running.created_at);
    let output = runtime.exec_sync(&id, vec!["cat".into()], Duration::ZERO).await.unwrap();
    assert_eq!(output, ExecOutput { stdout: vec![], stderr: vec![], exit_code: 0 });
    assert!(runtime.start_container(&id).await.is_err(), "a running container starts once");
    let stream = StreamRequest::Exec(Default::default());
    assert!(runtime.stream_url(stream).await.is_err());

    runtime.stop_container(&id, Duration::from_secs(30)).await.unwrap();
    runtime.stop_container(&id, Duration::from_secs(30)).await.unwrap();
    let exited = runtime.container_status(&id).await.unwrap();
    assert_eq!(state(exited.clone()), ContainerState::ContainerExited);
    assert_eq!((exited.exit_code, exited.reason.as_str()), (0, "Completed"));
    assert!(exited.finished_at >= exited.started_at);

    // The same container attempt cannot be created twice; the next attempt can.
    let again = runtime.create_container(&sandbox, container_config("app", 0), config.clone());
    assert!(again.await.unwrap_err().to_string().contains("name is reserved"));
    runtime.create_container(&sandbox, container_config("app", 1), config.clone()).await.unwrap();

    runtime.remove_container(&id).await.unwrap();
    runtime.remove_container(&id).await.unwrap();
    assert!(runtime.container_status(&id).await.unwrap_err().is_not_found());
    assert!(runtime.start_container(&id).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn stopping_a_sandbox_stops_its_containers_and_removing_it_removes_them() {
    let (runtime, _cidr) = runtime(Some("10.32.7.0/24"));
    let config = sandbox_config("web", false);
    let sandbox = runtime.run_pod_sandbox(config.clone(), "").await.unwrap();
    let other = runtime.run_pod_sandbox(sandbox_config("db", false), "").await.unwrap();
    let app = runtime
        .create_container(&sandbox, container_config("app", 0), config.clone())
        .await
        .unwrap();
    runtime.start_container(&app).await.unwrap();
    let created = runtime
        .create_container(&sandbox, container_config("side", 0), config.clone())
        .await
        .unwrap();
    let kept = runtime
        .create_container(&other, container_config("db", 0), sandbox_config("db", false))
        .await
        .unwrap();

    let filter = |state: ContainerState, sandbox: &str| ContainerFilter {
        state: Some(ContainerStateValue { state: state as i32 }),
        pod_sandbox_id: sandbox.into(),
        ..Default::default()
    };
    let ids = |list: Vec<Container>| {
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let running = runtime.list_containers(filter(ContainerState::ContainerRunning, "")).await;
    assert_eq!(ids(running.unwrap()), std::slice::from_ref(&app));
    let by_label = ContainerFilter {
        label_selector: labels(&[("io.kubernetes.container.name", "db")]),
        ..Default::default()
    };
    assert_eq!(ids(runtime.list_containers(by_label).await.unwrap()), std::slice::from_ref(&kept));

    runtime.stop_pod_sandbox(&sandbox).await.unwrap();
    let exited = runtime.list_containers(filter(ContainerState::ContainerExited, &sandbox)).await;
    let mut both = vec![app.clone(), created.clone()];
    both.sort();
    assert_eq!(ids(exited.unwrap()), both);
    let refused = runtime.create_container(&sandbox, container_config("late", 0), config).await;
    assert!(refused.unwrap_err().to_string().contains("not ready"));

    runtime.remove_pod_sandbox(&sandbox).await.unwrap();
    assert_eq!(ids(runtime.list_containers(ContainerFilter::default()).await.unwrap()), [kept]);
    let sandboxes = runtime.list_pod_sandboxes(PodSandboxFilter::default()).await.unwrap();
    assert_eq!(sandboxes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [other.as_str()]);
    assert_eq!(sandboxes[0].labels["io.kubernetes.pod.uid"], "uid-db");
}

#[tokio::test]
async fn images_are_pulled_at_once_and_then_present() {
    let (runtime, _cidr) = runtime(None);
    assert_eq!(runtime.image_status("busybox:1").await.unwrap(), None);
    let id = runtime.pull_image("busybox:1", None).await.unwrap();
    let image = runtime.image_status("busybox:1").await.unwrap().unwrap();
    assert_eq!(image.id, id);
    assert_eq!(image.repo_tags, ["busybox:1"]);
    assert_eq!(runtime.pull_image("busybox:1", None).await.unwrap(), id, "ids are stable");
    assert_ne!(runtime.pull_image("busybox:2", None).await.unwrap(), id);
    assert!(runtime.pull_image("", None).await.is_err());
}

#[tokio::test]
async fn clones_share_the_node_and_runtimes_do_not_share_ids() {
    let (first, _cidr) = runtime(Some("10.32.7.0/24"));
    let (second, _other) = runtime(Some("10.32.8.0/24"));
    let a = first.run_pod_sandbox(sandbox_config("a", false), "").await.unwrap();
    let b = second.run_pod_sandbox(sandbox_config("a", false), "").await.unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    assert!(first.clone().pod_sandbox_status(&a).await.is_ok());
    assert!(second.pod_sandbox_status(&a).await.unwrap_err().is_not_found());
}
