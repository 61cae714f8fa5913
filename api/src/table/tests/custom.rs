//! JSONPath and custom resource columns.

use serde_json::{json, Value};

use super::{ago, now};
use crate::table::{custom_cells, custom_columns, table_json, JsonPath};

fn first(path: &str, obj: &Value) -> Option<Value> {
    JsonPath::parse(path).expect("path parses").find(obj).first().map(|v| (*v).clone())
}

#[test]
fn json_path_subset() {
    let obj = json!({
        "metadata": {"name": "w", "labels": {"app.kubernetes.io/name": "widget"}},
        "spec": {"replicas": 3, "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]},
        "status": {"conditions": [
            {"type": "Progressing", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "Waiting"}]},
    });
    let cases = [
        (".spec.replicas", Some(json!(3))),
        ("{.spec.replicas}", Some(json!(3))),
        ("$.spec.replicas", Some(json!(3))),
        (".spec.ports[0].port", Some(json!(80))),
        (".spec.ports[-1].name", Some(json!("https"))),
        (".spec.ports[*].name", Some(json!("http"))),
        (".spec.ports[1:].port", Some(json!(443))),
        (".spec.ports[5].port", None),
        (".spec.missing.deeper", None),
        (".metadata.labels.app\\.kubernetes\\.io/name", Some(json!("widget"))),
        (".metadata.labels['app.kubernetes.io/name']", Some(json!("widget"))),
        (".status.conditions[?(@.type==\"Ready\")].status", Some(json!("False"))),
        (".status.conditions[?(@.type == 'Ready')].reason", Some(json!("Waiting"))),
        (".status.conditions[?(@.reason)].type", Some(json!("Ready"))),
        (".status.conditions[?(@.type!=\"Ready\")].type", Some(json!("Progressing"))),
        (".spec.ports[?(@.port > 100)].name", Some(json!("https"))),
        ("..port", Some(json!(80))),
    ];
    for (path, want) in cases {
        assert_eq!(first(path, &obj), want, "{path}");
    }
    let all = JsonPath::parse(".spec.ports[*].port").expect("parses");
    assert_eq!(all.find(&obj), [&json!(80), &json!(443)]);
    assert!(JsonPath::parse(".spec.ports[").is_err());
    assert!(JsonPath::parse(".status.conditions[?(@.type=)]").is_err());
}

#[test]
fn crd_printer_columns() {
    let printer_columns = json!([
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
            "description": "Readiness"},
        {"name": "Ratio", "type": "number", "jsonPath": ".status.ratio", "priority": 1},
        {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
        {"name": "Ports", "type": "string", "jsonPath": ".spec.ports"},
        {"name": "Big", "type": "string", "jsonPath": ".status.big"},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        {"name": "Wrong Type", "type": "integer", "jsonPath": ".metadata.name"},
        {"name": "Started", "type": "date", "jsonPath": ".status.startedAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]);
    let columns = custom_columns(&printer_columns);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Replicas",
            "Ready",
            "Ratio",
            "Paused",
            "Ports",
            "Big",
            "Missing",
            "Wrong Type",
            "Started",
            "Age"
        ]
    );
    assert_eq!(
        columns[1].description,
        "Custom resource definition column (in JSONPath format): .spec.replicas"
    );
    assert_eq!(columns[2].description, "Readiness");
    assert_eq!(columns[3].priority, 1);

    let widget = json!({
        "metadata": {"name": "w1", "creationTimestamp": ago(7200)},
        "spec": {"replicas": 2, "paused": true, "ports": [{"port": 80, "name": "<http>"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "ratio": 0.5,
            "big": 2_500_000.0, "startedAt": "not a time"},
    });
    assert_eq!(
        custom_cells(&columns, &widget, now()),
        [
            json!("w1"),
            json!(2),
            json!("True"),
            json!(0.5),
            json!(true),
            json!("[{\"name\":\"\\u003chttp\\u003e\",\"port\":80}]"),
            json!("2.5e+06"),
            Value::Null,
            Value::Null,
            json!("<invalid>"),
            json!("120m")
        ]
    );
    let table = table_json(&columns, vec![(custom_cells(&columns, &widget, now()), Value::Null)]);
    assert_eq!(
        table["columnDefinitions"][3],
        json!({"name": "Ratio", "type": "number",
        "format": "", "description": "Custom resource definition column (in JSONPath format): .status.ratio",
        "priority": 1})
    );
}

#[test]
fn crd_without_printer_columns_prints_name_and_age() {
    let columns = custom_columns(&Value::Null);
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Name", "Age"]);
    assert_eq!(columns[1].kind, "date");
    let widget = json!({"metadata": {"name": "w", "creationTimestamp": ago(45 * 86400)}});
    assert_eq!(custom_cells(&columns, &widget, now()), [json!("w"), json!("45d")]);
    assert_eq!(custom_columns(&json!([])).len(), 2);
}

#[test]
fn a_bad_json_path_ends_the_column_list() {
    let columns = custom_columns(&json!([
        {"name": "Good", "type": "string", "jsonPath": ".spec.a"},
        {"name": "Bad", "type": "string", "jsonPath": ".spec[?(@.x"},
        {"name": "After", "type": "string", "jsonPath": ".spec.b"},
    ]));
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Name", "Good"]);
}
