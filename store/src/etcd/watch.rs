//! The Watch service: many watches multiplexed on one bidirectional stream.
//!
//! One task per stream owns every watch of the stream and is the only writer of responses, so
//! a watch's "created" always precedes its events, and a progress response is sent only after
//! every event up to its revision has been sent.

use std::collections::HashMap;

use etcd_client::proto::*;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, StreamMap};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, FILTER_NODELETE, FILTER_NOPUT};
use super::lease::async_stream_of;
use super::{current_header, header, status, EtcdOptions, MasterStore};
use crate::store::KvStore;
use crate::types::{KeyRange, WatchRequest};
use crate::watch::Watcher;
use crate::StoreError;

/// The watch id of progress responses that concern the whole stream.
const STREAM_WATCH_ID: i64 = -1;
/// A stream that asked for a leader ends after this many checks in a row find none.
const LEADERLESS_CHECKS: u32 = 3;

pub struct WatchService {
    store: MasterStore,
    options: EtcdOptions,
}

impl WatchService {
    pub fn new(store: MasterStore, options: EtcdOptions) -> Self {
        WatchService { store, options }
    }
}

type Responses = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<PbWatchResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = Responses;

    async fn watch(
        &self,
        request: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // etcd clients set `hasleader=true` to have the stream fail rather than hang when the
        // member is cut off from a leader.
        let require_leader =
            request.metadata().get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.store.consensus().leader_id().is_none() {
            return Err(status(StoreError::NoLeader));
        }
        let incoming = request.into_inner();
        let task = StreamTask {
            store: self.store.clone(),
            options: self.options,
            require_leader,
            watchers: StreamMap::new(),
            watches: HashMap::new(),
            next_id: 0,
            progress_requested: false,
        };
        Ok(Response::new(async_stream_of(move |sender| task.run(incoming, sender))))
    }
}

struct WatchState {
    progress_notify: bool,
    /// Whether events went out since the last progress notification.
    active: bool,
}

struct StreamTask {
    store: MasterStore,
    options: EtcdOptions,
    require_leader: bool,
    watchers: StreamMap<i64, Watcher>,
    watches: HashMap<i64, WatchState>,
    next_id: i64,
    progress_requested: bool,
}

type Sender = mpsc::Sender<Result<PbWatchResponse, Status>>;

impl StreamTask {
    async fn run(mut self, mut incoming: Streaming<PbWatchRequest>, sender: Sender) {
        let mut notify = tokio::time::interval(self.options.progress_notify_interval);
        notify.reset();
        let mut leader_check = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut leaderless = 0;
        loop {
            let sent = tokio::select! {
                biased;
                request = incoming.next() => match request {
                    Some(Ok(request)) => self.handle(request, &sender).await,
                    _ => return,
                },
                Some((id, item)) = self.watchers.next() => self.deliver(id, item, &sender).await,
                _ = notify.tick() => self.notify_progress(&sender).await,
                _ = leader_check.tick(), if self.require_leader => {
                    leaderless = if self.store.consensus().leader_id().is_none() { leaderless + 1 } else { 0 };
                    if leaderless >= LEADERLESS_CHECKS {
                        let _ = sender.send(Err(status(StoreError::NoLeader))).await;
                        return;
                    }
                    true
                }
            };
            if !sent {
                return;
            }
            if self.progress_requested && !self.answer_progress_request(&sender).await {
                return;
            }
        }
    }

    async fn send(&self, sender: &Sender, response: PbWatchResponse) -> bool {
        sender.send(Ok(response)).await.is_ok()
    }

