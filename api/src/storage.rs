//! Objects in the store: JSON values under registry keys, written by compare-and-swap
//! transactions. `metadata.resourceVersion` is never stored; it is the key's `mod_revision`,
//! filled in on every read.

use flotilla_store::types::{
    Compare, CompareResult, CompareTarget, DeleteRequest, KeyRange, KeyValue, PutRequest,
    RangeRequest, TxnOp, TxnOpResponse, TxnRequest, WatchRequest,
};
use flotilla_store::{KvStore, StoreError, Watcher};
use serde_json::Value;

use crate::error::ApiError;

/// One stored object with its revision.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub revision: i64,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the list was read at.
    pub revision: i64,
    /// Whether keys remain after the last item.
    pub more: bool,
    /// How many keys remain after this page (when `more`).
    pub remaining: i64,
}

/// The result of a conditional write.
#[derive(Debug)]
pub enum Written {
    /// Written at this revision.
    Done(i64),
    /// The condition failed; the object as it is now (None if it does not exist).
    Conflict(Option<Stored>),
}

/// Another key written in the same transaction as an object (an allocated address, say).
#[derive(Debug, Clone)]
pub struct SideWrite {
    pub key: String,
    /// The value to put; None deletes the key.
    pub value: Option<Vec<u8>>,
    /// For a put: the key must not exist yet.
    pub must_be_new: bool,
}

/// Typed access to objects over any store replica.
#[derive(Clone)]
pub struct Objects<S> {
    store: S,
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Stored, ApiError> {
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|err| ApiError::Internal(format!("object at {key} is not valid JSON: {err}")))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(Stored { key, object, revision: kv.mod_revision })
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// Writes a stored object's JSON to `out` with its resourceVersion added, without decoding
/// the object: only its top level is scanned, and its metadata gets `resourceVersion` as a
/// first member (stored objects never hold one).
pub fn write_with_revision(raw: &[u8], revision: i64, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let top: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(raw)
            .map_err(|err| ApiError::Internal(format!("stored object is not valid JSON: {err}")))?;
    out.push(b'{');
    for (index, (key, value)) in top.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        // A `String` key always serializes.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let text = value.get().trim_start();
        match (key.as_str(), text.strip_prefix('{')) {
            ("metadata", Some(members)) => {
                out.extend_from_slice(format!("{{\"resourceVersion\":\"{revision}\"").as_bytes());
                if !members.trim_start().starts_with('}') {
                    out.push(b',');
                }
                out.extend_from_slice(members.as_bytes());
            }
            _ => out.extend_from_slice(text.as_bytes()),
        }
    }
    out.push(b'}');
    Ok(())
}

/// The bytes stored for an object: without resourceVersion.
pub fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    // Serializing a `Value` cannot fail: its map keys are always strings.
    serde_json::to_vec(&object).unwrap_or_default()
}

fn absent(key: &str) -> Compare {
    Compare {
        range: KeyRange::single(key.as_bytes().to_vec()),
        result: CompareResult::Equal,
        target: CompareTarget::Create(0),
    }
}

fn unchanged(key: &str, revision: i64) -> Compare {
    Compare {
        range: KeyRange::single(key.as_bytes().to_vec()),
        result: CompareResult::Equal,
        target: CompareTarget::Mod(revision),
    }
}

fn read_op(key: &str) -> TxnOp {
    TxnOp::Range(RangeRequest::new(KeyRange::single(key.as_bytes().to_vec())))
}

