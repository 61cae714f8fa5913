//! Applies that succeed: what the object and its managed fields become.

use serde_json::{json, Value};

use super::*;

#[test]
fn apply_creates_the_object_and_records_managed_fields() {
    let meta = deployment_meta();
    let config = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                ]},
            },
        },
    });

    let created = apply(None, &config, "kubectl", false, &meta, T1).unwrap();

    let mut expected = config.clone();
    expected["metadata"]["managedFields"] = json!([{
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                // LabelSelector is atomic: the selector is owned whole.
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        // Container ports are keyed by port and protocol, which defaults to TCP.
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {},
                            "f:containerPort": {},
                        }},
                    }}},
                },
            },
        },
    }]);
    assert_eq!(created, expected);
}

#[test]
fn reapplying_without_a_field_removes_it() {
    let meta = deployment_meta();
    let mut first = deployment(Some(3), &[("nginx", "nginx:1.25")]);
    first["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
    let live = apply(None, &first, "deployer", false, &meta, T1).unwrap();

    let mut second = deployment(None, &[("nginx", "nginx:1.25")]);
    second["metadata"]["labels"] = json!({"app": "web"});
    let updated = apply(Some(&live), &second, "deployer", false, &meta, T2).unwrap();

    assert_eq!(updated["metadata"]["labels"], json!({"app": "web"}));
    assert!(updated["spec"].get("replicas").is_none(), "{updated}");
    let fields = owned(&updated, "deployer", "Apply");
    assert!(!fields.has(&path(".spec.replicas")));
    assert!(!fields.has(&path(".metadata.labels.tier")));
    assert!(fields.has(&path(".metadata.labels.app")));
    assert_eq!(entry(&updated, "deployer", "Apply").unwrap()["time"], json!(T2));
}

#[test]
fn fields_another_manager_owns_are_not_pruned() {
    let meta = deployment_meta();
    let live = apply(None, &deployment(Some(3), &[("a", "a:1")]), "one", false, &meta, T1).unwrap();
    // A second applier claims the same replicas value: shared ownership, no conflict.
    let live = apply(Some(&live), &deployment(Some(3), &[]), "two", false, &meta, T2).unwrap();
    let live =
        apply(Some(&live), &deployment(None, &[("a", "a:1")]), "one", false, &meta, T3).unwrap();
    assert_eq!(live["spec"]["replicas"], json!(3));
    assert!(owned(&live, "two", "Apply").has(&path(".spec.replicas")));
    assert!(!owned(&live, "one", "Apply").has(&path(".spec.replicas")));
}

#[test]
fn two_appliers_own_different_containers() {
    let meta = deployment_meta();
    let live = apply(None, &deployment(None, &[("a", "a:1")]), "team-a", false, &meta, T1).unwrap();
    let live =
        apply(Some(&live), &deployment(None, &[("b", "b:1")]), "team-b", false, &meta, T2).unwrap();
    let names = |object: &Value| -> Vec<Value> {
        object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!([c["name"], c["image"]]))
            .collect()
    };
    assert_eq!(names(&live), [json!(["a", "a:1"]), json!(["b", "b:1"])]);
    let container = |name: &str| path(&format!(".spec.template.spec.containers[name=\"{name}\"]"));
    assert!(owned(&live, "team-a", "Apply").has(&container("a")));
    assert!(!owned(&live, "team-a", "Apply").has(&container("b")));
    assert!(owned(&live, "team-b", "Apply").has(&container("b")));

    // --- team-a upgrades its image: team-b's container is untouched
    let live =
        apply(Some(&live), &deployment(None, &[("a", "a:2")]), "team-a", false, &meta, T3).unwrap();
    assert_eq!(names(&live), [json!(["a", "a:2"]), json!(["b", "b:1"])]);

    // --- team-a drops its container: only team-b's remains
    let live = apply(Some(&live), &deployment(None, &[]), "team-a", false, &meta, T3).unwrap();
    assert_eq!(names(&live), [json!(["b", "b:1"])]);

    // --- team-b changing team-a's former container image is no conflict any more
    let config = deployment(None, &[("b", "b:1"), ("a", "a:3")]);
    let live = apply(Some(&live), &config, "team-b", false, &meta, T3).unwrap();
    assert_eq!(names(&live), [json!(["b", "b:1"]), json!(["a", "a:3"])]);
}

