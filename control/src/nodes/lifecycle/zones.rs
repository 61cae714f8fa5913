//! Zone disruption, as Kubernetes' node lifecycle controller judges it (`ComputeZoneState` and
//! `handleDisruption`), without IO: how many nodes of each zone are not ready, what state that
//! puts the zone in, and how fast the taint manager may evict pods for the node condition taints
//! (`not-ready`, `unreachable`) of a node in it.
//!
//! The membership this master sees is what judges nodes here, so a master cut off from the
//! network, or gossip broken across the cluster, would see every agent down at once. The zone
//! states keep such a master from evicting every pod:
//! - A zone is `FullDisruption` when none of its nodes is ready, `PartialDisruption` when more
//!   than two and at least 55% of them are not (`--unhealthy-zone-threshold`), else `Normal`.
//! - When every zone is in `FullDisruption`, the controller assumes it is the one cut off
//!   ("master disruption mode") and evicts nothing anywhere.
//! - A zone in `PartialDisruption` stops evicting when it has at most 50 nodes
//!   (`--large-cluster-size-threshold`); a larger one evicts at most one pod per
//!   [`PARTIAL_DISRUPTION_EVICTION_INTERVAL`].
//! - A zone in `FullDisruption` while some other zone is not evicts as a `Normal` one, as
//!   Kubernetes does: the zone is down, not the master, and its workloads should move to the
//!   zones that are up.
//!
//! Invariants:
//! - A node counts as ready only when the membership does not hold its agent down and its Ready
//!   condition is True; a node whose agent has not joined yet (startup grace) is counted by its
//!   Ready condition, so a leader that has just started does not see a disruption that is not.
//! - Nodes labelled `node.kubernetes.io/exclude-disruption` are left out of the counts.
//! - Nodes without a `topology.kubernetes.io/zone` label form one zone, the default zone (`""`).
//! - Only evictions for the condition taints are held back; the node's conditions and taints
//!   are still written (so the scheduler avoids it), its pods are still marked not Ready, and a
//!   pod that does not tolerate another `NoExecute` taint is evicted as always.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Node;

use super::plan::{self, Allowance, Verdict};
use super::Liveness;
use crate::nodes::taints;

#[cfg(test)]
mod tests;

/// The label naming a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Nodes with this label are left out of the zone counts (Kubernetes' label of that name).
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";
/// The fraction of a zone's nodes that must be not ready (with more than
/// [`MIN_NOT_READY_FOR_PARTIAL`]) for the zone to be in partial disruption
/// (kube-controller-manager's `--unhealthy-zone-threshold`).
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
/// A zone is in partial disruption only with more nodes not ready than this.
pub const MIN_NOT_READY_FOR_PARTIAL: usize = 2;
/// A zone in partial disruption with at most this many nodes stops evicting; a larger one
/// evicts slowly (kube-controller-manager's `--large-cluster-size-threshold`).
pub const LARGE_CLUSTER_SIZE_THRESHOLD: usize = 50;
/// A large zone in partial disruption evicts at most one pod per this interval. Kubernetes
/// limits how fast nodes are tainted instead (`--secondary-node-eviction-rate`, 0.01 nodes per
/// second); Flotilla does not limit a `Normal` zone at all, so it limits pods here.
pub const PARTIAL_DISRUPTION_EVICTION_INTERVAL: SignedDuration = SignedDuration::from_secs(1);
/// How often a node whose pods are held back is looked at again, in case a change of its
/// zone's state was missed (a ready node deleted).
pub const HELD_RECHECK: SignedDuration = SignedDuration::from_secs(30);

/// A zone's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// Many of the zone's nodes are not ready, but not all.
    PartialDisruption,
    /// None of the zone's nodes is ready.
    FullDisruption,
}

impl fmt::Display for ZoneState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZoneState::Normal => "Normal",
            ZoneState::PartialDisruption => "PartialDisruption",
            ZoneState::FullDisruption => "FullDisruption",
        })
    }
}

/// How many of a zone's nodes are ready and not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneCount {
    pub ready: usize,
    pub not_ready: usize,
}

impl ZoneCount {
    pub fn size(&self) -> usize {
        self.ready + self.not_ready
    }
}

/// The state of a zone with `count` nodes (Kubernetes' `ComputeZoneState`).
pub fn zone_state(count: ZoneCount) -> ZoneState {
    let ZoneCount { ready, not_ready } = count;
    if ready == 0 && not_ready > 0 {
        return ZoneState::FullDisruption;
    }
    // The counts are node counts, far below 2^52: the conversions are exact.
    let fraction = not_ready as f64 / count.size().max(1) as f64;
    if not_ready > MIN_NOT_READY_FOR_PARTIAL && fraction >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// How fast the taint manager may evict pods for a node's condition taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As soon as their tolerations run out.
    Unlimited,
    /// At most one pod per [`PARTIAL_DISRUPTION_EVICTION_INTERVAL`] in the zone.
    Limited,
    /// Not at all.
    Stopped,
}

/// One zone: its state and how many nodes it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    pub state: ZoneState,
    pub size: usize,
}

/// Every zone with a counted node, by name (`""`: the default zone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zones {
    pub zones: BTreeMap<String, Zone>,
}

