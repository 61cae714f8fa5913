//! Why a protobuf body could not be decoded.

/// A protobuf request body that cannot be turned into JSON.
///
/// Every variant but [`ProtobufError::UnknownType`] is the client's malformed body and maps to
/// `400 BadRequest`; its message is meant for the `Status` the API returns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body is not a Kubernetes protobuf message: it does not start with \"k8s\\x00\"")]
    MissingPrefix,
    #[error("the protobuf envelope (runtime.Unknown) is malformed: {0}")]
    MalformedEnvelope(Problem),
    #[error("the protobuf envelope does not name the object's apiVersion and kind")]
    MissingTypeMeta,
    #[error(
        "the protobuf envelope holds an unsupported encoding \
         (contentEncoding {content_encoding:?}, contentType {content_type:?})"
    )]
    UnsupportedContent { content_encoding: String, content_type: String },
    /// No protobuf schema is known for this (apiVersion, kind), e.g. a custom resource. The
    /// API answers `415 UnsupportedMediaType` so the client can retry with JSON.
    #[error(
        "no protobuf schema is known for {kind} in {api_version}; send it as application/json"
    )]
    UnknownType { api_version: String, kind: String },
    /// The object's bytes do not match its schema; `path` is the JSON path of the field
    /// (`spec.template.spec.containers[0].ports`), empty for the object itself.
    #[error("malformed protobuf {kind} at {}: {problem}", display_path(path))]
    Malformed { kind: String, path: String, problem: Problem },
}

/// What is wrong with some protobuf bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("unexpected end of data")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    VarintOverflow,
    #[error("invalid field number {0}")]
    InvalidFieldNumber(u64),
    #[error("field {field} has the invalid wire type {wire_type}")]
    InvalidWireType { field: u32, wire_type: u8 },
    #[error("an end-group marker for field {field} has no matching start")]
    UnexpectedEndGroup { field: u32 },
    #[error("a {expected} value was expected, found a {found} value")]
    WrongWireType { expected: &'static str, found: &'static str },
    #[error("the data nests too deeply")]
    TooDeep,
    #[error("the embedded JSON is invalid: {0}")]
    InvalidJson(String),
    #[error("the number {0} cannot be represented in JSON")]
    NonFiniteNumber(f64),
    #[error("the time {seconds}s since 1970 is outside the years 0 to 9999")]
    TimeOutOfRange { seconds: i64 },
    #[error("IntOrString has the unknown type {0} (0 is int, 1 is string)")]
    InvalidIntOrStringType(i64),
    #[error("the embedded object is not JSON or Kubernetes protobuf: {0}")]
    InvalidEmbeddedObject(Box<ProtobufError>),
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path
    }
}

/// A decoding failure below the top level, with the path to it built while unwinding.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Path segments, innermost first: `name`, `[0]`, `[key]`.
    segments: Vec<String>,
    problem: Problem,
}

impl Failure {
    /// Records that the failure happened inside the field (or index, or map key) `segment`.
    pub(crate) fn within(mut self, segment: impl Into<String>) -> Self {
        self.segments.push(segment.into());
        self
    }

    pub(crate) fn into_error(self, kind: &str) -> ProtobufError {
        let mut path = String::new();
        for segment in self.segments.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        ProtobufError::Malformed { kind: kind.to_string(), path, problem: self.problem }
    }
}

impl From<Problem> for Failure {
    fn from(problem: Problem) -> Self {
        Failure { segments: Vec::new(), problem }
    }
}
