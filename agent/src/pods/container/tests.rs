#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSecurityContext, ResourceFieldSelector, ResourceRequirements,
    SecretKeySelector, SecurityContext, ServicePort, ServiceSpec, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use super::*;
use crate::pods::testing::*;

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar { name: name.to_owned(), value: None, value_from: Some(source) }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector { api_version: None, field_path: path.to_owned() }),
        ..EnvVarSource::default()
    }
}

fn resource(resource: &str, divisor: Option<&str>) -> EnvVarSource {
    EnvVarSource {
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: None,
            divisor: divisor.map(|d| Quantity(d.to_owned())),
            resource: resource.to_owned(),
        }),
        ..EnvVarSource::default()
    }
}

fn config_map_key(name: &str, key: &str, optional: bool) -> EnvVarSource {
    EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: name.to_owned(),
            key: key.to_owned(),
            optional: Some(optional),
        }),
        ..EnvVarSource::default()
    }
}

fn secret_key(name: &str, key: &str, optional: bool) -> EnvVarSource {
    EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: name.to_owned(),
            key: key.to_owned(),
            optional: Some(optional),
        }),
        ..EnvVarSource::default()
    }
}

fn context() -> Context {
    let settings = ConfigMap {
        metadata: ObjectMeta { name: Some("settings".to_owned()), ..ObjectMeta::default() },
        data: Some(map(&[("mode", "fast"), ("LEVEL", "debug")])),
        ..ConfigMap::default()
    };
    let credentials = Secret {
        metadata: ObjectMeta { name: Some("credentials".to_owned()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([("password".to_owned(), ByteString(b"s3cret".to_vec()))])),
        ..Secret::default()
    };
    let service = |namespace: &str, name: &str, ip: &str, port: i32| Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_owned()),
            ports: Some(vec![ServicePort {
                name: Some("https".to_owned()),
                port,
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    Context {
        restart_count: 3,
        image_ref: Some("sha256:feed".to_owned()),
        config_maps: BTreeMap::from([("settings".to_owned(), settings)]),
        secrets: BTreeMap::from([("credentials".to_owned(), credentials)]),
        services: vec![
            service("default", "kubernetes", "10.96.0.1", 443),
            service("default", "redis-primary", "10.96.0.20", 6379),
            service("other", "elsewhere", "10.96.0.30", 80),
            service("default", "headless", "None", 80),
        ],
        pod_ips: vec!["10.244.1.7".to_owned(), "fd00::7".to_owned()],
        host_ips: vec!["192.168.1.10".to_owned()],
        node_allocatable: quantities(&[("cpu", "4"), ("memory", "8Gi")]),
        memory_capacity: 16 << 30,
        volumes: BTreeMap::from([
            (
                "data".to_owned(),
                HostVolume {
                    host_path: "/var/lib/kubelet/pods/u/volumes/data".to_owned(),
                    read_only: false,
                },
            ),
            (
                "claim".to_owned(),
                HostVolume { host_path: "/mnt/claim".to_owned(), read_only: true },
            ),
        ]),
        etc_hosts: Some("/var/lib/kubelet/pods/u/etc-hosts".to_owned()),
        termination_message_file: Some("/var/lib/kubelet/pods/u/containers/app/1a2b".to_owned()),
        ..Context::default()
    }
}

fn env_of(config: &ContainerConfig) -> BTreeMap<String, String> {
    config.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect()
}

fn pod_of(container: Container) -> Pod {
    with(pod_with(vec![container]), |p| {
        p.metadata.annotations = Some(map(&[("team", "blue")]));
        p.spec.as_mut().unwrap().service_account_name = Some("builder".to_owned());
        p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(30);
    })
}

#[test]
fn identity_labels_annotations_and_log_path() {
    let app = container("app");
    let config = config(&pod_of(app.clone()), &app, &context()).unwrap();
    let metadata = config.metadata.as_ref().unwrap();
    assert_eq!((metadata.name.as_str(), metadata.attempt), ("app", 3));
    let image = config.image.as_ref().unwrap();
    assert_eq!(
        (image.image.as_str(), image.user_specified_image.as_str()),
        ("sha256:feed", "nginx:1.27")
    );
    assert_eq!(config.log_path, "app/3.log");
    let label = |key: &str| config.labels.get(key).map(String::as_str);
    assert_eq!(label(CONTAINER_NAME_LABEL), Some("app"));
    assert_eq!(label(POD_UID_LABEL), Some(UID));
    let annotation = |key: &str| config.annotations.get(key).map(String::as_str);
    assert_eq!(annotation(RESTART_COUNT_ANNOTATION), Some("3"));
    assert_eq!(annotation(TERMINATION_MESSAGE_PATH_ANNOTATION), Some("/dev/termination-log"));
    assert_eq!(annotation(TERMINATION_MESSAGE_POLICY_ANNOTATION), Some("File"));
    assert_eq!(annotation("io.kubernetes.pod.terminationGracePeriod"), Some("30"));
    assert_eq!(annotation(HASH_ANNOTATION), Some(spec_hash(&app).as_str()));
}

#[test]
fn spec_hash_matches_kubelet() {
    // The value kubelet's own test pins for this container.
    let container = Container {
        name: "test_container".to_owned(),
        image: Some("foo/image:v1".to_owned()),
        args: Some(vec!["/bin/sh".to_owned()]),
        ..Container::default()
    };
    assert_eq!(spec_hash(&container), "8e45cbd0");
    let other = Container { image: Some("foo/image:v2".to_owned()), ..container.clone() };
    assert_ne!(spec_hash(&other), spec_hash(&container));
}

#[test]
fn environment_resolves_every_source() {
    let app = Container {
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "settings".to_owned(),
                optional: None,
            }),
            prefix: Some("CFG_".to_owned()),
            secret_ref: None,
        }]),
        env: Some(vec![
            value("GREETING", "hello"),
            value("MESSAGE", "$(GREETING) world $(MISSING) $$(GREETING)"),
            value("CFG_mode", "overridden"),
            from("MODE", config_map_key("settings", "mode", false)),
            from("PASSWORD", secret_key("credentials", "password", false)),
            from("OPTIONAL", config_map_key("absent", "x", true)),
            from("OPTIONAL_KEY", secret_key("credentials", "absent", true)),
            from("POD_NAME", field("metadata.name")),
            from("POD_NAMESPACE", field("metadata.namespace")),
            from("POD_UID", field("metadata.uid")),
            from("APP_LABEL", field("metadata.labels['app']")),
            from("ANNOTATIONS", field("metadata.annotations")),
            from("NODE", field("spec.nodeName")),
            from("ACCOUNT", field("spec.serviceAccountName")),
            from("HOST_IP", field("status.hostIP")),
            from("POD_IP", field("status.podIP")),
            from("POD_IPS", field("status.podIPs")),
            from("CPU_MILLIS", resource("limits.cpu", Some("1m"))),
            from("CPU_LIMIT", resource("limits.cpu", None)),
            from("MEMORY_MIB", resource("limits.memory", Some("1Mi"))),
            from("CPU_REQUEST", resource("requests.cpu", Some("1m"))),
            value("USES_SERVICE", "$(REDIS_PRIMARY_SERVICE_HOST)"),
        ]),
        resources: Some(ResourceRequirements {
            limits: Some(quantities(&[("memory", "512Mi")])),
            requests: Some(quantities(&[("cpu", "250m")])),
            ..ResourceRequirements::default()
        }),
        ..container("app")
    };
    let env = env_of(&config(&pod_of(app.clone()), &app, &context()).unwrap());
    let expected = [
        ("CFG_LEVEL", "debug"),
        ("CFG_mode", "overridden"),
        ("GREETING", "hello"),
        ("MESSAGE", "hello world $(MISSING) $(GREETING)"),
        ("MODE", "fast"),
        ("PASSWORD", "s3cret"),
        ("POD_NAME", "web"),
        ("POD_NAMESPACE", "default"),
        ("POD_UID", UID),
        ("APP_LABEL", "web"),
        ("ANNOTATIONS", "team=\"blue\""),
        ("NODE", "n1"),
        ("ACCOUNT", "builder"),
        ("HOST_IP", "192.168.1.10"),
        ("POD_IP", "10.244.1.7"),
        ("POD_IPS", "10.244.1.7,fd00::7"),
        ("CPU_MILLIS", "4000"),
        ("CPU_LIMIT", "4"),
        ("MEMORY_MIB", "512"),
        ("CPU_REQUEST", "250"),
        ("USES_SERVICE", "10.96.0.20"),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
        ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ("REDIS_PRIMARY_SERVICE_HOST", "10.96.0.20"),
        ("REDIS_PRIMARY_PORT", "tcp://10.96.0.20:6379"),
    ];
    for (name, value) in expected {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    for absent in ["OPTIONAL", "OPTIONAL_KEY", "ELSEWHERE_SERVICE_HOST", "HEADLESS_SERVICE_HOST"] {
        assert!(!env.contains_key(absent), "{absent} must not be set");
    }
}

