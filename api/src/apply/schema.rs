//! The schema view server-side apply merges by: for each value, whether a list is atomic, a set
//! or a map keyed by fields, and whether a map is granular or atomic.
//!
//! The base is the strategic merge [`PatchMeta`]: a list with strategy `merge` is associative,
//! keyed by its merge key (a set when it has none); every other list is atomic; maps are
//! granular. That is how structured-merge-diff reads a schema without list types. Built-in
//! kinds add what Kubernetes 1.33 declares beyond patch strategies (`kube_schema.rs`): list types
//! such as the `[containerPort, protocol]` keys of container ports, atomic structs such as label
//! selectors, and key defaults. To find those, a [`Shape`] tracks the OpenAPI definition of its
//! value, starting from the definition of the object's kind.
//!
//! Custom resources come with [`PlainMeta`](crate::patch::PlainMeta): maps granular, lists
//! atomic, as structured-merge-diff treats values it deduces from the object.

use std::rc::Rc;

use serde_json::{Map, Value};

use super::kube_schema::{
    ATOMIC_DEFINITIONS, ATOMIC_MAP_FIELDS, FIELD_DEFINITIONS, KEY_DEFAULTS, KIND_DEFINITIONS,
    LIST_TYPES,
};
use super::path::{sorted_key, PathElement};
use crate::patch::PatchMeta;

/// How the items of a list merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, replaced whole.
    Atomic,
    /// A list of scalars merged as a set.
    Set,
    /// A list of objects merged by the values of these key fields.
    Map(Vec<String>),
}

#[derive(Clone)]
enum MetaRef<'a> {
    Borrowed(&'a dyn PatchMeta),
    Owned(Rc<dyn PatchMeta>),
}

impl MetaRef<'_> {
    fn get(&self) -> &dyn PatchMeta {
        match self {
            MetaRef::Borrowed(meta) => *meta,
            MetaRef::Owned(meta) => meta.as_ref(),
        }
    }
}

/// The schema of one value.
#[derive(Clone)]
pub(crate) struct Shape<'a> {
    /// Answers for the members of this value (for a list, of its items).
    meta: MetaRef<'a>,
    /// The OpenAPI definition of this value (for a list, of its items), when known.
    definition: Option<&'static str>,
    /// How this value merges if it is a list.
    pub list: ListType,
    /// Whether this value is one atomic whole if it is a map.
    pub atomic_map: bool,
}

impl<'a> Shape<'a> {
    /// Returns the shape of a whole object whose schema `meta` describes; `object`'s `apiVersion`
    /// and `kind` name the definition of built-in kinds.
    pub fn root(meta: &'a dyn PatchMeta, object: &Value) -> Shape<'a> {
        let (group, version) = group_version(str_at(object, "apiVersion"));
        let kind = str_at(object, "kind");
        let definition = KIND_DEFINITIONS
            .binary_search_by(|(g, v, k, _)| (*g, *v, *k).cmp(&(group, version, kind)))
            .ok()
            .map(|index| KIND_DEFINITIONS[index].3);
        Shape {
            meta: MetaRef::Borrowed(meta),
            definition,
            list: ListType::Atomic,
            atomic_map: false,
        }
    }

    /// Returns the shape of the member `name` of a map this shape describes.
    pub fn field(&self, name: &str) -> Shape<'a> {
        let field = self.meta.get().field(name);
        let declared = self.definition.and_then(|definition| {
            LIST_TYPES
                .binary_search_by(|(d, f, _, _)| (*d, *f).cmp(&(definition, name)))
                .ok()
                .map(|index| LIST_TYPES[index])
        });
        let list = match declared {
            Some((_, _, "set", _)) => ListType::Set,
            Some((_, _, "map", keys)) => {
                ListType::Map(keys.iter().map(|key| (*key).to_owned()).collect())
            }
            Some(_) => ListType::Atomic,
            None if field.strategy.merges_lists() => match field.merge_key {
                Some(key) => ListType::Map(vec![key]),
                None => ListType::Set,
            },
            None => ListType::Atomic,
        };
        let child = self.definition.and_then(|definition| {
            FIELD_DEFINITIONS
                .binary_search_by(|(d, f, _)| (*d, *f).cmp(&(definition, name)))
                .ok()
                .map(|index| FIELD_DEFINITIONS[index].2)
        });
        let atomic_field = self
            .definition
            .is_some_and(|definition| ATOMIC_MAP_FIELDS.binary_search(&(definition, name)).is_ok());
        Shape {
            meta: MetaRef::Owned(Rc::from(field.value)),
            definition: child,
            list,
            atomic_map: atomic_field || child.is_some_and(is_atomic_definition),
        }
    }

