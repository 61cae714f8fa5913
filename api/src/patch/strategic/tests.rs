use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;

use super::*;
use crate::patch::meta::{PlainMeta, SchemaMeta};

/// A schema like the one apimachinery's own tests use: the same fields at every level.
struct TestMeta;

impl PatchMeta for TestMeta {
    fn field(&self, name: &str) -> FieldMeta {
        let (strategy, merge_key) = match name {
            "mergingList" => (PatchStrategy::Merge, Some("name")),
            "mergingIntList" => (PatchStrategy::Merge, None),
            "mergingListWithoutKey" => (PatchStrategy::Merge, None),
            "replacingMap" => (PatchStrategy::Replace, None),
            "retainKeysMap" => (PatchStrategy::RetainKeys, None),
            _ => (PatchStrategy::Unspecified, None),
        };
        FieldMeta { strategy, merge_key: merge_key.map(str::to_owned), value: Box::new(TestMeta) }
    }
}

struct Case {
    name: &'static str,
    original: Value,
    patch: Value,
    expected: Value,
}

fn check(meta: &dyn PatchMeta, cases: Vec<Case>) {
    for case in cases {
        let patched = apply_strategic(&case.original, &case.patch, meta);
        assert_eq!(patched, Ok(case.expected), "{}", case.name);
    }
}

fn check_errors(meta: &dyn PatchMeta, cases: Vec<(&str, Value, Value, &str, u16)>) {
    for (name, original, patch, message, code) in cases {
        let error = apply_strategic(&original, &patch, meta).unwrap_err();
        assert_eq!(error.to_string(), message, "{name}");
        assert_eq!(error.status().code(), code, "{name}");
    }
}

/// Returns `base` with the values at the given JSON pointers replaced (`null` removes).
fn edited(base: &Value, edits: &[(&str, Value)]) -> Value {
    let mut value = base.clone();
    for (pointer, new) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = value.pointer_mut(parent).unwrap();
        match (parent, new) {
            (Value::Object(map), Value::Null) => {
                map.remove(key);
            }
            (Value::Object(map), new) => {
                map.insert(key.to_owned(), new.clone());
            }
            (Value::Array(items), new) => {
                let index = key.parse::<usize>().unwrap();
                if index == items.len() {
                    items.push(new.clone());
                } else {
                    items[index] = new.clone();
                }
            }
            (other, _) => panic!("cannot edit {other}"),
        }
    }
    value
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["a"],
            "ownerReferences": [{"uid": "u1", "name": "owner", "kind": "Thing", "apiVersion": "v1"}]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                        },
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "3600"]}
                    ],
                    "volumes": [
                        {"name": "data", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": "web-config"}}
                    ]
                }
            }
        }
    })
}

/// Wraps a pod spec patch into a deployment patch.
fn pod_spec_patch(spec: Value) -> Value {
    json!({"spec": {"template": {"spec": spec}}})
}

const WEB: &str = "/spec/template/spec/containers/0";

