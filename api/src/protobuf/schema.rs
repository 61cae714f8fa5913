//! The protobuf schema of the Kubernetes API: for every message, its fields by tag with the JSON
//! name and kind of each, and the (apiVersion, kind) of every top-level type.
//!
//! The tables live in `schema/generated.rs`, produced by `api-protobuf-gen/generate.sh` from
//! k8s-pb (tags and wire types), k8s-openapi (JSON names) and the Go types (pointer, `omitempty`
//! and `inline` fields). Invariants, checked by tests: `KINDS` and `MESSAGES` are sorted, every
//! kind's message is in `MESSAGES`, and each message's fields are sorted by tag.

mod generated;

/// One protobuf message type.
pub(crate) struct Message {
    /// The proto name, e.g. `k8s.io.api.core.v1.Pod`.
    pub(crate) name: &'static str,
    pub(crate) shape: Shape,
}

// Messages refer to each other in cycles (JSONSchemaProps), so Debug shows only the name.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("name", &self.name).finish_non_exhaustive()
    }
}

/// How a message is rendered in JSON.
#[derive(Debug)]
pub(crate) enum Shape {
    /// An object of the message's fields, sorted by tag.
    Struct(&'static [Field]),
    /// `meta.v1.Time` (seconds, nanos): an RFC 3339 string with whole seconds, or `null`.
    Time,
    /// `meta.v1.MicroTime` (seconds, nanos): an RFC 3339 string with 6 fractional digits.
    MicroTime,
    /// `meta.v1.Duration` (int64 nanoseconds): a Go duration string such as `1m30s`.
    Duration,
    /// `api.resource.Quantity` (string): the string.
    Quantity,
    /// `util.intstr.IntOrString` (type, intVal, strVal): a number or a string.
    IntOrString,
    /// `runtime.RawExtension`, `meta.v1.FieldsV1`, `apiextensions.v1.JSON` (raw bytes): the
    /// embedded JSON value.
    RawJson,
    /// A wrapper of `repeated string items = 1` (`ExtraValue`, `Verbs`): a JSON array.
    StringList,
    /// `JSONSchemaPropsOrArray` (schema, jsonSchemas): a schema or an array of schemas.
    SchemaOrArray(&'static Message),
    /// `JSONSchemaPropsOrBool` (allows, schema): a schema or a boolean.
    SchemaOrBool(&'static Message),
    /// `JSONSchemaPropsOrStringArray` (schema, property): a schema or an array of strings.
    SchemaOrStringArray(&'static Message),
}

/// One field of a [`Shape::Struct`] message.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) tag: u32,
    /// The JSON name (`podIP`, `hostIPC`, `$ref`); empty for an inline field.
    pub(crate) json: &'static str,
    pub(crate) kind: Kind,
    pub(crate) flags: u8,
}

/// The value type of a field.
#[derive(Debug)]
pub(crate) enum Kind {
    String,
    Bool,
    Int32,
    Int64,
    Double,
    /// Base64 in JSON.
    Bytes,
    Message(&'static Message),
    /// `map<string, string>`.
    MapString,
    /// `map<string, bytes>`, values in base64.
    MapBytes,
    MapMessage(&'static Message),
}

/// No flags.
pub(crate) const NONE: u8 = 0;
/// A repeated field: a JSON array, omitted when empty.
pub(crate) const REPEATED: u8 = 1;
/// A Go value field with `omitempty`: omitted when zero (`""`, `0`, `false`), as Go's
/// `encoding/json` would. Go pointer fields lack it, so `replicas: 0` stays.
pub(crate) const OMIT_ZERO: u8 = 2;
/// A Go embedded struct with `json:",inline"` (`Volume.VolumeSource`): its fields are merged
/// into the parent object.
pub(crate) const INLINE: u8 = 4;

impl Field {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

const fn field(tag: u32, json: &'static str, kind: Kind, flags: u8) -> Field {
    Field { tag, json, kind, flags }
}

const fn message(name: &'static str, shape: Shape) -> Message {
    Message { name, shape }
}

/// Returns the message of a top-level (apiVersion, kind).
///
/// `DeleteOptions` is accepted with any apiVersion: like the other option kinds it is
/// registered in every group version.
pub(crate) fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    if kind == "DeleteOptions" {
        return message_named("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions");
    }
    let kinds = generated::KINDS;
    let index = kinds
        .binary_search_by(|(candidate_version, candidate_kind, _)| {
            (*candidate_version, *candidate_kind).cmp(&(api_version, kind))
        })
        .ok()?;
    Some(kinds[index].2)
}

/// Returns the message with a proto name.
pub(crate) fn message_named(name: &str) -> Option<&'static Message> {
    let messages = generated::MESSAGES;
    messages.binary_search_by(|message| message.name.cmp(name)).ok().map(|index| messages[index])
}

/// Returns the field with a tag; fields are sorted by tag.
pub(crate) fn field_by_tag(fields: &'static [Field], tag: u32) -> Option<&'static Field> {
    fields.binary_search_by_key(&tag, |field| field.tag).ok().map(|index| &fields[index])
}

#[cfg(test)]
pub(crate) fn all_kinds() -> &'static [(&'static str, &'static str, &'static Message)] {
    generated::KINDS
}

#[cfg(test)]
pub(crate) fn all_messages() -> &'static [&'static Message] {
    generated::MESSAGES
}
