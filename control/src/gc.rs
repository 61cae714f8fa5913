//! The garbage collector: deletes dependents whose owners are gone (background deletion),
//! deletes the dependents of owners deleted in the foreground before releasing them, and
//! unhooks the dependents of owners deleted with orphaning.
//!
//! It works by rounds over the kinds controllers create (pods, ReplicaSets, ControllerRevisions,
//! Jobs) and the kinds that own them; an owner is looked up live by name before a dependent is
//! deleted, and its uid must match, so a stale view never deletes anything. Every write is
//! conditional (uid preconditions on deletes, resourceVersion on ownerReference and finalizer
//! edits).

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
};
use kube::ResourceExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How often a round runs.
const ROUND: Duration = Duration::from_secs(2);
const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// The kinds scanned as dependents, then the kinds that may own them (dependents included).
fn dependents() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<ReplicaSet>(&()),
        ApiResource::erase::<ControllerRevision>(&()),
        ApiResource::erase::<Job>(&()),
    ]
}

fn owners() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<ReplicaSet>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<DaemonSet>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<CronJob>(&()),
    ]
}

/// Runs rounds until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    loop {
        if let Err(err) = round(&client).await {
            tracing::debug!(error = %err, "garbage collection round failed");
        }
        tokio::select! {
            biased;
            _ = term.cancelled() => return,
            _ = tokio::time::sleep(ROUND) => {}
        }
    }
}

/// What is known of an owner this round: its uid if it exists.
type Owners = HashMap<(String, String, String), Option<String>>;

async fn round(client: &kube::Client) -> Result<(), kube::Error> {
    let mut known: Owners = HashMap::new();
    let mut all: Vec<(ApiResource, DynamicObject)> = Vec::new();
    for resource in dependents() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        all.extend(
            api.list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .map(|o| (resource.clone(), o)),
        );
    }
    // Background: a dependent all of whose owners are gone goes too.
    for (resource, object) in &all {
        let references = object.owner_references();
        if references.is_empty() || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let namespace = object.namespace().unwrap_or_default();
        let mut alive = false;
        for reference in references {
            if owner_uid(client, &mut known, &namespace, reference).await?.as_deref()
                == Some(&reference.uid)
            {
                alive = true;
                break;
            }
        }
        if !alive {
            tracing::info!(kind = %resource.kind, name = %object.name_any(), "deleting a dependent whose owners are gone");
            delete(client, resource, object, "Background").await?;
        }
    }
    // Owners deleted in the foreground or with orphaning.
    for resource in owners() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for owner in api.list(&ListParams::default()).await?.items {
            if owner.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let finalizers = owner.finalizers().to_vec();
            let uid = owner.uid().unwrap_or_default();
            let mine: Vec<&(ApiResource, DynamicObject)> = all
                .iter()
                .filter(|(_, o)| o.owner_references().iter().any(|r| r.uid == uid))
                .collect();
            if finalizers.iter().any(|f| f == ORPHAN) {
                let mut unhooked = true;
                for (dependent_resource, dependent) in &mine {
                    unhooked &= unhook(client, dependent_resource, dependent, &uid).await?;
                }
                // Released only once no dependent points at it: a dependent still pointing at
                // a gone owner would be collected.
                if unhooked {
                    release(client, &resource, &owner, ORPHAN).await?;
                }
            } else if finalizers.iter().any(|f| f == FOREGROUND) {
                if mine.is_empty() {
                    release(client, &resource, &owner, FOREGROUND).await?;
                }
                for (dependent_resource, dependent) in mine {
                    if dependent.metadata.deletion_timestamp.is_none() {
                        delete(client, dependent_resource, dependent, "Foreground").await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The uid of the owner a reference names, looked up live once per round.
async fn owner_uid(
    client: &kube::Client,
    known: &mut Owners,
    namespace: &str,
    reference: &OwnerReference,
) -> Result<Option<String>, kube::Error> {
    let key = (namespace.to_string(), reference.kind.clone(), reference.name.clone());
    if let Some(uid) = known.get(&key) {
        return Ok(uid.clone());
    }
    let Some(resource) = owners()
        .into_iter()
        .find(|r| r.kind == reference.kind && r.api_version == reference.api_version)
    else {
        // An owner of a kind this collector does not know is assumed alive.
        return Ok(Some(reference.uid.clone()));
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let uid = api.get_opt(&reference.name).await?.and_then(|owner| owner.uid());
    known.insert(key, uid.clone());
    Ok(uid)
}

async fn delete(
    client: &kube::Client,
    resource: &ApiResource,
    object: &DynamicObject,
    policy: &str,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &object.namespace().unwrap_or_default(), resource);
    let mut params = DeleteParams {
        preconditions: Some(Preconditions { uid: object.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    params.propagation_policy = Some(if policy == "Foreground" {
        kube::api::PropagationPolicy::Foreground
    } else {
        kube::api::PropagationPolicy::Background
    });
    match api.delete(&object.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Drops the reference to `owner_uid` from a dependent; false when the dependent changed
/// meanwhile (the next round tries again).
async fn unhook(
    client: &kube::Client,
    resource: &ApiResource,
    object: &DynamicObject,
    owner_uid: &str,
) -> Result<bool, kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &object.namespace().unwrap_or_default(), resource);
    let kept: Vec<&OwnerReference> =
        object.owner_references().iter().filter(|r| r.uid != owner_uid).collect();
    let patch = json!({ "metadata": { "resourceVersion": object.resource_version(), "ownerReferences": kept } });
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Removes a finalizer this collector handled from an owner.
async fn release(
    client: &kube::Client,
    resource: &ApiResource,
    owner: &DynamicObject,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &owner.namespace().unwrap_or_default(), resource);
    let kept: Vec<&String> = owner.finalizers().iter().filter(|f| *f != finalizer).collect();
    let patch =
        json!({ "metadata": { "resourceVersion": owner.resource_version(), "finalizers": kept } });
    match api.patch(&owner.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}
