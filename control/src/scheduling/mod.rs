//! The scheduler's loop: watches nodes, pods, PersistentVolumeClaims, PersistentVolumes and
//! StorageClasses into a [`queue::Queue`], places waiting pods in batches with the pure
//! `scheduler::schedule_from`, and binds through the `pods/binding` subresource with many
//! bindings in flight while the next batch is decided. A pod whose unbound claims got volumes
//! chosen first has them pre-bound and waits for them to be bound ([`volume_binding`]) before
//! its own binding. A pod that fits nowhere gets a `FailedScheduling` event saying which filter
//! turned how many nodes away (when the reason changes) and is retried with backoff or when the
//! nodes, its claims, the volumes or the StorageClasses change; a bound pod gets a `Scheduled`
//! event, dropped rather than waited for when events back up (as client-go's broadcaster drops
//! them).

mod queue;
mod volume_binding;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Recorder};
use crate::scheduler::VolumeBindings;
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

    /// Turns a watch event into a change to apply, collecting a relist until it is complete.
    fn change(&mut self, event: Result<Event<K>, watcher::Error>, kind: &str) -> Option<Change<K>> {
        match event {
            Ok(Event::Apply(object)) => Some(Change::Applied(object)),
            Ok(Event::Delete(object)) => Some(Change::Deleted(object)),
            Ok(Event::Init) => {
                self.objects = Some(Vec::new());
                None
            }
            Ok(Event::InitApply(object)) => {
                self.objects.get_or_insert_with(Vec::new).push(object);
                None
            }
            Ok(Event::InitDone) => {
                self.done_once = true;
                Some(Change::Relisted(self.objects.take().unwrap_or_default()))
            }
            Err(err) => {
                tracing::debug!(error = %err, kind, "a scheduler watch failed");
                None
            }
        }
    }
}

/// What a watch event changes.
enum Change<K> {
    Applied(K),
    Deleted(K),
    Relisted(Vec<K>),
}

/// The watches the scheduler keeps its snapshot from, with their relists in progress.
struct Watches {
    nodes: BoxStream<'static, Result<Event<Node>, watcher::Error>>,
    pods: BoxStream<'static, Result<Event<Pod>, watcher::Error>>,
    claims: BoxStream<'static, Result<Event<PersistentVolumeClaim>, watcher::Error>>,
    volumes: BoxStream<'static, Result<Event<PersistentVolume>, watcher::Error>>,
    classes: BoxStream<'static, Result<Event<StorageClass>, watcher::Error>>,
    node_list: Relist<Node>,
    pod_list: Relist<Pod>,
    claim_list: Relist<PersistentVolumeClaim>,
    volume_list: Relist<PersistentVolume>,
    class_list: Relist<StorageClass>,
}

impl Watches {
    fn new(client: &kube::Client) -> Self {
        Watches {
            nodes: watch(Api::all(client.clone())),
            pods: watch(Api::all(client.clone())),
            claims: watch(Api::all(client.clone())),
            volumes: watch(Api::all(client.clone())),
            classes: watch(Api::all(client.clone())),
            node_list: Relist::new(),
            pod_list: Relist::new(),
            claim_list: Relist::new(),
            volume_list: Relist::new(),
            class_list: Relist::new(),
        }
    }

    /// Whether every watch has listed once, so the snapshot is complete.
    fn ready(&self) -> bool {
        self.node_list.done_once
            && self.pod_list.done_once
            && self.claim_list.done_once
            && self.volume_list.done_once
            && self.class_list.done_once
    }

    /// Applies whatever the watches have delivered already, without waiting.
    fn drain(&mut self, queue: &mut Queue) {
        use futures::FutureExt;
        while let Some(Some(event)) = self.nodes.next().now_or_never() {
            node_event(queue, &mut self.node_list, event);
        }
        while let Some(Some(event)) = self.pods.next().now_or_never() {
            pod_event(queue, &mut self.pod_list, event);
        }
        while let Some(Some(event)) = self.claims.next().now_or_never() {
            claim_event(queue, &mut self.claim_list, event);
        }
        while let Some(Some(event)) = self.volumes.next().now_or_never() {
            volume_event(queue, &mut self.volume_list, event);
        }
        while let Some(Some(event)) = self.classes.next().now_or_never() {
            class_event(queue, &mut self.class_list, event);
        }
    }
}

