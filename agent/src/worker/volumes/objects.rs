//! The files a ConfigMap or Secret gives a volume (kubelet's `MakePayload`), shared by
//! `configMap`/`secret` volumes and the sources of `projected` volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Secret};
use k8s_openapi::ByteString;

use super::atomic::{FileProjection, Payload};

/// Which kind of object a volume reads, as kubelet names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ObjectKind {
    ConfigMap,
    Secret,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        })
    }
}

/// Why an object's files could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ObjectError {
    /// A non-optional object is absent (kubelet's object managers word it this way).
    #[error("{kind} {name:?} not found")]
    NotFound { kind: ObjectKind, name: String },
    /// `items` names a key the object lacks and the source is not optional.
    #[error("{}", missing_key(*.kind, .key))]
    MissingKey { kind: ObjectKind, key: String },
}

fn missing_key(kind: ObjectKind, key: &str) -> String {
    match kind {
        ObjectKind::ConfigMap => format!("configmap references non-existent config key: {key}"),
        ObjectKind::Secret => format!("references non-existent secret key: {key}"),
    }
}

/// A ConfigMap's keys and contents (`data`, then `binaryData`).
pub(crate) fn config_map_data(map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, value) in map.data.iter().flatten() {
        files.insert(key.clone(), value.clone().into_bytes());
    }
    for (key, ByteString(value)) in map.binary_data.iter().flatten() {
        files.insert(key.clone(), value.clone());
    }
    files
}

/// A Secret's keys and contents (`stringData` only counts where `data` lacks the key, which
/// an API server that merges them on write never shows).
pub(crate) fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, value) in secret.string_data.iter().flatten() {
        files.insert(key.clone(), value.clone().into_bytes());
    }
    for (key, ByteString(value)) in secret.data.iter().flatten() {
        files.insert(key.clone(), value.clone());
    }
    files
}

/// Kubelet's `MakePayload`: without `items`, one file per key with `default_mode`; with
/// `items`, only those keys at their paths and modes. A key the object lacks is skipped when
/// the source is optional and an error otherwise. `data` is `None` for an absent object,
/// which is an error unless the source is optional.
pub(crate) fn payload(
    kind: ObjectKind,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, ObjectError> {
    let data = match data {
        Some(data) => data,
        None if optional => BTreeMap::new(),
        None => return Err(ObjectError::NotFound { kind, name: name.to_owned() }),
    };
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return Ok(data
            .into_iter()
            .map(|(key, bytes)| (key, FileProjection::new(bytes, default_mode)))
            .collect());
    };
    let mut out = Payload::new();
    for item in items {
        let Some(bytes) = data.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(ObjectError::MissingKey { kind, key: item.key.clone() });
        };
        let mode = item.mode.unwrap_or(default_mode);
        out.insert(item.path.clone(), FileProjection::new(bytes.clone(), mode));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())])
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath { key: key.into(), path: path.into(), mode }
    }

    #[test]
    fn payloads_follow_items_modes_and_optionality() {
        use ObjectKind::{ConfigMap, Secret};
        type Case<'a> = (
            &'a str,
            ObjectKind,
            Option<BTreeMap<String, Vec<u8>>>,
            Vec<KeyToPath>,
            bool,
            Result<Vec<(&'a str, &'a str, u32)>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "every key",
                ConfigMap,
                Some(data()),
                vec![],
                false,
                Ok(vec![("a", "1", 0o640), ("b", "2", 0o640)]),
            ),
            (
                "items with paths and modes",
                Secret,
                Some(data()),
                vec![item("b", "sub/b.txt", Some(0o600))],
                false,
                Ok(vec![("sub/b.txt", "2", 0o600)]),
            ),
            (
                "missing key",
                ConfigMap,
                Some(data()),
                vec![item("z", "z", None)],
                false,
                Err("configmap references non-existent config key: z"),
            ),
            (
                "missing secret key",
                Secret,
                Some(data()),
                vec![item("z", "z", None)],
                false,
                Err("references non-existent secret key: z"),
            ),
            (
                "missing key of an optional source",
                ConfigMap,
                Some(data()),
                vec![item("z", "z", None), item("a", "a", None)],
                true,
                Ok(vec![("a", "1", 0o640)]),
            ),
            ("absent object", Secret, None, vec![], false, Err("secret \"obj\" not found")),
            ("absent optional object", ConfigMap, None, vec![], true, Ok(vec![])),
        ];
        for (name, kind, data, items, optional, expected) in cases {
            let got = payload(kind, "obj", data, Some(&items), 0o640, optional);
            match expected {
                Ok(files) => {
                    let files: Payload = files
                        .into_iter()
                        .map(|(p, d, m)| (p.to_owned(), FileProjection::new(d, m as i32)))
                        .collect();
                    assert_eq!(got.unwrap(), files, "{name}");
                }
                Err(message) => assert_eq!(got.unwrap_err().to_string(), message, "{name}"),
            }
        }
    }
}