#[test]
fn kubectl_apply_and_set_patches_on_deployment() {
    let base = deployment();
    let cases = vec![
        Case {
            name: "apply changes container image, merged by name",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.26", "name": "web"}]
            })),
            expected: edited(&base, &[(&format!("{WEB}/image"), json!("nginx:1.26"))]),
        },
        Case {
            name: "set image on second container keeps container order",
            original: base.clone(),
            patch: pod_spec_patch(
                json!({"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}),
            ),
            expected: edited(
                &base,
                &[("/spec/template/spec/containers/1/image", json!("busybox:1.36"))],
            ),
        },
        Case {
            name: "apply adds env var in set order",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{
                    "name": "web",
                    "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                    "env": [{"name": "C", "value": "3"}]
                }]
            })),
            expected: edited(
                &base,
                &[(
                    &format!("{WEB}/env"),
                    json!([
                        {"name": "A", "value": "1"},
                        {"name": "C", "value": "3"},
                        {"name": "B", "value": "2"}
                    ]),
                )],
            ),
        },
        Case {
            name: "apply removes env var with delete directive",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{
                    "name": "web",
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}]
                }]
            })),
            expected: edited(
                &base,
                &[(&format!("{WEB}/env"), json!([{"name": "A", "value": "1"}]))],
            ),
        },
        Case {
            name: "changed env value merges into the existing var",
            original: base.clone(),
            patch: pod_spec_patch(
                json!({"containers": [{"name": "web", "env": [{"name": "B", "value": "22"}]}]}),
            ),
            expected: edited(&base, &[(&format!("{WEB}/env/1/value"), json!("22"))]),
        },
        Case {
            name: "new port without order directive goes first, as in Kubernetes",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "containers": [{"name": "web", "ports": [{"containerPort": 443, "protocol": "TCP"}]}]
            })),
            expected: edited(
                &base,
                &[(
                    &format!("{WEB}/ports"),
                    json!([
                        {"containerPort": 443, "protocol": "TCP"},
                        {"containerPort": 80, "protocol": "TCP"}
                    ]),
                )],
            ),
        },
        Case {
            name: "new port with order directive goes where it says",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "containers": [{
                    "name": "web",
                    "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                    "ports": [{"containerPort": 443, "protocol": "TCP"}]
                }]
            })),
            expected: edited(
                &base,
                &[(
                    &format!("{WEB}/ports"),
                    json!([
                        {"containerPort": 80, "protocol": "TCP"},
                        {"containerPort": 443, "protocol": "TCP"}
                    ]),
                )],
            ),
        },
        Case {
            name: "port merged by containerPort",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "containers": [{"name": "web", "ports": [{"containerPort": 80, "name": "http"}]}]
            })),
            expected: edited(
                &base,
                &[(
                    &format!("{WEB}/ports/0"),
                    json!({"containerPort": 80, "protocol": "TCP", "name": "http"}),
                )],
            ),
        },
        Case {
            name: "apply adds a volume and its mount",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "config"}, {"name": "cache"}],
                "containers": [{
                    "name": "web",
                    "$setElementOrder/volumeMounts": [{"mountPath": "/data"}, {"mountPath": "/cache"}],
                    "volumeMounts": [{"mountPath": "/cache", "name": "cache"}]
                }],
                "volumes": [{"emptyDir": {"medium": "Memory"}, "name": "cache"}]
            })),
            expected: edited(
                &base,
                &[
                    (
                        &format!("{WEB}/volumeMounts"),
                        json!([
                            {"name": "data", "mountPath": "/data"},
                            {"name": "cache", "mountPath": "/cache"}
                        ]),
                    ),
                    (
                        "/spec/template/spec/volumes",
                        json!([
                            {"name": "data", "emptyDir": {}},
                            {"name": "config", "configMap": {"name": "web-config"}},
                            {"name": "cache", "emptyDir": {"medium": "Memory"}}
                        ]),
                    ),
                ],
            ),
        },
        Case {
            name: "apply deletes a volume",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/volumes": [{"name": "data"}],
                "volumes": [{"$patch": "delete", "name": "config"}]
            })),
            expected: edited(
                &base,
                &[("/spec/template/spec/volumes", json!([{"name": "data", "emptyDir": {}}]))],
            ),
        },
        Case {
            name: "apply switches a volume source with retainKeys",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "config"}],
                "volumes": [{
                    "$retainKeys": ["hostPath", "name"],
                    "hostPath": {"path": "/srv"},
                    "name": "data"
                }]
            })),
            expected: edited(
                &base,
                &[(
                    "/spec/template/spec/volumes/0",
                    json!({"name": "data", "hostPath": {"path": "/srv"}}),
                )],
            ),
        },
        Case {
            name: "apply switches deployment strategy with retainKeys",
            original: base.clone(),
            patch: json!({"spec": {"strategy": {
                "$retainKeys": ["type"],
                "rollingUpdate": null,
                "type": "Recreate"
            }}}),
            expected: edited(&base, &[("/spec/strategy", json!({"type": "Recreate"}))]),
        },
        Case {
            name: "scale",
            original: base.clone(),
            patch: json!({"spec": {"replicas": 5}}),
            expected: edited(&base, &[("/spec/replicas", json!(5))]),
        },
        Case {
            name: "non-merging list is replaced",
            original: base.clone(),
            patch: pod_spec_patch(
                json!({"containers": [{"name": "sidecar", "args": ["sleep", "60"]}]}),
            ),
            expected: edited(
                &base,
                &[("/spec/template/spec/containers/1/args", json!(["sleep", "60"]))],
            ),
        },
        Case {
            name: "owner reference merged by uid",
            original: base.clone(),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}}),
            expected: edited(&base, &[("/metadata/ownerReferences/0/controller", json!(true))]),
        },
        Case {
            name: "replace directive in containers list",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "containers": [{"$patch": "replace"}, {"name": "only", "image": "x", "args": null}]
            })),
            expected: edited(
                &base,
                &[("/spec/template/spec/containers", json!([{"name": "only", "image": "x"}]))],
            ),
        },
        Case {
            name: "replace directive on a map",
            original: base.clone(),
            patch: json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "v": "2"}}}}}),
            expected: edited(&base, &[("/spec/template/metadata/labels", json!({"v": "2"}))]),
        },
        Case {
            name: "delete directive on a map empties it",
            original: base.clone(),
            patch: json!({"spec": {"strategy": {"$patch": "delete"}}}),
            expected: edited(&base, &[("/spec/strategy", json!({}))]),
        },
        Case {
            name: "delete directive on a missing list item changes nothing",
            original: base.clone(),
            patch: pod_spec_patch(json!({"containers": [{"name": "ghost", "$patch": "delete"}]})),
            expected: base.clone(),
        },
        Case {
            name: "new container is added without directive keys or nulls",
            original: base.clone(),
            patch: pod_spec_patch(json!({
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}, {"name": "log"}],
                "containers": [{
                    "name": "log",
                    "image": "fluentbit",
                    "command": null,
                    "$setElementOrder/env": [{"name": "X"}],
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}],
                    "resources": {"$retainKeys": ["limits"], "limits": {"cpu": "1"}}
                }]
            })),
            expected: edited(
                &base,
                &[(
                    "/spec/template/spec/containers/2",
                    json!({
                        "name": "log",
                        "image": "fluentbit",
                        "env": [{"name": "X", "value": "1"}],
                        "resources": {"limits": {"cpu": "1"}}
                    }),
                )],
            ),
        },
        Case {
            name: "kubectl edit two-way patch",
            original: base.clone(),
            patch: json!({"spec": {
                "replicas": 3,
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{
                        "name": "web",
                        "resources": {"limits": {"memory": "256Mi"}},
                        "volumeMounts": null
                    }]
                }}
            }}),
            expected: edited(
                &base,
                &[
                    ("/spec/replicas", json!(3)),
                    (&format!("{WEB}/resources"), json!({"limits": {"memory": "256Mi"}})),
                    (&format!("{WEB}/volumeMounts"), Value::Null),
                ],
            ),
        },
    ];
    check(&SchemaMeta::for_type::<Deployment>(), cases);
}

