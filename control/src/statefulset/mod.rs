//! The StatefulSet controller: stable, ordered pods with their own storage.
//!
//! Each reconcile lists the namespace's pods and claims and the set's ControllerRevisions from
//! the API (consistent reads, so a pod created by the previous step is always seen), asks
//! `plan` for the next step and executes it in the order the plan documents, stopping at the
//! first failed write: revisions, claims, ownership and label fixes, pods created then deleted,
//! old revisions, status. Every write is conditional (uid or resourceVersion preconditions),
//! so a controller acting on a stale view changes nothing.

mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ReflectHandle;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{
    self, already_exists, conflict, delete_if_uid, not_found, references_with, soon, write_status,
    Context,
};
use crate::events::EventType;

/// The field manager and event source the controller writes as.
const MANAGER: &str = "statefulset-controller";

type ReconcileError = controller::ReconcileError<plan::PlanError>;

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken, pods: ReflectHandle<Pod>) {
    let revisions: Api<ControllerRevision> = Api::all(client.clone());
    let owns = move |c: Controller<StatefulSet>| {
        c.owns_shared_stream(pods).owns(revisions, watcher::Config::default())
    };
    controller::run_with(client, term, MANAGER, reconcile, owns, ()).await;
}

async fn reconcile(set: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    if set.metadata.deletion_timestamp.is_some() {
        // Its pods and revisions are the garbage collector's now; a revision created here
        // would be collected again, round after round.
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.uid().unwrap_or_default();
    let client = &context.client;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let listed_pods = pods.list(&ListParams::default()).await?.items;
    let listed_claims = claims.list(&ListParams::default()).await?.items;
    let owned: Vec<ControllerRevision> = revisions
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect();
    let plan = plan::plan(&set, &listed_pods, &listed_claims, &owned, jiff::Timestamp::now())
        .map_err(ReconcileError::Plan)?;
    let post = context.post();
    let patch = context.patch();
    let record = |reason: &'static str, message: String| {
        let context = context.clone();
        let set = set.clone();
        async move { context.recorder.record(&*set, EventType::Normal, reason, &message).await }
    };

    // 1. The update revision the plan's pods and status name.
    if let Some(revision) = &plan.create_revision {
        match revisions.create(&post, revision).await {
            Ok(_) => {}
            Err(err) if already_exists(&err) => {
                let existing = revisions.get(&revision.name_any()).await?;
                let ours = existing
                    .owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == uid);
                if !(ours && existing.data == revision.data) {
                    // A hash collision: the next plan names the revision differently.
                    let mut status =
                        plan.status.clone().or_else(|| set.status.clone()).unwrap_or_default();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    let mut updated = (*set).clone();
                    updated.status = Some(status);
                    let sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
                    write_status(&sets, &post, &updated).await?;
                    return Ok(soon());
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(renumber) = &plan.renumber_revision {
        let body = json!({
            "metadata": { "resourceVersion": renumber.resource_version },
            "revision": renumber.revision,
        });
        match revisions.patch(&renumber.name, &patch, &Patch::Merge(&body)).await {
            Ok(_) => {}
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }

    // 2. Claims before the pods that mount them.
    let claim_pods = claim_owners(&plan.create_pods, &listed_pods);
    for claim in &plan.create_claims {
        match claims.create(&post, claim).await {
            Ok(created) => {
                let claim_name = created.name_any();
                let pod = claim_pods.get(&claim_name).cloned().unwrap_or_default();
                let message =
                    format!("create Claim {claim_name} Pod {pod} in StatefulSet {name} success");
                record("SuccessfulCreate", message).await;
            }
            Err(err) if already_exists(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    for change in &plan.patch_claims {
        let body = json!({
            "metadata": {
                "resourceVersion": change.resource_version,
                "ownerReferences": change.owner_references,
            },
        });
        match claims.patch(&change.name, &patch, &Patch::Merge(&body)).await {
            Ok(_) => {}
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }

    // 3. Ownership and identity labels.
    let controller_ref = plan::owner_reference(&set).map_err(ReconcileError::Plan)?;
    for pod in plan.adopt_pods.iter().chain(&plan.release_pods) {
        let Some(current) = listed_pods.iter().find(|p| p.name_any() == pod.name) else { continue };
        let references = references_with(current, &controller_ref, plan.adopt_pods.contains(pod));
        // The uid in the patch makes it fail if the pod was replaced under the same name.
        let body = json!({ "metadata": { "uid": pod.uid, "ownerReferences": references } });
        match pods.patch(&pod.name, &patch, &Patch::Merge(&body)).await {
            Ok(_) => {}
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }
    for change in &plan.patch_pods {
        let body = json!({
            "metadata": { "resourceVersion": change.resource_version, "labels": change.labels },
        });
        match pods.patch(&change.name, &patch, &Patch::Merge(&body)).await {
            Ok(_) => {
                let message =
                    format!("update Pod {} in StatefulSet {name} successful", change.name);
                record("SuccessfulUpdate", message).await;
            }
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }

    // 4. Pods, in the plan's order.
    for pod in &plan.create_pods {
        match pods.create(&post, pod).await {
            Ok(created) => {
                let message =
                    format!("create Pod {} in StatefulSet {name} successful", created.name_any());
                record("SuccessfulCreate", message).await;
            }
            // The previous incarnation is still terminating: its deletion event brings us back.
            Err(err) if already_exists(&err) => return Ok(soon()),
            Err(err) => {
                let message = format!(
                    "create Pod {} in StatefulSet {name} failed error: {err}",
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                context.recorder.record(&*set, EventType::Warning, "FailedCreate", &message).await;
                return Err(err.into());
            }
        }
    }
    for pod in &plan.delete_pods {
        if delete_if_uid(&pods, &pod.name, pod.uid.clone(), None).await? {
            let message = format!("delete Pod {} in StatefulSet {name} successful", pod.name);
            record("SuccessfulDelete", message).await;
        }
    }

    // 5. History, then status.
    for revision in &plan.delete_revisions {
        let uid = owned.iter().find(|r| r.name_any() == *revision).and_then(|r| r.uid());
        delete_if_uid(&revisions, revision, uid, None).await?;
    }
    if let Some(status) = plan.status.clone() {
        let mut updated = (*set).clone();
        updated.status = Some(status);
        let sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
        if !write_status(&sets, &post, &updated).await? {
            return Ok(soon());
        }
    }
    Ok(controller::recheck(plan.recheck_after))
}

/// Which pod mounts each claim, from the pods about to be created and the existing ones.
fn claim_owners(creating: &[Pod], existing: &[Pod]) -> BTreeMap<String, String> {
    let mut owners = BTreeMap::new();
    for pod in creating.iter().chain(existing) {
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        for volume in volumes.into_iter().flatten() {
            if let Some(claim) = &volume.persistent_volume_claim {
                owners.insert(claim.claim_name.clone(), pod.name_any());
            }
        }
    }
    owners
}
