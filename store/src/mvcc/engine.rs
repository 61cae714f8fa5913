//! The MVCC engine: a deterministic state machine over a [`Backend`].
//!
//! Invariants:
//! - `current_revision` grows by exactly one for every applied command that changes at least
//!   one key; every change in it shares that main revision and gets its own sub revision.
//! - The in-memory key index holds, per key, every revision still in the backend, in order.
//! - Nothing reaches the backend before [`Mvcc::commit`]; callers apply and commit under one lock
//!   so readers never see a half-applied batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::backend::{Backend, WriteBatch};
use super::record::*;
use super::txn::{self, TxnPath};
use crate::types::*;
use crate::StoreError;

/// One key and value of the backend, as snapshots carry them.
pub type BackendEntry = (Vec<u8>, Vec<u8>);

/// The changes one revision made, for watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

#[derive(Clone, Copy, Debug)]
struct IndexEntry {
    revision: Revision,
    create_revision: i64,
    version: i64,
    lease: i64,
    tombstone: bool,
}

#[derive(Clone, Debug, Default)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// The revision and change counter of the write transaction being applied.
struct WriteContext {
    main: i64,
    sub: i64,
    events: Vec<Event>,
}

impl WriteContext {
    fn next(&mut self) -> Revision {
        let revision = Revision { main: self.main, sub: self.sub };
        self.sub += 1;
        revision
    }
}

pub struct Mvcc {
    backend: Box<dyn Backend>,
    index: BTreeMap<Vec<u8>, Vec<IndexEntry>>,
    current_revision: i64,
    compact_revision: i64,
    leases: BTreeMap<i64, Lease>,
    pending: WriteBatch,
    pending_records: HashMap<Revision, Record>,
    pending_events: Vec<RevisionEvents>,
}

impl Mvcc {
    /// Opens the engine over a backend, rebuilding the key index from the stored records.
    pub fn open(backend: Box<dyn Backend>) -> Result<Self, StoreError> {
        let mut engine = Mvcc {
            backend,
            index: BTreeMap::new(),
            current_revision: 0,
            compact_revision: 0,
            leases: BTreeMap::new(),
            pending: WriteBatch::default(),
            pending_records: HashMap::new(),
            pending_events: Vec::new(),
        };
        engine.load()?;
        Ok(engine)
    }

    fn load(&mut self) -> Result<(), StoreError> {
        self.index.clear();
        self.leases.clear();
        self.current_revision = self.read_meta_i64(META_CURRENT_REVISION)?.unwrap_or(0);
        self.compact_revision = self.read_meta_i64(META_COMPACT_REVISION)?.unwrap_or(0);
        for item in self.backend.scan(META_LEASE_PREFIX, META_LEASE_PREFIX) {
            let (key, value) = item?;
            let id = decode_i64(&key[META_LEASE_PREFIX.len()..])?;
            self.leases.insert(id, Lease { ttl: decode_i64(&value)?, keys: BTreeSet::new() });
        }
        let mut index: BTreeMap<Vec<u8>, Vec<IndexEntry>> = BTreeMap::new();
        for item in self.backend.scan(RECORD_PREFIX, RECORD_PREFIX) {
            let (key, value) = item?;
            let revision = Revision::from_record_key(&key)?;
            let record = Record::decode(&value)?;
            index.entry(record.key.clone()).or_default().push(IndexEntry {
                revision,
                create_revision: record.create_revision,
                version: record.version,
                lease: record.lease,
                tombstone: record.tombstone,
            });
        }
        for (key, entries) in &index {
            if let Some(last) = entries.last().filter(|e| !e.tombstone && e.lease != 0) {
                if let Some(lease) = self.leases.get_mut(&last.lease) {
                    lease.keys.insert(key.clone());
                }
            }
        }
        self.index = index;
        Ok(())
    }

    fn read_meta_i64(&self, key: &[u8]) -> Result<Option<i64>, StoreError> {
        self.backend.get(key)?.map(|v| decode_i64(&v)).transpose()
    }

    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Stages a metadata write (for the layer above, e.g. the applied Raft log id) so that it is
    /// committed atomically with the changes it describes.
    pub fn stage_meta(&mut self, key: &[u8], value: Vec<u8>) {
        let mut full = META_PREFIX.to_vec();
        full.extend_from_slice(key);
        self.pending.put(full, value);
    }

