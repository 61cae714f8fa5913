//! Strategic merge patch, as `application/strategic-merge-patch+json` for built-in types.
//!
//! A strategic merge patch is a merge patch whose lists follow the schema: a list field with
//! strategy `merge` merges its items (objects by merge key, primitives as a set) instead of being
//! replaced. Directives refine it:
//! - `$patch: replace` in a map makes the map exactly the patch; as a list item it makes the list
//!   exactly the other patch items.
//! - `$patch: delete` in a map empties it; as a list item it deletes the items with its merge key.
//! - `$retainKeys: [...]` clears every member of the map it does not list.
//! - `$deleteFromPrimitiveList/<field>: [...]` removes values from a primitive list.
//! - `$setElementOrder/<field>: [...]` orders a merged list.
//!
//! The algorithm follows apimachinery's `strategicpatch.StrategicMergeMapPatch` as the API server
//! runs it (parallel lists merged, unmatched `null`s ignored), including its ordering of merged
//! lists: patch items in patch order, interleaved with the items only the server has, by their
//! server order. Directives never reach the result. Where Kubernetes would leave a directive in the
//! object for decoding to drop, or keep a directive item of a list that does not merge as a plain
//! item, this module drops it; apart from that, only malformed patches are treated differently
//! (noted where they are handled).

use serde_json::{Map, Value};

use super::meta::{FieldMeta, PatchMeta, PatchStrategy};
use super::{go_json_type, Bare, PatchError};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// The Go type names Kubernetes' messages use for JSON objects and arrays.
const GO_MAP: &str = "map[string]interface {}";
const GO_LIST: &str = "[]interface {}";

/// Applies the strategic merge patch `patch` to `original`, whose schema `meta` describes, and
/// returns the patched object. A `null` patch changes nothing.
pub fn apply_strategic(
    original: &Value,
    patch: &Value,
    meta: &dyn PatchMeta,
) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Null => return Ok(original.clone()),
        Value::Object(patch) => patch.clone(),
        other => return Err(PatchError::StrategicPatchNotObject { found: go_json_type(other) }),
    };
    let original = match original {
        Value::Null => Map::new(),
        Value::Object(original) => original.clone(),
        other => {
            return Err(PatchError::TypeMismatch { expected: GO_MAP, found: go_type_name(other) })
        }
    };
    merge_map(original, patch, meta).map(Value::Object)
}

/// Merges `patch` into `original`, both maps described by `meta`.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(without_directive_members(patch)),
            Some("delete") => Ok(Map::new()),
            _ => {
                let shown = Bare(&directive).to_string();
                patch.insert(DIRECTIVE.to_owned(), directive);
                Err(PatchError::UnknownDirective { directive: shown, map: Value::Object(patch) })
            }
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, meta)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (directive_target(&key, DELETE_FROM_PRIMITIVE_LIST)?.to_owned(), true)
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(slot) = original.get_mut(&key) else {
            if !delete_list {
                if let Some(value) = without_directives(patch_value) {
                    original.insert(key, value);
                }
            }
            continue;
        };
        let merged = match (std::mem::take(slot), patch_value) {
            (Value::Object(current), Value::Object(patch_map)) => {
                let field = meta.field(&key);
                let merged = if field.strategy == PatchStrategy::Replace {
                    without_directive_members(patch_map)
                } else {
                    merge_map(current, patch_map, field.value.as_ref())?
                };
                Some(Value::Object(merged))
            }
            (Value::Array(current), Value::Array(patch_list)) => {
                let field = meta.field(&key);
                Some(Value::Array(merge_list_field(
                    current,
                    patch_list,
                    &field,
                    &key,
                    delete_list,
                )?))
            }
            // A deletion list leaves a value of another type alone.
            (current, patch_value) if delete_list && !same_json_type(&current, &patch_value) => {
                Some(current)
            }
            (_, patch_value) => without_directives(patch_value),
        };
        match merged {
            Some(value) => *slot = value,
            None => {
                original.remove(&key);
            }
        }
    }
    Ok(original)
}

/// Handles `$retainKeys`: checks that the patch sets only retained keys and clears the others.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retained) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retained) = retained else {
        return Err(PatchError::BadRetainKeysFormat);
    };
    let retains = |key: &str| retained.iter().any(|retained| retained.as_str() == Some(key));
    let sets_unretained_key = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !retains(key)
    });
    if sets_unretained_key {
        return Err(PatchError::BadRetainKeysFormat);
    }
    original.retain(|key, _| retains(key));
    Ok(())
}

