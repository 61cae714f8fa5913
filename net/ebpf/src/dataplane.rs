//! The eBPF dataplane of one node: opening (load, reuse pinned maps, attach), the service table
//! over the pinned maps, and reset.
//!
//! Invariants: one `Dataplane` writes a pin directory at a time; its in-memory view of the
//! `services` map (`programmed`) is what the map holds, since it is read from the map on open
//! and changed only after the map write it mirrors succeeded.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::EbpfLoader;

use crate::error::EbpfError;
use crate::links;
use crate::maps::{self, ServiceMaps};
use crate::plan::{self, Commit, ServiceState, Step, UpdatePlan};
use crate::set_ids::SetIds;
use crate::sys;
use crate::table::{Backends, Frontend, ServiceTable};

/// The compiled programs (`bpf/lb.c`).
static LB_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb.o"));

/// The cgroup v2 hierarchy on the machines Flotilla runs on.
pub const DEFAULT_CGROUP: &str = "/sys/fs/cgroup/unified";

/// The longest session affinity timeout the maps hold, in milliseconds (about 49 days;
/// Kubernetes allows one day).
pub const MAX_AFFINITY_MILLIS: u32 = u32::MAX;

/// Where the dataplane pins its maps and links, and which cgroup it load-balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// A directory on bpffs, for example `/sys/fs/bpf/flotilla/<node>`; created when absent.
    pub pin_dir: PathBuf,
    /// The cgroup v2 directory whose processes (and descendants) get translated.
    pub cgroup: PathBuf,
}

impl DataplaneConfig {
    /// A node's pin directory under `/sys/fs/bpf/flotilla`, on the cgroup v2 root.
    pub fn for_node(node: &str) -> DataplaneConfig {
        DataplaneConfig {
            pin_dir: Path::new(sys::BPFFS).join("flotilla").join(node),
            cgroup: PathBuf::from(DEFAULT_CGROUP),
        }
    }
}

/// The socket load balancer, attached and programmable.
///
/// Dropping it leaves the programs attached and the maps as they are: translation continues
/// until [`reset`] or until another `Dataplane` opens the same pin directory.
#[derive(Debug)]
pub struct Dataplane {
    config: DataplaneConfig,
    maps: ServiceMaps,
    programmed: BTreeMap<Frontend, ServiceState>,
    set_ids: SetIds,
}

impl Dataplane {
    /// Mounts bpffs if needed, loads the programs reusing the maps pinned in
    /// `config.pin_dir` (their contents kept), and attaches the programs to `config.cgroup`,
    /// replacing the ones an earlier agent attached without a gap in translation.
    pub fn open(config: &DataplaneConfig) -> Result<Dataplane, EbpfError> {
        sys::ensure_bpffs()?;
        fs::create_dir_all(&config.pin_dir)
            .map_err(|source| EbpfError::CreatePinDir { path: config.pin_dir.clone(), source })?;
        maps::check_pinned(&config.pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&config.pin_dir)
            .load(LB_OBJECT)
            .map_err(|source| EbpfError::Load {
                pin_dir: config.pin_dir.clone(),
                source: Box::new(source),
            })?;
        // Again, now that every map is pinned: the ones just created from the object must
        // match the shapes `lb.h` and `layout.rs` agree on too.
        maps::check_pinned(&config.pin_dir)?;
        let mut maps = ServiceMaps::take(&mut ebpf)?;

        let programmed = maps.read_services()?;
        let garbage = plan::unreferenced(&programmed, maps.slot_keys()?, maps.member_keys()?);
        let set_ids = SetIds::new(
            programmed.values().map(|state| state.set_id),
            garbage.iter().map(step_set_id),
        );
        for step in &garbage {
            maps.apply(step)?;
        }

        links::attach_all(&mut ebpf, &config.pin_dir, &config.cgroup)?;
        tracing::info!(
            pin_dir = %config.pin_dir.display(),
            cgroup = %config.cgroup.display(),
            services = programmed.len(),
            leftovers = garbage.len(),
            "opened eBPF dataplane"
        );
        Ok(Dataplane { config: config.clone(), maps, programmed, set_ids })
    }

    /// Where this dataplane pins its maps and links and which cgroup it serves.
    pub fn config(&self) -> &DataplaneConfig {
        &self.config
    }

    fn execute(&mut self, frontend: Frontend, plan: UpdatePlan) -> Result<(), EbpfError> {
        for (done, step) in plan.prepare.iter().enumerate() {
            if let Err(error) = self.maps.apply(step) {
                self.undo(&plan.prepare[..done]);
                return Err(error);
            }
        }
        match plan.commit {
            Commit::Unchanged => {}
            Commit::Write(state) => {
                if let Err(error) = self.maps.write_service(frontend, &state) {
                    self.undo(&plan.prepare);
                    return Err(error);
                }
                let set_id = state.set_id;
                let previous = self.programmed.insert(frontend, state);
                if previous.as_ref().map(|previous| previous.set_id) != Some(set_id) {
                    self.set_ids.claim(set_id);
                    if let Some(previous) = previous {
                        self.set_ids.release(previous.set_id);
                    }
                }
            }
            Commit::Delete => {
                self.maps.delete_service(frontend)?;
                if let Some(previous) = self.programmed.remove(&frontend) {
                    self.set_ids.release(previous.set_id);
                }
            }
        }
        for step in &plan.cleanup {
            // The change is visible already; an entry left behind is unreferenced and is
            // collected when the dataplane next opens.
            if let Err(error) = self.maps.apply(step) {
                tracing::warn!(frontend = ?frontend, step = ?step, error = %error, "left an unreferenced entry behind");
            }
        }
        Ok(())
    }

