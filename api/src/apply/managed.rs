//! `metadata.managedFields`: decoding the entries into per-manager field sets and back, as the
//! API server's fieldmanager does.
//!
//! A manager is identified by its name, operation and subresource, and for updates also by the
//! `apiVersion` it wrote with (Kubernetes' `BuildManagerIdentifier`); the identifier's JSON form
//! orders managers wherever Kubernetes sorts them. Entries come out sorted by operation
//! (`Apply` first), time, manager, `apiVersion` and subresource.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Map, Value};

use super::fieldset::FieldSet;
use super::path::{go_json, go_quote, Path};
use super::updater::{ManagedSets, VersionedSet};

/// The operation a managed fields entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// A server-side apply.
    Apply,
    /// A create, update or non-apply patch.
    Update,
}

impl Operation {
    /// Returns the spelling of `metadata.managedFields[].operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who owns a set of fields. Ordered by Kubernetes' identifier string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ManagerKey {
    /// The identifier: the entry's JSON without fields, time and (for appliers) `apiVersion`.
    id: String,
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers, whose identity does not depend on the version they apply with.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerKey {
    /// Returns the key of a manager; an empty `manager` is `unknown`, as Kubernetes names it.
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        let manager = if manager.is_empty() { "unknown" } else { manager };
        let api_version = if operation == Operation::Apply { "" } else { api_version };
        let mut id = format!(r#"{{"manager":{}"#, go_json(&json!(manager)));
        id.push_str(&format!(r#","operation":"{operation}""#));
        if !api_version.is_empty() {
            id.push_str(&format!(r#","apiVersion":{}"#, go_json(&json!(api_version))));
        }
        if !subresource.is_empty() {
            id.push_str(&format!(r#","subresource":{}"#, go_json(&json!(subresource))));
        }
        id.push('}');
        ManagerKey {
            id,
            manager: manager.to_owned(),
            operation,
            api_version: api_version.to_owned(),
            subresource: subresource.to_owned(),
        }
    }

    /// Returns the key of a transient owner that never reaches `managedFields`.
    pub fn internal(name: &str) -> Self {
        ManagerKey {
            id: name.to_owned(),
            manager: name.to_owned(),
            operation: Operation::Update,
            api_version: String::new(),
            subresource: String::new(),
        }
    }

    /// Returns the identifier string.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Every manager's fields and the time of its last change.
#[derive(Clone, Debug, Default)]
pub(crate) struct Managed {
    pub sets: ManagedSets,
    pub times: BTreeMap<ManagerKey, String>,
}

/// The paths Kubernetes never records as owned (its `stripMetaManager`).
fn stripped_fields() -> FieldSet {
    let field = |name: &str| super::path::PathElement::Field(name.to_owned());
    let paths: Vec<Path> = [
        vec![field("apiVersion")],
        vec![field("kind")],
        vec![field("metadata")],
        vec![field("metadata"), field("name")],
        vec![field("metadata"), field("namespace")],
        vec![field("metadata"), field("creationTimestamp")],
        vec![field("metadata"), field("selfLink")],
        vec![field("metadata"), field("uid")],
        vec![field("metadata"), field("clusterName")],
        vec![field("metadata"), field("generation")],
        vec![field("metadata"), field("managedFields")],
        vec![field("metadata"), field("resourceVersion")],
    ]
    .into();
    FieldSet::from_paths(paths.iter().map(Vec::as_slice))
}

impl Managed {
    /// Removes the metadata Kubernetes never tracks from `manager`'s set, dropping the set if
    /// nothing is left.
    pub fn strip_meta(&mut self, manager: &ManagerKey) {
        if let Some(owned) = self.sets.get_mut(manager) {
            owned.set = owned.set.difference(&stripped_fields());
            if owned.set.is_empty() {
                self.sets.remove(manager);
            }
        }
    }

    /// Decodes `metadata.managedFields` (absent or `null` is no entries).
    pub fn decode(entries: Option<&Value>) -> Result<Managed, String> {
        let mut managed = Managed::default();
        let entries = match entries {
            None | Some(Value::Null) => return Ok(managed),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err("managedFields must be a list".to_owned()),
        };
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(entry) = entry else {
                return Err(format!("managed fields entry {index} is not an object"));
            };
            let text = |name: &str| -> Result<&str, String> {
                match entry.get(name) {
                    None | Some(Value::Null) => Ok(""),
                    Some(Value::String(text)) => Ok(text),
                    Some(_) => {
                        Err(format!("{name} of managed fields entry {index} is not a string"))
                    }
                }
            };
            let operation = match text("operation")? {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".to_owned()),
            };
            let api_version = text("apiVersion")?;
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".to_owned());
            }
            match text("fieldsType")? {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {index}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {} in managed fields entry {index}",
                        go_quote(other)
                    ))
                }
            }
            let set = match entry.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(fields) => FieldSet::from_fields_v1(fields)
                    .map_err(|error| format!("error decoding set: {error}"))?,
            };
            let key =
                ManagerKey::new(text("manager")?, operation, api_version, text("subresource")?);
            let applied = operation == Operation::Apply;
            let owned = VersionedSet { set, api_version: api_version.to_owned(), applied };
            managed.sets.insert(key.clone(), owned);
            match text("time")? {
                "" => managed.times.remove(&key),
                time => managed.times.insert(key, normalize_time(time)?),
            };
        }
        Ok(managed)
    }

    /// Encodes the sets as `metadata.managedFields` entries, or `None` when there are none.
    pub fn encode(&self) -> Option<Value> {
        if self.sets.is_empty() {
            return None;
        }
        let mut entries: Vec<(Map<String, Value>, i64)> = Vec::new();
        for (key, owned) in &self.sets {
            let mut entry = Map::new();
            entry.insert("manager".into(), json!(key.manager));
            let operation = if owned.applied { Operation::Apply } else { key.operation };
            entry.insert("operation".into(), json!(operation.as_str()));
            entry.insert("apiVersion".into(), json!(owned.api_version));
            let time = self.times.get(key);
            if let Some(time) = time {
                entry.insert("time".into(), json!(time));
            }
            entry.insert("fieldsType".into(), json!("FieldsV1"));
            entry.insert("fieldsV1".into(), owned.set.to_fields_v1());
            if !key.subresource.is_empty() {
                entry.insert("subresource".into(), json!(key.subresource));
            }
            entries.push((entry, time.map_or(0, |time| unix_seconds(time))));
        }
        let field = |entry: &Map<String, Value>, name: &str| {
            entry.get(name).and_then(Value::as_str).unwrap_or_default().to_owned()
        };
        entries.sort_by(|(a, a_seconds), (b, b_seconds)| {
            field(a, "operation")
                .cmp(&field(b, "operation"))
                .then(a_seconds.cmp(b_seconds))
                .then_with(|| field(a, "manager").cmp(&field(b, "manager")))
                .then_with(|| field(a, "apiVersion").cmp(&field(b, "apiVersion")))
                .then_with(|| field(a, "subresource").cmp(&field(b, "subresource")))
        });
        Some(Value::Array(entries.into_iter().map(|(entry, _)| Value::Object(entry)).collect()))
    }

    /// Caps the update managers at `max`, folding the oldest of each `apiVersion` into one
    /// `ancient-changes` entry (Kubernetes' `capManagersManager`).
    pub fn cap_update_managers(&mut self, max: usize) {
        let mut updaters: Vec<ManagerKey> =
            self.sets.iter().filter(|(_, owned)| !owned.applied).map(|(k, _)| k.clone()).collect();
        if updaters.len() <= max {
            return;
        }
        let seconds = |key: &ManagerKey| self.times.get(key).map_or(0, |time| unix_seconds(time));
        updaters.sort_by(|a, b| seconds(a).cmp(&seconds(b)).then_with(|| a.cmp(b)));
        let mut first_of_version: BTreeMap<String, ManagerKey> = BTreeMap::new();
        let mut length = updaters.len();
        for manager in updaters {
            if length <= max {
                break;
            }
            let Some(owned) = self.sets.get(&manager).cloned() else {
                continue;
            };
            let version = owned.api_version.clone();
            let Some(first) = first_of_version.get(&version).cloned() else {
                first_of_version.insert(version, manager);
                continue;
            };
            let bucket = ManagerKey::new("ancient-changes", Operation::Update, &version, "");
            if !self.sets.contains_key(&bucket) {
                if let Some(first_set) = self.sets.remove(&first) {
                    self.sets.insert(bucket.clone(), first_set);
                }
            }
            let bucket_set = self.sets.get(&bucket).map(|b| b.set.clone()).unwrap_or_default();
            let merged = VersionedSet {
                set: owned.set.union(&bucket_set),
                api_version: owned.api_version.clone(),
                applied: owned.applied,
            };
            self.sets.insert(bucket.clone(), merged);
            self.sets.remove(&manager);
            length -= 1;
            match self.times.get(&manager).cloned() {
                Some(time) => self.times.insert(bucket, time),
                None => self.times.remove(&bucket),
            };
        }
    }
}

/// Returns the Unix seconds of an RFC 3339 time, 0 if it does not parse (Kubernetes sorts
/// entries without time first).
fn unix_seconds(time: &str) -> i64 {
    time.parse::<jiff::Timestamp>().map_or(0, |timestamp| timestamp.as_second())
}

/// Returns an RFC 3339 time as Kubernetes writes it back: UTC, whole seconds.
fn normalize_time(time: &str) -> Result<String, String> {
    let timestamp: jiff::Timestamp =
        time.parse().map_err(|error| format!("invalid time {}: {error}", go_quote(time)))?;
    Ok(timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Returns whether `entries` asks to reset managed fields: an empty list, or a list of one
/// empty entry.
pub(crate) fn is_reset(entries: Option<&Value>) -> bool {
    match entries {
        Some(Value::Array(entries)) => match entries.as_slice() {
            [] => true,
            [Value::Object(entry)] => entry.values().all(|value| match value {
                Value::Null => true,
                Value::String(text) => text.is_empty(),
                _ => false,
            }),
            _ => false,
        },
        _ => false,
    }
}