    /// Reads metadata written with [`Mvcc::stage_meta`].
    pub fn read_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut full = META_PREFIX.to_vec();
        full.extend_from_slice(key);
        self.backend.get(&full)
    }

    /// Writes every staged change to the backend and returns the events to publish.
    pub fn commit(&mut self) -> Result<Vec<RevisionEvents>, StoreError> {
        let batch = std::mem::take(&mut self.pending);
        if !batch.is_empty() {
            self.backend.write(batch)?;
        }
        self.pending_records.clear();
        Ok(std::mem::take(&mut self.pending_events))
    }

    /// Applies one command. An error leaves the state exactly as it was.
    pub fn apply(&mut self, command: &Command) -> Result<CommandResponse, StoreError> {
        match command {
            Command::Batch(commands) => {
                let mut results = Vec::with_capacity(commands.len());
                for command in commands {
                    match self.apply(command) {
                        Err(err) if err.is_fatal() => return Err(err),
                        result => results.push(result),
                    }
                }
                Ok(CommandResponse::Batch(results))
            }
            Command::Put(req) => {
                self.check_put(req)?;
                let mut ctx = self.begin();
                let mut resp = self.put(&mut ctx, req)?;
                resp.revision = self.finish(ctx);
                Ok(CommandResponse::Put(resp))
            }
            Command::Delete(req) => {
                let mut ctx = self.begin();
                let mut resp = self.delete(&mut ctx, req)?;
                resp.revision = self.finish(ctx);
                Ok(CommandResponse::Delete(resp))
            }
            Command::Txn(req) => {
                txn::validate(req)?;
                let path = txn::evaluate_path(self, req)?;
                self.check_txn_puts(req, &path)?;
                let mut ctx = self.begin();
                let mut resp = self.apply_txn(&mut ctx, req, &path)?;
                let revision = self.finish(ctx);
                set_txn_revision(&mut resp, revision);
                Ok(CommandResponse::Txn(resp))
            }
            Command::Compact { revision } => {
                self.compact(*revision)?;
                Ok(CommandResponse::Compact { revision: self.current_revision })
            }
            Command::LeaseGrant { id, ttl } => {
                if *id <= 0 {
                    return Err(StoreError::InvalidArgument("lease ID must be positive".into()));
                }
                if self.leases.contains_key(id) {
                    return Err(StoreError::LeaseExists);
                }
                self.leases.insert(*id, Lease { ttl: *ttl, keys: BTreeSet::new() });
                self.pending.put(lease_meta_key(*id), ttl.to_be_bytes().to_vec());
                Ok(CommandResponse::LeaseGrant(LeaseGrantResponse {
                    id: *id,
                    ttl: *ttl,
                    revision: self.current_revision,
                }))
            }
            Command::LeaseRevoke { id } => {
                let lease = self.leases.get(id).ok_or(StoreError::LeaseNotFound)?;
                let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
                let mut ctx = self.begin();
                for key in keys {
                    self.delete(
                        &mut ctx,
                        &DeleteRequest { range: KeyRange::single(key), prev_kv: false },
                    )?;
                }
                self.leases.remove(id);
                self.pending.delete(lease_meta_key(*id));
                let revision = self.finish(ctx);
                Ok(CommandResponse::LeaseRevoke { revision })
            }
        }
    }

    fn begin(&self) -> WriteContext {
        WriteContext { main: self.current_revision + 1, sub: 0, events: Vec::new() }
    }

    /// Ends a write transaction; returns the revision the response header carries.
    fn finish(&mut self, ctx: WriteContext) -> i64 {
        if ctx.sub == 0 {
            return self.current_revision;
        }
        self.current_revision = ctx.main;
        self.pending.put(META_CURRENT_REVISION.to_vec(), ctx.main.to_be_bytes().to_vec());
        self.pending_events.push(RevisionEvents { revision: ctx.main, events: ctx.events });
        ctx.main
    }

    /// Returns the live index entry of `key` at `revision`.
    fn entry_at(&self, key: &[u8], revision: i64) -> Option<&IndexEntry> {
        let entries = self.index.get(key)?;
        let position = entries.partition_point(|e| e.revision.main <= revision);
        entries[..position].last().filter(|e| !e.tombstone)
    }

    fn latest(&self, key: &[u8]) -> Option<IndexEntry> {
        self.index.get(key).and_then(|e| e.last()).filter(|e| !e.tombstone).copied()
    }

    fn record(&self, revision: Revision) -> Result<Record, StoreError> {
        if let Some(record) = self.pending_records.get(&revision) {
            return Ok(record.clone());
        }
        let bytes = self.backend.get(&revision.record_key())?.ok_or_else(|| {
            StoreError::Storage(format!("index names revision {revision:?} but no record exists"))
        })?;
        Record::decode(&bytes)
    }

    fn key_value(&self, entry: &IndexEntry) -> Result<KeyValue, StoreError> {
        Ok(self.record(entry.revision)?.to_key_value(entry.revision.main))
    }

    /// Returns the key at `revision`, if it existed then.
    pub fn get_at(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>, StoreError> {
        match self.entry_at(key, revision) {
            Some(entry) => Ok(Some(self.key_value(entry)?)),
            None => Ok(None),
        }
    }

    fn stage_record(&mut self, revision: Revision, record: Record) -> Result<(), StoreError> {
        self.pending.put(revision.record_key(), record.encode()?);
        self.pending_records.insert(revision, record);
        Ok(())
    }

    fn check_put(&self, req: &PutRequest) -> Result<(), StoreError> {
        if req.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let previous = self.latest(&req.key);
        if (req.ignore_value || req.ignore_lease) && previous.is_none() {
            return Err(StoreError::KeyNotFound);
        }
        if req.ignore_value && !req.value.is_empty() {
            return Err(StoreError::ValueProvided);
        }
        if req.ignore_lease && req.lease != 0 {
            return Err(StoreError::LeaseProvided);
        }
        if !req.ignore_lease && req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(StoreError::LeaseNotFound);
        }
        Ok(())
    }

    fn put(&mut self, ctx: &mut WriteContext, req: &PutRequest) -> Result<PutResponse, StoreError> {
        let previous = self.latest(&req.key);
        let previous_record = match &previous {
            Some(entry) if req.prev_kv || req.ignore_value => Some(self.record(entry.revision)?),
            _ => None,
        };
        let lease = match (req.ignore_lease, &previous) {
            (true, Some(entry)) => entry.lease,
            _ => req.lease,
        };
        let value = match (req.ignore_value, &previous_record) {
            (true, Some(record)) => record.value.clone(),
            _ => req.value.clone(),
        };
        let revision = ctx.next();
        let (create_revision, version) = match &previous {
            Some(entry) => (entry.create_revision, entry.version + 1),
            None => (revision.main, 1),
        };
        let record = Record {
            key: req.key.clone(),
            value,
            create_revision,
            version,
            lease,
            tombstone: false,
        };
        let kv = record.to_key_value(revision.main);
        self.stage_record(revision, record)?;
        self.index.entry(req.key.clone()).or_default().push(IndexEntry {
            revision,
            create_revision,
            version,
            lease,
            tombstone: false,
        });
        if let Some(old) = previous.filter(|e| e.lease != 0 && e.lease != lease) {
            if let Some(old_lease) = self.leases.get_mut(&old.lease) {
                old_lease.keys.remove(&req.key);
            }
        }
        if lease != 0 {
            if let Some(new_lease) = self.leases.get_mut(&lease) {
                new_lease.keys.insert(req.key.clone());
            }
        }
        let prev_kv = match (&previous, previous_record) {
            (Some(entry), Some(record)) => Some(record.to_key_value(entry.revision.main)),
            _ => None,
        };
        ctx.events.push(Event { kind: EventKind::Put, kv, prev_kv: None });
        Ok(PutResponse { prev_kv: if req.prev_kv { prev_kv } else { None }, revision: 0 })
    }

    fn delete(
        &mut self,
        ctx: &mut WriteContext,
        req: &DeleteRequest,
    ) -> Result<DeleteResponse, StoreError> {
        let live: Vec<(Vec<u8>, IndexEntry)> = self
            .index
            .range(req.range.bounds())
            .filter_map(|(key, entries)| {
                entries.last().filter(|e| !e.tombstone).map(|e| (key.clone(), *e))
            })
            .collect();
        let mut resp = DeleteResponse { deleted: live.len() as i64, ..Default::default() };
        for (key, entry) in live {
            if req.prev_kv {
                resp.prev_kvs.push(self.key_value(&entry)?);
            }
            let revision = ctx.next();
            let record = Record {
                key: key.clone(),
                value: Vec::new(),
                create_revision: 0,
                version: 0,
                lease: 0,
                tombstone: true,
            };
            self.stage_record(revision, record)?;
            self.index.entry(key.clone()).or_default().push(IndexEntry {
                revision,
                create_revision: 0,
                version: 0,
                lease: 0,
                tombstone: true,
            });
            if entry.lease != 0 {
                if let Some(lease) = self.leases.get_mut(&entry.lease) {
                    lease.keys.remove(&key);
                }
            }
            ctx.events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue { key, mod_revision: revision.main, ..Default::default() },
                prev_kv: None,
            });
        }
        Ok(resp)
    }

    /// Serves a read at a revision (0 = newest).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let revision = if req.revision <= 0 { self.current_revision } else { req.revision };
        if revision > self.current_revision {
            return Err(StoreError::FutureRevision);
        }
        if revision < self.compact_revision {
            return Err(StoreError::Compacted { compact_revision: self.compact_revision });
        }
        let mut resp = RangeResponse { revision: self.current_revision, ..Default::default() };
        if req.range.is_empty_interval() {
            return Ok(resp);
        }
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let sorted = req.sort_order != SortOrder::None || req.sort_target != SortTarget::Key;
        // Without sorting or filtering the index order is the answer, so the scan can stop one
        // past the limit; the count still needs every key.
        let mut selected: Vec<(&Vec<u8>, IndexEntry)> = Vec::new();
        let mut count = 0i64;
        for (key, entries) in self.index.range(req.range.bounds()) {
            let position = entries.partition_point(|e| e.revision.main <= revision);
            let Some(entry) = entries[..position].last().filter(|e| !e.tombstone) else {
                continue;
            };
            count += 1;
            if req.count_only {
                continue;
            }
            if filtered && !passes_filters(req, entry) {
                continue;
            }
            if !sorted && req.limit > 0 && selected.len() as i64 > req.limit {
                continue;
            }
            selected.push((key, *entry));
        }
        resp.count = count;
        if req.count_only {
            return Ok(resp);
        }
        let mut kvs = Vec::with_capacity(selected.len());
        for (key, entry) in &selected {
            let kv = if req.keys_only && req.sort_target != SortTarget::Value {
                KeyValue {
                    key: (*key).clone(),
                    create_revision: entry.create_revision,
                    mod_revision: entry.revision.main,
                    version: entry.version,
                    value: Vec::new(),
                    lease: entry.lease,
                }
            } else {
                self.key_value(entry)?
            };
            kvs.push(kv);
        }
        if sorted {
            sort_kvs(&mut kvs, req.sort_order, req.sort_target);
        }
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            resp.more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        resp.kvs = kvs;
        Ok(resp)
    }

    /// Returns the live keys in `range` now, for transaction comparisons.
    pub(crate) fn live_in_range(&self, range: &KeyRange) -> Result<Vec<KeyValue>, StoreError> {
        let mut req = RangeRequest::new(range.clone());
        req.revision = self.current_revision;
        Ok(self.range(&req)?.kvs)
    }

    fn check_txn_puts(&self, req: &TxnRequest, path: &TxnPath) -> Result<(), StoreError> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut nested = path.nested.iter();
        for op in ops {
            match op {
                TxnOp::Put(put) => self.check_put(put)?,
                TxnOp::Txn(inner) => {
                    let inner_path = nested.next().ok_or_else(|| {
                        StoreError::Storage("transaction path is shorter than the request".into())
                    })?;
                    self.check_txn_puts(inner, inner_path)?;
                }
                TxnOp::Range(range) => {
                    if range.revision > self.current_revision {
                        return Err(StoreError::FutureRevision);
                    }
                    if range.revision > 0 && range.revision < self.compact_revision {
                        return Err(StoreError::Compacted {
                            compact_revision: self.compact_revision,
                        });
                    }
                }
                TxnOp::Delete(_) => {}
            }
        }
        Ok(())
    }

    fn apply_txn(
        &mut self,
        ctx: &mut WriteContext,
        req: &TxnRequest,
        path: &TxnPath,
    ) -> Result<TxnResponse, StoreError> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                TxnOp::Range(range) => {
                    // Reads inside a transaction see the transaction's own earlier writes.
                    let mut range = range.clone();
                    if range.revision <= 0 && ctx.sub > 0 {
                        range.revision = ctx.main;
                        let saved = self.current_revision;
                        self.current_revision = ctx.main;
                        let result = self.range(&range);
                        self.current_revision = saved;
                        TxnOpResponse::Range(result?)
                    } else {
                        TxnOpResponse::Range(self.range(&range)?)
                    }
                }
                TxnOp::Put(put) => TxnOpResponse::Put(self.put(ctx, put)?),
                TxnOp::Delete(delete) => TxnOpResponse::Delete(self.delete(ctx, delete)?),
                TxnOp::Txn(inner) => {
                    let inner_path = nested.next().ok_or_else(|| {
                        StoreError::Storage("transaction path is shorter than the request".into())
                    })?;
                    TxnOpResponse::Txn(self.apply_txn(ctx, inner, inner_path)?)
                }
            };
            responses.push(response);
        }
        Ok(TxnResponse { succeeded: path.succeeded, responses, revision: 0 })
    }

    /// Runs a transaction that only reads, without a write lock.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse, StoreError> {
        txn::validate(req)?;
        let path = txn::evaluate_path(self, req)?;
        let mut resp = self.read_txn_path(req, &path)?;
        set_txn_revision(&mut resp, self.current_revision);
        Ok(resp)
    }

    fn read_txn_path(&self, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, StoreError> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                TxnOp::Range(range) => TxnOpResponse::Range(self.range(range)?),
                TxnOp::Txn(inner) => {
                    let inner_path = nested.next().ok_or_else(|| {
                        StoreError::Storage("transaction path is shorter than the request".into())
                    })?;
                    TxnOpResponse::Txn(self.read_txn_path(inner, inner_path)?)
                }
                TxnOp::Put(_) | TxnOp::Delete(_) => {
                    return Err(StoreError::InvalidArgument(
                        "write in a read-only transaction".into(),
                    ))
                }
            });
        }
        Ok(TxnResponse { succeeded: path.succeeded, responses, revision: 0 })
    }

    /// Removes history older than `revision`, keeping each key's value as of `revision`.
    fn compact(&mut self, revision: i64) -> Result<(), StoreError> {
        if revision <= self.compact_revision {
            return Err(StoreError::Compacted { compact_revision: self.compact_revision });
        }
        if revision > self.current_revision {
            return Err(StoreError::FutureRevision);
        }
        let mut removed = Vec::new();
        self.index.retain(|_, entries| {
            let position = entries.partition_point(|e| e.revision.main <= revision);
            // Keep the newest entry at or below the compaction point unless it is a tombstone.
            let keep_from = match entries[..position].last() {
                Some(last) if !last.tombstone => position - 1,
                _ => position,
            };
            removed.extend(entries.drain(..keep_from).map(|e| e.revision));
            !entries.is_empty()
        });
        for revision in removed {
            self.pending.delete(revision.record_key());
        }
        self.compact_revision = revision;
        self.pending.put(META_COMPACT_REVISION.to_vec(), revision.to_be_bytes().to_vec());
        Ok(())
    }

    /// Returns the events of revisions `from..=to` whose key lies in `range`, oldest first, at
    /// most `max_revisions` revisions, and the last revision read.
    pub fn events_between(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        max_revisions: usize,
    ) -> Result<(Vec<RevisionEvents>, i64), StoreError> {
        if from < self.compact_revision {
            return Err(StoreError::Compacted { compact_revision: self.compact_revision });
        }
        let start = Revision { main: from, sub: 0 }.record_key();
        let mut out: Vec<RevisionEvents> = Vec::new();
        let mut last = from - 1;
        for item in self.backend.scan(RECORD_PREFIX, &start) {
            let (key, value) = item?;
            let revision = Revision::from_record_key(&key)?;
            if revision.main > to {
                break;
            }
            if revision.main != last {
                if out.len() >= max_revisions {
                    break;
                }
                last = revision.main;
            }
            let record = Record::decode(&value)?;
            if !range.contains(&record.key) {
                continue;
            }
            let kind = if record.tombstone { EventKind::Delete } else { EventKind::Put };
            let event = Event { kind, kv: record.to_key_value(revision.main), prev_kv: None };
            match out.last_mut() {
                Some(group) if group.revision == revision.main => group.events.push(event),
                _ => out.push(RevisionEvents { revision: revision.main, events: vec![event] }),
            }
        }
        let read_to = if out.len() >= max_revisions { last.max(from - 1) } else { to };
        Ok((out, read_to))
    }

    /// Returns the lease's granted TTL and attached keys.
    pub fn lease(&self, id: i64) -> Option<(i64, Vec<Vec<u8>>)> {
        self.leases.get(&id).map(|l| (l.ttl, l.keys.iter().cloned().collect()))
    }

    /// Returns every lease id with its granted TTL.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases.iter().map(|(id, l)| (*id, l.ttl)).collect()
    }

    /// Returns a CRC-32 over every key-value record with a revision in
    /// `(compact_revision, revision]`, like etcd's HashKV.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), StoreError> {
        let revision = if revision <= 0 { self.current_revision } else { revision };
        if revision > self.current_revision {
            return Err(StoreError::FutureRevision);
        }
        if revision < self.compact_revision {
            return Err(StoreError::Compacted { compact_revision: self.compact_revision });
        }
        let mut hasher = crc32fast::Hasher::new();
        for item in self.backend.scan(RECORD_PREFIX, RECORD_PREFIX) {
            let (key, value) = item?;
            if Revision::from_record_key(&key)?.main > revision {
                break;
            }
            hasher.update(&key);
            hasher.update(&value);
        }
        Ok((hasher.finalize(), self.compact_revision))
    }

    /// Returns every backend entry, for a snapshot.
    pub fn export(&self) -> Result<Vec<BackendEntry>, StoreError> {
        self.backend.scan(b"", b"").collect()
    }

    /// Replaces the whole state with a snapshot's entries.
    pub fn import(&mut self, entries: Vec<BackendEntry>) -> Result<(), StoreError> {
        self.pending = WriteBatch::default();
        self.pending_records.clear();
        self.pending_events.clear();
        self.backend.clear()?;
        let mut batch = WriteBatch::default();
        for (key, value) in entries {
            batch.put(key, value);
        }
        self.backend.write(batch)?;
        self.load()
    }
}

fn passes_filters(req: &RangeRequest, entry: &IndexEntry) -> bool {
    let mod_revision = entry.revision.main;
    (req.min_mod_revision == 0 || mod_revision >= req.min_mod_revision)
        && (req.max_mod_revision == 0 || mod_revision <= req.max_mod_revision)
        && (req.min_create_revision == 0 || entry.create_revision >= req.min_create_revision)
        && (req.max_create_revision == 0 || entry.create_revision <= req.max_create_revision)
}

fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    // etcd sorts ascending when a target other than the key is given without an order.
    let order = if order == SortOrder::None { SortOrder::Ascend } else { order };
    kvs.sort_by(|a, b| {
        let ordering = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

fn set_txn_revision(resp: &mut TxnResponse, revision: i64) {
    resp.revision = revision;
    for response in &mut resp.responses {
        match response {
            TxnOpResponse::Range(r) => r.revision = revision,
            TxnOpResponse::Put(r) => r.revision = revision,
            TxnOpResponse::Delete(r) => r.revision = revision,
            TxnOpResponse::Txn(r) => set_txn_revision(r, revision),
        }
    }
}
