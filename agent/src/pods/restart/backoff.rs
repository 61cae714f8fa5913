//! Kubelet's back-off counters (client-go's `flowcontrol.Backoff` as kubelet configures it)
//! for container restarts and image pulls.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::{BACKOFF_RESET, INITIAL_BACKOFF, MAX_BACKOFF};
use crate::pods::event::PodEvent;
use crate::pods::observed::StartFailure;
use crate::pods::pod;

/// One back-off counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffEntry {
    /// The current delay.
    pub delay: SignedDuration,
    /// When the delay was last extended.
    pub last_update: Timestamp,
}

/// Kubelet's back-off counters for container restarts and image pulls, owned by the caller
/// across syncs and replaced by [`super::Decision::backoff`] after each decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backoff {
    pub(super) entries: BTreeMap<String, BackoffEntry>,
    pull_errors: BTreeMap<String, String>,
}

impl Backoff {
    /// The counter under `key`, if any.
    pub(crate) fn entry(&self, key: &str) -> Option<&BackoffEntry> {
        self.entries.get(key)
    }

    /// Drops counters not extended for [`BACKOFF_RESET`] (flowcontrol's `GC`).
    pub fn collect_garbage(&mut self, now: Timestamp) {
        self.entries.retain(|_, entry| now.duration_since(entry.last_update) <= BACKOFF_RESET);
        let entries = &self.entries;
        self.pull_errors.retain(|key, _| entries.contains_key(key));
    }

    /// Returns the `ImagePullBackOff` failure when pulling the container's image for this pod
    /// must wait; call it before each pull.
    pub fn image_pull_held(
        &self,
        pod: &Pod,
        container: &Container,
        now: Timestamp,
    ) -> Option<(StartFailure, PodEvent)> {
        let image = container.image.as_deref().unwrap_or_default();
        let key = pull_key(pod, image);
        let entry = self.entries.get(&key)?;
        let since = now.duration_since(entry.last_update);
        if since > BACKOFF_RESET || since >= entry.delay {
            return None;
        }
        let mut message = format!("Back-off pulling image \"{image}\"");
        let event = PodEvent::normal("BackOff", message.clone()).on(&container.name);
        if let Some(error) = self.pull_errors.get(&key) {
            message = format!("{message}: {error}");
        }
        Some((StartFailure { reason: "ImagePullBackOff".to_owned(), message }, event))
    }

    /// Records a failed pull of the container's image (`error` as the runtime worded it) and
    /// returns the `ErrImagePull` failure and the `Failed` event to record.
    pub fn image_pull_failed(
        &mut self,
        pod: &Pod,
        container: &Container,
        error: &str,
        now: Timestamp,
    ) -> (StartFailure, PodEvent) {
        let image = container.image.as_deref().unwrap_or_default();
        let key = pull_key(pod, image);
        self.next(&key, now, now);
        self.pull_errors.insert(key, error.to_owned());
        let event =
            PodEvent::warning("Failed", format!("Failed to pull image \"{image}\": {error}"))
                .on(&container.name);
        (StartFailure { reason: "ErrImagePull".to_owned(), message: error.to_owned() }, event)
    }

    fn expired(event_time: Timestamp, entry: &BackoffEntry) -> bool {
        event_time.duration_since(entry.last_update) > BACKOFF_RESET
    }

    /// Flowcontrol's `IsInBackOffSince`.
    pub(super) fn in_backoff_since(
        &self,
        key: &str,
        event_time: Timestamp,
        now: Timestamp,
    ) -> bool {
        self.entries.get(key).is_some_and(|entry| {
            !Self::expired(event_time, entry) && now.duration_since(event_time) < entry.delay
        })
    }

    /// Flowcontrol's `Next`: start at [`INITIAL_BACKOFF`] or double up to [`MAX_BACKOFF`].
    pub(super) fn next(&mut self, key: &str, event_time: Timestamp, now: Timestamp) {
        let delay = match self.entries.get(key) {
            Some(entry) if !Self::expired(event_time, entry) => (entry.delay * 2).min(MAX_BACKOFF),
            _ => INITIAL_BACKOFF,
        };
        self.entries.insert(key.to_owned(), BackoffEntry { delay, last_update: now });
    }
}

/// The image pull back-off key (`<pod uid>_<image>`).
pub(super) fn pull_key(pod: &Pod, image: &str) -> String {
    format!("{}_{image}", pod::uid(pod))
}
