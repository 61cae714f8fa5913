//! Shared cell formatting: Kubernetes' `duration.HumanDuration`, timestamps, label and
//! selector strings, container layouts, and tolerant accessors over API JSON.
//!
//! Accessors never fail: a missing or mistyped field reads as the Go zero value
//! (`""`, `0`, empty list), which is what the Go printers see for an unset field.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

/// Returns the value at `path` (object keys only), if every step exists.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    if current.is_null() {
        None
    } else {
        Some(current)
    }
}

/// Returns the string at `path`, or `""` when absent or not a string.
pub(crate) fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

/// Returns the string at `path` when the field is present (even if empty).
pub(crate) fn opt_str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// Returns the integer at `path` when present; integral floats are accepted.
pub(crate) fn opt_int_at(value: &Value, path: &[&str]) -> Option<i64> {
    let found = at(value, path)?;
    found.as_i64().or_else(|| found.as_f64().map(|float| float as i64))
}

/// Returns the integer at `path`, or 0.
pub(crate) fn int_at(value: &Value, path: &[&str]) -> i64 {
    opt_int_at(value, path).unwrap_or(0)
}

/// Returns the boolean at `path` when present.
pub(crate) fn opt_bool_at(value: &Value, path: &[&str]) -> Option<bool> {
    at(value, path).and_then(Value::as_bool)
}

/// Returns the boolean at `path`, or false.
pub(crate) fn bool_at(value: &Value, path: &[&str]) -> bool {
    opt_bool_at(value, path).unwrap_or(false)
}

/// Returns the array at `path`, or an empty slice.
pub(crate) fn list_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Returns the object at `path` when present.
pub(crate) fn map_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(value, path).and_then(Value::as_object)
}

/// Returns the number of entries of the object or array at `path`.
pub(crate) fn len_at(value: &Value, path: &[&str]) -> i64 {
    match at(value, path) {
        Some(Value::Object(map)) => map.len() as i64,
        Some(Value::Array(list)) => list.len() as i64,
        _ => 0,
    }
}

/// Returns the RFC 3339 timestamp at `path` when present and parseable.
pub(crate) fn time_at(value: &Value, path: &[&str]) -> Option<Timestamp> {
    parse_time(str_at(value, path))
}

/// Parses an RFC 3339 timestamp (`metav1.Time` or `metav1.MicroTime`).
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    if text.is_empty() {
        return None;
    }
    text.parse::<Timestamp>().ok()
}

/// Returns `metadata.name`.
pub(crate) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// Returns true when `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    at(obj, &["metadata", "deletionTimestamp"]).is_some()
}

/// Returns the AGE cell: the human duration since `metadata.creationTimestamp`.
pub(crate) fn age(obj: &Value, now: Timestamp) -> String {
    since(time_at(obj, &["metadata", "creationTimestamp"]), now)
}

/// Returns Kubernetes' `translateTimestampSince`: `<unknown>` for an unset time.
pub(crate) fn since(time: Option<Timestamp>, now: Timestamp) -> String {
    match time {
        Some(time) => human_duration(now.duration_since(time)),
        None => "<unknown>".to_string(),
    }
}

/// Returns the `Created At` cell of the default table convertor: RFC 3339 in UTC, whole
/// seconds, and Go's zero time when unset.
pub(crate) fn created_at(obj: &Value) -> String {
    match time_at(obj, &["metadata", "creationTimestamp"]) {
        Some(time) => time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// Formats a duration like `k8s.io/apimachinery/pkg/util/duration.HumanDuration`:
/// about two significant figures (`5s`, `3m20s`, `2d3h`, `45d`, `2y3d`), `0s` for a
/// small clock skew and `<invalid>` for anything more than a second in the future.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 { format!("{minutes}m") } else { format!("{minutes}m{rest}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 { format!("{hours}h") } else { format!("{hours}h{rest}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rest = hours % 24;
        let days = hours / 24;
        return if rest == 0 { format!("{days}d") } else { format!("{days}d{rest}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{years}y") } else { format!("{years}y{days}d") };
    }
    format!("{}y", hours / 24 / 365)
}

/// Returns `labels.FormatLabels`: sorted `k=v` pairs joined by commas, or `<none>`.
pub(crate) fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let text = labels_string(labels);
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text
    }
}

fn labels_string(labels: Option<&Map<String, Value>>) -> String {
    let Some(labels) = labels else { return String::new() };
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Returns `metav1.FormatLabelSelector`: the selector string, `<none>` when it selects
/// everything or nothing, `<error>` when it is invalid.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_string(selector) {
        Some(text) if text.is_empty() => "<none>".to_string(),
        Some(text) => text,
        None => "<error>".to_string(),
    }
}

/// Returns the `labels.Selector` string of a `metav1.LabelSelector`, or `None` when the
/// selector is invalid. Requirements are sorted by key; set values are sorted.
pub(crate) fn label_selector_string(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector else { return Some(String::new()) };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = map_at(selector, &["matchLabels"]) {
        for (key, value) in labels {
            requirements.push((key.clone(), format!("{key}={}", value.as_str().unwrap_or(""))));
        }
    }
    for expression in list_at(selector, &["matchExpressions"]) {
        let key = str_at(expression, &["key"]);
        let mut values: Vec<&str> =
            list_at(expression, &["values"]).iter().filter_map(Value::as_str).collect();
        values.sort_unstable();
        let text = match str_at(expression, &["operator"]) {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_string(), text));
    }
    requirements.sort_by(|left, right| left.0.cmp(&right.0));
    Some(requirements.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join(","))
}

/// Returns the comma-joined container names and images of a pod spec's `containers`.
pub(crate) fn container_cells(pod_spec: &Value) -> (String, String) {
    let containers = list_at(pod_spec, &["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Returns `helper.GetAccessModesAsString`: `RWO,ROX,RWX,RWOP` in that fixed order.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    let table = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ];
    table
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// Returns `IntOrString.String()` for an int-or-string field.
pub(crate) fn int_or_string(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => String::new(),
    }
}

/// Returns `printBoolPtr`: `True`, `False` or `<unset>`.
pub(crate) fn bool_ptr(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// Returns `value`, or `fallback` when it is empty.
pub(crate) fn or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() {
        fallback
    } else {
        value
    }
}

/// Joins at most `max` items with commas, adding ` + N more...` like `listWithMoreString`;
/// an empty list reads `<unset>`.
pub(crate) fn list_with_more(items: &[String], max: usize) -> String {
    if items.is_empty() {
        return "<unset>".to_string();
    }
    let shown = items[..items.len().min(max)].join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else {
        shown
    }
}