#[test]
fn kubectl_metadata_patches() {
    let base = deployment();
    let cases = vec![
        Case {
            name: "label",
            original: base.clone(),
            patch: json!({"metadata": {"labels": {"tier": "frontend"}}}),
            expected: edited(&base, &[("/metadata/labels/tier", json!("frontend"))]),
        },
        Case {
            name: "label overwrite",
            original: base.clone(),
            patch: json!({"metadata": {"labels": {"app": "api"}}}),
            expected: edited(&base, &[("/metadata/labels/app", json!("api"))]),
        },
        Case {
            name: "unlabel",
            original: base.clone(),
            patch: json!({"metadata": {"labels": {"app": null}}}),
            expected: edited(&base, &[("/metadata/labels", json!({}))]),
        },
        Case {
            name: "annotate creates the map",
            original: base.clone(),
            patch: json!({"metadata": {"annotations": {"example.com/note": "x"}}}),
            expected: edited(&base, &[("/metadata/annotations", json!({"example.com/note": "x"}))]),
        },
        Case {
            name: "null for a missing key changes nothing",
            original: base.clone(),
            patch: json!({"metadata": {"annotations": null, "labels": {"missing": null}}}),
            expected: base.clone(),
        },
        Case {
            name: "finalizer added to a primitive merge list goes first, as in Kubernetes",
            original: base.clone(),
            patch: json!({"metadata": {"finalizers": ["b", "a"]}}),
            expected: edited(&base, &[("/metadata/finalizers", json!(["b", "a"]))]),
        },
        Case {
            name: "finalizers union without duplicates",
            original: base.clone(),
            patch: json!({"metadata": {"finalizers": ["a", "b", "b"]}}),
            expected: edited(&base, &[("/metadata/finalizers", json!(["a", "b"]))]),
        },
        Case {
            name: "finalizer added in set order",
            original: base.clone(),
            patch: json!({"metadata": {"$setElementOrder/finalizers": ["a", "b"], "finalizers": ["b"]}}),
            expected: edited(&base, &[("/metadata/finalizers", json!(["a", "b"]))]),
        },
        Case {
            name: "finalizer removed with deleteFromPrimitiveList",
            original: base.clone(),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            expected: edited(&base, &[("/metadata/finalizers", json!([]))]),
        },
        Case {
            name: "deleteFromPrimitiveList of a missing list adds nothing",
            original: base.clone(),
            patch: json!({"spec": {"template": {"spec": {"$deleteFromPrimitiveList/nope": ["a"]}}}}),
            expected: base.clone(),
        },
        Case {
            name: "whole finalizer list replaced",
            original: base.clone(),
            patch: json!({"metadata": {"finalizers": null}}),
            expected: edited(&base, &[("/metadata/finalizers", Value::Null)]),
        },
    ];
    check(&SchemaMeta::for_type::<Deployment>(), cases);
}

