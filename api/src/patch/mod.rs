//! PATCH bodies as the Kubernetes API server accepts them, applied to JSON documents.
//!
//! The module owns the three patch formats the server evaluates itself: JSON patch (RFC 6902),
//! JSON merge patch (RFC 7386) and strategic merge patch (Kubernetes' schema-aware merge for
//! built-in types). Server-side apply (`application/apply-patch+yaml`) is recognised by
//! [`PatchType`] but evaluated elsewhere.
//!
//! Invariants:
//! - Every function is pure: it takes the stored object and the patch and returns a new object or a
//!   [`PatchError`]; the input is never modified, so a failed patch changes nothing.
//! - Behaviour and error messages follow the Kubernetes 1.33 API server (apimachinery's
//!   `strategicpatch`, `gopkg.in/evanphx/json-patch.v4`); where this module deliberately differs,
//!   the function says so.
//! - [`PatchError::status`] is the one place that maps a failure to the HTTP status and `Status`
//!   reason the API answers with.

pub mod json_patch;
pub mod merge_patch;
pub mod meta;
pub mod strategic;
mod strategies;

use std::fmt;

use serde_json::Value;

pub use json_patch::{apply_json_patch, JsonPatchOp};
pub use merge_patch::{apply_merge_patch, create_merge_patch};
pub use meta::{FieldMeta, PatchMeta, PatchStrategy, PlainMeta, SchemaMeta};
pub use strategic::apply_strategic;

/// The content type of a JSON patch body.
pub const JSON_PATCH_CONTENT_TYPE: &str = "application/json-patch+json";
/// The content type of a JSON merge patch body.
pub const MERGE_PATCH_CONTENT_TYPE: &str = "application/merge-patch+json";
/// The content type of a strategic merge patch body.
pub const STRATEGIC_MERGE_PATCH_CONTENT_TYPE: &str = "application/strategic-merge-patch+json";
/// The content type of a server-side apply body.
pub const APPLY_PATCH_CONTENT_TYPE: &str = "application/apply-patch+yaml";

/// The patch content types a custom resource accepts, in the order Kubernetes lists them when it
/// refuses a strategic merge patch.
pub const CUSTOM_RESOURCE_PATCH_TYPES: &[&str] =
    &[JSON_PATCH_CONTENT_TYPE, MERGE_PATCH_CONTENT_TYPE, APPLY_PATCH_CONTENT_TYPE];

/// The patch content types [`apply_patch`] evaluates.
const EVALUATED_PATCH_TYPES: &[&str] =
    &[JSON_PATCH_CONTENT_TYPE, MERGE_PATCH_CONTENT_TYPE, STRATEGIC_MERGE_PATCH_CONTENT_TYPE];

/// The kind of a PATCH request, chosen by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: a list of RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: an RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: a Kubernetes strategic merge patch.
    Strategic,
    /// `application/apply-patch+yaml`: a server-side apply configuration.
    Apply,
}

impl PatchType {
    /// Returns the patch type of a `Content-Type` header value, ignoring parameters such as
    /// `; charset=utf-8` as Kubernetes does, or `None` for any other media type.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        match media_type {
            JSON_PATCH_CONTENT_TYPE => Some(PatchType::Json),
            MERGE_PATCH_CONTENT_TYPE => Some(PatchType::Merge),
            STRATEGIC_MERGE_PATCH_CONTENT_TYPE => Some(PatchType::Strategic),
            APPLY_PATCH_CONTENT_TYPE => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// Returns the media type this patch type is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => JSON_PATCH_CONTENT_TYPE,
            PatchType::Merge => MERGE_PATCH_CONTENT_TYPE,
            PatchType::Strategic => STRATEGIC_MERGE_PATCH_CONTENT_TYPE,
            PatchType::Apply => APPLY_PATCH_CONTENT_TYPE,
        }
    }
}

