//! Where the object cache reads: the [`ObjectSource`] boundary and [`ApiObjects`], its
//! implementation over the API with kube-runtime's watcher.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};

use super::{Object, ObjectKey};
use crate::worker::volumes::ObjectKind;

/// The events of one object's watch, as kube-runtime's watcher yields them.
pub(crate) type WatchEvents = BoxStream<'static, Result<watcher::Event<Object>, watcher::Error>>;

/// Reads ConfigMaps and Secrets by name: the API for the agent, fakes in unit tests.
pub(crate) trait ObjectSource: Send + Sync + 'static {
    /// Watches the one object `key` names: a listing (`Init`, `InitApply` when the object
    /// exists, `InitDone`), then its changes (`Apply`, `Delete`), and a new listing whenever the
    /// watch had to start over. Failures are yielded as errors and retried with back-off by
    /// the stream itself, which ends only when dropped.
    fn watch(&self, key: &ObjectKey) -> WatchEvents;

    /// Reads the object once: `None` when it does not exist, the API's error otherwise.
    fn get(&self, key: &ObjectKey) -> BoxFuture<'static, Result<Option<Object>, kube::Error>>;
}

/// The API's objects, through the node's client: a watch with
/// `fieldSelector=metadata.name=<name>` in the object's namespace, as kubelet's reflectors
/// for single objects.
pub(crate) struct ApiObjects {
    client: kube::Client,
}

impl ApiObjects {
    pub(crate) fn new(client: kube::Client) -> ApiObjects {
        ApiObjects { client }
    }
}

impl ObjectSource for ApiObjects {
    fn watch(&self, key: &ObjectKey) -> WatchEvents {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
        let client = self.client.clone();
        match key.kind {
            ObjectKind::ConfigMap => {
                let api = Api::<ConfigMap>::namespaced(client, &key.namespace);
                watcher(api, config)
                    .default_backoff()
                    .map_ok(|event| map_event(event, Object::ConfigMap))
                    .boxed()
            }
            ObjectKind::Secret => {
                let api = Api::<Secret>::namespaced(client, &key.namespace);
                watcher(api, config)
                    .default_backoff()
                    .map_ok(|event| map_event(event, Object::Secret))
                    .boxed()
            }
        }
    }

    fn get(&self, key: &ObjectKey) -> BoxFuture<'static, Result<Option<Object>, kube::Error>> {
        let client = self.client.clone();
        let (namespace, name) = (key.namespace.clone(), key.name.clone());
        match key.kind {
            ObjectKind::ConfigMap => async move {
                let api = Api::<ConfigMap>::namespaced(client, &namespace);
                Ok(api.get_opt(&name).await?.map(Object::ConfigMap))
            }
            .boxed(),
            ObjectKind::Secret => async move {
                let api = Api::<Secret>::namespaced(client, &namespace);
                Ok(api.get_opt(&name).await?.map(Object::Secret))
            }
            .boxed(),
        }
    }
}

