//! Objects built with k8s-pb's prost types, encoded, wrapped in the envelope and decoded.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authorization;
use k8s_pb::api::autoscaling::v2 as autoscaling;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;

use super::{envelope, roundtrip};
use crate::protobuf::decode;

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

fn named(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta { name: s(name), ..Default::default() })
}

fn quantity(text: &str) -> Quantity {
    Quantity { string: s(text) }
}

fn int_port(port: i32) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(0), int_val: Some(port), str_val: None })
}

fn named_port(name: &str) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(1), int_val: None, str_val: s(name) })
}

const SECONDS_2024_01_02_03_04_05: i64 = 1_704_164_645;

#[test]
fn deployment_as_kubectl_create_deployment_builds_it() {
    let app = labels(&[("app", "web")]);
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            labels: app.clone(),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector { match_labels: app.clone(), ..Default::default() }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta { labels: app, ..Default::default() }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("busybox"),
                        image: s("busybox"),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus { replicas: Some(0), ..Default::default() }),
    };
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": null},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "busybox", "image": "busybox", "resources": {}}]}
            },
            "strategy": {}
        },
        "status": {}
    });
    assert_eq!(roundtrip("apps/v1", "Deployment", &deployment).unwrap(), expected);
}

#[test]
fn pointer_fields_keep_explicit_zero_values() {
    let deployment = apps::Deployment {
        metadata: named("idle"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            revision_history_limit: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = roundtrip("apps/v1", "Deployment", &deployment).unwrap();
    // `replicas` and `revisionHistoryLimit` are Go pointers; the other two are omitempty values.
    assert_eq!(decoded["spec"], json!({"replicas": 0, "revisionHistoryLimit": 0}));
}

#[test]
fn configmap_data_and_binary_data() {
    let configmap = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("settings"),
            namespace: s("default"),
            annotations: labels(&[("note", "ünïcode ✓")]),
            ..Default::default()
        }),
        immutable: Some(false),
        data: labels(&[("mode", "fast"), ("empty", "")]),
        binary_data: [("blob".to_string(), vec![0, 1, 2, 0xff]), ("none".to_string(), vec![])]
            .into_iter()
            .collect(),
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default", "annotations": {"note": "ünïcode ✓"}},
        "immutable": false,
        "data": {"mode": "fast", "empty": ""},
        "binaryData": {"blob": "AAEC/w==", "none": ""}
    });
    assert_eq!(roundtrip("v1", "ConfigMap", &configmap).unwrap(), expected);
}

#[test]
fn secret_bytes_are_base64() {
    let secret = core::Secret {
        metadata: named("creds"),
        r#type: s("Opaque"),
        data: [("password".to_string(), b"s3cret\n".to_vec())].into_iter().collect(),
        string_data: labels(&[("user", "admin")]),
        immutable: None,
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "type": "Opaque",
        "data": {"password": "czNjcmV0Cg=="},
        "stringData": {"user": "admin"}
    });
    assert_eq!(roundtrip("v1", "Secret", &secret).unwrap(), expected);
}

