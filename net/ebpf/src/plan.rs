//! The map writes that change one frontend, decided without touching the maps.
//!
//! Invariants of every plan: `prepare` writes only entries no service entry references yet;
//! `commit` is the single write that makes the change visible (it names a complete set);
//! `cleanup` deletes only entries no service entry references any more. So a program that
//! reads a service entry and then its slots sees the old backends or the new ones, never a mix,
//! and a failure before the commit leaves the old state in place.
//!
//! Cost: a change that appends backends writes only the new slots, one that drops backends from
//! the end deletes only those slots, an unchanged frontend costs nothing; any other change
//! writes the new list under a fresh set id and then deletes the old set.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddrV4;

use crate::table::Frontend;

/// What the maps hold for one frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceState {
    pub set_id: u32,
    /// Slot `i` of the set holds `addresses[i]`.
    pub addresses: Vec<SocketAddrV4>,
    /// The session affinity timeout in milliseconds; members are written only when present.
    pub affinity_ms: Option<u32>,
}

/// One write or delete in the `backends` or `members` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    WriteSlot { set_id: u32, slot: u32, address: SocketAddrV4 },
    WriteMember { set_id: u32, address: SocketAddrV4 },
    DeleteSlot { set_id: u32, slot: u32 },
    DeleteMember { set_id: u32, address: SocketAddrV4 },
}

impl Step {
    /// The step that takes back a write (deletes are not taken back).
    pub(crate) fn inverse(&self) -> Option<Step> {
        match *self {
            Step::WriteSlot { set_id, slot, .. } => Some(Step::DeleteSlot { set_id, slot }),
            Step::WriteMember { set_id, address } => Some(Step::DeleteMember { set_id, address }),
            Step::DeleteSlot { .. } | Step::DeleteMember { .. } => None,
        }
    }
}

/// The change to the frontend's `services` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Commit {
    Unchanged,
    Write(ServiceState),
    Delete,
}

/// The steps that change one frontend, in order: prepare, commit, cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpdatePlan {
    pub prepare: Vec<Step>,
    pub commit: Commit,
    pub cleanup: Vec<Step>,
}

impl UpdatePlan {
    fn unchanged() -> UpdatePlan {
        UpdatePlan { prepare: Vec::new(), commit: Commit::Unchanged, cleanup: Vec::new() }
    }
}

/// Plans giving a frontend `addresses` and `affinity_ms`, where `fresh_set_id` is free for a
/// new set.
pub(crate) fn plan_upsert(
    current: Option<&ServiceState>,
    addresses: &[SocketAddrV4],
    affinity_ms: Option<u32>,
    fresh_set_id: u32,
) -> UpdatePlan {
    let desired = |set_id| ServiceState { set_id, addresses: addresses.to_vec(), affinity_ms };
    let Some(current) = current else {
        return UpdatePlan {
            prepare: write_set(fresh_set_id, addresses, affinity_ms.is_some()),
            commit: Commit::Write(desired(fresh_set_id)),
            cleanup: Vec::new(),
        };
    };
    if current.addresses == addresses && current.affinity_ms == affinity_ms {
        return UpdatePlan::unchanged();
    }
    let with_members = affinity_ms.is_some();
    let in_place = current.affinity_ms.is_some() == with_members;
    let set_id = current.set_id;
    let old = current.addresses.as_slice();

    if in_place && addresses.starts_with(old) {
        // Appended: slots past the current count are unreferenced until the count grows.
        let mut prepare = slot_writes(set_id, old.len(), &addresses[old.len()..]);
        if with_members {
            let known: HashSet<&SocketAddrV4> = old.iter().collect();
            prepare.extend(
                distinct(&addresses[old.len()..])
                    .filter(|address| !known.contains(address))
                    .map(|address| Step::WriteMember { set_id, address }),
            );
        }
        return UpdatePlan { prepare, commit: Commit::Write(desired(set_id)), cleanup: Vec::new() };
    }
    if in_place && old.starts_with(addresses) {
        // Truncated: slots past the new count are unreferenced once the count shrinks.
        let mut cleanup: Vec<Step> = (addresses.len()..old.len())
            .map(|slot| Step::DeleteSlot { set_id, slot: slot_index(slot) })
            .collect();
        if with_members {
            let kept: HashSet<&SocketAddrV4> = addresses.iter().collect();
            cleanup.extend(
                distinct(&old[addresses.len()..])
                    .filter(|address| !kept.contains(address))
                    .map(|address| Step::DeleteMember { set_id, address }),
            );
        }
        return UpdatePlan { prepare: Vec::new(), commit: Commit::Write(desired(set_id)), cleanup };
    }
    UpdatePlan {
        prepare: write_set(fresh_set_id, addresses, with_members),
        commit: Commit::Write(desired(fresh_set_id)),
        cleanup: delete_set(current),
    }
}

