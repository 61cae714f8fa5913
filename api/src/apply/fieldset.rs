//! [`FieldSet`]: a set of field paths, stored as a tree, with the set operations
//! structured-merge-diff defines and its `fieldsV1` JSON form.
//!
//! A node of the tree is a path; it is a *member* when the path itself is in the set, and it may
//! have children whatever its membership. Invariant: every node is a member or has children, so
//! an empty set has no nodes and two equal sets have equal trees.
//!
//! In `fieldsV1`, every node is a JSON object keyed by its children's serialized
//! [`PathElement`]s; a child that is a member with no children is `{}`, and a member with
//! children carries a `".": {}` entry.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::path::{Path, PathElement};

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    nodes: BTreeMap<PathElement, Node>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    children: FieldSet,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }
}

impl FieldSet {
    /// Returns the empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Returns the set of the given paths.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a [PathElement]>) -> FieldSet {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(path);
        }
        set
    }

    /// Returns whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds `path`; its parents are not added. The empty path (the whole object) is never
    /// tracked and is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut set = self;
        for element in parents {
            set = &mut set.nodes.entry(element.clone()).or_default().children;
        }
        set.nodes.entry(last.clone()).or_default().member = true;
    }

    /// Returns whether `path` itself is in the set.
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut set = self;
        for element in parents {
            match set.nodes.get(element) {
                Some(node) => set = &node.children,
                None => return false,
            }
        }
        set.nodes.get(last).is_some_and(|node| node.member)
    }

    /// Returns the paths below `element`, relative to it (empty if there are none).
    pub fn with_prefix(&self, element: &PathElement) -> FieldSet {
        self.nodes.get(element).map(|node| node.children.clone()).unwrap_or_default()
    }

    /// Returns the paths below `element` without copying them.
    pub(crate) fn children_of(&self, element: &PathElement) -> Option<&FieldSet> {
        self.nodes.get(element).map(|node| &node.children).filter(|set| !set.is_empty())
    }

    /// Returns whether `element` (a child of the root) is a member.
    pub(crate) fn has_member(&self, element: &PathElement) -> bool {
        self.nodes.get(element).is_some_and(|node| node.member)
    }

    /// Returns the paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for (element, theirs) in &other.nodes {
            let node = out.nodes.entry(element.clone()).or_default();
            node.member |= theirs.member;
            node.children = node.children.union(&theirs.children);
        }
        out
    }

    /// Returns the paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (element, ours) in &self.nodes {
            let Some(theirs) = other.nodes.get(element) else {
                continue;
            };
            let node = Node {
                member: ours.member && theirs.member,
                children: ours.children.intersection(&theirs.children),
            };
            if !node.is_empty() {
                out.nodes.insert(element.clone(), node);
            }
        }
        out
    }

    /// Returns the paths of this set that are not in `other`. A parent in `other` does not
    /// remove its children: only the very paths of `other` go.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (element, ours) in &self.nodes {
            let node = match other.nodes.get(element) {
                Some(theirs) => Node {
                    member: ours.member && !theirs.member,
                    children: ours.children.difference(&theirs.children),
                },
                None => ours.clone(),
            };
            if !node.is_empty() {
                out.nodes.insert(element.clone(), node);
            }
        }
        out
    }

    /// Returns the paths of this set that neither are in `other` nor have a parent there.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (element, ours) in &self.nodes {
            let node = match other.nodes.get(element) {
                Some(theirs) if theirs.member => continue,
                Some(theirs) => Node {
                    member: ours.member,
                    children: ours.children.recursive_difference(&theirs.children),
                },
                None => ours.clone(),
            };
            if !node.is_empty() {
                out.nodes.insert(element.clone(), node);
            }
        }
        out
    }

    /// Returns this set with every node that has children and is reached by a field name also
    /// made a member, so that removing the set removes emptied structs too.
    ///
    /// structured-merge-diff adds only the names the schema declares; the schema view here does
    /// not tell declared fields from map keys, so every name counts as declared. The two differ
    /// only for maps whose values are maps or lists.
    pub(crate) fn with_named_fields_as_members(&self) -> FieldSet {
        let mut out = FieldSet::new();
        for (element, node) in &self.nodes {
            let named = matches!(element, PathElement::Field(_)) && !node.children.is_empty();
            out.nodes.insert(
                element.clone(),
                Node {
                    member: node.member || named,
                    children: node.children.with_named_fields_as_members(),
                },
            );
        }
        out
    }

    /// Returns every path of the set: at each level the members first, then the paths below
    /// each child, in element order (structured-merge-diff's `Iterate`).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (element, node) in &self.nodes {
            if node.member {
                prefix.push(element.clone());
                out.push(prefix.clone());
                prefix.pop();
            }
        }
        for (element, node) in &self.nodes {
            prefix.push(element.clone());
            node.children.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Returns the `fieldsV1` form of the set.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_members(false))
    }

    fn fields_v1_members(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (element, node) in &self.nodes {
            let members = node.children.fields_v1_members(node.member);
            out.insert(element.to_fields_v1_key(), Value::Object(members));
        }
        out
    }

    /// Parses the `fieldsV1` form of a set. Keys of unknown element types are skipped, as
    /// structured-merge-diff skips them.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(map) = fields else {
            return Err(FieldsV1Error::NotAnObject);
        };
        let (set, _) = parse_members(map)?;
        Ok(set)
    }
}

/// Parses the members of one `fieldsV1` object; returns its children and whether the object
/// marks its own path as a member (it is `{}`, holds `.`, or holds nothing this parser knows).
fn parse_members(map: &Map<String, Value>) -> Result<(FieldSet, bool), FieldsV1Error> {
    let mut set = FieldSet::new();
    let mut member = false;
    for (key, value) in map {
        if key == "." {
            member = true;
            continue;
        }
        let element = PathElement::from_fields_v1_key(key).map_err(FieldsV1Error::Key)?;
        let Some(element) = element else {
            continue;
        };
        let Value::Object(inner) = value else {
            return Err(FieldsV1Error::NotAnObject);
        };
        let (children, child_member) = parse_members(inner)?;
        let node = Node { member: child_member, children };
        if !node.is_empty() {
            set.nodes.insert(element, node);
        }
    }
    let member = member || set.is_empty();
    Ok((set, member))
}

/// Why a `fieldsV1` value could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    /// The value or one of its members is not a JSON object.
    #[error("ReadMapCB: expect {{ or n, but found another value")]
    NotAnObject,
    /// A member name is not a path element.
    #[error("parsing key as path element: {0}")]
    Key(String),
}
