//! Records core/v1 Events for what a user wants to see in `kubectl describe`, as client-go's
//! event recorder does: one Event per (object, type, reason, message), whose `count` and
//! `lastTimestamp` go up when the same thing happens again instead of a new Event each time.
//!
//! Recording never fails a reconcile: an Event that cannot be written is logged and dropped.
//! The recorder remembers at most [`REMEMBERED`] series; a forgotten one starts a new Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

/// How many event series the recorder keeps counting before it forgets them all.
const REMEMBERED: usize = 4096;

/// `Normal` or `Warning`, as kubectl's TYPE column shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An event a plan asks its caller to record on the object it planned for, with the type,
/// reason and message Kubernetes' controllers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Event {
    /// A `Normal` event.
    pub fn normal(reason: &str, message: impl Into<String>) -> Event {
        Event { type_: EventType::Normal, reason: reason.to_owned(), message: message.into() }
    }

    /// A `Warning` event.
    pub fn warning(reason: &str, message: impl Into<String>) -> Event {
        Event { type_: EventType::Warning, reason: reason.to_owned(), message: message.into() }
    }
}

/// Identifies an event series: the object (by uid), type, reason and message.
type SeriesKey = (String, EventType, String, String);

/// A series already written: its Event's namespace, name and count.
#[derive(Clone)]
struct Series {
    namespace: String,
    name: String,
    count: i32,
}

/// Writes Events as one component (the SOURCE kubectl shows, e.g. `replicaset-controller`).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    /// The node the component runs on (`source.host`), for node agents.
    host: Option<String>,
    series: Arc<Mutex<HashMap<SeriesKey, Series>>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &'static str) -> Recorder {
        Recorder { client, component, host: None, series: Arc::default() }
    }

    /// The same recorder, naming `host` as the events' source host (as kubelet does).
    pub fn on_host(self, host: impl Into<String>) -> Recorder {
        Recorder { host: Some(host.into()), ..self }
    }

    /// Records that `reason` happened to `object`.
    pub async fn record<K>(&self, object: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record_for(reference(object), kind, reason, message).await;
    }

    /// Records an event on the object `involved` refers to.
    pub async fn record_for(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let key = (
            format!(
                "{}/{}",
                involved.uid.as_deref().unwrap_or_default(),
                involved.field_path.as_deref().unwrap_or_default()
            ),
            kind,
            reason.to_string(),
            message.to_string(),
        );
        let known = self.series.lock().ok().and_then(|series| series.get(&key).cloned());
        let now = Time(jiff::Timestamp::now());
        let written = match known {
            Some(series) => self.bump(series, &now).await,
            None => self.create(involved, kind, reason, message, now).await,
        };
        match written {
            Ok(series) => {
                if let Ok(mut all) = self.series.lock() {
                    if all.len() >= REMEMBERED {
                        all.clear();
                    }
                    all.insert(key, series);
                }
            }
            Err(err) => {
                tracing::debug!(reason, error = %err, "recording an event failed");
                if let Ok(mut all) = self.series.lock() {
                    all.remove(&key);
                }
            }
        }
    }

    async fn bump(&self, series: Series, now: &Time) -> Result<Series, kube::Error> {
        let events: Api<CoreEvent> = Api::namespaced(self.client.clone(), &series.namespace);
        let count = series.count + 1;
        let patch = json!({ "count": count, "lastTimestamp": now });
        events.patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(Series { count, ..series })
    }

    async fn create(
        &self,
        involved: ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
        now: Time,
    ) -> Result<Series, kube::Error> {
        let namespace = involved.namespace.clone().unwrap_or_else(|| "default".into());
        let object = involved.name.clone().unwrap_or_default();
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.0.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(kind.as_str().into()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: self.host.clone(),
            }),
            reporting_instance: self.host.clone(),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.into()),
            ..CoreEvent::default()
        };
        let events: Api<CoreEvent> = Api::namespaced(self.client.clone(), &namespace);
        let created = events.create(&PostParams::default(), &event).await?;
        Ok(Series { namespace, name: created.name_any(), count: 1 })
    }
}

/// A reference to `object` as an Event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}