    async fn handle(&mut self, request: PbWatchRequest, sender: &Sender) -> bool {
        match request.request_union {
            Some(PbWatchRequestUnion::CreateRequest(create)) => {
                let requested_id = create.watch_id;
                let id = if requested_id != 0 { requested_id } else { self.auto_id() };
                if self.watches.contains_key(&id) {
                    return self
                        .send(
                            sender,
                            PbWatchResponse {
                                header: Some(current_header(&self.store)),
                                watch_id: STREAM_WATCH_ID,
                                created: true,
                                canceled: true,
                                cancel_reason:
                                    "mvcc: duplicate watch ID provided on the WatchStream".into(),
                                ..Default::default()
                            },
                        )
                        .await;
                }
                let watch = WatchRequest {
                    range: KeyRange { key: create.key, range_end: create.range_end },
                    start_revision: create.start_revision,
                    prev_kv: create.prev_kv,
                    no_put: create.filters.contains(&FILTER_NOPUT),
                    no_delete: create.filters.contains(&FILTER_NODELETE),
                };
                let created = PbWatchResponse {
                    header: Some(current_header(&self.store)),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                match self.store.watch(watch) {
                    Ok(watcher) => {
                        self.watchers.insert(id, watcher);
                        self.watches.insert(
                            id,
                            WatchState { progress_notify: create.progress_notify, active: false },
                        );
                        self.send(sender, created).await
                    }
                    Err(err) => {
                        self.send(sender, created).await
                            && self.send(sender, self.canceled(id, &err)).await
                    }
                }
            }
            Some(PbWatchRequestUnion::CancelRequest(cancel)) => {
                let id = cancel.watch_id;
                if self.watches.remove(&id).is_none() {
                    return true;
                }
                self.watchers.remove(&id);
                self.send(
                    sender,
                    PbWatchResponse {
                        header: Some(current_header(&self.store)),
                        watch_id: id,
                        canceled: true,
                        ..Default::default()
                    },
                )
                .await
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                self.progress_requested = true;
                true
            }
            None => true,
        }
    }

    fn auto_id(&mut self) -> i64 {
        while self.watches.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn deliver(
        &mut self,
        id: i64,
        item: Result<crate::WatchBatch, StoreError>,
        sender: &Sender,
    ) -> bool {
        match item {
            Ok(batch) => {
                if let Some(state) = self.watches.get_mut(&id) {
                    state.active = true;
                }
                let response = PbWatchResponse {
                    header: Some(header(&self.store, batch.revision)),
                    watch_id: id,
                    events: batch.events.into_iter().map(convert::event).collect(),
                    ..Default::default()
                };
                self.send(sender, response).await
            }
            Err(err) => {
                self.watches.remove(&id);
                self.watchers.remove(&id);
                self.send(sender, self.canceled(id, &err)).await
            }
        }
    }

    /// Returns the response that ends a watch because of `err` (etcd sets the compaction
    /// revision when the watch asked for compacted history).
    fn canceled(&self, id: i64, err: &StoreError) -> PbWatchResponse {
        let compact_revision = match err {
            StoreError::Compacted { compact_revision } => *compact_revision,
            _ => 0,
        };
        PbWatchResponse {
            header: Some(current_header(&self.store)),
            watch_id: id,
            canceled: true,
            compact_revision,
            cancel_reason: err.to_string(),
            ..Default::default()
        }
    }

    /// Sends everything already queued for one watch; returns the revision through which the
    /// watch has now delivered every event, or `None` if the client went away.
    async fn drain(&mut self, id: i64, sender: &Sender) -> Option<i64> {
        loop {
            let (progress, queued) = {
                let (_, watcher) = self.watchers.iter_mut().find(|entry| entry.0 == id)?;
                // Read the progress first: everything up to it is already in the queue.
                (watcher.progress(), watcher.try_next())
            };
            match queued {
                None => return Some(progress),
                Some(item) => {
                    if !self.deliver(id, item, sender).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Answers a progress request once every watch has delivered up to a common revision.
    async fn answer_progress_request(&mut self, sender: &Sender) -> bool {
        let current = self.store.current_revision();
        let mut revision = current;
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            match self.drain(id, sender).await {
                Some(progress) => revision = revision.min(progress),
                None if !self.watches.contains_key(&id) => continue,
                None => return false,
            }
        }
        self.progress_requested = false;
        self.send(
            sender,
            PbWatchResponse {
                header: Some(header(&self.store, revision)),
                watch_id: STREAM_WATCH_ID,
                ..Default::default()
            },
        )
        .await
    }

    /// Sends the periodic progress notification to idle watches that asked for it.
    async fn notify_progress(&mut self, sender: &Sender) -> bool {
        let ids: Vec<i64> = self
            .watches
            .iter()
            .filter(|(_, state)| state.progress_notify)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(progress) = self.drain(id, sender).await else {
                if self.watches.contains_key(&id) {
                    return false;
                }
                continue;
            };
            let Some(state) = self.watches.get_mut(&id) else { continue };
            if std::mem::replace(&mut state.active, false) {
                continue;
            }
            let response = PbWatchResponse {
                header: Some(header(&self.store, progress)),
                watch_id: id,
                ..Default::default()
            };
            if !self.send(sender, response).await {
                return false;
            }
        }
        true
    }
}
