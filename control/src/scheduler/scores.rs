//! Score plugins with kube-scheduler's default weights and normalizations. Every function takes
//! the feasible nodes and returns one normalized score (0..=100) per node, in the same order.

use std::collections::HashMap;

use super::filters::{term_matches, tolerates, PodContext};
use super::images;
use super::snapshot::{NodeInfo, Snapshot};

pub(crate) const MAX_SCORE: i64 = 100;
pub(crate) const WEIGHT_TAINT: i64 = 3;
pub(crate) const WEIGHT_NODE_AFFINITY: i64 = 2;
pub(crate) const WEIGHT_FIT: i64 = 1;
pub(crate) const WEIGHT_SPREAD: i64 = 2;
pub(crate) const WEIGHT_INTER_POD: i64 = 2;
pub(crate) const WEIGHT_BALANCED: i64 = 1;
pub(crate) const WEIGHT_IMAGE_LOCALITY: i64 = 1;
/// `hardPodAffinityWeight` default: existing pods' required affinity counts in scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// NodeResourcesFit, LeastAllocated over cpu and memory (weight 1 each), non-zero requests.
pub(crate) fn least_allocated(ctx: &PodContext, node: &NodeInfo) -> i64 {
    let pod = &ctx.info.non_zero;
    let one = |cap: i64, used: i64| {
        if cap == 0 || used > cap {
            0
        } else {
            (cap - used) * MAX_SCORE / cap
        }
    };
    let cpu = one(node.allocatable.cpu, node.non_zero_requested.cpu + pod.cpu);
    let mem = one(node.allocatable.memory, node.non_zero_requested.memory + pod.memory);
    (cpu + mem) / 2
}

/// NodeResourcesBalancedAllocation over cpu and memory: `(1 - stddev(fractions)) * 100`.
pub(crate) fn balanced(ctx: &PodContext, node: &NodeInfo) -> i64 {
    let pod = &ctx.info.requests;
    let fraction = |cap: i64, used: i64| (cap > 0).then(|| (used as f64 / cap as f64).min(1.0));
    let cpu = fraction(node.allocatable.cpu, node.requested.cpu + pod.cpu);
    let mem = fraction(node.allocatable.memory, node.requested.memory + pod.memory);
    // With one resource (or none) the standard deviation is zero.
    let std = match (cpu, mem) {
        (Some(a), Some(b)) => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// `helper.DefaultNormalizeScore`.
fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = *s * MAX_SCORE / max;
        if reverse {
            *s = MAX_SCORE - *s;
        }
    }
}

/// TaintToleration: fewer untolerated PreferNoSchedule taints is better.
pub(crate) fn taint_toleration(ctx: &PodContext, nodes: &[&NodeInfo]) -> Vec<i64> {
    let tols: Vec<_> = ctx
        .tolerations
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
        .collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|taint| {
                    taint.effect == "PreferNoSchedule" && !tols.iter().any(|t| tolerates(t, taint))
                })
                .count() as i64
        })
        .collect();
    default_normalize(&mut scores, true);
    scores
}

/// NodeAffinity: sum of the weights of matching preferred terms.
pub(crate) fn node_affinity(ctx: &PodContext, nodes: &[&NodeInfo]) -> Vec<i64> {
    let preferred = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default();
    if preferred.is_empty() {
        return vec![0; nodes.len()];
    }
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|p| p.weight != 0 && term_matches(&p.preference, n))
                .map(|p| i64::from(p.weight))
                .sum()
        })
        .collect();
    default_normalize(&mut scores, false);
    scores
}

/// InterPodAffinity: preferred terms of the pod and of existing pods, min-max normalized.
pub(crate) fn inter_pod_affinity<'a>(
    ctx: &PodContext,
    snapshot: &'a Snapshot,
    nodes: &[&NodeInfo],
) -> Vec<i64> {
    let info = &ctx.info;
    let own = !info.preferred_affinity.is_empty() || !info.preferred_anti.is_empty();
    if !own && snapshot.pods_with_affinity == 0 {
        return vec![0; nodes.len()];
    }
    let mut topo: HashMap<(&str, &str), i64> = HashMap::new();
    let mut bump = |node: &'a NodeInfo, key: &str, w: i64| {
        if let Some((k, v)) = node.labels.get_key_value(key) {
            *topo.entry((k.as_str(), v.as_str())).or_insert(0) += w;
        }
    };
    for node in &snapshot.nodes {
        if !own && node.pods_with_affinity == 0 {
            continue;
        }
        for existing in &node.pods {
            for (w, t) in &info.preferred_affinity {
                if t.matches(existing) {
                    bump(node, &t.topology_key, i64::from(*w));
                }
            }
            for (w, t) in &info.preferred_anti {
                if t.matches(existing) {
                    bump(node, &t.topology_key, -i64::from(*w));
                }
            }
            for t in &existing.required_affinity {
                if t.matches(info) {
                    bump(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for (w, t) in &existing.preferred_affinity {
                if t.matches(info) {
                    bump(node, &t.topology_key, i64::from(*w));
                }
            }
            for (w, t) in &existing.preferred_anti {
                if t.matches(info) {
                    bump(node, &t.topology_key, -i64::from(*w));
                }
            }
        }
    }
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            topo.iter()
                .filter(|((k, v), _)| n.labels.get(*k).is_some_and(|x| x == v))
                .map(|(_, s)| *s)
                .sum()
        })
        .collect();
    let (min, max) =
        (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    raw.iter()
        .map(|s| {
            if max > min {
                (MAX_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

/// PodTopologySpread, ScheduleAnyway constraints: fewer matching pods in the node's domain wins.
pub(crate) fn topology_spread(
    ctx: &PodContext,
    snapshot: &Snapshot,
    nodes: &[&NodeInfo],
) -> Vec<i64> {
    let constraints = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    let compiled = ctx.compile_spread(snapshot, constraints, "ScheduleAnyway", false);
    if compiled.is_empty() {
        return vec![0; nodes.len()];
    }
    // Domain count over feasible nodes that carry every key; weight log(size + 2).
    let weights: Vec<f64> = compiled
        .iter()
        .map(|c| {
            let mut seen: Vec<&str> = nodes
                .iter()
                .filter(|n| compiled.iter().all(|c| n.labels.contains_key(&c.key)))
                .filter_map(|n| n.labels.get(&c.key).map(String::as_str))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            ((seen.len() + 2) as f64).ln()
        })
        .collect();
    let raw: Vec<Option<i64>> = nodes
        .iter()
        .map(|n| {
            let mut score = 0.0;
            for (c, w) in compiled.iter().zip(&weights) {
                let v = n.labels.get(&c.key)?;
                let count = c.counts.get(v).copied().unwrap_or(0);
                score += (count as f64 + (c.max_skew - 1) as f64) * w;
            }
            Some(score.round() as i64)
        })
        .collect();
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    let max = raw.iter().flatten().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_SCORE,
            Some(s) => MAX_SCORE * (max + min - s) / max,
        })
        .collect()
}

/// ImageLocality: nodes already holding the pod's images, weighed by size and spread; not
/// normalized (kube-scheduler's plugin has no ScoreExtensions).
pub(crate) fn image_locality(
    ctx: &PodContext,
    snapshot: &Snapshot,
    nodes: &[&NodeInfo],
) -> Vec<i64> {
    if ctx.images.is_empty() {
        return vec![0; nodes.len()];
    }
    let total = snapshot.nodes.len();
    nodes
        .iter()
        .map(|n| images::image_locality(&ctx.images, &n.images, &snapshot.images, total))
        .collect()
}