impl<S: KvStore> Objects<S> {
    pub fn new(store: S) -> Self {
        Objects { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Reads one object; `serializable` serves it from this replica without a read barrier.
    pub async fn get(&self, key: &str, serializable: bool) -> Result<Option<Stored>, ApiError> {
        let mut request = RangeRequest::new(KeyRange::single(key.as_bytes().to_vec()));
        request.serializable = serializable;
        let response = self.store.range(request).await?;
        response.kvs.first().map(decode).transpose()
    }

    /// Whether a key exists, whatever its value (allocation markers are not objects).
    pub async fn exists(&self, key: &str) -> Result<bool, ApiError> {
        let mut request = RangeRequest::new(KeyRange::single(key.as_bytes().to_vec()));
        request.count_only = true;
        Ok(self.store.range(request).await?.count > 0)
    }

    /// The keys under `prefix`, values left out.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut request = RangeRequest::new(KeyRange::prefix(prefix.as_bytes().to_vec()));
        request.keys_only = true;
        let response = self.store.range(request).await?;
        Ok(response.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect())
    }

    /// Lists and decodes the objects under `prefix` (see [`Objects::list_stored`]).
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        revision: i64,
        limit: i64,
        serializable: bool,
    ) -> Result<Page, ApiError> {
        let (kvs, revision, more, remaining) =
            self.list_stored(prefix, start, revision, limit, serializable).await?;
        let items = kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, revision, more, remaining })
    }

    /// Lists keys under `prefix` from `start` (inclusive, a full key) at `revision` (0: now),
    /// leaving the values as stored: (values, revision read at, more keys, keys remaining).
    pub async fn list_stored(
        &self,
        prefix: &str,
        start: Option<&str>,
        revision: i64,
        limit: i64,
        serializable: bool,
    ) -> Result<(Vec<KeyValue>, i64, bool, i64), ApiError> {
        let mut range = KeyRange::prefix(prefix.as_bytes().to_vec());
        if let Some(start) = start {
            range.key = start.as_bytes().to_vec();
        }
        let mut request = RangeRequest::new(range);
        request.revision = revision;
        request.limit = limit.max(0);
        request.serializable = serializable;
        let response = self.store.range(request).await?;
        let remaining = (response.count - response.kvs.len() as i64).max(0);
        Ok((response.kvs, response.revision, response.more, remaining))
    }

    /// Creates an object if its key is free, with side writes in the same transaction.
    pub async fn create(
        &self,
        key: &str,
        object: &Value,
        side: &[SideWrite],
    ) -> Result<Written, ApiError> {
        let mut compare = vec![absent(key)];
        compare.extend(side.iter().filter(|w| w.must_be_new).map(|w| absent(&w.key)));
        let mut success = vec![TxnOp::Put(PutRequest::new(key.as_bytes(), encode(object)))];
        success.extend(side.iter().map(side_op));
        let response =
            self.store.txn(TxnRequest { compare, success, failure: vec![read_op(key)] }).await?;
        if response.succeeded {
            Ok(Written::Done(response.revision))
        } else {
            Ok(Written::Conflict(first_read(&response.responses)?))
        }
    }

    /// Replaces an object if it is still at `revision`.
    pub async fn update(
        &self,
        key: &str,
        revision: i64,
        object: &Value,
        side: &[SideWrite],
    ) -> Result<Written, ApiError> {
        let mut compare = vec![unchanged(key, revision)];
        compare.extend(side.iter().filter(|w| w.must_be_new).map(|w| absent(&w.key)));
        let mut success = vec![TxnOp::Put(PutRequest::new(key.as_bytes(), encode(object)))];
        success.extend(side.iter().map(side_op));
        self.conditional(key, compare, success).await
    }

    /// Deletes an object if it is still at `revision`.
    pub async fn delete(
        &self,
        key: &str,
        revision: i64,
        side: &[SideWrite],
    ) -> Result<Written, ApiError> {
        let mut success = vec![TxnOp::Delete(DeleteRequest {
            range: KeyRange::single(key.as_bytes().to_vec()),
            prev_kv: false,
        })];
        success.extend(side.iter().map(side_op));
        self.conditional(key, vec![unchanged(key, revision)], success).await
    }

    async fn conditional(
        &self,
        key: &str,
        compare: Vec<Compare>,
        success: Vec<TxnOp>,
    ) -> Result<Written, ApiError> {
        let response =
            self.store.txn(TxnRequest { compare, success, failure: vec![read_op(key)] }).await?;
        if response.succeeded {
            Ok(Written::Done(response.revision))
        } else {
            Ok(Written::Conflict(first_read(&response.responses)?))
        }
    }

    /// Watches keys under `prefix` from revision `from` (inclusive), with previous values.
    pub fn watch(&self, prefix: &str, from: i64) -> Result<Watcher, StoreError> {
        self.store.watch(WatchRequest {
            range: KeyRange::prefix(prefix.as_bytes().to_vec()),
            start_revision: from,
            prev_kv: true,
            no_put: false,
            no_delete: false,
        })
    }

    pub fn current_revision(&self) -> i64 {
        self.store.current_revision()
    }
}

fn side_op(write: &SideWrite) -> TxnOp {
    match &write.value {
        Some(value) => TxnOp::Put(PutRequest::new(write.key.as_bytes(), value.clone())),
        None => TxnOp::Delete(DeleteRequest {
            range: KeyRange::single(write.key.as_bytes().to_vec()),
            prev_kv: false,
        }),
    }
}

fn first_read(responses: &[TxnOpResponse]) -> Result<Option<Stored>, ApiError> {
    match responses.first() {
        Some(TxnOpResponse::Range(range)) => range.kvs.first().map(decode).transpose(),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_objects_gain_their_resource_version_without_decoding() {
        let object = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "a", "resourceVersion": "ignored" },
            "data": { "metadata": "{not the top level}" },
        });
        let mut out = Vec::new();
        write_with_revision(&encode(&object), 42, &mut out).unwrap();
        let written: Value = serde_json::from_slice(&out).unwrap();
        let mut expected = object.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(written, expected);

        let mut bare = Vec::new();
        write_with_revision(br#"{"kind":"X","metadata":{}}"#, 7, &mut bare).unwrap();
        assert_eq!(bare, br#"{"kind":"X","metadata":{"resourceVersion":"7"}}"#);
        assert!(write_with_revision(b"{broken", 1, &mut Vec::new()).is_err());
    }
}
