//! Label selectors: the string grammar of apimachinery's `labels.Parse`, the conversion of a
//! `metav1.LabelSelector` object (`LabelSelectorAsSelector`), matching, and the canonical string.
//!
//! Invariants: requirements are kept sorted by key (stable), as Kubernetes sorts them after
//! parsing; every requirement passed `Requirement::new`'s checks; error texts are Kubernetes'.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::parser::parse_requirements;
use crate::validation::{
    aggregate_message, go_quote, is_qualified_name, is_valid_label_value, FieldError,
};

/// Why a label selector was rejected; `Display` is the message the Kubernetes API server sends.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// The selector string breaks the grammar between requirements.
    #[error("{message}")]
    Syntax { message: String },
    /// The selector string breaks the grammar inside one requirement.
    #[error("unable to parse requirement: {message}")]
    RequirementSyntax { message: String },
    /// A requirement of the selector string has an invalid key or values.
    #[error("unable to parse requirement: {}", aggregate_message(.errors))]
    InvalidRequirement { errors: Vec<FieldError> },
    /// A requirement of a `metav1.LabelSelector` object has an invalid key or values.
    #[error("{}", aggregate_message(.errors))]
    InvalidExpression { errors: Vec<FieldError> },
    /// A `matchExpressions` entry has an operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.operator))]
    UnknownOperator { operator: String },
    /// A `metav1.LabelSelector` object does not have the schema's shape.
    #[error("{message}")]
    Malformed { message: String },
}

