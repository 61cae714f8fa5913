//! What every controller shares: a kube-runtime controller over a parent kind that owns a
//! child kind, run until its lease term ends, with failed reconciles retried shortly.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// How soon a failed reconcile is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// The API client a reconcile writes with.
pub struct Context {
    pub client: kube::Client,
}

/// Runs `reconcile` for every `Parent`, triggered by changes to it and to the `Child`
/// objects it controls, until `term` is cancelled. `name` labels the logs.
pub async fn run<Parent, Child, F, E>(
    client: kube::Client,
    term: CancellationToken,
    name: &'static str,
    reconcile: fn(Arc<Parent>, Arc<Context>) -> F,
) where
    Parent: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Child: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let parents: Api<Parent> = Api::all(client.clone());
    let children: Api<Child> = Api::all(client.clone());
    let context = Arc::new(Context { client });
    let stop = term.clone();
    let error_policy = move |_: Arc<Parent>, error: &E, _: Arc<Context>| {
        tracing::debug!(controller = name, error = %error, "reconcile will be retried");
        Action::requeue(RETRY)
    };
    Controller::new(parents, watcher::Config::default())
        .owns(children, watcher::Config::default())
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(controller = name, error = %err, "reconcile failed");
            }
        })
        .await;
}

/// Whether an API error is a 409: someone else changed the object first.
pub fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}
