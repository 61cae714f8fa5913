//! The ConfigMaps and Secrets the node's pods read, kept by watches rather than read with a GET
//! on every pass (kubelet's `configMapAndSecretChangeDetectionStrategy: Watch`): one watch per
//! referenced object (`fieldSelector=metadata.name=<name>` in its namespace), started when the
//! first pod referencing it is registered and stopped when the last one goes ([`ObjectUsers`]
//! decides which; the pod workers' loop registers pods and applies its [`WatchChanges`]).
//!
//! - Reads ([`ObjectReader`]) answer from what the object's watch last saw. A read before the
//!   watch's first listing waits for it, at most [`FIRST_LISTING_WAIT`]. When that passes, when
//!   a listing attempt failed, or when nothing watches the object, the read is one GET
//!   instead, which answers as reads always did: `None` for an object that does not exist, the
//!   API's error otherwise (and the pass fails with it).
//! - A change seen after the first listing sends the object's key to the cache's owner, which
//!   wakes the pods using it, so a changed object reaches their volumes at once. So does the
//!   first listing after failed attempts, since readers meanwhile read with GETs; one that is
//!   merely slow is caught by the pods' resync.
//!
//! Invariants: a watch runs exactly while [`ObjectCache::apply`] has started and not stopped it;
//! readers never see a relisting half done (its result replaces the object when it completes);
//! once listed, an object stays readable while its watch reconnects after a failure, as with
//! kubelet's reflectors.

mod source;
#[cfg(test)]
mod tests;
mod users;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::volumes::{referenced, ObjectKind};
pub(crate) use source::{ApiObjects, ObjectSource, WatchEvents};
pub(crate) use users::{ObjectUsers, WatchChanges};

/// How long a read waits for a new watch's first listing before reading with a GET instead.
/// A listing of one object takes milliseconds; this only bounds a pass when the masters are
/// slow (kubelet gives up after 1 s and fails the read).
pub(crate) const FIRST_LISTING_WAIT: Duration = Duration::from_secs(2);

/// A ConfigMap or Secret, named by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub(crate) fn config_map(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { kind: ObjectKind::ConfigMap, namespace: namespace.into(), name: name.into() }
    }

    pub(crate) fn secret(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { kind: ObjectKind::Secret, namespace: namespace.into(), name: name.into() }
    }

    /// The ConfigMaps and Secrets `pod` reads, in its namespace: those of its volumes and
    /// projected sources, and of its containers' `env` (`valueFrom`) and `envFrom`.
    pub(crate) fn referenced_by(pod: &Pod) -> BTreeSet<ObjectKey> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let references = referenced(pod);
        let maps = references.config_maps.iter().map(|name| ObjectKey::config_map(namespace, name));
        let secrets = references.secrets.iter().map(|name| ObjectKey::secret(namespace, name));
        maps.chain(secrets).collect()
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A watched object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    ConfigMap(ConfigMap),
    Secret(Secret),
}

/// What readers see of one watched object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// The watch has not completed its first listing; `failed` once an attempt failed, after
    /// which readers stop waiting for it.
    Listing { failed: bool },
    /// As last listed or watched: the object, or `None` when it does not exist.
    Listed(Option<Arc<Object>>),
}

/// What one watch event changes for readers.
#[derive(Debug, PartialEq)]
pub(crate) struct Update {
    /// What readers see from now on.
    pub seen: Seen,
    /// Whether the pods using the object must look at it again: it changed after they could
    /// have read it.
    pub changed: bool,
}

/// Folds one object's watch events into what readers see; no IO.
#[derive(Debug, Default)]
pub(crate) struct WatchFold {
    /// What the current listing found so far: `Some` between `Init` and `InitDone`.
    listing: Option<Option<Object>>,
}

impl WatchFold {
    /// What `event` changes when readers see `current`; `None` when it changes nothing.
    pub(crate) fn apply(
        &mut self,
        current: &Seen,
        event: Result<watcher::Event<Object>, watcher::Error>,
    ) -> Option<Update> {
        let next = match event {
            Ok(watcher::Event::Init) => {
                self.listing = Some(None);
                return None;
            }
            Ok(watcher::Event::InitApply(object)) => {
                self.listing = Some(Some(object));
                return None;
            }
            Ok(watcher::Event::InitDone) => {
                Seen::Listed(self.listing.take().flatten().map(Arc::new))
            }
            Ok(watcher::Event::Apply(object)) => Seen::Listed(Some(Arc::new(object))),
            Ok(watcher::Event::Delete(_)) => Seen::Listed(None),
            Err(_) => {
                // The watcher starts over with a new listing after a failure.
                self.listing = None;
                match current {
                    Seen::Listing { failed: false } => Seen::Listing { failed: true },
                    _ => return None,
                }
            }
        };
        if next == *current {
            return None;
        }
        let changed = matches!(
            (current, &next),
            (Seen::Listed(_) | Seen::Listing { failed: true }, Seen::Listed(_))
        );
        Some(Update { seen: next, changed })
    }
}

/// One running watch, as readers find it.
struct Watch {
    seen: watch::Receiver<Seen>,
    stop: CancellationToken,
}

type Watches = Arc<Mutex<HashMap<ObjectKey, Watch>>>;

