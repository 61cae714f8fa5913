//! Bodies captured from kubectl 1.32 against a recording server (see
//! `api-protobuf-gen/capture/`). Each `create` body decodes to exactly what
//! `kubectl create … --dry-run=client -o json` prints for the same command: the JSON body kubectl
//! would have sent. The `auth can-i` and `create token` JSON were written from the Go types.

use serde_json::Value;

use super::Rng;
use crate::protobuf::decode;

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        [$((
            $name,
            include_bytes!(concat!("kubectl/", $name, ".pb")).as_slice(),
            include_str!(concat!("kubectl/", $name, ".json")),
        )),*]
    };
}

const FIXTURES: [(&str, &[u8], &str); 24] = fixtures![
    "can-i-create-pods",
    "can-i-get-healthz",
    "can-i-get-pod-named-log",
    "can-i-get-pods-subresource-log",
    "can-i-list-deployments-all-namespaces",
    "create-clusterrole",
    "create-configmap",
    "create-cronjob",
    "create-deployment",
    "create-ingress",
    "create-job",
    "create-namespace",
    "create-pdb-max-unavailable",
    "create-pdb-min-available",
    "create-priorityclass",
    "create-quota",
    "create-role",
    "create-rolebinding",
    "create-secret-docker-registry",
    "create-secret-generic",
    "create-service-clusterip",
    "create-service-nodeport",
    "create-serviceaccount",
    "create-token",
];

#[test]
fn kubectl_bodies_decode_to_the_json_kubectl_would_send() {
    for (name, body, json) in FIXTURES {
        let expected: Value = serde_json::from_str(json).unwrap();
        let decoded = decode(body).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(decoded, expected, "{name}");
    }
}

#[test]
fn kubectl_deployment_keeps_pointers_and_drops_go_zero_values() {
    // kubectl writes every Go value field: `generateName: ""`, `status.replicas: 0`, ….
    let (_, body, _) = FIXTURES[8];
    let deployment = decode(body).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["metadata"]["creationTimestamp"], Value::Null);
    assert_eq!(deployment["metadata"].get("generateName"), None);
    assert_eq!(deployment["status"], serde_json::json!({}));
}

#[test]
fn every_truncation_of_a_kubectl_body_fails_cleanly() {
    for (name, body, _) in FIXTURES {
        for length in 0..body.len() {
            // Truncated bodies either fail or, when the cut falls between fields, decode.
            let _ = decode(&body[..length]);
        }
        assert!(decode(&body[..body.len() - 1]).is_err(), "{name} without its last byte");
    }
}

#[test]
fn corrupted_kubectl_bodies_never_panic() {
    let mut rng = Rng::from_env("corrupted_kubectl_bodies_never_panic");
    for _ in 0..20_000 {
        let (_, body, _) = FIXTURES[rng.below(FIXTURES.len())];
        let mut body = body.to_vec();
        for _ in 0..=rng.below(4) {
            let index = 4 + rng.below(body.len() - 4);
            match rng.below(3) {
                0 => body[index] ^= 1 << rng.below(8),
                1 => body[index] = rng.next() as u8,
                _ => {
                    body.remove(index);
                }
            }
        }
        let _ = decode(&body);
    }
}