/// Handles every `$setElementOrder/<field>`: merges the field's patch list (taking it out of
/// `patch`) and orders the result by the directive's list.
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<(), PatchError> {
    let directives: Vec<String> =
        patch.keys().filter(|key| key.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in directives {
        let Some(order) = patch.remove(&directive) else { continue };
        let Value::Array(order) = order else {
            return Err(PatchError::TypeMismatch {
                expected: GO_LIST,
                found: go_type_name(&order),
            });
        };
        let name = directive_target(&directive, SET_ELEMENT_ORDER)?;
        let original_list = match original.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => {
                return Err(PatchError::TypeMismatch {
                    expected: GO_LIST,
                    found: go_type_name(&other),
                })
            }
        };
        let patch_list = match patch.remove(name) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => {
                return Err(PatchError::TypeMismatch {
                    expected: GO_LIST,
                    found: go_type_name(&other),
                })
            }
        };
        let field = meta.field(name);
        let merge_key = field.merge_key.as_deref();
        validate_element_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;
        let (original_items, patch_items) = (
            original_list.as_deref().unwrap_or_default(),
            patch_list.as_deref().unwrap_or_default(),
        );
        let is_map_list = is_list_of_maps(original_items, patch_items)?;
        let server_keys = order_keys(original_items, merge_key, is_map_list)?;
        let merged = match (original_list, patch_list) {
            (Some(current), None) => current,
            (None, Some(patch_list)) => without_directive_items(patch_list),
            (Some(current), Some(patch_list)) => {
                merge_list_field(current, patch_list, &field, name, false)?
            }
            (None, None) => continue,
        };
        let order_keys = order_keys(&order, merge_key, is_map_list)?;
        let ordered = enforce_order(merged, &order_keys, &server_keys, merge_key, is_map_list)?;
        original.insert(name.to_owned(), Value::Array(ordered));
    }
    Ok(())
}

/// Checks that the patch list's items appear in the `$setElementOrder` list, in the same order.
fn validate_element_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut candidates = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_some() {
            let Value::Object(map) = item else {
                return Err(PatchError::TypeMismatch {
                    expected: GO_MAP,
                    found: go_type_name(item),
                });
            };
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        candidates.push(item);
    }
    let (mut at_patch, mut at_order) = (0, 0);
    while at_patch < candidates.len() && at_order < order.len() {
        if has_directive(candidates[at_patch]) {
            at_patch += 1;
            continue;
        }
        if merge_key_equal(candidates[at_patch], &order[at_order], merge_key)? {
            at_patch += 1;
        }
        at_order += 1;
    }
    if at_patch < candidates.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: Value::Array(patch_list.to_vec()),
            order: Value::Array(order.to_vec()),
        });
    }
    Ok(())
}

/// Merges a list field by its strategy; deletion lists always take the merging path.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &FieldMeta,
    name: &str,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if field.strategy.merges_lists() || delete_list {
        merge_list(original, patch, field, name, delete_list)
    } else {
        Ok(without_directive_items(patch))
    }
}

/// Merges a list with merge strategy: primitives as an ordered set (or, for a deletion list,
/// by removing the patch values), objects by merge key with `$patch` items applied first.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &FieldMeta,
    name: &str,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !is_list_of_maps(&original, &patch)? {
        if delete_list {
            return Ok(original.into_iter().filter(|item| !patch.contains(item)).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(&patch) {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        return enforce_order(merged, &patch, &original, None, false);
    }
    let Some(merge_key) = field.merge_key.as_deref() else {
        return Err(PatchError::NoMergeKey { field: name.to_owned() });
    };
    let (original, patch) = apply_list_directives(original, patch, merge_key)?;
    let server_keys = order_keys(&original, Some(merge_key), true)?;
    let patch_keys = order_keys(&patch, Some(merge_key), true)?;
    let merged = merge_items(original, patch, merge_key, field.value.as_ref())?;
    enforce_order(merged, &patch_keys, &server_keys, Some(merge_key), true)
}

/// Applies the `$patch` items of a list of maps: `delete` removes the original items with the
/// same merge key, `replace` drops the original list. Returns the remaining original items and
/// the patch items to merge.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut replace = false;
    let mut items = Vec::with_capacity(patch.len());
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            items.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(key_value) = item.get(merge_key) else {
                    return Err(PatchError::MissingMergeKey {
                        item,
                        merge_key: merge_key.to_owned(),
                    });
                };
                original.retain(|current| current.get(merge_key) != Some(key_value));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeListDirective),
            _ => {
                let directive = Bare(directive).to_string();
                return Err(PatchError::UnknownDirective { directive, map: item });
            }
        }
    }
    if replace {
        Ok((without_directive_items(items), Vec::new()))
    } else {
        Ok((original, items))
    }
}

/// Merges each patch item into the original item with the same merge key, or appends it.
fn merge_items(
    mut merged: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    item_meta: &dyn PatchMeta,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Value::Object(item) = item else {
            return Err(PatchError::TypeMismatch { expected: GO_MAP, found: go_type_name(&item) });
        };
        let Some(key_value) = item.get(merge_key) else {
            let item = Value::Object(item);
            return Err(PatchError::MissingMergeKey { item, merge_key: merge_key.to_owned() });
        };
        let position = merged.iter().position(|current| current.get(merge_key) == Some(key_value));
        match position.and_then(|index| merged.get_mut(index)) {
            Some(Value::Object(current)) => {
                let current_map = std::mem::take(current);
                *current = merge_map(current_map, item, item_meta)?;
            }
            _ => merged.extend(without_directives(Value::Object(item))),
        }
    }
    Ok(merged)
}

