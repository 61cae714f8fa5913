//! Wire-level rules, checked with hand-built bytes: unknown fields, repeated occurrences,
//! packed and unpacked repeated scalars, map entries, inline structs and Go's zero values.

use serde_json::{json, Value};

use super::envelope;
use crate::protobuf::decode;

/// Builds protobuf bytes field by field.
#[derive(Default, Clone)]
pub(super) struct Wire(pub(super) Vec<u8>);

impl Wire {
    pub(super) fn new() -> Wire {
        Wire::default()
    }

    fn key(mut self, tag: u32, wire_type: u8) -> Wire {
        self.0.extend(varint(u64::from(tag) << 3 | u64::from(wire_type)));
        self
    }

    pub(super) fn varint(self, tag: u32, value: u64) -> Wire {
        let mut wire = self.key(tag, 0);
        wire.0.extend(varint(value));
        wire
    }

    pub(super) fn fixed64(self, tag: u32, value: u64) -> Wire {
        let mut wire = self.key(tag, 1);
        wire.0.extend(value.to_le_bytes());
        wire
    }

    pub(super) fn fixed32(self, tag: u32, value: u32) -> Wire {
        let mut wire = self.key(tag, 5);
        wire.0.extend(value.to_le_bytes());
        wire
    }

    pub(super) fn bytes(self, tag: u32, bytes: &[u8]) -> Wire {
        let mut wire = self.key(tag, 2);
        wire.0.extend(varint(bytes.len() as u64));
        wire.0.extend(bytes);
        wire
    }

    pub(super) fn string(self, tag: u32, text: &str) -> Wire {
        self.bytes(tag, text.as_bytes())
    }

    pub(super) fn message(self, tag: u32, message: Wire) -> Wire {
        self.bytes(tag, &message.0)
    }

    pub(super) fn group(self, tag: u32, inner: Wire) -> Wire {
        let mut wire = self.key(tag, 3);
        wire.0.extend(inner.0);
        wire.key(tag, 4)
    }

    /// Wraps the bytes as the body of an object of (apiVersion, kind).
    pub(super) fn body(self, api_version: &str, kind: &str) -> Vec<u8> {
        envelope(api_version, kind, self.0)
    }
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
    bytes
}

fn metadata_named(name: &str) -> Wire {
    Wire::new().string(1, name)
}

fn decode_ok(body: &[u8]) -> Value {
    decode(body).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    // ConfigMap: metadata = 1, data = 2; the rest are numbers no ConfigMap uses.
    let body = Wire::new()
        .varint(90, 7)
        .message(1, metadata_named("a").fixed32(99, 1).string(98, "future"))
        .fixed64(91, 1)
        .fixed32(92, 1)
        .string(93, "future")
        .group(94, Wire::new().varint(1, 1).group(2, Wire::new()))
        .body("v1", "ConfigMap");
    assert_eq!(
        decode_ok(&body),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    );
}

#[test]
fn a_message_field_seen_twice_merges_and_scalars_take_the_last_value() {
    let first = Wire::new().string(1, "first").message(11, map_entry("a", "1"));
    let second = Wire::new().string(1, "second").message(11, map_entry("b", "2"));
    let body = Wire::new().message(1, first).message(1, second).body("v1", "ConfigMap");
    let decoded = decode_ok(&body);
    assert_eq!(decoded["metadata"], json!({"name": "second", "labels": {"a": "1", "b": "2"}}));
}

fn map_entry(key: &str, value: &str) -> Wire {
    Wire::new().string(1, key).string(2, value)
}

#[test]
fn map_entries_repeat_keys_and_tolerate_missing_parts() {
    let body = Wire::new()
        .message(2, map_entry("k", "old"))
        .message(2, map_entry("k", "new"))
        .message(2, Wire::new().string(2, "no key"))
        .message(2, Wire::new().string(1, "no value"))
        .message(2, Wire::new().string(2, "value first").string(1, "late"))
        .body("v1", "ConfigMap");
    let expected = json!({"k": "new", "": "no key", "no value": "", "late": "value first"});
    assert_eq!(decode_ok(&body)["data"], expected);
}

#[test]
fn repeated_scalars_decode_packed_and_unpacked() {
    // PodSecurityContext.supplementalGroups = 4 (int64), PodSpec.securityContext = 14.
    let mut packed = Vec::new();
    for group in [1_u64, 300, u64::MAX] {
        packed.extend(varint(group));
    }
    let context = Wire::new().varint(4, 5).bytes(4, &packed).varint(4, 6);
    let body = Wire::new().message(2, Wire::new().message(14, context)).body("v1", "Pod");
    let groups = &decode_ok(&body)["spec"]["securityContext"]["supplementalGroups"];
    assert_eq!(groups, &json!([5, 1, 300, -1, 6]));
}

