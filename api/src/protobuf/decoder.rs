//! Turns the bytes of one message into JSON, guided by its schema.
//!
//! Mirrors what the API server does with a protobuf body: decode into the Go struct, then
//! encode that with `encoding/json`. Hence a field repeated on the wire merges (messages) or
//! replaces (scalars), Go value fields with `omitempty` vanish when zero, and unknown field
//! numbers are skipped.

use base64::prelude::{Engine, BASE64_STANDARD};
use serde_json::{Map, Value};

use super::error::{Failure, Problem};
use super::schema::{self, Field, Kind, Message, Shape, INLINE, OMIT_ZERO, REPEATED};
use super::special;
use super::wire::{Reader, WireValue};

/// Messages nest at most this deep; deeper data is an error rather than a stack overflow.
const MAX_DEPTH: usize = 128;

/// Decodes the fields of a [`Shape::Struct`] message into `object`, merging with what is there.
pub(crate) fn merge_struct(
    fields: &'static [Field],
    bytes: &[u8],
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Failure> {
    let depth = enter(depth)?;
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        let Some(field) = schema::field_by_tag(fields, tag) else {
            continue;
        };
        if let Some(inline_fields) = inline_fields(field) {
            merge_struct(inline_fields, expect_bytes(value)?, object, depth)?;
            continue;
        }
        decode_field(field, value, object, depth).map_err(|failure| failure.within(field.json))?;
    }
    Ok(())
}

/// Decodes the bytes of a message into its JSON value.
pub(crate) fn message_value(
    message: &'static Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, Failure> {
    match &message.shape {
        Shape::Struct(fields) => {
            let mut object = Map::new();
            merge_struct(fields, bytes, &mut object, depth)?;
            Ok(Value::Object(object))
        }
        Shape::Time => Ok(special::time(bytes, false)?),
        Shape::MicroTime => Ok(special::time(bytes, true)?),
        Shape::Duration => Ok(special::duration(bytes)?),
        Shape::Quantity => Ok(special::quantity(bytes)?),
        Shape::IntOrString => Ok(special::int_or_string(bytes)?),
        Shape::StringList => Ok(special::string_list(bytes)?),
        Shape::RawJson => Ok(special::raw_json(bytes, depth)?),
        Shape::SchemaOrArray(schema) => schema_or_array(schema, bytes, depth),
        Shape::SchemaOrBool(schema) => schema_or_bool(schema, bytes, depth),
        Shape::SchemaOrStringArray(schema) => schema_or_string_array(schema, bytes, depth),
    }
}

fn enter(depth: usize) -> Result<usize, Problem> {
    if depth >= MAX_DEPTH {
        return Err(Problem::TooDeep);
    }
    Ok(depth + 1)
}

/// Returns the fields of an inline (embedded) struct field.
fn inline_fields(field: &Field) -> Option<&'static [Field]> {
    match (field.has(INLINE), &field.kind) {
        (true, Kind::Message(Message { shape: Shape::Struct(fields), .. })) => Some(fields),
        _ => None,
    }
}

fn decode_field(
    field: &Field,
    value: WireValue<'_>,
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Failure> {
    match &field.kind {
        Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => {
            let (key, entry) = map_entry(&field.kind, expect_bytes(value)?, depth)?;
            match object.get_mut(field.json) {
                Some(Value::Object(map)) => {
                    map.insert(key, entry);
                }
                _ => {
                    object.insert(
                        field.json.to_string(),
                        Value::Object(Map::from_iter([(key, entry)])),
                    );
                }
            }
        }
        kind if field.has(REPEATED) => {
            let elements = match (kind, value) {
                (
                    Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double,
                    WireValue::Bytes(packed),
                ) => packed_scalars(kind, packed)?,
                (_, value) => {
                    let index =
                        object.get(field.json).and_then(Value::as_array).map_or(0, Vec::len);
                    let element = element_value(kind, value, depth)
                        .map_err(|failure| failure.within(format!("[{index}]")))?;
                    vec![element]
                }
            };
            match object.get_mut(field.json) {
                Some(Value::Array(array)) => array.extend(elements),
                _ => {
                    object.insert(field.json.to_string(), Value::Array(elements));
                }
            }
        }
        Kind::Message(message) => {
            let bytes = expect_bytes(value)?;
            // A message field seen twice merges, as protobuf and Go's unmarshalling do.
            if let (Shape::Struct(fields), Some(Value::Object(existing))) =
                (&message.shape, object.get_mut(field.json))
            {
                return merge_struct(fields, bytes, existing, depth);
            }
            let value = message_value(message, bytes, depth)?;
            object.insert(field.json.to_string(), value);
        }
        kind => {
            let value = scalar_value(kind, value)?;
            if field.has(OMIT_ZERO) && is_zero(&value) {
                object.remove(field.json);
            } else {
                object.insert(field.json.to_string(), value);
            }
        }
    }
    Ok(())
}

/// Decodes one element of a repeated field.
fn element_value(kind: &Kind, value: WireValue<'_>, depth: usize) -> Result<Value, Failure> {
    match kind {
        Kind::Message(message) => message_value(message, expect_bytes(value)?, depth),
        kind => Ok(scalar_value(kind, value)?),
    }
}

/// Decodes a map entry message: key = 1, value = 2.
fn map_entry(kind: &Kind, bytes: &[u8], depth: usize) -> Result<(String, Value), Failure> {
    let mut key = String::new();
    let mut raw_value = None;
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => key = string_of(value)?,
            2 => raw_value = Some(value),
            _ => {}
        }
    }
    let entry =
        map_value(kind, raw_value, depth).map_err(|failure| failure.within(format!("[{key}]")))?;
    Ok((key, entry))
}