/// A requirement's operator; `as_str` gives apimachinery's `selection.Operator` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// Returns the `selection.Operator` string, e.g. `notin` or `gt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One condition on one label key (`labels.Requirement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement with Kubernetes' checks (`labels.NewRequirement`): a qualified-name
    /// key, the value count the operator needs, integer values for gt/lt, valid label values.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, Vec<FieldError>> {
        let key = key.into();
        let mut errors = Vec::new();
        let key_messages = is_qualified_name(&key);
        if !key_messages.is_empty() {
            errors.push(FieldError::invalid("key", key.as_str(), key_messages.join("; ")));
        }
        let listed = || Value::from(values.clone());
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errors.push(FieldError::invalid(
                    "values",
                    listed(),
                    "for 'in', 'notin' operators, values set can't be empty",
                ))
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errors.push(FieldError::invalid(
                    "values",
                    listed(),
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errors.push(FieldError::invalid(
                    "values",
                    listed(),
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(FieldError::invalid(
                        "values",
                        listed(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (index, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        errors.push(FieldError::invalid(
                            format!("values[{index}]"),
                            value.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (index, value) in values.iter().enumerate() {
            let messages = is_valid_label_value(value);
            if !messages.is_empty() {
                errors.push(FieldError::invalid(
                    format!("values[{index}][{key}]"),
                    value.as_str(),
                    messages.join("; "),
                ));
            }
        }
        if errors.is_empty() {
            Ok(Self { key, operator, values })
        } else {
            Err(errors)
        }
    }

    /// Returns the label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Returns the operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// Returns the values in the order given (sorted and deduplicated when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Returns whether the labels seen through `lookup` satisfy this requirement. A missing key
    /// satisfies only `!=`, `notin` and `!`; gt/lt need an integer label value.
    pub fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = lookup(&self.key);
        let has_value = |candidate: &str| self.values.iter().any(|value| value == candidate);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(has_value)
            }
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has_value),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|text| text.parse::<i64>().ok()) else {
                    return false;
                };
                let [limit] = self.values.as_slice() else {
                    return false;
                };
                let Ok(limit) = limit.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > limit
                } else {
                    actual < limit
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Renders like `Requirement.String()`: `!k`, `k`, `k=v`, `k in (a,b)`, `k>5`; several
    /// values are printed sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (before, after) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", ""),
            Operator::DoubleEquals => ("==", ""),
            Operator::NotEquals => ("!=", ""),
            Operator::In => (" in (", ")"),
            Operator::NotIn => (" notin (", ")"),
            Operator::GreaterThan => (">", ""),
            Operator::LessThan => ("<", ""),
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        write!(f, "{before}{}{after}", values.join(","))
    }
}

/// A parsed label selector: the AND of its requirements, or "nothing" for a null
/// `metav1.LabelSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    selects_nothing: bool,
}

impl LabelSelector {
    /// Returns the selector that matches every object (the empty string).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Returns the selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        Self { requirements: Vec::new(), selects_nothing: true }
    }

    /// Parses the `labelSelector` string syntax (`labels.Parse`).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        // Kubernetes' lexer reads a NUL byte as the end of the input.
        let selector = selector.split('\0').next().unwrap_or_default();
        let mut requirements = parse_requirements(selector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements, selects_nothing: false })
    }

    /// Converts a `metav1.LabelSelector` JSON object (`LabelSelectorAsSelector`): null selects
    /// nothing, an empty object everything; `matchLabels` become `=` requirements and
    /// `matchExpressions` In/NotIn/Exists/DoesNotExist requirements.
    pub fn from_json(selector: &Value) -> Result<Self, SelectorError> {
        let object = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(object) => object,
            _ => return Err(malformed("label selector must be an object")),
        };
        let mut requirements = Vec::new();
        match object.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let Some(value) = value.as_str() else {
                        return Err(malformed("matchLabels values must be strings"));
                    };
                    let requirement =
                        Requirement::new(key, Operator::Equals, vec![value.into()])
                            .map_err(|errors| SelectorError::InvalidExpression { errors })?;
                    requirements.push(requirement);
                }
            }
            Some(_) => return Err(malformed("matchLabels must be an object")),
        }
        match object.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(expressions)) => {
                for expression in expressions {
                    requirements.push(expression_requirement(expression)?);
                }
            }
            Some(_) => return Err(malformed("matchExpressions must be a list")),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements, selects_nothing: false })
    }

    /// Builds an equality selector from a plain map, like a Service's `spec.selector`, without
    /// validating it (`SelectorFromValidatedSet`). An empty map selects everything.
    pub fn from_set(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        Self { requirements, selects_nothing: false }
    }

    /// Returns whether the selector places no restriction (Kubernetes' `Empty()`).
    pub fn is_everything(&self) -> bool {
        !self.selects_nothing && self.requirements.is_empty()
    }

    /// Returns whether the selector can match nothing at all (a null `metav1.LabelSelector`).
    pub fn is_nothing(&self) -> bool {
        self.selects_nothing
    }

    /// Returns the requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Returns the single value the selector requires for `key` when its first requirement on
    /// `key` is `=`, `==` or a one-value `in` (`RequiresExactMatch`); useful for index lookups.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|requirement| requirement.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }

    /// Returns whether labels seen through `lookup` satisfy every requirement.
    pub fn matches_lookup<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.selects_nothing
            && self.requirements.iter().all(|requirement| requirement.matches(&lookup))
    }

    /// Returns whether a `metadata.labels` object matches; non-string values count as absent.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.matches_lookup(|key| labels.get(key).and_then(Value::as_str))
    }

    /// Returns whether an object's `metadata.labels` match; no labels means an empty set.
    pub fn matches_object(&self, object: &Value) -> bool {
        match object.pointer("/metadata/labels").and_then(Value::as_object) {
            Some(labels) => self.matches(labels),
            None => self.matches_lookup(|_| None),
        }
    }

    /// Returns whether a plain label map matches.
    pub fn matches_str(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_lookup(|key| labels.get(key).map(String::as_str))
    }
}

impl fmt::Display for LabelSelector {
    /// Renders the canonical string (`Selector.String()`): requirements joined by `,`. Both
    /// "everything" and "nothing" render as the empty string, as in Kubernetes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        Self::parse(selector)
    }
}

fn malformed(message: &str) -> SelectorError {
    SelectorError::Malformed { message: message.to_string() }
}

