//! Replication: the store's [`Consensus`] over openraft, with sled storage and a tonic transport.
//!
//! Writes go to the leader (a follower forwards them); linearizable reads take a read index from
//! the leader and wait until the local replica has applied it, so every master serves reads and
//! watches from its own replica.

mod log_store;
mod master;
mod membership;
mod network;
mod proposer;
mod read_index;
mod service;
mod state_machine;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{Raft, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

pub use log_store::LogStore;
pub use master::{Master, MasterConfig, PeerUrlSpec, TlsFiles};
pub use membership::Member;
pub use network::PeerChannels;
pub use state_machine::StateMachine;

use crate::store::{Consensus, LeaderQuery};
use crate::types::{ApplyResult, Command, CommandResponse};
use crate::StoreError;

pub(crate) mod proto {
    tonic::include_proto!("flotilla.peer");
}

pub type NodeId = u64;

/// What the cluster knows of a master: its name and where to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// Empty until the member has started (etcd shows such members as "unstarted").
    pub name: String,
    pub peer_url: String,
    pub client_urls: Vec<String>,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.peer_url)
    }
}

openraft::declare_raft_types!(
    /// Flotilla's Raft types: store commands in, their results out.
    pub TypeConfig:
        D = Command,
        R = ApplyResult,
        NodeId = NodeId,
        Node = MemberNode,
);

/// How long a write or a linearizable read may wait for a leader before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A request a non-leader hands to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(Command),
    ReadIndex,
    Lease(LeaderQuery),
    AddMember {
        node: MemberNode,
        learner: bool,
    },
    RemoveMember {
        id: NodeId,
    },
    PromoteMember {
        id: NodeId,
    },
    UpdateMember {
        id: NodeId,
        node: MemberNode,
    },
    /// Asks a member to start an election now (leader transfer).
    Campaign,
    /// A new master asks to join: it is added as a learner (or, if `etcdctl member add`
    /// announced its peer URL, given that member's id).
    Join {
        node: MemberNode,
    },
}

impl ForwardRequest {
    /// Whether answering the request twice is harmless (reads and lease renewals), so it
    /// can be sent again to a new leader while the old one may still answer it.
    fn may_resend(&self) -> bool {
        matches!(self, ForwardRequest::ReadIndex | ForwardRequest::Lease(_))
    }
}

/// One Raft replica and the way to its leader: what the batchers and the membership calls
/// work with.
#[derive(Clone)]
pub struct Replica {
    id: NodeId,
    cluster_id: u64,
    raft: Raft<TypeConfig>,
    peers: PeerChannels,
    metrics: watch::Receiver<RaftMetrics<NodeId, MemberNode>>,
}

/// The Raft side of a master: proposes through the group-commit batcher, reads through shared
/// read-index rounds, forwards to the leader.
#[derive(Clone)]
pub struct RaftConsensus {
    replica: Replica,
    proposer: proposer::Proposer,
    reads: read_index::ReadIndexBatcher,
}

impl std::ops::Deref for RaftConsensus {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.replica
    }
}

impl RaftConsensus {
    pub fn new(id: NodeId, raft: Raft<TypeConfig>, peers: PeerChannels) -> Self {
        let metrics = raft.metrics();
        let cluster_id = member_id(&raft.config().cluster_name, "");
        let replica = Replica { id, cluster_id, raft, peers, metrics };
        let writes = replica.clone();
        let proposer = proposer::Proposer::start(std::sync::Arc::new(move |command| {
            let replica = writes.clone();
            Box::pin(async move {
                let request = ForwardRequest::Write(command.clone());
                replica.on_leader(request, || replica.write_as_leader(command.clone())).await
            })
        }));
        let rounds = replica.clone();
        let reads = read_index::ReadIndexBatcher::start(std::sync::Arc::new(move || {
            let replica = rounds.clone();
            Box::pin(async move {
                replica
                    .on_leader(ForwardRequest::ReadIndex, || replica.read_index_as_leader())
                    .await
            })
        }));
        RaftConsensus { replica, proposer, reads }
    }

    /// Proposes a command through the group-commit batcher (see [`proposer`]); returns its
    /// outcome and log index once applied by the leader.
    pub(crate) async fn propose_batched(
        &self,
        command: Command,
    ) -> Result<proposer::Proposed, StoreError> {
        self.proposer.propose(command).await
    }

    /// Returns a read index obtained after the call began, sharing the round with concurrent
    /// readers (see [`read_index`]).
    pub(crate) async fn shared_read_index(&self) -> Result<u64, StoreError> {
        self.reads.read_index().await
    }
}

