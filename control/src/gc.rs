//! The garbage collector: deletes dependents whose owners are gone (background deletion),
//! deletes the dependents of owners deleted in the foreground before releasing them, and
//! unhooks the dependents of owners deleted with orphaning.
//!
//! It keeps watch caches of the kinds controllers create and the kinds that own them, and
//! runs a round over those caches whenever they change (at most every [`ROUND`]). The caches
//! decide only what to look at: before a dependent is deleted because its owner is missing
//! from the cache, the owner is looked up live by name and its uid compared, so a lagging cache
//! never deletes anything. Every write is conditional (uid preconditions on deletes,
//! resourceVersion on ownerReference and finalizer edits).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::controller::{cache_with, conflict, not_found};

/// The shortest time between two rounds.
const ROUND: Duration = Duration::from_secs(1);
/// A round runs at least this often, changes or not.
const RESYNC: Duration = Duration::from_secs(30);
const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// Every kind the collector watches: the kinds controllers create (dependents) and the kinds
/// that own them. An owner of a kind not listed is assumed alive.
fn kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<ReplicaSet>(&()),
        ApiResource::erase::<ControllerRevision>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<PersistentVolumeClaim>(&()),
        ApiResource::erase::<EndpointSlice>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<DaemonSet>(&()),
        ApiResource::erase::<CronJob>(&()),
        ApiResource::erase::<Service>(&()),
    ]
}

/// A cache of one kind.
struct Cache {
    resource: ApiResource,
    store: Store<DynamicObject>,
}

fn cache(
    client: &kube::Client,
    resource: ApiResource,
    changed: Arc<Notify>,
    term: CancellationToken,
) -> Cache {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let store = cache_with(api, resource.clone(), term, Some(changed));
    Cache { resource, store }
}

/// Runs rounds until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    let changed = Arc::new(Notify::new());
    let caches: Vec<Cache> = kinds()
        .into_iter()
        .map(|resource| cache(&client, resource, changed.clone(), term.clone()))
        .collect();
    for cache in &caches {
        tokio::select! {
            _ = term.cancelled() => return,
            ready = cache.store.wait_until_ready() => if ready.is_err() { return },
        }
    }
    loop {
        if let Err(err) = round(&client, &caches).await {
            tracing::debug!(error = %err, "garbage collection round failed");
        }
        tokio::select! {
            biased;
            _ = term.cancelled() => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(ROUND).await;
    }
}

/// Owner lookups made live during one round: (namespace, kind, name) → uid if it exists.
type Lookups = HashMap<(String, String, String), Option<String>>;

async fn round(client: &kube::Client, caches: &[Cache]) -> Result<(), kube::Error> {
    let all: Vec<(&ApiResource, Arc<DynamicObject>)> = caches
        .iter()
        .flat_map(|cache| cache.store.state().into_iter().map(move |o| (&cache.resource, o)))
        .collect();
    let cached_uids: HashSet<String> = all.iter().filter_map(|(_, o)| o.uid()).collect();
    let mut dependents_of: BTreeMap<String, Vec<(&ApiResource, &DynamicObject)>> = BTreeMap::new();
    for (resource, object) in &all {
        for reference in object.owner_references() {
            dependents_of.entry(reference.uid.clone()).or_default().push((resource, object));
        }
    }
    let mut lookups = Lookups::new();

    // Background: a dependent all of whose owners are gone goes too.
    for (resource, object) in &all {
        let references = object.owner_references();
        if references.is_empty() || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if references.iter().any(|r| cached_uids.contains(&r.uid)) {
            continue;
        }
        let namespace = object.namespace().unwrap_or_default();
        let mut alive = false;
        for reference in references {
            let uid = owner_uid(client, &mut lookups, &namespace, reference).await?;
            if uid.as_deref() == Some(&reference.uid) {
                alive = true;
                break;
            }
        }
        if !alive {
            tracing::info!(kind = %resource.kind, name = %object.name_any(), "deleting a dependent whose owners are gone");
            delete(client, resource, object, "Background").await?;
        }
    }

    // Objects deleted in the foreground or with orphaning, whatever their kind.
    for (resource, object) in &all {
        if object.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let finalizers = object.finalizers();
        let uid = object.uid().unwrap_or_default();
        let mine = dependents_of.get(&uid).map(Vec::as_slice).unwrap_or_default();
        if finalizers.iter().any(|f| f == ORPHAN) {
            let mut unhooked = true;
            for (dependent_resource, dependent) in mine {
                unhooked &= unhook(client, dependent_resource, dependent, &uid).await?;
            }
            // Released only once no dependent points at it: a dependent still pointing at a
            // gone owner would be collected.
            if unhooked {
                release(client, resource, object, ORPHAN).await?;
            }
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            // Only dependents that block their owner's deletion keep it waiting.
            let blocking = mine.iter().filter(|(_, d)| {
                d.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            });
            if blocking.clone().next().is_none() {
                release(client, resource, object, FOREGROUND).await?;
            }
            for (dependent_resource, dependent) in mine {
                if dependent.metadata.deletion_timestamp.is_none() {
                    delete(client, dependent_resource, dependent, "Foreground").await?;
                }
            }
        }
    }
    Ok(())
}

/// The uid of the owner a reference names, looked up live once per round.
async fn owner_uid(
    client: &kube::Client,
    lookups: &mut Lookups,
    namespace: &str,
    reference: &OwnerReference,
) -> Result<Option<String>, kube::Error> {
    let key = (namespace.to_string(), reference.kind.clone(), reference.name.clone());
    if let Some(uid) = lookups.get(&key) {
        return Ok(uid.clone());
    }
    let Some(resource) = kinds()
        .into_iter()
        .find(|r| r.kind == reference.kind && r.api_version == reference.api_version)
    else {
        // An owner of a kind this collector does not know is assumed alive.
        return Ok(Some(reference.uid.clone()));
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let uid = api.get_opt(&reference.name).await?.and_then(|owner| owner.uid());
    lookups.insert(key, uid.clone());
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
        Err(err) if not_found(&err) || conflict(&err) => Ok(()),
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
        Err(err) if not_found(&err) => Ok(true),
        Err(err) if conflict(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Removes a finalizer this collector handled.
async fn release(
    client: &kube::Client,
    resource: &ApiResource,
    object: &DynamicObject,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &object.namespace().unwrap_or_default(), resource);
    let kept: Vec<&String> = object.finalizers().iter().filter(|f| *f != finalizer).collect();
    let patch =
        json!({ "metadata": { "resourceVersion": object.resource_version(), "finalizers": kept } });
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(err) if not_found(&err) || conflict(&err) => Ok(()),
        Err(err) => Err(err),
    }
}