#[test]
fn service_links_can_be_turned_off_but_kubernetes_stays() {
    let app = container("app");
    let pod =
        with(pod_of(app.clone()), |p| p.spec.as_mut().unwrap().enable_service_links = Some(false));
    let env = env_of(&config(&pod, &app, &context()).unwrap());
    assert!(env.contains_key("KUBERNETES_SERVICE_HOST"));
    assert!(!env.contains_key("REDIS_PRIMARY_SERVICE_HOST"));
}

#[test]
fn command_and_args_expand_against_the_environment() {
    let app = Container {
        command: Some(vec!["sh".to_owned(), "-c".to_owned()]),
        args: Some(vec!["echo $(GREETING) from $(POD_NAME) $(NOPE)".to_owned()]),
        env: Some(vec![value("GREETING", "hi"), from("POD_NAME", field("metadata.name"))]),
        working_dir: Some("/srv".to_owned()),
        ..container("app")
    };
    let config = config(&pod_of(app.clone()), &app, &context()).unwrap();
    assert_eq!(config.command, ["sh", "-c"]);
    assert_eq!(config.args, ["echo hi from web $(NOPE)"]);
    assert_eq!(config.working_dir, "/srv");
}

#[test]
fn missing_references_fail_with_kubelet_messages() {
    let mounted =
        |mount: VolumeMount| Container { volume_mounts: Some(vec![mount]), ..container("app") };
    let cases: Vec<(&str, Container, &str)> = vec![
        (
            "missing configmap",
            Container { env: Some(vec![from("X", config_map_key("x", "k", false))]), ..container("app") },
            "configmap \"x\" not found",
        ),
        (
            "missing configmap key",
            Container { env: Some(vec![from("X", config_map_key("settings", "k", false))]), ..container("app") },
            "couldn't find key k in ConfigMap default/settings",
        ),
        (
            "missing secret",
            Container { env: Some(vec![from("X", secret_key("y", "k", false))]), ..container("app") },
            "secret \"y\" not found",
        ),
        (
            "missing secret key",
            Container { env: Some(vec![from("X", secret_key("credentials", "k", false))]), ..container("app") },
            "couldn't find key k in Secret default/credentials",
        ),
        (
            "missing envFrom configmap",
            Container {
                env_from: Some(vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource { name: "gone".to_owned(), optional: Some(false) }),
                    ..EnvFromSource::default()
                }]),
                ..container("app")
            },
            "configmap \"gone\" not found",
        ),
        (
            "unsupported field",
            Container { env: Some(vec![from("X", field("spec.restartPolicy"))]), ..container("app") },
            "unsupported fieldPath: spec.restartPolicy",
        ),
        (
            "unknown resource",
            Container { env: Some(vec![from("X", resource("limits.gpu", None))]), ..container("app") },
            "unsupported container resource : limits.gpu",
        ),
        (
            "unknown volume",
            mounted(VolumeMount { name: "cache".to_owned(), mount_path: "/cache".to_owned(), ..VolumeMount::default() }),
            "cannot find volume \"cache\" to mount into container \"app\"",
        ),
        (
            "absolute subPath",
            mounted(VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                sub_path: Some("/etc".to_owned()),
                ..VolumeMount::default()
            }),
            "error SubPath `/etc` must not be an absolute path",
        ),
        (
            "subPath escaping the volume",
            mounted(VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                sub_path: Some("a/../../etc".to_owned()),
                ..VolumeMount::default()
            }),
            "unable to provision SubPath `a/../../etc`: must not contain '..'",
        ),
        (
            "subPathExpr with unset variables",
            mounted(VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                sub_path_expr: Some("$(POD_NAME)/$(B)/$(A)".to_owned()),
                ..VolumeMount::default()
            }),
            "missing value for A, B, POD_NAME",
        ),
        (
            "runAsNonRoot with root user",
            Container {
                security_context: Some(SecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(0),
                    ..SecurityContext::default()
                }),
                ..container("app")
            },
            "container's runAsUser breaks non-root policy (pod: \"web_default(0b1c2d3e-aaaa-bbbb-cccc-123456789abc)\", container: app)",
        ),
    ];
    for (name, app, message) in cases {
        let error = config(&pod_of(app.clone()), &app, &context()).unwrap_err();
        assert_eq!(error.to_string(), message, "{name}");
        let failure = StartFailure::from(&error);
        assert_eq!(failure.reason, "CreateContainerConfigError", "{name}");
    }
}

