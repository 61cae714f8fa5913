//! Typed access to the pinned maps that userspace writes: `services`, `backends`, `members`.
//!
//! Invariants: a map pinned by an earlier agent is used only when its type, key size, value
//! size and capacity match this build (checked before loading); deleting an absent entry is
//! not an error, so cleanups can be repeated.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddrV4;
use std::path::Path;

use aya::maps::{HashMap, MapData, MapError, MapInfo, MapType};
use aya::Ebpf;

use crate::error::EbpfError;
use crate::layout::{
    BackendKey, BackendValue, FrontendKey, MemberKey, ServiceValue, AFFINITY, AFFINITY_KEY_SIZE,
    AFFINITY_VALUE_SIZE, BACKENDS, MAX_AFFINITY, MAX_BACKEND_SLOTS, MAX_REVERSE, MAX_SERVICES,
    MEMBERS, REVERSE, REVERSE_KEY_SIZE, REVERSE_VALUE_SIZE, SERVICES,
};
use crate::plan::{ServiceState, Step};
use crate::table::Frontend;

/// What each pinned map must look like: name, type, key size, value size, capacity.
const MAP_SHAPES: [(&str, MapType, u32, u32, u32); 5] = [
    (SERVICES, MapType::Hash, 8, 16, MAX_SERVICES),
    (BACKENDS, MapType::Hash, 8, 8, MAX_BACKEND_SLOTS),
    (MEMBERS, MapType::Hash, 12, 4, MAX_BACKEND_SLOTS),
    (AFFINITY, MapType::LruHash, AFFINITY_KEY_SIZE, AFFINITY_VALUE_SIZE, MAX_AFFINITY),
    (REVERSE, MapType::LruHash, REVERSE_KEY_SIZE, REVERSE_VALUE_SIZE, MAX_REVERSE),
];

/// Checks that the maps already pinned in `pin_dir` have the shape this build expects.
pub(crate) fn check_pinned(pin_dir: &Path) -> Result<(), EbpfError> {
    for (name, map_type, key_size, value_size, max_entries) in MAP_SHAPES {
        let path = pin_dir.join(name);
        if !path.exists() {
            continue;
        }
        let incompatible =
            |detail: String| EbpfError::IncompatibleMap { path: path.clone(), detail };
        let info = MapInfo::from_pin(&path).map_err(|error| incompatible(error.to_string()))?;
        let found_type = info.map_type().map_err(|error| incompatible(error.to_string()))?;
        let found = (found_type, info.key_size(), info.value_size(), info.max_entries());
        let expected = (map_type, key_size, value_size, max_entries);
        if found != expected {
            return Err(incompatible(format!(
                "found (type, key size, value size, capacity) {found:?}, expected {expected:?}"
            )));
        }
    }
    Ok(())
}

/// The maps userspace writes, taken out of the loaded object.
#[derive(Debug)]
pub(crate) struct ServiceMaps {
    services: HashMap<MapData, FrontendKey, ServiceValue>,
    backends: HashMap<MapData, BackendKey, BackendValue>,
    members: HashMap<MapData, MemberKey, u32>,
}

impl ServiceMaps {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<ServiceMaps, EbpfError> {
        Ok(ServiceMaps {
            services: take_hash_map(ebpf, SERVICES)?,
            backends: take_hash_map(ebpf, BACKENDS)?,
            members: take_hash_map(ebpf, MEMBERS)?,
        })
    }

    /// Reads every frontend and its backend set.
    pub(crate) fn read_services(&self) -> Result<BTreeMap<Frontend, ServiceState>, EbpfError> {
        let mut services = BTreeMap::new();
        for entry in self.services.iter() {
            let (key, value) = entry.map_err(map_error(SERVICES, "iterate"))?;
            let frontend =
                key.frontend().map_err(|protocol| EbpfError::UnknownProtocol { protocol })?;
            let mut addresses = Vec::with_capacity(usize::from(value.count));
            for slot in 0..u32::from(value.count) {
                let slot_key = BackendKey { set_id: value.set_id, slot };
                match self.backends.get(&slot_key, 0) {
                    Ok(backend) => addresses.push(backend.address()),
                    Err(MapError::KeyNotFound) => {
                        return Err(EbpfError::MissingSlot { frontend, set_id: value.set_id, slot })
                    }
                    Err(error) => return Err(map_error(BACKENDS, "lookup")(error)),
                }
            }
            let state =
                ServiceState { set_id: value.set_id, addresses, affinity_ms: value.affinity_ms() };
            services.insert(frontend, state);
        }
        Ok(services)
    }

    /// Every (set id, slot) in `backends`.
    pub(crate) fn slot_keys(&self) -> Result<Vec<(u32, u32)>, EbpfError> {
        self.backends
            .keys()
            .map(|key| {
                key.map(|key| (key.set_id, key.slot)).map_err(map_error(BACKENDS, "iterate"))
            })
            .collect()
    }

    /// Every (set id, address) in `members`.
    pub(crate) fn member_keys(&self) -> Result<Vec<(u32, SocketAddrV4)>, EbpfError> {
        self.members
            .keys()
            .map(|key| {
                key.map(|key| (key.set_id, key.address())).map_err(map_error(MEMBERS, "iterate"))
            })
            .collect()
    }

    pub(crate) fn write_service(
        &mut self,
        frontend: Frontend,
        state: &ServiceState,
    ) -> Result<(), EbpfError> {
        // The planner keeps at most u16::MAX addresses per set (checked by the caller).
        let count = u16::try_from(state.addresses.len()).unwrap_or(u16::MAX);
        let value = ServiceValue::new(state.set_id, count, state.affinity_ms);
        self.services
            .insert(FrontendKey::new(frontend), value, 0)
            .map_err(map_error(SERVICES, "update"))
    }

    pub(crate) fn delete_service(&mut self, frontend: Frontend) -> Result<(), EbpfError> {
        ignore_absent(self.services.remove(&FrontendKey::new(frontend)))
            .map_err(map_error(SERVICES, "delete"))
    }

    pub(crate) fn apply(&mut self, step: &Step) -> Result<(), EbpfError> {
        match *step {
            Step::WriteSlot { set_id, slot, address } => self
                .backends
                .insert(BackendKey { set_id, slot }, BackendValue::new(address), 0)
                .map_err(map_error(BACKENDS, "update")),
            Step::WriteMember { set_id, address } => self
                .members
                .insert(MemberKey::new(set_id, address), 0, 0)
                .map_err(map_error(MEMBERS, "update")),
            Step::DeleteSlot { set_id, slot } => {
                ignore_absent(self.backends.remove(&BackendKey { set_id, slot }))
                    .map_err(map_error(BACKENDS, "delete"))
            }
            Step::DeleteMember { set_id, address } => {
                ignore_absent(self.members.remove(&MemberKey::new(set_id, address)))
                    .map_err(map_error(MEMBERS, "delete"))
            }
        }
    }
}

fn take_hash_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, EbpfError> {
    let map = ebpf.take_map(name).ok_or(EbpfError::MissingMap { map: name })?;
    HashMap::try_from(map).map_err(map_error(name, "open"))
}

fn map_error(map: &'static str, operation: &'static str) -> impl Fn(MapError) -> EbpfError {
    move |source| EbpfError::Map { map, operation, source: Box::new(source) }
}

fn ignore_absent(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::SyscallError(error)) if error.io_error.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}
