//! ControllerRevision helpers shared by the DaemonSet and StatefulSet controllers, as Kubernetes'
//! `pkg/controller/history` and the two controllers' `getPatch`/`snapshot` use them.
//!
//! A revision stores its pod template as the strategic merge patch
//! `{"spec":{"template":{...template..., "$patch":"replace"}}}`: `kubectl rollout undo` sends
//! that data unchanged as a strategic merge patch to the DaemonSet or StatefulSet, and
//! `kubectl rollout history --revision=N` applies it to a copy of the object to print the
//! template. `kubectl rollout history` lists the revisions matching the parent's selector that the
//! parent controls, by `revision` number, and shows their `kubernetes.io/change-cause` annotation.
//!
//! Invariants:
//! - Data is compared and hashed in a canonical form: object members whose value is `null` are
//!   dropped and keys are sorted, so a revision written by another implementation (Go writes
//!   `"creationTimestamp": null`) still equals the template it was made from, and a hash never
//!   depends on serde_json's map ordering.
//! - Hashes are FNV-1a 32 over that canonical JSON plus the decimal collision count, rendered as
//!   Kubernetes renders them: the decimal digits of the hash mapped onto
//!   [`SAFE_ALPHABET`]. They are stable across runs, builds and machines.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Map, Value};

/// Label carrying a revision's hash, on the revision and on the pods made from it.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Alphabet of Kubernetes' `rand.SafeEncodeString`: no vowels, no confusable characters.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Longest parent name kept in a revision name, so `<parent>-<hash>` stays within 253 bytes.
const MAX_PREFIX: usize = 223;

/// Why a revision's data could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The revision has no `data.spec.template` object.
    #[error("revision {revision} has no spec.template in its data")]
    NoTemplate { revision: String },
    /// `data.spec.template` is not a valid pod template.
    #[error("revision {revision} holds an invalid pod template: {reason}")]
    InvalidTemplate { revision: String, reason: String },
}

/// The data a revision stores for a pod template:
/// `{"spec":{"template":{...template..., "$patch":"replace"}}}`.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    // Serializing a k8s-openapi struct cannot fail: it has string keys and no custom serializers.
    let mut template = match serde_json::to_value(template) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    template.insert("$patch".to_owned(), Value::String("replace".to_owned()));
    let mut spec = Map::new();
    spec.insert("template".to_owned(), Value::Object(template));
    let mut data = Map::new();
    data.insert("spec".to_owned(), Value::Object(spec));
    Value::Object(data)
}

/// Returns the pod template a revision stores (its data without the `$patch` directive), as
/// Kubernetes' `ApplyRevision` recovers it for a StatefulSet's current revision.
pub fn template_of(revision: &ControllerRevision) -> Result<PodTemplateSpec, HistoryError> {
    let name = revision.metadata.name.clone().unwrap_or_default();
    let Some(Value::Object(template)) = revision
        .data
        .as_ref()
        .and_then(|data| data.0.get("spec"))
        .and_then(|spec| spec.get("template"))
    else {
        return Err(HistoryError::NoTemplate { revision: name });
    };
    let mut template = template.clone();
    template.remove("$patch");
    serde_json::from_value(Value::Object(template))
        .map_err(|err| HistoryError::InvalidTemplate { revision: name, reason: err.to_string() })
}

/// Stable short hash of `data` (+ collision count when Some), like Kubernetes'
/// `HashControllerRevision`: FNV-1a 32 over the canonical JSON, then the collision count in
/// decimal, rendered with the "safe" alphabet bcdfghjklmnpqrstvwxz2456789. Deterministic across
/// runs.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = Vec::new();
    write_canonical(data, &mut bytes);
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    safe_encode(&fnv1a_32(&bytes).to_string())
}

/// `<parent>-<hash>`, parent truncated as Kubernetes' ControllerRevisionName does.
pub fn revision_name(parent: &str, hash: &str) -> String {
    let mut end = parent.len().min(MAX_PREFIX);
    // Kubernetes cuts bytes; object names are ASCII, but never split a character regardless.
    while !parent.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &parent[..end])
}