/// Runs the scheduler until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    let recorder = Recorder::new(client.clone(), SCHEDULER_NAME);
    let mut watches = Watches::new(&client);
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<Arc<Pod>>();
    let (events_tx, events_rx) = mpsc::channel::<(Arc<Pod>, String)>(EVENT_BACKLOG);
    let writer = tokio::spawn(write_scheduled_events(recorder.clone(), events_rx));
    let permits = Arc::new(Semaphore::new(BINDINGS_IN_FLIGHT));
    let mut queue = Queue::default();
    loop {
        let now = std::time::Instant::now();
        let ready = watches.ready();
        let idle = match queue.next_retry() {
            Some(at) => at.saturating_duration_since(now).min(IDLE),
            None => IDLE,
        };
        if ready && queue.has_work(now) {
            // Take in whatever the watches already delivered, then decide a batch.
            watches.drain(&mut queue);
            while let Ok(pod) = failed_rx.try_recv() {
                queue.binding_failed(&pod, std::time::Instant::now());
            }
            let batch = queue.next_batch(std::time::Instant::now(), BATCH);
            let mut reports = 0;
            for outcome in batch {
                match outcome {
                    Outcome::Bind { pod, node, volumes } => {
                        let binding = Binding {
                            client: client.clone(),
                            failed: failed_tx.clone(),
                            events: events_tx.clone(),
                            pod,
                            node,
                        };
                        if volumes.is_empty() {
                            let Ok(permit) = permits.clone().acquire_owned().await else { return };
                            tokio::spawn(async move {
                                binding.run().await;
                                drop(permit);
                            });
                        } else {
                            // Waiting for the claims may take long: it holds no binding permit.
                            let permits = permits.clone();
                            let recorder = recorder.clone();
                            let term = term.clone();
                            tokio::spawn(async move {
                                tokio::select! {
                                    _ = term.cancelled() => {}
                                    _ = binding.run_with_volumes(volumes, recorder, permits) => {}
                                }
                            });
                        }
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
            Some(event) = watches.nodes.next() => node_event(&mut queue, &mut watches.node_list, event),
            Some(event) = watches.pods.next() => pod_event(&mut queue, &mut watches.pod_list, event),
            Some(event) = watches.claims.next() => claim_event(&mut queue, &mut watches.claim_list, event),
            Some(event) = watches.volumes.next() => volume_event(&mut queue, &mut watches.volume_list, event),
            Some(event) = watches.classes.next() => class_event(&mut queue, &mut watches.class_list, event),
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
    match list.change(event, "node") {
        Some(Change::Applied(node)) => queue.node_applied(node),
        Some(Change::Deleted(node)) => queue.node_deleted(&node.name_any()),
        Some(Change::Relisted(nodes)) => queue.nodes_relisted(nodes),
        None => {}
    }
}

fn pod_event(queue: &mut Queue, list: &mut Relist<Pod>, event: Result<Event<Pod>, watcher::Error>) {
    match list.change(event, "pod") {
        Some(Change::Applied(pod)) => queue.pod_applied(Arc::new(pod)),
        Some(Change::Deleted(pod)) => queue.pod_deleted(&pod),
        Some(Change::Relisted(pods)) => {
            queue.pods_relisted(pods.into_iter().map(Arc::new).collect())
        }
        None => {}
    }
}

fn claim_event(
    queue: &mut Queue,
    list: &mut Relist<PersistentVolumeClaim>,
    event: Result<Event<PersistentVolumeClaim>, watcher::Error>,
) {
    match list.change(event, "persistentvolumeclaim") {
        Some(Change::Applied(claim)) => queue.claim_applied(claim),
        Some(Change::Deleted(claim)) => queue.claim_deleted(&claim),
        Some(Change::Relisted(claims)) => queue.claims_relisted(claims),
        None => {}
    }
}

fn volume_event(
    queue: &mut Queue,
    list: &mut Relist<PersistentVolume>,
    event: Result<Event<PersistentVolume>, watcher::Error>,
) {
    match list.change(event, "persistentvolume") {
        Some(Change::Applied(volume)) => queue.volume_applied(volume),
        Some(Change::Deleted(volume)) => queue.volume_deleted(&volume.name_any()),
        Some(Change::Relisted(volumes)) => queue.volumes_relisted(volumes),
        None => {}
    }
}

fn class_event(
    queue: &mut Queue,
    list: &mut Relist<StorageClass>,
    event: Result<Event<StorageClass>, watcher::Error>,
) {
    match list.change(event, "storageclass") {
        Some(Change::Applied(class)) => queue.class_applied(class),
        Some(Change::Deleted(class)) => queue.class_deleted(&class.name_any()),
        Some(Change::Relisted(classes)) => queue.classes_relisted(classes),
        None => {}
    }
}

/// One pod to bind, with where to report the outcome.
struct Binding {
    client: kube::Client,
    failed: mpsc::UnboundedSender<Arc<Pod>>,
    events: mpsc::Sender<(Arc<Pod>, String)>,
    pod: Arc<Pod>,
    node: String,
}

impl Binding {
    /// Binds the pod; a `Scheduled` event on success, back to the queue on failure.
    async fn run(self) {
        let Binding { client, failed, events, pod, node } = self;
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
    }

    /// Writes the volume bindings and waits for the claims to be bound, then binds the pod
    /// (within a binding permit). A failure gets a `FailedScheduling` event, as kube-scheduler
    /// reports PreBind failures, and sends the pod back to the queue.
    async fn run_with_volumes(
        self,
        volumes: VolumeBindings,
        recorder: Recorder,
        permits: Arc<Semaphore>,
    ) {
        match volume_binding::bind_volumes(&self.client, &self.pod, &self.node, &volumes).await {
            Ok(()) => {
                let Ok(permit) = permits.acquire_owned().await else { return };
                self.run().await;
                drop(permit);
            }
            Err(err) => {
                tracing::debug!(pod = %self.pod.name_any(), node = %self.node, error = %err, "binding volumes failed");
                let message = format!("running PreBind plugin \"VolumeBinding\": {err}");
                recorder.record(&*self.pod, EventType::Warning, "FailedScheduling", &message).await;
                let _ = self.failed.send(self.pod);
            }
        }
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
