//! The endpoints of the `default/kubernetes` Service: the masters' API servers, as Kubernetes'
//! API servers publish themselves, so that pods reach the API at the Service's cluster IP
//! (`10.96.0.1:443` by default) through the nodes' service proxy.
//!
//! Kubernetes' API servers each renew their own address (a lease per server) and reconcile the
//! Endpoints together; here the masters already know who is alive from the gossip membership,
//! so only the controller-lease holder writes, from its member's view: the Endpoints object
//! `default/kubernetes` and one EndpointSlice per distinct API port (see [`plan`] for the
//! shapes and their invariants).
//!
//! One reconcile, of the Service `default/kubernetes` only, triggered by the Service, by its
//! Endpoints and slices (so one edited or deleted by someone else is put back), and by every
//! change of the masters' addresses. It reads the Endpoints and the slices from the API
//! (consistent reads), plans with [`plan::plan`] and writes only what changed: replacements
//! conditional on the resourceVersion they were planned from, deletions on the uid. While the
//! Service does not exist nothing is written.

mod plan;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, already_exists, conflict, soon, Context};
use crate::endpoints::{delete_slices, replace_slices, write_endpoints};
use plan::{NAME, NAMESPACE, SERVICE_NAME_LABEL};

/// The API addresses (and ports) of the masters alive in the gossip membership, this one
/// included. Unspecified and IPv6 addresses are never published.
pub type ApiServers = BTreeSet<SocketAddr>;

/// The field manager the controller writes as (Kubernetes' API servers write as
/// `kube-apiserver`).
const MANAGER: &str = "kube-apiserver";

/// Runs the controller until `term` is cancelled.
pub async fn run(
    client: kube::Client,
    term: CancellationToken,
    servers: watch::Receiver<ApiServers>,
) {
    let name = format!("metadata.name={NAME}");
    let one = watcher::Config::default().fields(&name);
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let labelled = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={NAME}"));
    let changes = server_changes(servers.clone());
    let triggers = {
        let one = one.clone();
        move |c: Controller<Service>| {
            c.watches(endpoints, one, |_| Some(the_service()))
                .watches(slices, labelled, |_| Some(the_service()))
                .reconcile_on(changes)
        }
    };
    let scope = (services, one);
    controller::run_scoped(client, term, MANAGER, scope, reconcile, triggers, servers).await;
}

fn the_service() -> ObjectRef<Service> {
    ObjectRef::new(NAME).within(NAMESPACE)
}

/// The Service once per change of the masters' addresses; ends when the membership is dropped.
fn server_changes(
    mut servers: watch::Receiver<ApiServers>,
) -> impl Stream<Item = ObjectRef<Service>> + Send + 'static {
    servers.mark_unchanged();
    futures::stream::unfold(servers, |mut servers| async move {
        servers.changed().await.ok()?;
        servers.mark_unchanged();
        Some((the_service(), servers))
    })
}

async fn reconcile(
    service: Arc<Service>,
    context: Arc<Context<watch::Receiver<ApiServers>>>,
) -> Result<Action, kube::Error> {
    if service.name_any() != NAME || service.namespace().as_deref() != Some(NAMESPACE) {
        return Ok(Action::await_change());
    }
    let servers = context.state.borrow().clone();
    let client = &context.client;
    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let existing = endpoints_api.get_opt(NAME).await?;
    let labelled = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={NAME}"));
    let slices = slice_api.list(&labelled).await?.items;

    let plan = plan::plan(&servers, existing.as_ref(), &slices);
    if plan.is_empty() {
        return Ok(Action::await_change());
    }
    let post = context.post();
    if let Some(endpoints) = &plan.endpoints {
        let exists = existing.is_some();
        if let Some(later) = write_endpoints(&endpoints_api, &post, exists, endpoints).await? {
            return Ok(later);
        }
        let published: Vec<String> = plan::published(&servers)
            .iter()
            .flat_map(|(port, ips)| ips.iter().map(move |ip| format!("{ip}:{port}")))
            .collect();
        let published = published.join(",");
        tracing::info!(service = "default/kubernetes", %published, "published the api servers");
    }
    delete_slices(&slice_api, &plan.delete).await?;
    for slice in &plan.create {
        match slice_api.create(&post, slice).await {
            Ok(_) => {}
            Err(err) if already_exists(&err) || conflict(&err) => return Ok(soon()),
            Err(err) => return Err(err),
        }
    }
    Ok(replace_slices(&slice_api, &post, &plan.update).await?.unwrap_or_else(Action::await_change))
}
