//! Consensus of one: a store in a single process, applying commands as they come.
//!
//! It serves tests (in memory or on sled) and tools that need a store without a cluster; it
//! runs the very same engine, watch and lease code as a replicated master.

use std::sync::Arc;

use crate::mvcc::{Backend, Mvcc};
use crate::shared::Shared;
use crate::store::{Consensus, LeaderQuery, Store};
use crate::types::{Command, CommandResponse};
use crate::StoreError;

pub struct LocalConsensus {
    shared: Arc<Shared>,
}

impl Consensus for LocalConsensus {
    async fn propose(&self, command: Command) -> Result<CommandResponse, StoreError> {
        let mut results = self.shared.apply_batch([Some(&command)], |_| {})?;
        match results.pop() {
            Some(Ok(Some(response))) => Ok(response),
            Some(Err(err)) => Err(err),
            _ => Err(StoreError::Storage("a command produced no response".into())),
        }
    }

    async fn propose_as_leader(
        &self,
        _term: u64,
        command: Command,
    ) -> Result<CommandResponse, StoreError> {
        self.propose(command).await
    }

    async fn read_barrier(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn leader_term(&self) -> Option<u64> {
        Some(1)
    }

    async fn ask_leader(&self, _query: LeaderQuery) -> Result<i64, StoreError> {
        // A single process always leads, so the store never asks.
        Err(StoreError::NoLeader)
    }
}

/// A store in this process over the given backend.
pub type LocalStore = Store<LocalConsensus>;

impl Store<LocalConsensus> {
    /// Opens a single-process store. Must be called within a Tokio runtime.
    pub fn open_local(backend: Box<dyn Backend>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::new(Mvcc::open(backend)?));
        Ok(Store::new(shared.clone(), LocalConsensus { shared }))
    }
}
