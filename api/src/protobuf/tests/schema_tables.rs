//! Invariants of the generated schema tables and spot checks of what they say.

use std::collections::BTreeSet;

use crate::protobuf::schema::{
    all_kinds, all_messages, field_by_tag, message_named, Field, Kind, Shape, INLINE, OMIT_ZERO,
    REPEATED,
};
use crate::protobuf::supports;

fn fields_of(name: &str) -> &'static [Field] {
    match message_named(name).map(|message| &message.shape) {
        Some(Shape::Struct(fields)) => fields,
        other => panic!("{name} is not a struct message: {other:?}"),
    }
}

fn field<'a>(fields: &'a [Field], json: &str) -> &'a Field {
    fields.iter().find(|field| field.json == json).unwrap_or_else(|| panic!("no field {json}"))
}

#[test]
fn tables_are_sorted_and_consistent() {
    let kinds = all_kinds();
    assert!(kinds.windows(2).all(|pair| (pair[0].0, pair[0].1) < (pair[1].0, pair[1].1)));
    let messages = all_messages();
    assert!(messages.windows(2).all(|pair| pair[0].name < pair[1].name));
    for (api_version, kind, message) in kinds {
        assert!(matches!(message.shape, Shape::Struct(_)), "{api_version} {kind}");
        assert!(message_named(message.name).is_some(), "{api_version} {kind}");
    }
    for message in messages {
        let Shape::Struct(fields) = &message.shape else { continue };
        assert!(fields.windows(2).all(|pair| pair[0].tag < pair[1].tag), "{}", message.name);
        let mut names = BTreeSet::new();
        for field in fields.iter() {
            assert_eq!(field.json.is_empty(), field.has(INLINE), "{}.{}", message.name, field.tag);
            assert!(
                field.json.is_empty() || names.insert(field.json),
                "{}.{}",
                message.name,
                field.json
            );
            assert!(
                !(field.has(REPEATED) && field.has(OMIT_ZERO)),
                "{}.{}",
                message.name,
                field.json
            );
            if field.has(INLINE) {
                assert!(matches!(field.kind, Kind::Message(_)), "{}.{}", message.name, field.tag);
            }
            assert_eq!(field_by_tag(fields, field.tag).map(|found| found.json), Some(field.json));
        }
    }
}

#[test]
fn the_required_groups_are_covered() {
    let cases = [
        ("v1", "Pod"),
        ("v1", "Binding"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("v1", "PersistentVolumeClaim"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("autoscaling/v1", "Scale"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("policy/v1", "PodDisruptionBudget"),
        ("policy/v1", "Eviction"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authentication.k8s.io/v1", "TokenReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("authorization.k8s.io/v1", "SubjectAccessReview"),
        ("events.k8s.io/v1", "Event"),
        ("apps/v1", "DeploymentList"),
        ("apps/v1", "DeleteOptions"),
    ];
    for (api_version, kind) in cases {
        assert!(supports(api_version, kind), "{api_version} {kind}");
    }
    assert!(!supports("example.com/v1", "Widget"));
    assert!(!supports("v1", "Deployment"));
}

#[test]
fn json_names_and_go_semantics_match_the_api() {
    let pod_status = fields_of("k8s.io.api.core.v1.PodStatus");
    assert_eq!(field(pod_status, "podIP").tag, 6);
    assert!(field(pod_status, "podIPs").has(REPEATED));
    let pod_spec = fields_of("k8s.io.api.core.v1.PodSpec");
    assert!(field(pod_spec, "hostIPC").has(OMIT_ZERO), "a Go bool with omitempty");
    assert!(!field(pod_spec, "automountServiceAccountToken").has(OMIT_ZERO), "a Go *bool");
    let deployment_spec = fields_of("k8s.io.api.apps.v1.DeploymentSpec");
    assert!(!field(deployment_spec, "replicas").has(OMIT_ZERO), "a Go *int32");
    let volume = fields_of("k8s.io.api.core.v1.Volume");
    assert!(field_by_tag(volume, 2).is_some_and(|source| source.has(INLINE)));
    let schema =
        fields_of("k8s.io.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps");
    for name in ["$ref", "$schema", "x-kubernetes-preserve-unknown-fields", "type", "enum"] {
        field(schema, name);
    }
    let condition = fields_of("k8s.io.api.apps.v1.DeploymentCondition");
    assert!(matches!(field(condition, "type").kind, Kind::String));
}
