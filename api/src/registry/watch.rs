//! Watches: the `resourceVersion` rules (unset and "0" start with the current state as ADDED
//! events; N resumes after revision N), selector transitions (an object that stops matching
//! is DELETED for this watcher), bookmarks, `timeoutSeconds`, and 410 Expired as an ERROR
//! event when the revision is compacted.

use std::collections::VecDeque;
use std::time::Duration;

use flotilla_store::types::{Event, EventKind};
use flotilla_store::{KvStore, StoreError, Watcher};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::list::{Filter, ListOptions};
use super::Registry;
use crate::error::ApiError;
use crate::request::Query;
use crate::resources::ResourceType;
use crate::storage::{self, Stored};

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// How long a watch lasts when the client sets no `timeoutSeconds` (Kubernetes picks between
/// 30 and 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub filter: Filter,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
}

impl WatchOptions {
    pub fn from_query(resource: &ResourceType, query: &Query) -> Result<WatchOptions, ApiError> {
        let timeout = query
            .int("timeoutSeconds")
            .map_err(ApiError::BadRequest)?
            .filter(|seconds| *seconds > 0)
            .map(|seconds| Duration::from_secs(seconds as u64))
            .unwrap_or(DEFAULT_TIMEOUT);
        Ok(WatchOptions {
            filter: Filter::from_query(resource, query)?,
            resource_version: query.get("resourceVersion").map(str::to_string),
            bookmarks: query.flag("allowWatchBookmarks"),
            send_initial_events: query.flag("sendInitialEvents"),
            timeout,
        })
    }
}

/// One event of a watch, as it goes on the wire: `{"type": ..., "object": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub object: WatchObject,
}

/// An event's object: decoded, or still the stored bytes (a watch without selectors passes
/// objects through without decoding them, since every watcher would decode each one).
#[derive(Debug, Clone, PartialEq)]
pub enum WatchObject {
    Decoded(Value),
    /// The stored JSON of an object and the resourceVersion to stamp on it.
    Stored {
        raw: Vec<u8>,
        revision: i64,
    },
}

impl WatchObject {
    /// The object as a JSON value (decoding stored bytes).
    pub fn into_value(self) -> Result<Value, ApiError> {
        match self {
            WatchObject::Decoded(value) => Ok(value),
            WatchObject::Stored { raw, revision } => {
                let mut object: Value = serde_json::from_slice(&raw).map_err(|err| {
                    ApiError::Internal(format!("a stored object is not valid JSON: {err}"))
                })?;
                storage::set_resource_version(&mut object, revision);
                Ok(object)
            }
        }
    }
}

impl WatchEvent {
    fn decoded(kind: &'static str, object: Value) -> WatchEvent {
        WatchEvent { kind, object: WatchObject::Decoded(object) }
    }

