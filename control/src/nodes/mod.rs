//! Nodes: matching placement rules against them (shared by the scheduler, the DaemonSet
//! controller and the volume binder), the controller that gives each Node a pod CIDR
//! (`spec.podCIDR`), and the lifecycle controller ([`lifecycle`]) that judges nodes by their
//! agents' gossip liveness and keeps their conditions, condition taints and pods in line.

mod cidr;
pub mod lifecycle;
pub mod placement;
mod taints;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, conflict, not_found, soon, Context};
pub use placement::{term_matches, tolerates, NODE_NAME_FIELD};

/// The field manager the controller writes as.
const MANAGER: &str = "node-controller";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// The nodes' cache and the pod CIDRs handed out but perhaps not yet in it.
pub struct State {
    nodes: Store<Node>,
    reserved: Mutex<BTreeSet<u32>>,
}

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken, nodes: Store<Node>) {
    let state = State { nodes, reserved: Mutex::default() };
    let nothing_else = |c: Controller<Node>| c;
    controller::run_with(client, term, MANAGER, reconcile, nothing_else, state).await;
}

async fn reconcile(
    node: Arc<Node>,
    context: Arc<Context<State>>,
) -> Result<Action, ReconcileError> {
    let mut spec = serde_json::Map::new();
    let mut allocated = None;
    if node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).is_none_or(str::is_empty) {
        // Blocks are handed out from what the cache holds: until it holds every Node (a new
        // leader's starts empty), a block some Node already has would be handed out again.
        if context.state.nodes.wait_until_ready().await.is_err() {
            return Ok(soon());
        }
        let taken: BTreeSet<u32> = context
            .state
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(cidr::index_of))
            .collect();
        let Ok(mut reserved) = context.state.reserved.lock() else { return Ok(soon()) };
        let Ok(index) = cidr::first_free(&taken, &reserved) else {
            tracing::warn!(node = %node.name_any(), "{}", cidr::CidrError::Exhausted);
            return Ok(Action::requeue(std::time::Duration::from_secs(60)));
        };
        reserved.insert(index);
        allocated = Some(index);
        let block = cidr::block(index);
        spec.insert("podCIDR".into(), json!(block));
        spec.insert("podCIDRs".into(), json!([block]));
    }
    if spec.is_empty() {
        return Ok(Action::await_change());
    }
    let body = json!({
        "metadata": { "resourceVersion": node.resource_version() },
        "spec": spec,
    });
    let nodes: Api<Node> = Api::all(context.client.clone());
    let written = nodes.patch(&node.name_any(), &context.patch(), &Patch::Merge(&body)).await;
    if written.is_err() {
        // The block was not given: hand it out again.
        if let (Some(index), Ok(mut reserved)) = (allocated, context.state.reserved.lock()) {
            reserved.remove(&index);
        }
    }
    match written {
        Ok(_) => Ok(Action::await_change()),
        Err(err) if conflict(&err) || not_found(&err) => Ok(soon()),
        Err(err) => Err(err.into()),
    }
}
