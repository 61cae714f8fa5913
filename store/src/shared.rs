//! The state every part of one store replica shares: the engine and the watch hub.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::mvcc::Mvcc;
use crate::types::{Command, CommandResponse};
use crate::watch::WatchHub;
use crate::StoreError;

pub struct Shared {
    engine: RwLock<Mvcc>,
    pub hub: WatchHub,
}

impl Shared {
    pub fn new(engine: Mvcc) -> Self {
        Shared { engine: RwLock::new(engine), hub: WatchHub::new() }
    }

    pub fn read_engine(&self) -> RwLockReadGuard<'_, Mvcc> {
        // The engine is only mutated inside `apply_batch`, which stages everything and writes
        // the backend last; a panic there leaves no partial write behind, so a poisoned lock
        // still guards a consistent engine.
        self.engine.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write_engine(&self) -> RwLockWriteGuard<'_, Mvcc> {
        self.engine.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies commands in order, lets `stage` add metadata to the same atomic write, commits,
    /// and publishes the events. The outer error is a storage failure: the replica must stop.
    pub fn apply_batch<'a>(
        &self,
        commands: impl IntoIterator<Item = Option<&'a Command>>,
        stage: impl FnOnce(&mut Mvcc),
    ) -> Result<Vec<Result<Option<CommandResponse>, StoreError>>, StoreError> {
        let mut engine = self.write_engine();
        let mut results = Vec::new();
        for command in commands {
            let result = match command {
                Some(command) => match engine.apply(command) {
                    Ok(response) => Ok(Some(response)),
                    Err(err) if err.is_fatal() => return Err(err),
                    Err(err) => Err(err),
                },
                None => Ok(None),
            };
            results.push(result);
        }
        stage(&mut engine);
        let events = engine.commit()?;
        self.hub.publish(events);
        Ok(results)
    }
}
