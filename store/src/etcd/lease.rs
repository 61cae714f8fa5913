//! The Lease service: grant, revoke, keep-alive, time-to-live, list.

use etcd_client::proto::*;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{current_header, header, status, MasterStore};
use crate::lessor::MIN_LEASE_TTL;
use crate::store::KvStore;
use crate::StoreError;

pub struct LeaseService {
    store: MasterStore,
}

impl LeaseService {
    pub fn new(store: MasterStore) -> Self {
        LeaseService { store }
    }
}

type KeepAliveStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let request = request.into_inner();
        // etcd raises a TTL below its minimum to the minimum, so that a lease survives a
        // leader change.
        let ttl = request.ttl.max(MIN_LEASE_TTL);
        let granted = self.store.lease_grant(request.id, ttl).await.map_err(status)?;
        Ok(Response::new(PbLeaseGrantResponse {
            header: Some(header(&self.store, granted.revision)),
            id: granted.id,
            ttl: granted.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let revision = self.store.lease_revoke(request.into_inner().id).await.map_err(status)?;
        Ok(Response::new(PbLeaseRevokeResponse { header: Some(header(&self.store, revision)) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut incoming = request.into_inner();
        let store = self.store.clone();
        let responses = async_stream_of(move |sender| async move {
            while let Some(request) = incoming.next().await {
                let Ok(request) = request else { return };
                let answer = match store.lease_keep_alive(request.id).await {
                    Ok(ttl) => Ok(ttl),
                    // etcd answers a keep-alive of an unknown lease with TTL 0.
                    Err(StoreError::LeaseNotFound) => Ok(0),
                    Err(err) => Err(status(err)),
                };
                let response = answer.map(|ttl| PbLeaseKeepAliveResponse {
                    header: Some(current_header(&store)),
                    id: request.id,
                    ttl,
                });
                let failed = response.is_err();
                if sender.send(response).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(responses))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let ttl = self.store.lease_time_to_live(request.id, request.keys).await.map_err(status)?;
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: Some(header(&self.store, ttl.revision)),
            id: ttl.id,
            ttl: ttl.ttl,
            granted_ttl: ttl.granted_ttl,
            keys: ttl.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let leases = self.store.lease_ids().into_iter().map(|id| PbLeaseStatus { id }).collect();
        Ok(Response::new(PbLeaseLeasesResponse {
            header: Some(current_header(&self.store)),
            leases,
        }))
    }
}

/// Runs `produce` as a task feeding a response stream; the task ends when the client goes.
pub(super) fn async_stream_of<T, F, Fut>(
    produce: F,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    // The task owns the stream's producing side; it returns when the client hangs up (sends
    // fail) or its request stream ends, so it cannot outlive the call.
    tokio::spawn(produce(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
