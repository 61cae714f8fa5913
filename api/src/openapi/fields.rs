//! Strict field validation: the fields of a request object its schema does not define, and the
//! fields it sets twice, reported as the API server's strict decoding reports them:
//! `unknown field "spec.replicaz"`, `duplicate field "spec.replicas"`, with paths such as
//! `spec.template.spec.containers[0].imagee` and map keys joined by dots.
//!
//! Two kinds of schema are walked, and they differ where a schema lists no properties:
//! - built-in kinds are Go types: an object without properties or additionalProperties is
//!   free-form (RawExtension, FieldsV1) and anything goes inside it;
//! - a custom resource's own schema is structural: such an object allows no fields at all
//!   (the API server prunes them), unless `x-kubernetes-preserve-unknown-fields` is set.
//!
//! References (`$ref`, `allOf`) always lead to built-in definitions (ObjectMeta).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::validation::go_quote;

/// The API server keeps at most this many strict decoding errors.
const MAX_ERRORS: usize = 100;
/// Nesting of `$ref`/`allOf` followed before giving up on a (malformed, cyclic) schema.
const MAX_REFERENCE_DEPTH: usize = 16;

/// The message of the BadRequest the API server returns when strict field validation fails.
pub fn strict_decoding_message(kind: &str, version: &str, errors: &[String]) -> String {
    format!(
        "{kind} in version {} cannot be handled as a {kind}: strict decoding error: {}",
        go_quote(version),
        errors.join(", ")
    )
}

/// Validates objects against one definition of a set of definitions (`components.schemas`).
pub struct FieldChecker<'a> {
    definitions: &'a Map<String, Value>,
    root: Node<'a>,
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Schema {
        schema: &'a Value,
        structural: bool,
    },
    /// Anything goes below: free-form objects, preserved unknown fields.
    Any,
    /// A structural schema without a subschema here: every field below is unknown.
    Nothing,
}

impl<'a> FieldChecker<'a> {
    /// Checks against `definitions[root]`; `structural` when `root` is a custom resource's schema.
    /// Returns None when there is no such definition.
    pub fn new(definitions: &'a Map<String, Value>, root: &str, structural: bool) -> Option<Self> {
        let schema = definitions.get(root)?;
        Some(FieldChecker { definitions, root: Node::Schema { schema, structural } })
    }

    /// The unknown fields of a decoded object, as `unknown field "<path>"` messages. Fields of a
    /// JSON object are visited in the order `serde_json::Map` keeps them.
    pub fn unknown_fields(&self, object: &Value) -> Vec<String> {
        let mut report = Report::default();
        self.walk(self.root, object, &mut report);
        report.errors
    }

    /// The unknown and duplicate fields of a JSON body, in the order they appear, as
    /// `unknown field "<path>"` and `duplicate field "<path>"` messages. Fails when the body is
    /// not JSON.
    pub fn strict_errors(&self, body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
        let mut report = Report::default();
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        Walk { checker: self, node: self.root, report: &mut report }
            .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(report.errors)
    }

    /// Removes the fields the schema does not define, as Kubernetes drops them when it decodes
    /// an object.
    pub fn prune(&self, object: &mut Value) {
        self.prune_at(self.root, object);
    }

    fn prune_at(&self, node: Node<'a>, value: &mut Value) {
        match value {
            Value::Object(fields) => {
                fields.retain(|name, _| self.field(node, name).is_some());
                for (name, value) in fields.iter_mut() {
                    if let Some(child @ (Node::Schema { .. } | Node::Nothing)) =
                        self.field(node, name)
                    {
                        self.prune_at(child, value);
                    }
                }
            }
            Value::Array(items) => {
                let child = self.items(node);
                if !matches!(child, Node::Any) {
                    items.iter_mut().for_each(|item| self.prune_at(child, item));
                }
            }
            _ => {}
        }
    }

    fn walk(&self, node: Node<'a>, value: &Value, report: &mut Report) {
        match value {
            Value::Object(fields) => {
                for (name, value) in fields {
                    match self.field(node, name) {
                        None => report.add("unknown field", name),
                        Some(Node::Any) => {}
                        Some(child) => {
                            let length = report.enter_field(name);
                            self.walk(child, value, report);
                            report.path.truncate(length);
                        }
                    }
                }
            }
            Value::Array(items) => {
                let child = self.items(node);
                if matches!(child, Node::Any) {
                    return;
                }
                for (index, item) in items.iter().enumerate() {
                    let length = report.enter_index(index);
                    self.walk(child, item, report);
                    report.path.truncate(length);
                }
            }
            _ => {}
        }
    }

