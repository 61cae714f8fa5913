#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

use super::*;

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_owned(), "agent".to_owned())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "agent".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: "agent".into(),
        uid: "ds-uid".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn revision(name: &str, number: i64, data: serde_json::Value) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

fn with_hash(mut revision: ControllerRevision, hash: &str) -> ControllerRevision {
    revision.metadata.labels =
        Some(BTreeMap::from([(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash.to_owned())]));
    revision
}

#[test]
fn revision_data_is_the_patch_kubectl_rollout_undo_sends() {
    let data = revision_data(&template("agent:1"));
    assert_eq!(
        data,
        json!({"spec": {"template": {
            "$patch": "replace",
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
        }}})
    );
}

#[test]
fn template_of_reads_back_the_stored_template() {
    let stored = revision("agent-1", 1, revision_data(&template("agent:1")));
    assert_eq!(template_of(&stored).unwrap(), template("agent:1"));
    let broken = revision("agent-2", 2, json!({"spec": {}}));
    assert_eq!(template_of(&broken), Err(HistoryError::NoTemplate { revision: "agent-2".into() }));
}

#[test]
fn hash_is_stable_safe_and_changes_with_template_and_collision_count() {
    let data = revision_data(&template("agent:1"));
    let first = hash(&data, None);
    assert_eq!(first, hash(&data.clone(), None), "same data, same hash");
    assert!(first.bytes().all(|byte| SAFE_ALPHABET.contains(&byte)), "{first}");
    assert_ne!(first, hash(&revision_data(&template("agent:2")), None));
    assert_ne!(first, hash(&data, Some(1)));
    assert_ne!(hash(&data, Some(1)), hash(&data, Some(2)));
}

#[test]
fn hash_ignores_key_order_and_null_members() {
    let a =
        json!({"spec": {"template": {"metadata": {"creationTimestamp": null}, "b": 1, "a": 2}}});
    let b = json!({"spec": {"template": {"a": 2, "metadata": {}, "b": 1}}});
    assert_eq!(hash(&a, None), hash(&b, None));
}

#[test]
fn hash_is_fnv1a_rendered_with_the_safe_alphabet() {
    // The primitive on published FNV-1a test vectors.
    assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    // Digits '0'..'9' are bytes 48..57, which map to alphabet[21..27] and then alphabet[0..4].
    assert_eq!(safe_encode("0123456789"), "456789bcdf");
    assert_eq!(hash(&json!({}), None), safe_encode(&fnv1a_32(b"{}").to_string()));
}

#[test]
fn revision_name_truncates_long_parents() {
    assert_eq!(revision_name("agent", "abc"), "agent-abc");
    let long = "x".repeat(300);
    let name = revision_name(&long, "abc");
    assert_eq!(name.len(), 223 + 4);
    assert!(name.ends_with("x-abc"));
}

#[test]
fn new_revision_is_owned_labelled_and_named_after_its_hash() {
    let labels = BTreeMap::from([("app".to_owned(), "agent".to_owned())]);
    let made = new_revision(&owner(), "kube-system", "agent", &labels, &template("a:1"), 3, None);
    let hash = hash(&revision_data(&template("a:1")), None);
    assert_eq!(made.metadata.name, Some(format!("agent-{hash}")));
    assert_eq!(made.metadata.namespace.as_deref(), Some("kube-system"));
    let got = made.metadata.labels.clone().unwrap();
    assert_eq!(got.get("app").map(String::as_str), Some("agent"));
    assert_eq!(got.get(CONTROLLER_REVISION_HASH_LABEL), Some(&hash));
    assert_eq!(made.metadata.owner_references, Some(vec![owner()]));
    assert_eq!(made.revision, 3);
    assert_eq!(made.data.unwrap().0, revision_data(&template("a:1")));

    let collided = new_revision(&owner(), "ns", "agent", &labels, &template("a:1"), 3, Some(1));
    assert_ne!(collided.metadata.name, Some(format!("agent-{hash}")));
}

#[test]
fn find_equal_ignores_nulls_and_prefers_the_highest_revision() {
    let data = revision_data(&template("a:1"));
    let mut go_written = data.clone();
    go_written["spec"]["template"]["metadata"]["creationTimestamp"] = serde_json::Value::Null;
    let revisions = vec![
        revision("old", 1, revision_data(&template("a:0"))),
        revision("dup-low", 2, data.clone()),
        revision("dup-high", 5, go_written),
        revision("other", 6, revision_data(&template("a:2"))),
    ];
    let found = find_equal(&revisions, &data).unwrap();
    assert_eq!(found.metadata.name.as_deref(), Some("dup-high"));
    assert!(find_equal(&revisions, &revision_data(&template("a:9"))).is_none());
    assert!(data_equal(&data, &revisions[2].data.clone().unwrap().0));
}

#[test]
fn next_number_follows_the_highest_revision() {
    assert_eq!(next_number(&[]), 1);
    let revisions = vec![revision("a", 4, json!({})), revision("b", 2, json!({}))];
    assert_eq!(next_number(&revisions), 5);
}

#[test]
fn sorted_orders_by_revision_then_creation_then_name() {
    let at = |seconds: i64| Some(Time(jiff::Timestamp::from_second(seconds).unwrap()));
    let mut newer = revision("a", 1, json!({}));
    newer.metadata.creation_timestamp = at(20);
    let mut older = revision("z", 1, json!({}));
    older.metadata.creation_timestamp = at(10);
    let revisions = vec![revision("c", 3, json!({})), newer, older];
    let names: Vec<_> =
        sorted(&revisions).iter().map(|r| r.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["z", "a", "c"]);
}

#[test]
fn to_truncate_table() {
    let revisions = vec![
        with_hash(revision("ds-h1", 1, json!({})), "h1"),
        with_hash(revision("ds-h2", 2, json!({})), "h2"),
        with_hash(revision("ds-h3", 3, json!({})), "h3"),
        with_hash(revision("ds-h4", 4, json!({})), "h4"),
        with_hash(revision("ds-h5", 5, json!({})), "h5"),
    ];
    let set = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    // Each row: what it checks, live set, limit, expected deletions (oldest first).
    let cases: Vec<(&str, BTreeSet<String>, usize, Vec<&str>)> = vec![
        ("under the limit keeps everything", set(&["h5"]), 10, vec![]),
        ("oldest historic revisions go first", set(&["h5"]), 2, vec!["ds-h1", "ds-h2"]),
        ("live hashes are never deleted", set(&["h1", "h5"]), 1, vec!["ds-h2", "ds-h3"]),
        ("live revision names count too", set(&["ds-h2", "h5"]), 1, vec!["ds-h1", "ds-h3"]),
        (
            "limit zero deletes all non-live",
            set(&["h4"]),
            0,
            vec!["ds-h1", "ds-h2", "ds-h3", "ds-h5"],
        ),
    ];
    for (what, live, limit, expected) in cases {
        assert_eq!(to_truncate(&revisions, &live, limit), expected, "{what}");
    }
}

#[test]
fn hash_values_are_frozen() {
    // Revision names must not change between releases: pods carry these hashes, and a changed
    // hash would roll every DaemonSet on upgrade. Checked against an independent FNV-1a over
    // Python's `json.dumps(data, sort_keys=True, separators=(",", ":"))`.
    let data = revision_data(&template("agent:1"));
    assert_eq!(hash(&data, None), "5b4d7948c4");
    assert_eq!(hash(&data, Some(3)), "9587df547");
}
