//! The object cache: how watch events fold into what readers see (table cases), and the cache
//! over an in-memory source that fails on demand, behind the same [`ObjectSource`] trait.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::channel::mpsc as feed;
use futures::future::BoxFuture;
use futures::FutureExt;
use kube::core::Status;

use super::*;

/// Waits until `condition` holds, failing the test after 10 s.
pub(super) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `future`'s output, failing the test after 10 s.
pub(super) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn config_map(value: &str) -> Object {
    Object::ConfigMap(ConfigMap {
        data: Some(BTreeMap::from([("key".to_string(), value.to_string())])),
        ..ConfigMap::default()
    })
}

/// The value of `key` in a ConfigMap read from the cache.
fn value_of(map: Option<ConfigMap>) -> Option<String> {
    map.and_then(|map| map.data).and_then(|mut data| data.remove("key"))
}

type Event = Result<watcher::Event<Object>, watcher::Error>;

#[test]
fn watch_events_fold_into_what_readers_see() {
    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
    let failure = || Err(watcher::Error::NoResourceVersion);
    let fresh = Seen::Listing { failed: false };
    let listed = |value: &str| Seen::Listed(Some(Arc::new(config_map(value))));
    // (what happens, what readers see before, the events, what they see after, the wakes)
    type Case = (&'static str, Seen, Vec<Event>, Seen, Vec<bool>);
    let cases: Vec<Case> = vec![
        (
            "a first listing finds the object",
            fresh.clone(),
            vec![Ok(Init), Ok(InitApply(config_map("v1"))), Ok(InitDone)],
            listed("v1"),
            vec![false],
        ),
        (
            "a first listing finds nothing: the object is absent",
            fresh.clone(),
            vec![Ok(Init), Ok(InitDone)],
            Seen::Listed(None),
            vec![false],
        ),
        (
            "a failed first listing stops readers waiting",
            fresh.clone(),
            vec![failure(), failure()],
            Seen::Listing { failed: true },
            vec![false],
        ),
        (
            "a listing after failures wakes the users, who read with GETs meanwhile",
            Seen::Listing { failed: true },
            vec![Ok(Init), Ok(InitApply(config_map("v1"))), Ok(InitDone)],
            listed("v1"),
            vec![true],
        ),
        (
            "a change wakes the users",
            listed("v1"),
            vec![Ok(Apply(config_map("v2")))],
            listed("v2"),
            vec![true],
        ),
        (
            "a deletion wakes the users",
            listed("v1"),
            vec![Ok(Delete(config_map("v1")))],
            Seen::Listed(None),
            vec![true],
        ),
        (
            "a relisting of the same object changes nothing",
            listed("v1"),
            vec![Ok(Init), Ok(InitApply(config_map("v1"))), Ok(InitDone)],
            listed("v1"),
            vec![],
        ),
        (
            "a relisting that misses the object deletes it",
            listed("v1"),
            vec![Ok(Init), Ok(InitDone)],
            Seen::Listed(None),
            vec![true],
        ),
        (
            "readers keep the object until a relisting completes",
            listed("v1"),
            vec![Ok(Init), Ok(InitApply(config_map("v2")))],
            listed("v1"),
            vec![],
        ),
        (
            "a failure once listed keeps the object",
            listed("v1"),
            vec![failure()],
            listed("v1"),
            vec![],
        ),
        (
            "a relisting cut by a failure is dropped",
            listed("v1"),
            vec![Ok(Init), Ok(InitApply(config_map("v2"))), failure(), Ok(Init), Ok(InitDone)],
            Seen::Listed(None),
            vec![true],
        ),
    ];
    for (name, before, events, after, wakes) in cases {
        let mut fold = WatchFold::default();
        let mut seen = before;
        let mut woken = Vec::new();
        for event in events {
            if let Some(update) = fold.apply(&seen, event) {
                assert_ne!(update.seen, seen, "{name}: an update changes what readers see");
                woken.push(update.changed);
                seen = update.seen;
            }
        }
        assert_eq!(seen, after, "{name}");
        assert_eq!(woken, wakes, "{name}: wakes");
    }
}

#[test]
fn pods_reference_objects_of_their_volumes_and_environment_in_their_namespace() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "shop"},
        "spec": {
            "volumes": [{"name": "api", "projected": {"sources": [
                {"configMap": {"name": "kube-root-ca.crt"}},
                {"serviceAccountToken": {"path": "token"}}]}}],
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
            "containers": [{
                "name": "main",
                "envFrom": [{"configMapRef": {"name": "env-map"}}],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}},
                        {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "env-map", "key": "k"}}}]
            }]
        }
    }))
    .unwrap();
    let expected = BTreeSet::from([
        ObjectKey::config_map("shop", "env-map"),
        ObjectKey::config_map("shop", "kube-root-ca.crt"),
        ObjectKey::secret("shop", "db"),
        ObjectKey::secret("shop", "init-secret"),
    ]);
    assert_eq!(ObjectKey::referenced_by(&pod), expected);
    let mut elsewhere = pod.clone();
    elsewhere.metadata.namespace = None;
    assert!(ObjectKey::referenced_by(&elsewhere).iter().all(|key| key.namespace == "default"));
}

