//! The shared handle through which the server reads the zone and its feeders update it.
//!
//! Invariant: an update is visible to every query that starts after the update returns. The
//! lock is held only for one pure operation (an upsert, a removal, one resolution), never across
//! an `.await`, so readers and writers wait microseconds at most.

use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::zone::Zone;

/// A cheap, cloneable handle on the one zone a node serves.
#[derive(Clone, Debug)]
pub struct ZoneHandle {
    zone: Arc<RwLock<Zone>>,
}

impl ZoneHandle {
    /// Returns a handle on `zone`.
    pub fn new(zone: Zone) -> Self {
        Self { zone: Arc::new(RwLock::new(zone)) }
    }

    /// Runs `read` on the current zone.
    pub fn read<R>(&self, read: impl FnOnce(&Zone) -> R) -> R {
        // A panic while the lock was held leaves the zone as the last complete operation left
        // it (every operation finishes its index updates before returning), so a poisoned
        // lock is still safe to use.
        let zone = self.zone.read().unwrap_or_else(PoisonError::into_inner);
        read(&zone)
    }

    /// Runs `update` on the zone; the change is visible to the next query.
    pub fn update<R>(&self, update: impl FnOnce(&mut Zone) -> R) -> R {
        let mut zone = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        update(&mut zone)
    }

    /// Adds or replaces a Service.
    pub fn upsert_service(&self, service: &Service) {
        self.update(|zone| zone.upsert_service(service));
    }

    /// Removes a Service; returns whether it was present.
    pub fn remove_service(&self, namespace: &str, name: &str) -> bool {
        self.update(|zone| zone.remove_service(namespace, name))
    }

    /// Adds or replaces an EndpointSlice.
    pub fn upsert_slice(&self, slice: &EndpointSlice) {
        self.update(|zone| zone.upsert_slice(slice));
    }

    /// Removes an EndpointSlice; returns whether it was present.
    pub fn remove_slice(&self, namespace: &str, name: &str) -> bool {
        self.update(|zone| zone.remove_slice(namespace, name))
    }
}
