//! Watches: every applied revision is published to a hub; each watcher replays history from
//! its start revision out of the engine, then follows the hub.
//!
//! A watcher that falls behind the hub (its queue is full) is not dropped: it goes back to
//! reading history from the backend from the first revision it has not delivered, like etcd's
//! unsynced watcher group, and rejoins the hub once caught up.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::mvcc::{Mvcc, RevisionEvents};
use crate::shared::Shared;
use crate::types::{Event, EventKind, WatchRequest};
use crate::StoreError;

/// How many revisions a watcher reads from history per lock acquisition.
const CATCH_UP_BATCH: usize = 256;
/// How many undelivered batches a watcher may hold before it must wait for its reader.
const WATCHER_QUEUE: usize = 64;
/// How many revisions the hub buffers for slow watchers before they fall back to history.
pub(crate) const HUB_CAPACITY: usize = 4096;

/// The events of one revision that matched a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// The receiving end of one watch. Dropping it stops the watch.
pub struct Watcher {
    events: mpsc::Receiver<Result<WatchBatch, StoreError>>,
    progress: Arc<AtomicI64>,
}

impl Watcher {
    /// Returns the next batch; `None` once the store has shut down. An error (compaction) ends
    /// the watch.
    pub async fn next(&mut self) -> Option<Result<WatchBatch, StoreError>> {
        self.events.recv().await
    }

    /// Returns the next queued batch without waiting.
    pub fn try_next(&mut self) -> Option<Result<WatchBatch, StoreError>> {
        self.events.try_recv().ok()
    }

    /// Returns the revision up to which this watcher has delivered every matching event into
    /// its queue; it never goes backwards.
    pub fn progress(&self) -> i64 {
        self.progress.load(Ordering::Acquire)
    }
}

impl futures::Stream for Watcher {
    type Item = Result<WatchBatch, StoreError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

/// Fans applied revisions out to watchers.
pub struct WatchHub {
    sender: broadcast::Sender<Arc<RevisionEvents>>,
}

impl WatchHub {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(HUB_CAPACITY);
        WatchHub { sender }
    }

    /// Publishes applied revisions; called under the engine's write lock, so in order.
    pub fn publish(&self, revisions: Vec<RevisionEvents>) {
        for revision in revisions {
            // No receivers is not an error: nobody is watching.
            let _ = self.sender.send(Arc::new(revision));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RevisionEvents>> {
        self.sender.subscribe()
    }
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts a watcher task over the shared state.
pub(crate) fn start(
    shared: Arc<Shared>,
    request: WatchRequest,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<Watcher, StoreError> {
    // Subscribe before reading the current revision so no revision falls between the two.
    let live = shared.hub.subscribe();
    let (current, compacted) = {
        let engine = shared.read_engine();
        (engine.current_revision(), engine.compact_revision())
    };
    let next = if request.start_revision <= 0 { current + 1 } else { request.start_revision };
    if next < compacted {
        return Err(StoreError::Compacted { compact_revision: compacted });
    }
    let progress = Arc::new(AtomicI64::new(next - 1));
    let (sender, events) = mpsc::channel(WATCHER_QUEUE);
    let task =
        WatcherTask { shared, request, next, live, sender, progress: progress.clone(), shutdown };
    tasks.spawn(task.run());
    Ok(Watcher { events, progress })
}

struct WatcherTask {
    shared: Arc<Shared>,
    request: WatchRequest,
    /// The first revision not yet delivered.
    next: i64,
    live: broadcast::Receiver<Arc<RevisionEvents>>,
    sender: mpsc::Sender<Result<WatchBatch, StoreError>>,
    progress: Arc<AtomicI64>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl WatcherTask {
    async fn run(mut self) {
        loop {
            if let Err(err) = self.catch_up().await {
                // The reader may be gone already; then there is nobody to tell.
                let _ = self.sender.send(Err(err)).await;
                return;
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            if !self.follow().await {
                return;
            }
        }
    }

    /// Delivers history from `next` up to the current revision.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let (batches, read_to) = {
                let engine = self.shared.read_engine();
                let current = engine.current_revision();
                if self.next > current {
                    return Ok(());
                }
                let (revisions, read_to) = engine.events_between(
                    &self.request.range,
                    self.next,
                    current,
                    CATCH_UP_BATCH,
                )?;
                let mut batches = Vec::with_capacity(revisions.len());
                for revision in revisions {
                    if let Some(batch) = self.filter(&revision, Some(&engine))? {
                        batches.push(batch);
                    }
                }
                (batches, read_to)
            };
            for batch in batches {
                if self.sender.send(Ok(batch)).await.is_err() {
                    return Ok(());
                }
            }
            self.next = read_to + 1;
            self.progress.store(read_to, Ordering::Release);
        }
    }

    /// Follows the hub; returns false when the watch is over, true to catch up again.
    async fn follow(&mut self) -> bool {
        loop {
            let received = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return false,
                _ = self.sender.closed() => return false,
                received = self.live.recv() => received,
            };
            let revision = match received {
                Ok(revision) => revision,
                Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Err(broadcast::error::RecvError::Closed) => return false,
            };
            if revision.revision < self.next {
                continue;
            }
            if revision.revision > self.next {
                // A revision was skipped (published before we subscribed was handled by
                // catch-up; this is a gap): read it from history.
                return true;
            }
            let batch = match self.filter(&revision, None) {
                Ok(batch) => batch,
                Err(err) => {
                    let _ = self.sender.send(Err(err)).await;
                    return false;
                }
            };
            if let Some(batch) = batch {
                if self.sender.send(Ok(batch)).await.is_err() {
                    return false;
                }
            }
            self.next = revision.revision + 1;
            self.progress.store(revision.revision, Ordering::Release);
        }
    }

    /// Keeps the events this watcher asked for, adding previous values where requested.
    /// `engine` is the engine when the caller already holds its read lock (taking it twice can
    /// deadlock against a waiting writer); otherwise it is locked once for the revision.
    fn filter(
        &self,
        revision: &RevisionEvents,
        engine: Option<&Mvcc>,
    ) -> Result<Option<WatchBatch>, StoreError> {
        let request = &self.request;
        let locked = match engine {
            None if request.prev_kv => Some(self.shared.read_engine()),
            _ => None,
        };
        let engine = engine.or(locked.as_deref());
        let mut events = Vec::new();
        for event in &revision.events {
            if !request.range.contains(&event.kv.key) {
                continue;
            }
            let skip = match event.kind {
                EventKind::Put => request.no_put,
                EventKind::Delete => request.no_delete,
            };
            if skip {
                continue;
            }
            let mut event = event.clone();
            if let (true, Some(engine)) = (request.prev_kv, engine) {
                // The previous value may be compacted away already; etcd then sends none.
                event.prev_kv = engine.get_at(&event.kv.key, revision.revision - 1).unwrap_or(None);
            }
            events.push(event);
        }
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(WatchBatch { revision: revision.revision, events }))
    }
}
