//! The pure scheduling decision: `schedule(&Snapshot, &Pod)` filters and scores nodes the way
//! kube-scheduler's default plugins do, and does no IO.

mod filters;
pub mod quantity;
mod scores;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use filters::PodContext;
pub use snapshot::Snapshot;

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

/// Picks a node for `pod`, or explains why none fits.
///
/// All nodes are filtered and all feasible nodes scored (kube-scheduler samples a percentage of
/// large clusters and rotates its start index; that state does not belong in a pure function).
/// Ties on the total score go to the lexicographically smallest node name, where kube-scheduler
/// picks one at random.
pub fn schedule(snapshot: &Snapshot, pod: &Pod) -> Result<Placement, Unschedulable> {
    let ctx = PodContext::new(snapshot, pod);
    let mut feasible = Vec::new();
    let mut rejections = Vec::new();
    for node in &snapshot.nodes {
        match ctx.filter(node) {
            None => feasible.push(node),
            Some(r) => rejections.push(r),
        }
    }
    match feasible.len() {
        0 => {
            return Err(Unschedulable {
                message: fit_error(snapshot.nodes.len(), pod, &rejections),
            })
        }
        // kube-scheduler skips scoring when only one node is feasible.
        1 => return Ok(Placement { node: feasible[0].name.clone() }),
        _ => {}
    }
    let taint = scores::taint_toleration(&ctx, &feasible);
    let node_aff = scores::node_affinity(&ctx, &feasible);
    let inter = scores::inter_pod_affinity(&ctx, snapshot, &feasible);
    let spread = scores::topology_spread(&ctx, snapshot, &feasible);
    let mut best: Option<(i64, &String)> = None;
    for (i, node) in feasible.iter().enumerate() {
        let total = scores::WEIGHT_FIT * scores::least_allocated(&ctx, node)
            + scores::WEIGHT_BALANCED * scores::balanced(&ctx, node)
            + scores::WEIGHT_TAINT * taint[i]
            + scores::WEIGHT_NODE_AFFINITY * node_aff[i]
            + scores::WEIGHT_INTER_POD * inter[i]
            + scores::WEIGHT_SPREAD * spread[i];
        // Nodes are scanned in name order, so keeping the first maximum breaks ties by name.
        if best.is_none_or(|(s, _)| total > s) {
            best = Some((total, &node.name));
        }
    }
    let node = best.map(|(_, n)| n.to_string()).unwrap_or_default();
    Ok(Placement { node })
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

/// `framework.FitError.Error()` followed by DefaultPreemption's PostFilter message.
fn fit_error(num_nodes: usize, pod: &Pod, rejections: &[filters::Rejection]) -> String {
    let mut msg = format!("0/{num_nodes} nodes are available:");
    let filter = histogram(rejections.iter().flat_map(|r| r.reasons.iter().map(|s| s.as_ref())));
    if !filter.is_empty() {
        msg.push_str(&format!(" {filter}."));
    }
    let never = pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never");
    if never {
        msg.push_str(" preemption: not eligible due to preemptionPolicy=Never.");
    } else {
        // Preemption is not simulated: nodes rejected for resolvable reasons are reported as
        // having no victims.
        let post = histogram(rejections.iter().map(|r| {
            if r.resolvable {
                "No preemption victims found for incoming pod"
            } else {
                "Preemption is not helpful for scheduling"
            }
        }));
        msg.push_str(&format!(" preemption: 0/{num_nodes} nodes are available: {post}."));
    }
    msg
}
