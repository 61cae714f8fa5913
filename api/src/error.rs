//! Errors of API requests and the one table that maps them to HTTP status codes and
//! Kubernetes `Status` objects (reason, message, details) exactly as kubectl expects them.

use flotilla_store::StoreError;
use serde_json::{json, Value};

use crate::validation::FieldError;

/// A resource as Kubernetes names it in error messages: `pods`, `deployments.apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource { group: group.to_string(), resource: resource.to_string() }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// An API request that failed. Each variant knows its HTTP code and Kubernetes reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: GroupResource, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: GroupResource, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict { resource: GroupResource, name: String, message: String },
    /// A server-side apply that would change fields other managers own.
    #[error("{message}")]
    ApplyConflict { message: String, conflicts: Vec<crate::apply::Conflict> },
    #[error("{}", crate::validation::invalid_status_message(group, kind, name, causes))]
    Invalid { group: String, kind: String, name: String, causes: Vec<FieldError> },
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed request that cannot be applied (a failing patch).
    #[error("{0}")]
    Unprocessable(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Request entity too large: limit is {limit}")]
    TooLarge { limit: usize },
    /// A watch or list from a compacted revision; `410 Expired`.
    #[error("{0}")]
    Expired(String),
    /// A continue token from a compacted revision; `410 Expired` with kubectl's hint.
    #[error("{0}")]
    Gone(String),
    #[error("Timeout: {0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status code and the Kubernetes `StatusReason`.
    pub fn code_and_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => (404, "NotFound"),
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => (422, "Invalid"),
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::Unauthorized => (401, "Unauthorized"),
            ApiError::Forbidden(_) => (403, "Forbidden"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::NotAcceptable(_) => (406, "NotAcceptable"),
            ApiError::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
            ApiError::TooLarge { .. } => (413, "RequestEntityTooLarge"),
            ApiError::Expired(_) | ApiError::Gone(_) => (410, "Expired"),
            ApiError::Timeout(_) => (504, "Timeout"),
            ApiError::Unavailable(_) => (503, "ServiceUnavailable"),
            ApiError::Internal(_) => (500, "InternalError"),
        }
    }

    /// The `Status` object sent to the client.
    pub fn status(&self) -> Value {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code,
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => Some(resource_details(resource, name)),
            ApiError::Invalid { group, kind, name, causes } => {
                let mut details = json!({ "name": name, "kind": kind });
                if !group.is_empty() {
                    details["group"] = json!(group);
                }
                details["causes"] = causes
                    .iter()
                    .map(|cause| {
                        json!({
                            "reason": cause.reason(),
                            "message": cause.body(),
                            "field": cause.field,
                        })
                    })
                    .collect();
                Some(details)
            }
            ApiError::ApplyConflict { conflicts, .. } => Some(json!({
                "causes": conflicts
                    .iter()
                    .map(|conflict| json!({
                        "reason": "FieldManagerConflict",
                        "message": conflict.cause_message(),
                        "field": conflict.field,
                    }))
                    .collect::<Vec<_>>(),
            })),
            ApiError::Internal(message) => Some(json!({ "causes": [{ "message": message }] })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        if matches!(self, ApiError::Unauthorized) {
            status["metadata"] = json!({});
        }
        status
    }

    /// A `Status` of this error carried inside a watch `ERROR` event.
    pub fn watch_event(&self) -> Value {
        json!({ "type": "ERROR", "object": self.status() })
    }
}

