//! The server side of the master-to-master transport.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::proto::peer_server::Peer;
use super::proto::Payload;
use super::{ForwardRequest, RaftConsensus, TypeConfig};
use crate::store::Store;
use crate::StoreError;

/// Answers peers: Raft messages for the local node, forwarded requests when leading.
pub struct PeerService {
    store: Store<RaftConsensus>,
}

impl PeerService {
    pub fn new(store: Store<RaftConsensus>) -> Self {
        PeerService { store }
    }

    fn consensus(&self) -> &RaftConsensus {
        self.store.consensus()
    }
}

fn decode<T: serde::de::DeserializeOwned>(request: Request<Payload>) -> Result<T, Status> {
    bincode::deserialize(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("malformed peer message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    bincode::serialize(value)
        .map(|data| Response::new(Payload { data }))
        .map_err(|e| Status::internal(format!("encoding peer message: {e}")))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request)?;
        encode(&self.consensus().raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<u64> = decode(request)?;
        encode(&self.consensus().raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        encode(&self.consensus().raft().install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let request: ForwardRequest = decode(request)?;
        let consensus = self.consensus();
        match request {
            ForwardRequest::Write(command) => encode(&consensus.propose_batched(command).await),
            ForwardRequest::ReadIndex => encode(&consensus.shared_read_index().await),
            ForwardRequest::Lease(query) => {
                let answer: Result<i64, StoreError> = self.store.answer_leader_query(query).await;
                // A non-leader refuses so that the asking side retries against the new leader.
                let answer = answer.map_err(|e| match e {
                    StoreError::NoLeader => StoreError::NotLeader,
                    other => other,
                });
                encode(&answer)
            }
            membership => {
                let data = consensus
                    .serve_membership(membership)
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                Ok(Response::new(Payload { data }))
            }
        }
    }
}
