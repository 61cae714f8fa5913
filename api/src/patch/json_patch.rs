//! JSON patch (RFC 6902) over JSON pointers (RFC 6901), as `application/json-patch+json`.
//!
//! Operations apply in order to a copy of the document; the first failure discards the copy, so a
//! patch applies entirely or not at all. Error texts are those of `gopkg.in/evanphx/json-patch.v4`,
//! which the Kubernetes API server uses, and so are its leniencies: `replace` of a missing object
//! member adds it, and negative array indices count from the end. Where that library deviates from
//! the RFC in ways no client can rely on, this module follows the RFC instead: `add` and `move` to
//! the root pointer `""` replace the document, `add`, `replace` and `test` require a `value`, and
//! `copy` from a missing member fails instead of copying `null`.

use std::fmt;

use serde_json::{Map, Number, Value};

use super::{go_json_type, PatchError};

/// The most operations one JSON patch may hold, as in Kubernetes.
pub const MAX_OPERATIONS: usize = 10_000;

/// A JSON patch operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonPatchOp {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl JsonPatchOp {
    fn parse(op: &str) -> Option<JsonPatchOp> {
        Some(match op {
            "add" => JsonPatchOp::Add,
            "remove" => JsonPatchOp::Remove,
            "replace" => JsonPatchOp::Replace,
            "move" => JsonPatchOp::Move,
            "copy" => JsonPatchOp::Copy,
            "test" => JsonPatchOp::Test,
            _ => return None,
        })
    }
}

impl fmt::Display for JsonPatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonPatchOp::Add => "add",
            JsonPatchOp::Remove => "remove",
            JsonPatchOp::Replace => "replace",
            JsonPatchOp::Move => "move",
            JsonPatchOp::Copy => "copy",
            JsonPatchOp::Test => "test",
        })
    }
}

/// Applies the JSON patch `patch` (a list of operations, or `null` for none) to `document` and
/// returns the patched document.
pub fn apply_json_patch(document: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = decode_operations(patch)?;
    if operations.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations { max: MAX_OPERATIONS, count: operations.len() });
    }
    let mut patched = document.clone();
    for operation in operations {
        apply_operation(&mut patched, operation)?;
    }
    Ok(patched)
}

/// Returns the operation objects of a patch; `null` operations decode to empty ones, as in Go.
fn decode_operations(patch: &Value) -> Result<Vec<Option<&Map<String, Value>>>, PatchError> {
    let items = match patch {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(PatchError::JsonPatchDecode {
                expected: "jsonpatch.Patch",
                found: go_json_type(other),
            })
        }
    };
    items
        .iter()
        .map(|item| match item {
            Value::Null => Ok(None),
            Value::Object(operation) => Ok(Some(operation)),
            other => Err(PatchError::JsonPatchDecode {
                expected: "jsonpatch.Operation",
                found: go_json_type(other),
            }),
        })
        .collect()
}

fn apply_operation(
    document: &mut Value,
    operation: Option<&Map<String, Value>>,
) -> Result<(), PatchError> {
    let name = operation.and_then(|operation| operation.get("op")).and_then(Value::as_str);
    let (Some(operation), Some(op)) = (operation, name.and_then(JsonPatchOp::parse)) else {
        return Err(PatchError::UnknownOperation { op: name.unwrap_or("unknown").to_owned() });
    };
    let member = |member: &'static str| {
        operation
            .get(member)
            .and_then(Value::as_str)
            .ok_or(PatchError::MissingMember { op, member })
    };
    let value = || operation.get("value").ok_or(PatchError::MissingMember { op, member: "value" });
    let path = Pointer::parse(op, "path", member("path")?)?;
    match op {
        JsonPatchOp::Add => path.add(document, op, value()?.clone()),
        JsonPatchOp::Remove => path.remove(document, op).map(drop),
        JsonPatchOp::Replace => path.replace(document, value()?.clone()),
        JsonPatchOp::Move => {
            let from = Pointer::parse(op, "from", member("from")?)?;
            let moved = from.remove(document, op)?;
            path.add(document, op, moved)
        }
        JsonPatchOp::Copy => {
            let from = Pointer::parse(op, "from", member("from")?)?;
            let copied = from.get(document, op)?.clone();
            path.add(document, op, copied)
        }
        JsonPatchOp::Test => path.test(document, value()?),
    }
}

