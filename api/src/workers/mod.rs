//! Work every API server does beside serving requests: finishing namespace deletion, serving
//! custom resources as their definitions change, and compacting the store's history.
//!
//! Every master runs these. Each step is a conditional write on resourceVersion (or a
//! compare on a store key), so masters racing on the same step cannot both succeed and
//! repeating a step is harmless.

mod compactor;
mod crds;
mod namespaces;

pub use crds::CLEANUP_FINALIZER;

use std::sync::Arc;
use std::time::Duration;

use flotilla_store::KvStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;

/// Starts the workers on `tasks`; they stop when `shutdown` fires.
pub fn spawn<S: KvStore>(
    registry: &Registry<S>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    compaction_interval: Duration,
) {
    let registry = Arc::new(registry.clone());
    tasks.spawn(namespaces::run(registry.clone(), shutdown.clone()));
    tasks.spawn(crds::run(registry.clone(), shutdown.clone()));
    tasks.spawn(compactor::run(registry, shutdown.clone(), compaction_interval));
}

/// Sleeps for `delay` unless shutdown comes first; returns false on shutdown.
async fn pause(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
