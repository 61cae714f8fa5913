//! The etcd v3 gRPC API over a master's store, so `etcdctl` and etcd client libraries work
//! unmodified. Every error leaves through [`status`], which keeps etcd's exact messages.

mod cluster;
mod convert;
mod kv;
mod lease;
mod maintenance;
mod watch;

use std::time::Duration;

use etcd_client::proto::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig};

use crate::raft::RaftConsensus;
use crate::store::{KvStore, Store};
use crate::{GrpcCode, StoreError};

/// The store a master serves.
pub type MasterStore = Store<RaftConsensus>;

/// The etcd API version whose semantics this store implements, reported by Status.
pub const ETCD_API_VERSION: &str = "3.5.0";

/// gRPC messages up to this size are decoded, so that requests a little over etcd's limit get
/// etcd's own "request is too large" answer.
const MAX_DECODING_BYTES: usize = 2 * 1024 * 1024;

/// Server-wide settings of the etcd API.
#[derive(Clone, Copy, Debug)]
pub struct EtcdOptions {
    /// How often watches created with `progress_notify` get an empty progress response.
    pub progress_notify_interval: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        // etcd's default.
        EtcdOptions { progress_notify_interval: Duration::from_secs(600) }
    }
}

/// Maps a store error to the gRPC status etcd sends for it.
pub fn status(err: StoreError) -> tonic::Status {
    let code = match err.grpc_code() {
        GrpcCode::InvalidArgument => tonic::Code::InvalidArgument,
        GrpcCode::NotFound => tonic::Code::NotFound,
        GrpcCode::FailedPrecondition => tonic::Code::FailedPrecondition,
        GrpcCode::OutOfRange => tonic::Code::OutOfRange,
        GrpcCode::Unavailable => tonic::Code::Unavailable,
        GrpcCode::DataLoss => tonic::Code::DataLoss,
        GrpcCode::Internal => tonic::Code::Internal,
    };
    tonic::Status::new(code, err.to_string())
}

/// Refuses a request whose encoded size is over etcd's limit.
fn check_size(message: &impl prost::Message) -> Result<(), tonic::Status> {
    if message.encoded_len() > crate::types::MAX_REQUEST_BYTES {
        return Err(status(StoreError::RequestTooLarge));
    }
    Ok(())
}

/// Returns the response header for a revision.
fn header(store: &MasterStore, revision: i64) -> PbResponseHeader {
    let consensus = store.consensus();
    PbResponseHeader {
        cluster_id: consensus.cluster_id(),
        member_id: consensus.id(),
        revision,
        raft_term: consensus.current_term(),
    }
}

fn current_header(store: &MasterStore) -> PbResponseHeader {
    header(store, store.current_revision())
}

/// Serves the etcd API on `listener` until `shutdown`; returns the server future to spawn.
pub fn serve(
    store: MasterStore,
    listener: TcpListener,
    tls: ServerTlsConfig,
    options: EtcdOptions,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, tonic::transport::Error> {
    let kv = PbKvServer::new(kv::KvService::new(store.clone()))
        .max_decoding_message_size(MAX_DECODING_BYTES);
    let watch = PbWatchServer::new(watch::WatchService::new(store.clone(), options));
    let lease = PbLeaseServer::new(lease::LeaseService::new(store.clone()));
    let cluster = PbClusterServer::new(cluster::ClusterService::new(store.clone()));
    let maintenance = PbMaintenanceServer::new(maintenance::MaintenanceService::new(store));
    let server = Server::builder()
        .tls_config(tls)?
        .tcp_nodelay(true)
        .add_service(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(cluster)
        .add_service(maintenance)
        .serve_with_incoming_shutdown(crate::incoming(listener), shutdown.cancelled_owned());
    Ok(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "etcd API server failed");
        }
    })
}
