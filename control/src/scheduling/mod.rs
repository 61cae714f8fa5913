//! The scheduler's loop: watches nodes and pods into a [`queue::Queue`], places waiting pods
//! in batches with the pure `scheduler::schedule_from`, and binds through the `pods/binding`
//! subresource with many bindings in flight while the next batch is decided. A pod that fits
//! nowhere gets a `FailedScheduling` event saying which filter turned how many nodes away
//! (when the reason changes) and is retried with backoff or when the nodes change; a bound pod
//! gets a `Scheduled` event, dropped rather than waited for when events back up (as client-go's
//! broadcaster drops them).

mod queue;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Recorder};
use queue::{Outcome, Queue, SCHEDULER_NAME};

/// How many bindings are in flight at once.
const BINDINGS_IN_FLIGHT: usize = 64;
/// Pods decided per batch before watch events are taken in again.
const BATCH: usize = 256;
/// At most this many FailedScheduling events are written per batch, so a flood of
/// unschedulable pods cannot flood the store with events.
const REPORTS_PER_BATCH: usize = 20;
/// `Scheduled` events waiting to be written; more are dropped.
const EVENT_BACKLOG: usize = 1000;
/// How long the loop sleeps when nothing happens (backoff expiry is checked then).
const IDLE: Duration = Duration::from_secs(1);

/// A watch of one kind, restarted with backoff when it fails.
fn watch<K>(api: Api<K>) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff().boxed()
}

/// A list in progress: objects collected between `Init` and `InitDone`.
struct Relist<K> {
    objects: Option<Vec<K>>,
    done_once: bool,
}

impl<K> Relist<K> {
    fn new() -> Self {
        Relist { objects: None, done_once: false }
    }
}

/// Runs the scheduler until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    let recorder = Recorder::new(client.clone(), SCHEDULER_NAME);
    let mut nodes = watch(Api::<Node>::all(client.clone()));
    let mut pods = watch(Api::<Pod>::all(client.clone()));
    let mut node_list: Relist<Node> = Relist::new();
    let mut pod_list: Relist<Arc<Pod>> = Relist::new();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<Arc<Pod>>();
    let (events_tx, events_rx) = mpsc::channel::<(Arc<Pod>, String)>(EVENT_BACKLOG);
    let writer = tokio::spawn(write_scheduled_events(recorder.clone(), events_rx));
    let permits = Arc::new(Semaphore::new(BINDINGS_IN_FLIGHT));
    let mut queue = Queue::default();
    loop {
        let now = std::time::Instant::now();
        let ready = node_list.done_once && pod_list.done_once;
        let idle = match queue.next_retry() {
            Some(at) => at.saturating_duration_since(now).min(IDLE),
            None => IDLE,
        };
        if ready && queue.has_work(now) {
            // Take in whatever the watches already delivered, then decide a batch.
            while let Some(Some(event)) = futures::FutureExt::now_or_never(nodes.next()) {
                node_event(&mut queue, &mut node_list, event);
            }
            while let Some(Some(event)) = futures::FutureExt::now_or_never(pods.next()) {
                pod_event(&mut queue, &mut pod_list, event);
            }
            while let Ok(pod) = failed_rx.try_recv() {
                queue.binding_failed(&pod, std::time::Instant::now());
            }
            let batch = queue.next_batch(std::time::Instant::now(), BATCH);
            let mut reports = 0;
            for outcome in batch {
                match outcome {
                    Outcome::Bind { pod, node } => {
                        let Ok(permit) = permits.clone().acquire_owned().await else { return };
                        let client = client.clone();
                        let failed = failed_tx.clone();
                        let events = events_tx.clone();
                        tokio::spawn(async move {
                            match bind(&client, &pod, &node).await {
                                Ok(()) => {
                                    let message = format!(
                                        "Successfully assigned {}/{} to {node}",
                                        pod.namespace().unwrap_or_default(),
                                        pod.name_any()
                                    );
                                    let _ = events.try_send((pod, message));
                                }
                                Err(err) => {
                                    tracing::debug!(pod = %pod.name_any(), node = %node, error = %err, "binding failed");
                                    let _ = failed.send(pod);
                                }
                            }
                            drop(permit);
                        });
                    }
                    Outcome::Unschedulable { pod, message, changed } => {
                        tracing::debug!(pod = %pod.name_any(), %message, "pod fits nowhere");
                        if changed && reports < REPORTS_PER_BATCH {
                            reports += 1;
                            recorder
                                .record(&*pod, EventType::Warning, "FailedScheduling", &message)
                                .await;
                        }
                    }
                }
            }
            if term.is_cancelled() {
                break;
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = term.cancelled() => break,
            Some(pod) = failed_rx.recv() => queue.binding_failed(&pod, std::time::Instant::now()),
            Some(event) = nodes.next() => node_event(&mut queue, &mut node_list, event),
            Some(event) = pods.next() => pod_event(&mut queue, &mut pod_list, event),
            _ = tokio::time::sleep(idle) => {}
        }
    }
    writer.abort();
}

fn node_event(
    queue: &mut Queue,
    list: &mut Relist<Node>,
    event: Result<Event<Node>, watcher::Error>,
) {
    match event {
        Ok(Event::Apply(node)) => queue.node_applied(node),
        Ok(Event::Delete(node)) => queue.node_deleted(&node.name_any()),
        Ok(Event::Init) => list.objects = Some(Vec::new()),
        Ok(Event::InitApply(node)) => list.objects.get_or_insert_with(Vec::new).push(node),
        Ok(Event::InitDone) => {
            queue.nodes_relisted(list.objects.take().unwrap_or_default());
            list.done_once = true;
        }
        Err(err) => tracing::debug!(error = %err, "the scheduler's node watch failed"),
    }
}

fn pod_event(
    queue: &mut Queue,
    list: &mut Relist<Arc<Pod>>,
    event: Result<Event<Pod>, watcher::Error>,
) {
    match event {
        Ok(Event::Apply(pod)) => queue.pod_applied(Arc::new(pod)),
        Ok(Event::Delete(pod)) => queue.pod_deleted(&pod),
        Ok(Event::Init) => list.objects = Some(Vec::new()),
        Ok(Event::InitApply(pod)) => {
            list.objects.get_or_insert_with(Vec::new).push(Arc::new(pod));
        }
        Ok(Event::InitDone) => {
            queue.pods_relisted(list.objects.take().unwrap_or_default());
            list.done_once = true;
        }
        Err(err) => tracing::debug!(error = %err, "the scheduler's pod watch failed"),
    }
}

/// Writes `Scheduled` events one after another until the channel closes (as client-go's
/// broadcaster does: events never compete with bindings for the API).
async fn write_scheduled_events(
    recorder: Recorder,
    mut events: mpsc::Receiver<(Arc<Pod>, String)>,
) {
    while let Some((pod, message)) = events.recv().await {
        recorder.record(&*pod, EventType::Normal, "Scheduled", &message).await;
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
