//! `record_update`: ownership recorded for creates, updates and patches.

use serde_json::{json, Value};

use super::*;

#[test]
fn record_update_on_create_owns_every_field_with_map_markers() {
    let meta = deployment_meta();
    let mut object = deployment(Some(1), &[("nginx", "nginx:1")]);
    object["metadata"]["labels"] = json!({"app": "web"});
    object["metadata"]["uid"] = json!("6a4c");
    record_update(None, &mut object, "kube-controller-manager", "apps/v1", None, &meta, T1);
    let entries = object["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0],
        json!({
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    ".": {},
                    "f:replicas": {},
                    "f:template": {".": {}, "f:spec": {".": {}, "f:containers": {
                        ".": {},
                        "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}},
                    }}},
                },
            },
        })
    );
}

#[test]
fn record_update_merges_entries_and_drops_emptied_ones() {
    let meta = deployment_meta();
    let mut v1 = deployment(Some(1), &[("nginx", "nginx:1")]);
    record_update(None, &mut v1, "creator", "apps/v1", None, &meta, T1);

    // --- an update changing nothing keeps the entries and their times
    let mut same = v1.clone();
    record_update(Some(&v1), &mut same, "editor", "apps/v1", None, &meta, T2);
    assert_eq!(same["metadata"]["managedFields"], v1["metadata"]["managedFields"]);

    // --- two updates by one manager merge into one entry
    let mut v2 = v1.clone();
    v2["spec"]["replicas"] = json!(2);
    record_update(Some(&v1), &mut v2, "editor", "apps/v1", None, &meta, T2);
    let mut v3 = v2.clone();
    v3["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    record_update(Some(&v2), &mut v3, "editor", "apps/v1", None, &meta, T3);
    let editor = owned(&v3, "editor", "Update");
    assert!(editor.has(&path(".spec.replicas")));
    assert!(editor.has(&path(".spec.template.spec.containers[name=\"nginx\"].image")));
    assert_eq!(entry(&v3, "editor", "Update").unwrap()["time"], json!(T3));

    // --- removing the last field a manager owns drops its entry
    let mut v4 = v3.clone();
    v4["spec"].as_object_mut().unwrap().remove("replicas");
    v4["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1");
    record_update(Some(&v3), &mut v4, "creator", "apps/v1", None, &meta, T3);
    assert!(entry(&v4, "editor", "Update").is_none(), "{}", v4["metadata"]["managedFields"]);
    assert_eq!(v4["metadata"]["managedFields"].as_array().unwrap().len(), 1);
}

#[test]
fn record_update_honours_sent_managed_fields_as_kubernetes_does() {
    let meta = deployment_meta();
    let mut stored = deployment(Some(1), &[("nginx", "nginx:1")]);
    stored["metadata"]["uid"] = json!("6a4c");
    record_update(None, &mut stored, "creator", "apps/v1", None, &meta, T1);
    let custom = json!([{
        "manager": "imported", "operation": "Apply", "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }]);
    let cases: [(&str, Value, Option<&str>, Vec<&str>); 5] = [
        ("absent keeps the stored entries", Value::Null, None, vec!["creator"]),
        ("valid entries replace them", custom.clone(), None, vec!["imported"]),
        (
            "invalid entries are ignored",
            json!([{"manager": "x", "operation": "Bogus"}]),
            None,
            vec!["creator"],
        ),
        ("an empty list resets tracking", json!([]), None, vec![]),
        ("a subresource write ignores them", custom, Some("status"), vec!["creator"]),
    ];
    for (name, sent, subresource, managers) in cases {
        let mut new = stored.clone();
        if sent.is_null() {
            new["metadata"].as_object_mut().unwrap().remove("managedFields");
        } else {
            new["metadata"]["managedFields"] = sent;
        }
        record_update(Some(&stored), &mut new, "editor", "apps/v1", subresource, &meta, T2);
        let found: Vec<&str> = new["metadata"]["managedFields"]
            .as_array()
            .map(|entries| entries.iter().map(|e| e["manager"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(found, managers, "{name}");
    }
}

#[test]
fn update_managers_beyond_ten_fold_into_ancient_changes() {
    let meta = deployment_meta();
    let time = |second: usize| format!("2024-05-01T10:00:{second:02}Z");
    let mut object = deployment(None, &[]);
    object["metadata"]["labels"] = json!({"l0": "v"});
    record_update(None, &mut object, "creator", "apps/v1", None, &meta, &time(0));
    for index in 1..=10 {
        let mut next = object.clone();
        next["metadata"]["labels"][format!("l{index}")] = json!("v");
        record_update(
            Some(&object),
            &mut next,
            &format!("u{index}"),
            "apps/v1",
            None,
            &meta,
            &time(index),
        );
        object = next;
    }
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["manager"].as_str().unwrap())
        .collect();
    assert_eq!(
        managers,
        ["ancient-changes", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10"]
    );
    let ancient = owned(&object, "ancient-changes", "Update");
    assert!(ancient.has(&path(".metadata.labels.l0")) && ancient.has(&path(".metadata.labels.l1")));
    assert_eq!(entry(&object, "ancient-changes", "Update").unwrap()["time"], json!(time(1)));
}