/// An in-memory [`ObjectSource`]: each watch is fed by the test; GETs answer from `objects`
/// or fail with `failing_gets`.
#[derive(Default)]
struct FakeObjects {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    /// The feed of every watch handed out, in order.
    feeds: Vec<(ObjectKey, feed::UnboundedSender<Event>)>,
    /// What a GET finds.
    objects: HashMap<ObjectKey, Object>,
    /// The status code every GET fails with, when set.
    failing_gets: Option<u16>,
    gets: usize,
}

impl FakeObjects {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// Sends `event` to the running watch of `key`.
    fn send(&self, key: &ObjectKey, event: Event) {
        let state = self.state();
        let live = state.feeds.iter().rev().find(|(k, feed)| k == key && !feed.is_closed());
        let (_, feed) = live.unwrap_or_else(|| panic!("no watch of {key}"));
        feed.unbounded_send(event).unwrap();
    }

    /// Sends a complete listing of `key`.
    fn list(&self, key: &ObjectKey, object: Option<Object>) {
        self.send(key, Ok(watcher::Event::Init));
        if let Some(object) = object {
            self.send(key, Ok(watcher::Event::InitApply(object)));
        }
        self.send(key, Ok(watcher::Event::InitDone));
    }

    /// The objects with a running watch (the cache still holds its stream).
    fn watched(&self) -> Vec<ObjectKey> {
        let state = self.state();
        let mut keys: Vec<ObjectKey> = state
            .feeds
            .iter()
            .filter(|(_, feed)| !feed.is_closed())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn gets(&self) -> usize {
        self.state().gets
    }
}

impl ObjectSource for FakeObjects {
    fn watch(&self, key: &ObjectKey) -> WatchEvents {
        let (sender, receiver) = feed::unbounded();
        self.state().feeds.push((key.clone(), sender));
        receiver.boxed()
    }

    fn get(&self, key: &ObjectKey) -> BoxFuture<'static, Result<Option<Object>, kube::Error>> {
        let mut state = self.state();
        state.gets += 1;
        let answer = match state.failing_gets {
            Some(code) => {
                let status = Status::failure("etcdserver: request timed out", "InternalError");
                Err(kube::Error::Api(status.with_code(code).boxed()))
            }
            None => Ok(state.objects.get(key).cloned()),
        };
        async move { answer }.boxed()
    }
}

/// A cache over a fake source whose reads wait `wait` for first listings.
fn fake_cache(
    wait: Duration,
) -> (Arc<FakeObjects>, ObjectCache, mpsc::UnboundedReceiver<ObjectKey>) {
    let source = Arc::new(FakeObjects::default());
    let stop = CancellationToken::new();
    let (cache, changed) = ObjectCache::with_first_listing_wait(source.clone(), wait, &stop);
    (source, cache, changed)
}

/// What readers of `key` see now; `None` when nothing watches it.
fn seen_by(reader: &ObjectReader, key: &ObjectKey) -> Option<Seen> {
    reader.lock().get(key).map(|watch| watch.seen.borrow().clone())
}

#[tokio::test]
async fn reads_come_from_the_watch_and_changes_wake_the_users() {
    let (source, cache, mut changed) = fake_cache(Duration::from_secs(30));
    let ca = ObjectKey::config_map("shop", "kube-root-ca.crt");
    // A GET would find another version: reads below must not come from it.
    source.state().objects.insert(ca.clone(), config_map("from a GET"));
    let mut users = ObjectUsers::default();

    // --- the first pod's registration starts the watch; a read waits for its listing
    cache.apply(&users.register("a", BTreeSet::from([ca.clone()])));
    assert_eq!(source.watched(), std::slice::from_ref(&ca));
    let reader = cache.reader();
    let read = tokio::spawn({
        let reader = reader.clone();
        async move { reader.config_map("shop", "kube-root-ca.crt").await }
    });
    source.list(&ca, Some(config_map("v1")));
    let found = within("the read", read).await.unwrap().unwrap();
    assert_eq!(value_of(found).as_deref(), Some("v1"));

    // --- further reads, as every pass makes them, send nothing
    for _ in 0..10 {
        let found = reader.config_map("shop", "kube-root-ca.crt").await.unwrap();
        assert_eq!(value_of(found).as_deref(), Some("v1"));
    }
    assert_eq!(source.gets(), 0, "reads of a listed object need no GET");
    assert!(changed.try_recv().is_err(), "the first listing wakes nobody");

    // --- a change reaches readers and names the object for its users to wake
    source.send(&ca, Ok(watcher::Event::Apply(config_map("v2"))));
    assert_eq!(within("the change", changed.recv()).await, Some(ca.clone()));
    let found = reader.config_map("shop", "kube-root-ca.crt").await.unwrap();
    assert_eq!(value_of(found).as_deref(), Some("v2"));

    // --- a deletion makes the object absent
    source.send(&ca, Ok(watcher::Event::Delete(config_map("v2"))));
    assert_eq!(within("the deletion", changed.recv()).await, Some(ca.clone()));
    assert_eq!(reader.config_map("shop", "kube-root-ca.crt").await.unwrap(), None);
    assert_eq!(source.gets(), 0);
    cache.shutdown().await;
    assert!(source.watched().is_empty(), "shutdown ends every watch");
}

