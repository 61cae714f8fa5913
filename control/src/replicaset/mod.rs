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

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ReflectHandle;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, delete_if_uid, references_with, soon, write_status, Context};
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
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let listed = pods.list(&ListParams::default()).await?;
    let plan =
        plan::plan(&set, &listed.items, jiff::Timestamp::now()).map_err(ReconcileError::Plan)?;
    let post = context.post();
    for _ in 0..plan.create {
        let created = pods
            .create(&post, &plan::pod_from_template(&set).map_err(ReconcileError::Plan)?)
            .await?;
        let message = format!("Created pod: {}", created.name_any());
        context.recorder.record(&*set, EventType::Normal, "SuccessfulCreate", &message).await;
    }
    for victim in &plan.delete {
        let uid = listed.items.iter().find(|p| p.name_any() == *victim).and_then(|p| p.uid());
        if delete_if_uid(&pods, victim, uid, None).await? {
            let message = format!("Deleted pod: {victim}");
            context.recorder.record(&*set, EventType::Normal, "SuccessfulDelete", &message).await;
        }
    }
    let owner = plan::owner_reference(&set).map_err(ReconcileError::Plan)?;
    for pod in listed.items.iter() {
        let pod_name = pod.name_any();
        let keep = if plan.adopt.contains(&pod_name) {
            true
        } else if plan.release.contains(&pod_name) {
            false
        } else {
            continue;
        };
        let references = references_with(pod, &owner, keep);
        let version = pod.resource_version().unwrap_or_default();
        let patch =
            json!({ "metadata": { "resourceVersion": version, "ownerReferences": references } });
        pods.patch(&pod_name, &context.patch(), &Patch::Merge(&patch)).await?;
    }
    if let Some(status) = plan.status {
        let sets: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
        let mut updated = (*set).clone();
        updated.status = Some(status);
        if !write_status(&sets, &post, &updated).await? {
            return Ok(soon());
        }
    }
    // Availability after minReadySeconds comes with no event: look again when it is due.
    Ok(controller::recheck(plan.recheck_after))
}
