//! The node's pods, kubelet's pod workers: one task per pod, each running passes of
//! [`sync::Syncer`] one at a time, woken by the watch of the pods bound to this node, by a
//! relist of the runtime every second (kubelet's PLEG: a container that exits is noticed
//! within a second), by a change of a ConfigMap or Secret the pod uses, and by the pass's own
//! requeue time.
//!
//! The ConfigMaps and Secrets the pods read come from [`objects_cache`]: each pod is registered
//! with the objects it references when the watch of pods shows it, and unregistered when it
//! reaches a terminal phase or its worker ends, so each object is watched while some pod here
//! may still read it.
//!
//! Invariants:
//! - At most one pass runs for a pod at a time, so decisions never race each other.
//! - Nothing is decided before the watch's first listing is complete (the pod store fills only
//!   then): workers start after it, and sandboxes the runtime holds for pods absent from the
//!   API are removed only after it, so a restarted agent keeps its pods running.

mod containers;
mod hooks;
mod objects_cache;
mod observe;
mod probe;
pub(crate) mod sync;
mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_cri::v1::{ContainerFilter, PodSandboxFilter};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cri::Runtime;
use crate::pods::sandbox::POD_UID_LABEL;
use objects_cache::{ApiObjects, ObjectCache, ObjectKey, ObjectReader, ObjectUsers};
use sync::{Outcome, PodState, Syncer};

/// How often the runtime is relisted for changes.
const RELIST: Duration = Duration::from_secs(1);
/// How often a pod is synced when nothing wakes it earlier.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a failed pass is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A running pod worker.
struct Worker {
    wake: Arc<Notify>,
}

/// What a pod's runtime objects look like, to notice that something changed.
type Fingerprint = Vec<(String, i32)>;

/// Runs the pods bound to `node` until `stop`.
pub(crate) async fn run<R: Runtime>(syncer: Syncer<R>, node: String, stop: CancellationToken) {
    let pods: Api<Pod> = Api::all(syncer.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let (store, writer) = reflector::store::<Pod>();
    let events = reflector::reflector(writer, watcher(pods, config)).default_backoff();
    let mut events = std::pin::pin!(events);
    let tasks = TaskTracker::new();
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<String>();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listed = false;
    let mut pending: Vec<(String, ObjectRef<Pod>)> = Vec::new();
    let mut fingerprints: BTreeMap<String, Fingerprint> = BTreeMap::new();
    let mut relist = tokio::time::interval(RELIST);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let source = Arc::new(ApiObjects::new(syncer.client.clone()));
    let (objects, mut changed_objects) = ObjectCache::new(source, &stop);
    let mut users = ObjectUsers::default();
    let reader = objects.reader();

    let spawn =
        |workers: &mut HashMap<String, Worker>, uid: String, key: Option<ObjectRef<Pod>>| {
            if let Some(worker) = workers.get(&uid) {
                worker.wake.notify_one();
                return;
            }
            let wake = Arc::new(Notify::new());
            tasks.spawn(work(
                syncer.clone(),
                store.clone(),
                reader.clone(),
                uid.clone(),
                key,
                wake.clone(),
                stop.clone(),
                finished_tx.clone(),
            ));
            workers.insert(uid, Worker { wake });
        };

    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        // Before its worker starts, so its objects' watches start listing. A pod in
                        // a terminal phase reads them no more (kubelet unregisters it then too).
                        let references = if sync::is_terminal(&pod) {
                            BTreeSet::new()
                        } else {
                            ObjectKey::referenced_by(&pod)
                        };
                        objects.apply(&users.register(&uid, references));
                        let key = ObjectRef::from_obj(&pod);
                        if listed {
                            spawn(&mut workers, uid, Some(key));
                        } else {
                            // The store fills only when the first listing completes: a worker
                            // started now would take its pod for deleted.
                            pending.push((uid, key));
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(worker) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                            worker.wake.notify_one();
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        listed = true;
                        for (uid, key) in pending.drain(..) {
                            spawn(&mut workers, uid, Some(key));
                        }
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(err) => tracing::warn!(error = %err, "watching the node's pods"),
                }
            }
            Some(uid) = finished_rx.recv() => {
                workers.remove(&uid);
                objects.apply(&users.unregister(&uid));
            }
            Some(object) = changed_objects.recv() => {
                for uid in users.pods_using(&object) {
                    if let Some(worker) = workers.get(uid) {
                        worker.wake.notify_one();
                    }
                }
            }
            _ = relist.tick() => {
                let Ok(current) = relisted(&syncer.runtime).await else { continue };
                for (uid, fingerprint) in &current {
                    if fingerprints.get(uid) == Some(fingerprint) {
                        continue;
                    }
                    match workers.get(uid) {
                        Some(worker) => worker.wake.notify_one(),
                        // Something of a pod the API does not have: remove it.
                        None if listed => spawn(&mut workers, uid.clone(), None),
                        None => continue,
                    }
                }
                fingerprints = current;
            }
        }
    }
    tasks.close();
    tasks.wait().await;
    objects.shutdown().await;
}

/// Every pod's sandboxes and containers, by pod uid.
async fn relisted<R: Runtime>(runtime: &R) -> Result<BTreeMap<String, Fingerprint>, ()> {
    let sandboxes = runtime.list_pod_sandboxes(PodSandboxFilter::default()).await;
    let containers = runtime.list_containers(ContainerFilter::default()).await;
    let (Ok(sandboxes), Ok(containers)) = (sandboxes, containers) else {
        return Err(());
    };
    let mut out: BTreeMap<String, Fingerprint> = BTreeMap::new();
    let objects = sandboxes
        .iter()
        .map(|s| (&s.labels, &s.id, s.state))
        .chain(containers.iter().map(|c| (&c.labels, &c.id, c.state)));
    for (labels, id, state) in objects {
        if let Some(uid) = labels.get(POD_UID_LABEL) {
            out.entry(uid.clone()).or_default().push((id.clone(), state));
        }
    }
    for fingerprint in out.values_mut() {
        fingerprint.sort();
    }
    Ok(out)
}

/// One pod's worker: passes until the pod is gone from the API and from the runtime.
#[allow(clippy::too_many_arguments)] // The worker's inputs, each used once.
async fn work<R: Runtime>(
    syncer: Syncer<R>,
    store: Store<Pod>,
    objects: ObjectReader,
    uid: String,
    key: Option<ObjectRef<Pod>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    finished: mpsc::UnboundedSender<String>,
) {
    let mut state = PodState::new(wake.clone(), objects);
    loop {
        let pod = key
            .as_ref()
            .and_then(|key| store.get(key))
            .filter(|pod| pod.metadata.uid.as_deref() == Some(uid.as_str()));
        // Boxed: a sync's state machine is large (≈28 KB), and held in the task it would stay
        // allocated while the worker waits, for every pod of the node.
        let outcome = match pod {
            Some(pod) => Box::pin(syncer.sync(&pod, &mut state)).await,
            None => Box::pin(syncer.tear_down(&uid)).await.map(|()| Outcome::Finished),
        };
        let wait = match outcome {
            Ok(Outcome::Finished) => break,
            Ok(Outcome::Again(wait)) => wait.unwrap_or(RESYNC).min(RESYNC),
            Err(err) => {
                tracing::warn!(pod = %uid, error = %err, "syncing a pod");
                RETRY
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let _ = finished.send(uid);
}
