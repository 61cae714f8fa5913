//! Malformed, truncated and random bodies: each is an error with a useful message, never a
//! panic.

use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message as _;

use super::go_rules::Wire;
use super::{envelope, Rng};
use crate::protobuf::schema::all_kinds;
use crate::protobuf::{decode, Problem, ProtobufError};

fn malformed(body: &[u8]) -> (String, Problem) {
    match decode(body) {
        Err(ProtobufError::Malformed { path, problem, .. }) => (path, problem),
        other => panic!("expected a malformed-object error, got {other:?}"),
    }
}

#[test]
fn bodies_without_the_magic_prefix_are_rejected() {
    for body in [&b""[..], b"k8s", b"{\"kind\":\"Pod\"}", b"K8S\0\x0a\x00"] {
        assert_eq!(decode(body), Err(ProtobufError::MissingPrefix), "{body:?}");
    }
}

#[test]
fn envelope_problems_are_reported() {
    assert_eq!(decode(b"k8s\0"), Err(ProtobufError::MissingTypeMeta));
    assert_eq!(
        decode(b"k8s\0\x0a\x05\x0a\x02v1"),
        Err(ProtobufError::MalformedEnvelope(Problem::Truncated))
    );
    assert_eq!(
        decode(b"k8s\0\x0a\x00\x10\x01"),
        Err(ProtobufError::MalformedEnvelope(Problem::WrongWireType {
            expected: "length-delimited",
            found: "varint"
        }))
    );
    let kind_only = Unknown {
        type_meta: Some(TypeMeta { api_version: None, kind: Some("Pod".to_string()) }),
        ..Default::default()
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(kind_only.encode_to_vec());
    assert_eq!(decode(&body), Err(ProtobufError::MissingTypeMeta));

    let gzipped = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
        }),
        raw: Some(vec![0x1f, 0x8b]),
        content_encoding: Some("gzip".to_string()),
        content_type: None,
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(gzipped.encode_to_vec());
    let error = decode(&body).unwrap_err();
    assert_eq!(
        error,
        ProtobufError::UnsupportedContent {
            content_encoding: "gzip".to_string(),
            content_type: String::new()
        }
    );
}

#[test]
fn unknown_types_are_their_own_error() {
    for (api_version, kind) in
        [("example.com/v1", "Widget"), ("v1", "Widget"), ("apps/v2", "Deployment")]
    {
        let error = decode(&envelope(api_version, kind, Vec::new())).unwrap_err();
        let expected = ProtobufError::UnknownType {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        };
        assert_eq!(error, expected);
        assert!(error.to_string().contains("application/json"), "{error}");
    }
}

#[test]
fn errors_name_the_json_path_of_the_bad_field() {
    // Deployment.spec(2).template(3).spec(2).containers(2)[1].image(2) sent as a varint.
    let containers = Wire::new()
        .message(2, Wire::new().string(1, "ok"))
        .message(2, Wire::new().string(1, "bad").varint(2, 5));
    let template = Wire::new().message(2, containers);
    let body =
        Wire::new().message(2, Wire::new().message(3, template)).body("apps/v1", "Deployment");
    let (path, problem) = malformed(&body);
    assert_eq!(path, "spec.template.spec.containers[1].image");
    assert_eq!(problem, Problem::WrongWireType { expected: "length-delimited", found: "varint" });
    assert_eq!(
        decode(&body).unwrap_err().to_string(),
        "malformed protobuf Deployment at spec.template.spec.containers[1].image: \
         a length-delimited value was expected, found a varint value"
    );

    // ConfigMap.data(2) entry "k" with a varint value.
    let body =
        Wire::new().message(2, Wire::new().string(1, "k").varint(2, 1)).body("v1", "ConfigMap");
    assert_eq!(malformed(&body).0, "data[k]");

    // A truncated nested message: ConfigMap.metadata(1) claims 10 bytes and has 2.
    let mut raw = Wire::new().0;
    raw.extend([0x0a, 10, 0x0a, 0x00]);
    let (path, problem) = malformed(&envelope("v1", "ConfigMap", raw));
    assert_eq!((path.as_str(), problem), ("", Problem::Truncated));
}

