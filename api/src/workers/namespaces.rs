//! Namespace deletion: a namespace being deleted keeps its `kubernetes` finalizer until every
//! object in it is gone; then the finalizer is removed and the namespace disappears.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flotilla_store::KvStore;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::meta;
use crate::registry::{DeleteOptions, Part, Registry, Target, WriteOptions};
use crate::resources::Verbs;

/// The finalizer Kubernetes' namespace controller owns.
const FINALIZER: &str = "kubernetes";
/// How soon a namespace whose contents are still going away is looked at again.
const RETRY: Duration = Duration::from_millis(500);

pub async fn run<S: KvStore>(registry: Arc<Registry<S>>, shutdown: CancellationToken) {
    let Some(namespaces) = registry.catalog.get("", "v1", "namespaces") else { return };
    loop {
        let mut pending = BTreeSet::new();
        match registry.objects.list(&namespaces.list_prefix(None), None, 0, 0, true).await {
            Ok(page) => pending.extend(
                page.items
                    .iter()
                    .filter(|stored| waiting(&stored.object))
                    .map(|stored| meta::name(&stored.object).to_string()),
            ),
            Err(err) => tracing::debug!(error = %err, "listing namespaces failed"),
        }
        for name in &pending {
            if let Err(err) = finalize(&registry, name).await {
                tracing::debug!(namespace = %name, error = %err, "namespace not finalized yet");
            }
        }
        let delay = if pending.is_empty() { Duration::from_secs(2) } else { RETRY };
        if !super::pause(&shutdown, delay).await {
            return;
        }
    }
}

/// Whether a namespace is being deleted and still holds the `kubernetes` finalizer.
fn waiting(namespace: &Value) -> bool {
    meta::is_deleting(namespace)
        && namespace
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|f| f == FINALIZER))
}

/// Deletes what is left in the namespace; once nothing is, removes the finalizer.
async fn finalize<S: KvStore>(registry: &Registry<S>, name: &str) -> Result<(), ApiError> {
    let mut remaining = 0;
    for resource in registry.catalog.all() {
        if !resource.namespaced || resource.verbs != Verbs::All {
            continue;
        }
        let page =
            registry.objects.list(&resource.list_prefix(Some(name)), None, 0, 0, false).await?;
        for stored in page.items {
            remaining += 1;
            if meta::is_deleting(&stored.object) {
                continue;
            }
            let target = Target {
                resource: resource.clone(),
                namespace: Some(name.to_string()),
                name: meta::name(&stored.object).to_string(),
            };
            match registry.delete(&target, &DeleteOptions::default()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    if remaining > 0 {
        return Err(ApiError::Conflict {
            resource: crate::error::GroupResource::new("", "namespaces"),
            name: name.to_string(),
            message: format!("{remaining} objects are still being deleted"),
        });
    }
    let Some(namespaces) = registry.catalog.get("", "v1", "namespaces") else { return Ok(()) };
    let target = Target { resource: namespaces, namespace: None, name: name.to_string() };
    let current = registry.get(&target, false).await?;
    if !waiting(&current.object) {
        return Ok(());
    }
    let finalizers: Vec<Value> = current
        .object
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter(|f| *f != FINALIZER).cloned().collect())
        .unwrap_or_default();
    let mut finalized = current.object.clone();
    finalized["spec"] = json!({ "finalizers": finalizers });
    registry.replace(&target, current, finalized, Part::Finalize, &WriteOptions::default()).await?;
    tracing::info!(namespace = %name, "namespace finalized");
    Ok(())
}
