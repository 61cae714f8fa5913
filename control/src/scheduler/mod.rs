//! The pure scheduling decision: `schedule(&Snapshot, &Pod)` filters and scores nodes the way
//! kube-scheduler's default plugins do, and does no IO.

mod filters;
mod images;
#[cfg(test)]
mod images_tests;
mod scores;
mod snapshot;
#[cfg(test)]
mod tests;
mod volumes;
#[cfg(test)]
mod volumes_tests;

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use filters::PodContext;
use snapshot::NodeInfo;
pub use snapshot::{is_terminal, pod_key, Snapshot};
pub use volumes::{fully_bound, VolumeBindings};

/// Where the pod should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
}

/// No node fits; `message` is kube-scheduler's FailedScheduling text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unschedulable {
    pub message: String,
}

/// Picks a node for `pod`, or explains why none fits, examining every node.
#[cfg(test)]
pub fn schedule(snapshot: &Snapshot, pod: &Pod) -> Result<Placement, Unschedulable> {
    schedule_from(snapshot, pod, 0).map(|decision| decision.placement)
}

/// A placement and how many nodes were filtered to find it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub placement: Placement,
    /// The caller starts the next pod's search this many nodes further on.
    pub examined: usize,
    /// What to write for the pod's unbound claims before binding it (empty for most pods).
    pub volumes: VolumeBindings,
}

/// How many feasible nodes to find before scoring, as kube-scheduler's adaptive
/// `percentageOfNodesToScore` decides: all of a cluster under 100 nodes, otherwise
/// 50% minus one point per 125 nodes (at least 5%), and never fewer than 100 nodes.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN_NODES: usize = 100;
    if nodes < MIN_NODES {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_NODES)
}

/// Picks a node for `pod`, or explains why none fits.
///
/// Nodes are filtered in name order starting at index `start` (wrapping), until
/// [`feasible_nodes_to_find`] feasible nodes are found; those are scored. The caller rotates
/// `start` by [`Decision::examined`] so successive pods see different nodes first, as
/// kube-scheduler does. A pod that fits nowhere has every node examined, so its message counts
/// all of them. Ties on the total score go to the first feasible node examined, where
/// kube-scheduler picks one at random.
pub fn schedule_from(
    snapshot: &Snapshot,
    pod: &Pod,
    start: usize,
) -> Result<Decision, Unschedulable> {
    let ctx = PodContext::new(snapshot, pod);
    let node_count = snapshot.nodes.len();
    if let Some(reason) = &ctx.volume_rejection {
        return Err(Unschedulable { message: prefilter_error(node_count, pod, reason) });
    }
    let wanted = feasible_nodes_to_find(node_count);
    let mut feasible = Vec::new();
    let mut rejections = Vec::new();
    let mut examined = 0;
    for offset in 0..node_count {
        if feasible.len() >= wanted {
            break;
        }
        let node = &snapshot.nodes[(start + offset) % node_count];
        examined += 1;
        match ctx.filter(node) {
            None => feasible.push(node),
            Some(r) => rejections.push(r),
        }
    }
    match feasible.len() {
        0 => return Err(Unschedulable { message: fit_error(node_count, pod, &rejections) }),
        // kube-scheduler skips scoring when only one node is feasible.
        1 => {
            let volumes = volume_bindings(&ctx, snapshot, feasible[0]);
            let placement = Placement { node: feasible[0].name.clone() };
            return Ok(Decision { placement, examined, volumes });
        }
        _ => {}
    }
    let taint = scores::taint_toleration(&ctx, &feasible);
    let node_aff = scores::node_affinity(&ctx, &feasible);
    let inter = scores::inter_pod_affinity(&ctx, snapshot, &feasible);
    let spread = scores::topology_spread(&ctx, snapshot, &feasible);
    let image = scores::image_locality(&ctx, snapshot, &feasible);
    let mut best: Option<(i64, &NodeInfo)> = None;
    for (i, node) in feasible.iter().enumerate() {
        let total = scores::WEIGHT_FIT * scores::least_allocated(&ctx, node)
            + scores::WEIGHT_BALANCED * scores::balanced(&ctx, node)
            + scores::WEIGHT_TAINT * taint[i]
            + scores::WEIGHT_NODE_AFFINITY * node_aff[i]
            + scores::WEIGHT_INTER_POD * inter[i]
            + scores::WEIGHT_SPREAD * spread[i]
            + scores::WEIGHT_IMAGE_LOCALITY * image[i];
        // Keeping the first maximum breaks ties by the order nodes were examined in.
        if best.is_none_or(|(s, _)| total > s) {
            best = Some((total, node));
        }
    }
    // `feasible` has at least two nodes here, so `best` is always set.
    let chosen = best.map_or(feasible[0], |(_, node)| node);
    let volumes = volume_bindings(&ctx, snapshot, chosen);
    Ok(Decision { placement: Placement { node: chosen.name.clone() }, examined, volumes })
}

/// The volume bindings for the chosen node (kube's Reserve takes the ones Filter found there).
fn volume_bindings(ctx: &PodContext, snapshot: &Snapshot, node: &NodeInfo) -> VolumeBindings {
    ctx.volumes.bindings(&snapshot.storage, node).unwrap_or_default()
}

/// `"<count> <reason>"` entries sorted as Go's `sort.Strings` sorts them.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in reasons {
        *counts.entry(r).or_insert(0) += 1;
    }
    let mut lines: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    lines.sort();
    lines.join(", ")
}

/// `framework.FitError.Error()` when a PreFilter plugin rejected the pod: its reason alone, with
/// every node marked unresolvable for DefaultPreemption.
fn prefilter_error(num_nodes: usize, pod: &Pod, reason: &str) -> String {
    let mut msg = format!("0/{num_nodes} nodes are available: {reason}.");
    let post =
        histogram(std::iter::repeat_n("Preemption is not helpful for scheduling", num_nodes));
    msg.push_str(&preemption_message(num_nodes, pod, &post));
    msg
}

/// DefaultPreemption's PostFilter message, given the histogram of its per-node verdicts.
fn preemption_message(num_nodes: usize, pod: &Pod, post: &str) -> String {
    let never = pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never");
    if never {
        " preemption: not eligible due to preemptionPolicy=Never.".to_string()
    } else {
        format!(" preemption: 0/{num_nodes} nodes are available: {post}.")
    }
}

/// `framework.FitError.Error()` followed by DefaultPreemption's PostFilter message.
fn fit_error(num_nodes: usize, pod: &Pod, rejections: &[filters::Rejection]) -> String {
    let mut msg = format!("0/{num_nodes} nodes are available:");
    let filter = histogram(rejections.iter().flat_map(|r| r.reasons.iter().map(|s| s.as_ref())));
    if !filter.is_empty() {
        msg.push_str(&format!(" {filter}."));
    }
    // Preemption is not simulated: nodes rejected for resolvable reasons are reported as
    // having no victims.
    let post = histogram(rejections.iter().map(|r| {
        if r.resolvable {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        }
    }));
    msg.push_str(&preemption_message(num_nodes, pod, &post));
    msg
}