#[test]
fn invalid_special_values_are_errors() {
    // ControllerRevision.data(2) with invalid JSON.
    let body = Wire::new()
        .message(2, Wire::new().bytes(1, b"{not json"))
        .body("apps/v1", "ControllerRevision");
    let (path, problem) = malformed(&body);
    assert_eq!(path, "data");
    assert!(matches!(problem, Problem::InvalidJson(_)), "{problem:?}");

    // A RawExtension holding a protobuf object of an unknown kind.
    let nested = envelope("example.com/v1", "Widget", Vec::new());
    let body =
        Wire::new().message(2, Wire::new().bytes(1, &nested)).body("apps/v1", "ControllerRevision");
    assert!(matches!(malformed(&body).1, Problem::InvalidEmbeddedObject(_)));

    // ServicePort.targetPort with IntOrString type 7.
    let port = Wire::new().message(4, Wire::new().varint(1, 7));
    let body = Wire::new().message(2, Wire::new().message(1, port)).body("v1", "Service");
    assert_eq!(
        malformed(&body),
        ("spec.ports[0].targetPort".to_string(), Problem::InvalidIntOrStringType(7))
    );

    // ObjectMeta.creationTimestamp(8) in the year 10000.
    let time = Wire::new().varint(1, 253_402_300_800);
    let body = Wire::new().message(1, Wire::new().message(8, time)).body("v1", "ConfigMap");
    assert_eq!(
        malformed(&body),
        (
            "metadata.creationTimestamp".to_string(),
            Problem::TimeOutOfRange { seconds: 253_402_300_800 }
        )
    );

    // A CRD schema minimum(11) that is NaN: spec(2).versions(7)[0].schema(4).openAPIV3Schema(1).
    let schema = Wire::new().fixed64(11, f64::NAN.to_bits());
    let version = Wire::new().message(4, Wire::new().message(1, schema));
    let body = Wire::new()
        .message(2, Wire::new().message(7, version))
        .body("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    let (path, problem) = malformed(&body);
    assert_eq!(path, "spec.versions[0].schema.openAPIV3Schema.minimum");
    assert!(matches!(problem, Problem::NonFiniteNumber(_)));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // JSONSchemaProps.not(28) nested 10,000 deep inside a CRD.
    let mut schema = Wire::new();
    for _ in 0..10_000 {
        schema = Wire::new().message(28, schema);
    }
    let version = Wire::new().message(4, Wire::new().message(1, schema));
    let body = Wire::new()
        .message(2, Wire::new().message(7, version))
        .body("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    assert_eq!(malformed(&body).1, Problem::TooDeep);

    // RawExtensions nesting protobuf objects inside each other.
    let mut body = envelope("v1", "ConfigMap", Vec::new());
    for _ in 0..200 {
        body = Wire::new()
            .message(2, Wire::new().bytes(1, &body))
            .body("apps/v1", "ControllerRevision");
    }
    assert!(decode(&body).is_err());
}

#[test]
fn random_bytes_in_every_kind_never_panic() {
    let mut rng = Rng::from_env("random_bytes_in_every_kind_never_panic");
    for &(api_version, kind, _) in all_kinds() {
        for _ in 0..50 {
            let length = rng.below(64);
            let raw: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
            let _ = decode(&envelope(api_version, kind, raw));
        }
    }
}

#[test]
fn random_well_formed_messages_in_every_kind_never_panic() {
    // Random fields with plausible wire types reach deeper than random bytes do.
    let mut rng = Rng::from_env("random_well_formed_messages_in_every_kind_never_panic");
    for &(api_version, kind, _) in all_kinds() {
        for _ in 0..20 {
            let raw = random_message(&mut rng, 0);
            let _ = decode(&envelope(api_version, kind, raw.0));
        }
    }
}

fn random_message(rng: &mut Rng, depth: usize) -> Wire {
    let mut wire = Wire::new();
    for _ in 0..rng.below(6) {
        let tag = 1 + rng.below(20) as u32;
        wire = match rng.below(6) {
            0 | 1 if depth < 6 => wire.message(tag, random_message(rng, depth + 1)),
            2 => wire.varint(tag, rng.next() >> rng.below(64)),
            3 => wire.fixed64(tag, rng.next()),
            4 => wire.string(tag, ["", "a", "{}", "[1]", "k8s\0"][rng.below(5)]),
            _ => wire.fixed32(tag, rng.next() as u32),
        };
    }
    wire
}
