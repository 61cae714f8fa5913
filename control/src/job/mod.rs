//! The Job controller: runs pods to completion, counting each finished pod exactly once.
//!
//! Each reconcile lists the namespace's pods from the API, asks `plan` what to do and executes
//! it in the plan's order: adoption and release, deletions, creations, then the status (every
//! later step waits for it: a tracking finalizer is removed only after the pod's outcome is in
//! the status), finalizer removals, the TTL deletion of a finished Job, and events. Every pod
//! write carries the pod's resourceVersion (or uid) as precondition.

mod plan;

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ReflectHandle;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{
    self, conflict, delete_if_uid, not_found, references_with, soon, write_status, Context,
};
use plan::{PodRef, TRACKING_FINALIZER};

/// The field manager and event source the controller writes as.
const MANAGER: &str = "job-controller";

type ReconcileError = controller::ReconcileError<plan::PlanError>;

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken, pods: ReflectHandle<Pod>) {
    let owns = move |c: Controller<Job>| c.owns_shared_stream(pods);
    controller::run_with(client, term, MANAGER, reconcile, owns, ()).await;
}

/// Rewrites `pod`'s ownerReferences (adding or dropping `ownership.0` as `ownership.1` says,
/// or keeping them) and its tracking finalizer (present when `tracked`), conditional on the
/// version the plan read. Returns false when the pod changed or vanished meanwhile (the next
/// reconcile looks again).
async fn rewrite_pod(
    pods: &Api<Pod>,
    context: &Context,
    pod: &PodRef,
    listed: &[Pod],
    ownership: Option<(&OwnerReference, bool)>,
    tracked: bool,
) -> Result<bool, kube::Error> {
    let Some(current) = listed.iter().find(|p| p.name_any() == pod.name) else { return Ok(true) };
    let references = match ownership {
        Some((owner, keep)) => references_with(current, owner, keep),
        None => current.owner_references().to_vec(),
    };
    let mut finalizers: Vec<String> =
        current.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).cloned().collect();
    if tracked {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let body = json!({
        "metadata": {
            "uid": pod.uid,
            "resourceVersion": pod.resource_version,
            "ownerReferences": references,
            "finalizers": finalizers,
        },
    });
    match pods.patch(&pod.name, &context.patch(), &Patch::Merge(&body)).await {
        Ok(_) => Ok(true),
        Err(err) if conflict(&err) || not_found(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let listed = pods.list(&ListParams::default()).await?.items;
    let now = jiff::Timestamp::now();
    let plan = plan::plan(&job, &listed, now).map_err(ReconcileError::Plan)?;
    let owner = plan::owner_reference(&job).map_err(ReconcileError::Plan)?;

    for pod in &plan.adopt {
        if !rewrite_pod(&pods, &context, pod, &listed, Some((&owner, true)), true).await? {
            return Ok(soon());
        }
    }
    for pod in &plan.release {
        if !rewrite_pod(&pods, &context, pod, &listed, Some((&owner, false)), false).await? {
            return Ok(soon());
        }
    }
    for deletion in &plan.delete {
        if deletion.remove_finalizer_first
            && !rewrite_pod(&pods, &context, &deletion.pod, &listed, None, false).await?
        {
            return Ok(soon());
        }
        delete_if_uid(&pods, &deletion.pod.name, Some(deletion.pod.uid.clone()), None).await?;
    }
    for pod in &plan.create {
        let created = pods.create(&context.post(), pod).await?;
        let event = plan::pod_created_event(&created.name_any());
        context.recorder.record(&*job, event.type_, &event.reason, &event.message).await;
    }
    if let Some(status) = plan.status.clone() {
        let mut updated = (*job).clone();
        updated.status = Some(status);
        // Nothing below runs if it fails.
        let jobs = Api::<Job>::namespaced(context.client.clone(), &namespace);
        if !write_status(&jobs, &context.post(), &updated).await? {
            return Ok(soon());
        }
    }
    for pod in &plan.remove_finalizers {
        if !rewrite_pod(&pods, &context, pod, &listed, None, false).await? {
            return Ok(soon());
        }
    }
    for event in &plan.events {
        context.recorder.record(&*job, event.type_, &event.reason, &event.message).await;
    }
    if let Some(at) = plan.delete_job_at {
        if now >= at {
            let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
            let background = Some(PropagationPolicy::Background);
            delete_if_uid(&jobs, &name, Some(uid), background).await?;
            return Ok(Action::await_change());
        }
    }
    Ok(controller::recheck(plan.recheck_after))
}
