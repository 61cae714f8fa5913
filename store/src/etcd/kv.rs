//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use etcd_client::proto::*;
use tonic::{Request, Response, Status};

use super::{check_size, convert, header, status, MasterStore};
use crate::store::KvStore;

pub struct KvService {
    store: MasterStore,
}

impl KvService {
    pub fn new(store: MasterStore) -> Self {
        KvService { store }
    }
}

type RangeChunks = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<PbRangeStreamResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl PbKvService for KvService {
    async fn range(
        &self,
        request: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        let request = request.into_inner();
        check_size(&request)?;
        let response = self.store.range(convert::range_request(request)).await.map_err(status)?;
        let header = header(&self.store, response.revision);
        Ok(Response::new(convert::range_response(response, header)))
    }

    type RangeStreamStream = RangeChunks;

    /// Answers a range as a stream; the whole result is read at one revision and sent in
    /// chunks, with header, more and count on the last one (etcd 3.6's contract).
    async fn range_stream(
        &self,
        request: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        const CHUNK: usize = 1000;
        let request = request.into_inner();
        check_size(&request)?;
        let response = self.store.range(convert::range_request(request)).await.map_err(status)?;
        let header = header(&self.store, response.revision);
        let mut full = convert::range_response(response, header);
        let mut chunks = Vec::new();
        while full.kvs.len() > CHUNK {
            let rest = full.kvs.split_off(CHUNK);
            let kvs = std::mem::replace(&mut full.kvs, rest);
            chunks.push(Ok(PbRangeStreamResponse {
                range_response: Some(PbRangeResponse { kvs, ..Default::default() }),
            }));
        }
        chunks.push(Ok(PbRangeStreamResponse { range_response: Some(full) }));
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let request = request.into_inner();
        check_size(&request)?;
        let response = self.store.put(convert::put_request(request)).await.map_err(status)?;
        let header = header(&self.store, response.revision);
        Ok(Response::new(convert::put_response(response, header)))
    }

    async fn delete_range(
        &self,
        request: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let request = request.into_inner();
        check_size(&request)?;
        let response = self.store.delete(convert::delete_request(request)).await.map_err(status)?;
        let header = header(&self.store, response.revision);
        Ok(Response::new(convert::delete_response(response, header)))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let request = request.into_inner();
        check_size(&request)?;
        let request = convert::txn_request(request).map_err(Status::invalid_argument)?;
        let response = self.store.txn(request).await.map_err(status)?;
        let header = header(&self.store, response.revision);
        Ok(Response::new(convert::txn_response(response, &header)))
    }

    async fn compact(
        &self,
        request: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let revision = self.store.compact(request.into_inner().revision).await.map_err(status)?;
        Ok(Response::new(PbCompactionResponse { header: Some(header(&self.store, revision)) }))
    }
}