    /// Deletes what a failed update wrote before its commit (unreferenced entries only).
    fn undo(&mut self, written: &[Step]) {
        for step in written {
            let Some(inverse) = step.inverse() else {
                continue;
            };
            if let Err(error) = self.maps.apply(&inverse) {
                tracing::warn!(step = ?inverse, error = %error, "left an unreferenced entry behind");
            }
        }
    }
}

impl ServiceTable for Dataplane {
    type Error = EbpfError;

    fn upsert(&mut self, frontend: Frontend, backends: &Backends) -> Result<(), EbpfError> {
        let max = usize::from(u16::MAX);
        if backends.addresses.len() > max {
            return Err(EbpfError::TooManyBackends {
                frontend,
                count: backends.addresses.len(),
                max,
            });
        }
        let affinity_ms =
            backends.affinity.map(|timeout| affinity_millis(frontend, timeout)).transpose()?;
        let plan = plan::plan_upsert(
            self.programmed.get(&frontend),
            &backends.addresses,
            affinity_ms,
            self.set_ids.peek(),
        );
        tracing::debug!(
            frontend = ?frontend,
            backends = backends.addresses.len(),
            writes = plan.prepare.len(),
            deletes = plan.cleanup.len(),
            "upserting service"
        );
        self.execute(frontend, plan)
    }

    fn remove(&mut self, frontend: Frontend) -> Result<(), EbpfError> {
        let plan = plan::plan_remove(self.programmed.get(&frontend));
        tracing::debug!(frontend = ?frontend, deletes = plan.cleanup.len(), "removing service");
        self.execute(frontend, plan)
    }

    /// Reads the pinned maps, not this process's view of them.
    fn list(&self) -> Result<BTreeMap<Frontend, Backends>, EbpfError> {
        let services = self.maps.read_services()?;
        Ok(services
            .into_iter()
            .map(|(frontend, state)| {
                let backends = Backends {
                    addresses: state.addresses,
                    affinity: state
                        .affinity_ms
                        .map(|millis| Duration::from_millis(u64::from(millis))),
                };
                (frontend, backends)
            })
            .collect())
    }
}

/// Detaches the programs pinned in `pin_dir` and removes it with the maps pinned there, for
/// `flotilla reset`. The links are detached when this returns, even while a `Dataplane` of
/// this pin directory is still open. Tolerates any part being gone already.
pub fn reset(pin_dir: &Path) -> Result<(), EbpfError> {
    links::reset(pin_dir)?;
    tracing::info!(pin_dir = %pin_dir.display(), "removed eBPF dataplane");
    Ok(())
}

/// A session affinity timeout in whole milliseconds, rounded up.
fn affinity_millis(frontend: Frontend, timeout: Duration) -> Result<u32, EbpfError> {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    match u32::try_from(millis) {
        Ok(millis) if millis > 0 => Ok(millis),
        _ => Err(EbpfError::InvalidAffinity { frontend, millis, max_millis: MAX_AFFINITY_MILLIS }),
    }
}

fn step_set_id(step: &Step) -> u32 {
    match *step {
        Step::WriteSlot { set_id, .. }
        | Step::WriteMember { set_id, .. }
        | Step::DeleteSlot { set_id, .. }
        | Step::DeleteMember { set_id, .. } => set_id,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::table::Protocol;

    fn frontend() -> Frontend {
        Frontend { ip: Ipv4Addr::new(10, 96, 0, 1), port: 80, protocol: Protocol::Tcp }
    }

    #[test]
    fn affinity_timeouts_are_whole_milliseconds_rounded_up() {
        assert_eq!(affinity_millis(frontend(), Duration::from_secs(10_800)).ok(), Some(10_800_000));
        assert_eq!(affinity_millis(frontend(), Duration::from_micros(1500)).ok(), Some(2));
        assert_eq!(affinity_millis(frontend(), Duration::from_nanos(1)).ok(), Some(1));
    }

    #[test]
    fn zero_and_huge_affinity_timeouts_are_refused() {
        assert!(matches!(
            affinity_millis(frontend(), Duration::ZERO),
            Err(EbpfError::InvalidAffinity { millis: 0, .. })
        ));
        assert!(matches!(
            affinity_millis(frontend(), Duration::from_secs(u64::from(u32::MAX))),
            Err(EbpfError::InvalidAffinity { .. })
        ));
    }

    #[test]
    fn nodes_pin_under_their_own_directory() {
        let config = DataplaneConfig::for_node("node-1");
        assert_eq!(config.pin_dir, PathBuf::from("/sys/fs/bpf/flotilla/node-1"));
        assert_eq!(config.cgroup, PathBuf::from("/sys/fs/cgroup/unified"));
    }
}
