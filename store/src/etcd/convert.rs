//! Mapping between etcd's protobuf messages and the store's types.
//!
//! Enum fields arrive as raw numbers; the constants below are etcd's wire values.

use etcd_client::proto::*;

use crate::types::*;

const SORT_ASCEND: i32 = 1;
const SORT_DESCEND: i32 = 2;
const TARGET_VERSION: i32 = 1;
const TARGET_CREATE: i32 = 2;
const TARGET_MOD: i32 = 3;
const TARGET_VALUE: i32 = 4;
const COMPARE_EQUAL: i32 = 0;
const COMPARE_GREATER: i32 = 1;
const COMPARE_LESS: i32 = 2;
const COMPARE_NOT_EQUAL: i32 = 3;
const EVENT_DELETE: i32 = 1;
pub const FILTER_NOPUT: i32 = 0;
pub const FILTER_NODELETE: i32 = 1;

pub fn range_request(pb: PbRangeRequest) -> RangeRequest {
    RangeRequest {
        range: KeyRange { key: pb.key, range_end: pb.range_end },
        limit: pb.limit,
        revision: pb.revision,
        sort_order: match pb.sort_order {
            SORT_ASCEND => SortOrder::Ascend,
            SORT_DESCEND => SortOrder::Descend,
            _ => SortOrder::None,
        },
        sort_target: match pb.sort_target {
            TARGET_VERSION => SortTarget::Version,
            TARGET_CREATE => SortTarget::Create,
            TARGET_MOD => SortTarget::Mod,
            TARGET_VALUE => SortTarget::Value,
            _ => SortTarget::Key,
        },
        serializable: pb.serializable,
        keys_only: pb.keys_only,
        count_only: pb.count_only,
        min_mod_revision: pb.min_mod_revision,
        max_mod_revision: pb.max_mod_revision,
        min_create_revision: pb.min_create_revision,
        max_create_revision: pb.max_create_revision,
    }
}

pub fn put_request(pb: PbPutRequest) -> PutRequest {
    PutRequest {
        key: pb.key,
        value: pb.value,
        lease: pb.lease,
        prev_kv: pb.prev_kv,
        ignore_value: pb.ignore_value,
        ignore_lease: pb.ignore_lease,
    }
}

pub fn delete_request(pb: PbDeleteRequest) -> DeleteRequest {
    DeleteRequest { range: KeyRange { key: pb.key, range_end: pb.range_end }, prev_kv: pb.prev_kv }
}

pub fn txn_request(pb: PbTxnRequest) -> Result<TxnRequest, String> {
    let compare = pb.compare.into_iter().map(compare).collect::<Result<Vec<_>, _>>()?;
    let ops = |ops: Vec<PbTxnRequestOp>| -> Result<Vec<TxnOp>, String> {
        ops.into_iter()
            .map(|op| match op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => Ok(TxnOp::Range(range_request(r))),
                Some(PbTxnOpRequest::RequestPut(r)) => Ok(TxnOp::Put(put_request(r))),
                Some(PbTxnOpRequest::RequestDeleteRange(r)) => Ok(TxnOp::Delete(delete_request(r))),
                Some(PbTxnOpRequest::RequestTxn(r)) => Ok(TxnOp::Txn(txn_request(r)?)),
                None => Err("transaction operation has no request".to_string()),
            })
            .collect()
    };
    Ok(TxnRequest { compare, success: ops(pb.success)?, failure: ops(pb.failure)? })
}

fn compare(pb: PbCompare) -> Result<Compare, String> {
    let result = match pb.result {
        COMPARE_EQUAL => CompareResult::Equal,
        COMPARE_GREATER => CompareResult::Greater,
        COMPARE_LESS => CompareResult::Less,
        COMPARE_NOT_EQUAL => CompareResult::NotEqual,
        other => return Err(format!("unknown comparison result {other}")),
    };
    let target = match pb.target_union {
        Some(PbTargetUnion::Version(v)) => CompareTarget::Version(v),
        Some(PbTargetUnion::CreateRevision(v)) => CompareTarget::Create(v),
        Some(PbTargetUnion::ModRevision(v)) => CompareTarget::Mod(v),
        Some(PbTargetUnion::Value(v)) => CompareTarget::Value(v),
        Some(PbTargetUnion::Lease(v)) => CompareTarget::Lease(v),
        // proto3 omits zero values: a comparison against 0 or "" arrives without a union;
        // the target field says which one it was.
        None => match pb.target {
            0 => CompareTarget::Version(0),
            1 => CompareTarget::Create(0),
            2 => CompareTarget::Mod(0),
            3 => CompareTarget::Value(Vec::new()),
            4 => CompareTarget::Lease(0),
            other => return Err(format!("unknown comparison target {other}")),
        },
    };
    Ok(Compare { range: KeyRange { key: pb.key, range_end: pb.range_end }, result, target })
}

pub fn key_value(kv: KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(event: Event) -> PbEvent {
    PbEvent {
        r#type: if event.kind == EventKind::Delete { EVENT_DELETE } else { 0 },
        kv: Some(key_value(event.kv)),
        prev_kv: event.prev_kv.map(key_value),
    }
}

pub fn range_response(resp: RangeResponse, header: PbResponseHeader) -> PbRangeResponse {
    PbRangeResponse {
        header: Some(header),
        kvs: resp.kvs.into_iter().map(key_value).collect(),
        more: resp.more,
        count: resp.count,
    }
}

pub fn put_response(resp: PutResponse, header: PbResponseHeader) -> PbPutResponse {
    PbPutResponse { header: Some(header), prev_kv: resp.prev_kv.map(key_value) }
}

pub fn delete_response(resp: DeleteResponse, header: PbResponseHeader) -> PbDeleteResponse {
    PbDeleteResponse {
        header: Some(header),
        deleted: resp.deleted,
        prev_kvs: resp.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// Converts a transaction response; every nested header gets `header` with its revision.
pub fn txn_response(resp: TxnResponse, header: &PbResponseHeader) -> PbTxnResponse {
    let with_revision = |revision: i64| PbResponseHeader { revision, ..*header };
    PbTxnResponse {
        header: Some(with_revision(resp.revision)),
        succeeded: resp.succeeded,
        responses: resp
            .responses
            .into_iter()
            .map(|r| PbResponseOp {
                response: Some(match r {
                    TxnOpResponse::Range(r) => {
                        let h = with_revision(r.revision);
                        PbTxnOpResponse::ResponseRange(range_response(r, h))
                    }
                    TxnOpResponse::Put(r) => {
                        let h = with_revision(r.revision);
                        PbTxnOpResponse::ResponsePut(put_response(r, h))
                    }
                    TxnOpResponse::Delete(r) => {
                        let h = with_revision(r.revision);
                        PbTxnOpResponse::ResponseDeleteRange(delete_response(r, h))
                    }
                    TxnOpResponse::Txn(r) => PbTxnOpResponse::ResponseTxn(txn_response(r, header)),
                }),
            })
            .collect(),
    }
}
