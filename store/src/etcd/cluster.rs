//! The Cluster service: etcd membership calls mapped onto Raft membership.

use etcd_client::proto::*;
use tonic::{Request, Response, Status};

use super::{current_header, status, MasterStore};
use crate::raft::{Member, MemberNode};
use crate::StoreError;

pub struct ClusterService {
    store: MasterStore,
}

impl ClusterService {
    pub fn new(store: MasterStore) -> Self {
        ClusterService { store }
    }

    /// Returns the members after bringing this replica up to date, so a change acknowledged
    /// anywhere is visible here.
    async fn members(&self) -> Result<Vec<PbMember>, Status> {
        crate::Consensus::read_barrier(self.store.consensus()).await.map_err(status)?;
        Ok(self.store.consensus().members().into_iter().map(member).collect())
    }
}

fn member(m: Member) -> PbMember {
    PbMember {
        id: m.id,
        name: m.node.name,
        peer_ur_ls: vec![m.node.peer_url],
        client_ur_ls: m.node.client_urls,
        is_learner: m.is_learner,
    }
}

fn single_peer_url(urls: Vec<String>) -> Result<String, Status> {
    match <[String; 1]>::try_from(urls) {
        Ok([url]) if url.starts_with("https://") || url.starts_with("http://") => Ok(url),
        _ => Err(status(StoreError::MemberBadUrls)),
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(
        &self,
        request: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        let request = request.into_inner();
        let peer_url = single_peer_url(request.peer_ur_ls)?;
        let node = MemberNode { name: String::new(), peer_url, client_urls: Vec::new() };
        let consensus = self.store.consensus();
        let is_learner = request.is_learner;
        let id = consensus.add_member(node.clone(), is_learner).await.map_err(status)?;
        let members = self.members().await?;
        Ok(Response::new(PbMemberAddResponse {
            header: Some(current_header(&self.store)),
            member: Some(member(Member { id, node, is_learner })),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        self.store.consensus().remove_member(id).await.map_err(status)?;
        Ok(Response::new(PbMemberRemoveResponse {
            header: Some(current_header(&self.store)),
            members: self.members().await?,
        }))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        let request = request.into_inner();
        let peer_url = single_peer_url(request.peer_ur_ls)?;
        let consensus = self.store.consensus();
        let current = consensus
            .members()
            .into_iter()
            .find(|m| m.id == request.id)
            .ok_or_else(|| status(StoreError::MemberNotFound))?;
        let node = MemberNode { peer_url, ..current.node };
        consensus.update_member(request.id, node).await.map_err(status)?;
        Ok(Response::new(PbMemberUpdateResponse {
            header: Some(current_header(&self.store)),
            members: self.members().await?,
        }))
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        // Always linearizable, whatever the request asks (etcd 3.4 serves its local view): a
        // member added or removed through any member is then listed by every member.
        let members = self.members().await?;
        Ok(Response::new(PbMemberListResponse {
            header: Some(current_header(&self.store)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        self.store.consensus().promote_member(id).await.map_err(status)?;
        Ok(Response::new(PbMemberPromoteResponse {
            header: Some(current_header(&self.store)),
            members: self.members().await?,
        }))
    }
}
