//! JSON merge patch (RFC 7386), as `application/merge-patch+json`, and its two-way diff.
//!
//! Objects merge member by member and `null` deletes a member; anything else replaces the target
//! whole. Like Kubernetes' library, values that land where nothing was merged have their `null`
//! object members dropped, and a patch that is neither an object nor an array is refused.

use serde_json::{Map, Value};

use super::PatchError;

/// Applies the merge patch `patch` to `document` and returns the patched document.
pub fn apply_merge_patch(document: &Value, patch: &Value) -> Result<Value, PatchError> {
    match (document, patch) {
        (Value::Object(document), Value::Object(patch)) => {
            let mut merged = document.clone();
            merge_members(&mut merged, patch);
            Ok(Value::Object(merged))
        }
        (_, Value::Object(_) | Value::Array(_)) => Ok(without_null_members(patch.clone())),
        _ => Err(PatchError::InvalidMergePatch),
    }
}

/// Returns a merge patch that turns `original` into `modified`: members only in `original` become
/// `null`, changed members carry their new value, and objects present in both are diffed
/// recursively. Equal documents give `{}`.
///
/// A merge patch cannot set a member to `null` or address array elements: `null` members of
/// `modified` come out as deletions, and a changed array is sent whole.
pub fn create_merge_patch(original: &Value, modified: &Value) -> Value {
    match (original, modified) {
        (Value::Object(original), Value::Object(modified)) => {
            Value::Object(diff_members(original, modified))
        }
        _ if original == modified => Value::Object(Map::new()),
        _ => modified.clone(),
    }
}

fn merge_members(document: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, patch_value) in patch {
        if patch_value.is_null() {
            document.remove(key);
            continue;
        }
        let slot = document.entry(key.clone()).or_insert(Value::Null);
        match (slot, patch_value) {
            (Value::Object(current), Value::Object(patch_members)) => {
                merge_members(current, patch_members);
            }
            // An array or scalar replaces an object as it is, as in Kubernetes' library.
            (slot @ Value::Object(_), _) => *slot = patch_value.clone(),
            (slot, _) => *slot = without_null_members(patch_value.clone()),
        }
    }
}

/// Drops `null` members from every object within `value`; `null` array elements stay.
fn without_null_members(value: Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter(|(_, member)| !member.is_null())
                .map(|(key, member)| (key, without_null_members(member)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_null_members).collect()),
        other => other,
    }
}

fn diff_members(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, new) in modified {
        match (original.get(key), new) {
            (Some(old), new) if old == new => {}
            (Some(Value::Object(old)), Value::Object(new)) => {
                patch.insert(key.clone(), Value::Object(diff_members(old, new)));
            }
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The examples of RFC 7386 appendix A, and the cases Kubernetes' library handles its own way.
    #[test]
    fn patches_apply_as_rfc_7386_describes() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!({"a": {"b": null, "c": 1}}), json!({"a": {"c": 1}})),
            (json!({"a": null}), json!({"a": {"b": null}}), json!({"a": {}})),
            (
                json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}}),
                json!({"spec": {"replicas": 3}}),
                json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a"}]}}}}),
            ),
            (
                json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}}),
                json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
                json!({"metadata": {"labels": {"app": "web", "env": "prod"}}}),
            ),
        ];
        for (document, patch, expected) in cases {
            assert_eq!(apply_merge_patch(&document, &patch), Ok(expected), "{document} + {patch}");
        }
    }

    #[test]
    fn patch_that_is_not_a_document_is_refused() {
        for patch in [json!(null), json!("a"), json!(1), json!(true)] {
            let error = apply_merge_patch(&json!({"a": 1}), &patch).unwrap_err();
            assert_eq!(error, PatchError::InvalidMergePatch);
            assert_eq!(error.to_string(), "Invalid JSON Patch");
            assert_eq!(error.status().code(), 400);
        }
    }

    #[test]
    fn created_patch_turns_original_into_modified() {
        let cases = [
            (json!({"a": 1}), json!({"a": 1}), json!({})),
            (json!({"a": 1, "b": 2}), json!({"a": 1}), json!({"b": null})),
            (json!({"a": 1}), json!({"a": 2, "c": [1]}), json!({"a": 2, "c": [1]})),
            (
                json!({"metadata": {"labels": {"app": "web"}, "name": "x"}}),
                json!({"metadata": {"labels": {"app": "api"}, "name": "x"}}),
                json!({"metadata": {"labels": {"app": "api"}}}),
            ),
            (json!({"a": [1, 2]}), json!({"a": [2]}), json!({"a": [2]})),
            (json!({"a": {"b": 1}}), json!({"a": 5}), json!({"a": 5})),
            (json!({"a": 5}), json!({"a": {"b": 1}}), json!({"a": {"b": 1}})),
            (json!({"a": {"b": 1}}), json!({"a": {}}), json!({"a": {"b": null}})),
            (json!([1]), json!([2]), json!([2])),
        ];
        for (original, modified, expected) in cases {
            let patch = create_merge_patch(&original, &modified);
            assert_eq!(patch, expected, "{original} -> {modified}");
            assert_eq!(apply_merge_patch(&original, &patch), Ok(modified));
        }
    }

    #[test]
    fn status_update_patch_from_controller() {
        let original = json!({
            "metadata": {"name": "web", "resourceVersion": "7"},
            "status": {"replicas": 2, "readyReplicas": 1, "conditions": [{"type": "Available"}]}
        });
        let mut modified = original.clone();
        modified["status"]["readyReplicas"] = json!(2);
        modified["status"].as_object_mut().unwrap().remove("conditions");
        let patch = create_merge_patch(&original, &modified);
        assert_eq!(patch, json!({"status": {"readyReplicas": 2, "conditions": null}}));
        assert_eq!(apply_merge_patch(&original, &patch), Ok(modified));
    }
}