/// Converts one `matchExpressions` entry.
fn expression_requirement(expression: &Value) -> Result<Requirement, SelectorError> {
    let Some(expression) = expression.as_object() else {
        return Err(malformed("matchExpressions entries must be objects"));
    };
    let text = |name: &str| match expression.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(malformed("matchExpressions key and operator must be strings")),
    };
    let (key, operator) = (text("key")?, text("operator")?);
    let operator = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(SelectorError::UnknownOperator { operator: other.to_string() }),
    };
    let values = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("matchExpressions values must be strings"))?,
        Some(_) => return Err(malformed("matchExpressions values must be a list")),
    };
    Requirement::new(key, operator, values)
        .map_err(|errors| SelectorError::InvalidExpression { errors })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const QUALIFIED: &str = "name part must consist of alphanumeric characters, '-', '_' or \
        '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
        'my.name',  or '123-abc', regex used for validation is \
        '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
        characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
        'MyValue',  or 'my_value',  or '12345', regex used for validation is \
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn parses_valid_selectors_to_canonical_strings() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            (" x = a , y ", "x=a,y"),
            ("b=2,a=1", "a=1,b=2"),
            ("x in (b,a)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x in (in,notin)", "x in (in,notin)"),
            ("in in (in)", "in in (in)"),
            ("!x", "!x"),
            ("!x,y", "!x,y"),
            ("x>5", "x>5"),
            ("x<10", "x<10"),
            ("x=", "x="),
            ("x=,y=b", "x=,y=b"),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x in (a,)", "x in (,a)"),
            ("x in (b,a,b)", "x in (a,b)"),
            ("example.com/app=web", "example.com/app=web"),
            ("a,b", "a,b"),
            ("x=a\0garbage", "x=a"),
            ("x\t=\na", "x=a"),
        ];
        for (input, canonical) in cases {
            let selector = LabelSelector::parse(input)
                .unwrap_or_else(|error| panic!("{input:?} failed: {error}"));
            assert_eq!(selector.to_string(), canonical, "input {input:?}");
            // The canonical form parses back to the same selector.
            assert_eq!(LabelSelector::parse(canonical).unwrap(), selector, "input {input:?}");
        }
    }

    #[test]
    fn rejects_invalid_selectors_with_kubernetes_messages() {
        let cases: Vec<(&str, String)> = vec![
            ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier".into()),
            ("a in", "unable to parse requirement: found '' expected: '('".into()),
            ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'".into()),
            ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'".into()),
            ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
            ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
            (",", "found ',', expected: !, identifier, or 'end of string'".into()),
            (")", "found ')', expected: !, identifier, or 'end of string'".into()),
            ("a,", "found '', expected: identifier after ','".into()),
            ("a,,b", "found ',', expected: identifier after ','".into()),
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("a!b", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("a=b c", "found 'c', expected: ',' or 'end of string'".into()),
            ("!", "unable to parse requirement: found '', expected: identifier".into()),
            ("!a=b", "found '=', expected: ',' or 'end of string'".into()),
            ("a=(b)", "unable to parse requirement: found '(', expected: identifier".into()),
            ("a<=5", "unable to parse requirement: found '=', expected: identifier".into()),
            ("a_=b", format!("unable to parse requirement: <nil>: Invalid value: \"a_\": {QUALIFIED}")),
            ("a=b_", format!("unable to parse requirement: values[0][a]: Invalid value: \"b_\": {LABEL_VALUE}")),
            (
                "a>b",
                "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' \
                 operators, the value must be an integer"
                    .into(),
            ),
            ("a<-5", format!("unable to parse requirement: values[0][a]: Invalid value: \"-5\": {LABEL_VALUE}")),
            (
                "a>b_",
                format!(
                    "unable to parse requirement: [values[0]: Invalid value: \"b_\": for 'Gt', \
                     'Lt' operators, the value must be an integer, values[0][a]: Invalid value: \
                     \"b_\": {LABEL_VALUE}]"
                ),
            ),
            (
                "a in (x,b_,c_)",
                format!(
                    "unable to parse requirement: [values[0][a]: Invalid value: \"b_\": \
                     {LABEL_VALUE}, values[1][a]: Invalid value: \"c_\": {LABEL_VALUE}]"
                ),
            ),
        ];
        for (input, expected) in cases {
            match LabelSelector::parse(input) {
                Ok(selector) => panic!("{input:?} parsed as {selector}"),
                Err(error) => assert_eq!(error.to_string(), expected, "input {input:?}"),
            }
        }
    }

    #[test]
    fn matches_labels() {
        let labels = json!({"app": "web", "tier": "front", "n": "10"});
        let labels = labels.as_object().unwrap();
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("missing in (x)", false),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("n>5", true),
            ("n>10", false),
            ("n<11", true),
            ("n<5", false),
            ("app>5", false),
            ("missing<5", false),
            ("missing=", false),
            ("app=web,tier=back", false),
            ("app=web,tier in (front,back),!gone", true),
        ];
        for (input, expected) in cases {
            let selector = LabelSelector::parse(input).unwrap();
            assert_eq!(selector.matches(labels), expected, "selector {input:?}");
            let as_strings: BTreeMap<String, String> = labels
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_string()))
                .collect();
            assert_eq!(selector.matches_str(&as_strings), expected, "selector {input:?}");
        }
    }

    #[test]
    fn matches_objects_without_labels_as_empty_set() {
        let object = json!({"metadata": {"name": "x"}});
        assert!(LabelSelector::parse("!a").unwrap().matches_object(&object));
        assert!(LabelSelector::parse("a notin (b)").unwrap().matches_object(&object));
        assert!(!LabelSelector::parse("a").unwrap().matches_object(&object));
        assert!(LabelSelector::everything().matches_object(&object));
        assert!(!LabelSelector::nothing().matches_object(&object));
        let labelled = json!({"metadata": {"labels": {"a": "b"}}});
        assert!(LabelSelector::parse("a=b").unwrap().matches_object(&labelled));
    }

    #[test]
    fn converts_label_selector_objects() {
        let cases = [
            (json!({}), ""),
            (json!({"matchLabels": {}, "matchExpressions": []}), ""),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (
                json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["z", "y"]}]}),
                "k in (y,z)",
            ),
            (
                json!({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["a"]}]}),
                "k notin (a)",
            ),
            (json!({"matchExpressions": [{"key": "k", "operator": "Exists"}]}), "k"),
            (
                json!({"matchExpressions": [{"key": "k", "operator": "DoesNotExist", "values": []}]}),
                "!k",
            ),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]}),
                "a,z=1",
            ),
        ];
        for (input, canonical) in cases {
            let selector = LabelSelector::from_json(&input).unwrap();
            assert!(!selector.is_nothing());
            assert_eq!(selector.to_string(), canonical, "input {input}");
        }
        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(nothing.is_nothing() && !nothing.is_everything());
        assert!(!nothing.matches(&Map::new()));
        assert!(LabelSelector::from_json(&json!({})).unwrap().is_everything());
    }

    #[test]
    fn rejects_invalid_label_selector_objects() {
        let cases: Vec<(Value, String)> = vec![
            (
                json!({"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator".into(),
            ),
            (
                json!({"matchExpressions": [{"key": "k", "operator": "In"}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set \
                 can't be empty"
                    .into(),
            ),
            (
                json!({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]}),
                "values: Invalid value: []string{\"a\"}: values set must be empty for exists and \
                 does not exist"
                    .into(),
            ),
            (
                json!({"matchLabels": {"a": "b_"}}),
                format!("values[0][a]: Invalid value: \"b_\": {LABEL_VALUE}"),
            ),
            (
                json!({"matchLabels": {"bad_": "x"}}),
                format!("key: Invalid value: \"bad_\": {QUALIFIED}"),
            ),
            (json!({"matchLabels": {"a": 1}}), "matchLabels values must be strings".into()),
            (json!([]), "label selector must be an object".into()),
        ];
        for (input, expected) in cases {
            match LabelSelector::from_json(&input) {
                Ok(selector) => panic!("{input} converted to {selector}"),
                Err(error) => assert_eq!(error.to_string(), expected, "input {input}"),
            }
        }
    }

    #[test]
    fn exact_matches_for_index_lookups() {
        let selector = LabelSelector::parse("a=1,b in (x),c in (x,y),d!=z").unwrap();
        assert_eq!(selector.requires_exact_match("a"), Some("1"));
        assert_eq!(selector.requires_exact_match("b"), Some("x"));
        assert_eq!(selector.requires_exact_match("c"), None);
        assert_eq!(selector.requires_exact_match("d"), None);
        assert_eq!(selector.requires_exact_match("e"), None);
    }

    #[test]
    fn set_selectors_are_unvalidated_equalities() {
        let set: BTreeMap<String, String> =
            [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())].into();
        let selector = LabelSelector::from_set(&set);
        assert_eq!(selector.to_string(), "a=1,b=2");
        assert!(selector.matches_str(&set));
        assert!(LabelSelector::from_set(&BTreeMap::new()).is_everything());
    }

    #[test]
    fn requirement_accessors() {
        let selector: LabelSelector = "x notin (b,a)".parse().unwrap();
        let [requirement] = selector.requirements() else { panic!("one requirement") };
        assert_eq!(requirement.key(), "x");
        assert_eq!(requirement.operator(), Operator::NotIn);
        assert_eq!(requirement.operator().as_str(), "notin");
        assert_eq!(requirement.values(), ["a", "b"]);
    }
}