#[test]
fn namespace_with_spec_and_status() {
    let namespace = core::Namespace {
        metadata: named("team-a"),
        spec: Some(core::NamespaceSpec { finalizers: vec!["kubernetes".to_string()] }),
        status: Some(core::NamespaceStatus { phase: s("Active"), conditions: vec![] }),
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a"},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    });
    assert_eq!(roundtrip("v1", "Namespace", &namespace).unwrap(), expected);
}

#[test]
fn job_with_limits_and_failure_policy() {
    let job = batch::Job {
        metadata: named("hello"),
        spec: Some(batch::JobSpec {
            backoff_limit: Some(0),
            completions: Some(3),
            active_deadline_seconds: Some(600),
            ttl_seconds_after_finished: Some(100),
            pod_failure_policy: Some(batch::PodFailurePolicy {
                rules: vec![batch::PodFailurePolicyRule {
                    action: s("FailJob"),
                    on_exit_codes: Some(batch::PodFailurePolicyOnExitCodesRequirement {
                        operator: s("In"),
                        values: vec![1, 42],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    restart_policy: s("Never"),
                    containers: vec![core::Container {
                        name: s("hello"),
                        image: s("busybox"),
                        command: vec!["echo".to_string(), "hi".to_string()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let expected = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "completions": 3,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 100,
            "podFailurePolicy": {"rules": [{
                "action": "FailJob",
                "onExitCodes": {"operator": "In", "values": [1, 42]}
            }]},
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "hello", "image": "busybox", "command": ["echo", "hi"]}]
            }}
        }
    });
    assert_eq!(roundtrip("batch/v1", "Job", &job).unwrap(), expected);
}

#[test]
fn access_reviews_with_extra_values() {
    let self_review = authorization::SelfSubjectAccessReview {
        metadata: None,
        spec: Some(authorization::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authorization::ResourceAttributes {
                namespace: s("default"),
                verb: s("create"),
                resource: s("pods"),
                group: s(""),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authorization::SubjectAccessReviewStatus {
            allowed: Some(false),
            ..Default::default()
        }),
    };
    let expected = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
        "status": {"allowed": false}
    });
    let decoded = roundtrip("authorization.k8s.io/v1", "SelfSubjectAccessReview", &self_review);
    assert_eq!(decoded.unwrap(), expected);

    let review = authorization::SubjectAccessReview {
        metadata: None,
        spec: Some(authorization::SubjectAccessReviewSpec {
            user: s("alice"),
            groups: vec!["devs".to_string()],
            uid: s("42"),
            extra: [(
                "scopes".to_string(),
                authorization::ExtraValue { items: vec!["read".to_string(), "write".to_string()] },
            )]
            .into_iter()
            .collect(),
            non_resource_attributes: Some(authorization::NonResourceAttributes {
                path: s("/healthz"),
                verb: s("get"),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let expected = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "alice",
            "groups": ["devs"],
            "uid": "42",
            "extra": {"scopes": ["read", "write"]},
            "nonResourceAttributes": {"path": "/healthz", "verb": "get"}
        }
    });
    let decoded = roundtrip("authorization.k8s.io/v1", "SubjectAccessReview", &review);
    assert_eq!(decoded.unwrap(), expected);
}

#[test]
fn pod_with_ports_probes_resources_volumes_and_status() {
    let resources = |cpu: &str, memory: &str| -> BTreeMap<String, Quantity> {
        [("cpu".to_string(), quantity(cpu)), ("memory".to_string(), quantity(memory))]
            .into_iter()
            .collect()
    };
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            host_port: Some(0),
            ..Default::default()
        }],
        env: vec![core::EnvVar {
            name: s("PASSWORD"),
            value: None,
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                    key: s("password"),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        }],
        resources: Some(core::ResourceRequirements {
            limits: resources("500m", "128Mi"),
            requests: resources("0.1", "64Mi"),
            claims: vec![],
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_port(8080),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction { port: named_port("http"), host: None }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: named("web-0"),
        spec: Some(core::PodSpec {
            containers: vec![container],
            volumes: vec![core::Volume {
                name: s("scratch"),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: s("Memory"),
                        size_limit: Some(quantity("1Gi")),
                    }),
                    ..Default::default()
                }),
            }],
            host_ipc: Some(true),
            host_network: Some(false),
            termination_grace_period_seconds: Some(0),
            node_selector: labels(&[("disk", "ssd")]),
            security_context: Some(core::PodSecurityContext {
                run_as_user: Some(0),
                supplemental_groups: vec![1000, 2000],
                ..Default::default()
            }),
            tolerations: vec![core::Toleration {
                key: s("node.kubernetes.io/unreachable"),
                operator: s("Exists"),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            pod_ip: s("10.0.0.7"),
            pod_ips: vec![core::PodIp { ip: s("10.0.0.7") }],
            host_ip: s("192.168.1.2"),
            start_time: Some(meta::Time {
                seconds: Some(SECONDS_2024_01_02_03_04_05),
                nanos: Some(9),
            }),
            conditions: vec![core::PodCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_transition_time: Some(meta::Time {
                    seconds: Some(SECONDS_2024_01_02_03_04_05 + 60),
                    nanos: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0"},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password", "optional": false}}
                }],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "0.1", "memory": "64Mi"}
                },
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 5},
                "readinessProbe": {"tcpSocket": {"port": "http"}}
            }],
            "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
            "hostIPC": true,
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"disk": "ssd"},
            "securityContext": {"runAsUser": 0, "supplementalGroups": [1000, 2000]},
            "tolerations": [{
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300
            }]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "podIPs": [{"ip": "10.0.0.7"}],
            "hostIP": "192.168.1.2",
            "startTime": "2024-01-02T03:04:05Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T03:05:05Z"}]
        }
    });
    assert_eq!(roundtrip("v1", "Pod", &pod).unwrap(), expected);
}

