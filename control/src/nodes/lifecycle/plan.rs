//! Decides what the node lifecycle controller does for one Node, without IO.
//!
//! [`plan`] takes the Node, what the gossip membership says of its agent, how long this
//! controller has led, the pods bound to the node, when each was first seen under `NoExecute`
//! taints, what its zone allows the taint manager to evict (see [`super::zones`]), and the time.
//! It returns a [`Plan`]: the node's conditions and taints to write, the pods to mark not Ready,
//! the pods to evict now, and when to look again.
//!
//! Invariants:
//! - Nothing is written unless it changes: a healthy, idle cluster gets an empty plan.
//! - Ready is never set True here; only the agent reports its node Ready.
//! - The condition taints follow the Ready condition the node will have once the planned
//!   conditions are written, so one reconcile marks a node unreachable and taints it.
//! - Evictions are decided from the taints the node will have once the planned taints are
//!   written.
//! - The [`Allowance`] limits only evictions due to the condition taints (`not-ready`,
//!   `unreachable`): a pod that does not tolerate another `NoExecute` taint is evicted anyway,
//!   and a pod held back is still marked not Ready.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::eviction::{self, Tolerated};
use super::{AgentLiveness, Liveness};
use crate::nodes::taints::{self, NO_EXECUTE};

/// How long a node whose agent never joined the membership is left alone after this controller
/// starts leading (Kubernetes' `nodeStartupGracePeriod`): long enough for the membership to
/// learn of every live agent.
pub const STARTUP_GRACE: SignedDuration = SignedDuration::from_secs(60);

/// Condition reasons and messages, as Kubernetes' node lifecycle controller writes them.
pub mod reason {
    pub const STATUS_UNKNOWN: &str = "NodeStatusUnknown";
    pub const STATUS_UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";
    pub const NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
    pub const NEVER_UPDATED_MESSAGE: &str = "Kubelet never posted node status.";
}

/// What the controller concludes about a node from its agent's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The membership holds the agent alive.
    Reachable,
    /// The membership declared the agent down, or it never joined within the startup grace.
    Unreachable,
    /// The agent has not joined the membership and the startup grace is not over yet: the
    /// node's status is left alone until then.
    Unjudged,
}

/// A pod to write to, with the uid and resourceVersion the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// A pod whose status conditions become `conditions` (written conditionally on its
/// resourceVersion).
#[derive(Debug, Clone, PartialEq)]
pub struct PodConditions {
    pub pod: PodRef,
    pub conditions: Vec<PodCondition>,
}

/// A pod the taint manager evicts now: first its conditions are written (when they change:
/// `DisruptionTarget` True, and Ready False on an unreachable node), then it is deleted
/// gracefully with its uid as precondition.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    pub pod: PodRef,
    pub conditions: Option<Vec<PodCondition>>,
    /// Whether the eviction is due to the node's condition taints alone, and so counted
    /// against its zone's [`Allowance`].
    pub by_condition_taint: bool,
}

/// How many pods the taint manager may evict now for the node's condition taints, as its zone's
/// state allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// At most this many; `None`: no limit.
    pub evictions: Option<usize>,
    /// When to look again at pods held back by the limit.
    pub retry_after: Option<SignedDuration>,
}

impl Allowance {
    /// No limit: a zone in a normal state.
    pub const UNLIMITED: Allowance = Allowance { evictions: None, retry_after: None };

    /// Takes one eviction from the allowance; false when none is left.
    fn take(&mut self) -> bool {
        match &mut self.evictions {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }
}

/// What to do for one Node, in the order to do it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub verdict: Verdict,
    /// The node's conditions to write (status, conditional on its resourceVersion), when the
    /// node is unreachable and they change.
    pub conditions: Option<Vec<NodeCondition>>,
    /// The node's taints to write (spec, conditional on the resourceVersion the status write
    /// left), when its condition taints change.
    pub taints: Option<Vec<Taint>>,
    /// Pods on an unreachable node whose Ready condition becomes False (Kubernetes'
    /// `MarkPodsNotReady`); pods evicted now are not among them.
    pub not_ready: Vec<PodConditions>,
    /// Pods evicted now because they do not tolerate the node's `NoExecute` taints, or no
    /// longer: their `tolerationSeconds` ran out.
    pub evictions: Vec<Eviction>,
    /// How many pods due for eviction for the condition taints were held back because the
    /// allowance ran out (they are marked not Ready instead, when the node is unreachable).
    pub held: usize,
    /// When each pod on the node (by uid) was first seen under `NoExecute` taints: keep it for
    /// the next plan of this node.
    pub first_seen: BTreeMap<String, Timestamp>,
    /// Plan again after this long: the startup grace ends, or a toleration runs out.
    pub recheck_after: Option<SignedDuration>,
}

/// How the controller judges a node whose agent's liveness is `liveness` (`None`: not in the
/// membership) after leading for `led_for`.
pub fn verdict(liveness: Option<AgentLiveness>, led_for: SignedDuration) -> Verdict {
    match liveness {
        Some(AgentLiveness { alive: true, .. }) => Verdict::Reachable,
        Some(AgentLiveness { alive: false, .. }) => Verdict::Unreachable,
        None if led_for > STARTUP_GRACE => Verdict::Unreachable,
        None => Verdict::Unjudged,
    }
}