#[test]
fn image_user_is_checked_against_run_as_non_root() {
    let app = Container {
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        ..container("app")
    };
    let pod = pod_of(app.clone());
    let with_user = |user: ImageUser| Context { image_user: Some(user), ..context() };
    let root = config(&pod, &app, &with_user(ImageUser::Uid(0))).unwrap_err();
    assert!(matches!(root, ConfigError::ImageRunsAsRoot { .. }));
    let named = config(&pod, &app, &with_user(ImageUser::Name("nginx".to_owned()))).unwrap_err();
    assert!(named
        .to_string()
        .starts_with("container has runAsNonRoot and image has non-numeric user (nginx)"));
    let ok = config(&pod, &app, &with_user(ImageUser::Uid(101))).unwrap();
    let security = ok.linux.unwrap().security_context.unwrap();
    assert_eq!(security.run_as_user.unwrap().value, 101);
}

#[test]
fn resources_follow_requests_limits_and_qos() {
    // (case, requests, limits, shares, quota, memory limit, oom_score_adj)
    type Amounts = &'static [(&'static str, &'static str)];
    let cases: Vec<(&str, Amounts, Amounts, i64, i64, i64, i64)> = vec![
        ("best effort", &[], &[], 2, 0, 0, 1000),
        ("guaranteed", &[], &[("cpu", "500m"), ("memory", "1Gi")], 512, 50_000, 1 << 30, -997),
        (
            "burstable with memory request",
            &[("cpu", "100m"), ("memory", "1Gi")],
            &[],
            102,
            0,
            0,
            938,
        ),
        ("burstable with tiny request", &[("cpu", "1m")], &[], 2, 0, 0, 999),
        (
            "burstable with huge request",
            &[("memory", "16Gi")],
            &[("memory", "32Gi")],
            2,
            0,
            32 << 30,
            3,
        ),
        ("cpu limit only", &[("memory", "64Mi")], &[("cpu", "1500m")], 1536, 150_000, 0, 997),
    ];
    for (name, requests, limits, shares, quota, memory, oom) in cases {
        let app = Container {
            resources: Some(ResourceRequirements {
                requests: (!requests.is_empty()).then(|| quantities(requests)),
                limits: (!limits.is_empty()).then(|| quantities(limits)),
                ..ResourceRequirements::default()
            }),
            ..container("app")
        };
        let config = config(&pod_of(app.clone()), &app, &context()).unwrap();
        let resources = config.linux.unwrap().resources.unwrap();
        assert_eq!(
            (
                resources.cpu_shares,
                resources.cpu_quota,
                resources.cpu_period,
                resources.memory_limit_in_bytes,
                resources.oom_score_adj
            ),
            (shares, quota, 100_000, memory, oom),
            "{name}"
        );
    }
}

