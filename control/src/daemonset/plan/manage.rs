//! Which daemon pods to create and delete: per node as Kubernetes' `manage` and
//! `podsShouldBeOnNode` decide, then the RollingUpdate step as its `rollingUpdate` decides.
//!
//! Invariants:
//! - Nodes are visited in name order, so plans are deterministic (Kubernetes walks a map).
//! - A failed pod is deleted only outside its node's backoff; the plan rechecks when it ends.
//! - Without surge, old pods are deleted while fewer than maxUnavailable desired nodes lack an
//!   available pod; the manage step of a later plan creates their replacements once they are
//!   gone. With surge, new pods are created beside available old ones on at most maxSurge nodes,
//!   and an old pod goes once its new pod is available.

use k8s_openapi::api::core::v1::Pod;

use super::status::{hash_label, is_available, is_updated, phase};
use super::{reason, scaled, EventType, FailedPodBackoff, Placement, PlanEvent, Rolling, Work};
use crate::objects::is_ready;

impl<'a> Work<'a> {
    /// Plans per node, then deletes unscheduled pods meant for nodes that no longer exist (the
    /// pod garbage collector only removes pods bound to vanished nodes).
    pub(super) fn manage(&mut self) {
        let nodes: Vec<(&'a str, Placement)> =
            self.nodes.iter().map(|(name, placement)| (*name, *placement)).collect();
        for (node, placement) in nodes {
            let pods = self.by_node.get(node).cloned().unwrap_or_default();
            self.on_node(node, placement, &pods);
        }
        let stranded: Vec<&'a Pod> = self
            .by_node
            .iter()
            .filter(|(node, _)| !self.nodes.contains_key(*node))
            .flat_map(|(_, pods)| pods.iter().copied())
            .filter(|pod| {
                pod.spec
                    .as_ref()
                    .and_then(|spec| spec.node_name.as_deref())
                    .is_none_or(str::is_empty)
            })
            .collect();
        for pod in stranded {
            self.delete_pod(pod);
        }
    }

    /// Kubernetes' `podsShouldBeOnNode`; `pods` are oldest first.
    fn on_node(&mut self, node: &'a str, placement: Placement, pods: &[&'a Pod]) {
        if placement.should_run && pods.is_empty() {
            self.create_nodes.push(node);
            return;
        }
        if !placement.should_continue_running {
            for pod in pods.iter().filter(|pod| pod.metadata.deletion_timestamp.is_none()) {
                self.delete_pod(pod);
            }
            return;
        }
        let mut running: Vec<&'a Pod> = Vec::new();
        for pod in pods.iter().copied().filter(|pod| pod.metadata.deletion_timestamp.is_none()) {
            match phase(pod) {
                "Failed" => self.delete_failed(node, pod),
                "Succeeded" => {
                    let message = format!(
                        "Found succeeded daemon pod {}/{} on node {node}, will try to delete it",
                        self.namespace,
                        pod_name(pod)
                    );
                    self.event(EventType::Normal, reason::SUCCEEDED_DAEMON_POD, message);
                    self.delete_pod(pod);
                }
                _ => running.push(pod),
            }
        }
        if !self.surge {
            // Terminating, failed or succeeded pods leave the node empty until they are gone.
            for pod in running.iter().skip(1) {
                self.delete_pod(pod);
            }
            return;
        }
        if running.len() <= 1 {
            if running.is_empty() && placement.should_run {
                self.create_nodes.push(node);
            }
            return;
        }
        // Surging: keep the oldest new pod, and the oldest old one only while it is ready and the
        // new one is not yet available.
        let (mut oldest_new, mut oldest_old): (Option<&'a Pod>, Option<&'a Pod>) = (None, None);
        for pod in running {
            let slot = if hash_label(pod) == Some(self.hash.as_str()) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod);
            } else {
                self.delete_pod(pod);
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
            if !is_ready(old) || is_available(new, self.min_ready, self.now) {
                self.delete_pod(old);
            }
        }
    }

    /// Deletes a failed pod unless the node is in backoff, in which case the plan rechecks when
    /// the backoff ends.
    fn delete_failed(&mut self, node: &str, pod: &'a Pod) {
        let generation = self.ds.status.as_ref().and_then(|status| status.observed_generation);
        let key = FailedPodBackoff::key(&self.owner.uid, generation.unwrap_or(0), node);
        if let Some(wait) = self.backoff.remaining(&key, self.now) {
            self.recheck_in(wait);
            return;
        }
        self.backoff.next(&key, self.now);
        let message = format!(
            "Found failed daemon pod {}/{} on node {node}, will try to kill it",
            self.namespace,
            pod_name(pod)
        );
        self.event(EventType::Warning, reason::FAILED_DAEMON_POD, message);
        self.delete_pod(pod);
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.out.events.push(PlanEvent { type_, reason, message });
    }

    /// Kubernetes' `rollingUpdate`, run only when `manage` left nothing to do.
    pub(super) fn rolling_update(&mut self, rolling: Rolling<'_>) {
        let desired = self.nodes.values().filter(|placement| placement.should_run).count();
        let desired_count = crate::objects::count(desired);
        // Budgets were validated when the plan started; a failure here cannot happen.
        let mut max_unavailable =
            scaled(rolling.max_unavailable, desired_count, "maxUnavailable").unwrap_or(0);
        let max_surge = scaled(rolling.max_surge, desired_count, "maxSurge").unwrap_or(0);
        if desired > 0 && max_unavailable == 0 && max_surge == 0 {
            max_unavailable = 1;
        }
        let mut nodes = self.by_node.clone();
        for (node, placement) in &self.nodes {
            if placement.should_run {
                nodes.entry(node).or_default();
            }
        }
        let nodes: Vec<(&'a str, Vec<&'a Pod>)> = nodes.into_iter().collect();
        if max_surge == 0 {
            self.replace_in_place(&nodes, to_usize(max_unavailable));
        } else {
            self.replace_with_surge(&nodes, to_usize(max_surge), desired);
        }
    }

    /// Deletes old pods so that at most `max_unavailable` desired nodes lack an available pod.
    fn replace_in_place(&mut self, nodes: &[(&'a str, Vec<&'a Pod>)], max_unavailable: usize) {
        let mut unavailable = 0;
        let mut replacements: Vec<&'a Pod> = Vec::new();
        let mut candidates: Vec<&'a Pod> = Vec::new();
        for (_, pods) in nodes {
            match self.new_and_old(pods) {
                // Excess pods or a pending replacement: `manage` handles the node; it is down.
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    unavailable += usize::from(!is_available(new, self.min_ready, self.now));
                }
                Some((None, Some(old))) => {
                    if !is_available(old, self.min_ready, self.now) {
                        replacements.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = max_unavailable.saturating_sub(unavailable).min(candidates.len());
        for pod in replacements.into_iter().chain(candidates.into_iter().take(room)) {
            self.delete_pod(pod);
        }
    }

    /// Creates new pods beside old ones on at most `max_surge` nodes at a time and deletes old
    /// pods whose new pod is available.
    fn replace_with_surge(
        &mut self,
        nodes: &[(&'a str, Vec<&'a Pod>)],
        max_surge: usize,
        desired: usize,
    ) {
        let mut old_to_delete: Vec<&'a Pod> = Vec::new();
        let mut off_node_old: Vec<&'a Pod> = Vec::new();
        let mut allowed: Vec<&'a str> = Vec::new();
        let mut candidates: Vec<&'a str> = Vec::new();
        let (mut surging, mut available) = (0, 0);
        for (node, pods) in nodes {
            let Some((new, old)) = self.new_and_old(pods) else {
                surging += 1;
                continue;
            };
            if let Some(counted) = old.or(new) {
                available += usize::from(is_available(counted, self.min_ready, self.now));
            }
            let should_run = self.nodes.get(node).is_some_and(|placement| placement.should_run);
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !is_available(old, self.min_ready, self.now) => {
                    if should_run {
                        allowed.push(node);
                    } else {
                        old_to_delete.push(old);
                    }
                }
                (None, Some(old)) => {
                    if !should_run {
                        off_node_old.push(old);
                    } else if surging < max_surge {
                        candidates.push(node);
                    }
                }
                (Some(new), Some(old)) => {
                    if is_available(new, self.min_ready, self.now) {
                        old_to_delete.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        // Pods on nodes that no longer qualify go only while more pods are available than
        // desired, so moving the DaemonSet never leaves it without available pods.
        let deletable = available.saturating_sub(desired).min(off_node_old.len());
        old_to_delete.extend(off_node_old.into_iter().take(deletable));
        for pod in old_to_delete {
            self.delete_pod(pod);
        }
        let room = max_surge.saturating_sub(surging).min(candidates.len());
        self.create_nodes.extend(allowed.into_iter().chain(candidates.into_iter().take(room)));
    }

    /// The new and the old pod on a node, ignoring terminating ones; `None` when there are two
    /// of either (Kubernetes' `findUpdatedPodsOnNode`).
    fn new_and_old(&self, pods: &[&'a Pod]) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
        let (mut new, mut old) = (None, None);
        for pod in pods.iter().copied().filter(|pod| pod.metadata.deletion_timestamp.is_none()) {
            let slot =
                if is_updated(pod, &self.hash, self.generation) { &mut new } else { &mut old };
            if slot.replace(pod).is_some() {
                return None;
            }
        }
        Some((new, old))
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn to_usize(value: i32) -> usize {
    usize::try_from(value).unwrap_or(0)
}
