//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the
//! JSON the API would have received as `application/json`.
//!
//! kubectl sends some bodies only as protobuf (`create deployment|configmap|secret|namespace|job`,
//! `auth can-i`), and client-go tools may send any built-in type that way. A body is the magic
//! `k8s\0` followed by a `runtime.Unknown` envelope: `typeMeta` (apiVersion, kind), `raw` (the
//! object's message), `contentEncoding` and `contentType`. The object is decoded with the schema
//! generated from the Kubernetes v1.33 types (`schema/generated.rs`).
//!
//! The JSON is what the API server's Go code would produce by decoding the body into its struct
//! and encoding that with `encoding/json`: JSON field names (`podIP`), Go pointer fields kept
//! even when zero (`replicas: 0`), Go value fields with `omitempty` dropped when zero, special
//! types (times, quantities, int-or-strings, embedded JSON) rendered as their `MarshalJSON`
//! does, and unknown field numbers skipped. Decoding is pure and never panics on bad input.

mod decoder;
mod error;
mod schema;
mod special;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use error::{Problem, ProtobufError};

use schema::Shape;
use wire::Reader;

/// The content type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Decodes a protobuf request body into the object's JSON, `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_nested(body, 0)
}

/// Returns whether bodies of this (apiVersion, kind) can be decoded.
#[cfg(test)]
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema::message_for(api_version, kind).is_some()
}

/// Decodes a body found `depth` messages deep (a protobuf object inside a `RawExtension`).
fn decode_nested(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let payload = body.strip_prefix(MAGIC).ok_or(ProtobufError::MissingPrefix)?;
    let envelope = Envelope::parse(payload).map_err(ProtobufError::MalformedEnvelope)?;
    let content_type_ok = envelope.content_type.is_empty() || envelope.content_type == CONTENT_TYPE;
    if !envelope.content_encoding.is_empty() || !content_type_ok {
        return Err(ProtobufError::UnsupportedContent {
            content_encoding: envelope.content_encoding,
            content_type: envelope.content_type,
        });
    }
    if envelope.api_version.is_empty() || envelope.kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    let unknown_type = || ProtobufError::UnknownType {
        api_version: envelope.api_version.clone(),
        kind: envelope.kind.clone(),
    };
    let message =
        schema::message_for(&envelope.api_version, &envelope.kind).ok_or_else(unknown_type)?;
    // Every top-level type is a struct; the generator registers no other shape.
    let Shape::Struct(fields) = &message.shape else {
        return Err(unknown_type());
    };
    let mut object = Map::new();
    decoder::merge_struct(fields, envelope.raw, &mut object, depth)
        .map_err(|failure| failure.into_error(&envelope.kind))?;
    object.insert("apiVersion".to_string(), Value::String(envelope.api_version));
    object.insert("kind".to_string(), Value::String(envelope.kind));
    Ok(Value::Object(object))
}

/// The `runtime.Unknown` envelope around every protobuf object.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    /// Parses `typeMeta` = 1 (apiVersion = 1, kind = 2), `raw` = 2, `contentEncoding` = 3 and
    /// `contentType` = 4.
    fn parse(payload: &'a [u8]) -> Result<Self, Problem> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut reader = Reader::new(payload);
        while let Some((tag, value)) = reader.next_field()? {
            match tag {
                1 => {
                    let mut type_meta = Reader::new(decoder::expect_bytes(value)?);
                    while let Some((tag, value)) = type_meta.next_field()? {
                        match tag {
                            1 => envelope.api_version = decoder::string_of(value)?,
                            2 => envelope.kind = decoder::string_of(value)?,
                            _ => {}
                        }
                    }
                }
                2 => envelope.raw = decoder::expect_bytes(value)?,
                3 => envelope.content_encoding = decoder::string_of(value)?,
                4 => envelope.content_type = decoder::string_of(value)?,
                _ => {}
            }
        }
        Ok(envelope)
    }
}