#[test]
fn service_ports_with_int_or_string_target_ports() {
    let port = |name: &str, number: i32, target: Option<IntOrString>| core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        port: Some(number),
        target_port: target,
        ..Default::default()
    };
    let service = core::Service {
        metadata: named("web"),
        spec: Some(core::ServiceSpec {
            ports: vec![port("http", 80, int_port(8080)), port("https", 443, named_port("https"))],
            selector: labels(&[("app", "web")]),
            r#type: s("ClusterIP"),
            ip_families: vec!["IPv4".to_string()],
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"}
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP",
            "ipFamilies": ["IPv4"]
        },
        "status": {}
    });
    assert_eq!(roundtrip("v1", "Service", &service).unwrap(), expected);
}

#[test]
fn lease_micro_times_keep_microseconds() {
    let lease = coordination::Lease {
        metadata: named("leader"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(15),
            acquire_time: Some(meta::MicroTime {
                seconds: Some(SECONDS_2024_01_02_03_04_05),
                nanos: Some(123_456_789),
            }),
            renew_time: Some(meta::MicroTime { seconds: Some(0), nanos: Some(0) }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let expected = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "leader"},
        "spec": {
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-01-02T03:04:05.123456Z",
            "renewTime": "1970-01-01T00:00:00.000000Z",
            "leaseTransitions": 0
        }
    });
    assert_eq!(roundtrip("coordination.k8s.io/v1", "Lease", &lease).unwrap(), expected);
}

#[test]
fn metadata_with_managed_fields_and_owner_references() {
    let configmap = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("owned"),
            deletion_grace_period_seconds: Some(0),
            generation: Some(0),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-1"),
                uid: s("7c1a"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("v1"),
                time: Some(meta::Time { seconds: Some(SECONDS_2024_01_02_03_04_05), nanos: None }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:data":{"f:a":{}}}"#.to_vec()) }),
                subresource: s(""),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let expected = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "deletionGracePeriodSeconds": 0,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-1",
                "uid": "7c1a",
                "controller": true,
                "blockOwnerDeletion": true
            }],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:a": {}}}
            }]
        }
    });
    assert_eq!(roundtrip("v1", "ConfigMap", &configmap).unwrap(), expected);
}

#[test]
fn raw_extensions_hold_json_or_nested_protobuf() {
    let revision = |raw: Vec<u8>| apps::ControllerRevision {
        metadata: named("web-1"),
        data: Some(RawExtension { raw: Some(raw) }),
        revision: Some(3),
    };
    let json_data = revision(br#"{"spec": {"template": {"x": [1, "two"]}}}"#.to_vec());
    let decoded = roundtrip("apps/v1", "ControllerRevision", &json_data).unwrap();
    assert_eq!(decoded["data"], json!({"spec": {"template": {"x": [1, "two"]}}}));
    assert_eq!(decoded["revision"], 3);

    let inner = core::ConfigMap { metadata: named("inner"), ..Default::default() };
    let nested = revision(envelope("v1", "ConfigMap", inner.encode_to_vec()));
    let decoded = roundtrip("apps/v1", "ControllerRevision", &nested).unwrap();
    assert_eq!(
        decoded["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inner"}})
    );

    let empty = revision(Vec::new());
    assert_eq!(roundtrip("apps/v1", "ControllerRevision", &empty).unwrap()["data"], json!(null));
}

