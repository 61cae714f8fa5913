//! Merge order of sets and associative lists, on structured-merge-diff's own merge test
//! triplets (`typed/merge_test.go`, v4.6.0): `(live, applied, merged)`.

use serde_json::{json, Value};

use super::super::schema::Shape;
use super::super::typed::merge;
use crate::patch::{FieldMeta, PatchMeta, PatchStrategy, PlainMeta};

/// `setStr`, `setBool` and `setNumeric` are sets, `list` is keyed by `key`, anything else is
/// plain.
struct Lists;

impl PatchMeta for Lists {
    fn field(&self, name: &str) -> FieldMeta {
        let merge_key = match name {
            "setStr" | "setBool" | "setNumeric" => None,
            "list" => Some("key".to_owned()),
            _ => return FieldMeta::plain(),
        };
        FieldMeta { strategy: PatchStrategy::Merge, merge_key, value: Box::new(PlainMeta) }
    }
}

fn merged(live: &str, applied: &str) -> Value {
    let (live, applied): (Value, Value) =
        (serde_json::from_str(live).unwrap(), serde_json::from_str(applied).unwrap());
    let meta = Lists;
    let shape = Shape::root(&meta, &applied);
    merge(Some(&live), Some(&applied), &shape).unwrap()
}

#[test]
fn sets_merge_in_structured_merge_diff_order() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"setStr":["a","b","c"]}"#, r#"{"setStr":["a","b"]}"#, r#"{"setStr":["a","b","c"]}"#),
        (r#"{"setStr":["a","b"]}"#, r#"{"setStr":["a","b","c"]}"#, r#"{"setStr":["a","b","c"]}"#),
        (r#"{"setStr":["a","b","c"]}"#, r#"{"setStr":[]}"#, r#"{"setStr":["a","b","c"]}"#),
        (r#"{"setStr":[]}"#, r#"{"setStr":["a","b","c"]}"#, r#"{"setStr":["a","b","c"]}"#),
        (r#"{"setStr":["a","b"]}"#, r#"{"setStr":["b","a"]}"#, r#"{"setStr":["b","a"]}"#),
        (
            r#"{"setStr":["a","b","c"]}"#,
            r#"{"setStr":["d","e","f"]}"#,
            r#"{"setStr":["a","b","c","d","e","f"]}"#,
        ),
        (
            r#"{"setStr":["a","b","c","g","f"]}"#,
            r#"{"setStr":["c","d","e","f"]}"#,
            r#"{"setStr":["a","b","c","g","d","e","f"]}"#,
        ),
        (
            r#"{"setStr":["c","d","e","f"]}"#,
            r#"{"setStr":["a","c","e"]}"#,
            r#"{"setStr":["a","c","d","e","f"]}"#,
        ),
        (
            r#"{"setStr":["a","b","c","x","y","z"]}"#,
            r#"{"setStr":["d","e","f","x","y","z"]}"#,
            r#"{"setStr":["a","b","c","d","e","f","x","y","z"]}"#,
        ),
        (
            r#"{"setStr":["c","a","g","f"]}"#,
            r#"{"setStr":["c","f","a","g"]}"#,
            r#"{"setStr":["c","f","a","g"]}"#,
        ),
        (
            r#"{"setStr":["a","b","c","d"]}"#,
            r#"{"setStr":["d","e","f","a"]}"#,
            r#"{"setStr":["b","c","d","e","f","a"]}"#,
        ),
        (
            r#"{"setStr":["c","d","e","f","g","h","i","j"]}"#,
            r#"{"setStr":["2","h","3","e","4","k","l"]}"#,
            r#"{"setStr":["c","d","f","g","2","h","i","j","3","e","4","k","l"]}"#,
        ),
        (
            r#"{"setStr":["a","b","c","d","e","f","g","h","i","j"]}"#,
            r#"{"setStr":["1","b","2","h","3","e","4","k","l"]}"#,
            r#"{"setStr":["a","1","b","c","d","f","g","2","h","i","j","3","e","4","k","l"]}"#,
        ),
        (r#"{"setStr":["a","b","b"]}"#, r#"{"setStr":["c"]}"#, r#"{"setStr":["a","b","b","c"]}"#),
        (r#"{"setStr":["a","b","b"]}"#, r#"{"setStr":["b"]}"#, r#"{"setStr":["a","b"]}"#),
        (r#"{"setStr":["a","b","b"]}"#, r#"{"setStr":["a"]}"#, r#"{"setStr":["a","b","b"]}"#),
        (
            r#"{"setStr":["a","b","c","d","e","c"]}"#,
            r#"{"setStr":["1","b","2","e","d"]}"#,
            r#"{"setStr":["a","1","b","c","2","e","c","d"]}"#,
        ),
        (
            r#"{"setStr":["a","b","c","d","e","c"]}"#,
            r#"{"setStr":["1","b","2","c","e","d"]}"#,
            r#"{"setStr":["a","1","b","2","c","e","d"]}"#,
        ),
        (
            r#"{"setStr":["a","a","b","b"]}"#,
            r#"{"setStr":["b","c","d"]}"#,
            r#"{"setStr":["a","a","b","c","d"]}"#,
        ),
        (r#"{"setBool":[true]}"#, r#"{"setBool":[false]}"#, r#"{"setBool":[true,false]}"#),
        (
            r#"{"setNumeric":[1,2,3.14159]}"#,
            r#"{"setNumeric":[1,2,3]}"#,
            r#"{"setNumeric":[1,2,3.14159,3]}"#,
        ),
        (
            r#"{"setStr":["c","a","g","f","c","a"]}"#,
            r#"{"setStr":["c","f","a","g"]}"#,
            r#"{"setStr":["c","f","a","g"]}"#,
        ),
        (
            r#"{"setBool":[true,false,true]}"#,
            r#"{"setBool":[true]}"#,
            r#"{"setBool":[true,false]}"#,
        ),
    ];
    for (live, applied, expected) in cases {
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(merged(live, applied), expected, "{live} + {applied}");
    }
}

#[test]
fn associative_lists_merge_items_by_key() {
    let cases: &[(&str, &str, Value)] = &[
        (
            r#"{"list":[{"key":"b","id":2}]}"#,
            r#"{"list":[{"key":"a","id":1},{"key":"b","id":2},{"key":"c","id":3}]}"#,
            json!({"list":[{"key":"a","id":1},{"key":"b","id":2},{"key":"c","id":3}]}),
        ),
        (
            r#"{"list":[{"key":"a","id":1},{"key":"b","id":2},{"key":"c","id":3}]}"#,
            r#"{"list":[{"key":"c","id":3},{"key":"a","id":1}]}"#,
            json!({"list":[{"key":"b","id":2},{"key":"c","id":3},{"key":"a","id":1}]}),
        ),
        (
            r#"{"list":[{"key":"a","bv":true},{"key":"b"},{"key":"a","bv":false,"nv":2}]}"#,
            r#"{"list":[{"key":"a","nv":3},{"key":"c"},{"key":"b"}]}"#,
            json!({"list":[{"key":"a","nv":3},{"key":"c"},{"key":"b"}]}),
        ),
        (
            r#"{"list":[{"key":"a","nv":1},{"key":"a","nv":2}]}"#,
            r#"{"list":[]}"#,
            json!({"list":[{"key":"a","nv":1},{"key":"a","nv":2}]}),
        ),
        (
            r#"{"list":[{"key":"a","value":{"x":"1"}}]}"#,
            r#"{"list":[{"key":"a","value":{"y":"2"}}]}"#,
            json!({"list":[{"key":"a","value":{"x":"1","y":"2"}}]}),
        ),
        (r#"{"atomicList":["a","b","c"]}"#, r#"{"atomicList":[]}"#, json!({"atomicList":[]})),
        (r#"{"atomicList":["a","a"]}"#, r#"{"atomicList":null}"#, json!({"atomicList":null})),
    ];
    for (live, applied, expected) in cases {
        assert_eq!(&merged(live, applied), expected, "{live} + {applied}");
    }
}
