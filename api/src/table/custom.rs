//! Tables for custom resources, driven by a CRD version's `additionalPrinterColumns`
//! the way `apiextensions-apiserver`'s table convertor does it.
//!
//! Every table starts with `Name`. A CRD without printer columns gets the default `Age`
//! column (type `date` on `.metadata.creationTimestamp`). A column whose JSONPath does not
//! parse ends the list there, as the Go convertor stops at the first bad column. Each cell
//! takes the first value its path selects; nothing selected gives `null`.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{definition_json, CREATION_DESCRIPTION, NAME_DESCRIPTION};
use crate::table::format::{at, human_duration, int_at, name, parse_time, str_at};
use crate::table::jsonpath::JsonPath;
use crate::validation::go_float;

/// One column of a custom resource table.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomColumn {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    /// The column's JSONPath; `None` for the leading `Name` column.
    pub json_path: Option<JsonPath>,
}

impl CustomColumn {
    /// Returns the `TableColumnDefinition` JSON.
    pub fn to_json(&self) -> Value {
        definition_json(&self.name, &self.kind, &self.format, &self.description, self.priority)
    }

    /// Returns this column's cell for `obj`.
    pub fn cell(&self, obj: &Value, now: Timestamp) -> Value {
        let Some(path) = &self.json_path else { return name(obj).into() };
        match path.find(obj).first() {
            Some(value) => cell_for(&self.kind, value, now),
            None => Value::Null,
        }
    }
}

/// Returns the columns for a CRD version's `additionalPrinterColumns` (an array; null or
/// empty means none). Accepts both `jsonPath` (v1) and `JSONPath` (v1beta1).
pub fn custom_columns(printer_columns: &Value) -> Vec<CustomColumn> {
    let mut columns = vec![CustomColumn {
        name: "Name".to_string(),
        kind: "string".to_string(),
        format: "name".to_string(),
        description: NAME_DESCRIPTION.to_string(),
        priority: 0,
        json_path: None,
    }];
    let definitions = printer_columns.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if definitions.is_empty() {
        columns.push(CustomColumn {
            name: "Age".to_string(),
            kind: "date".to_string(),
            format: String::new(),
            description: CREATION_DESCRIPTION.to_string(),
            priority: 0,
            json_path: JsonPath::parse(".metadata.creationTimestamp").ok(),
        });
        return columns;
    }
    for definition in definitions {
        let path_text = at(definition, &["jsonPath"])
            .or_else(|| at(definition, &["JSONPath"]))
            .and_then(Value::as_str)
            .unwrap_or("");
        let Ok(path) = JsonPath::parse(path_text) else { break };
        let description = match str_at(definition, &["description"]) {
            "" => format!("Custom resource definition column (in JSONPath format): {path_text}"),
            text => text.to_string(),
        };
        columns.push(CustomColumn {
            name: str_at(definition, &["name"]).to_string(),
            kind: str_at(definition, &["type"]).to_string(),
            format: str_at(definition, &["format"]).to_string(),
            description,
            priority: int_at(definition, &["priority"]) as i32,
            json_path: Some(path),
        });
    }
    columns
}

/// Returns one cell per column for a custom resource.
pub fn custom_cells(columns: &[CustomColumn], obj: &Value, now: Timestamp) -> Vec<Value> {
    columns.iter().map(|column| column.cell(obj, now)).collect()
}

/// Converts a selected value to a cell of the column's type (`cellForJSONValue`); a
/// value of the wrong type gives `null`.
fn cell_for(kind: &str, value: &Value, now: Timestamp) -> Value {
    match (kind, value) {
        (_, Value::Null) => Value::Null,
        ("string", value) => Value::String(go_text(value)),
        ("integer", Value::Number(number)) => {
            number.as_i64().or_else(|| number.as_f64().map(|float| float as i64)).into()
        }
        ("number", Value::Number(number)) => number.as_f64().into(),
        ("boolean", Value::Bool(flag)) => Value::Bool(*flag),
        ("date", Value::String(text)) if text.is_empty() => "<unknown>".into(),
        ("date", Value::String(text)) => match parse_time(text) {
            Some(time) => human_duration(now.duration_since(time)).into(),
            None => "<invalid>".into(),
        },
        _ => Value::Null,
    }
}

/// Prints a value the way `jsonpath.PrintResults` does: strings raw, scalars with Go's
/// `%v`, objects and arrays as compact JSON with Go's HTML escaping.
fn go_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) if !number.is_f64() => number.to_string(),
        Value::Number(number) => go_float(number.as_f64().unwrap_or(0.0)),
        Value::Null => String::new(),
        Value::Array(_) | Value::Object(_) => value
            .to_string()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
    }
}