/// Applies a PATCH request body of type `kind` to the stored object `original`.
///
/// `meta` describes the object's schema for strategic merge patches; `None` means the object is a
/// custom resource, which (as in Kubernetes) does not accept strategic merge patches. The body is
/// checked to be JSON before anything is applied. [`PatchType::Apply`] is not evaluated here: it
/// is refused like any other media type this function does not handle.
pub fn apply_patch(
    kind: PatchType,
    original: &Value,
    patch_body: &[u8],
    meta: Option<&dyn PatchMeta>,
) -> Result<Value, PatchError> {
    // Kubernetes refuses the media type before it reads the body.
    let strategic_meta = match (kind, meta) {
        (PatchType::Apply, _) => {
            return Err(PatchError::UnsupportedMediaType { accepted: EVALUATED_PATCH_TYPES })
        }
        (PatchType::Strategic, None) => {
            return Err(PatchError::UnsupportedMediaType { accepted: CUSTOM_RESOURCE_PATCH_TYPES })
        }
        (_, meta) => meta,
    };
    let patch: Value = serde_json::from_slice(patch_body).map_err(|_| PatchError::InvalidJson)?;
    match (kind, strategic_meta) {
        (PatchType::Json, _) => apply_json_patch(original, &patch),
        (PatchType::Merge, _) => apply_merge_patch(original, &patch),
        (PatchType::Strategic, Some(meta)) => apply_strategic(original, &patch, meta),
        (PatchType::Strategic, None) | (PatchType::Apply, _) => {
            Err(PatchError::UnsupportedMediaType { accepted: EVALUATED_PATCH_TYPES })
        }
    }
}

/// Why a patch could not be applied. Messages match what the Kubernetes API server reports.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON.
    #[error("invalid JSON patch")]
    InvalidJson,
    /// The patch type is not accepted for this object.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {}",
        accepted.join(", ")
    )]
    UnsupportedMediaType { accepted: &'static [&'static str] },

    /// A JSON patch body is not a list of operation objects.
    #[error("json: cannot unmarshal {found} into Go value of type {expected}")]
    JsonPatchDecode { expected: &'static str, found: &'static str },
    /// A JSON patch has more operations than the server evaluates.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { max: usize, count: usize },
    /// A JSON patch operation has an unknown or missing `op`.
    #[error("Unexpected kind: {op}")]
    UnknownOperation { op: String },
    /// A JSON patch operation lacks a member it needs (`path`, `from` or `value`).
    #[error("{op} operation failed to decode {member}: missing value")]
    MissingMember { op: JsonPatchOp, member: &'static str },
    /// The container a pointer leads into does not exist; `member` is `path` or `from`.
    #[error("{}", path_not_found_message(*op, member, path))]
    PathNotFound { op: JsonPatchOp, member: &'static str, path: String },
    /// A `replace` names an array element that does not exist.
    #[error("{op} operation does not apply: doc is missing key: {path}: missing value")]
    MissingKey { op: JsonPatchOp, path: String },
    /// An operation removes or moves an object member that does not exist.
    #[error(
        "error in {op} for path: '{path}': Unable to remove nonexistent key: {key}: missing value"
    )]
    NonexistentKey { op: JsonPatchOp, path: String, key: String },
    /// An array index is outside the array.
    #[error(
        "error in {op} for path: '{path}': Unable to access invalid index: {index}: invalid index \
         referenced"
    )]
    IndexOutOfBounds { op: JsonPatchOp, path: String, index: i64 },
    /// A pointer token addressing an array element is not a number.
    #[error("error in {op} for path: '{path}': value was not a proper array index: '{token}'")]
    NotAnArrayIndex { op: JsonPatchOp, path: String, token: String },
    /// A `test` operation found a different value.
    #[error("testing value {path} failed: test failed")]
    TestFailed { path: String },

    /// A merge patch is neither an object nor an array.
    #[error("Invalid JSON Patch")]
    InvalidMergePatch,

    /// A strategic merge patch body is not a JSON object.
    #[error("json: cannot unmarshal {found} into Go value of type map[string]interface {{}}")]
    StrategicPatchNotObject { found: &'static str },
    /// A `$deleteFromPrimitiveList` directive is malformed.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// A `$retainKeys` directive is not a list, or the patch sets a key it does not retain.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A `$setElementOrder` directive is malformed.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// A list holds lists, which strategic merge cannot merge.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A `$patch` directive in a map is neither `replace` nor `delete` (Kubernetes refuses `merge`
    /// there too).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective { directive: String, map: Value },
    /// A list item carries `$patch: merge`, which Kubernetes does not implement.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeListDirective,
    /// A list item lacks the merge key its list declares.
    #[error("map: {item} does not contain declared merge key: {merge_key}")]
    MissingMergeKey { item: Value, merge_key: String },
    /// A list of objects with merge strategy declares no merge key.
    #[error("cannot merge lists without merge key for {field}")]
    NoMergeKey { field: String },
    /// A value has another JSON type than the one the patch needs there.
    #[error("expected a {expected}, but received a {found}")]
    TypeMismatch { expected: &'static str, found: &'static str },
    /// A merged list mixes element types.
    #[error("list element types are not identical: {original}, {patch}")]
    MixedListElements { original: Value, patch: Value },
    /// A patch list orders its items differently from its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: Value, order: Value },
}

