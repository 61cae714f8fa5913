//! One feed of Services and EndpointSlices for everything on the node that follows them (the
//! service proxy and the cluster DNS), from two watches.
//!
//! A watch that lists again (after an expired resourceVersion or a lost connection) reports
//! every object anew; what that listing no longer holds is reported deleted at its end, so
//! consumers see deletions they missed. [`Sink::listed`] is called once, when both kinds have
//! been listed completely for the first time.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

/// A namespace and a name.
pub type Key = (String, String);

/// What follows Services and EndpointSlices.
pub trait Sink {
    /// Takes the object: the feed has no further use for it.
    fn apply_service(&mut self, service: Service);
    fn delete_service(&mut self, namespace: &str, name: &str);
    fn apply_slice(&mut self, slice: EndpointSlice);
    fn delete_slice(&mut self, namespace: &str, name: &str);
    /// Both kinds have been listed completely for the first time.
    fn listed(&mut self);
}

fn key<K: ResourceExt>(object: &K) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// The keys one kind's current listing has reported, and what the consumers hold.
#[derive(Default)]
struct Listing {
    /// What the consumers were told exists.
    known: HashSet<Key>,
    /// Keys reported by a listing in progress.
    seen: Option<HashSet<Key>>,
    done_once: bool,
}

impl Listing {
    /// Returns the keys to report deleted: on `InitDone`, those the listing did not report.
    fn event<K: ResourceExt>(&mut self, event: &watcher::Event<K>) -> Vec<Key> {
        match event {
            watcher::Event::Init => {
                self.seen = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let key = key(object);
                if let Some(seen) = self.seen.as_mut() {
                    seen.insert(key.clone());
                }
                self.known.insert(key);
                Vec::new()
            }
            watcher::Event::Delete(object) => {
                self.known.remove(&key(object));
                Vec::new()
            }
            watcher::Event::InitDone => {
                self.done_once = true;
                let seen = self.seen.take().unwrap_or_default();
                let gone: Vec<Key> = self.known.difference(&seen).cloned().collect();
                self.known = seen;
                gone
            }
        }
    }
}

/// A kind the feed follows, and how a sink hears of it.
trait Followed: ResourceExt + Sized {
    const WHAT: &'static str;
    fn apply(sink: &mut impl Sink, object: Self);
    fn delete(sink: &mut impl Sink, namespace: &str, name: &str);
}

impl Followed for Service {
    const WHAT: &'static str = "services";
    fn apply(sink: &mut impl Sink, object: Self) {
        sink.apply_service(object);
    }
    fn delete(sink: &mut impl Sink, namespace: &str, name: &str) {
        sink.delete_service(namespace, name);
    }
}

impl Followed for EndpointSlice {
    const WHAT: &'static str = "endpointslices";
    fn apply(sink: &mut impl Sink, object: Self) {
        sink.apply_slice(object);
    }
    fn delete(sink: &mut impl Sink, namespace: &str, name: &str) {
        sink.delete_slice(namespace, name);
    }
}

/// Hands one watch item to `sink`: first the deletions a finished listing implies, then the
/// event itself. Returns `false` when the watch ended.
fn deliver<K: Followed>(
    item: Option<Result<watcher::Event<K>, watcher::Error>>,
    listing: &mut Listing,
    sink: &mut impl Sink,
) -> bool {
    match item {
        Some(Ok(event)) => {
            for (namespace, name) in listing.event(&event) {
                K::delete(sink, &namespace, &name);
            }
            match event {
                watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                    K::apply(sink, object)
                }
                watcher::Event::Delete(object) => {
                    let (namespace, name) = key(&object);
                    K::delete(sink, &namespace, &name);
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            true
        }
        Some(Err(err)) => {
            tracing::debug!(what = K::WHAT, error = %err, "watching");
            true
        }
        None => false,
    }
}

type Events<K> =
    std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

/// The two watches and what their listings reported.
pub struct Feed {
    services: Events<Service>,
    slices: Events<EndpointSlice>,
    service_listing: Listing,
    slice_listing: Listing,
    listed: bool,
}

impl Feed {
    /// Watches every Service and EndpointSlice in the cluster.
    pub fn watch(client: kube::Client) -> Feed {
        let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .default_backoff();
        let slices = watcher(Api::<EndpointSlice>::all(client), watcher::Config::default())
            .default_backoff();
        Feed::new(Box::pin(services), Box::pin(slices))
    }

    fn new(services: Events<Service>, slices: Events<EndpointSlice>) -> Feed {
        Feed {
            services,
            slices,
            service_listing: Listing::default(),
            slice_listing: Listing::default(),
            listed: false,
        }
    }

    /// Waits for the next event and hands it to `sink`; returns `false` once a watch ended.
    ///
    /// Cancel-safe: an event is taken from its watch and handed over without awaiting in
    /// between.
    pub async fn step(&mut self, sink: &mut impl Sink) -> bool {
        let alive = tokio::select! {
            event = self.services.next() => deliver(event, &mut self.service_listing, sink),
            event = self.slices.next() => deliver(event, &mut self.slice_listing, sink),
        };
        if !alive {
            return false;
        }
        if !self.listed && self.service_listing.done_once && self.slice_listing.done_once {
            self.listed = true;
            sink.listed();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}})).unwrap()
    }

    fn slice(name: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "addressType": "IPv4", "endpoints": [],
        }))
        .unwrap()
    }

    /// Records what it is told, one line per call.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Sink for Log {
        fn apply_service(&mut self, service: Service) {
            self.0.push(format!("apply service {}", service.name_any()));
        }
        fn delete_service(&mut self, _: &str, name: &str) {
            self.0.push(format!("delete service {name}"));
        }
        fn apply_slice(&mut self, slice: EndpointSlice) {
            self.0.push(format!("apply slice {}", slice.name_any()));
        }
        fn delete_slice(&mut self, _: &str, name: &str) {
            self.0.push(format!("delete slice {name}"));
        }
        fn listed(&mut self) {
            self.0.push("listed".into());
        }
    }

    #[tokio::test]
    async fn listed_once_after_both_listings_and_relists_report_missed_deletions() {
        use watcher::Event;
        let services = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(service("a"))),
            Ok(Event::InitApply(service("b"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(service("c"))),
            // The watch expired: a new listing no longer holds b.
            Ok(Event::Init),
            Ok(Event::InitApply(service("a"))),
            Ok(Event::InitApply(service("c"))),
            Ok(Event::InitDone),
        ])
        .chain(futures::stream::pending())
        .boxed();
        let slices = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(slice("a-1"))),
            Ok(Event::InitDone),
            Ok(Event::Delete(slice("a-1"))),
        ])
        .chain(futures::stream::pending())
        .boxed();
        let mut feed = Feed::new(services, slices);
        let mut log = Log::default();
        // Every event the two streams hold (13), then nothing more arrives.
        for _ in 0..13 {
            assert!(feed.step(&mut log).await);
        }
        let lines = log.0;
        let listed = lines.iter().position(|l| l == "listed").unwrap();
        assert_eq!(lines.iter().filter(|l| *l == "listed").count(), 1);
        for before in ["apply service a", "apply service b", "apply slice a-1"] {
            let at = lines.iter().position(|l| l == before).unwrap();
            assert!(at < listed, "{before} comes before listed: {lines:?}");
        }
        assert!(lines.contains(&"delete service b".to_string()), "{lines:?}");
        assert!(!lines.contains(&"delete service a".to_string()), "{lines:?}");
        assert!(!lines.contains(&"delete service c".to_string()), "{lines:?}");
        assert!(lines.contains(&"delete slice a-1".to_string()), "{lines:?}");
    }
}
