//! The client side of the master-to-master transport: openraft's network over tonic, with one
//! lazily connected channel per peer (tonic reconnects with backoff), and request forwarding to
//! the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::proto::peer_client::PeerClient;
use super::proto::Payload;
use super::{ForwardRequest, MemberNode, NodeId, TypeConfig};
use crate::StoreError;

/// How long a forwarded request may take before it is reported as timed out.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Channels to peers, keyed by peer URL, shared by Raft replication and forwarding.
#[derive(Clone)]
pub struct PeerChannels {
    tls: ClientTlsConfig,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl PeerChannels {
    pub fn new(tls: ClientTlsConfig) -> Self {
        PeerChannels { tls, channels: Arc::default() }
    }

    /// Returns the channel to a peer, creating it on first use.
    pub fn channel(&self, url: &str) -> Result<Channel, StoreError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .and_then(|e| e.tls_config(self.tls.clone()))
            .map_err(|e| StoreError::InvalidArgument(format!("peer URL {url}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3));
        let channel = endpoint.connect_lazy();
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    /// Sends a request to the leader and decodes its answer.
    pub async fn forward<T: DeserializeOwned>(
        &self,
        leader: &MemberNode,
        request: &ForwardRequest,
    ) -> Result<T, StoreError> {
        let data = bincode::serialize(request).map_err(StoreError::storage)?;
        let mut client = PeerClient::new(self.channel(&leader.peer_url)?);
        let call = client.forward(Payload { data });
        let response = match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if not_delivered(&status) => return Err(StoreError::NotLeader),
            Ok(Err(status)) => {
                tracing::debug!(leader = %leader.name, error = %status, "forwarding failed");
                return Err(StoreError::TimeoutConnectionLost);
            }
            Err(_) => return Err(StoreError::Timeout),
        };
        let answer: Result<T, StoreError> =
            bincode::deserialize(&response.data).map_err(StoreError::storage)?;
        answer
    }
}

/// Returns whether a failed call certainly never reached the peer (no connection), so retrying
/// it elsewhere cannot apply it twice.
fn not_delivered(status: &tonic::Status) -> bool {
    use std::error::Error;
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn Error + 'static)> = status.source();
    while let Some(err) = source {
        let text = err.to_string();
        if text.contains("connect") || text.contains("Connection refused") {
            return true;
        }
        source = err.source();
    }
    status.message().contains("connect")
}

impl RaftNetworkFactory<TypeConfig> for PeerChannels {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> Self::Network {
        PeerConnection { target, channel: self.channel(&node.peer_url) }
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    target: NodeId,
    channel: Result<Channel, StoreError>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, MemberNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RpcKind,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = match &self.channel {
            Ok(channel) => channel.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let data =
            bincode::serialize(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = PeerClient::new(channel);
        let payload = Payload { data };
        let call = async {
            match kind {
                RpcKind::Append => client.append_entries(payload).await,
                RpcKind::Vote => client.vote(payload).await,
                RpcKind::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let response = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if not_delivered(&status) => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = bincode::deserialize(&response.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }
}