/// A parsed JSON pointer, with the text it came from for error messages.
struct Pointer<'a> {
    text: &'a str,
    /// `path` or `from`: the operation member the pointer came from.
    member: &'static str,
    tokens: Vec<String>,
}

/// Where an array index token leads.
enum IndexError {
    NotANumber,
    OutOfBounds(i64),
}

impl<'a> Pointer<'a> {
    /// Parses an RFC 6901 pointer; one that is neither empty nor starts with `/` addresses
    /// nothing.
    fn parse(op: JsonPatchOp, member: &'static str, text: &'a str) -> Result<Self, PatchError> {
        let tokens = match text.strip_prefix('/') {
            _ if text.is_empty() => Vec::new(),
            Some(rest) => {
                rest.split('/').map(|token| token.replace("~1", "/").replace("~0", "~")).collect()
            }
            None => return Err(PatchError::PathNotFound { op, member, path: text.to_owned() }),
        };
        Ok(Pointer { text, member, tokens })
    }

    fn not_found(&self, op: JsonPatchOp) -> PatchError {
        PatchError::PathNotFound { op, member: self.member, path: self.text.to_owned() }
    }

    fn index_error(&self, op: JsonPatchOp, token: &str, error: IndexError) -> PatchError {
        let path = self.text.to_owned();
        match error {
            IndexError::NotANumber => {
                PatchError::NotAnArrayIndex { op, path, token: token.to_owned() }
            }
            IndexError::OutOfBounds(index) => PatchError::IndexOutOfBounds { op, path, index },
        }
    }

    /// Returns the object or array holding the pointer's last token, and that token, or `None`
    /// for the root pointer.
    fn parent<'d>(
        &self,
        document: &'d mut Value,
        op: JsonPatchOp,
    ) -> Result<Option<(&'d mut Value, &str)>, PatchError> {
        let Some((last, parents)) = self.tokens.split_last() else {
            return Ok(None);
        };
        let mut current = document;
        for token in parents {
            current = match current {
                Value::Object(members) => members.get_mut(token),
                Value::Array(items) => {
                    existing_index(token, items.len()).ok().and_then(|index| items.get_mut(index))
                }
                _ => None,
            }
            .ok_or_else(|| self.not_found(op))?;
        }
        match current {
            Value::Object(_) | Value::Array(_) => Ok(Some((current, last))),
            _ => Err(self.not_found(op)),
        }
    }

    fn add(&self, document: &mut Value, op: JsonPatchOp, value: Value) -> Result<(), PatchError> {
        let Some((parent, token)) = self.parent(document, op)? else {
            *document = value;
            return Ok(());
        };
        match parent {
            Value::Object(members) => {
                members.insert(token.to_owned(), value);
            }
            Value::Array(items) => {
                let index = insertion_index(token, items.len())
                    .map_err(|error| self.index_error(op, token, error))?;
                items.insert(index, value);
            }
            _ => return Err(self.not_found(op)),
        }
        Ok(())
    }

    fn remove(&self, document: &mut Value, op: JsonPatchOp) -> Result<Value, PatchError> {
        let (parent, token) = self.parent(document, op)?.ok_or_else(|| self.not_found(op))?;
        match parent {
            Value::Object(members) => members.remove(token).ok_or_else(|| {
                PatchError::NonexistentKey { op, path: self.text.to_owned(), key: token.to_owned() }
            }),
            Value::Array(items) => {
                let index = existing_index(token, items.len())
                    .map_err(|error| self.index_error(op, token, error))?;
                Ok(items.remove(index))
            }
            _ => Err(self.not_found(op)),
        }
    }

    fn replace(&self, document: &mut Value, value: Value) -> Result<(), PatchError> {
        let op = JsonPatchOp::Replace;
        let Some((parent, token)) = self.parent(document, op)? else {
            *document = value;
            return Ok(());
        };
        match parent {
            // Kubernetes' library sets the member whether or not it exists.
            Value::Object(members) => {
                members.insert(token.to_owned(), value);
            }
            Value::Array(items) => {
                let slot = existing_index(token, items.len())
                    .ok()
                    .and_then(|index| items.get_mut(index))
                    .ok_or_else(|| PatchError::MissingKey { op, path: self.text.to_owned() })?;
                *slot = value;
            }
            _ => return Err(self.not_found(op)),
        }
        Ok(())
    }

    fn get<'d>(&self, document: &'d mut Value, op: JsonPatchOp) -> Result<&'d Value, PatchError> {
        if self.tokens.is_empty() {
            return Ok(document);
        }
        let (parent, token) = self.parent(document, op)?.ok_or_else(|| self.not_found(op))?;
        match parent {
            Value::Object(members) => members.get(token).ok_or_else(|| self.not_found(op)),
            Value::Array(items) => {
                let index = existing_index(token, items.len())
                    .map_err(|error| self.index_error(op, token, error))?;
                Ok(&items[index])
            }
            _ => Err(self.not_found(op)),
        }
    }

    fn test(&self, document: &mut Value, expected: &Value) -> Result<(), PatchError> {
        let op = JsonPatchOp::Test;
        let actual = if self.tokens.is_empty() {
            Some(&*document)
        } else {
            let (parent, token) = self.parent(document, op)?.ok_or_else(|| self.not_found(op))?;
            match parent {
                Value::Object(members) => members.get(token),
                Value::Array(items) => {
                    let index = existing_index(token, items.len())
                        .map_err(|error| self.index_error(op, token, error))?;
                    items.get(index)
                }
                _ => return Err(self.not_found(op)),
            }
        };
        // A missing member equals `null`, as in Kubernetes' library.
        let passed = match actual {
            None => expected.is_null(),
            Some(actual) => json_equal(actual, expected),
        };
        if passed {
            Ok(())
        } else {
            Err(PatchError::TestFailed { path: self.text.to_owned() })
        }
    }
}