#[test]
fn other_built_in_types() {
    let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
    check(
        &SchemaMeta::for_type::<PodDisruptionBudget>(),
        vec![Case {
            name: "selector with replace strategy is replaced whole",
            original: pdb.clone(),
            patch: json!({"spec": {"selector": {"matchExpressions": []}}}),
            expected: edited(&pdb, &[("/spec/selector", json!({"matchExpressions": []}))]),
        }],
    );

    let service = json!({"spec": {"ports": [
        {"port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"port": 443, "targetPort": 8443, "protocol": "TCP"}
    ]}});
    check(
        &SchemaMeta::for_type::<Service>(),
        vec![Case {
            name: "service port merged by port",
            original: service.clone(),
            patch: json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}),
            expected: edited(&service, &[("/spec/ports/1/targetPort", json!(9443))]),
        }],
    );

    let pod = json!({
        "spec": {"containers": [{"name": "c", "image": "x"}], "nodeSelector": {"disk": "ssd"}},
        "status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ]}
    });
    check(
        &SchemaMeta::for_type::<Pod>(),
        vec![
            Case {
                name: "status condition merged by type",
                original: pod.clone(),
                patch: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                expected: edited(&pod, &[("/status/conditions/0/status", json!("True"))]),
            },
            Case {
                name: "map field merges",
                original: pod.clone(),
                patch: json!({"spec": {"nodeSelector": {"zone": "a"}}}),
                expected: edited(&pod, &[("/spec/nodeSelector/zone", json!("a"))]),
            },
            Case {
                name: "unknown fields merge maps and replace lists",
                original: edited(&pod, &[("/spec/extra", json!({"a": 1, "list": [1, 2]}))]),
                patch: json!({"spec": {"extra": {"b": 2, "list": [3]}}}),
                expected: edited(&pod, &[("/spec/extra", json!({"a": 1, "b": 2, "list": [3]}))]),
            },
        ],
    );
}

