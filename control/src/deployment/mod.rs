//! The Deployment controller: rolls ReplicaSets toward the Deployment's template.
//!
//! Each reconcile lists the namespace's ReplicaSets from the API (a consistent read), keeps the
//! ones this Deployment controls, asks `plan` what to do, and writes: a new ReplicaSet for a
//! new template, ReplicaSets replaced conditionally on the resourceVersion read (so two
//! controllers can never both move a rollout), old ReplicaSets beyond the history limit
//! deleted, and the status replaced conditionally.

mod plan;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, conflict, delete_if_uid, soon, write_status, Context};
use crate::events::EventType;

/// The field manager the controller writes as.
const MANAGER: &str = "deployment-controller";

type ReconcileError = controller::ReconcileError<plan::PlanError>;

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    controller::run::<Deployment, ReplicaSet, _, _>(client, term, MANAGER, reconcile).await;
}

async fn reconcile(
    deployment: Arc<Deployment>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = deployment.namespace().unwrap_or_default();
    let uid = deployment.uid().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
    let owned: Vec<ReplicaSet> = sets
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|set| {
            set.owner_references().iter().any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let plan =
        plan::plan(&deployment, &owned, jiff::Timestamp::now()).map_err(ReconcileError::Plan)?;
    let post = context.post();
    if let Some(new_set) = &plan.create {
        match sets.create(&post, new_set).await {
            Ok(created) => {
                let to = created.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                scaled(&context, &deployment, &created.name_any(), 0, to).await;
            }
            // Created by an earlier reconcile whose answer was lost: the next one sees it.
            Err(err) if conflict(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }
    for set in &plan.update {
        // Conditional on the resourceVersion this reconcile read.
        match sets.replace(&set.name_any(), &post, set).await {
            Ok(_) => {
                let replicas =
                    |s: &ReplicaSet| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let before = owned.iter().find(|o| o.name_any() == set.name_any()).map(replicas);
                if let Some(from) = before.filter(|from| *from != replicas(set)) {
                    scaled(&context, &deployment, &set.name_any(), from, replicas(set)).await;
                }
            }
            Err(err) if conflict(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }
    for name in &plan.delete {
        let uid = owned.iter().find(|s| s.name_any() == *name).and_then(|s| s.uid());
        delete_if_uid(&sets, name, uid, None).await?;
    }
    if let Some(status) = plan.status {
        let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
        let mut updated = (*deployment).clone();
        updated.status = Some(status);
        if !write_status(&deployments, &post, &updated).await? {
            return Ok(soon());
        }
    }
    // Progress deadlines come with no event: look again when one is due.
    Ok(controller::recheck(plan.recheck_after))
}

/// Records a `ScalingReplicaSet` event as the Deployment controller words it.
async fn scaled(context: &Context, deployment: &Deployment, set: &str, from: i32, to: i32) {
    let direction = if to > from { "up" } else { "down" };
    let message = format!("Scaled {direction} replica set {set} from {from} to {to}");
    context.recorder.record(deployment, EventType::Normal, "ScalingReplicaSet", &message).await;
}
