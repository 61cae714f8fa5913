//! `FieldError`: one invalid field, rendered exactly like Go's `field.Error`, plus the Go value
//! formatting (`%q`, `%v`) its messages depend on.

use std::fmt;

use serde_json::Value;

/// Why a field is invalid; mirrors `field.ErrorType` and `metav1.CauseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CauseKind {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl CauseKind {
    /// Returns the `StatusCause.reason` string, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            CauseKind::NotFound => "FieldValueNotFound",
            CauseKind::Required => "FieldValueRequired",
            CauseKind::Duplicate => "FieldValueDuplicate",
            CauseKind::Invalid => "FieldValueInvalid",
            CauseKind::NotSupported => "FieldValueNotSupported",
            CauseKind::Forbidden => "FieldValueForbidden",
            CauseKind::TooLong => "FieldValueTooLong",
            CauseKind::TooMany => "FieldValueTooMany",
            CauseKind::Internal => "InternalError",
            CauseKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// Returns the human phrase Kubernetes prints, e.g. `Invalid value`.
    pub fn phrase(self) -> &'static str {
        match self {
            CauseKind::NotFound => "Not found",
            CauseKind::Required => "Required value",
            CauseKind::Duplicate => "Duplicate value",
            CauseKind::Invalid | CauseKind::TypeInvalid => "Invalid value",
            CauseKind::NotSupported => "Unsupported value",
            CauseKind::Forbidden => "Forbidden",
            CauseKind::TooLong => "Too long",
            CauseKind::TooMany => "Too many",
            CauseKind::Internal => "Internal error",
        }
    }

    /// Whether Kubernetes prints the offending value for this kind.
    fn shows_value(self) -> bool {
        !matches!(
            self,
            CauseKind::Required | CauseKind::Forbidden | CauseKind::TooLong | CauseKind::Internal
        )
    }
}

/// One invalid field, rendered like Kubernetes' `field.Error`.
///
/// `bad_value: None` renders as `null`, except for [`CauseKind::TooMany`] where it means "count
/// unknown" and the value is left out, as Go's `omitValue` does.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path of the field, e.g. `metadata.labels` or `spec.containers[0].image`.
    pub field: String,
    pub kind: CauseKind,
    /// The detail after the value; may be empty.
    pub message: String,
    pub bad_value: Option<Value>,
}

