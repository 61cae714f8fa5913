//! The scheduler's loop: watches nodes and pods, decides placements for unbound pods with the
//! pure `scheduler::schedule` over a snapshot, and binds through the `pods/binding`
//! subresource, many bindings in flight at once. A pod that fits nowhere gets a
//! `FailedScheduling` event saying which filter turned how many nodes away, and is retried
//! with backoff or when the nodes change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scheduler::{schedule, Snapshot};

/// The scheduler name pods ask for by default.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How many bindings are in flight at once.
const BINDINGS_IN_FLIGHT: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// At most this many FailedScheduling events are written per round, so a flood of
/// unschedulable pods cannot flood the store with events.
const REPORTS_PER_ROUND: usize = 20;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Keeps a store of `K` up to date and signals every change.
fn reflect<K>(api: Api<K>, changed: Arc<Notify>, term: CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                biased;
                _ = term.cancelled() => return,
                event = stream.try_next() => match event {
                    Ok(Some(_)) => changed.notify_one(),
                    Ok(None) => return,
                    Err(err) => tracing::debug!(error = %err, "scheduler watch failed"),
                },
            }
        }
    });
    store
}

fn is_pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec.and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
    let ours =
        spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    unbound
        && ours
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, "Succeeded" | "Failed")
}

/// Runs the scheduler until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    let changed = Arc::new(Notify::new());
    let nodes = reflect(Api::<Node>::all(client.clone()), changed.clone(), term.clone());
    let pods = reflect(Api::<Pod>::all(client.clone()), changed.clone(), term.clone());
    let _ = tokio::join!(nodes.wait_until_ready(), pods.wait_until_ready());
    // Pods bound in this process that the pod store may not show bound yet.
    let mut bound: HashSet<String> = HashSet::new();
    // Unschedulable pods: when to try again, and the next backoff.
    let mut backoff: HashMap<String, (Instant, Duration)> = HashMap::new();
    // The last reason reported per unschedulable pod: an event is written when it changes.
    let mut reported: HashMap<String, String> = HashMap::new();
    let mut node_count = 0;
    loop {
        tokio::select! {
            biased;
            _ = term.cancelled() => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(FIRST_BACKOFF) => {}
        }
        let node_list: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        if node_list.len() != node_count {
            // New capacity: everything unschedulable gets another chance now.
            node_count = node_list.len();
            backoff.clear();
        }
        let pod_list: Vec<Arc<Pod>> = pods.state();
        let still_pending = |uid: &String| {
            pod_list.iter().any(|p| p.uid().as_deref() == Some(uid) && is_pending(p))
        };
        bound.retain(|uid| still_pending(uid));
        reported.retain(|uid, _| still_pending(uid));
        let mut reports = 0;
        let now = Instant::now();
        let mut pending: Vec<&Arc<Pod>> = pod_list
            .iter()
            .filter(|p| is_pending(p))
            .filter(|p| p.uid().is_some_and(|uid| !bound.contains(&uid)))
            .filter(|p| p.uid().and_then(|uid| backoff.get(&uid)).is_none_or(|(at, _)| *at <= now))
            .collect();
        if pending.is_empty() {
            continue;
        }
        pending.sort_by_key(|p| {
            let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            (std::cmp::Reverse(priority), p.creation_timestamp().map(|t| t.0))
        });
        let mut snapshot =
            Snapshot::new(node_list, pod_list.iter().map(|p| (**p).clone()).collect());
        let mut bindings = Vec::new();
        for pod in pending {
            let uid = pod.uid().unwrap_or_default();
            match schedule(&snapshot, pod) {
                Ok(placement) => {
                    snapshot.add_pod(pod, &placement.node);
                    backoff.remove(&uid);
                    bound.insert(uid);
                    bindings.push((pod.clone(), placement.node));
                }
                Err(unschedulable) => {
                    let (_, last) = backoff.get(&uid).copied().unwrap_or((now, FIRST_BACKOFF / 2));
                    let next = (last * 2).min(MAX_BACKOFF);
                    backoff.insert(uid.clone(), (now + next, next));
                    let new_reason = reported.get(&uid) != Some(&unschedulable.message);
                    if new_reason && reports < REPORTS_PER_ROUND {
                        reports += 1;
                        reported.insert(uid, unschedulable.message.clone());
                        report_unschedulable(&client, pod, &unschedulable.message).await;
                    }
                }
            }
        }
        let client = &client;
        futures::stream::iter(bindings)
            .for_each_concurrent(BINDINGS_IN_FLIGHT, |(pod, node)| async move {
                if let Err(err) = bind(client, &pod, &node).await {
                    tracing::debug!(pod = %pod.name_any(), node = %node, error = %err, "binding failed");
                }
            })
            .await;
    }
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": pod.name_any(), "uid": pod.uid() },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    });
    let _: serde_json::Value = pods
        .create_subresource("binding", &pod.name_any(), &PostParams::default(), &binding)
        .await?;
    tracing::debug!(pod = %pod.name_any(), node = %node, "bound pod");
    Ok(())
}

/// Records why a pod fits nowhere, as a `FailedScheduling` event on the pod.
async fn report_unschedulable(client: &kube::Client, pod: &Pod, message: &str) {
    let namespace = pod.namespace().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let suffix = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{suffix}", pod.name_any())),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name_any()),
            namespace: Some(namespace.clone()),
            uid: pod.uid(),
            ..ObjectReference::default()
        },
        reason: Some("FailedScheduling".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        source: Some(EventSource { component: Some(SCHEDULER_NAME.into()), host: None }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some(SCHEDULER_NAME.into()),
        ..Event::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(err) = events.create(&PostParams::default(), &event).await {
        tracing::debug!(error = %err, "recording a FailedScheduling event failed");
    }
}
