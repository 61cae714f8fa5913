//! How the engine lays its data out in a [`Backend`](super::Backend).
//!
//! Revision records live under `r` + main revision + sub revision (big-endian, so records sort
//! in revision order); metadata lives under `m/`.

use serde::{Deserialize, Serialize};

use crate::types::KeyValue;
use crate::StoreError;

pub(crate) const RECORD_PREFIX: &[u8] = b"r";
pub(crate) const META_PREFIX: &[u8] = b"m/";
pub(crate) const META_CURRENT_REVISION: &[u8] = b"m/current_revision";
pub(crate) const META_COMPACT_REVISION: &[u8] = b"m/compact_revision";
pub(crate) const META_LEASE_PREFIX: &[u8] = b"m/lease/";

/// A position in history: the write transaction (`main`) and the change within it (`sub`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn record_key(self) -> Vec<u8> {
        let mut key = Vec::with_capacity(17);
        key.extend_from_slice(RECORD_PREFIX);
        key.extend_from_slice(&self.main.to_be_bytes());
        key.extend_from_slice(&self.sub.to_be_bytes());
        key
    }

    pub fn from_record_key(key: &[u8]) -> Result<Self, StoreError> {
        let body = key
            .strip_prefix(RECORD_PREFIX)
            .filter(|b| b.len() == 16)
            .ok_or_else(|| StoreError::Storage(format!("malformed revision record key {key:?}")))?;
        let (main, sub) = body.split_at(8);
        Ok(Revision { main: decode_i64(main)?, sub: decode_i64(sub)? })
    }
}

/// One stored change to one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
}

impl Record {
    pub fn to_key_value(&self, main: i64) -> KeyValue {
        if self.tombstone {
            return KeyValue { key: self.key.clone(), mod_revision: main, ..Default::default() };
        }
        KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision: main,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        bincode::serialize(self).map_err(StoreError::storage)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        bincode::deserialize(bytes).map_err(StoreError::storage)
    }
}

pub(crate) fn decode_i64(bytes: &[u8]) -> Result<i64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Storage(format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(i64::from_be_bytes(array))
}

pub(crate) fn lease_meta_key(id: i64) -> Vec<u8> {
    let mut key = META_LEASE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_sort_by_revision() {
        let revisions = [
            Revision { main: 1, sub: 0 },
            Revision { main: 1, sub: 1 },
            Revision { main: 2, sub: 0 },
            Revision { main: 256, sub: 0 },
        ];
        let keys: Vec<_> = revisions.iter().map(|r| r.record_key()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for revision in revisions {
            assert_eq!(Revision::from_record_key(&revision.record_key()), Ok(revision));
        }
        assert!(Revision::from_record_key(b"rshort").is_err());
    }
}
