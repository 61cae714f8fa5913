//! The DaemonSet controller: one pod on every eligible node, replaced node by node on an update.
//!
//! A reconcile runs for each DaemonSet when it, one of its pods or revisions, or any node
//! changes. It reads the namespace's pods and the set's ControllerRevisions from the API
//! (consistent reads: pods this controller just created are seen, never created twice), the
//! nodes from a watch cache, asks `plan` what to do and executes it in the plan's order, each
//! write conditional on the uid or resourceVersion it was planned from. The failed-pod backoff
//! the plan returns is kept per DaemonSet between reconciles.

mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{
    self, already_exists, conflict, delete_if_uid, not_found, references_with, soon, write_status,
    Context,
};
use crate::events::EventType;
use plan::{FailedPodBackoff, CONTROLLER_REVISION_HASH_LABEL};

/// The field manager and event source the controller writes as.
const MANAGER: &str = "daemonset-controller";

type ReconcileError = controller::ReconcileError<plan::PlanError>;

/// What reconciles share: the nodes' cache and each DaemonSet's failed-pod backoff.
pub struct State {
    nodes: Store<Node>,
    backoff: Mutex<HashMap<String, FailedPodBackoff>>,
}

/// Runs the controller until `term` is cancelled.
pub async fn run(
    client: kube::Client,
    term: CancellationToken,
    pods: ReflectHandle<Pod>,
    nodes: Store<Node>,
    node_changes: ReflectHandle<Node>,
) {
    let revisions: Api<ControllerRevision> = Api::all(client.clone());
    let owns = move |c: Controller<DaemonSet>| {
        let sets = c.store();
        c.owns_shared_stream(pods)
            .owns(revisions, watcher::Config::default())
            .watches_shared_stream(node_changes, move |_: Arc<Node>| {
                sets.state().iter().map(|set| ObjectRef::from_obj(&**set)).collect::<Vec<_>>()
            })
    };
    let state = State { nodes, backoff: Mutex::default() };
    controller::run_with(client, term, MANAGER, reconcile, owns, state).await;
}

/// Patches an object's metadata, failing if its uid changed; false if it changed or vanished.
async fn patch_metadata<K>(
    api: &Api<K>,
    context: &Context<State>,
    name: &str,
    metadata: serde_json::Value,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = json!({ "metadata": metadata });
    match api.patch(name, &context.patch(), &Patch::Merge(&body)).await {
        Ok(_) => Ok(true),
        Err(err) if conflict(&err) || not_found(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

async fn reconcile(
    set: Arc<DaemonSet>,
    context: Arc<Context<State>>,
) -> Result<Action, ReconcileError> {
    let namespace = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let client = &context.client;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    // A node missing from a cache still filling would look like a node the set left.
    if context.state.nodes.wait_until_ready().await.is_err() {
        return Ok(soon());
    }
    let listed_pods = pods.list(&ListParams::default()).await?.items;
    let listed_revisions = revisions.list(&ListParams::default()).await?.items;
    let nodes: Vec<Node> = context.state.nodes.state().iter().map(|n| (**n).clone()).collect();
    let backoff = {
        let all = context.state.backoff.lock().map_err(|_| poisoned())?;
        all.get(&uid).cloned().unwrap_or_else(FailedPodBackoff::new)
    };
    let now = jiff::Timestamp::now();
    let plan = plan::plan(&set, &nodes, &listed_pods, &listed_revisions, &backoff, now)
        .map_err(ReconcileError::Plan)?;
    {
        let mut all = context.state.backoff.lock().map_err(|_| poisoned())?;
        if plan.backoff.is_empty() {
            all.remove(&uid);
        } else {
            all.insert(uid.clone(), plan.backoff.clone());
        }
    }
    let post = context.post();
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), &namespace);

    if let Some(revision) = &plan.create_revision {
        match revisions.create(&post, revision).await {
            Ok(_) => {}
            Err(err) if already_exists(&err) => {
                // A hash collision with a revision the plan did not see: rename next time.
                let mut updated = (*set).clone();
                let mut status =
                    plan.status.clone().or_else(|| set.status.clone()).unwrap_or_default();
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                updated.status = Some(status);
                write_status(&sets, &post, &updated).await?;
                return Ok(soon());
            }
            Err(err) => return Err(err.into()),
        }
    }
    for revision in &plan.update_revisions {
        match revisions.replace(&revision.name_any(), &post, revision).await {
            Ok(_) => {}
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }
    let owner = plan::owner_reference(&set).map_err(ReconcileError::Plan)?;
    for revision in &plan.adopt_revisions {
        let Some(current) = listed_revisions.iter().find(|r| r.name_any() == revision.name) else {
            continue;
        };
        let metadata = json!({
            "uid": revision.uid,
            "ownerReferences": references_with(current, &owner, true),
        });
        if !patch_metadata(&revisions, &context, &revision.name, metadata).await? {
            return Ok(soon());
        }
    }
    let ownership = plan.adopt_pods.iter().map(|p| (p, true));
    for (pod, keep) in ownership.chain(plan.release_pods.iter().map(|p| (p, false))) {
        let Some(current) = listed_pods.iter().find(|p| p.name_any() == pod.name) else { continue };
        let metadata = json!({
            "uid": pod.uid,
            "ownerReferences": references_with(current, &owner, keep),
        });
        if !patch_metadata(&pods, &context, &pod.name, metadata).await? {
            return Ok(soon());
        }
    }
    for pod in &plan.relabel_pods {
        let metadata =
            json!({ "uid": pod.uid, "labels": { CONTROLLER_REVISION_HASH_LABEL: plan.hash } });
        if !patch_metadata(&pods, &context, &pod.name, metadata).await? {
            return Ok(soon());
        }
    }
    for pod in &plan.create_pods {
        match pods.create(&post, pod).await {
            Ok(created) => {
                let message = format!("Created pod: {}", created.name_any());
                context
                    .recorder
                    .record(&*set, EventType::Normal, "SuccessfulCreate", &message)
                    .await;
            }
            Err(err) => {
                let message = format!("Error creating: {err}");
                context.recorder.record(&*set, EventType::Warning, "FailedCreate", &message).await;
                return Err(err.into());
            }
        }
    }
    for pod in &plan.delete_pods {
        if delete_if_uid(&pods, &pod.name, pod.uid.clone(), None).await? {
            let message = format!("Deleted pod: {}", pod.name);
            context.recorder.record(&*set, EventType::Normal, "SuccessfulDelete", &message).await;
        }
    }
    for revision in &plan.delete_revisions {
        delete_if_uid(&revisions, &revision.name, revision.uid.clone(), None).await?;
    }
    for event in &plan.events {
        context.recorder.record(&*set, event.type_, event.reason, &event.message).await;
    }
    if let Some(status) = plan.status.clone() {
        let mut updated = (*set).clone();
        updated.status = Some(status);
        if !write_status(&sets, &post, &updated).await? {
            return Ok(soon());
        }
    }
    Ok(controller::recheck(plan.recheck_after))
}

fn poisoned() -> ReconcileError {
    ReconcileError::Api(kube::Error::Service("the backoff lock was poisoned".into()))
}