/// The watches of the objects the node's pods use. Its owner (the pod workers' loop) starts
/// and stops them as [`ObjectUsers`] says, hands [`ObjectReader`]s to the pod workers, and
/// receives the keys of changed objects.
pub(crate) struct ObjectCache {
    reader: ObjectReader,
    changed: mpsc::UnboundedSender<ObjectKey>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl ObjectCache {
    /// A cache reading from `source`, whose watches end at the latest with `stop`. The
    /// receiver gets the key of each object whose users must look at it again.
    pub(crate) fn new(
        source: Arc<dyn ObjectSource>,
        stop: &CancellationToken,
    ) -> (ObjectCache, mpsc::UnboundedReceiver<ObjectKey>) {
        ObjectCache::with_first_listing_wait(source, FIRST_LISTING_WAIT, stop)
    }

    /// [`ObjectCache::new`] with reads waiting at most `wait` for a first listing.
    pub(crate) fn with_first_listing_wait(
        source: Arc<dyn ObjectSource>,
        wait: Duration,
        stop: &CancellationToken,
    ) -> (ObjectCache, mpsc::UnboundedReceiver<ObjectKey>) {
        let (changed, receiver) = mpsc::unbounded_channel();
        let reader = ObjectReader { watches: Arc::default(), source, first_listing_wait: wait };
        let cache =
            ObjectCache { reader, changed, tasks: TaskTracker::new(), stop: stop.child_token() };
        (cache, receiver)
    }

    /// A reader of the cache, for the pod workers.
    pub(crate) fn reader(&self) -> ObjectReader {
        self.reader.clone()
    }

    /// Stops and starts watches as `changes` says.
    pub(crate) fn apply(&self, changes: &WatchChanges) {
        for key in &changes.stop {
            if let Some(watch) = self.reader.lock().remove(key) {
                watch.stop.cancel();
                tracing::debug!(object = %key, "stopped watching an object");
            }
        }
        for key in &changes.start {
            let mut watches = self.reader.lock();
            if watches.contains_key(key) {
                continue;
            }
            let (publish, seen) = watch::channel(Seen::Listing { failed: false });
            let stop = self.stop.child_token();
            let events = self.reader.source.watch(key);
            let changed = self.changed.clone();
            self.tasks.spawn(follow(key.clone(), events, publish, changed, stop.clone()));
            watches.insert(key.clone(), Watch { seen, stop });
            tracing::debug!(object = %key, "watching an object");
        }
    }

    /// Stops every watch and waits for their tasks to end.
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Reads ConfigMaps and Secrets through the cache (see the module's documentation for when
/// a read is a GET).
#[derive(Clone)]
pub(crate) struct ObjectReader {
    watches: Watches,
    source: Arc<dyn ObjectSource>,
    first_listing_wait: Duration,
}

impl ObjectReader {
    /// The map of running watches. Nothing panics while holding it; a poisoned lock is taken
    /// over as is.
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Watch>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ConfigMap `namespace/name`, `None` when it does not exist.
    pub(crate) async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, kube::Error> {
        Ok(match self.get(&ObjectKey::config_map(namespace, name)).await? {
            Some(Object::ConfigMap(map)) => Some(map),
            // A key's kind decides what its watch and its GET yield: nothing else comes.
            _ => None,
        })
    }

    /// The Secret `namespace/name`, `None` when it does not exist.
    pub(crate) async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, kube::Error> {
        Ok(match self.get(&ObjectKey::secret(namespace, name)).await? {
            Some(Object::Secret(secret)) => Some(secret),
            _ => None,
        })
    }

    /// The object `key` names, from its watch when that has listed it, else with one GET.
    pub(crate) async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, kube::Error> {
        if let Some(listed) = self.listed(key).await {
            return Ok(listed.map(|object| Object::clone(&object)));
        }
        tracing::debug!(object = %key, "reading an object with a GET: its watch has no listing");
        self.source.get(key).await
    }

    /// What the watch of `key` holds, after waiting for its first listing at most
    /// `first_listing_wait`; `None` when nothing watches it, or the listing failed or is late.
    async fn listed(&self, key: &ObjectKey) -> Option<Option<Arc<Object>>> {
        let mut seen = self.lock().get(key).map(|watch| watch.seen.clone())?;
        let settled = |seen: &Seen| !matches!(seen, Seen::Listing { failed: false });
        let waited = tokio::time::timeout(self.first_listing_wait, seen.wait_for(settled)).await;
        match waited {
            Ok(Ok(seen)) => match &*seen {
                Seen::Listed(object) => Some(object.clone()),
                Seen::Listing { .. } => None,
            },
            // Late, or stopped before listing.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// Runs the watch of `key` until `stop`: folds its events into what readers see (`publish`)
/// and sends the key on `changed` when the object's users must look at it again.
async fn follow(
    key: ObjectKey,
    mut events: WatchEvents,
    publish: watch::Sender<Seen>,
    changed: mpsc::UnboundedSender<ObjectKey>,
    stop: CancellationToken,
) {
    let mut fold = WatchFold::default();
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else {
            tracing::warn!(object = %key, "the watch of an object ended");
            return;
        };
        if let Err(err) = &event {
            if matches!(*publish.borrow(), Seen::Listing { .. }) {
                tracing::warn!(object = %key, error = %err, "listing a watched object");
            } else {
                tracing::debug!(object = %key, error = %err, "watching an object");
            }
        }
        let update = fold.apply(&publish.borrow(), event);
        let Some(update) = update else { continue };
        publish.send_replace(update.seen);
        if update.changed {
            tracing::debug!(object = %key, "a watched object changed");
            // The owner has gone only when the node stops.
            let _ = changed.send(key.clone());
        }
    }
}
