//! The node lifecycle controller: Kubernetes' node lifecycle controller and its `NoExecute`
//! taint manager, driven by what this master's gossip member knows of each node's agent rather
//! than by heartbeats the agents write to the API.
//!
//! Kubernetes learns that a node is alive from its kubelet renewing a Lease every 10 s, so an
//! idle cluster keeps writing to the store, and it notices a dead node only once its node
//! monitor grace period (40 s or more) has passed. Here the agents and masters form a gossip
//! (SWIM) membership instead: an agent that stops answering is declared down within seconds,
//! and nothing is written to the API while every node is well.
//!
//! A reconcile runs for each Node when it changes, when a pod bound to it changes, when its
//! agent's liveness changes, and when a recheck the plan asked for falls due (the startup grace
//! ends, a toleration runs out). It plans with [`plan::plan`] and then, in order:
//! 1. marks an unreachable node's conditions Unknown (status subresource);
//! 2. sets the node's condition taints from its Ready condition (`NoSchedule` for the
//!    scheduler, `NoExecute` with `timeAdded` for eviction);
//! 3. sets the Ready condition of the pods on an unreachable node to False, so Services stop
//!    sending them traffic;
//! 4. evicts the pods that do not tolerate the node's `NoExecute` taints, or whose
//!    `tolerationSeconds` ran out: the `DisruptionTarget` condition, then a graceful delete with
//!    the pod's uid as precondition, then a `TaintManagerEviction` event.
//!
//! Every write is conditional on the resourceVersion (or uid) it was planned from, so a plan made
//! from a stale cache fails instead of overwriting something newer, and is made again.
//!
//! Before planning, every reconcile surveys the zones of all nodes ([`zones`]): a master cut off
//! from the network sees every agent down, so when every zone is fully disrupted nothing is
//! evicted, and a zone in partial disruption evicts slowly or not at all. Step 4 is then limited
//! to what the node's zone allows; steps 1 to 3 are not. When a zone's state changes, its
//! nodes are reconciled again, so evictions held back resume as soon as it is allowed.
//!
//! Flotilla's API server admits every pod with Kubernetes' default tolerations of the
//! `not-ready` and `unreachable` `NoExecute` taints (the DefaultTolerationSeconds admission),
//! but for 3 s instead of 300 s: an agent restarting within a few seconds keeps its pods, and
//! a dead node's pods are replaced on other nodes within seconds of its death. A pod that
//! should ride out a longer outage brings its own toleration with a longer
//! `tolerationSeconds`.

mod eviction;
mod plan;
#[cfg(test)]
mod tests;
mod zones;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, conflict, delete_if_uid, not_found, soon, Context};
use crate::events::EventType;
use plan::{PodRef, Verdict};
use zones::{Pace, Transition, Zones};

/// What this master's gossip member knows of one node's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLiveness {
    /// Whether the membership holds the agent alive (false: declared down).
    pub alive: bool,
    /// Which start of the agent process this is (changes on every restart).
    pub generation: u64,
}

/// Node name → its agent's liveness.
pub type Liveness = std::collections::BTreeMap<String, AgentLiveness>;

/// The field manager and event source the controller writes as.
const MANAGER: &str = "node-lifecycle-controller";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the node lifecycle controller's memory lock was poisoned")]
    Poisoned,
}

/// What reconciles share: the membership's view, the caches, when this term began, what the
/// controller remembers between reconciles, and where to ask for nodes to be reconciled again.
pub struct State {
    liveness: watch::Receiver<Liveness>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    led_since: tokio::time::Instant,
    memory: Mutex<Memory>,
    requeue: mpsc::UnboundedSender<ObjectRef<Node>>,
}

/// What the controller remembers between reconciles.
#[derive(Default)]
struct Memory {
    /// When each pod (by uid) was first seen under its node's `NoExecute` taints.
    first_seen: HashMap<String, BTreeMap<String, Timestamp>>,
    /// The nodes last judged unreachable, to log when they come back.
    unreachable: BTreeSet<String>,
    /// The zones as last surveyed, to log and act on their changes.
    zones: Zones,
    /// When each zone evicting at a limited pace may evict again.
    next_eviction: BTreeMap<String, Timestamp>,
}