    /// The schema of field `name` of an object at `node`, or None when it is unknown.
    fn field(&self, node: Node<'a>, name: &str) -> Option<Node<'a>> {
        let (schema, structural) = match node {
            Node::Any => return Some(Node::Any),
            Node::Nothing => return None,
            Node::Schema { schema, structural } => (schema, structural),
        };
        let facets = self.facets(schema, structural);
        for &(facet, structural) in &facets {
            if let Some(property) = facet.get("properties").and_then(|p| p.get(name)) {
                return Some(Node::Schema { schema: property, structural });
            }
        }
        if facets.iter().any(|(facet, _)| is_true(facet, "x-kubernetes-embedded-resource")) {
            match name {
                "apiVersion" | "kind" => return Some(Node::Any),
                "metadata" => {
                    return Some(match self.definitions.get(super::schemas::OBJECT_META) {
                        Some(schema) => Node::Schema { schema, structural: false },
                        None => Node::Any,
                    })
                }
                _ => {}
            }
        }
        for &(facet, structural) in &facets {
            match facet.get("additionalProperties") {
                Some(Value::Bool(true)) => return Some(Node::Any),
                Some(additional @ Value::Object(_)) => {
                    return Some(Node::Schema { schema: additional, structural })
                }
                _ => {}
            }
        }
        if facets.iter().any(|(facet, _)| is_true(facet, "x-kubernetes-preserve-unknown-fields")) {
            return Some(Node::Any);
        }
        let free_form = facets
            .iter()
            .all(|(facet, structural)| !structural && facet.get("properties").is_none());
        free_form.then_some(Node::Any)
    }

    /// The schema of the items of an array at `node`.
    fn items(&self, node: Node<'a>) -> Node<'a> {
        let (schema, structural) = match node {
            Node::Schema { schema, structural } => (schema, structural),
            other => return other,
        };
        let facets = self.facets(schema, structural);
        for &(facet, structural) in &facets {
            if let Some(items @ Value::Object(_)) = facet.get("items") {
                return Node::Schema { schema: items, structural };
            }
        }
        if facets.iter().any(|(facet, _)| is_true(facet, "x-kubernetes-preserve-unknown-fields")) {
            return Node::Any;
        }
        if structural {
            Node::Nothing
        } else {
            Node::Any
        }
    }

    /// The schema and every schema it includes through `$ref` and `allOf`.
    fn facets(&self, schema: &'a Value, structural: bool) -> Vec<(&'a Value, bool)> {
        let mut facets = Vec::new();
        self.collect_facets(schema, structural, 0, &mut facets);
        facets
    }

    fn collect_facets(
        &self,
        schema: &'a Value,
        structural: bool,
        depth: usize,
        facets: &mut Vec<(&'a Value, bool)>,
    ) {
        if depth > MAX_REFERENCE_DEPTH {
            return;
        }
        facets.push((schema, structural));
        if let Some(target) =
            schema.get("$ref").and_then(Value::as_str).and_then(|r| self.resolve(r))
        {
            self.collect_facets(target, false, depth + 1, facets);
        }
        if let Some(Value::Array(all_of)) = schema.get("allOf") {
            for member in all_of {
                self.collect_facets(member, structural, depth + 1, facets);
            }
        }
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let name = reference.strip_prefix("#/components/schemas/")?;
        self.definitions.get(&name.replace("~1", "/").replace("~0", "~"))
    }
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// The errors found so far and the path of the value being visited.
#[derive(Default)]
struct Report {
    path: String,
    errors: Vec<String>,
    seen: HashSet<String>,
}

impl Report {
    /// Records `<what> "<path>.<name>"` once; returns nothing, as the decoder does.
    fn add(&mut self, what: &str, name: &str) {
        if self.errors.len() >= MAX_ERRORS {
            return;
        }
        let path =
            if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) };
        let error = format!("{what} {}", go_quote(&path));
        if self.seen.insert(error.clone()) {
            self.errors.push(error);
        }
    }

    /// Appends a field to the path; returns the length to truncate back to.
    fn enter_field(&mut self, name: &str) -> usize {
        let length = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
        length
    }

    fn enter_index(&mut self, index: usize) -> usize {
        let length = self.path.len();
        self.path.push_str(&format!("[{index}]"));
        length
    }
}

/// Walks a JSON body while it is parsed, so duplicate keys (which a decoded map cannot hold)
/// are seen in order.
struct Walk<'c, 'a, 'r> {
    checker: &'c FieldChecker<'a>,
    node: Node<'a>,
    report: &'r mut Report,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if matches!(self.node, Node::Any) {
            IgnoredAny::deserialize(deserializer)?;
            return Ok(());
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            match self.checker.field(self.node, &name) {
                None => {
                    self.report.add("unknown field", &name);
                    map.next_value::<IgnoredAny>()?;
                }
                Some(child) => {
                    if !keys.insert(name.clone()) {
                        self.report.add("duplicate field", &name);
                    }
                    let length = self.report.enter_field(&name);
                    map.next_value_seed(Walk {
                        checker: self.checker,
                        node: child,
                        report: &mut *self.report,
                    })?;
                    self.report.path.truncate(length);
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = self.checker.items(self.node);
        let mut index = 0;
        loop {
            let length = self.report.enter_index(index);
            let walk = Walk { checker: self.checker, node: child, report: &mut *self.report };
            let more = seq.next_element_seed(walk)?.is_some();
            self.report.path.truncate(length);
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definitions() -> Map<String, Value> {
        let value = json!({
            "Meta": {"type": "object", "properties": {"name": {"type": "string"}}},
            "Root": {
                "type": "object",
                "properties": {
                    "metadata": {"allOf": [{"$ref": "#/components/schemas/Meta"}]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "raw": {"type": "object"},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Meta"}},
                },
            },
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn built_in_schemas_report_paths_like_the_go_decoder() {
        let definitions = definitions();
        let checker = FieldChecker::new(&definitions, "Root", false).unwrap();
        let object = json!({
            "metadata": {"name": "a", "nmae": "b"},
            "labels": {"any": "thing"},
            "raw": {"free": {"form": 1}},
            "items": [{"name": "x"}, {"name": "y", "bogus": true}],
            "top": 1,
        });
        assert_eq!(
            checker.unknown_fields(&object),
            vec![
                r#"unknown field "items[1].bogus""#,
                r#"unknown field "metadata.nmae""#,
                r#"unknown field "top""#,
            ]
        );
    }

    #[test]
    fn raw_bodies_report_duplicates_in_document_order() {
        let definitions = definitions();
        let checker = FieldChecker::new(&definitions, "Root", false).unwrap();
        let body = br#"{"top": 1, "metadata": {"name": "a", "name": "b"}, "top": 2,
            "labels": {"k": "v", "k": "w"}}"#;
        assert_eq!(
            checker.strict_errors(body).unwrap(),
            vec![
                r#"unknown field "top""#,
                r#"duplicate field "metadata.name""#,
                r#"duplicate field "labels.k""#,
            ]
        );
        assert!(checker.strict_errors(b"{").is_err());
    }

    #[test]
    fn structural_schemas_prune_unlisted_fields() {
        let definitions = json!({
            "Widget": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {
                            "empty": {"type": "object"},
                            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "list": {"type": "array"},
                        },
                    },
                },
            },
        });
        let Value::Object(definitions) = definitions else { unreachable!() };
        let checker = FieldChecker::new(&definitions, "Widget", true).unwrap();
        let object = json!({"spec": {
            "empty": {"a": 1},
            "open": {"b": {"c": 1}},
            "list": [{"d": 1}],
        }});
        assert_eq!(
            checker.unknown_fields(&object),
            vec![r#"unknown field "spec.empty.a""#, r#"unknown field "spec.list[0].d""#]
        );
    }

    #[test]
    fn messages_quote_like_go() {
        assert_eq!(go_quote("a\"b\\c\u{1}"), r#""a\"b\\c\x01""#);
        let message = strict_decoding_message("Deployment", "v1", &[r#"unknown field "x""#.into()]);
        assert_eq!(
            message,
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "x""#
        );
    }
}