/// Orders merged items as Kubernetes does: items named by `patch_keys` in that order, the others
/// in `server_keys` order, and a server item goes before a patch item only when the server had
/// it before that patch item.
fn enforce_order(
    items: Vec<Value>,
    patch_keys: &[Value],
    server_keys: &[Value],
    merge_key: Option<&str>,
    is_map_list: bool,
) -> Result<Vec<Value>, PatchError> {
    let position = |keys: &[Value], key: &Value| keys.iter().position(|k| k == key);
    let mut from_patch = Vec::new();
    let mut server_only = Vec::new();
    for item in items {
        let key = item_key(&item, merge_key, is_map_list)?;
        let server_position = position(server_keys, key);
        match position(patch_keys, key) {
            Some(patch_position) => from_patch.push((patch_position, server_position, item)),
            None => server_only.push((server_position, item)),
        }
    }
    from_patch.sort_by_key(|(patch_position, _, _)| *patch_position);
    server_only.sort_by_key(|(server_position, _)| server_position.unwrap_or(usize::MAX));

    let mut ordered = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut server_only = server_only.into_iter().peekable();
    let mut from_patch = from_patch.into_iter().peekable();
    loop {
        let take_server_item = match (server_only.peek(), from_patch.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((Some(server), _)), Some((_, Some(patch_on_server), _))) => {
                server < patch_on_server
            }
            (Some(_), Some(_)) => false,
        };
        if take_server_item {
            ordered.extend(server_only.next().map(|(_, item)| item));
        } else {
            ordered.extend(from_patch.next().map(|(_, _, item)| item));
        }
    }
    Ok(ordered)
}

/// Returns the value identifying `item` for ordering: its merge key, or the item itself.
fn item_key<'a>(
    item: &'a Value,
    merge_key: Option<&str>,
    is_map_list: bool,
) -> Result<&'a Value, PatchError> {
    if !is_map_list {
        return Ok(item);
    }
    let Value::Object(map) = item else {
        return Err(PatchError::TypeMismatch { expected: GO_MAP, found: go_type_name(item) });
    };
    let merge_key = merge_key.unwrap_or_default();
    map.get(merge_key).ok_or_else(|| PatchError::MissingMergeKey {
        item: item.clone(),
        merge_key: merge_key.to_owned(),
    })
}

fn order_keys(
    items: &[Value],
    merge_key: Option<&str>,
    is_map_list: bool,
) -> Result<Vec<Value>, PatchError> {
    items.iter().map(|item| item_key(item, merge_key, is_map_list).cloned()).collect()
}

/// Returns whether the items of both lists are maps; errors when they hold lists or mix types.
fn is_list_of_maps(original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut items = original.iter().chain(patch);
    let Some(first) = items.next() else {
        return Ok(false);
    };
    if first.is_array() {
        return Err(PatchError::ListOfLists);
    }
    if items.any(|item| !same_json_type(first, item)) {
        return Err(PatchError::MixedListElements {
            original: Value::Array(original.to_vec()),
            patch: Value::Array(patch.to_vec()),
        });
    }
    Ok(first.is_object())
}

fn merge_key_equal(
    left: &Value,
    right: &Value,
    merge_key: Option<&str>,
) -> Result<bool, PatchError> {
    let Some(merge_key) = merge_key else {
        return Ok(left == right);
    };
    let key = |item: &Value| item_key(item, Some(merge_key), true).cloned();
    Ok(key(left)? == key(right)?)
}

/// Returns the field a `<prefix>/<field>` directive key names.
fn directive_target<'a>(key: &'a str, prefix: &str) -> Result<&'a str, PatchError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => Err(PatchError::BadPrimitiveListFormat),
        _ => Err(PatchError::BadSetElementOrderFormat),
    }
}

fn has_directive(item: &Value) -> bool {
    item.get(DIRECTIVE).is_some()
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Returns a patch value as it lands where there is nothing to merge it with: a map carrying
/// `$patch` vanishes (as in Kubernetes), other directive keys and `null` members are dropped.
fn without_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) if map.contains_key(DIRECTIVE) => None,
        Value::Object(map) => Some(Value::Object(without_directive_members(map))),
        Value::Array(items) => Some(Value::Array(without_directive_items(items))),
        other => Some(other),
    }
}

fn without_directive_members(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(key, value)| !value.is_null() && !is_directive_key(key))
        .filter_map(|(key, value)| Some((key, without_directives(value)?)))
        .collect()
}

fn without_directive_items(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(without_directives).collect()
}

/// Returns whether two values have the same JSON type (all numbers are one type).
fn same_json_type(left: &Value, right: &Value) -> bool {
    std::mem::discriminant(left) == std::mem::discriminant(right)
}

/// Returns the Go type name Kubernetes' messages use for the type of `value`.
fn go_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => GO_LIST,
        Value::Object(_) => GO_MAP,
    }
}

#[cfg(test)]
mod tests;