impl FieldError {
    /// A malformed value (`field.Invalid`).
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(field, CauseKind::Invalid, message, Some(value.into()))
    }

    /// A value of the wrong JSON type (`field.TypeInvalid`).
    pub fn type_invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(field, CauseKind::TypeInvalid, message, Some(value.into()))
    }

    /// A missing value (`field.Required`).
    pub fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, CauseKind::Required, message, None)
    }

    /// A value not allowed here (`field.Forbidden`).
    pub fn forbidden(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, CauseKind::Forbidden, message, None)
    }

    /// A value that must be unique (`field.Duplicate`).
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(field, CauseKind::Duplicate, "", Some(value.into()))
    }

    /// A value that refers to something missing (`field.NotFound`).
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(field, CauseKind::NotFound, "", Some(value.into()))
    }

    /// A value outside an enumeration (`field.NotSupported`).
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let message = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(field, CauseKind::NotSupported, message, Some(value.into()))
    }

    /// A value longer than `max_bytes` (`field.TooLong`); `None` when the limit is unknown.
    pub fn too_long(field: impl Into<String>, max_bytes: Option<usize>) -> Self {
        let message = match max_bytes {
            Some(max) => format!("may not be more than {max} bytes"),
            None => "value is too long".to_string(),
        };
        Self::new(field, CauseKind::TooLong, message, None)
    }

    /// A list with too many items (`field.TooMany`).
    pub fn too_many(field: impl Into<String>, actual: Option<usize>, max: Option<usize>) -> Self {
        let message = match max {
            Some(max) => format!("must have at most {max} items"),
            None => "has too many items".to_string(),
        };
        Self::new(field, CauseKind::TooMany, message, actual.map(Value::from))
    }

    /// A failure not caused by the input (`field.InternalError`).
    pub fn internal(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, CauseKind::Internal, message, None)
    }

    fn new(
        field: impl Into<String>,
        kind: CauseKind,
        message: impl Into<String>,
        bad_value: Option<Value>,
    ) -> Self {
        Self { field: field.into(), kind, message: message.into(), bad_value }
    }

    /// Returns the `StatusCause.reason` string.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// Returns the message without the field path (`field.Error.ErrorBody`); this is what
    /// Kubernetes puts in `StatusCause.message`.
    pub fn body(&self) -> String {
        let mut text = self.kind.phrase().to_string();
        if self.kind.shows_value() {
            match (&self.bad_value, self.kind) {
                (None, CauseKind::TooMany) => {}
                (None, _) => text.push_str(": null"),
                (Some(value), _) => {
                    text.push_str(": ");
                    text.push_str(&go_value(value));
                }
            }
        }
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        }
        text
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Joins errors like Go's `ErrorList.ToAggregate().Error()`: duplicates dropped, one message
/// bare, several as `[a, b]`; empty input gives an empty string.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for error in errors {
        let message = error.to_string();
        if !seen.contains(&message) {
            seen.push(message);
        }
    }
    match seen.len() {
        1 => seen.remove(0),
        _ if seen.is_empty() => String::new(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// Returns the `Status.message` of a 422 Invalid response (`errors.NewInvalid`), e.g.
/// `Pod "Bad_Name" is invalid: metadata.name: Invalid value: ...`. `group` is "" for core.
pub fn invalid_status_message(
    group: &str,
    kind: &str,
    name: &str,
    errors: &[FieldError],
) -> String {
    let qualified_kind =
        if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    if errors.is_empty() {
        format!("{qualified_kind} {} is invalid", go_quote(name))
    } else {
        format!("{qualified_kind} {} is invalid: {}", go_quote(name), aggregate_message(errors))
    }
}

/// Quotes a string like Go's `strconv.Quote` (`%q`).
///
/// Printability follows Go for ASCII, Latin-1, controls and the common invisible format
/// characters; rarer non-printable code points (unassigned, private use) are kept verbatim.
pub fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint`: graphic characters plus the ASCII space.
fn is_go_printable(ch: char) -> bool {
    if ch == ' ' {
        return true;
    }
    if ch.is_control() || ch.is_whitespace() {
        return false;
    }
    !matches!(
        ch as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
            | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF
    )
}

/// Renders a bad value the way `field.Error` prints Go values: strings quoted, numbers and
/// booleans bare, string lists as `[]string{...}`. Objects and mixed lists have no Go type here,
/// so they print as compact JSON.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::String(text) => go_quote(text),
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(int), _, _) => int.to_string(),
            (None, Some(uint), _) => uint.to_string(),
            (None, None, Some(float)) => go_float(float),
            _ => number.to_string(),
        },
        Value::Array(items) if items.is_empty() => "[]string(nil)".to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let quoted: Vec<String> = items.iter().map(go_value).collect();
            format!("[]string{{{}}}", quoted.join(", "))
        }
        other => other.to_string(),
    }
}

/// Formats a float like Go's `%v` (`strconv.FormatFloat(f, 'g', -1, 64)`): `0.5`, `123456`,
/// `1.234567e+06`, `1e-05`.
pub fn go_float(value: f64) -> String {
    if !value.is_finite() {
        return if value.is_nan() {
            "NaN".into()
        } else if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.234567e6".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // With the shortest precision, Go uses exponent form below 1e-4 and from 1e6 on.
    if !(-4..6).contains(&exponent) {
        return go_exponent_form(mantissa, exponent);
    }
    format!("{value}")
}

fn go_exponent_form(mantissa: &str, exponent: i32) -> String {
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_like_field_error_error() {
        let cases = vec![
            (
                FieldError::invalid("metadata.name", "Bad_Name", "must be lowercase"),
                "metadata.name: Invalid value: \"Bad_Name\": must be lowercase",
                "FieldValueInvalid",
            ),
            (
                FieldError::required("metadata.name", "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
                "FieldValueRequired",
            ),
            (FieldError::required("metadata.namespace", ""), "metadata.namespace: Required value", "FieldValueRequired"),
            (
                FieldError::forbidden("metadata.namespace", "not allowed on this type"),
                "metadata.namespace: Forbidden: not allowed on this type",
                "FieldValueForbidden",
            ),
            (
                FieldError::too_long("metadata.annotations", Some(262144)),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
                "FieldValueTooLong",
            ),
            (
                FieldError::too_long("spec.x", None),
                "spec.x: Too long: value is too long",
                "FieldValueTooLong",
            ),
            (
                FieldError::too_many("spec.items", Some(5), Some(3)),
                "spec.items: Too many: 5: must have at most 3 items",
                "FieldValueTooMany",
            ),
            (
                FieldError::too_many("spec.items", None, None),
                "spec.items: Too many: has too many items",
                "FieldValueTooMany",
            ),
            (
                FieldError::duplicate("spec.ports[1].name", "http"),
                "spec.ports[1].name: Duplicate value: \"http\"",
                "FieldValueDuplicate",
            ),
            (
                FieldError::not_found("spec.volumes[0]", "data"),
                "spec.volumes[0]: Not found: \"data\"",
                "FieldValueNotFound",
            ),
            (
                FieldError::not_supported("spec.restartPolicy", "Sometimes", &["Always", "Never", "OnFailure"]),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
                "FieldValueNotSupported",
            ),
            (
                FieldError::invalid("metadata.generation", -1, "must be greater than or equal to 0"),
                "metadata.generation: Invalid value: -1: must be greater than or equal to 0",
                "FieldValueInvalid",
            ),
            (
                FieldError::invalid("values", json!(["a", "b"]), "exact-match compatibility requires one single value"),
                "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value",
                "FieldValueInvalid",
            ),
            (
                FieldError::invalid("values", json!([]), "for 'in', 'notin' operators, values set can't be empty"),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
                "FieldValueInvalid",
            ),
            (
                FieldError::internal("spec", "boom"),
                "spec: Internal error: boom",
                "InternalError",
            ),
            (
                FieldError::type_invalid("metadata.labels[a]", 5, "must be of type string"),
                "metadata.labels[a]: Invalid value: 5: must be of type string",
                "FieldValueTypeInvalid",
            ),
        ];
        for (error, expected, reason) in cases {
            assert_eq!(error.to_string(), expected);
            assert_eq!(error.reason(), reason);
        }
    }

    #[test]
    fn null_value_prints_null() {
        let error = FieldError { bad_value: None, ..FieldError::invalid("spec.x", "", "bad") };
        assert_eq!(error.to_string(), "spec.x: Invalid value: null: bad");
    }

    #[test]
    fn quotes_like_go() {
        let cases = [
            ("plain", "\"plain\""),
            ("q\"b\\", "\"q\\\"b\\\\\""),
            ("tab\tnl\n\u{0}\u{7f}", "\"tab\\tnl\\n\\x00\\x7f\""),
            ("héllo ☃", "\"héllo ☃\""),
            ("nb\u{a0}sp\u{200b}", "\"nb\\u00a0sp\\u200b\""),
        ];
        for (input, expected) in cases {
            assert_eq!(go_quote(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn formats_values_like_go() {
        let cases = [
            (json!(true), "true"),
            (json!(null), "null"),
            (json!(42), "42"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(0.5), "0.5"),
            (json!(123456.0), "123456"),
            (json!(1234567.0), "1.234567e+06"),
            (json!(0.00001), "1e-05"),
            (json!({"a": 1}), "{\"a\":1}"),
        ];
        for (value, expected) in cases {
            assert_eq!(go_value(&value), expected, "value {value}");
        }
    }

    #[test]
    fn aggregates_like_error_list() {
        let first = FieldError::required("metadata.name", "name or generateName is required");
        let second = FieldError::forbidden("metadata.namespace", "not allowed on this type");
        assert_eq!(aggregate_message(&[]), "");
        assert_eq!(aggregate_message(&[first.clone(), first.clone()]), first.to_string());
        assert_eq!(
            aggregate_message(&[first.clone(), second.clone(), first.clone()]),
            format!("[{first}, {second}]")
        );
    }

    #[test]
    fn invalid_status_message_names_the_kind() {
        let error = FieldError::invalid("metadata.name", "Bad_Name", "bad");
        assert_eq!(
            invalid_status_message("", "Pod", "Bad_Name", std::slice::from_ref(&error)),
            "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": bad"
        );
        assert_eq!(
            invalid_status_message("apps", "Deployment", "web", &[]),
            "Deployment.apps \"web\" is invalid"
        );
    }
}