#[test]
fn mounts_include_volumes_hosts_file_and_termination_log() {
    let app = Container {
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                sub_path_expr: Some("$(POD_NAME)".to_owned()),
                mount_propagation: Some("HostToContainer".to_owned()),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "claim".to_owned(),
                mount_path: "/claim".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        env: Some(vec![from("POD_NAME", field("metadata.name"))]),
        ..container("app")
    };
    let config = config(&pod_of(app.clone()), &app, &context()).unwrap();
    let mounts: Vec<(String, String, bool, i32)> = config
        .mounts
        .iter()
        .map(|m| (m.container_path.clone(), m.host_path.clone(), m.readonly, m.propagation))
        .collect();
    let private = MountPropagation::PropagationPrivate as i32;
    assert_eq!(
        mounts,
        [
            (
                "/data".to_owned(),
                "/var/lib/kubelet/pods/u/volumes/data/web".to_owned(),
                false,
                MountPropagation::PropagationHostToContainer as i32
            ),
            ("/claim".to_owned(), "/mnt/claim".to_owned(), true, private),
            (
                "/etc/hosts".to_owned(),
                "/var/lib/kubelet/pods/u/etc-hosts".to_owned(),
                false,
                private
            ),
            (
                "/dev/termination-log".to_owned(),
                "/var/lib/kubelet/pods/u/containers/app/1a2b".to_owned(),
                false,
                private
            ),
        ]
    );

    let own_hosts = Container {
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: "/etc/hosts".to_owned(),
            ..VolumeMount::default()
        }]),
        ..container("app")
    };
    let built = super::config(
        &pod_of(own_hosts.clone()),
        &own_hosts,
        &Context { pod_ips: vec!["10.244.1.7".to_owned()], ..context() },
    )
    .unwrap();
    assert_eq!(built.mounts.iter().filter(|m| m.container_path == "/etc/hosts").count(), 1);
    let app = container("app");
    let no_ip =
        super::config(&pod_of(app.clone()), &app, &Context { pod_ips: vec![], ..context() })
            .unwrap();
    assert!(
        no_ip.mounts.iter().all(|m| m.container_path != "/etc/hosts"),
        "no hosts file without a pod IP"
    );
}