    /// Writes the event as one JSON document (without the trailing newline).
    pub fn write_json(self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.object {
            WatchObject::Decoded(value) => {
                serde_json::to_writer(&mut *out, &value)
                    .map_err(|err| ApiError::Internal(err.to_string()))?;
            }
            WatchObject::Stored { raw, revision } => {
                storage::write_with_revision(&raw, revision, out)?;
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// A running watch; `next` yields events until the timeout, an error, or the store stops.
pub struct WatchStream {
    pending: VecDeque<WatchEvent>,
    watcher: Option<Watcher>,
    filter: Filter,
    api_version: String,
    kind: String,
    bookmarks: bool,
    last_revision: i64,
    next_bookmark: Instant,
    deadline: Instant,
}

impl<S: KvStore> Registry<S> {
    pub async fn watch(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        options: WatchOptions,
    ) -> Result<WatchStream, ApiError> {
        let now = Instant::now();
        let mut stream = WatchStream {
            pending: VecDeque::new(),
            watcher: None,
            filter: options.filter.clone(),
            api_version: resource.api_version(),
            kind: resource.kind.clone(),
            bookmarks: options.bookmarks,
            last_revision: 0,
            next_bookmark: now + BOOKMARK_INTERVAL,
            deadline: now + options.timeout,
        };
        let from = match options.resource_version.as_deref() {
            Some(rv) if rv != "0" && !options.send_initial_events => {
                let revision: i64 = rv
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv}")))?;
                stream.last_revision = revision;
                revision + 1
            }
            _ => {
                let list = ListOptions {
                    filter: options.filter.clone(),
                    limit: 0,
                    continue_token: None,
                    resource_version: options.resource_version.clone(),
                    exact: false,
                };
                let listed = self.list(resource, namespace, &list).await?;
                stream.pending.extend(
                    listed.items.into_iter().map(|s| WatchEvent::decoded("ADDED", s.object)),
                );
                stream.last_revision = listed.revision;
                if options.send_initial_events {
                    let mut bookmark = stream.bookmark_object(listed.revision);
                    bookmark["metadata"]["annotations"] =
                        json!({ "k8s.io/initial-events-end": "true" });
                    stream.pending.push_back(WatchEvent::decoded("BOOKMARK", bookmark));
                }
                listed.revision + 1
            }
        };
        match self.objects.watch(&resource.list_prefix(namespace), from) {
            Ok(watcher) => stream.watcher = Some(watcher),
            Err(err) => stream.pending.push_back(expired(err, from - 1)),
        }
        Ok(stream)
    }
}

fn expired(err: StoreError, asked: i64) -> WatchEvent {
    let error = match err {
        StoreError::Compacted { compact_revision } => {
            ApiError::Expired(format!("too old resource version: {asked} ({compact_revision})"))
        }
        other => ApiError::from(other),
    };
    WatchEvent::decoded("ERROR", error.status())
}

impl WatchStream {
    fn bookmark_object(&self, revision: i64) -> Value {
        json!({
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": { "resourceVersion": revision.to_string() },
        })
    }

    fn bookmark(&self, revision: i64) -> WatchEvent {
        WatchEvent::decoded("BOOKMARK", self.bookmark_object(revision))
    }

    /// The next event; None when the watch is over.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            // A busy watch ends on time too; the client resumes after the last event it got.
            if Instant::now() >= self.deadline {
                return None;
            }
            let watcher = self.watcher.as_mut()?;
            let wake =
                if self.bookmarks { self.next_bookmark.min(self.deadline) } else { self.deadline };
            // Queued batches first: a bookmark carries the watcher's progress, which counts
            // what it has queued, so a bookmark sent ahead of a queued batch would move the
            // client past events it has not seen yet.
            tokio::select! {
                biased;
                batch = watcher.next() => match batch {
                    None => return None,
                    Some(Err(err)) => {
                        self.watcher = None;
                        return Some(expired(err, self.last_revision));
                    }
                    Some(Ok(batch)) => {
                        self.last_revision = batch.revision;
                        for event in &batch.events {
                            if let Some(event) = self.translate(event) {
                                self.pending.push_back(event);
                            }
                        }
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= self.deadline {
                        return None;
                    }
                    self.next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
                    let progress = watcher.progress().max(self.last_revision);
                    self.last_revision = progress;
                    return Some(self.bookmark(progress));
                }
            }
        }
    }

    /// Turns a store event into what this watcher sees, given its selectors.
    fn translate(&self, event: &Event) -> Option<WatchEvent> {
        if self.filter.is_everything() {
            return Some(passed_through(event));
        }
        let decode = |kv| storage::decode(kv).ok().map(|stored: Stored| stored.object);
        let previous = event.prev_kv.as_ref().and_then(decode);
        let was = previous.as_ref().is_some_and(|p| self.filter.matches(p));
        match event.kind {
            EventKind::Put => {
                let object = decode(&event.kv)?;
                let is = self.filter.matches(&object);
                match (was, is) {
                    (false, true) => Some(WatchEvent::decoded("ADDED", object)),
                    (true, true) => Some(WatchEvent::decoded("MODIFIED", object)),
                    // The object left the selection: the watcher sees the version it knew,
                    // at the revision it stopped matching.
                    (true, false) => {
                        let mut previous = previous?;
                        storage::set_resource_version(&mut previous, event.kv.mod_revision);
                        Some(WatchEvent::decoded("DELETED", previous))
                    }
                    (false, false) => None,
                }
            }
            EventKind::Delete => {
                let mut object = previous.filter(|_| was)?;
                storage::set_resource_version(&mut object, event.kv.mod_revision);
                Some(WatchEvent::decoded("DELETED", object))
            }
        }
    }
}

/// An event for a watcher without selectors: the stored bytes, not decoded. A deletion shows
/// the last version at the deleting revision.
fn passed_through(event: &Event) -> WatchEvent {
    let revision = event.kv.mod_revision;
    match event.kind {
        EventKind::Put => WatchEvent {
            kind: if event.prev_kv.is_some() { "MODIFIED" } else { "ADDED" },
            object: WatchObject::Stored { raw: event.kv.value.clone(), revision },
        },
        EventKind::Delete => {
            let raw = event.prev_kv.as_ref().map(|kv| kv.value.clone()).unwrap_or_default();
            WatchEvent { kind: "DELETED", object: WatchObject::Stored { raw, revision } }
        }
    }
}