/// The zone `node` belongs to: its zone label, or the default zone `""`.
pub fn zone_of(node: &Node) -> &str {
    let labels = node.metadata.labels.as_ref();
    labels.and_then(|labels| labels.get(ZONE_LABEL)).map_or("", String::as_str)
}

/// Whether `node` counts as ready, given the controller's verdict on it.
pub fn counts_as_ready(node: &Node, verdict: Verdict) -> bool {
    verdict != Verdict::Unreachable && taints::ready_status(node) == Some("True")
}

impl Zones {
    /// The zones of `nodes`, judged by `liveness` after leading for `led_for`.
    pub fn survey<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        liveness: &Liveness,
        led_for: SignedDuration,
    ) -> Zones {
        let mut counts: BTreeMap<String, ZoneCount> = BTreeMap::new();
        for node in nodes {
            let labels = node.metadata.labels.as_ref();
            if labels.is_some_and(|labels| labels.contains_key(EXCLUDE_DISRUPTION_LABEL)) {
                continue;
            }
            let name = node.metadata.name.as_deref().unwrap_or_default();
            let verdict = plan::verdict(liveness.get(name).copied(), led_for);
            let count = counts.entry(zone_of(node).to_owned()).or_default();
            if counts_as_ready(node, verdict) {
                count.ready += 1;
            } else {
                count.not_ready += 1;
            }
        }
        Zones::from_counts(counts)
    }

    /// The zones with `counts`.
    pub fn from_counts(counts: BTreeMap<String, ZoneCount>) -> Zones {
        let zones = counts
            .into_iter()
            .map(|(name, count)| (name, Zone { state: zone_state(count), size: count.size() }))
            .collect();
        Zones { zones }
    }

    /// Whether every zone is in full disruption (and there is one): the controller then assumes
    /// that it is the one cut off, and evicts nothing ("master disruption mode").
    pub fn master_disruption(&self) -> bool {
        !self.zones.is_empty()
            && self.zones.values().all(|zone| zone.state == ZoneState::FullDisruption)
    }

    /// How fast pods may be evicted for the condition taints of a node in `zone`. A zone with no
    /// counted node (its nodes are all excluded) evicts as a `Normal` one.
    pub fn pace(&self, zone: &str) -> Pace {
        if self.master_disruption() {
            return Pace::Stopped;
        }
        match self.zones.get(zone) {
            None => Pace::Unlimited,
            Some(Zone { state: ZoneState::Normal | ZoneState::FullDisruption, .. }) => {
                Pace::Unlimited
            }
            Some(Zone { state: ZoneState::PartialDisruption, size }) => {
                if *size > LARGE_CLUSTER_SIZE_THRESHOLD {
                    Pace::Limited
                } else {
                    Pace::Stopped
                }
            }
        }
    }
}

/// A change worth a warning between two surveys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A zone is now in `state` (`was`: its state before, `None` for a zone not seen before).
    Zone { zone: String, was: Option<ZoneState>, state: ZoneState },
    /// Every zone is now in full disruption.
    EnteredMasterDisruption,
    /// Some zone is no longer in full disruption.
    ExitedMasterDisruption,
}

/// What changed from `before` to `after`, as Kubernetes logs it: entering master disruption
/// mode is one transition (the zones' states are not listed then); otherwise each zone whose
/// state changed, except a new zone that is `Normal`.
pub fn transitions(before: &Zones, after: &Zones) -> Vec<Transition> {
    let (was_master, is_master) = (before.master_disruption(), after.master_disruption());
    if is_master {
        return if was_master { Vec::new() } else { vec![Transition::EnteredMasterDisruption] };
    }
    let mut changes = Vec::new();
    if was_master {
        changes.push(Transition::ExitedMasterDisruption);
    }
    for (name, zone) in &after.zones {
        let was = before.zones.get(name).map(|zone| zone.state);
        if was == Some(zone.state) || (was.is_none() && zone.state == ZoneState::Normal) {
            continue;
        }
        changes.push(Transition::Zone { zone: name.clone(), was, state: zone.state });
    }
    changes
}

/// The zones whose [`Pace`] differs between `before` and `after`: their nodes are looked at
/// again, so evictions held back resume (or stop) at once.
pub fn paces_changed(before: &Zones, after: &Zones) -> BTreeSet<String> {
    let names = before.zones.keys().chain(after.zones.keys());
    names.filter(|name| before.pace(name) != after.pace(name)).cloned().collect()
}

/// What a node whose zone evicts at `pace` may evict now. `next_eviction` is when its zone may
/// evict again, if it evicted lately.
pub fn allowance(pace: Pace, next_eviction: Option<Timestamp>, now: Timestamp) -> Allowance {
    match pace {
        Pace::Unlimited => Allowance::UNLIMITED,
        Pace::Stopped => Allowance { evictions: Some(0), retry_after: Some(HELD_RECHECK) },
        Pace::Limited => match next_eviction {
            Some(at) if at > now => {
                Allowance { evictions: Some(0), retry_after: Some(at.duration_since(now)) }
            }
            _ => Allowance {
                evictions: Some(1),
                retry_after: Some(PARTIAL_DISRUPTION_EVICTION_INTERVAL),
            },
        },
    }
}
