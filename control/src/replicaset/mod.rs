//! The ReplicaSet controller: keeps `spec.replicas` active pods for every ReplicaSet.
//!
//! Reconciles are keyed and deduplicated by kube-runtime; each one lists the namespace's pods
//! from the API (a consistent read, so a pod this controller just created is always seen and
//! never created twice), asks `plan` what to do, and writes: pods created from the template
//! under a controller reference, excess pods deleted with their uid as precondition, orphans
//! adopted and strays released with resourceVersion preconditions, and the status replaced
//! conditionally on the ReplicaSet's resourceVersion.

mod plan;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ReflectHandle;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, conflict, Context};
use crate::events::EventType;

/// The field manager the controller writes as.
const MANAGER: &str = "replicaset-controller";

type ReconcileError = controller::ReconcileError<plan::PlanError>;

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken, pods: ReflectHandle<Pod>) {
    let owns = move |c: Controller<ReplicaSet>| c.owns_shared_stream(pods);
    controller::run_with(client, term, MANAGER, reconcile, owns, ()).await;
}

async fn reconcile(set: Arc<ReplicaSet>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let listed = pods.list(&ListParams::default()).await?;
    let plan =
        plan::plan(&set, &listed.items, jiff::Timestamp::now()).map_err(ReconcileError::Plan)?;
    let post = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
    for _ in 0..plan.create {
        let created = pods
            .create(&post, &plan::pod_from_template(&set).map_err(ReconcileError::Plan)?)
            .await?;
        let message = format!("Created pod: {}", created.name_any());
        context.recorder.record(&*set, EventType::Normal, "SuccessfulCreate", &message).await;
    }
    for victim in &plan.delete {
        let uid = listed.items.iter().find(|p| p.name_any() == *victim).and_then(|p| p.uid());
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid, resource_version: None }),
            ..DeleteParams::default()
        };
        match pods.delete(victim, &params).await {
            Ok(_) => {
                let message = format!("Deleted pod: {victim}");
                context
                    .recorder
                    .record(&*set, EventType::Normal, "SuccessfulDelete", &message)
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    let owner = serde_json::to_value(plan::owner_reference(&set).map_err(ReconcileError::Plan)?)
        .unwrap_or_default();
    let patch_params =
        PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
    for pod in listed.items.iter() {
        let pod_name = pod.name_any();
        let version = pod.resource_version().unwrap_or_default();
        let references = if plan.adopt.contains(&pod_name) {
            let mut references: Vec<serde_json::Value> = pod
                .owner_references()
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            references.push(owner.clone());
            references
        } else if plan.release.contains(&pod_name) {
            pod.owner_references()
                .iter()
                .filter(|r| r.uid != set.uid().unwrap_or_default())
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect()
        } else {
            continue;
        };
        let patch =
            json!({ "metadata": { "resourceVersion": version, "ownerReferences": references } });
        pods.patch(&pod_name, &patch_params, &Patch::Merge(&patch)).await?;
    }
    if let Some(status) = plan.status {
        let sets: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
        let mut updated = (*set).clone();
        updated.status = Some(status);
        // Conditional on the version this reconcile read: a stale view never overwrites.
        match sets.replace_status(&name, &post, &updated).await {
            Ok(_) => {}
            Err(err) if conflict(&err) => return Ok(Action::requeue(Duration::from_millis(100))),
            Err(err) => return Err(err.into()),
        }
    }
    // Availability after minReadySeconds comes with no event: look again when it is due.
    let recheck = plan
        .recheck_after
        .and_then(|after| Duration::try_from(after).ok())
        .unwrap_or(Duration::from_secs(300));
    Ok(Action::requeue(recheck))
}
