//! Errors of the store, with the exact text etcd puts on the wire.
//!
//! Clients of etcd map errors by message, so every variant's `Display` is etcd's string, and
//! [`StoreError::grpc_code`] is the one table that maps a variant to its gRPC status code.

use serde::{Deserialize, Serialize};

/// An error of one store call. Serializable because errors cross the Raft log (an applied
/// command can fail deterministically) and the peer transport (a forwarded write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to connection lost")]
    TimeoutConnectionLost,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// The storage engine failed. The node that sees this must stop: it cannot know what is
    /// on disk any more.
    #[error("etcdserver: storage failure: {0}")]
    Storage(String),
    #[error("etcdserver: {0}")]
    InvalidArgument(String),
}

/// gRPC status codes used by etcd, as numbers so this module needs no transport types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    OutOfRange,
    Unavailable,
    DataLoss,
    Internal,
}

impl StoreError {
    /// Returns the gRPC code etcd uses for this error.
    pub fn grpc_code(&self) -> GrpcCode {
        use StoreError::*;
        match self {
            Compacted { .. } | FutureRevision | LeaseTtlTooLarge => GrpcCode::OutOfRange,
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge | MemberBadUrls | InvalidArgument(_) => GrpcCode::InvalidArgument,
            LeaseNotFound | MemberNotFound => GrpcCode::NotFound,
            NotLeader
            | BadLeaderTransferee
            | LeaseExists
            | MemberExists
            | PeerUrlExists
            | MemberNotLearner
            | LearnerNotReady
            | NotEnoughStartedMembers => GrpcCode::FailedPrecondition,
            NoLeader | LeaderChanged | Timeout | TimeoutConnectionLost | Stopped => {
                GrpcCode::Unavailable
            }
            Corrupt => GrpcCode::DataLoss,
            Storage(_) => GrpcCode::Internal,
        }
    }

    /// Returns whether this error means the local storage can no longer be trusted.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Storage(_) | StoreError::Corrupt)
    }

    pub(crate) fn storage(err: impl std::fmt::Display) -> Self {
        StoreError::Storage(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_etcd() {
        let cases = [
            (
                StoreError::Compacted { compact_revision: 3 },
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                StoreError::FutureRevision,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (StoreError::RequestTooLarge, "etcdserver: request is too large"),
            (StoreError::DuplicateKey, "etcdserver: duplicate key given in txn request"),
            (StoreError::TooManyOps, "etcdserver: too many operations in txn request"),
            (StoreError::LeaseNotFound, "etcdserver: requested lease not found"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        assert_eq!(StoreError::LeaseNotFound.grpc_code(), GrpcCode::NotFound);
        assert_eq!(StoreError::FutureRevision.grpc_code(), GrpcCode::OutOfRange);
    }
}