#[test]
fn custom_resource_definition_schemas() {
    let raw = |text: &str| apiextensions::Json { raw: Some(text.as_bytes().to_vec()) };
    let typed =
        |kind: &str| apiextensions::JsonSchemaProps { r#type: s(kind), ..Default::default() };
    let replicas = apiextensions::JsonSchemaProps {
        r#type: s("integer"),
        minimum: Some(1.0),
        maximum: Some(10.5),
        default: Some(raw("1")),
        r#enum: vec![raw("1"), raw("2")],
        ..Default::default()
    };
    let tags = apiextensions::JsonSchemaProps {
        r#type: s("array"),
        items: Some(Box::new(apiextensions::JsonSchemaPropsOrArray {
            schema: Some(Box::new(typed("string"))),
            j_son_schemas: vec![],
        })),
        x_kubernetes_list_type: s("set"),
        ..Default::default()
    };
    let spec = apiextensions::JsonSchemaProps {
        r#type: s("object"),
        properties: [("replicas".to_string(), replicas), ("tags".to_string(), tags)]
            .into_iter()
            .collect(),
        additional_properties: Some(Box::new(apiextensions::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        dependencies: [(
            "tags".to_string(),
            apiextensions::JsonSchemaPropsOrStringArray {
                schema: None,
                property: vec!["replicas".to_string()],
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let root = apiextensions::JsonSchemaProps {
        r#type: s("object"),
        r#ref: s("#/definitions/widget"),
        properties: [("spec".to_string(), spec)].into_iter().collect(),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let crd = apiextensions::CustomResourceDefinition {
        metadata: named("widgets.example.com"),
        spec: Some(apiextensions::CustomResourceDefinitionSpec {
            group: s("example.com"),
            scope: s("Namespaced"),
            names: Some(apiextensions::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            versions: vec![apiextensions::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(apiextensions::CustomResourceValidation {
                    open_apiv3_schema: Some(root),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let decoded = roundtrip("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd).unwrap();
    let expected_schema = json!({
        "type": "object",
        "$ref": "#/definitions/widget",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"spec": {
            "type": "object",
            "additionalProperties": false,
            "dependencies": {"tags": ["replicas"]},
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10.5, "default": 1, "enum": [1, 2]},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}
            }
        }}
    });
    let version = &decoded["spec"]["versions"][0];
    assert_eq!(version["schema"]["openAPIV3Schema"], expected_schema);
    assert_eq!(version["served"], true);
    assert_eq!(decoded["spec"]["names"], json!({"plural": "widgets", "kind": "Widget"}));
}

#[test]
fn horizontal_pod_autoscaler_v2_metrics() {
    let hpa = autoscaling::HorizontalPodAutoscaler {
        metadata: named("web"),
        spec: Some(autoscaling::HorizontalPodAutoscalerSpec {
            scale_target_ref: Some(autoscaling::CrossVersionObjectReference {
                kind: s("Deployment"),
                name: s("web"),
                api_version: s("apps/v1"),
            }),
            min_replicas: Some(1),
            max_replicas: Some(5),
            metrics: vec![autoscaling::MetricSpec {
                r#type: s("Resource"),
                resource: Some(autoscaling::ResourceMetricSource {
                    name: s("cpu"),
                    target: Some(autoscaling::MetricTarget {
                        r#type: s("AverageValue"),
                        average_value: Some(quantity("250m")),
                        average_utilization: Some(0),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let expected = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "AverageValue", "averageValue": "250m", "averageUtilization": 0}
            }}]
        }
    });
    assert_eq!(roundtrip("autoscaling/v2", "HorizontalPodAutoscaler", &hpa).unwrap(), expected);
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        preconditions: Some(meta::Preconditions { uid: s("7c1a"), resource_version: None }),
        dry_run: vec!["All".to_string()],
        ..Default::default()
    };
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let expected = json!({
            "apiVersion": api_version,
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Foreground",
            "preconditions": {"uid": "7c1a"},
            "dryRun": ["All"]
        });
        assert_eq!(roundtrip(api_version, "DeleteOptions", &options).unwrap(), expected);
    }
}

#[test]
fn lists_decode_with_their_items() {
    let list = core::ConfigMapList {
        metadata: Some(meta::ListMeta { resource_version: s("7"), ..Default::default() }),
        items: vec![
            core::ConfigMap { metadata: named("a"), ..Default::default() },
            core::ConfigMap { metadata: named("b"), ..Default::default() },
        ],
    };
    let body = envelope("v1", "ConfigMapList", list.encode_to_vec());
    let expected = json!({
        "apiVersion": "v1",
        "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]
    });
    assert_eq!(decode(&body).unwrap(), expected);
}
