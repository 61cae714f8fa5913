//! Tests of the protobuf decoder: real kubectl bodies, objects encoded with k8s-pb (prost),
//! Go's JSON rules, the schema tables, and malformed input.

mod go_rules;
mod kubectl;
mod malformed;
mod objects;
mod schema_tables;

use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message as _;
use serde_json::Value;

use super::{decode, ProtobufError};

/// Wraps an encoded object in the `k8s\0` + `runtime.Unknown` envelope kubectl sends.
pub(super) fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// Encodes `object` as a body of (apiVersion, kind) and decodes it.
pub(super) fn roundtrip(
    api_version: &str,
    kind: &str,
    object: &impl prost::Message,
) -> Result<Value, ProtobufError> {
    decode(&envelope(api_version, kind, object.encode_to_vec()))
}

/// A small deterministic generator for fuzz-style tests (xorshift64*).
pub(super) struct Rng(u64);

impl Rng {
    /// Seeds from `SEED` if set, else from the clock; prints the seed so a failure replays.
    pub(super) fn from_env(test: &str) -> Rng {
        let seed =
            std::env::var("SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        println!("{test}: SEED={seed}");
        Rng(seed.max(1))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}