/// Runs the controller until `term` is cancelled. `pods` and `pod_changes` are the master's
/// shared pod watch, `nodes` its shared node cache.
pub async fn run(
    client: kube::Client,
    term: CancellationToken,
    liveness: watch::Receiver<Liveness>,
    pods: Store<Pod>,
    pod_changes: ReflectHandle<Pod>,
    nodes: Store<Node>,
) {
    let changes = liveness_changes(liveness.clone());
    let (requeue, requeued) = mpsc::unbounded();
    let triggers = move |c: Controller<Node>| {
        c.watches_shared_stream(pod_changes, |pod: Arc<Pod>| node_of(&pod).map(ObjectRef::new))
            .reconcile_on(changes)
            .reconcile_on(requeued)
    };
    let state = State {
        liveness,
        pods,
        nodes,
        led_since: tokio::time::Instant::now(),
        memory: Mutex::default(),
        requeue,
    };
    controller::run_with(client, term, MANAGER, reconcile, triggers, state).await;
}

/// The node a pod is bound to.
fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|name| !name.is_empty())
}

/// The nodes whose agent's liveness changed, each time the membership's view changes; the
/// stream ends when the membership is dropped.
fn liveness_changes(
    mut liveness: watch::Receiver<Liveness>,
) -> impl Stream<Item = ObjectRef<Node>> + Send + 'static {
    let seen = liveness.borrow_and_update().clone();
    futures::stream::unfold((liveness, seen), |(mut liveness, seen)| async move {
        liveness.changed().await.ok()?;
        let current = liveness.borrow_and_update().clone();
        let changed = plan::changed_nodes(&seen, &current);
        Some((changed, (liveness, current)))
    })
    .flat_map(|names| futures::stream::iter(names.into_iter().map(|name| ObjectRef::new(&name))))
}

