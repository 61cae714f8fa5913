//! Why an apply failed, with the messages and HTTP answers of the Kubernetes API server.

use std::collections::BTreeMap;

use super::managed::Operation;
use super::path::go_quote;

/// A field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owner's name (`metadata.managedFields[].manager`).
    pub manager: String,
    /// How the owner last wrote the field.
    pub operation: Operation,
    /// The `apiVersion` the owner wrote with; empty for appliers.
    pub api_version: String,
    /// The subresource the owner wrote through; empty for the main resource.
    pub subresource: String,
    /// The field, as Kubernetes prints it: `.spec.replicas`.
    pub field: String,
}

impl Conflict {
    /// Returns the owner as Kubernetes names it: `"kubectl" using apps/v1`.
    pub fn owner(&self) -> String {
        let mut out = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {}", go_quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    /// Returns the `message` of the conflict's `StatusCause` (type `FieldManagerConflict`,
    /// `field` [`Conflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.owner())
    }

    /// Returns the owner's identifier, which orders owners in messages as Kubernetes does.
    fn identifier(&self) -> String {
        super::managed::ManagerKey::new(
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
        .id()
        .to_owned()
    }
}

/// Why an apply failed. Messages match the Kubernetes 1.33 API server's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the apply would change (409).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The `fieldManager` query parameter is missing or malformed (422, reason `Invalid`, kind
    /// `PatchOptions`); each error is one `field: detail` line.
    #[error("PatchOptions.meta.k8s.io \"\" is invalid: {}", aggregate(.0))]
    InvalidFieldManager(Vec<String>),
    /// The applied configuration is not a JSON object (400).
    #[error(
        "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot \
         unmarshal {found} into Go value of type map[string]interface {{}}"
    )]
    NotAnObject { found: &'static str },
    /// The applied configuration names another group, version or kind than the object (400).
    #[error("invalid object type: {group}/{version}, Kind={kind}")]
    InvalidObjectType { group: String, version: String, kind: String },
    /// The applied configuration sets `metadata.managedFields` (400).
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsSet,
    /// The applied configuration renames the object (400).
    #[error("the name of the object ({object}) does not match the name on the URL ({url})")]
    NameMismatch { object: String, url: String },
    /// The applied configuration moves the object to another namespace (400).
    #[error(
        "the namespace of the provided object does not match the namespace sent on the request"
    )]
    NamespaceMismatch,
    /// The applied configuration names a `metadata.uid` while no object exists (409; Kubernetes
    /// prefixes the message with `Operation cannot be fulfilled on <resource> "<name>": `).
    #[error(
        "uid mismatch: the provided object specified uid {uid}, and no existing object was found"
    )]
    UidMismatch { uid: String },
    /// The applied configuration does not fit the schema: an associative list item without key
    /// fields, or two items with the same key (500, as Kubernetes answers).
    #[error("failed to create typed patch object ({object}): {errors}")]
    InvalidConfiguration { object: String, errors: String },
    /// The stored object does not fit the schema (500).
    #[error("failed to create typed live object ({object}): {errors}")]
    InvalidLiveObject { object: String, errors: String },
    /// The stored object's `metadata.managedFields` cannot be read (500).
    #[error("failed to decode managed fields: {0}")]
    InvalidManagedFields(String),
}

/// Joins field errors as Kubernetes' aggregate error does: one alone, several bracketed.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflict.owner(),
            conflict.field
        );
    }
    let mut by_owner: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    for conflict in conflicts {
        let entry =
            by_owner.entry(conflict.identifier()).or_insert_with(|| (conflict.owner(), Vec::new()));
        entry.1.push(&conflict.field);
    }
    let mut lines = Vec::new();
    for (owner, fields) in by_owner.values() {
        lines.push(format!("conflicts with {owner}:"));
        lines.extend(fields.iter().map(|field| format!("- {field}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// The HTTP answer the API gives for an [`ApplyError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApplyErrorStatus {
    /// 400, reason `BadRequest`.
    BadRequest,
    /// 409, reason `Conflict`; conflicts carry one `FieldManagerConflict` cause per field.
    Conflict,
    /// 422, reason `Invalid`.
    Invalid,
    /// 500 with an empty reason (`StatusReasonUnknown`): Kubernetes returns these failures as
    /// plain errors.
    InternalError,
}

impl ApplyErrorStatus {
    /// Returns the HTTP status code.
    pub fn code(self) -> u16 {
        match self {
            ApplyErrorStatus::BadRequest => 400,
            ApplyErrorStatus::Conflict => 409,
            ApplyErrorStatus::Invalid => 422,
            ApplyErrorStatus::InternalError => 500,
        }
    }

    /// Returns the `reason` of the Kubernetes `Status` (empty means `StatusReasonUnknown`).
    pub fn reason(self) -> &'static str {
        match self {
            ApplyErrorStatus::BadRequest => "BadRequest",
            ApplyErrorStatus::Conflict => "Conflict",
            ApplyErrorStatus::Invalid => "Invalid",
            ApplyErrorStatus::InternalError => "",
        }
    }
}

impl ApplyError {
    /// Returns how the API answers this error.
    pub fn status(&self) -> ApplyErrorStatus {
        use ApplyError as E;
        match self {
            E::Conflicts(_) | E::UidMismatch { .. } => ApplyErrorStatus::Conflict,
            E::InvalidFieldManager(_) => ApplyErrorStatus::Invalid,
            E::NotAnObject { .. }
            | E::InvalidObjectType { .. }
            | E::ManagedFieldsSet
            | E::NameMismatch { .. }
            | E::NamespaceMismatch => ApplyErrorStatus::BadRequest,
            E::InvalidConfiguration { .. }
            | E::InvalidLiveObject { .. }
            | E::InvalidManagedFields(_) => ApplyErrorStatus::InternalError,
        }
    }
}
