//! Transaction checks and comparisons, done before a transaction writes anything.
//!
//! As in etcd, every comparison (nested ones too) is evaluated against the state before the
//! transaction, so the branch taken at each level, the [`TxnPath`], is known up front and the
//! writes along it can be validated before the first one is made.

use std::collections::HashSet;

use super::engine::Mvcc;
use crate::types::*;
use crate::StoreError;

/// The branches a transaction takes: this level's outcome and, in order, the paths of the
/// nested transactions in the taken branch.
#[derive(Debug, Default)]
pub struct TxnPath {
    pub succeeded: bool,
    pub nested: Vec<TxnPath>,
}

/// Refuses transactions etcd refuses: too many operations, empty keys, and a key written twice
/// (or written and deleted) in one branch.
pub fn validate(req: &TxnRequest) -> Result<(), StoreError> {
    if req.compare.len() > MAX_TXN_OPS
        || req.success.len() > MAX_TXN_OPS
        || req.failure.len() > MAX_TXN_OPS
    {
        return Err(StoreError::TooManyOps);
    }
    for compare in &req.compare {
        if compare.range.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
    }
    branch_writes(&req.success)?;
    branch_writes(&req.failure)?;
    Ok(())
}

/// Returns the delete ranges and put keys of one branch, refusing duplicates.
fn branch_writes(ops: &[TxnOp]) -> Result<(Vec<KeyRange>, HashSet<Vec<u8>>), StoreError> {
    let mut deletes = Vec::new();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        match op {
            TxnOp::Range(range) => {
                if range.range.key.is_empty() {
                    return Err(StoreError::EmptyKey);
                }
            }
            TxnOp::Put(put) => {
                if put.key.is_empty() {
                    return Err(StoreError::EmptyKey);
                }
                if !puts.insert(put.key.clone()) {
                    return Err(StoreError::DuplicateKey);
                }
            }
            TxnOp::Delete(delete) => {
                if delete.range.key.is_empty() {
                    return Err(StoreError::EmptyKey);
                }
                deletes.push(delete.range.clone());
            }
            TxnOp::Txn(inner) => {
                validate(inner)?;
                // Only one of the nested branches runs, so they may share keys with each other
                // but not with this branch.
                let mut nested_puts = HashSet::new();
                for branch in [&inner.success, &inner.failure] {
                    let (nested_deletes, branch_puts) = branch_writes(branch)?;
                    deletes.extend(nested_deletes);
                    nested_puts.extend(branch_puts);
                }
                for key in nested_puts {
                    if !puts.insert(key) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
            }
        }
    }
    for key in &puts {
        if deletes.iter().any(|range| range.contains(key)) {
            return Err(StoreError::DuplicateKey);
        }
    }
    Ok((deletes, puts))
}

/// Evaluates every comparison on the taken path against the current state.
pub fn evaluate_path(engine: &Mvcc, req: &TxnRequest) -> Result<TxnPath, StoreError> {
    let mut succeeded = true;
    for compare in &req.compare {
        if !evaluate(engine, compare)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &req.success } else { &req.failure };
    let mut nested = Vec::new();
    for op in ops {
        if let TxnOp::Txn(inner) = op {
            nested.push(evaluate_path(engine, inner)?);
        }
    }
    Ok(TxnPath { succeeded, nested })
}

fn evaluate(engine: &Mvcc, compare: &Compare) -> Result<bool, StoreError> {
    let kvs = engine.live_in_range(&compare.range)?;
    if kvs.is_empty() {
        // A missing key has version, revisions and lease 0; there is no way to express a
        // missing value, so a value comparison on it always fails (as in etcd).
        if matches!(compare.target, CompareTarget::Value(_)) {
            return Ok(false);
        }
        return Ok(compare_kv(compare, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(compare, kv)))
}

fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> TxnOp {
        TxnOp::Put(PutRequest::new(key, "v"))
    }

    fn delete(range: KeyRange) -> TxnOp {
        TxnOp::Delete(DeleteRequest { range, prev_kv: false })
    }

    #[test]
    fn validate_cases() {
        let nested_same_key = TxnOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![put("a")],
            failure: vec![put("a")],
        });
        let cases: Vec<(&str, TxnRequest, Result<(), StoreError>)> = vec![
            (
                "distinct keys",
                TxnRequest { success: vec![put("a"), put("b")], ..Default::default() },
                Ok(()),
            ),
            (
                "same key twice",
                TxnRequest { success: vec![put("a"), put("a")], ..Default::default() },
                Err(StoreError::DuplicateKey),
            ),
            (
                "same key in both branches",
                TxnRequest {
                    success: vec![put("a")],
                    failure: vec![put("a")],
                    ..Default::default()
                },
                Ok(()),
            ),
            (
                "put inside deleted prefix",
                TxnRequest {
                    success: vec![put("ab"), delete(KeyRange::prefix("a"))],
                    ..Default::default()
                },
                Err(StoreError::DuplicateKey),
            ),
            (
                "nested branches share a key",
                TxnRequest { success: vec![nested_same_key.clone()], ..Default::default() },
                Ok(()),
            ),
            (
                "nested repeats parent key",
                TxnRequest { success: vec![put("a"), nested_same_key], ..Default::default() },
                Err(StoreError::DuplicateKey),
            ),
            (
                "too many ops",
                TxnRequest {
                    success: (0..129).map(|i| put(&format!("k{i}"))).collect(),
                    ..Default::default()
                },
                Err(StoreError::TooManyOps),
            ),
            (
                "empty key",
                TxnRequest { success: vec![put("")], ..Default::default() },
                Err(StoreError::EmptyKey),
            ),
        ];
        for (name, req, want) in cases {
            assert_eq!(validate(&req), want, "{name}");
        }
    }

    #[test]
    fn compare_cases() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            value: b"m".to_vec(),
            lease: 7,
        };
        let cases = [
            (CompareTarget::Version(3), CompareResult::Equal, true),
            (CompareTarget::Version(2), CompareResult::Greater, true),
            (CompareTarget::Create(2), CompareResult::NotEqual, false),
            (CompareTarget::Mod(6), CompareResult::Less, true),
            (CompareTarget::Value(b"n".to_vec()), CompareResult::Less, true),
            (CompareTarget::Value(b"m".to_vec()), CompareResult::Equal, true),
            (CompareTarget::Lease(7), CompareResult::Equal, true),
        ];
        for (target, result, want) in cases {
            let compare = Compare { range: KeyRange::single("k"), result, target: target.clone() };
            assert_eq!(compare_kv(&compare, &kv), want, "{target:?} {result:?}");
        }
    }
}
