//! What every controller shares: a kube-runtime controller over a parent kind that owns child
//! kinds, run until its lease term ends, with failed reconciles retried shortly, and the
//! conditional writes reconciles make.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::Recorder;

/// How soon a failed reconcile is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// What a reconcile works with: the API client it writes with, the recorder of its events,
/// and whatever else its controller keeps (`state`, e.g. a cache of nodes).
pub struct Context<State = ()> {
    pub client: kube::Client,
    pub recorder: Recorder,
    /// The field manager and event source the controller writes as.
    pub manager: &'static str,
    pub state: State,
}

/// Runs `reconcile` for every `Parent`, triggered by changes to it and to the `Child`
/// objects it controls, until `term` is cancelled. `manager` names the controller in logs,
/// field managers and events (e.g. `replicaset-controller`).
pub async fn run<Parent, Child, F, E>(
    client: kube::Client,
    term: CancellationToken,
    manager: &'static str,
    reconcile: fn(Arc<Parent>, Arc<Context>) -> F,
) where
    Parent: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Child: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let children: Api<Child> = Api::all(client.clone());
    let owns = move |c: Controller<Parent>| c.owns(children, watcher::Config::default());
    run_with(client, term, manager, reconcile, owns, ()).await;
}

/// As [`run`], with the watches of owned (or otherwise related) kinds added by `owns` and
/// `state` handed to every reconcile in its [`Context`].
pub async fn run_with<Parent, State, F, E>(
    client: kube::Client,
    term: CancellationToken,
    manager: &'static str,
    reconcile: fn(Arc<Parent>, Arc<Context<State>>) -> F,
    owns: impl FnOnce(Controller<Parent>) -> Controller<Parent>,
    state: State,
) where
    Parent: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    State: Send + Sync + 'static,
    F: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let parents: Api<Parent> = Api::all(client.clone());
    let scope = (parents, watcher::Config::default());
    run_scoped(client, term, manager, scope, reconcile, owns, state).await;
}

/// As [`run_with`], for only the parents `scope` watches (an API, e.g. one namespace's, and a
/// watch configuration, e.g. a field selector naming one object).
pub async fn run_scoped<Parent, State, F, E>(
    client: kube::Client,
    term: CancellationToken,
    manager: &'static str,
    scope: (Api<Parent>, watcher::Config),
    reconcile: fn(Arc<Parent>, Arc<Context<State>>) -> F,
    owns: impl FnOnce(Controller<Parent>) -> Controller<Parent>,
    state: State,
) where
    Parent: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    State: Send + Sync + 'static,
    F: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let name = manager;
    let (parents, config) = scope;
    let recorder = Recorder::new(client.clone(), manager);
    let context = Arc::new(Context { client, recorder, manager, state });
    let stop = term.clone();
    let error_policy = move |_: Arc<Parent>, error: &E, _: Arc<Context<State>>| {
        tracing::debug!(controller = name, error = %error, "reconcile will be retried");
        Action::requeue(RETRY)
    };
    owns(Controller::new(parents, config))
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(controller = name, error = %err, "reconcile failed");
            }
        })
        .await;
}

/// Why a reconcile failed: an API call, or the controller's plan (`P`).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError<P: std::error::Error + 'static> {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Plan(P),
}

/// Whether an API error is a 409: someone else changed the object first.
pub fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether an API error is a 404: the object is gone.
pub fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether an API error says the object to create exists already.
pub fn already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists")
}

/// Reconcile again shortly: a conditional write lost a race and the next read will see why.
pub fn soon() -> Action {
    Action::requeue(Duration::from_millis(100))
}

/// Reconcile again after `after` (from a plan), or after five minutes without one.
pub fn recheck(after: Option<jiff::SignedDuration>) -> Action {
    let after = after.and_then(|after| Duration::try_from(after).ok());
    Action::requeue(after.unwrap_or(Duration::from_secs(300)))
}

impl<State> Context<State> {
    /// Create parameters naming the controller as field manager.
    pub fn post(&self) -> PostParams {
        PostParams { field_manager: Some(self.manager.into()), ..PostParams::default() }
    }

    /// Patch parameters naming the controller as field manager.
    pub fn patch(&self) -> PatchParams {
        PatchParams { field_manager: Some(self.manager.into()), ..PatchParams::default() }
    }
}

/// Deletes `name` only if its uid is still `uid`, with `propagation` (`Background`,
/// `Foreground`, `Orphan`) when given. Returns whether this call deleted it: a missing object,
/// or one replaced under the same name (uid precondition failed), counts as nothing to do.
pub async fn delete_if_uid<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
    propagation: Option<PropagationPolicy>,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid, resource_version: None }),
        propagation_policy: propagation,
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(err) if not_found(&err) || conflict(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// A cache of every `K`, kept current by a watch until `term` ends; `changed` (when given) is
/// notified on every event.
pub fn cache<K>(api: Api<K>, term: CancellationToken, changed: Option<Arc<Notify>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    cache_with(api, (), term, changed)
}

/// As [`cache`], for a kind known at run time (`dyntype`, e.g. a `DynamicObject`'s
/// `ApiResource`).
pub fn cache_with<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    term: CancellationToken,
    changed: Option<Arc<Notify>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    let events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .take_until(async move { term.cancelled().await });
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while events.next().await.is_some() {
            if let Some(changed) = &changed {
                changed.notify_one();
            }
        }
    });
    store
}

/// How many changes a shared watch buffers for its slowest subscriber before it waits for it.
const SHARED_BUFFER: usize = 16_384;

/// One watch of every `K`, shared by several controllers, so each change is received and
/// decoded once per master rather than once per controller: a cache of every `K`, and one
/// handle per subscriber streaming every `K` that changes.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    pub handles: Vec<ReflectHandle<K>>,
}

/// Starts a shared watch of every `K` with `subscribers` handles; it runs until `term` ends.
/// The watch waits for the slowest handle once [`SHARED_BUFFER`] changes are pending, so every
/// handle must be polled (or dropped).
pub fn shared<K>(client: kube::Client, term: CancellationToken, subscribers: usize) -> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(SHARED_BUFFER);
    // A writer made by `store_shared` has a dispatcher, so `subscribe` always answers.
    let handles: Vec<ReflectHandle<K>> =
        (0..subscribers).filter_map(|_| writer.subscribe()).collect();
    let events = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect_shared(writer)
        .take_until(async move { term.cancelled().await });
    tokio::spawn(events.for_each(|_| async {}));
    Shared { store, handles }
}

/// Writes `object`'s status subresource, conditional on the resourceVersion it carries (the
/// one the reconcile read). Returns false when the object changed meanwhile: the next reconcile
/// sees the newer version, and a stale view never overwrites it.
pub async fn write_status<K>(
    api: &Api<K>,
    params: &PostParams,
    object: &K,
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match api.replace_status(&name, params, object).await {
        Ok(_) => Ok(true),
        Err(err) if conflict(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// `object`'s ownerReferences without any to `owner`'s uid, with `owner` added back when
/// `keep` (adoption) and left out otherwise (release).
pub fn references_with<K: Resource>(
    object: &K,
    owner: &OwnerReference,
    keep: bool,
) -> Vec<OwnerReference> {
    let mut references: Vec<OwnerReference> = kube::ResourceExt::owner_references(object)
        .iter()
        .filter(|r| r.uid != owner.uid)
        .cloned()
        .collect();
    if keep {
        references.push(owner.clone());
    }
    references
}