/// Plans for `node`. `pods` are the pods bound to it (`spec.nodeName`); `first_seen` is the
/// previous plan's [`Plan::first_seen`] for this node; `allowance` is what its zone allows.
pub fn plan(
    node: &Node,
    liveness: Option<AgentLiveness>,
    led_for: SignedDuration,
    pods: &[&Pod],
    first_seen: &BTreeMap<String, Timestamp>,
    mut allowance: Allowance,
    now: Timestamp,
) -> Plan {
    let verdict = verdict(liveness, led_for);
    let conditions = match verdict {
        Verdict::Unreachable => unreachable_conditions(node, now),
        Verdict::Reachable | Verdict::Unjudged => None,
    };
    let ready = match &conditions {
        Some(conditions) => {
            conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
        }
        None => taints::ready_status(node),
    };
    let current_taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let taints = taints::with_condition_taints(ready, current_taints, now);
    let no_execute: Vec<&Taint> = taints
        .as_deref()
        .unwrap_or(current_taints)
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect();
    let other_no_execute: Vec<&Taint> =
        no_execute.iter().copied().filter(|t| !taints::is_condition_taint(t)).collect();

    let mut not_ready = Vec::new();
    let mut evictions = Vec::new();
    let mut held = 0;
    let mut seen_now = BTreeMap::new();
    let mut recheck_after = match verdict {
        Verdict::Unjudged => Some(STARTUP_GRACE - led_for),
        Verdict::Reachable | Verdict::Unreachable => None,
    };
    for pod in pods.iter().copied().filter(|pod| pod.metadata.deletion_timestamp.is_none()) {
        let mut pod_conditions = pod.status.as_ref().and_then(|s| s.conditions.clone());
        let mut changed = false;
        if verdict == Verdict::Unreachable && !eviction::is_terminal(pod) {
            changed |= eviction::mark_not_ready(&mut pod_conditions, now);
        }
        let (evict_at, other_evict_at) = if no_execute.is_empty() {
            (None, None)
        } else {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let seen = first_seen.get(&uid).copied().unwrap_or(now);
            seen_now.insert(uid, seen);
            (
                eviction_time(eviction::tolerated(&no_execute, pod, seen), now),
                eviction_time(eviction::tolerated(&other_no_execute, pod, seen), now),
            )
        };
        let mut look_again = |after: Option<SignedDuration>| {
            if let Some(after) = after {
                recheck_after = Some(recheck_after.map_or(after, |r| r.min(after)));
            }
        };
        match evict_at {
            Some(deadline) if deadline <= now => {
                let by_condition_taint = other_evict_at.is_none_or(|other| other > now);
                if !by_condition_taint || allowance.take() {
                    changed |= eviction::mark_disruption_target(&mut pod_conditions, now);
                    let conditions = if changed { pod_conditions } else { None };
                    evictions.push(Eviction { pod: pod_ref(pod), conditions, by_condition_taint });
                    continue;
                }
                // Held back by the zone: look again when it may evict, or when another
                // taint's toleration runs out.
                held += 1;
                look_again(allowance.retry_after);
                look_again(other_evict_at.map(|other| other.duration_since(now)));
            }
            Some(deadline) => look_again(Some(deadline.duration_since(now))),
            None => {}
        }
        if let (true, Some(conditions)) = (changed, pod_conditions) {
            not_ready.push(PodConditions { pod: pod_ref(pod), conditions });
        }
    }
    Plan {
        verdict,
        conditions,
        taints,
        not_ready,
        evictions,
        held,
        first_seen: seen_now,
        recheck_after,
    }
}

/// When a pod that tolerates its node's taints `tolerated` is to be evicted (`None`: never).
fn eviction_time(tolerated: Tolerated, now: Timestamp) -> Option<Timestamp> {
    match tolerated {
        Tolerated::Forever => None,
        Tolerated::Not => Some(now),
        Tolerated::Until(deadline) => Some(deadline),
    }
}

/// The node's conditions once it is judged unreachable, or `None` when they are so already:
/// every condition not yet Unknown becomes Unknown (`NodeStatusUnknown`, transition now; the
/// heartbeat is kept), one already Unknown is kept as it is, and a missing Ready condition is
/// added as Unknown (`NodeStatusNeverUpdated`, heartbeat at the node's creation), as Kubernetes'
/// `tryUpdateNodeHealth` does.
pub fn unreachable_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let current = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let mut next = current.to_vec();
    for condition in next.iter_mut().filter(|c| c.status != "Unknown") {
        condition.status = "Unknown".into();
        condition.reason = Some(reason::STATUS_UNKNOWN.into());
        condition.message = Some(reason::STATUS_UNKNOWN_MESSAGE.into());
        condition.last_transition_time = Some(Time(now));
    }
    if !next.iter().any(|c| c.type_ == "Ready") {
        next.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some(reason::NEVER_UPDATED.into()),
            message: Some(reason::NEVER_UPDATED_MESSAGE.into()),
            last_heartbeat_time: node.metadata.creation_timestamp.clone(),
            last_transition_time: Some(Time(now)),
        });
    }
    (next != current).then_some(next)
}

/// The nodes whose agent's liveness differs between `before` and `after` (joined, left, went
/// down, came back or restarted).
pub fn changed_nodes(before: &Liveness, after: &Liveness) -> BTreeSet<String> {
    let names = before.keys().chain(after.keys());
    names.filter(|name| before.get(*name) != after.get(*name)).cloned().collect()
}

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
    }
}