/// Ordering and merging cases from apimachinery's own strategic patch tests.
#[test]
fn merged_lists_are_ordered_like_kubernetes() {
    let cases = vec![
        Case {
            name: "merge lists of maps in set order",
            original: json!({"mergingList": [
                {"name": 1, "other": "a"},
                {"name": 2, "value": 2, "other": "b"}
            ]}),
            patch: json!({
                "$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]
            }),
            expected: json!({"mergingList": [
                {"name": 4, "value": 4},
                {"name": 1, "other": "a"},
                {"name": 2, "value": 2, "other": "b"},
                {"name": 3, "value": 3}
            ]}),
        },
        Case {
            name: "set order with a server-only item at the end",
            original: json!({"mergingList": [
                {"name": 1, "other": "a"}, {"name": 3}, {"name": 4}, {"name": 2}, {"name": 9}
            ]}),
            patch: json!({"$setElementOrder/mergingList": [
                {"name": 4}, {"name": 2}, {"name": 3}, {"name": 1}
            ]}),
            expected: json!({"mergingList": [
                {"name": 4}, {"name": 2}, {"name": 3}, {"name": 1, "other": "a"}, {"name": 9}
            ]}),
        },
        Case {
            name: "set order with server-only items in the middle",
            original: json!({"mergingList": [
                {"name": 1}, {"name": 2}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 3},
                {"name": 4}
            ]}),
            patch: json!({"$setElementOrder/mergingList": [
                {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}
            ]}),
            expected: json!({"mergingList": [
                {"name": 2}, {"name": 1}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 4},
                {"name": 3}
            ]}),
        },
        Case {
            name: "set order with duplicate merge keys",
            original: json!({"mergingList": [
                {"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3}, {"name": 2, "value": "dup2"},
                {"name": 4}
            ]}),
            patch: json!({"$setElementOrder/mergingList": [
                {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}
            ]}),
            expected: json!({"mergingList": [
                {"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1}, {"name": 4},
                {"name": 3}
            ]}),
        },
        Case {
            name: "add to primitive list in set order keeps server-only item",
            original: json!({"mergingIntList": [1, 4, 2]}),
            patch: json!({"$setElementOrder/mergingIntList": [3, 1, 2], "mergingIntList": [3]}),
            expected: json!({"mergingIntList": [3, 1, 4, 2]}),
        },
        Case {
            name: "merge primitive list in set order with a server-only item",
            original: json!({"mergingIntList": [1, 2, 4]}),
            patch: json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
            expected: json!({"mergingIntList": [1, 2, 3, 4]}),
        },
        Case {
            name: "set order then delete from primitive list",
            original: json!({"mergingIntList": [1, 2, 3, 4]}),
            patch: json!({
                "$setElementOrder/mergingIntList": [1, 2, 4],
                "$deleteFromPrimitiveList/mergingIntList": [3]
            }),
            expected: json!({"mergingIntList": [1, 2, 4]}),
        },
        Case {
            name: "delete from primitive list in set order",
            original: json!({"mergingIntList": [1, 2, 3]}),
            patch: json!({
                "$setElementOrder/mergingIntList": [2, 1],
                "$deleteFromPrimitiveList/mergingIntList": [3]
            }),
            expected: json!({"mergingIntList": [2, 1]}),
        },
        Case {
            name: "deleteFromPrimitiveList deletes every copy",
            original: json!({"mergingIntList": [1, 2, 1, 3]}),
            patch: json!({"$deleteFromPrimitiveList/mergingIntList": [1, 5]}),
            expected: json!({"mergingIntList": [2, 3]}),
        },
        Case {
            name: "deleteFromPrimitiveList works on lists without merge strategy",
            original: json!({"plainList": ["a", "b"]}),
            patch: json!({"$deleteFromPrimitiveList/plainList": ["a"]}),
            expected: json!({"plainList": ["b"]}),
        },
        Case {
            name: "delete directive removes every item with the key",
            original: json!({"mergingList": [{"name": 1}, {"name": 2}, {"name": 1, "x": 1}]}),
            patch: json!({"mergingList": [{"name": 1, "$patch": "delete"}]}),
            expected: json!({"mergingList": [{"name": 2}]}),
        },
        Case {
            name: "merging list nested in merging list",
            original: json!({"mergingList": [{"name": 1, "mergingList": [{"name": "a", "v": 1}]}]}),
            patch: json!({"mergingList": [{"name": 1, "mergingList": [{"name": "a", "w": 2}]}]}),
            expected: json!({"mergingList": [{"name": 1, "mergingList": [{"name": "a", "v": 1, "w": 2}]}]}),
        },
        Case {
            name: "empty patch list changes a merging list not at all",
            original: json!({"mergingList": [{"name": 1}]}),
            patch: json!({"mergingList": []}),
            expected: json!({"mergingList": [{"name": 1}]}),
        },
        Case {
            name: "replace strategy map is replaced",
            original: json!({"replacingMap": {"a": 1, "b": 2}}),
            patch: json!({"replacingMap": {"c": 3}}),
            expected: json!({"replacingMap": {"c": 3}}),
        },
        Case {
            name: "retainKeys clears unlisted keys and keeps listed ones",
            original: json!({"retainKeysMap": {"name": "x", "value": 1, "other": true}}),
            patch: json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": 2}}),
            expected: json!({"retainKeysMap": {"name": "x", "value": 2}}),
        },
        Case {
            name: "value of another type replaces",
            original: json!({"a": "text", "b": {"c": 1}}),
            patch: json!({"a": {"x": 1, "y": null}, "b": [1]}),
            expected: json!({"a": {"x": 1}, "b": [1]}),
        },
        Case {
            name: "new map carrying a directive is not added, as in Kubernetes",
            original: json!({}),
            patch: json!({"gone": {"$patch": "delete"}, "kept": {"a": {"$patch": "replace"}, "b": 1}}),
            expected: json!({"kept": {"b": 1}}),
        },
        Case {
            name: "null patch changes nothing",
            original: json!({"a": 1}),
            patch: Value::Null,
            expected: json!({"a": 1}),
        },
    ];
    check(&TestMeta, cases);
}

