//! The Maintenance service: status, alarms, hashes, snapshots, leader transfer.

use etcd_client::proto::*;
use tonic::{Request, Response, Status};

use super::lease::async_stream_of;
use super::{current_header, header, status, MasterStore, ETCD_API_VERSION};
use crate::StoreError;

/// Snapshot streams are sent in chunks of this size.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub struct MaintenanceService {
    store: MasterStore,
}

impl MaintenanceService {
    pub fn new(store: MasterStore) -> Self {
        MaintenanceService { store }
    }
}

type Chunks = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<PbSnapshotResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(
        &self,
        _request: Request<PbAlarmRequest>,
    ) -> Result<Response<PbAlarmResponse>, Status> {
        // Flotilla raises no alarms: there is no space quota to exceed and corruption stops
        // the member instead.
        Ok(Response::new(PbAlarmResponse {
            header: Some(current_header(&self.store)),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        let consensus = self.store.consensus();
        let metrics = consensus.metrics();
        let db_size = self.store.shared().read_engine().backend().size_bytes() as i64;
        let is_learner = consensus.members().iter().any(|m| m.id == consensus.id() && m.is_learner);
        Ok(Response::new(PbStatusResponse {
            header: Some(current_header(&self.store)),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner,
            storage_version: String::new(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        // sled reclaims freed space itself as it rewrites segments; there is nothing to do on
        // demand, and the call succeeds as etcd's does.
        Ok(Response::new(PbDefragmentResponse { header: Some(current_header(&self.store)) }))
    }

    async fn hash(
        &self,
        _request: Request<PbHashRequest>,
    ) -> Result<Response<PbHashResponse>, Status> {
        let (hash, _) = self.store.shared().read_engine().hash_kv(0).map_err(status)?;
        Ok(Response::new(PbHashResponse { header: Some(current_header(&self.store)), hash }))
    }

    async fn hash_kv(
        &self,
        request: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let engine = self.store.shared().read_engine();
        let hash_revision = if revision <= 0 { engine.current_revision() } else { revision };
        let (hash, compact_revision) = engine.hash_kv(revision).map_err(status)?;
        drop(engine);
        Ok(Response::new(PbHashKvResponse {
            header: Some(current_header(&self.store)),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = Chunks;

    /// Streams the member's whole key space in Flotilla's snapshot format.
    async fn snapshot(
        &self,
        _request: Request<PbSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (entries, revision) = {
            let engine = self.store.shared().read_engine();
            (engine.export().map_err(status)?, engine.current_revision())
        };
        let bytes = bincode::serialize(&entries).map_err(|e| status(StoreError::storage(e)))?;
        let header = header(&self.store, revision);
        let stream = async_stream_of(move |sender| async move {
            let total = bytes.len();
            let mut sent = 0;
            for chunk in bytes.chunks(SNAPSHOT_CHUNK) {
                sent += chunk.len();
                let response = PbSnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - sent) as u64,
                    blob: chunk.to_vec(),
                    version: ETCD_API_VERSION.to_string(),
                };
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn move_leader(
        &self,
        request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.store.consensus().move_leader(target).await.map_err(status)?;
        Ok(Response::new(PbMoveLeaderResponse { header: Some(current_header(&self.store)) }))
    }

    async fn downgrade(
        &self,
        _request: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        // etcd refuses a downgrade request when the cluster cannot take part in one; a
        // Flotilla cluster upgrades and downgrades with its binary, never through this call.
        Err(Status::failed_precondition("etcdserver: invalid downgrade target version"))
    }
}
