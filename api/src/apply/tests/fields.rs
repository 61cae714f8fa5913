//! `FieldSet` and its `fieldsV1` form.

use serde_json::json;

use super::*;

#[test]
fn fields_v1_round_trips() {
    let fields = json!({
        "f:metadata": {"f:finalizers": {".": {}, "v:\"example.com/a\"": {}, "v:\"x\\u003cy\"": {}}},
        "f:spec": {
            "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}},
            "f:args": {"i:0": {}},
            "f:replicas": {},
        },
    });
    let set = FieldSet::from_fields_v1(&fields).unwrap();
    assert_eq!(set.to_fields_v1(), fields);
    let paths: Vec<String> = set.paths().iter().map(|p| PathDisplay(p).to_string()).collect();
    assert_eq!(
        paths,
        [
            ".metadata.finalizers",
            ".metadata.finalizers[=\"example.com/a\"]",
            ".metadata.finalizers[=\"x<y\"]",
            ".spec.replicas",
            ".spec.args[0]",
            ".spec.containers[name=\"c\"]",
            ".spec.containers[name=\"c\"].image",
            ".spec.containers[name=\"c\"].name",
        ]
    );
    // Go escapes `<` in JSON: the key is written as Kubernetes writes it.
    let finalizer = PathElement::Value(json!("x<y"));
    assert_eq!(finalizer.to_fields_v1_key(), "v:\"x\\u003cy\"");
    assert_eq!(PathElement::from_fields_v1_key("v:\"x\\u003cy\"").unwrap(), Some(finalizer));
    assert_eq!(PathElement::from_fields_v1_key("z:unknown").unwrap(), None);
    assert!(FieldSet::from_fields_v1(&json!({"q": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
}

#[test]
fn set_operations_follow_structured_merge_diff() {
    let set = |paths: &[&str]| {
        let paths: Vec<Path> = paths.iter().map(|p| path(p)).collect();
        FieldSet::from_paths(paths.iter().map(Vec::as_slice))
    };
    let a = set(&[".a", ".a.b", ".c.d"]);
    let b = set(&[".a", ".c", ".e"]);
    let cases: [(&str, FieldSet, FieldSet); 4] = [
        ("union", a.union(&b), set(&[".a", ".a.b", ".c", ".c.d", ".e"])),
        ("intersection", a.intersection(&b), set(&[".a"])),
        // A parent in the other set does not remove children...
        ("difference", a.difference(&b), set(&[".a.b", ".c.d"])),
        // ...unless the difference is recursive.
        ("recursive difference", a.recursive_difference(&b), set(&[])),
    ];
    for (name, found, expected) in cases {
        assert_eq!(found, expected, "{name}");
    }
    assert!(set(&[]).is_empty());
}