fn path_not_found_message(op: JsonPatchOp, member: &str, path: &str) -> String {
    match (op, member) {
        (JsonPatchOp::Add | JsonPatchOp::Remove, _) => {
            format!("{op} operation does not apply: doc is missing path: \"{path}\": missing value")
        }
        (JsonPatchOp::Test, _) => {
            format!("{op} operation does not apply: is missing path: {path}: missing value")
        }
        (JsonPatchOp::Move | JsonPatchOp::Copy, "from") => {
            format!(
                "{op} operation does not apply: doc is missing from path: {path}: missing value"
            )
        }
        (JsonPatchOp::Move | JsonPatchOp::Copy, _) => format!(
            "{op} operation does not apply: doc is missing destination path: {path}: missing value"
        ),
        (JsonPatchOp::Replace, _) => {
            format!("{op} operation does not apply: doc is missing path: {path}: missing value")
        }
    }
}

/// The HTTP answer the API gives for a [`PatchError`], as Kubernetes gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchErrorStatus {
    /// 400, reason `BadRequest`: the body is malformed.
    BadRequest,
    /// 413, reason `RequestEntityTooLarge`: too many JSON patch operations.
    RequestEntityTooLarge,
    /// 415, reason `UnsupportedMediaType`: the patch type is not accepted for this object.
    UnsupportedMediaType,
    /// 422, reason `Invalid`: a well-formed patch does not apply to the object.
    Invalid,
    /// 500 with an empty reason: Kubernetes passes these strategic merge failures through
    /// unclassified, so clients see them as server errors.
    InternalError,
}

impl PatchErrorStatus {
    /// Returns the HTTP status code.
    pub fn code(self) -> u16 {
        match self {
            PatchErrorStatus::BadRequest => 400,
            PatchErrorStatus::RequestEntityTooLarge => 413,
            PatchErrorStatus::UnsupportedMediaType => 415,
            PatchErrorStatus::Invalid => 422,
            PatchErrorStatus::InternalError => 500,
        }
    }

    /// Returns the `reason` of the Kubernetes `Status` (empty means `StatusReasonUnknown`).
    pub fn reason(self) -> &'static str {
        match self {
            PatchErrorStatus::BadRequest => "BadRequest",
            PatchErrorStatus::RequestEntityTooLarge => "RequestEntityTooLarge",
            PatchErrorStatus::UnsupportedMediaType => "UnsupportedMediaType",
            PatchErrorStatus::Invalid => "Invalid",
            PatchErrorStatus::InternalError => "",
        }
    }
}

/// The `message` Kubernetes puts in a 422 it builds with `NewGenericServerResponse`, which
/// discards the patch library's own text.
const GENERIC_INVALID_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

impl PatchError {
    /// Returns how the API answers this error. A failed JSON patch `test` is a 422 like every
    /// other JSON patch that does not apply (Kubernetes never answers 409 for it).
    pub fn status(&self) -> PatchErrorStatus {
        use PatchError as E;
        match self {
            E::InvalidJson
            | E::JsonPatchDecode { .. }
            | E::InvalidMergePatch
            | E::StrategicPatchNotObject { .. }
            | E::BadPrimitiveListFormat
            | E::BadRetainKeysFormat
            | E::BadSetElementOrderFormat => PatchErrorStatus::BadRequest,
            E::TooManyOperations { .. } => PatchErrorStatus::RequestEntityTooLarge,
            E::UnsupportedMediaType { .. } => PatchErrorStatus::UnsupportedMediaType,
            E::UnknownOperation { .. }
            | E::MissingMember { .. }
            | E::PathNotFound { .. }
            | E::MissingKey { .. }
            | E::NonexistentKey { .. }
            | E::IndexOutOfBounds { .. }
            | E::NotAnArrayIndex { .. }
            | E::TestFailed { .. }
            | E::ListOfLists => PatchErrorStatus::Invalid,
            E::UnknownDirective { .. }
            | E::MergeListDirective
            | E::MissingMergeKey { .. }
            | E::NoMergeKey { .. }
            | E::TypeMismatch { .. }
            | E::MixedListElements { .. }
            | E::SetElementOrderMismatch { .. } => PatchErrorStatus::InternalError,
        }
    }

    /// Returns the `message` of the `Status` Kubernetes answers with: the error text, except for
    /// 422 answers, whose text Kubernetes replaces with a generic sentence.
    pub fn status_message(&self) -> String {
        match self.status() {
            PatchErrorStatus::Invalid => GENERIC_INVALID_MESSAGE.to_owned(),
            _ => self.to_string(),
        }
    }
}

