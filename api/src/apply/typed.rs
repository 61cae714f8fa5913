//! Walks over JSON values by their [`Shape`], as structured-merge-diff's typed values do:
//! validation, the set of fields a value sets, the comparison of two values, the merge of an
//! applied configuration into a live object, and the removal of a set of fields.
//!
//! Values are `Option<&Value>`: `None` is a missing value, distinct from an explicit `null`.
//! Two values of different JSON kinds (a map against a list) are treated as structured-merge-diff
//! treats a value that does not fit its schema: the right-hand side wins.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::path::{values_equal, Path, PathDisplay, PathElement};
use super::schema::{ListType, Shape};

/// Problems found in a value, each with the path of the list it was found in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ValidationErrors(pub Vec<(String, String)>);

impl fmt::Display for ValidationErrors {
    /// Writes the errors as structured-merge-diff does: one `path: message`, or a list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |(path, message): &(String, String)| match path.is_empty() {
            true => message.clone(),
            false => format!("{path}: {message}"),
        };
        match self.0.as_slice() {
            [one] => f.write_str(&line(one)),
            many => {
                f.write_str("errors:")?;
                many.iter().try_for_each(|error| write!(f, "\n  {}", line(error)))
            }
        }
    }
}

/// Checks that every associative list item has a path element and, unless
/// `allow_duplicates`, that no two items share one.
pub(crate) fn validate(
    value: &Value,
    shape: &Shape<'_>,
    allow_duplicates: bool,
) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    validate_at(value, shape, allow_duplicates, &mut Vec::new(), &mut errors);
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn validate_at(
    value: &Value,
    shape: &Shape<'_>,
    allow_duplicates: bool,
    path: &mut Path,
    errors: &mut ValidationErrors,
) {
    // Atomic values are checked inside too: their nested associative lists must be valid.
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                validate_at(child, &shape.field(key), allow_duplicates, path, errors);
                path.pop();
            }
        }
        Value::Array(items) => {
            let item_shape = shape.item();
            let mut seen = BTreeSet::new();
            for (index, item) in items.iter().enumerate() {
                let element = if shape.list == ListType::Atomic {
                    PathElement::Index(index)
                } else {
                    match shape.item_element(item) {
                        Ok(element) => element,
                        Err(message) => {
                            // Without a path element the rest of the list cannot be checked.
                            let message = format!("element {index}: {message}");
                            errors.0.push((PathDisplay(path).to_string(), message));
                            return;
                        }
                    }
                };
                if !seen.insert(element.clone()) && !allow_duplicates {
                    let message = format!("duplicate entries for key {element}");
                    errors.0.push((PathDisplay(path).to_string(), message));
                }
                path.push(element);
                validate_at(item, &item_shape, allow_duplicates, path, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Returns the fields `value` sets: its leaves, every associative list item, and members that
/// are `null` or `{}`. Items without a path element are skipped; duplicated items count as
/// leaves.
pub(crate) fn to_field_set(value: &Value, shape: &Shape<'_>) -> FieldSet {
    let mut set = FieldSet::new();
    field_set_at(value, shape, &mut Vec::new(), &mut set);
    set
}

fn field_set_at(value: &Value, shape: &Shape<'_>, path: &mut Path, set: &mut FieldSet) {
    match value {
        Value::Object(_) if shape.atomic_map => set.insert(path),
        Value::Object(map) => {
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                field_set_at(child, &shape.field(key), path, set);
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(_) if shape.list == ListType::Atomic => set.insert(path),
        Value::Array(items) => {
            let elements = item_elements(items, shape);
            let mut counts: BTreeMap<&PathElement, usize> = BTreeMap::new();
            for (element, _) in &elements {
                *counts.entry(element).or_default() += 1;
            }
            let item_shape = shape.item();
            let mut duplicates_done = BTreeSet::new();
            for (element, item) in &elements {
                path.push(element.clone());
                // Indexing cannot fail: `counts` was filled from `elements`.
                if counts[element] > 1 {
                    if duplicates_done.insert(element.clone()) {
                        set.insert(path);
                    }
                } else {
                    field_set_at(item, &item_shape, path, set);
                    set.insert(path);
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// Returns the items of an associative list that have a path element, with it.
fn item_elements<'v>(items: &'v [Value], shape: &Shape<'_>) -> Vec<(PathElement, &'v Value)> {
    items.iter().filter_map(|item| Some((shape.item_element(item).ok()?, item))).collect()
}

/// The difference between two values: fields only the right has, fields whose values differ,
/// and fields only the left has. A field is in at most one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

/// Compares `lhs` (before) with `rhs` (after).
pub(crate) fn compare(lhs: &Value, rhs: &Value, shape: &Shape<'_>) -> Comparison {
    let mut comparison = Comparison::default();
    compare_at(Some(lhs), Some(rhs), shape, &mut Vec::new(), &mut comparison);
    comparison
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: &Shape<'_>,
    path: &mut Path,
    out: &mut Comparison,
) {
    let is_leaf = match (lhs, rhs) {
        (None, None) => return,
        (Some(Value::Object(_)) | None, Some(Value::Object(_)) | None)
        | (Some(Value::Null), Some(Value::Object(_)))
        | (Some(Value::Object(_)), Some(Value::Null)) => {
            let (left, right) = (as_map(lhs), as_map(rhs));
            let empty = left.is_none_or(Map::is_empty) && right.is_none_or(Map::is_empty);
            if shape.atomic_map || empty {
                true
            } else {
                compare_maps(left, right, shape, path, out);
                false
            }
        }
        (Some(Value::Array(_)) | None, Some(Value::Array(_)) | None)
        | (Some(Value::Null), Some(Value::Array(_)))
        | (Some(Value::Array(_)), Some(Value::Null)) => {
            let (left, right) = (as_list(lhs), as_list(rhs));
            let empty =
                left.is_none_or(<[Value]>::is_empty) && right.is_none_or(<[Value]>::is_empty);
            if shape.list == ListType::Atomic || empty {
                true
            } else {
                compare_lists(
                    left.unwrap_or_default(),
                    right.unwrap_or_default(),
                    shape,
                    path,
                    out,
                );
                false
            }
        }
        (Some(left), Some(right)) if is_container(left) || is_container(right) => {
            // Different kinds: what the left held is gone, what the right holds is new.
            let mut leaf = false;
            for (value, removed) in [(left, true), (right, false)] {
                match value {
                    Value::Object(map) if !map.is_empty() && !shape.atomic_map => {
                        let (l, r) = if removed { (Some(map), None) } else { (None, Some(map)) };
                        compare_maps(l, r, shape, path, out);
                    }
                    Value::Array(items) if !items.is_empty() && shape.list != ListType::Atomic => {
                        let (l, r): (&[Value], &[Value]) =
                            if removed { (items, &[]) } else { (&[], items) };
                        compare_lists(l, r, shape, path, out);
                    }
                    _ => leaf = true,
                }
            }
            if leaf {
                out.modified.insert(path);
            }
            return;
        }
        _ => true,
    };
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(left), Some(right)) if is_leaf && !values_equal(left, right) => {
            out.modified.insert(path)
        }
        _ => {}
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

fn as_map(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object)
}

fn as_list(value: Option<&Value>) -> Option<&[Value]> {
    value.and_then(Value::as_array).map(Vec::as_slice)
}

fn compare_maps(
    lhs: Option<&Map<String, Value>>,
    rhs: Option<&Map<String, Value>>,
    shape: &Shape<'_>,
    path: &mut Path,
    out: &mut Comparison,
) {
    let keys: BTreeSet<&String> = lhs.into_iter().chain(rhs).flat_map(Map::keys).collect();
    for key in keys {
        path.push(PathElement::Field(key.clone()));
        let (left, right) = (lhs.and_then(|m| m.get(key)), rhs.and_then(|m| m.get(key)));
        compare_at(left, right, &shape.field(key), path, out);
        path.pop();
    }
}

fn compare_lists(
    lhs: &[Value],
    rhs: &[Value],
    shape: &Shape<'_>,
    path: &mut Path,
    out: &mut Comparison,
) {
    // Items by path element, in first-seen order (left first), duplicates kept together.
    let mut order: Vec<PathElement> = Vec::new();
    let mut items: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for (side, list) in [(0, lhs), (1, rhs)] {
        for (element, item) in item_elements(list, shape) {
            let entry = items.entry(element.clone()).or_insert_with(|| {
                order.push(element);
                (Vec::new(), Vec::new())
            });
            if side == 0 {
                entry.0.push(item);
            } else {
                entry.1.push(item);
            }
        }
    }
    let item_shape = shape.item();
    for element in order {
        // Indexing cannot fail: `order` holds exactly the keys of `items`.
        let (left, right) = &items[&element];
        path.push(element);
        match (left.len(), right.len()) {
            (0..=1, 0..=1) => {
                compare_at(left.first().copied(), right.first().copied(), &item_shape, path, out)
            }
            (2.., 2..) => {
                let same = left.len() == right.len()
                    && left.iter().zip(right).all(|(l, r)| values_equal(l, r));
                if !same {
                    out.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(item) = right.first() {
                    compare_at(None, Some(item), &item_shape, path, out);
                }
                out.removed.insert(path);
            }
            (_, _) => {
                if let Some(item) = left.first() {
                    compare_at(Some(item), None, &item_shape, path, out);
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
}

/// Merges the applied configuration `rhs` into the live value `lhs`: the configuration's
/// leaves win, granular maps merge member by member, associative lists merge item by item.
/// Returns `None` only when both are missing.
pub(crate) fn merge(lhs: Option<&Value>, rhs: Option<&Value>, shape: &Shape<'_>) -> Option<Value> {
    let (left, right) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(value), None) | (None, Some(value)) => return Some(value.clone()),
        (Some(left), Some(right)) => (left, right),
    };
    Some(match (left, right) {
        (Value::Object(l), Value::Object(r))
            if !(shape.atomic_map || l.is_empty() && r.is_empty()) =>
        {
            let mut out = l.clone();
            for (key, value) in r {
                let merged = merge(l.get(key), Some(value), &shape.field(key));
                out.insert(key.clone(), merged.unwrap_or(Value::Null));
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(r))
            if shape.list != ListType::Atomic && !(l.is_empty() && r.is_empty()) =>
        {
            match merge_lists(l, r, shape) {
                Some(items) => Value::Array(items),
                None => right.clone(),
            }
        }
        // A null does not clear a granular map or list: structured-merge-diff reads it as an
        // empty one and merges.
        (Value::Object(l), Value::Null) if !shape.atomic_map && !l.is_empty() => left.clone(),
        (Value::Array(l), Value::Null) if shape.list != ListType::Atomic && !l.is_empty() => {
            left.clone()
        }
        _ => right.clone(),
    })
}

/// Merges two associative lists in structured-merge-diff's order: items of both lists keep the
/// applied order, and live-only items stay where they were relative to them. Returns `None` if
/// an item has no path element.
fn merge_lists(lhs: &[Value], rhs: &[Value], shape: &Shape<'_>) -> Option<Vec<Value>> {
    let elements = |list: &[Value]| -> Option<Vec<PathElement>> {
        list.iter().map(|item| shape.item_element(item).ok()).collect()
    };
    let (lhs_elements, rhs_elements) = (elements(lhs)?, elements(rhs)?);
    // A duplicated live item merges as if it were `null`.
    let mut observed_lhs: BTreeMap<&PathElement, Option<&Value>> = BTreeMap::new();
    for (element, item) in lhs_elements.iter().zip(lhs) {
        observed_lhs.entry(element).and_modify(|seen| *seen = None).or_insert(Some(item));
    }
    let observed_rhs: BTreeMap<&PathElement, &Value> = rhs_elements.iter().zip(rhs).collect();
    let live_item = |element: &PathElement| match observed_lhs.get(element) {
        None => None,
        Some(item) => Some(item.unwrap_or(&Value::Null)),
    };

    let item_shape = shape.item();
    let mut shared = rhs_elements.iter().filter(|e| observed_lhs.contains_key(e));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut l, mut r) = (0, 0);
    while l < lhs.len() || r < rhs.len() {
        if l < lhs.len() && r < rhs.len() {
            let element = &lhs_elements[l];
            if *element == rhs_elements[r] {
                merged_rhs.insert(element);
                // Indexing cannot fail: `element` equals a right-hand element.
                out.extend(merge(live_item(element), Some(observed_rhs[element]), &item_shape));
                l += 1;
                r += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(element) && next_shared.is_some_and(|s| s != element) {
                l += 1;
                continue;
            }
        }
        if l < lhs.len() {
            let element = &lhs_elements[l];
            if !observed_rhs.contains_key(element) {
                out.push(lhs[l].clone());
                l += 1;
                continue;
            } else if merged_rhs.contains(element) {
                l += 1;
            }
        }
        if r < rhs.len() {
            let element = &rhs_elements[r];
            merged_rhs.insert(element);
            // Indexing cannot fail: every right-hand element is a key of `observed_rhs`.
            out.extend(merge(live_item(element), Some(observed_rhs[element]), &item_shape));
            r += 1;
            if next_shared == Some(element) {
                next_shared = shared.next();
            }
        }
    }
    Some(out)
}

/// Returns `value` without the fields of `remove`; maps and lists left empty by the removal
/// become `None` (a missing value), as do atomic values with something removed inside.
pub(crate) fn remove_fields(value: &Value, remove: &FieldSet, shape: &Shape<'_>) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.is_empty() || shape.atomic_map {
                return None;
            }
            let mut out = Map::new();
            for (key, child) in map {
                let element = PathElement::Field(key.clone());
                if remove.has_member(&element) {
                    continue;
                }
                let kept = match remove.children_of(&element) {
                    Some(below) => {
                        remove_fields(child, below, &shape.field(key)).unwrap_or(Value::Null)
                    }
                    None => child.clone(),
                };
                out.insert(key.clone(), kept);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            if items.is_empty() || shape.list == ListType::Atomic {
                return None;
            }
            let item_shape = shape.item();
            let mut out = Vec::new();
            for item in items {
                let Ok(element) = shape.item_element(item) else {
                    out.push(item.clone());
                    continue;
                };
                if remove.has_member(&element) {
                    continue;
                }
                out.push(match remove.children_of(&element) {
                    Some(below) => remove_fields(item, below, &item_shape).unwrap_or(Value::Null),
                    None => item.clone(),
                });
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Value::Null => None,
        scalar => Some(scalar.clone()),
    }
}

/// Removes the `null` members of maps, recursively: the API server's typed objects drop them.
pub(crate) fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, member| !member.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}