impl Replica {
    /// Returns the cluster's id, derived from its cluster token.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub fn metrics(&self) -> RaftMetrics<NodeId, MemberNode> {
        self.metrics.borrow().clone()
    }

    /// Returns the Raft term this replica is in (every response header carries it).
    pub fn current_term(&self) -> u64 {
        self.metrics.borrow().current_term
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.id)
    }

    /// Returns the leader this replica knows of, unless it is this replica.
    fn remote_leader(&self) -> Option<(NodeId, MemberNode)> {
        let metrics = self.metrics.borrow();
        let leader = metrics.current_leader.filter(|id| *id != self.id)?;
        Some((leader, metrics.membership_config.membership().get_node(&leader)?.clone()))
    }

    /// Forwards `request` to `leader`, giving up on it as soon as `leader` no longer leads: a
    /// paused or partitioned old leader would otherwise hold it, and the batch slot or read
    /// round it occupies, until the connection times out, while a new leader could answer.
    /// A request that may be sent twice is then retried; any other fails as etcd's does,
    /// "leader changed" (the old leader may still append it, but can no longer commit it).
    async fn forward<T: serde::de::DeserializeOwned>(
        &self,
        (id, leader): &(NodeId, MemberNode),
        request: &ForwardRequest,
    ) -> Result<T, StoreError> {
        let call = self.peers.forward::<T>(leader, request);
        let mut metrics = self.metrics.clone();
        let moved = async move {
            if metrics.wait_for(|m| m.current_leader != Some(*id)).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            answer = call => answer,
            () = moved => {
                Err(if request.may_resend() { StoreError::NotLeader } else { StoreError::LeaderChanged })
            }
        }
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        self.metrics.borrow().current_leader
    }

    /// Writes a command to the log; this replica must lead. Never forwards.
    async fn write_as_leader(&self, command: Command) -> Result<proposer::Proposed, StoreError> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        proposer::write(&self.raft, command).await
    }

    /// Waits until this replica has applied the log up to `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), StoreError> {
        if self.metrics.borrow().last_applied.is_some_and(|id| id.index >= index) {
            return Ok(());
        }
        self.raft
            .wait(Some(REQUEST_TIMEOUT))
            .applied_index_at_least(Some(index), "apply")
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Timeout)
    }

    /// Returns the leader's read index (called on the leader).
    pub(crate) async fn read_index_as_leader(&self) -> Result<u64, StoreError> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(read_log_id.map(|id| id.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                Err(StoreError::NotLeader)
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(StoreError::Timeout)
            }
            Err(RaftError::Fatal(_)) => Err(StoreError::Stopped),
        }
    }

    /// Runs `local` when this replica leads, otherwise forwards `request` to the leader,
    /// retrying while leadership is moving, until [`REQUEST_TIMEOUT`].
    pub(crate) async fn on_leader<T, F, Fut>(
        &self,
        request: ForwardRequest,
        local: F,
    ) -> Result<T, StoreError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let attempt = if self.is_leader() {
                local().await
            } else if let Some(leader) = self.remote_leader() {
                self.forward::<T>(&leader, &request).await
            } else {
                Err(StoreError::NoLeader)
            };
            match attempt {
                Err(StoreError::NotLeader | StoreError::NoLeader) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(StoreError::NotLeader) => return Err(StoreError::Timeout),
                other => return other,
            }
        }
    }
}

impl Consensus for RaftConsensus {
    async fn propose(&self, command: Command) -> Result<CommandResponse, StoreError> {
        let (response, index) = self.propose_batched(command).await?;
        // A write forwarded to the leader is answered once it is applied there; wait until it
        // is applied here too, so that this member's own reads see what it acknowledged.
        self.wait_applied(index).await?;
        Ok(response)
    }

    async fn propose_as_leader(
        &self,
        term: u64,
        command: Command,
    ) -> Result<CommandResponse, StoreError> {
        if self.leader_term() != Some(term) {
            return Err(StoreError::NotLeader);
        }
        // An entry appended in a term that has ended is never committed.
        Ok(self.write_as_leader(command).await?.0)
    }

    async fn read_barrier(&self) -> Result<(), StoreError> {
        let index = self.shared_read_index().await?;
        self.wait_applied(index).await
    }

    fn leader_term(&self) -> Option<u64> {
        let metrics = self.metrics.borrow();
        (metrics.state == ServerState::Leader && metrics.current_leader == Some(self.id))
            .then_some(metrics.current_term)
    }

    async fn ask_leader(&self, query: LeaderQuery) -> Result<i64, StoreError> {
        // Only called when this replica does not lead; if it is elected meanwhile, the store
        // answers the question itself (lease deadlines live with the leader).
        let request = ForwardRequest::Lease(query);
        self.on_leader(request, || async { Err(StoreError::LeaderChanged) }).await
    }
}

/// Returns a member id for an initial-cluster member: a stable hash of the cluster token and
/// the member name, never zero.
pub fn member_id(cluster_token: &str, name: &str) -> NodeId {
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in cluster_token.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash.max(1)
}

/// Builds the initial membership from `name=peer_url` pairs.
pub fn initial_members(
    cluster_token: &str,
    members: &[PeerUrlSpec],
) -> BTreeMap<NodeId, MemberNode> {
    members
        .iter()
        .map(|m| {
            let node = MemberNode {
                name: m.name.clone(),
                peer_url: m.peer_url.clone(),
                client_urls: Vec::new(),
            };
            (member_id(cluster_token, &m.name), node)
        })
        .collect()
}