/// Returns the name Go's JSON decoder uses for the type of `value` in its error messages.
pub(crate) fn go_json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Writes a directive value the way Go's `%s` prints it: strings bare, anything else as JSON.
pub(crate) struct Bare<'a>(pub &'a Value);

impl fmt::Display for Bare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::String(text) => f.write_str(text),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_types_map_to_patch_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            ("application/merge-patch+json", Some(PatchType::Merge)),
            ("application/strategic-merge-patch+json", Some(PatchType::Strategic)),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            ("application/merge-patch+json; charset=utf-8", Some(PatchType::Merge)),
            ("application/json", None),
            ("application/apply-patch+cbor", None),
            ("", None),
        ];
        for (content_type, expected) in cases {
            assert_eq!(PatchType::from_content_type(content_type), expected, "{content_type}");
            if let Some(kind) = expected {
                assert_eq!(PatchType::from_content_type(kind.content_type()), Some(kind));
            }
        }
    }

    #[test]
    fn strategic_patch_of_custom_resource_is_unsupported_media_type() {
        let error = apply_patch(PatchType::Strategic, &json!({}), b"{}", None).unwrap_err();
        assert_eq!(error.status(), PatchErrorStatus::UnsupportedMediaType);
        assert_eq!(error.status().code(), 415);
        assert_eq!(
            error.to_string(),
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, \
             application/apply-patch+yaml"
        );
    }

    #[test]
    fn apply_is_left_to_server_side_apply() {
        let error = apply_patch(PatchType::Apply, &json!({}), b"{}", None).unwrap_err();
        assert_eq!(error.status().code(), 415);
    }

    #[test]
    fn body_that_is_not_json_is_bad_request() {
        for kind in [PatchType::Json, PatchType::Merge, PatchType::Strategic] {
            let error = apply_patch(kind, &json!({}), b"{not json", Some(&PlainMeta)).unwrap_err();
            assert_eq!(error, PatchError::InvalidJson);
            assert_eq!(error.status().code(), 400);
            assert_eq!(error.status_message(), "invalid JSON patch");
        }
    }

    #[test]
    fn each_patch_type_is_applied() {
        let original = json!({"metadata": {"name": "web", "labels": {"app": "web"}}});
        let cases: [(PatchType, &[u8], Value); 3] = [
            (
                PatchType::Json,
                br#"[{"op": "add", "path": "/metadata/labels/tier", "value": "db"}]"#,
                json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "db"}}}),
            ),
            (
                PatchType::Merge,
                br#"{"metadata": {"labels": {"app": null}}}"#,
                json!({"metadata": {"name": "web", "labels": {}}}),
            ),
            (
                PatchType::Strategic,
                br#"{"metadata": {"finalizers": ["a"]}}"#,
                json!({"metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]}}),
            ),
        ];
        let meta = SchemaMeta::for_type::<k8s_openapi::api::core::v1::ConfigMap>();
        for (kind, body, expected) in cases {
            let patched = apply_patch(kind, &original, body, Some(&meta)).unwrap();
            assert_eq!(patched, expected, "{kind:?}");
        }
    }

    #[test]
    fn failed_json_patch_is_invalid_with_generic_message() {
        let body = br#"[{"op": "test", "path": "/a", "value": 2}]"#;
        let error = apply_patch(PatchType::Json, &json!({"a": 1}), body, None).unwrap_err();
        assert_eq!(error, PatchError::TestFailed { path: "/a".to_owned() });
        assert_eq!(error.to_string(), "testing value /a failed: test failed");
        assert_eq!(error.status(), PatchErrorStatus::Invalid);
        assert_eq!(error.status().reason(), "Invalid");
        assert_eq!(
            error.status_message(),
            "the server rejected our request due to an error in our request"
        );
    }

    #[test]
    fn strategic_errors_map_like_kubernetes() {
        let cases = [
            (PatchError::BadRetainKeysFormat, 400),
            (PatchError::BadSetElementOrderFormat, 400),
            (PatchError::BadPrimitiveListFormat, 400),
            (PatchError::ListOfLists, 422),
            (PatchError::MergeListDirective, 500),
        ];
        for (error, code) in cases {
            assert_eq!(error.status().code(), code, "{error}");
        }
        assert_eq!(PatchError::ListOfLists.status_message(), GENERIC_INVALID_MESSAGE);
        assert_eq!(
            PatchError::BadRetainKeysFormat.status_message(),
            "invalid patch format of retainKeys"
        );
    }
}
