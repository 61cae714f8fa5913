//! Messages whose JSON form is not an object of their fields: times, durations, quantities,
//! int-or-strings, embedded JSON and string lists. Each renders as its Go `MarshalJSON` does.

use serde_json::Value;

use super::decoder::{expect_bytes, string_of};
use super::error::Problem;
use super::wire::{Reader, WireValue};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// `meta.v1.Time` or `MicroTime` (seconds = 1, nanos = 2).
///
/// Empty bytes are Go's zero time, which Go renders as `null`. `Time` drops the nanoseconds
/// as Go's unmarshalling does; `MicroTime` keeps microseconds (`2024-01-02T03:04:05.123456Z`).
pub(crate) fn time(bytes: &[u8], micro: bool) -> Result<Value, Problem> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0_i64, 0_i64);
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => seconds = varint_of(value)? as i64,
            2 => nanos = i64::from(varint_of(value)? as i32),
            _ => {}
        }
    }
    let nanos = if micro { nanos } else { 0 };
    Ok(Value::String(rfc3339(seconds, nanos, micro)?))
}

/// Formats a time in UTC as Go's `time.RFC3339` or, with `micro`, `RFC3339Micro`.
pub(crate) fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Result<String, Problem> {
    let out_of_range = Problem::TimeOutOfRange { seconds };
    // Go's time.Unix normalizes nanoseconds outside [0, 1e9) into the seconds.
    let whole = seconds.checked_add(nanos.div_euclid(NANOS_PER_SECOND));
    let whole = whole.ok_or_else(|| out_of_range.clone())?;
    let nanos = nanos.rem_euclid(NANOS_PER_SECOND);
    let timestamp = jiff::Timestamp::from_second(whole)
        .and_then(|timestamp| timestamp.checked_add(jiff::SignedDuration::from_nanos(nanos)))
        .map_err(|_| out_of_range.clone())?;
    let civil = jiff::tz::Offset::UTC.to_datetime(timestamp);
    if !(0..=9999).contains(&civil.year()) {
        return Err(out_of_range);
    }
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        civil.year(),
        civil.month(),
        civil.day(),
        civil.hour(),
        civil.minute(),
        civil.second()
    );
    if micro {
        text.push_str(&format!(".{:06}", civil.subsec_nanosecond() / 1_000));
    }
    text.push('Z');
    Ok(text)
}

/// `meta.v1.Duration` (duration = 1, int64 nanoseconds): Go's `time.Duration.String()`.
pub(crate) fn duration(bytes: &[u8]) -> Result<Value, Problem> {
    let mut nanos = 0_i64;
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        if tag == 1 {
            nanos = varint_of(value)? as i64;
        }
    }
    Ok(Value::String(go_duration(nanos)))
}

/// Formats nanoseconds as Go's `time.Duration.String()`: `0s`, `1.5µs`, `2ms`, `1h0m30s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    if magnitude == 0 {
        return "0s".to_string();
    }
    if magnitude < 1_000_000_000 {
        let (digits, unit) = match magnitude {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        return format!("{sign}{}{unit}", decimal(magnitude, digits));
    }
    let seconds = decimal(magnitude % 60_000_000_000, 9);
    let minutes = magnitude / 60_000_000_000;
    match (minutes / 60, minutes % 60) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, minutes) => format!("{sign}{minutes}m{seconds}s"),
        (hours, minutes) => format!("{sign}{hours}h{minutes}m{seconds}s"),
    }
}

/// Formats `value / 10^digits` without trailing zeros in the fraction.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10_u64.pow(digits);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `api.resource.Quantity` (string = 1): the string; Go's zero quantity is `"0"`.
pub(crate) fn quantity(bytes: &[u8]) -> Result<Value, Problem> {
    let mut text = String::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        if tag == 1 {
            text = string_of(value)?;
        }
    }
    if text.is_empty() {
        text.push('0');
    }
    Ok(Value::String(text))
}

