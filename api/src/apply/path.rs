//! Field paths as structured-merge-diff names them: a path is a list of [`PathElement`]s, each a
//! map member (`.name`), an associative list item picked by its key fields (`[name="c"]`), a set
//! item picked by its value (`[=80]`) or an atomic list item picked by index (`[0]`).
//!
//! The module also holds the few pieces of Go behaviour the serialized forms depend on: the order
//! structured-merge-diff gives values, Go's JSON encoding (sorted keys, HTML-safe escapes) and
//! Go's `%q` quoting.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde_json::{Map, Number, Value};

/// One step from a value into one of its children.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// `f:<name>`: the member `name` of a map or struct.
    Field(String),
    /// `k:<json object>`: the item of an associative list whose key fields have these values;
    /// sorted by field name.
    Key(Vec<(String, Value)>),
    /// `v:<json>`: the item of a set (a list of scalars) with this value.
    Value(Value),
    /// `i:<n>`: the item at an index of a list.
    Index(usize),
}

/// A path from the root of an object to one of its fields.
pub type Path = Vec<PathElement>;

impl PathElement {
    /// Returns the `fieldsV1` spelling of this element: `f:name`, `k:{"name":"c"}`, `v:"x"`, `i:0`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut out = String::from("k:{");
                for (index, (name, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write_go_string(&mut out, name);
                    out.push(':');
                    write_go_json(&mut out, value);
                }
                out.push('}');
                out
            }
            PathElement::Value(value) => format!("v:{}", go_json(value)),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a `fieldsV1` key. Returns `Ok(None)` for an unknown element type, which
    /// structured-merge-diff skips so that newer servers can add types.
    pub fn from_fields_v1_key(key: &str) -> Result<Option<PathElement>, String> {
        let (kind, rest) = match (key.get(..1), key.get(1..2), key.get(2..)) {
            (Some(kind), Some(":"), Some(rest)) => (kind, rest),
            _ if key.len() < 2 => return Err("key must be 2 characters long:".to_owned()),
            _ => return Err(format!("missing colon: {key}")),
        };
        let parse = |text: &str| {
            serde_json::from_str::<Value>(text).map_err(|error| format!("{key}: {error}"))
        };
        Ok(Some(match kind {
            "f" => PathElement::Field(rest.to_owned()),
            "v" => PathElement::Value(parse(rest)?),
            "k" => match parse(rest)? {
                Value::Object(map) => {
                    PathElement::Key(sorted_key(map.into_iter().collect::<Vec<_>>()))
                }
                _ => return Err(format!("{key}: key must be a JSON object")),
            },
            "i" => PathElement::Index(rest.parse().map_err(|_| format!("{key}: invalid index"))?),
            _ => return Ok(None),
        }))
    }
}

/// Sorts key fields by name, the order structured-merge-diff keeps them in.
pub(crate) fn sorted_key(mut fields: Vec<(String, Value)>) -> Vec<(String, Value)> {
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

impl Ord for PathElement {
    /// Field names sort before keys, keys before values, values before indexes.
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement as E;
        match (self, other) {
            (E::Field(a), E::Field(b)) => a.cmp(b),
            (E::Key(a), E::Key(b)) => compare_keys(a, b),
            (E::Value(a), E::Value(b)) => compare_values(a, b),
            (E::Index(a), E::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    /// Writes the element as Kubernetes prints it in conflict messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_char('[')?;
                for (index, (name, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{name}={}", GoDisplay(value))?;
                }
                f.write_char(']')
            }
            PathElement::Value(value) => write!(f, "[={}]", GoDisplay(value)),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// Displays a path the way Kubernetes prints it: `.spec.containers[name="c"].image`.
pub struct PathDisplay<'a>(pub &'a [PathElement]);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|element| write!(f, "{element}"))
    }
}

/// Writes a value as structured-merge-diff's `value.ToString` does: strings Go-quoted, numbers
/// and booleans bare, lists bracketed.
struct GoDisplay<'a>(&'a Value);

impl fmt::Display for GoDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Bool(value) => write!(f, "{value}"),
            Value::Number(number) => f.write_str(&go_number(number)),
            Value::String(text) => f.write_str(&go_quote(text)),
            Value::Array(items) => {
                f.write_char('[')?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{}", GoDisplay(item))?;
                }
                f.write_char(']')
            }
            Value::Object(map) => {
                map.iter().try_for_each(|(key, value)| write!(f, "{key}={}", GoDisplay(value)))
            }
        }
    }
}

fn compare_keys(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((name_a, value_a), (name_b, value_b)) in a.iter().zip(b) {
        let order = name_a.cmp(name_b).then_with(|| compare_values(value_a, value_b));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Orders values as structured-merge-diff does: numbers (compared numerically, integers and
/// floats alike), then strings, booleans, lists, maps and null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter().zip(b) {
                let order = compare_values(x, y);
                if order != Ordering::Equal {
                    return order;
                }
            }
            a.len().cmp(&b.len())
        }
        (Value::Object(a), Value::Object(b)) => {
            // Maps compare by their sorted members; only equality matters in practice.
            for ((key_a, x), (key_b, y)) in sorted_members(a).into_iter().zip(sorted_members(b)) {
                let order = key_a.cmp(key_b).then_with(|| compare_values(x, y));
                if order != Ordering::Equal {
                    return order;
                }
            }
            a.len().cmp(&b.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn sorted_members(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<_> = map.iter().collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    members
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a.cmp(&b);
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a.cmp(&b);
    }
    let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Returns whether two values are equal as Kubernetes sees them: numbers compare numerically,
/// so `1` equals `1.0` (Go decodes both into the same unstructured value).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Ordering::Equal,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(key, x)| b.get(key).is_some_and(|y| values_equal(x, y)))
        }
        _ => a == b,
    }
}

/// Encodes a value as Go's `encoding/json` does: compact, object keys sorted, `<`, `>` and `&`
/// escaped, integral numbers without a fraction.
pub fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(&mut out, value);
    out
}

fn write_go_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&go_number(number)),
        Value::String(text) => write_go_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in sorted_members(map).into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_go_string(out, key);
                out.push(':');
                write_go_json(out, item);
            }
            out.push('}');
        }
    }
}

fn write_go_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats a number as Go does for an unstructured value: integers (and integral floats, which
/// Kubernetes' JSON decoder turns into integers) in decimal, other floats in the shortest form,
/// with an exponent below 1e-6 and from 1e21 on.
fn go_number(number: &Number) -> String {
    if number.is_i64() || number.is_u64() {
        return number.to_string();
    }
    let value = number.as_f64().unwrap_or_default();
    if value.fract() == 0.0 && value.abs() < 9.2e18 {
        // The bound keeps the cast exact: the value is integral and within i64.
        #[allow(clippy::cast_possible_truncation)]
        return (value as i64).to_string();
    }
    let magnitude = value.abs();
    if !(1e-6..1e21).contains(&magnitude) {
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        }
    } else {
        format!("{value}")
    }
}

/// Quotes a string as Go's `%q` does.
pub fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