#[test]
fn env_lists_merge_by_name() {
    let meta = deployment_meta();
    let with_env = |env: Value| {
        let mut config = deployment(None, &[("app", "app:1")]);
        config["spec"]["template"]["spec"]["containers"][0]["env"] = env;
        config
    };
    let live = apply(
        None,
        &with_env(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
        "base",
        false,
        &meta,
        T1,
    )
    .unwrap();
    let live = apply(
        Some(&live),
        &with_env(json!([{"name": "C", "value": "3"}])),
        "sidecar",
        false,
        &meta,
        T2,
    )
    .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
    );
    let env = ".spec.template.spec.containers[name=\"app\"].env";
    assert!(owned(&live, "sidecar", "Apply").has(&path(&format!("{env}[name=\"C\"].value"))));
    assert!(!owned(&live, "sidecar", "Apply").has(&path(&format!("{env}[name=\"A\"]"))));

    let error = apply(
        Some(&live),
        &with_env(json!([{"name": "B", "value": "9"}])),
        "sidecar",
        false,
        &meta,
        T3,
    )
    .unwrap_err();
    assert!(
        error.to_string().ends_with(&format!("conflict with \"base\": {env}[name=\"B\"].value")),
        "{error}"
    );
}

#[test]
fn custom_resources_replace_lists_and_merge_maps() {
    let config = |items: Value, extra: Option<(&str, i64)>| {
        let mut spec = json!({"items": items});
        if let Some((key, value)) = extra {
            spec[key] = json!(value);
        }
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
    };
    let live =
        apply(None, &config(json!(["a", "b"]), Some(("size", 1))), "one", false, &PlainMeta, T1)
            .unwrap();
    let live =
        apply(Some(&live), &config(json!(["c"]), None), "one", false, &PlainMeta, T2).unwrap();
    assert_eq!(live["spec"], json!({"items": ["c"]}));
    assert_eq!(owned(&live, "one", "Apply").to_fields_v1(), json!({"f:spec": {"f:items": {}}}));
}

#[test]
fn service_ports_are_keyed_by_port_and_protocol() {
    let meta = SchemaMeta::for_type::<Service>();
    let service = |ports: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": ports}});
    let live =
        apply(None, &service(json!([{"port": 53, "protocol": "UDP"}])), "dns", false, &meta, T1)
            .unwrap();
    let live =
        apply(Some(&live), &service(json!([{"port": 53}])), "tcp", false, &meta, T2).unwrap();
    assert_eq!(live["spec"]["ports"], json!([{"port": 53, "protocol": "UDP"}, {"port": 53}]));
    let fields = owned(&live, "tcp", "Apply").to_fields_v1();
    assert_eq!(
        fields,
        json!({"f:spec": {"f:ports": {"k:{\"port\":53,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}})
    );
}

#[test]
fn reapplying_the_same_configuration_changes_nothing() {
    let meta = deployment_meta();
    let config = deployment(Some(2), &[("nginx", "nginx:1")]);
    let live = apply(None, &config, "deployer", false, &meta, T1).unwrap();
    let again = apply(Some(&live), &config, "deployer", false, &meta, T2).unwrap();
    assert_eq!(again, live);
}

#[test]
fn shared_items_take_the_applied_order_and_others_keep_their_place() {
    let meta = deployment_meta();
    let live = apply(None, &deployment(None, &[("a", "a:1"), ("b", "b:1")]), "x", false, &meta, T1)
        .unwrap();
    let mut with_c = live.clone();
    let containers = &mut with_c["spec"]["template"]["spec"]["containers"];
    containers.as_array_mut().unwrap().insert(1, json!({"name": "c", "image": "c:1"}));
    record_update(Some(&live), &mut with_c, "y", "apps/v1", None, &meta, T2);

    let reordered = deployment(None, &[("b", "b:1"), ("a", "a:1")]);
    let live = apply(Some(&with_c), &reordered, "x", false, &meta, T3).unwrap();
    let names: Vec<&Value> = live["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|container| &container["name"])
        .collect();
    assert_eq!(names, [&json!("c"), &json!("b"), &json!("a")]);
}

#[test]
fn owner_references_are_owned_whole() {
    let meta = deployment_meta();
    let mut config = deployment(None, &[]);
    config["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u1", "controller": true,
    }]);
    let live = apply(None, &config, "operator", false, &meta, T1).unwrap();
    assert_eq!(
        owned(&live, "operator", "Apply").to_fields_v1()["f:metadata"],
        json!({"f:ownerReferences": {"k:{\"uid\":\"u1\"}": {}}})
    );
}