fn resource_details(resource: &GroupResource, name: &str) -> Value {
    let mut details = json!({ "name": name, "kind": resource.resource });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    details
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Compacted { compact_revision } => ApiError::Expired(format!(
                "The resourceVersion for the provided list is too old (compacted at {compact_revision})"
            )),
            StoreError::Timeout
            | StoreError::TimeoutConnectionLost
            | StoreError::NoLeader
            | StoreError::LeaderChanged
            | StoreError::NotLeader => {
                ApiError::Timeout("request did not complete within requested timeout".into())
            }
            StoreError::RequestTooLarge => ApiError::TooLarge { limit: crate::MAX_OBJECT_BYTES },
            StoreError::Stopped => ApiError::Unavailable("the store is stopping".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::patch::PatchError> for ApiError {
    fn from(error: crate::patch::PatchError) -> Self {
        use crate::patch::PatchErrorStatus;
        let message = error.status_message();
        match error.status() {
            PatchErrorStatus::BadRequest => ApiError::BadRequest(message),
            PatchErrorStatus::RequestEntityTooLarge => ApiError::BadRequest(message),
            PatchErrorStatus::UnsupportedMediaType => ApiError::UnsupportedMediaType(message),
            // Kubernetes answers the strategic merge failures it does not classify with a
            // 500; they are the client's mistake, so they are a 422 here.
            PatchErrorStatus::Invalid | PatchErrorStatus::InternalError => {
                ApiError::Unprocessable(message)
            }
        }
    }
}

impl From<crate::apply::ApplyError> for ApiError {
    fn from(error: crate::apply::ApplyError) -> Self {
        use crate::apply::{ApplyError, ApplyErrorStatus};
        let message = error.to_string();
        match (error.status(), error) {
            (_, ApplyError::Conflicts(conflicts)) => ApiError::ApplyConflict { message, conflicts },
            (ApplyErrorStatus::Conflict, _) => {
                ApiError::ApplyConflict { message, conflicts: Vec::new() }
            }
            (ApplyErrorStatus::BadRequest, _) => ApiError::BadRequest(message),
            (ApplyErrorStatus::Invalid, _) => ApiError::Unprocessable(message),
            (ApplyErrorStatus::InternalError, _) => ApiError::Internal(message),
        }
    }
}

/// A successful `Status` (what a deletion answers for some resources).
pub fn success_status(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_kubernetes() {
        let cases = [
            (
                ApiError::NotFound { resource: GroupResource::new("", "pods"), name: "web".into() },
                404,
                "NotFound",
                r#"pods "web" not found"#,
            ),
            (
                ApiError::AlreadyExists {
                    resource: GroupResource::new("apps", "deployments"),
                    name: "web".into(),
                },
                409,
                "AlreadyExists",
                r#"deployments.apps "web" already exists"#,
            ),
            (
                ApiError::Conflict {
                    resource: GroupResource::new("", "configmaps"),
                    name: "c".into(),
                    message: "the object has been modified; please apply your changes to the \
                              latest version and try again"
                        .into(),
                },
                409,
                "Conflict",
                "Operation cannot be fulfilled on configmaps \"c\": the object has been \
                 modified; please apply your changes to the latest version and try again",
            ),
            (ApiError::Unauthorized, 401, "Unauthorized", "Unauthorized"),
            (
                ApiError::TooLarge { limit: 3145728 },
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            ),
        ];
        for (error, code, reason, message) in cases {
            let status = error.status();
            assert_eq!(status["code"], code, "{error:?}");
            assert_eq!(status["reason"], reason, "{error:?}");
            assert_eq!(status["message"], message, "{error:?}");
            assert_eq!(status["status"], "Failure");
        }
    }

    #[test]
    fn invalid_lists_causes_like_kubernetes() {
        let cause = |field: &str| FieldError::required(field, "");
        let one = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "p".into(),
            causes: vec![cause("spec.containers")],
        };
        assert_eq!(one.to_string(), r#"Pod "p" is invalid: spec.containers: Required value"#);
        let two = ApiError::Invalid {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "d".into(),
            causes: vec![cause("spec.selector"), cause("spec.template")],
        };
        assert_eq!(
            two.to_string(),
            r#"Deployment.apps "d" is invalid: [spec.selector: Required value, spec.template: Required value]"#
        );
        let status = two.status();
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["details"]["causes"][1]["field"], "spec.template");
    }
}
