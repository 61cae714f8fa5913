//! Ownership scenarios from structured-merge-diff's own tests (`merge/set_test.go`,
//! `merge/multiple_appliers_test.go`, v4.6.0), run on the updater without Kubernetes' layers.

use serde_json::{json, Value};

use super::super::fieldset::FieldSet;
use super::super::managed::ManagerKey;
use super::super::path::PathElement;
use super::super::schema::Shape;
use super::super::updater::{ManagedSets, Updater};
use crate::patch::{FieldMeta, PatchMeta, PatchStrategy, PlainMeta};

/// `set` is a set of strings; `list` is keyed by `name`.
struct Lists;

impl PatchMeta for Lists {
    fn field(&self, name: &str) -> FieldMeta {
        let merge_key = match name {
            "set" => None,
            "list" => Some("name".to_owned()),
            _ => return FieldMeta::plain(),
        };
        FieldMeta { strategy: PatchStrategy::Merge, merge_key, value: Box::new(PlainMeta) }
    }
}

enum Op {
    Apply(&'static str, Value),
    Update(&'static str, Value),
}

/// Runs the operations and returns the object and every manager's set.
fn run(ops: Vec<Op>) -> (Value, ManagedSets) {
    let meta = Lists;
    let shape = Shape::root(&meta, &json!({}));
    let updater = Updater { shape: &shape };
    let (mut live, mut managers) = (json!({}), ManagedSets::new());
    for op in ops {
        match op {
            Op::Apply(manager, config) => {
                let key = ManagerKey::internal(manager);
                let changed =
                    updater.apply(&live, &config, "v1", &mut managers, &key, false).unwrap();
                if let Some(object) = changed {
                    live = object;
                }
            }
            Op::Update(manager, object) => {
                let key = ManagerKey::internal(manager);
                updater.update_managers(&live, &object, "v1", &mut managers, &key);
                live = object;
            }
        }
    }
    (live, managers)
}

fn set_items(items: &[&str]) -> FieldSet {
    let paths: Vec<Vec<PathElement>> = items
        .iter()
        .map(|item| vec![PathElement::Field("set".into()), PathElement::Value(json!(item))])
        .collect();
    FieldSet::from_paths(paths.iter().map(Vec::as_slice))
}

fn owned(managers: &ManagedSets, manager: &str) -> FieldSet {
    managers.get(&ManagerKey::internal(manager)).map(|owned| owned.set.clone()).unwrap_or_default()
}

#[test]
fn apply_update_apply_without_overlap() {
    let (object, managers) = run(vec![
        Op::Apply("default", json!({"set": ["a", "c"]})),
        Op::Update("controller", json!({"set": ["a", "b", "c", "d"]})),
        Op::Apply("default", json!({"set": ["a", "aprime", "c", "cprime"]})),
    ]);
    assert_eq!(object, json!({"set": ["a", "b", "aprime", "c", "d", "cprime"]}));
    assert_eq!(owned(&managers, "default"), set_items(&["a", "aprime", "c", "cprime"]));
    assert_eq!(owned(&managers, "controller"), set_items(&["b", "d"]));
}

#[test]
fn apply_update_apply_with_overlap() {
    let (object, managers) = run(vec![
        Op::Apply("default", json!({"set": ["a", "c"]})),
        Op::Update("controller", json!({"set": ["a", "b", "c", "d"]})),
        Op::Apply("default", json!({"set": ["a", "b", "c"]})),
    ]);
    assert_eq!(object, json!({"set": ["a", "b", "c", "d"]}));
    assert_eq!(owned(&managers, "default"), set_items(&["a", "b", "c"]));
    assert_eq!(owned(&managers, "controller"), set_items(&["b", "d"]));
}

#[test]
fn apply_twice_reorders() {
    let (object, _) = run(vec![
        Op::Apply("default", json!({"set": ["a", "b", "c", "d"]})),
        Op::Apply("default", json!({"set": ["a", "d", "c", "b"]})),
    ]);
    assert_eq!(object, json!({"set": ["a", "d", "c", "b"]}));
}

#[test]
fn appliers_remove_only_their_own_items() {
    let (object, managers) = run(vec![
        Op::Apply("apply-one", json!({"list": [{"name": "a"}, {"name": "b"}]})),
        Op::Apply("apply-two", json!({"list": [{"name": "c"}]})),
        Op::Apply("apply-one", json!({"list": [{"name": "a"}]})),
    ]);
    assert_eq!(object, json!({"list": [{"name": "a"}, {"name": "c"}]}));
    assert_eq!(
        owned(&managers, "apply-one").to_fields_v1(),
        json!({"f:list": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}}}})
    );
}

#[test]
fn remove_one_keep_one_shared() {
    let (object, _) = run(vec![
        Op::Apply("apply-one", json!({"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})),
        Op::Apply("apply-two", json!({"list": [{"name": "c"}, {"name": "d"}]})),
        Op::Apply("apply-one", json!({"list": [{"name": "a"}]})),
    ]);
    assert_eq!(object, json!({"list": [{"name": "a"}, {"name": "c"}, {"name": "d"}]}));
}