/// Decodes a map entry's value; a missing value is the value type's zero.
fn map_value(kind: &Kind, raw: Option<WireValue<'_>>, depth: usize) -> Result<Value, Failure> {
    match (kind, raw) {
        (Kind::MapMessage(message), raw) => {
            let bytes = raw.map(expect_bytes).transpose()?.unwrap_or_default();
            message_value(message, bytes, depth)
        }
        (Kind::MapBytes, Some(raw)) => Ok(scalar_value(&Kind::Bytes, raw)?),
        (_, Some(raw)) => Ok(scalar_value(&Kind::String, raw)?),
        (_, None) => Ok(Value::String(String::new())),
    }
}

fn packed_scalars(kind: &Kind, packed: &[u8]) -> Result<Vec<Value>, Problem> {
    let mut reader = Reader::new(packed);
    let mut values = Vec::new();
    while !reader.is_empty() {
        let value = match kind {
            Kind::Double => WireValue::Fixed64(reader.fixed64()?),
            _ => WireValue::Varint(reader.varint()?),
        };
        values.push(scalar_value(kind, value)?);
    }
    Ok(values)
}

/// Converts a scalar wire value to JSON as Go would encode the decoded field.
fn scalar_value(kind: &Kind, value: WireValue<'_>) -> Result<Value, Problem> {
    match (kind, value) {
        // Go does not validate UTF-8 when unmarshalling, and its JSON encoder replaces invalid
        // bytes with U+FFFD; a lossy conversion gives the same string.
        (Kind::String, WireValue::Bytes(bytes)) => {
            Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()))
        }
        (Kind::Bytes, WireValue::Bytes(bytes)) => Ok(Value::String(BASE64_STANDARD.encode(bytes))),
        (Kind::Bool, WireValue::Varint(number)) => Ok(Value::Bool(number != 0)),
        // Protobuf int32 is the low 32 bits of the varint; negative values use all 64.
        (Kind::Int32, WireValue::Varint(number)) => Ok(Value::from(number as i32)),
        (Kind::Int64, WireValue::Varint(number)) => Ok(Value::from(number as i64)),
        (Kind::Double, WireValue::Fixed64(bits)) => special::json_number(f64::from_bits(bits)),
        (kind, found) => Err(Problem::WrongWireType {
            expected: expected_wire_type(kind),
            found: found.wire_type(),
        }),
    }
}

fn expected_wire_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::Bool | Kind::Int32 | Kind::Int64 => "varint",
        Kind::Double => "fixed64",
        _ => "length-delimited",
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(string) => string.is_empty(),
        Value::Bool(boolean) => !boolean,
        Value::Number(number) => number.as_f64() == Some(0.0),
        _ => false,
    }
}

pub(crate) fn expect_bytes(value: WireValue<'_>) -> Result<&[u8], Problem> {
    match value {
        WireValue::Bytes(bytes) => Ok(bytes),
        other => {
            Err(Problem::WrongWireType { expected: "length-delimited", found: other.wire_type() })
        }
    }
}

pub(crate) fn string_of(value: WireValue<'_>) -> Result<String, Problem> {
    Ok(String::from_utf8_lossy(expect_bytes(value)?).into_owned())
}

/// `JSONSchemaPropsOrArray`: `jsonSchemas` (2) if any, else `schema` (1), else `null`.
fn schema_or_array(schema: &'static Message, bytes: &[u8], depth: usize) -> Result<Value, Failure> {
    let mut single = Value::Null;
    let mut array = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => single = message_value(schema, expect_bytes(value)?, depth)?,
            2 => array.push(message_value(schema, expect_bytes(value)?, depth)?),
            _ => {}
        }
    }
    Ok(if array.is_empty() { single } else { Value::Array(array) })
}

/// `JSONSchemaPropsOrBool`: `schema` (2) if set, else `allows` (1).
fn schema_or_bool(schema: &'static Message, bytes: &[u8], depth: usize) -> Result<Value, Failure> {
    let mut allows = false;
    let mut single = None;
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match (tag, value) {
            (1, WireValue::Varint(number)) => allows = number != 0,
            (1, other) => {
                let problem =
                    Problem::WrongWireType { expected: "varint", found: other.wire_type() };
                return Err(problem.into());
            }
            (2, value) => single = Some(message_value(schema, expect_bytes(value)?, depth)?),
            _ => {}
        }
    }
    Ok(single.unwrap_or(Value::Bool(allows)))
}

/// `JSONSchemaPropsOrStringArray`: `property` (2) if any, else `schema` (1), else `null`.
fn schema_or_string_array(
    schema: &'static Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, Failure> {
    let mut single = Value::Null;
    let mut strings = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => single = message_value(schema, expect_bytes(value)?, depth)?,
            2 => strings.push(Value::String(string_of(value)?)),
            _ => {}
        }
    }
    Ok(if strings.is_empty() { single } else { Value::Array(strings) })
}