#[test]
fn plain_meta_merges_maps_and_replaces_lists() {
    check(
        &PlainMeta,
        vec![Case {
            name: "custom data",
            original: json!({"spec": {"a": {"b": 1}, "items": [{"name": "x"}]}}),
            patch: json!({"spec": {"a": {"c": 2}, "items": [{"name": "y"}]}}),
            expected: json!({"spec": {"a": {"b": 1, "c": 2}, "items": [{"name": "y"}]}}),
        }],
    );
}

#[test]
fn invalid_patches_fail_like_kubernetes() {
    let cases = vec![
        (
            "merge directive on a map",
            json!({"a": {"b": 1}}),
            json!({"a": {"$patch": "merge", "c": 1}}),
            r#"unknown patch type: merge in map: {"$patch":"merge","c":1}"#,
            500,
        ),
        (
            "unknown directive on a map",
            json!({}),
            json!({"$patch": "explode"}),
            r#"unknown patch type: explode in map: {"$patch":"explode"}"#,
            500,
        ),
        (
            "merge directive in a list",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "merge"}]}),
            "merging lists cannot yet be specified in the patch",
            500,
        ),
        (
            "unknown directive in a list",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "keep", "name": 1}]}),
            r#"unknown patch type: keep in map: {"$patch":"keep","name":1}"#,
            500,
        ),
        (
            "delete directive without merge key",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "delete"}]}),
            r#"map: {"$patch":"delete"} does not contain declared merge key: name"#,
            500,
        ),
        (
            "patch item without merge key",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"value": 1}]}),
            r#"map: {"value":1} does not contain declared merge key: name"#,
            500,
        ),
        (
            "merging list of maps without merge key",
            json!({"mergingListWithoutKey": [{"a": 1}]}),
            json!({"mergingListWithoutKey": [{"a": 2}]}),
            "cannot merge lists without merge key for mergingListWithoutKey",
            500,
        ),
        (
            "retainKeys not a list",
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": "name"}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            "retainKeys without a patched key",
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": 1}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            "setElementOrder without field",
            json!({}),
            json!({"$setElementOrder": []}),
            "invalid patch format of setElementOrder list",
            400,
        ),
        (
            "deleteFromPrimitiveList without field",
            json!({"x": [1]}),
            json!({"$deleteFromPrimitiveListx": [1]}),
            "invalid patch format of primitive list",
            400,
        ),
        (
            "setElementOrder disagrees with patch order",
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({
                "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                "mergingList": [{"name": 2}, {"name": 1}]
            }),
            "The order in patch list:\n[{\"name\":2},{\"name\":1}]\n doesn't match \
             $setElementOrder list:\n[{\"name\":1},{\"name\":2}]\n",
            500,
        ),
        (
            "setElementOrder is not a list",
            json!({}),
            json!({"$setElementOrder/mergingList": "x"}),
            "expected a []interface {}, but received a string",
            500,
        ),
        (
            "list of lists",
            json!({"mergingIntList": []}),
            json!({"mergingIntList": [["a"]]}),
            "lists of lists are not supported",
            422,
        ),
        (
            "mixed list elements",
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": ["a"]}),
            "list element types are not identical: [1], [\"a\"]",
            500,
        ),
        (
            "patch is not an object",
            json!({}),
            json!([1]),
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
            400,
        ),
    ];
    check_errors(&TestMeta, cases);
}

#[test]
fn failed_patch_leaves_original_untouched() {
    let original = deployment();
    let patch = pod_spec_patch(json!({
        "containers": [{"name": "web", "image": "new"}, {"$patch": "merge"}]
    }));
    let meta = SchemaMeta::for_type::<Deployment>();
    assert_eq!(apply_strategic(&original, &patch, &meta), Err(PatchError::MergeListDirective));
    assert_eq!(original, deployment());
}
