//! Flotilla's control plane: controllers that run on every master but act only while their
//! master holds the controller lease (a `coordination.k8s.io/v1` Lease in `kube-system`).
//!
//! Controllers are ordinary API clients (kube-runtime) talking to their own master's API
//! server; they decide with pure functions (`replicaset::plan`) and write through the API.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod client;
mod controller;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
pub mod events;
mod gc;
mod history;
mod job;
mod kubernetes_service;
mod lease;
mod nodes;
mod objects;
pub mod quantity;
mod replicaset;
mod root_ca;
mod scheduler;
mod scheduling;
mod selector;
mod serviceaccounts;
mod statefulset;
mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use kubernetes_service::ApiServers;
pub use lease::{LeaseConfig, LEASE_NAME};
pub use nodes::lifecycle::{AgentLiveness, Liveness};

/// How a master's control plane reaches its API server.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// This master's API, e.g. `https://127.0.0.1:6443`.
    pub api_url: String,
    pub ca_file: PathBuf,
    /// The master's client certificate and key (its group is bound to `cluster-admin`).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Who holds the lease while this master leads (unique per master and process).
    pub identity: String,
    pub lease: LeaseConfig,
    /// What this master's gossip member knows of every node's agent, kept current by the
    /// membership. The node lifecycle controller judges nodes by it while this master leads:
    /// an agent declared down makes its node unreachable at once; a node whose agent is not in
    /// the membership at all becomes unreachable only after the first minute of leadership.
    pub liveness: tokio::sync::watch::Receiver<Liveness>,
    /// The API addresses of the masters alive in this master's gossip membership (this one
    /// included), kept current by the membership. While this master leads, they are published
    /// as the endpoints of the `default/kubernetes` Service.
    pub api_servers: tokio::sync::watch::Receiver<ApiServers>,
    /// The cluster CA bundle (PEM) published to every namespace as the ConfigMap
    /// `kube-root-ca.crt`, for pods to verify the API server with.
    pub root_ca: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("building the API client: {0}")]
    Client(String),
}

/// A running control plane.
pub struct ControlPlane {
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl ControlPlane {
    /// Connects to the API and starts competing for the controller lease, in `store` (this
    /// master's replica).
    pub async fn start<S: flotilla_store::KvStore>(
        config: ControlConfig,
        store: S,
    ) -> Result<ControlPlane, ControlError> {
        let client = client::connect(&config).await?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let elector =
            lease::Elector::new(store, client.clone(), config.identity.clone(), config.lease);
        let controllers = Arc::new(client);
        let liveness = config.liveness;
        let api_servers = config.api_servers;
        let root_ca = config.root_ca;
        tasks.spawn(elector.lead(shutdown.clone(), move |term| {
            let client = (*controllers).clone();
            let liveness = liveness.clone();
            let api_servers = api_servers.clone();
            let root_ca = root_ca.clone();
            async move {
                // Pods and nodes are watched once for the controllers that need them.
                let pods = controller::shared::<Pod>(client.clone(), term.clone(), 6);
                let nodes = controller::shared::<Node>(client.clone(), term.clone(), 2);
                let pod_cache = pods.store;
                let mut pods = pods.handles.into_iter();
                let (Some(rs), Some(sts), Some(ds), Some(jobs), Some(endpoints), Some(lifecycle)) =
                    (pods.next(), pods.next(), pods.next(), pods.next(), pods.next(), pods.next())
                else {
                    return;
                };
                let mut node_changes = nodes.handles.into_iter();
                let (Some(ds_nodes), Some(volume_nodes)) =
                    (node_changes.next(), node_changes.next())
                else {
                    return;
                };
                let node_cache = nodes.store;
                tokio::join!(
                    replicaset::run(client.clone(), term.clone(), rs),
                    statefulset::run(client.clone(), term.clone(), sts),
                    daemonset::run(client.clone(), term.clone(), ds, node_cache.clone(), ds_nodes),
                    job::run(client.clone(), term.clone(), jobs),
                    cronjob::run(client.clone(), term.clone()),
                    endpoints::run(client.clone(), term.clone(), endpoints, node_cache.clone()),
                    volumes::run(client.clone(), term.clone(), node_cache.clone(), volume_nodes),
                    serviceaccounts::run(client.clone(), term.clone()),
                    root_ca::run(client.clone(), term.clone(), root_ca),
                    kubernetes_service::run(client.clone(), term.clone(), api_servers),
                    nodes::run(client.clone(), term.clone(), node_cache.clone()),
                    nodes::lifecycle::run(
                        client.clone(),
                        term.clone(),
                        liveness,
                        pod_cache,
                        lifecycle,
                        node_cache,
                    ),
                    deployment::run(client.clone(), term.clone()),
                    scheduling::run(client.clone(), term.clone()),
                    gc::run(client, term),
                );
            }
        }));
        Ok(ControlPlane { shutdown, tasks })
    }

    /// Stops the controllers, hands the lease over (another master takes it at once) and
    /// waits for them.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
