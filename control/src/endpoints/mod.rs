//! The EndpointSlice and Endpoints controllers: for every Service with a selector, the
//! EndpointSlices (and the legacy Endpoints object) listing the pods it selects, their
//! addresses, ports and readiness.
//!
//! One reconcile per Service, triggered by the Service, by its slices, and by any pod the
//! Service selects (mapped through the Services' cache). It reads the selected pods and the
//! Service's slices from the API (consistent reads, so slices this controller created are
//! never created twice), nodes from a watch cache (for zones), and writes what
//! [`slices::plan`] and [`subsets::plan`] decide, each write conditional on the resourceVersion
//! or uid it was planned from. Endpoints of deleted Services are deleted as upstream does.

/// Writes `endpoints` over the existing object (conditionally on the resourceVersion it
/// carries) or creates it; a write that lost a race is retried soon: `Some(action)`.
pub async fn write_endpoints(
    api: &Api<Endpoints>,
    post: &PostParams,
    exists: bool,
    endpoints: &Endpoints,
) -> Result<Option<Action>, kube::Error> {
    let written = if exists {
        api.replace(&endpoints.name_any(), post, endpoints).await
    } else {
        api.create(post, endpoints).await
    };
    match written {
        Ok(_) => Ok(None),
        Err(err) if conflict(&err) || already_exists(&err) || not_found(&err) => Ok(Some(soon())),
        Err(err) => Err(err),
    }
}

/// Writes whole slices over existing ones, each conditionally on its resourceVersion; one that
/// changed or went away meanwhile stops the writes, to be planned again soon: `Some(action)`.
pub async fn replace_slices(
    api: &Api<EndpointSlice>,
    post: &PostParams,
    slices: &[EndpointSlice],
) -> Result<Option<Action>, kube::Error> {
    for slice in slices {
        match api.replace(&slice.name_any(), post, slice).await {
            Ok(_) => {}
            Err(err) if conflict(&err) || not_found(&err) => return Ok(Some(soon())),
            Err(err) => return Err(err),
        }
    }
    Ok(None)
}

/// Deletes slices, each only while it is the one planned from (its uid).
pub async fn delete_slices(
    api: &Api<EndpointSlice>,
    slices: &[SliceRef],
) -> Result<(), kube::Error> {
    for slice in slices {
        delete_if_uid(api, &slice.name, slice.uid.clone(), None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod fixtures;
mod service_pods;
mod slices;
mod subsets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, already_exists, conflict, delete_if_uid, not_found, soon, Context};
pub use slices::{slice_ref, SliceRef};

/// The field manager and event source the controller writes as.
const MANAGER: &str = "endpointslice-controller";
/// Label naming the Service a slice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

type ReconcileError = controller::ReconcileError<service_pods::PlanError>;

/// Runs the controllers until `term` is cancelled.
pub async fn run(
    client: kube::Client,
    term: CancellationToken,
    pods: ReflectHandle<Pod>,
    nodes: Store<Node>,
) {
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let owns = move |c: Controller<Service>| {
        let services = c.store();
        c.owns(slices, watcher::Config::default())
            .watches_shared_stream(pods, move |pod: Arc<Pod>| selecting_services(&services, &pod))
    };
    tokio::join!(
        controller::run_with(client.clone(), term.clone(), MANAGER, reconcile, owns, nodes),
        delete_orphaned_endpoints(client, term),
    );
}

/// The Services in `pod`'s namespace whose selector selects it.
fn selecting_services(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    services
        .state()
        .iter()
        .filter(|service| service.metadata.namespace == pod.metadata.namespace)
        .filter(|service| {
            let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
            selector.is_some_and(|selector| {
                !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .map(|service| ObjectRef::from_obj(&**service))
        .collect()
}

/// `key=value,...` for a Service's equality selector.
fn label_selector(selector: &BTreeMap<String, String>) -> String {
    selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

async fn reconcile(
    service: Arc<Service>,
    context: Arc<Context<Store<Node>>>,
) -> Result<Action, ReconcileError> {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.clone()) else {
        return Ok(Action::await_change());
    };
    if selector.is_empty() {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let client = &context.client;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selected =
        pods.list(&ListParams::default().labels(&label_selector(&selector))).await?.items;
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let existing_slices = slice_api
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}")))
        .await?
        .items;
    let nodes: Vec<Node> = context.state.state().iter().map(|n| (**n).clone()).collect();

    let plan = slices::plan(&service, &selected, &existing_slices, &nodes)
        .map_err(ReconcileError::Plan)?;
    let post = context.post();
    for slice in &plan.create {
        slice_api.create(&post, slice).await?;
    }
    if let Some(later) = replace_slices(&slice_api, &post, &plan.update).await? {
        return Ok(later);
    }
    delete_slices(&slice_api, &plan.delete).await?;

    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
    let existing = endpoints_api.get_opt(&name).await?;
    let planned = subsets::plan(&service, &selected, existing.as_ref());
    if let Some(endpoints) = planned.map_err(ReconcileError::Plan)? {
        let exists = existing.is_some();
        if let Some(later) = write_endpoints(&endpoints_api, &post, exists, &endpoints).await? {
            return Ok(later);
        }
    }
    if !plan.pods_on_missing_nodes.is_empty() {
        // Their nodes are not in the cache yet: look again once it has caught up.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}

/// Deletes the Endpoints of each Service that is deleted, as the Endpoints controller does
/// (the Endpoints object has no ownerReference for the garbage collector to follow). A deletion
/// missed while the watch had to relist from scratch (after compaction) is not caught up.
async fn delete_orphaned_endpoints(client: kube::Client, term: CancellationToken) {
    let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .take_until(async move { term.cancelled().await });
    let mut services = std::pin::pin!(services);
    while let Some(event) = services.next().await {
        let (namespace, name) = match event {
            Ok(watcher::Event::Delete(service)) => {
                (service.namespace().unwrap_or_default(), service.name_any())
            }
            Ok(_) => continue,
            Err(err) => {
                tracing::debug!(error = %err, "the services watch failed");
                continue;
            }
        };
        let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
        if let Err(err) = delete_if_uid(&endpoints, &name, None, None).await {
            tracing::debug!(error = %err, endpoints = %name, "deleting endpoints failed");
        }
    }
}