/// Resolves an array index token naming an existing element of an array of `len` elements;
/// negative indices count from the end.
fn existing_index(token: &str, len: usize) -> Result<usize, IndexError> {
    let index: i64 = token.parse().map_err(|_| IndexError::NotANumber)?;
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let resolved = if index < 0 { index + len } else { index };
    if (0..len).contains(&resolved) {
        usize::try_from(resolved).map_err(|_| IndexError::OutOfBounds(index))
    } else {
        Err(IndexError::OutOfBounds(index))
    }
}

/// Resolves an array index token naming where to insert into an array of `len` elements; `-`
/// appends and negative indices count from the end of the grown array.
fn insertion_index(token: &str, len: usize) -> Result<usize, IndexError> {
    if token == "-" {
        return Ok(len);
    }
    existing_index(token, len + 1)
}

/// Returns whether two JSON values are equal, comparing numbers by value as RFC 6902 asks.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => numbers_equal(left, right),
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| json_equal(l, r))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left.iter().all(|(key, l)| right.get(key).is_some_and(|r| json_equal(l, r)))
        }
        _ => left == right,
    }
}

fn numbers_equal(left: &Number, right: &Number) -> bool {
    if let (Some(l), Some(r)) = (left.as_i64(), right.as_i64()) {
        return l == r;
    }
    if let (Some(l), Some(r)) = (left.as_u64(), right.as_u64()) {
        return l == r;
    }
    left.as_f64() == right.as_f64()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(document: Value, patch: Value) -> Result<Value, String> {
        apply_json_patch(&document, &patch).map_err(|error| error.to_string())
    }

    #[test]
    fn operations_apply_as_rfc_6902_describes() {
        let cases = [
            (
                "add object member",
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}]),
                json!({"foo": "bar", "baz": "qux"}),
            ),
            (
                "add array element",
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
                json!({"foo": ["bar", "qux", "baz"]}),
            ),
            (
                "add appends with -",
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
                json!({"foo": ["bar", ["abc", "def"]]}),
            ),
            (
                "add at array end index",
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "baz"}]),
                json!({"foo": ["bar", "baz"]}),
            ),
            (
                "add replaces existing member",
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/foo", "value": {"nested": true}}]),
                json!({"foo": {"nested": true}}),
            ),
            (
                "add to root replaces document",
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "", "value": {"baz": 1}}]),
                json!({"baz": 1}),
            ),
            (
                "remove object member",
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}]),
                json!({"foo": "bar"}),
            ),
            (
                "remove array element",
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}]),
                json!({"foo": ["bar", "baz"]}),
            ),
            (
                "replace value",
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
                json!({"baz": "boo", "foo": "bar"}),
            ),
            (
                "replace array element",
                json!({"foo": [1, 2]}),
                json!([{"op": "replace", "path": "/foo/0", "value": 9}]),
                json!({"foo": [9, 2]}),
            ),
            (
                "move value",
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
                json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
            ),
            (
                "move array element",
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
                json!({"foo": ["all", "cows", "eat", "grass"]}),
            ),
            (
                "copy value",
                json!({"foo": {"bar": 1}}),
                json!([{"op": "copy", "from": "/foo", "path": "/baz"}]),
                json!({"foo": {"bar": 1}, "baz": {"bar": 1}}),
            ),
            (
                "test then add",
                json!({"baz": "qux", "foo": ["a", 2, "c"]}),
                json!([
                    {"op": "test", "path": "/baz", "value": "qux"},
                    {"op": "test", "path": "/foo/1", "value": 2},
                    {"op": "add", "path": "/ok", "value": true}
                ]),
                json!({"baz": "qux", "foo": ["a", 2, "c"], "ok": true}),
            ),
            (
                "test compares numbers by value",
                json!({"n": 1}),
                json!([{"op": "test", "path": "/n", "value": 1.0}]),
                json!({"n": 1}),
            ),
            (
                "pointer escapes ~0 and ~1",
                json!({"/": 9, "~1": 10}),
                json!([
                    {"op": "test", "path": "/~01", "value": 10},
                    {"op": "replace", "path": "/~1", "value": 11}
                ]),
                json!({"/": 11, "~1": 10}),
            ),
            (
                "annotation key with slash",
                json!({"metadata": {"annotations": {}}}),
                json!([{
                    "op": "add",
                    "path": "/metadata/annotations/example.com~1owner",
                    "value": "team-a"
                }]),
                json!({"metadata": {"annotations": {"example.com/owner": "team-a"}}}),
            ),
            (
                "add null value",
                json!({}),
                json!([{"op": "add", "path": "/foo", "value": null}]),
                json!({"foo": null}),
            ),
            (
                "replace missing member adds it, as Kubernetes does",
                json!({"metadata": {"labels": {}}}),
                json!([{"op": "replace", "path": "/metadata/labels/app", "value": "web"}]),
                json!({"metadata": {"labels": {"app": "web"}}}),
            ),
            (
                "negative index counts from the end, as Kubernetes does",
                json!({"foo": [1, 2, 3]}),
                json!([{"op": "remove", "path": "/foo/-1"}]),
                json!({"foo": [1, 2]}),
            ),
            (
                "test of missing member against null passes, as Kubernetes does",
                json!({"foo": {}}),
                json!([{"op": "test", "path": "/foo/bar", "value": null}]),
                json!({"foo": {}}),
            ),
            ("null patch changes nothing", json!({"a": 1}), json!(null), json!({"a": 1})),
            ("empty patch changes nothing", json!({"a": 1}), json!([]), json!({"a": 1})),
        ];
        for (name, document, patch, expected) in cases {
            assert_eq!(apply(document, patch), Ok(expected), "{name}");
        }
    }

    #[test]
    fn failures_report_kubernetes_messages() {
        let cases = [
            (
                json!({"foo": "bar"}),
                json!([{"op": "test", "path": "/foo", "value": "baz"}]),
                "testing value /foo failed: test failed",
            ),
            (
                json!({}),
                json!([{"op": "add", "path": "/a/b", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/a/b\": missing value",
            ),
            (
                json!({}),
                json!([{"op": "remove", "path": "/a"}]),
                "error in remove for path: '/a': Unable to remove nonexistent key: a: missing value",
            ),
            (
                json!({"a": [1]}),
                json!([{"op": "add", "path": "/a/5", "value": 1}]),
                "error in add for path: '/a/5': Unable to access invalid index: 5: invalid index \
                 referenced",
            ),
            (
                json!({"a": [1]}),
                json!([{"op": "remove", "path": "/a/x"}]),
                "error in remove for path: '/a/x': value was not a proper array index: 'x'",
            ),
            (
                json!({"a": [1]}),
                json!([{"op": "replace", "path": "/a/3", "value": 1}]),
                "replace operation does not apply: doc is missing key: /a/3: missing value",
            ),
            (
                json!({}),
                json!([{"op": "move", "from": "/x/y", "path": "/z"}]),
                "move operation does not apply: doc is missing from path: /x/y: missing value",
            ),
            (
                json!({"a": {"b": 1}}),
                json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
                "move operation does not apply: doc is missing destination path: /a/b/c: missing \
                 value",
            ),
            (
                json!({"a": 1}),
                json!([{"op": "copy", "from": "/b", "path": "/c"}]),
                "copy operation does not apply: doc is missing from path: /b: missing value",
            ),
            (
                json!({}),
                json!([{"op": "test", "path": "/a/b", "value": 1}]),
                "test operation does not apply: is missing path: /a/b: missing value",
            ),
            (json!({}), json!([{"op": "frobnicate", "path": "/a"}]), "Unexpected kind: frobnicate"),
            (json!({}), json!([{"path": "/a"}]), "Unexpected kind: unknown"),
            (json!({}), json!([null]), "Unexpected kind: unknown"),
            (
                json!({}),
                json!([{"op": "add", "value": 1}]),
                "add operation failed to decode path: missing value",
            ),
            (
                json!({}),
                json!([{"op": "add", "path": "/a"}]),
                "add operation failed to decode value: missing value",
            ),
            (
                json!({}),
                json!([{"op": "move", "path": "/a"}]),
                "move operation failed to decode from: missing value",
            ),
            (
                json!({}),
                json!({"op": "add"}),
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            ),
            (
                json!({}),
                json!(["add"]),
                "json: cannot unmarshal string into Go value of type jsonpatch.Operation",
            ),
        ];
        for (document, patch, message) in cases {
            assert_eq!(apply(document, patch.clone()), Err(message.to_owned()), "{patch}");
        }
    }

    #[test]
    fn failed_operation_leaves_nothing_applied() {
        let document = json!({"metadata": {"labels": {"app": "web"}}});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/tier", "value": "db"},
            {"op": "remove", "path": "/metadata/labels/app"},
            {"op": "test", "path": "/metadata/labels/app", "value": "web"}
        ]);
        let error = apply_json_patch(&document, &patch).unwrap_err();
        assert_eq!(error, PatchError::TestFailed { path: "/metadata/labels/app".to_owned() });
        assert_eq!(document, json!({"metadata": {"labels": {"app": "web"}}}));
    }

    #[test]
    fn decode_errors_are_bad_requests_and_apply_errors_invalid() {
        let decode = apply_json_patch(&json!({}), &json!("x")).unwrap_err();
        assert_eq!(decode.status().code(), 400);
        let apply = apply_json_patch(&json!({}), &json!([{"op": "remove", "path": "/a"}]));
        assert_eq!(apply.unwrap_err().status().code(), 422);
    }

    #[test]
    fn too_many_operations_are_refused() {
        let operation = json!({"op": "test", "path": "", "value": {}});
        let patch = Value::Array(vec![operation; MAX_OPERATIONS + 1]);
        let error = apply_json_patch(&json!({}), &patch).unwrap_err();
        assert_eq!(error.status().code(), 413);
        assert_eq!(
            error.to_string(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
        let patch = Value::Array(vec![json!({"op": "test", "path": "", "value": {}}); 10]);
        assert_eq!(apply_json_patch(&json!({}), &patch), Ok(json!({})));
    }
}
