//! The store's data model: keys, values, requests and responses with etcd v3 semantics.
//!
//! These types are independent of protobuf; the etcd gRPC layer maps them to and from the wire,
//! and the Kubernetes API server uses them directly.

use serde::{Deserialize, Serialize};

/// Requests larger than this are refused with `etcdserver: request is too large` (etcd's
/// default `--max-request-bytes`).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Transactions with more operations than this are refused (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// The largest lease TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One version of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// A key interval with etcd's conventions: an empty `range_end` means the single key `key`;
/// `range_end == [0]` means every key from `key` on; `key == [0]` with `range_end == [0]` means
/// every key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl KeyRange {
    pub fn single(key: impl Into<Vec<u8>>) -> Self {
        KeyRange { key: key.into(), range_end: Vec::new() }
    }

    /// Returns the range of every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        KeyRange { key, range_end }
    }

    /// Returns the range of every key from `key` on.
    pub fn from_key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange { key: key.into(), range_end: vec![0] }
    }

    pub fn is_single(&self) -> bool {
        self.range_end.is_empty()
    }

    /// Returns whether `key` lies in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.is_single() {
            return key == self.key.as_slice();
        }
        let start = if self.key == [0] && self.range_end == [0] { &[][..] } else { &self.key[..] };
        key >= start && (self.range_end == [0] || key < self.range_end.as_slice())
    }

    /// Returns the interval as Rust bounds over byte strings.
    pub fn bounds(&self) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
        use std::ops::Bound::*;
        if self.is_single() {
            return (Included(self.key.clone()), Included(self.key.clone()));
        }
        let start = if self.key == [0] && self.range_end == [0] {
            Unbounded
        } else {
            Included(self.key.clone())
        };
        let end = if self.range_end == [0] { Unbounded } else { Excluded(self.range_end.clone()) };
        (start, end)
    }

    /// Returns whether the interval holds no key at all (`range_end <= key`).
    pub fn is_empty_interval(&self) -> bool {
        !self.is_single() && self.range_end != [0] && self.range_end <= self.key
    }
}

/// Returns the smallest key greater than every key with this prefix (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): the range runs to the end of the keyspace.
    vec![0]
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// At most this many keys are returned; 0 means no limit.
    pub limit: i64,
    /// The revision to read at; 0 or less means the newest.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// Served from the local replica without a read-index round (may be stale).
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl RangeRequest {
    pub fn new(range: KeyRange) -> Self {
        RangeRequest { range, ..Default::default() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
    /// The store revision the read was served at.
    pub revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

impl PutRequest {
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        PutRequest { key: key.into(), value: value.into(), ..Default::default() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    pub revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub range: KeyRange,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

/// One condition of a transaction; over a range, every key in it must satisfy the condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub range: KeyRange,
    pub result: CompareResult,
    pub target: CompareTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl TxnRequest {
    /// Returns whether no branch, at any depth, writes.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            TxnOp::Range(_) => true,
            TxnOp::Txn(inner) => inner.is_read_only(),
            TxnOp::Put(_) | TxnOp::Delete(_) => false,
        })
    }

    /// Returns whether every read asks to be served locally (etcd runs such a transaction
    /// without a read barrier).
    pub fn is_serializable(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            TxnOp::Range(range) => range.serializable,
            TxnOp::Txn(inner) => inner.is_serializable(),
            TxnOp::Put(_) | TxnOp::Delete(_) => false,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResponse {
    Range(RangeResponse),
    Put(PutResponse),
    Delete(DeleteResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<TxnOpResponse>,
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key. For a deletion, `kv` holds the key and the deletion's revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// What a watcher asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// The first revision to deliver; 0 means "changes after now".
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    pub id: i64,
    pub ttl: i64,
    pub revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLive {
    pub id: i64,
    /// Remaining seconds; -1 when the lease does not exist (etcd's convention).
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
    pub revision: i64,
}

/// A command that changes the replicated state; the payload of a Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    Delete(DeleteRequest),
    Txn(TxnRequest),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// Independent commands proposed together so that they share one log entry and one fsync;
    /// each is applied in order as if proposed alone.
    Batch(Vec<Command>),
}

/// The deterministic outcome of applying one [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    Put(PutResponse),
    Delete(DeleteResponse),
    Txn(TxnResponse),
    Compact {
        revision: i64,
    },
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke {
        revision: i64,
    },
    /// One outcome per command of a [`Command::Batch`], in order.
    Batch(Vec<Result<CommandResponse, crate::StoreError>>),
}

/// What the state machine returns for one log entry: a response or an error that changed
/// nothing. Membership and blank entries answer `Ok(None)`.
pub type ApplyResult = Result<Option<CommandResponse>, crate::StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_cases() {
        let cases: [(&[u8], &[u8]); 4] =
            [(b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")];
        for (prefix, end) in cases {
            assert_eq!(prefix_end(prefix), end, "prefix {prefix:?}");
        }
    }

    #[test]
    fn range_contains() {
        let cases = [
            (KeyRange::single("a"), "a", true),
            (KeyRange::single("a"), "ab", false),
            (KeyRange::prefix("a"), "ab", true),
            (KeyRange::prefix("a"), "b", false),
            (KeyRange::from_key("b"), "zzz", true),
            (KeyRange::from_key("b"), "a", false),
            (KeyRange { key: vec![0], range_end: vec![0] }, "", true),
            (KeyRange { key: b"b".to_vec(), range_end: b"a".to_vec() }, "b", false),
        ];
        for (range, key, want) in cases {
            assert_eq!(range.contains(key.as_bytes()), want, "{range:?} contains {key}");
        }
    }
}