/// The same event about the object wrapped by `wrap`.
fn map_event<K>(event: watcher::Event<K>, wrap: fn(K) -> Object) -> watcher::Event<Object> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(wrap(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(wrap(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(wrap(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    //! [`ApiObjects`] against a fake API server answering the client's HTTP requests.

    use std::collections::BTreeSet;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::Frame;
    use serde_json::{json, Value};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::worker::objects_cache::tests::{wait_until, within};
    use crate::worker::objects_cache::{ObjectCache, ObjectUsers};

    /// What the fake API server saw and the watches it holds open.
    #[derive(Default)]
    struct FakeApi {
        /// Every request, as `METHOD path?query`.
        requests: Vec<String>,
        /// The event feed of every watch request, in order.
        watches: Vec<mpsc::UnboundedSender<Bytes>>,
    }

    fn config_map(value: &str, resource_version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop", "resourceVersion": resource_version},
            "data": {"key": value}
        })
    }

    /// A client of a fake API server that lists `listed` for any list request, streams each
    /// watch from its feed, and answers anything else (a GET by name) 404.
    fn client(api: Arc<Mutex<FakeApi>>, listed: Value) -> kube::Client {
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let uri = request.uri().clone();
            let mut api = api.lock().unwrap();
            api.requests.push(format!("{} {uri}", request.method()));
            let query = uri.query().unwrap_or_default();
            let (status, body) = if query.contains("watch=true") {
                let (feed, events) = mpsc::unbounded_channel::<Bytes>();
                api.watches.push(feed);
                let frames = futures::stream::unfold(events, |mut events| async move {
                    let bytes = events.recv().await?;
                    Some((Ok::<_, Infallible>(Frame::data(bytes)), events))
                });
                (200, BodyExt::boxed(StreamBody::new(frames)))
            } else if uri.path().ends_with("/configmaps") {
                let list = json!({
                    "apiVersion": "v1", "kind": "ConfigMapList",
                    "metadata": {"resourceVersion": "5"}, "items": [listed.clone()]
                });
                (200, Full::new(Bytes::from(list.to_string())).boxed())
            } else {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found"});
                (404, Full::new(Bytes::from(status.to_string())).boxed())
            };
            let response: http::Response<BoxBody<Bytes, Infallible>> = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
            async move { Ok::<_, Infallible>(response) }
        });
        kube::Client::new(service, "default")
    }

    /// The query parameters of a request line.
    fn query_of(request: &str) -> Vec<(String, String)> {
        let query = request.split_once('?').map(|(_, query)| query).unwrap_or_default();
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    #[tokio::test]
    async fn a_config_map_change_reaches_readers_through_one_watch_without_gets() {
        let api = Arc::new(Mutex::new(FakeApi::default()));
        let source = ApiObjects::new(client(api.clone(), config_map("hello", "5")));
        let (cache, mut changed) = ObjectCache::new(Arc::new(source), &CancellationToken::new());
        let key = ObjectKey::config_map("shop", "settings");
        let mut users = ObjectUsers::default();
        let value =
            |map: Option<ConfigMap>| map.and_then(|m| m.data).and_then(|d| d.get("key").cloned());

        // --- a registered pod's reads, as many passes make them, come from one listing
        cache.apply(&users.register("pod-a", BTreeSet::from([key.clone()])));
        let reader = cache.reader();
        for _ in 0..5 {
            let found = within("a read", reader.config_map("shop", "settings")).await.unwrap();
            assert_eq!(value(found).as_deref(), Some("hello"));
        }

        // --- a change the API sends through the watch reaches readers and wakes the users
        wait_until("the watch request", || !api.lock().unwrap().watches.is_empty()).await;
        let event = json!({"type": "MODIFIED", "object": config_map("changed", "6")});
        let line = Bytes::from(format!("{event}\n"));
        api.lock().unwrap().watches[0].send(line).unwrap();
        assert_eq!(within("the change", changed.recv()).await, Some(key.clone()));
        let found = reader.config_map("shop", "settings").await.unwrap();
        assert_eq!(value(found).as_deref(), Some("changed"));

        // --- what the API saw: one listing and one watch of that name in its namespace,
        // and no GET of the object
        let requests = api.lock().unwrap().requests.clone();
        assert_eq!(requests.len(), 2, "{requests:#?}");
        for request in &requests {
            assert!(request.starts_with("GET /api/v1/namespaces/shop/configmaps?"), "{request}");
            let selector = ("fieldSelector".to_string(), "metadata.name=settings".to_string());
            assert!(query_of(request).contains(&selector), "{request}");
        }
        assert!(query_of(&requests[1]).contains(&("watch".into(), "true".into())));
        assert!(query_of(&requests[1]).contains(&("resourceVersion".into(), "5".into())));

        // --- the last user going closes the watch
        cache.apply(&users.unregister("pod-a"));
        wait_until("the watch to close", || api.lock().unwrap().watches[0].is_closed()).await;
        cache.shutdown().await;
    }
}