/// `util.intstr.IntOrString` (type = 1, intVal = 2, strVal = 3): a number or a string.
pub(crate) fn int_or_string(bytes: &[u8]) -> Result<Value, Problem> {
    let (mut kind, mut int_value, mut string_value) = (0_i64, 0_i32, String::new());
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => kind = varint_of(value)? as i64,
            2 => int_value = varint_of(value)? as i32,
            3 => string_value = string_of(value)?,
            _ => {}
        }
    }
    match kind {
        0 => Ok(Value::from(int_value)),
        1 => Ok(Value::String(string_value)),
        other => Err(Problem::InvalidIntOrStringType(other)),
    }
}

/// A message of `repeated string items = 1` (`ExtraValue`, `Verbs`): a JSON array.
pub(crate) fn string_list(bytes: &[u8]) -> Result<Value, Problem> {
    let mut items = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        if tag == 1 {
            items.push(Value::String(string_of(value)?));
        }
    }
    Ok(Value::Array(items))
}

/// `RawExtension`, `FieldsV1`, `JSON` (raw = 1): the embedded JSON, `null` when empty.
///
/// An embedded object that is itself Kubernetes protobuf (`k8s\0…`) is decoded too.
pub(crate) fn raw_json(bytes: &[u8], depth: usize) -> Result<Value, Problem> {
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        if tag == 1 {
            raw = expect_bytes(value)?;
        }
    }
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(super::MAGIC) {
        return super::decode_nested(raw, depth)
            .map_err(|error| Problem::InvalidEmbeddedObject(Box::new(error)));
    }
    serde_json::from_slice(raw).map_err(|error| Problem::InvalidJson(error.to_string()))
}

/// Converts a double to a JSON number; integral values become integers, as Go writes them.
pub(crate) fn json_number(number: f64) -> Result<Value, Problem> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if number.fract() == 0.0 && number.abs() < EXACT {
        return Ok(Value::from(number as i64));
    }
    serde_json::Number::from_f64(number).map(Value::Number).ok_or(Problem::NonFiniteNumber(number))
}

fn varint_of(value: WireValue<'_>) -> Result<u64, Problem> {
    match value {
        WireValue::Varint(number) => Ok(number),
        other => Err(Problem::WrongWireType { expected: "varint", found: other.wire_type() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_as_go_does() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (2_000_000, "2ms"),
            (1_234_567, "1.234567ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-1_500_000_000, "-1.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, expected) in cases {
            assert_eq!(go_duration(nanos), expected, "{nanos}");
        }
    }

    #[test]
    fn times_format_as_rfc3339_in_utc() {
        assert_eq!(rfc3339(1_704_164_645, 0, false), Ok("2024-01-02T03:04:05Z".to_string()));
        assert_eq!(rfc3339(0, 0, false), Ok("1970-01-01T00:00:00Z".to_string()));
        assert_eq!(rfc3339(-1, 0, false), Ok("1969-12-31T23:59:59Z".to_string()));
        assert_eq!(
            rfc3339(1_704_164_645, 123_456_789, true),
            Ok("2024-01-02T03:04:05.123456Z".to_string())
        );
        assert_eq!(rfc3339(0, -1_000, true), Ok("1969-12-31T23:59:59.999999Z".to_string()));
        assert_eq!(rfc3339(-62_135_596_800, 0, false), Ok("0001-01-01T00:00:00Z".to_string()));
        for seconds in [i64::MAX, i64::MIN, 253_402_300_800, -62_167_219_201] {
            assert_eq!(
                rfc3339(seconds, 0, false),
                Err(Problem::TimeOutOfRange { seconds }),
                "{seconds}"
            );
        }
    }

    #[test]
    fn doubles_become_json_numbers() {
        assert_eq!(json_number(1.0), Ok(Value::from(1)));
        assert_eq!(json_number(-3.0), Ok(Value::from(-3)));
        assert_eq!(json_number(0.5), Ok(Value::from(0.5)));
        assert_eq!(json_number(1e300), Ok(Value::from(1e300)));
        assert!(matches!(json_number(f64::NAN), Err(Problem::NonFiniteNumber(_))));
        assert!(matches!(json_number(f64::INFINITY), Err(Problem::NonFiniteNumber(_))));
    }
}
