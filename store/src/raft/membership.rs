//! Cluster membership, mapped from etcd's Cluster API onto Raft membership changes.
//!
//! Every change runs on the leader (others forward it). New members join as learners and are
//! promoted once in sync, as etcd's learners are.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::{ForwardRequest, MemberNode, NodeId, RaftConsensus};
use crate::StoreError;

/// A member as the Cluster API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub node: MemberNode,
    pub is_learner: bool,
}

/// A learner is in sync when it has replicated at least this share of the leader's log (etcd's
/// readiness rule for promotion).
const PROMOTE_READY_PERCENT: u64 = 90;

impl RaftConsensus {
    /// Returns every member, voters first, in id order.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                node: node.clone(),
                is_learner: !voters.contains(id),
            })
            .collect();
        members.sort_by_key(|m| (m.is_learner, m.id));
        members
    }

    fn find(&self, id: NodeId) -> Option<Member> {
        self.members().into_iter().find(|m| m.id == id)
    }

    async fn change(&self, change: ChangeMembers<NodeId, MemberNode>) -> Result<(), StoreError> {
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(StoreError::NotLeader)
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(err))) => {
                Err(StoreError::InvalidArgument(err.to_string()))
            }
            Err(RaftError::Fatal(_)) => Err(StoreError::Stopped),
        }
    }

    /// Adds a member; returns its id. A voter counts toward quorum at once, as in etcd.
    pub async fn add_member(&self, node: MemberNode, learner: bool) -> Result<NodeId, StoreError> {
        let request = ForwardRequest::AddMember { node: node.clone(), learner };
        self.on_leader(request, || self.add_member_as_leader(node.clone(), learner)).await
    }

    async fn add_member_as_leader(
        &self,
        node: MemberNode,
        learner: bool,
    ) -> Result<NodeId, StoreError> {
        if !node.peer_url.starts_with("https://") && !node.peer_url.starts_with("http://") {
            return Err(StoreError::MemberBadUrls);
        }
        if self.members().iter().any(|m| m.node.peer_url == node.peer_url) {
            return Err(StoreError::PeerUrlExists);
        }
        let id = new_member_id(&node.peer_url);
        if learner {
            self.change(ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))).await?;
        } else {
            self.change(ChangeMembers::AddVoters(BTreeMap::from([(id, node)]))).await?;
        }
        Ok(id)
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), StoreError> {
        let request = ForwardRequest::RemoveMember { id };
        self.on_leader(request, || self.remove_member_as_leader(id)).await
    }

    async fn remove_member_as_leader(&self, id: NodeId) -> Result<(), StoreError> {
        let member = self.find(id).ok_or(StoreError::MemberNotFound)?;
        if !member.is_learner {
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id]))).await?;
        }
        self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await
    }

    pub async fn promote_member(&self, id: NodeId) -> Result<(), StoreError> {
        let request = ForwardRequest::PromoteMember { id };
        self.on_leader(request, || self.promote_member_as_leader(id)).await
    }

    async fn promote_member_as_leader(&self, id: NodeId) -> Result<(), StoreError> {
        let member = self.find(id).ok_or(StoreError::MemberNotFound)?;
        if !member.is_learner {
            return Err(StoreError::MemberNotLearner);
        }
        let ready = {
            let metrics = self.metrics.borrow();
            let leader_index = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|log_id| log_id.index)
                .unwrap_or(0);
            matched * 100 >= leader_index * PROMOTE_READY_PERCENT
        };
        if !ready {
            return Err(StoreError::LearnerNotReady);
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
    }

    /// Replaces what the cluster knows of a member (its URLs, or its name once started).
    pub async fn update_member(&self, id: NodeId, node: MemberNode) -> Result<(), StoreError> {
        let request = ForwardRequest::UpdateMember { id, node: node.clone() };
        self.on_leader(request, || self.update_member_as_leader(id, node.clone())).await
    }

    async fn update_member_as_leader(
        &self,
        id: NodeId,
        node: MemberNode,
    ) -> Result<(), StoreError> {
        let member = self.find(id).ok_or(StoreError::MemberNotFound)?;
        if member.node == node {
            return Ok(());
        }
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(id, node)]))).await
    }

    /// Admits a new master: the member `etcdctl member add` announced with its peer URL, or a
    /// new learner.
    pub async fn join(&self, node: MemberNode) -> Result<NodeId, StoreError> {
        let request = ForwardRequest::Join { node: node.clone() };
        self.on_leader(request, || self.join_as_leader(node.clone())).await
    }

    async fn join_as_leader(&self, node: MemberNode) -> Result<NodeId, StoreError> {
        if let Some(member) = self.members().into_iter().find(|m| m.node.peer_url == node.peer_url)
        {
            self.update_member_as_leader(member.id, node).await?;
            return Ok(member.id);
        }
        self.add_member_as_leader(node, true).await
    }

    /// Hands leadership to `target`, a voter in sync with the leader: it is told to campaign,
    /// and wins because its log is as long as any.
    pub async fn move_leader(&self, target: NodeId) -> Result<(), StoreError> {
        if !self.is_leader() {
            return Err(StoreError::NotLeader);
        }
        let member = self.find(target).ok_or(StoreError::BadLeaderTransferee)?;
        if member.is_learner {
            return Err(StoreError::BadLeaderTransferee);
        }
        if target == self.id {
            return Ok(());
        }
        let _: () = self.peers.forward(&member.node, &ForwardRequest::Campaign).await?;
        let mut waiter = self.raft.metrics();
        let moved = tokio::time::timeout(super::REQUEST_TIMEOUT, async {
            while waiter.borrow().current_leader != Some(target) {
                if waiter.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        moved.map_err(|_| StoreError::Timeout)
    }

    /// Serves a forwarded membership request: on the leader, or passed on to it (a joining
    /// master may ask any member).
    pub(crate) async fn serve_membership(
        &self,
        request: ForwardRequest,
    ) -> Result<Vec<u8>, StoreError> {
        let encoded = match request {
            ForwardRequest::AddMember { node, learner } => {
                bincode::serialize(&self.add_member(node, learner).await)
            }
            ForwardRequest::RemoveMember { id } => {
                bincode::serialize(&self.remove_member(id).await)
            }
            ForwardRequest::PromoteMember { id } => {
                bincode::serialize(&self.promote_member(id).await)
            }
            ForwardRequest::UpdateMember { id, node } => {
                bincode::serialize(&self.update_member(id, node).await)
            }
            ForwardRequest::Join { node } => bincode::serialize(&self.join(node).await),
            ForwardRequest::Campaign => {
                let started: Result<(), StoreError> =
                    self.raft.trigger().elect().await.map_err(|_| StoreError::Stopped);
                bincode::serialize(&started)
            }
            other => {
                return Err(StoreError::InvalidArgument(format!(
                    "not a membership request: {other:?}"
                )))
            }
        };
        encoded.map_err(StoreError::storage)
    }
}

/// Returns a fresh member id for a member added at runtime.
fn new_member_id(peer_url: &str) -> NodeId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    super::member_id(&nanos.to_string(), peer_url)
}