/// Plans removing a frontend.
pub(crate) fn plan_remove(current: Option<&ServiceState>) -> UpdatePlan {
    match current {
        None => UpdatePlan::unchanged(),
        Some(current) => {
            UpdatePlan { prepare: Vec::new(), commit: Commit::Delete, cleanup: delete_set(current) }
        }
    }
}

/// Entries of `backends` and `members` that no service references, given every key found.
pub(crate) fn unreferenced(
    services: &BTreeMap<Frontend, ServiceState>,
    slots: impl IntoIterator<Item = (u32, u32)>,
    members: impl IntoIterator<Item = (u32, SocketAddrV4)>,
) -> Vec<Step> {
    let mut counts = std::collections::HashMap::new();
    let mut referenced_members = HashSet::new();
    for state in services.values() {
        counts.insert(state.set_id, state.addresses.len());
        if state.affinity_ms.is_some() {
            referenced_members
                .extend(state.addresses.iter().map(|address| (state.set_id, *address)));
        }
    }
    let mut garbage: Vec<Step> = slots
        .into_iter()
        .filter(|(set_id, slot)| {
            counts
                .get(set_id)
                .is_none_or(|count| usize::try_from(*slot).map_or(true, |slot| slot >= *count))
        })
        .map(|(set_id, slot)| Step::DeleteSlot { set_id, slot })
        .collect();
    garbage.extend(
        members
            .into_iter()
            .filter(|member| !referenced_members.contains(member))
            .map(|(set_id, address)| Step::DeleteMember { set_id, address }),
    );
    garbage
}

fn write_set(set_id: u32, addresses: &[SocketAddrV4], with_members: bool) -> Vec<Step> {
    let mut steps = slot_writes(set_id, 0, addresses);
    if with_members {
        steps.extend(distinct(addresses).map(|address| Step::WriteMember { set_id, address }));
    }
    steps
}

fn delete_set(state: &ServiceState) -> Vec<Step> {
    let set_id = state.set_id;
    let mut steps: Vec<Step> = (0..state.addresses.len())
        .map(|slot| Step::DeleteSlot { set_id, slot: slot_index(slot) })
        .collect();
    if state.affinity_ms.is_some() {
        steps.extend(
            distinct(&state.addresses).map(|address| Step::DeleteMember { set_id, address }),
        );
    }
    steps
}

fn slot_writes(set_id: u32, first_slot: usize, addresses: &[SocketAddrV4]) -> Vec<Step> {
    addresses
        .iter()
        .enumerate()
        .map(|(offset, address)| Step::WriteSlot {
            set_id,
            slot: slot_index(first_slot + offset),
            address: *address,
        })
        .collect()
}

/// Callers hold at most `u16::MAX` backends per frontend, so every slot fits.
fn slot_index(slot: usize) -> u32 {
    u32::try_from(slot).unwrap_or(u32::MAX)
}