    /// Returns the shape of the items of a list this shape describes.
    pub fn item(&self) -> Shape<'a> {
        Shape {
            meta: self.meta.clone(),
            definition: self.definition,
            list: ListType::Atomic,
            atomic_map: self.definition.is_some_and(is_atomic_definition),
        }
    }

    /// Returns the path element naming `item` in a list of this shape, or why the item cannot be
    /// an item of such a list. Only associative lists have path elements.
    pub fn item_element(&self, item: &Value) -> Result<PathElement, String> {
        match &self.list {
            ListType::Atomic => Err("invalid indexing of non-associative list".to_owned()),
            ListType::Set => match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".to_owned())
                }
                Value::Array(_) => {
                    Err("not supported: associative list with lists as elements".to_owned())
                }
                Value::Null => {
                    Err("associative list without keys has an element that's an explicit null"
                        .to_owned())
                }
                scalar => Ok(PathElement::Value(scalar.clone())),
            },
            ListType::Map(keys) => self.key_element(keys, item),
        }
    }

    fn key_element(&self, keys: &[String], item: &Value) -> Result<PathElement, String> {
        let map: &Map<String, Value> = match item {
            Value::Object(map) => map,
            Value::Null => {
                return Err("associative list with keys may not have a null element".to_owned())
            }
            _ => return Err("associative list with keys may not have non-map elements".to_owned()),
        };
        let mut fields = Vec::new();
        for key in keys {
            if let Some(value) = map.get(key) {
                fields.push((key.clone(), value.clone()));
            } else if let Some(default) = self.key_default(key) {
                fields.push((key.clone(), default));
            }
        }
        if !keys.is_empty() && fields.is_empty() {
            let quoted: Vec<String> = keys.iter().map(|key| super::path::go_quote(key)).collect();
            return Err(format!(
                "associative list with keys has an element that omits all key fields [{}] (and \
                 doesn't have default values for any key fields)",
                quoted.join(" ")
            ));
        }
        Ok(PathElement::Key(sorted_key(fields)))
    }

    fn key_default(&self, key: &str) -> Option<Value> {
        let definition = self.definition?;
        let index =
            KEY_DEFAULTS.binary_search_by(|(d, f, _)| (*d, *f).cmp(&(definition, key))).ok()?;
        serde_json::from_str(KEY_DEFAULTS[index].2).ok()
    }
}

fn is_atomic_definition(definition: &str) -> bool {
    ATOMIC_DEFINITIONS.binary_search(&definition).is_ok()
}

fn str_at<'v>(object: &'v Value, member: &str) -> &'v str {
    object.get(member).and_then(Value::as_str).unwrap_or_default()
}

/// Splits an `apiVersion` into group and version (`v1` is the core group).
pub(crate) fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted() {
        assert!(KIND_DEFINITIONS
            .windows(2)
            .all(|w| (w[0].0, w[0].1, w[0].2) < (w[1].0, w[1].1, w[1].2)));
        assert!(FIELD_DEFINITIONS.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        assert!(LIST_TYPES.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        assert!(ATOMIC_MAP_FIELDS.windows(2).all(|w| w[0] < w[1]));
        assert!(ATOMIC_DEFINITIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(KEY_DEFAULTS.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        for (_, _, default) in KEY_DEFAULTS {
            assert!(serde_json::from_str::<Value>(default).is_ok(), "{default}");
        }
    }
}
