//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, and
//! one deleted by a user is created again.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, already_exists, Context};

/// The field manager the controller writes as.
const MANAGER: &str = "serviceaccount-controller";
const DEFAULT: &str = "default";

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let watches = move |c: Controller<Namespace>| {
        c.watches(accounts, watcher::Config::default(), |account: ServiceAccount| {
            let default = account.name_any() == DEFAULT;
            account.namespace().filter(|_| default).map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
    };
    controller::run_with(client, term, MANAGER, reconcile, watches, ()).await;
}

async fn reconcile(
    namespace: Arc<Namespace>,
    context: Arc<Context>,
) -> Result<Action, kube::Error> {
    let active = namespace.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    if !active || namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let accounts: Api<ServiceAccount> =
        Api::namespaced(context.client.clone(), &namespace.name_any());
    if accounts.get_opt(DEFAULT).await?.is_none() {
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT.into()), ..ObjectMeta::default() },
            ..ServiceAccount::default()
        };
        match accounts.create(&context.post(), &account).await {
            Ok(_) => {
                tracing::debug!(namespace = %namespace.name_any(), "created the default service account")
            }
            // Created meanwhile, or the namespace began terminating: nothing to do.
            Err(err) if already_exists(&err) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Action::await_change())
}