/// A new ControllerRevision owned by `owner` (controller reference), labels copied from `labels`
/// plus `controller-revision-hash: <hash>`, data from revision_data, revision number `number`.
///
/// Kubernetes also copies the parent's annotations onto the revision (`kubectl rollout history`
/// shows its `kubernetes.io/change-cause`); callers set `metadata.annotations` themselves.
pub fn new_revision(
    owner: &OwnerReference,
    namespace: &str,
    parent: &str,
    labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    number: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = revision_data(template);
    let hash = hash(&data, collision_count);
    let mut labels = labels.clone();
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(parent, &hash)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

/// The revision among `revisions` whose data equals `data` (semantic equality), if any.
///
/// Members whose value is `null` are ignored on both sides. When several revisions are equal
/// (a race or a collision left duplicates), the one with the highest revision number wins, then
/// the newest, then the greatest name, as Kubernetes keeps the last of its sorted equal revisions.
pub fn find_equal<'a>(
    revisions: &'a [ControllerRevision],
    data: &Value,
) -> Option<&'a ControllerRevision> {
    let wanted = canonical(data);
    revisions
        .iter()
        .filter(|revision| {
            revision.data.as_ref().is_some_and(|stored| canonical(&stored.0) == wanted)
        })
        .max_by(|a, b| by_revision(a, b))
}

/// Returns whether two revision data values are semantically equal (the test [`find_equal`] uses).
pub fn data_equal(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// max(revision)+1, or 1.
pub fn next_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|revision| revision.revision).max().map_or(1, |max| max.saturating_add(1))
}

/// Returns `revisions` oldest first: by revision number, then creation time, then name
/// (Kubernetes' `SortControllerRevisions`).
pub fn sorted(revisions: &[ControllerRevision]) -> Vec<&ControllerRevision> {
    let mut sorted: Vec<&ControllerRevision> = revisions.iter().collect();
    sorted.sort_by(|a, b| by_revision(a, b));
    sorted
}

/// Names of the oldest revisions to delete so at most `limit` non-live revisions remain; `live`
/// are hashes still in use by pods or the current/update revision and are never deleted
/// (Kubernetes' StatefulSet `truncateHistory`).
///
/// A revision is live when its name or its `controller-revision-hash` label is in `live`: a
/// DaemonSet's pods carry the hash, a StatefulSet's pods carry the revision name.
pub fn to_truncate(
    revisions: &[ControllerRevision],
    live: &BTreeSet<String>,
    limit: usize,
) -> Vec<String> {
    let historic: Vec<&ControllerRevision> =
        sorted(revisions).into_iter().filter(|revision| !is_live(revision, live)).collect();
    let excess = historic.len().saturating_sub(limit);
    historic
        .into_iter()
        .take(excess)
        .filter_map(|revision| revision.metadata.name.clone())
        .collect()
}

fn is_live(revision: &ControllerRevision, live: &BTreeSet<String>) -> bool {
    let name = revision.metadata.name.as_ref();
    let hash = revision
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(CONTROLLER_REVISION_HASH_LABEL));
    name.is_some_and(|name| live.contains(name)) || hash.is_some_and(|hash| live.contains(hash))
}

/// Orders revisions oldest first (Kubernetes' `byRevision`).
fn by_revision(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    let created = |revision: &ControllerRevision| {
        revision.metadata.creation_timestamp.as_ref().map(|time| time.0)
    };
    a.revision
        .cmp(&b.revision)
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Returns `value` without `null` object members, with object keys inserted in sorted order.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> =
                map.iter().filter(|(_, value)| !value.is_null()).map(|(key, _)| key).collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                if let Some(value) = map.get(key) {
                    out.insert(key.clone(), canonical(value));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Writes the canonical form of `value` as compact JSON with sorted keys, whatever order
/// serde_json's maps keep.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> =
                map.iter().filter(|(_, value)| !value.is_null()).collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, value)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// FNV-1a, 32 bits (Go's `fnv.New32a`).
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

/// Kubernetes' `rand.SafeEncodeString`: every byte mapped onto [`SAFE_ALPHABET`].
fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| char::from(SAFE_ALPHABET[usize::from(byte) % SAFE_ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests;