async fn reconcile(
    node: Arc<Node>,
    context: Arc<Context<State>>,
) -> Result<Action, ReconcileError> {
    let state = &context.state;
    if state.pods.wait_until_ready().await.is_err() || state.nodes.wait_until_ready().await.is_err()
    {
        // The pod or node watch ended with the term.
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let liveness = state.liveness.borrow().get(&name).copied();
    let led_for =
        SignedDuration::try_from(state.led_since.elapsed()).unwrap_or(SignedDuration::MAX);
    let pods = state.pods.state_filter(|pod| node_of(pod) == Some(name.as_str()));
    let bound: Vec<&Pod> = pods.iter().map(|pod| &**pod).collect();
    let zone = zones::zone_of(&node).to_owned();
    let now = Timestamp::now();
    let all_nodes = state.nodes.state();
    let (plan, came_back, transitions, requeue) = {
        let mut memory = state.memory.lock().map_err(|_| ReconcileError::Poisoned)?;
        // Surveyed under the lock, so surveys replace one another in the order they were made.
        let surveyed = {
            let liveness = state.liveness.borrow();
            Zones::survey(all_nodes.iter().map(|node| &**node), &liveness, led_for)
        };
        let transitions = zones::transitions(&memory.zones, &surveyed);
        let requeue = zones::paces_changed(&memory.zones, &surveyed);
        let pace = surveyed.pace(&zone);
        memory.next_eviction.retain(|zone, _| surveyed.pace(zone) == Pace::Limited);
        memory.zones = surveyed;
        let allowance = zones::allowance(pace, memory.next_eviction.get(&zone).copied(), now);

        let first_seen = memory.first_seen.remove(&name).unwrap_or_default();
        let plan = plan::plan(&node, liveness, led_for, &bound, &first_seen, allowance, now);
        if pace == Pace::Limited && plan.evictions.iter().any(|e| e.by_condition_taint) {
            let next = now + zones::PARTIAL_DISRUPTION_EVICTION_INTERVAL;
            memory.next_eviction.insert(zone.clone(), next);
        }
        // Forget the nodes that are gone.
        let known =
            |other: &String| *other == name || state.nodes.get(&ObjectRef::new(other)).is_some();
        memory.first_seen.retain(|other, _| known(other));
        memory.unreachable.retain(known);
        if !plan.first_seen.is_empty() {
            memory.first_seen.insert(name.clone(), plan.first_seen.clone());
        }
        let came_back = match plan.verdict {
            Verdict::Reachable => memory.unreachable.remove(&name),
            Verdict::Unreachable => {
                memory.unreachable.insert(name.clone());
                false
            }
            Verdict::Unjudged => false,
        };
        (plan, came_back, transitions, requeue)
    };
    log_transitions(&transitions);
    if !requeue.is_empty() {
        // The zones' paces changed: their other nodes may evict now, or must stop.
        let others = all_nodes
            .iter()
            .filter(|other| requeue.contains(zones::zone_of(other)))
            .map(|other| other.name_any())
            .filter(|other| *other != name);
        for other in others {
            // The controller stops reading only when its term ends: nothing to requeue then.
            let _ = state.requeue.unbounded_send(ObjectRef::new(&other));
        }
    }
    if came_back {
        tracing::info!(node = %name, "node reachable again");
    }
    if plan.held > 0 {
        let pods = plan.held;
        tracing::debug!(node = %name, zone = %zone, pods, "evictions held back by the zone's state");
    }

    let nodes: Api<Node> = Api::all(context.client.clone());
    let mut resource_version = node.resource_version();
    if let Some(conditions) = &plan.conditions {
        let body = json!({
            "metadata": { "resourceVersion": resource_version },
            "status": { "conditions": conditions },
        });
        match nodes.patch_status(&name, &context.patch(), &Patch::Merge(&body)).await {
            Ok(written) => {
                resource_version = written.resource_version();
                let agent = if liveness.is_some() { "declared down" } else { "never joined" };
                tracing::info!(node = %name, agent, "marked the node unreachable");
                let message = format!("Node {name} status is now: NodeNotReady");
                context.recorder.record(&*node, EventType::Normal, "NodeNotReady", &message).await;
            }
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(taints) = &plan.taints {
        let body = json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { "taints": taints },
        });
        match nodes.patch(&name, &context.patch(), &Patch::Merge(&body)).await {
            Ok(_) => tracing::debug!(node = %name, "set the node's condition taints"),
            Err(err) if conflict(&err) || not_found(&err) => return Ok(soon()),
            Err(err) => return Err(err.into()),
        }
    }

    let mut retry = false;
    for write in &plan.not_ready {
        retry |= !write_pod_conditions(&context, &write.pod, &write.conditions).await?;
    }
    for eviction in &plan.evictions {
        let pod = &eviction.pod;
        if let Some(conditions) = &eviction.conditions {
            if !write_pod_conditions(&context, pod, conditions).await? {
                retry = true;
                continue;
            }
        }
        let api: Api<Pod> = Api::namespaced(context.client.clone(), &pod.namespace);
        if delete_if_uid(&api, &pod.name, pod.uid.clone(), None).await? {
            let key = format!("{}/{}", pod.namespace, pod.name);
            tracing::info!(pod = %key, node = %name, "evicted the pod from its tainted node");
            if let Some(evicted) = pods.iter().find(|p| p.metadata.uid == pod.uid) {
                let message = format!("Marking for deletion Pod {key}");
                let recorder = &context.recorder;
                recorder
                    .record(&**evicted, EventType::Normal, "TaintManagerEviction", &message)
                    .await;
            }
        }
    }
    if retry {
        return Ok(soon());
    }
    let recheck = plan.recheck_after.and_then(|after| Duration::try_from(after).ok());
    Ok(recheck.map_or_else(Action::await_change, Action::requeue))
}

/// Warns of zones changing state, as Kubernetes logs it.
fn log_transitions(transitions: &[Transition]) {
    for transition in transitions {
        match transition {
            Transition::EnteredMasterDisruption => tracing::warn!(
                "controller detected that all nodes are not-ready, entering master disruption mode"
            ),
            Transition::ExitedMasterDisruption => tracing::warn!(
                "controller detected that some nodes are ready, exiting master disruption mode"
            ),
            Transition::Zone { zone, was, state } => tracing::warn!(
                zone = %zone,
                was = %was.map_or_else(|| "unseen".to_owned(), |was| was.to_string()),
                state = %state,
                "controller detected that zone is now in new state"
            ),
        }
    }
}

/// Writes a pod's status conditions, conditional on the resourceVersion they were planned from.
/// Returns false when the pod changed or vanished meanwhile.
async fn write_pod_conditions(
    context: &Context<State>,
    pod: &PodRef,
    conditions: &[PodCondition],
) -> Result<bool, kube::Error> {
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &pod.namespace);
    let body = json!({
        "metadata": { "resourceVersion": pod.resource_version },
        "status": { "conditions": conditions },
    });
    match api.patch_status(&pod.name, &context.patch(), &Patch::Merge(&body)).await {
        Ok(_) => Ok(true),
        Err(err) if conflict(&err) || not_found(&err) => Ok(false),
        Err(err) => Err(err),
    }
}