#[tokio::test]
async fn a_watch_lives_while_some_pod_uses_its_object() {
    let (source, cache, _changed) = fake_cache(Duration::from_secs(30));
    let ca = ObjectKey::config_map("shop", "kube-root-ca.crt");
    let db = ObjectKey::secret("shop", "db");
    let mut users = ObjectUsers::default();

    // --- two pods share the CA: one watch
    cache.apply(&users.register("a", BTreeSet::from([ca.clone(), db.clone()])));
    cache.apply(&users.register("b", BTreeSet::from([ca.clone()])));
    assert_eq!(source.watched(), [ca.clone(), db.clone()]);
    assert_eq!(source.state().feeds.len(), 2, "the second user starts no watch");

    // --- the first pod goes: its secret's watch ends, the CA's stays
    cache.apply(&users.unregister("a"));
    wait_until("the secret's watch to end", || source.watched() == [ca.clone()]).await;

    // --- an object no pod uses is read with a GET
    source.state().objects.insert(db.clone(), Object::Secret(Secret::default()));
    let found = cache.reader().secret("shop", "db").await.unwrap();
    assert_eq!(found, Some(Secret::default()));
    assert_eq!(source.gets(), 1);

    // --- the last pod goes: no watch is left
    cache.apply(&users.unregister("b"));
    wait_until("every watch to end", || source.watched().is_empty()).await;
    cache.shutdown().await;
}

#[tokio::test]
async fn reads_without_a_listing_fall_back_to_one_get() {
    let ca = ObjectKey::config_map("shop", "kube-root-ca.crt");
    let mut users = ObjectUsers::default();

    // --- a failed listing: reads do not wait for the next attempt
    let (source, cache, mut changed) = fake_cache(Duration::from_secs(600));
    source.state().objects.insert(ca.clone(), config_map("from a GET"));
    cache.apply(&users.register("a", BTreeSet::from([ca.clone()])));
    source.send(&ca, Err(watcher::Error::NoResourceVersion));
    let reader = cache.reader();
    wait_until("the failed listing", || {
        seen_by(&reader, &ca) == Some(Seen::Listing { failed: true })
    })
    .await;
    let found = within("the read", reader.config_map("shop", "kube-root-ca.crt")).await.unwrap();
    assert_eq!(value_of(found).as_deref(), Some("from a GET"));

    // --- the GET's errors fail the read, as they failed the pass before the cache
    source.state().failing_gets = Some(500);
    let error =
        within("the read", reader.config_map("shop", "kube-root-ca.crt")).await.unwrap_err();
    assert!(matches!(&error, kube::Error::Api(status) if status.code == 500), "{error}");

    // --- an absent object is absent, not an error
    source.state().failing_gets = None;
    source.state().objects.clear();
    assert_eq!(
        within("the read", reader.config_map("shop", "kube-root-ca.crt")).await.unwrap(),
        None
    );

    // --- a listing after the failure serves reads again, and wakes the users
    let gets = source.gets();
    source.list(&ca, Some(config_map("listed")));
    assert_eq!(within("the wake", changed.recv()).await, Some(ca.clone()));
    let found = reader.config_map("shop", "kube-root-ca.crt").await.unwrap();
    assert_eq!(value_of(found).as_deref(), Some("listed"));
    assert_eq!(source.gets(), gets);
    cache.shutdown().await;

    // --- a listing later than the bound: the read waits for it, then reads with a GET
    let wait = Duration::from_millis(100);
    let (source, cache, _changed) = fake_cache(wait);
    source.state().objects.insert(ca.clone(), config_map("from a GET"));
    cache.apply(&ObjectUsers::default().register("a", BTreeSet::from([ca.clone()])));
    let started = Instant::now();
    let found = within("the read", cache.reader().config_map("shop", "kube-root-ca.crt")).await;
    assert!(started.elapsed() >= wait, "the read waited for the listing");
    assert_eq!(value_of(found.unwrap()).as_deref(), Some("from a GET"));
    assert_eq!(source.gets(), 1);
    cache.shutdown().await;
}