/// The addresses in order of first appearance, each once.
fn distinct(addresses: &[SocketAddrV4]) -> impl Iterator<Item = SocketAddrV4> + '_ {
    let mut seen = HashSet::new();
    addresses.iter().copied().filter(move |address| seen.insert(*address))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::table::Protocol;

    fn backend(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), 8080)
    }

    fn state(set_id: u32, lasts: &[u8], affinity_ms: Option<u32>) -> ServiceState {
        ServiceState {
            set_id,
            addresses: lasts.iter().map(|last| backend(*last)).collect(),
            affinity_ms,
        }
    }

    fn slot(set_id: u32, slot: u32, last: u8) -> Step {
        Step::WriteSlot { set_id, slot, address: backend(last) }
    }

    fn member(set_id: u32, last: u8) -> Step {
        Step::WriteMember { set_id, address: backend(last) }
    }

    fn delete_slot(set_id: u32, slot: u32) -> Step {
        Step::DeleteSlot { set_id, slot }
    }

    fn delete_member(set_id: u32, last: u8) -> Step {
        Step::DeleteMember { set_id, address: backend(last) }
    }

    fn addresses(lasts: &[u8]) -> Vec<SocketAddrV4> {
        lasts.iter().map(|last| backend(*last)).collect()
    }

    #[test]
    fn a_new_frontend_writes_its_set_before_the_service_entry() {
        let plan = plan_upsert(None, &addresses(&[1, 2]), None, 7);
        assert_eq!(plan.prepare, vec![slot(7, 0, 1), slot(7, 1, 2)]);
        assert_eq!(plan.commit, Commit::Write(state(7, &[1, 2], None)));
        assert!(plan.cleanup.is_empty());
    }

    #[test]
    fn a_frontend_without_backends_writes_only_its_entry() {
        let plan = plan_upsert(None, &[], None, 7);
        assert!(plan.prepare.is_empty());
        assert_eq!(plan.commit, Commit::Write(state(7, &[], None)));
    }

    #[test]
    fn an_unchanged_frontend_costs_nothing() {
        let current = state(3, &[1, 2], Some(1000));
        let plan = plan_upsert(Some(&current), &addresses(&[1, 2]), Some(1000), 7);
        assert_eq!(plan, UpdatePlan::unchanged());
    }

    #[test]
    fn appended_backends_are_written_into_the_current_set() {
        let current = state(3, &[1, 2], None);
        let plan = plan_upsert(Some(&current), &addresses(&[1, 2, 3]), None, 7);
        assert_eq!(plan.prepare, vec![slot(3, 2, 3)]);
        assert_eq!(plan.commit, Commit::Write(state(3, &[1, 2, 3], None)));
        assert!(plan.cleanup.is_empty());
    }

    #[test]
    fn backends_dropped_from_the_end_are_deleted_after_the_commit() {
        let current = state(3, &[1, 2, 3], None);
        let plan = plan_upsert(Some(&current), &addresses(&[1]), None, 7);
        assert!(plan.prepare.is_empty());
        assert_eq!(plan.commit, Commit::Write(state(3, &[1], None)));
        assert_eq!(plan.cleanup, vec![delete_slot(3, 1), delete_slot(3, 2)]);
    }

    #[test]
    fn any_other_change_uses_a_fresh_set_then_deletes_the_old_one() {
        let current = state(3, &[1, 2], None);
        let plan = plan_upsert(Some(&current), &addresses(&[2, 4]), None, 7);
        assert_eq!(plan.prepare, vec![slot(7, 0, 2), slot(7, 1, 4)]);
        assert_eq!(plan.commit, Commit::Write(state(7, &[2, 4], None)));
        assert_eq!(plan.cleanup, vec![delete_slot(3, 0), delete_slot(3, 1)]);
    }

    #[test]
    fn affinity_sets_write_each_distinct_member_once() {
        let plan = plan_upsert(None, &addresses(&[1, 2, 1]), Some(5000), 7);
        assert_eq!(
            plan.prepare,
            vec![slot(7, 0, 1), slot(7, 1, 2), slot(7, 2, 1), member(7, 1), member(7, 2)]
        );
    }

    #[test]
    fn appending_to_an_affinity_set_writes_only_new_members() {
        let current = state(3, &[1, 2], Some(5000));
        let plan = plan_upsert(Some(&current), &addresses(&[1, 2, 2, 3]), Some(5000), 7);
        assert_eq!(plan.prepare, vec![slot(3, 2, 2), slot(3, 3, 3), member(3, 3)]);
    }

    #[test]
    fn truncating_an_affinity_set_keeps_members_still_present() {
        let current = state(3, &[1, 2, 1, 4], Some(5000));
        let plan = plan_upsert(Some(&current), &addresses(&[1, 2]), Some(5000), 7);
        assert_eq!(plan.cleanup, vec![delete_slot(3, 2), delete_slot(3, 3), delete_member(3, 4)]);
    }

    #[test]
    fn changing_only_the_affinity_timeout_rewrites_only_the_entry() {
        let current = state(3, &[1, 2], Some(5000));
        let plan = plan_upsert(Some(&current), &addresses(&[1, 2]), Some(9000), 7);
        assert!(plan.prepare.is_empty() && plan.cleanup.is_empty());
        assert_eq!(plan.commit, Commit::Write(state(3, &[1, 2], Some(9000))));
    }

    #[test]
    fn turning_affinity_on_or_off_moves_to_a_fresh_set() {
        let current = state(3, &[1], None);
        let plan = plan_upsert(Some(&current), &addresses(&[1]), Some(5000), 7);
        assert_eq!(plan.prepare, vec![slot(7, 0, 1), member(7, 1)]);
        assert_eq!(plan.cleanup, vec![delete_slot(3, 0)]);

        let current = state(3, &[1], Some(5000));
        let plan = plan_upsert(Some(&current), &addresses(&[1]), None, 7);
        assert_eq!(plan.prepare, vec![slot(7, 0, 1)]);
        assert_eq!(plan.cleanup, vec![delete_slot(3, 0), delete_member(3, 1)]);
    }

    #[test]
    fn removing_deletes_the_entry_before_its_set() {
        let current = state(3, &[1, 2], Some(5000));
        let plan = plan_remove(Some(&current));
        assert!(plan.prepare.is_empty());
        assert_eq!(plan.commit, Commit::Delete);
        assert_eq!(
            plan.cleanup,
            vec![delete_slot(3, 0), delete_slot(3, 1), delete_member(3, 1), delete_member(3, 2)]
        );
        assert_eq!(plan_remove(None), UpdatePlan::unchanged());
    }

    #[test]
    fn leftovers_of_interrupted_updates_are_found() {
        let frontend =
            Frontend { ip: Ipv4Addr::new(10, 96, 0, 1), port: 80, protocol: Protocol::Tcp };
        let services = BTreeMap::from([(frontend, state(3, &[1, 2], Some(5000)))]);
        let slots = [(3, 0), (3, 1), (3, 2), (9, 0)];
        let members = [(3, backend(1)), (3, backend(5)), (9, backend(1))];
        assert_eq!(
            unreferenced(&services, slots, members),
            vec![delete_slot(3, 2), delete_slot(9, 0), delete_member(3, 5), delete_member(9, 1)]
        );
    }
}