#[test]
fn negative_and_oversized_integers_follow_protobuf() {
    // DeploymentSpec.replicas = 1 (int32) as a 10-byte negative; minReadySeconds = 5 with
    // bits above 32 that int32 truncates away.
    let spec = Wire::new().varint(1, (-3_i64) as u64).varint(5, (1 << 32) | 7);
    let body = Wire::new().message(2, spec).body("apps/v1", "Deployment");
    assert_eq!(decode_ok(&body)["spec"], json!({"replicas": -3, "minReadySeconds": 7}));
}

#[test]
fn go_value_fields_drop_zero_values_even_after_a_non_zero_value() {
    // ObjectMeta.generateName = 2 is a Go string with omitempty.
    let meta = Wire::new().string(2, "web-").string(2, "").string(1, "");
    let body = Wire::new().message(1, meta).body("v1", "ConfigMap");
    // `name` is `json:"name,omitempty"` too.
    assert_eq!(decode_ok(&body)["metadata"], json!({}));
}

#[test]
fn required_go_fields_keep_zero_values() {
    // Container.name (1) is `json:"name"`; ContainerPort.containerPort (3) is `json:"containerPort"`.
    let port = Wire::new().varint(3, 0);
    let container = Wire::new().string(1, "").message(6, port);
    let body = Wire::new().message(2, Wire::new().message(2, container)).body("v1", "Pod");
    assert_eq!(
        decode_ok(&body)["spec"]["containers"],
        json!([{"name": "", "ports": [{"containerPort": 0}]}])
    );
}

#[test]
fn inline_structs_merge_into_their_parent() {
    // Volume: name = 1, VolumeSource (inline) = 2 with hostPath = 1 {path = 1}, emptyDir = 2.
    let source = Wire::new().message(1, Wire::new().string(1, "/data"));
    let more = Wire::new().message(2, Wire::new().string(1, "Memory"));
    let volume = Wire::new().string(1, "data").message(2, source).message(2, more);
    let body = Wire::new().message(2, Wire::new().message(1, volume)).body("v1", "Pod");
    assert_eq!(
        decode_ok(&body)["spec"]["volumes"],
        json!([{"name": "data", "hostPath": {"path": "/data"}, "emptyDir": {"medium": "Memory"}}])
    );
}

#[test]
fn invalid_utf8_becomes_replacement_characters_as_in_go() {
    let body = Wire::new().message(1, Wire::new().bytes(1, b"caf\xe9")).body("v1", "ConfigMap");
    assert_eq!(decode_ok(&body)["metadata"]["name"], "caf\u{fffd}");
}

#[test]
fn special_types_render_like_their_go_marshal_json() {
    // Event: firstTimestamp = 6 (Time), eventTime = 10 (MicroTime); ObjectMeta.creationTimestamp
    // = 8 empty (Go's zero time).
    let time = Wire::new().varint(1, 1_704_164_645).varint(2, 999_999_999);
    let body = Wire::new()
        .message(1, Wire::new().message(8, Wire::new()))
        .message(6, time.clone())
        .message(10, time)
        .body("v1", "Event");
    let decoded = decode_ok(&body);
    assert_eq!(decoded["metadata"]["creationTimestamp"], Value::Null);
    assert_eq!(decoded["firstTimestamp"], "2024-01-02T03:04:05Z");
    assert_eq!(decoded["eventTime"], "2024-01-02T03:04:05.999999Z");

    // ServicePort.targetPort = 4 as IntOrString; with no fields it is Go's zero: int 0.
    let port = |target: Wire| Wire::new().message(4, target);
    let spec = Wire::new()
        .message(1, port(Wire::new()))
        .message(1, port(Wire::new().varint(1, 1).string(3, "web")))
        .message(1, port(Wire::new().varint(1, 0).varint(2, 8080).string(3, "ignored")));
    let body = Wire::new().message(2, spec).body("v1", "Service");
    assert_eq!(
        decode_ok(&body)["spec"]["ports"],
        json!([{"targetPort": 0}, {"targetPort": "web"}, {"targetPort": 8080}])
    );

    // ResourceRequirements.limits = 1 with a Quantity lacking its string: Go's zero, "0".
    let limit = Wire::new().string(1, "cpu").message(2, Wire::new());
    let container = Wire::new().message(8, Wire::new().message(1, limit));
    let body = Wire::new().message(2, Wire::new().message(2, container)).body("v1", "Pod");
    assert_eq!(decode_ok(&body)["spec"]["containers"][0]["resources"]["limits"]["cpu"], "0");
}

#[test]
fn durations_render_as_go_duration_strings() {
    use crate::protobuf::decoder::message_value;
    use crate::protobuf::schema::message_named;

    let duration = message_named("k8s.io.apimachinery.pkg.apis.meta.v1.Duration").unwrap();
    let bytes = Wire::new().varint(1, 90_500_000_000).0;
    assert_eq!(message_value(duration, &bytes, 0).unwrap(), json!("1m30.5s"));
    assert_eq!(message_value(duration, &[], 0).unwrap(), json!("0s"));
}