#[test]
fn security_context_merges_pod_and_container_settings() {
    let app = Container {
        security_context: Some(SecurityContext {
            run_as_user: Some(1001),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..SecurityContext::default()
        }),
        ..container("app")
    };
    let pod = with(pod_of(app.clone()), |p| {
        p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            fs_group: Some(2000),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        });
    });
    let security = config(&pod, &app, &context()).unwrap().linux.unwrap().security_context.unwrap();
    assert_eq!(security.run_as_user.unwrap().value, 1001);
    assert_eq!(security.run_as_group.unwrap().value, 3000);
    assert_eq!(security.supplemental_groups, [2000]);
    assert!(security.readonly_rootfs && security.no_new_privs && !security.privileged);
    let caps = security.capabilities.unwrap();
    assert_eq!(
        (caps.add_capabilities, caps.drop_capabilities),
        (vec!["NET_ADMIN".to_owned()], vec!["ALL".to_owned()])
    );
    assert_eq!(
        security.seccomp.unwrap().profile_type,
        security_profile::ProfileType::RuntimeDefault as i32
    );
    assert_eq!(security.masked_paths.len(), 11);
    assert_eq!(security.readonly_paths, READONLY_PATHS);

    let unmasked = Container {
        security_context: Some(SecurityContext {
            proc_mount: Some("Unmasked".to_owned()),
            seccomp_profile: Some(SeccompProfile {
                type_: "Localhost".to_owned(),
                localhost_profile: Some("audit.json".to_owned()),
            }),
            ..SecurityContext::default()
        }),
        ..container("app")
    };
    let security = config(&pod_of(unmasked.clone()), &unmasked, &context())
        .unwrap()
        .linux
        .unwrap()
        .security_context
        .unwrap();
    assert!(security.masked_paths.is_empty() && security.readonly_paths.is_empty());
    let seccomp = security.seccomp.unwrap();
    assert_eq!(seccomp.localhost_ref, "/var/lib/kubelet/seccomp/audit.json");
    let unconfined = config(&pod_of(container("app")), &container("app"), &context()).unwrap();
    let profile = unconfined.linux.unwrap().security_context.unwrap().seccomp.unwrap();
    assert_eq!(profile.profile_type, security_profile::ProfileType::Unconfined as i32);
}
