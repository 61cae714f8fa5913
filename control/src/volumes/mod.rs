//! The PersistentVolume controller: binds claims to statically created volumes and reclaims
//! volumes whose claims are gone.
//!
//! It keeps watch caches of volumes, claims, StorageClasses and nodes; whenever one changes
//! (changes arriving together are taken as one) it plans over all of them with [`plan::plan`]
//! and executes each operation's writes in order, every write conditional on the
//! resourceVersion it was planned from, so a decision made on a stale cache fails instead of
//! overwriting. A volume is released only after its claim's absence is confirmed with a live
//! read, as upstream does, since a cache that lags must never release a bound volume.

pub(crate) mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ReflectHandle, Store};
use kube::ResourceExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::controller::{cache, conflict, delete_if_uid, not_found};
use crate::events::Recorder;
use plan::{Operation, Write};

/// The field manager and event source the controller writes as.
const MANAGER: &str = "persistentvolume-controller";
/// Changes arriving within this window are planned together.
const SETTLE: Duration = Duration::from_millis(50);
/// Plans again this often even without changes (upstream's periodic resync).
const RESYNC: Duration = Duration::from_secs(15);

/// The caches the controller plans over.
struct Caches {
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
}

/// Runs the controller until `term` is cancelled.
pub async fn run(
    client: kube::Client,
    term: CancellationToken,
    nodes: Store<Node>,
    node_changes: ReflectHandle<Node>,
) {
    let changed = Arc::new(Notify::new());
    let caches = Caches {
        volumes: cache(Api::all(client.clone()), term.clone(), Some(changed.clone())),
        claims: cache(Api::all(client.clone()), term.clone(), Some(changed.clone())),
        classes: cache(Api::all(client.clone()), term.clone(), Some(changed.clone())),
        nodes,
    };
    // Node labels decide WaitForFirstConsumer bindings: a node change is a reason to sync too.
    let node_changed = changed.clone();
    tokio::spawn(node_changes.for_each(move |_| {
        node_changed.notify_one();
        std::future::ready(())
    }));
    let ready = async {
        tokio::join!(
            caches.volumes.wait_until_ready(),
            caches.claims.wait_until_ready(),
            caches.classes.wait_until_ready(),
            caches.nodes.wait_until_ready(),
        )
    };
    tokio::select! {
        _ = term.cancelled() => return,
        _ = ready => {}
    }
    let recorder = Recorder::new(client.clone(), MANAGER);
    loop {
        sync(&client, &recorder, &caches).await;
        tokio::select! {
            _ = term.cancelled() => return,
            _ = changed.notified() => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

fn cached<K>(store: &Store<K>) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().iter().map(|object| (**object).clone()).collect()
}

async fn sync(client: &kube::Client, recorder: &Recorder, caches: &Caches) {
    let plan = plan::plan(
        &cached(&caches.volumes),
        &cached(&caches.claims),
        &cached(&caches.classes),
        &cached(&caches.nodes),
        jiff::Timestamp::now(),
    );
    for operation in plan.operations {
        match execute(client, &operation).await {
            Ok(true) => {
                for event in &operation.events {
                    recorder
                        .record_for(
                            event.involved.clone(),
                            event.type_,
                            event.reason,
                            &event.message,
                        )
                        .await;
                }
            }
            Ok(false) => {}
            Err(err) => tracing::debug!(error = %err, "a volume operation failed"),
        }
    }
}

/// Runs one operation's writes in order. Returns false when a precondition failed (the cache
/// was stale; the next sync plans from fresher data).
async fn execute(client: &kube::Client, operation: &Operation) -> Result<bool, kube::Error> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let post = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
    // The resourceVersion an earlier write of this operation returned, per object.
    let mut volume_version: Option<String> = None;
    let mut claim_version: Option<String> = None;
    for write in &operation.writes {
        let outcome = match write {
            Write::UpdateVolume(volume) | Write::UpdateVolumeStatus(volume) => {
                let mut volume = (**volume).clone();
                if let Some(version) = volume_version.take() {
                    volume.metadata.resource_version = Some(version);
                }
                let releasing = matches!(write, Write::UpdateVolumeStatus(_)) && releases(&volume);
                if releasing && claim_still_exists(client, &volume).await? {
                    return Ok(false);
                }
                let name = volume.name_any();
                let written = match write {
                    Write::UpdateVolume(_) => volumes.replace(&name, &post, &volume).await,
                    _ => volumes.replace_status(&name, &post, &volume).await,
                };
                written.map(|v| volume_version = v.resource_version())
            }
            Write::UpdateClaim(claim) | Write::UpdateClaimStatus(claim) => {
                let mut claim = (**claim).clone();
                if let Some(version) = claim_version.take() {
                    claim.metadata.resource_version = Some(version);
                }
                let claims: Api<PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
                let name = claim.name_any();
                let written = match write {
                    Write::UpdateClaim(_) => claims.replace(&name, &post, &claim).await,
                    _ => claims.replace_status(&name, &post, &claim).await,
                };
                written.map(|c| claim_version = c.resource_version())
            }
            Write::DeleteVolume { name, uid } => {
                delete_if_uid(&volumes, name, uid.clone(), None).await.map(drop)
            }
        };
        match outcome {
            Ok(()) => {}
            Err(err) if conflict(&err) || not_found(&err) => return Ok(false),
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// Whether a status write moves a volume to `Released`.
fn releases(volume: &PersistentVolume) -> bool {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released")
}

/// Whether the claim a volume is bound to exists (same uid) when read live.
async fn claim_still_exists(
    client: &kube::Client,
    volume: &PersistentVolume,
) -> Result<bool, kube::Error> {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Ok(false);
    };
    let (Some(namespace), Some(name)) = (&reference.namespace, &reference.name) else {
        return Ok(false);
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    Ok(claims.get_opt(name).await?.is_some_and(|claim| claim.uid() == reference.uid))
}
