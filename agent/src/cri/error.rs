//! The error type of every [`Runtime`](super::Runtime) call.

use std::path::PathBuf;
use std::time::Duration;

/// Why a container runtime call failed.
///
/// Variants carry what a caller decides on: `NotFound` means the object is gone (a remove may
/// treat it as done), `Unavailable` and `Timeout` are worth retrying with backoff, `Rpc` is the
/// runtime refusing the request (bad config, image missing, ...) and should surface in pod status.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be dialed (containerd not running, wrong path, permissions).
    #[error("cannot connect to container runtime at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The object named in the request does not exist (gRPC NOT_FOUND).
    #[error("{operation}: not found: {message}")]
    NotFound { operation: &'static str, message: String },
    /// The runtime did not answer: connection refused or dropped (gRPC UNAVAILABLE).
    #[error("{operation}: runtime unavailable: {message}")]
    Unavailable { operation: &'static str, message: String },
    /// No answer within the deadline (ours or the runtime's DEADLINE_EXCEEDED).
    #[error("{operation}: no answer within {timeout:?}")]
    Timeout { operation: &'static str, timeout: Duration },
    /// The runtime answered with any other gRPC error.
    #[error("{operation} failed ({code:?}): {message}")]
    Rpc { operation: &'static str, code: tonic::Code, message: String },
    /// The runtime answered OK but left out a field the CRI contract requires.
    #[error("{operation}: response lacks {field}")]
    MissingField { operation: &'static str, field: &'static str },
}

/// Joins a message with the distinct messages of the error's sources ("a: b: c").
fn error_chain(message: String, error: &dyn std::error::Error) -> String {
    let mut parts = vec![message];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

impl CriError {
    /// Maps a gRPC status from the runtime to an error; the one place codes are interpreted.
    pub fn from_status(operation: &'static str, timeout: Duration, status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        // A status the runtime sent has no source. One with a source was made locally by tonic:
        // when the connection breaks under an in-flight call (containerd stopped), tonic reports
        // UNKNOWN "transport error"; later calls get UNAVAILABLE. Both mean "runtime down".
        let local_transport_failure = std::error::Error::source(&status).is_some();
        match status.code() {
            tonic::Code::NotFound => CriError::NotFound { operation, message },
            tonic::Code::Unavailable => CriError::Unavailable { operation, message },
            tonic::Code::Unknown if local_transport_failure => {
                CriError::Unavailable { operation, message: error_chain(message, &status) }
            }
            tonic::Code::DeadlineExceeded => CriError::Timeout { operation, timeout },
            code => CriError::Rpc { operation, code, message },
        }
    }

    /// Returns true when the named object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::NotFound { .. })
    }

    /// Returns true when the same call may succeed later without any change by the caller.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CriError::Connect { .. } | CriError::Unavailable { .. } | CriError::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_variants() {
        let timeout = Duration::from_secs(2);
        let cases = [
            (tonic::Code::NotFound, "NotFound"),
            (tonic::Code::Unavailable, "Unavailable"),
            (tonic::Code::DeadlineExceeded, "Timeout"),
            (tonic::Code::InvalidArgument, "Rpc"),
            (tonic::Code::Unknown, "Rpc"),
        ];
        for (code, expected) in cases {
            let error = CriError::from_status("op", timeout, tonic::Status::new(code, "m"));
            let name = format!("{error:?}");
            assert!(name.starts_with(expected), "{code:?} mapped to {name}");
        }
        let gone = CriError::from_status("op", timeout, tonic::Status::not_found("x"));
        assert!(gone.is_not_found() && !gone.is_retryable());
        let down = CriError::from_status("op", timeout, tonic::Status::unavailable("x"));
        assert!(down.is_retryable() && !down.is_not_found());
    }

    #[test]
    fn local_transport_failures_are_unavailable_even_when_unknown() {
        let broken = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let status = tonic::Status::from_error(Box::new(broken));
        assert_eq!(status.code(), tonic::Code::Unknown);
        let error = CriError::from_status("Version", Duration::from_secs(1), status);
        assert!(matches!(error, CriError::Unavailable { .. }), "{error:?}");
        // The same code sent by the runtime is the runtime's verdict, not a transport failure.
        let sent = tonic::Status::unknown("failed to create shim task");
        let error = CriError::from_status("RunPodSandbox", Duration::from_secs(1), sent);
        assert!(matches!(error, CriError::Rpc { code: tonic::Code::Unknown, .. }), "{error:?}");
    }
}
