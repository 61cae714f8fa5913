//! Table tests for the DaemonSet planner, plus a small in-memory cluster that applies plans the
//! way the caller would, to check invariants over a whole rollout.

#![allow(clippy::unwrap_used)]

mod counts;
mod history_keeping;
mod node_pods;
mod placing;
mod updates;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::history;

const NAMESPACE: &str = "kube-system";
const UID: &str = "ds-uid";

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> Time {
    Time(now() - SignedDuration::from_secs(seconds))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("kubernetes.io/hostname", name)])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    }
}

fn nodes(names: &[&str]) -> Vec<Node> {
    names.iter().map(|name| node(name)).collect()
}

fn tainted(mut node: Node, key: &str, effect: &str) -> Node {
    let taint = Taint { key: key.into(), effect: effect.into(), value: None, time_added: None };
    node.spec.get_or_insert_with(NodeSpec::default).taints.get_or_insert_with(Vec::new).push(taint);
    node
}

fn labelled(mut node: Node, key: &str, value: &str) -> Node {
    node.metadata.labels.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
    node
}

/// The DaemonSet "agent" in kube-system selecting app=agent, generation 1, default strategy
/// (RollingUpdate, maxUnavailable 1).
fn ds() -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(UID.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "agent")])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "agent")])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some("agent:1".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

fn spec_mut(ds: &mut DaemonSet) -> &mut DaemonSetSpec {
    ds.spec.as_mut().unwrap()
}

fn template_spec(ds: &mut DaemonSet) -> &mut PodSpec {
    spec_mut(ds).template.spec.as_mut().unwrap()
}

/// Changes the image, as `kubectl set image` does (the API server bumps the generation).
fn set_image(ds: &mut DaemonSet, image: &str) {
    template_spec(ds).containers[0].image = Some(image.into());
    ds.metadata.generation = Some(ds.metadata.generation.unwrap_or(0) + 1);
}

fn rolling(ds: &mut DaemonSet, max_unavailable: IntOrString, max_surge: Option<IntOrString>) {
    spec_mut(ds).update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(max_unavailable),
            max_surge,
        }),
    });
}

fn on_delete(ds: &mut DaemonSet) {
    spec_mut(ds).update_strategy =
        Some(DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
}

fn hash_of(ds: &DaemonSet) -> String {
    history::hash(&history::revision_data(&ds.spec.as_ref().unwrap().template), None)
}

/// The revision `ds`'s current template would get, numbered `number`, as stored by the API.
fn revision_of(ds: &DaemonSet, number: i64) -> ControllerRevision {
    let mut revision = history::new_revision(
        &owner_reference(ds).unwrap(),
        NAMESPACE,
        "agent",
        &labels(&[("app", "agent")]),
        &ds.spec.as_ref().unwrap().template,
        number,
        None,
    );
    revision.metadata.uid = Some(format!("rev-uid-{number}"));
    revision.metadata.creation_timestamp = Some(ago(100_000 - number));
    revision
}

fn controller_ref() -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: "agent".into(),
        uid: UID.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn ready_condition(status: &str, since: Time) -> PodCondition {
    PodCondition {
        type_: "Ready".into(),
        status: status.into(),
        last_transition_time: Some(since),
        ..PodCondition::default()
    }
}

/// An owned daemon pod bound to `node` with `hash`, running and ready for an hour, created two
/// hours ago.
fn pod_on(name: &str, node: &str, hash: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "agent"), (CONTROLLER_REVISION_HASH_LABEL, hash)])),
            owner_references: Some(vec![controller_ref()]),
            creation_timestamp: Some(ago(7200)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![ready_condition("True", ago(3600))]),
            ..PodStatus::default()
        }),
    }
}

fn with(mut pod: Pod, change: impl FnOnce(&mut Pod)) -> Pod {
    change(&mut pod);
    pod
}

fn not_ready(pod: &mut Pod) {
    pod.status.as_mut().unwrap().conditions = Some(vec![ready_condition("False", ago(10))]);
}

fn phase(phase: &'static str) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| pod.status.as_mut().unwrap().phase = Some(phase.into())
}

fn created_ago(seconds: i64) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| pod.metadata.creation_timestamp = Some(ago(seconds))
}

fn plan_at(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    revisions: &[ControllerRevision],
    at: Timestamp,
) -> Plan {
    plan(ds, nodes, pods, revisions, &FailedPodBackoff::new(), at).unwrap()
}

/// Plans for `ds` whose current revision already exists.
fn steady(ds: &DaemonSet, nodes: &[Node], pods: &[Pod]) -> Plan {
    plan_at(ds, nodes, pods, &[revision_of(ds, 1)], now())
}

fn names(refs: &[ObjectRef]) -> Vec<&str> {
    refs.iter().map(|object| object.name.as_str()).collect()
}

/// The nodes the plan's new pods are pinned to, in order.
fn pinned(plan: &Plan) -> Vec<String> {
    plan.create_pods
        .iter()
        .map(|pod| placement::target_node(pod).unwrap_or_default().to_owned())
        .collect()
}

/// A namespace applying plans as the caller would: revisions written, pods created (the scheduler
/// binds them at once, ready on the next tick), deleted pods gone at once, status stored.
struct Cluster {
    ds: DaemonSet,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    revisions: Vec<ControllerRevision>,
    backoff: FailedPodBackoff,
    clock: Timestamp,
    serial: usize,
}

impl Cluster {
    fn new(ds: DaemonSet, nodes: Vec<Node>) -> Cluster {
        Cluster {
            ds,
            nodes,
            pods: Vec::new(),
            revisions: Vec::new(),
            backoff: FailedPodBackoff::new(),
            clock: now(),
            serial: 0,
        }
    }

    fn step(&mut self) -> Plan {
        let plan =
            plan(&self.ds, &self.nodes, &self.pods, &self.revisions, &self.backoff, self.clock)
                .unwrap();
        if let Some(revision) = &plan.create_revision {
            let mut revision = revision.clone();
            revision.metadata.uid = Some(format!("rev-{}", self.serial));
            revision.metadata.creation_timestamp = Some(Time(self.clock));
            self.serial += 1;
            self.revisions.push(revision);
        }
        for updated in &plan.update_revisions {
            for revision in &mut self.revisions {
                if revision.metadata.name == updated.metadata.name {
                    *revision = updated.clone();
                }
            }
        }
        self.revisions.retain(|revision| {
            !plan
                .delete_revisions
                .iter()
                .any(|gone| Some(&gone.name) == revision.metadata.name.as_ref())
        });
        self.pods.retain(|pod| {
            !plan.delete_pods.iter().any(|gone| Some(&gone.name) == pod.metadata.name.as_ref())
        });
        for template in &plan.create_pods {
            let mut pod = template.clone();
            let name = format!("{}{}", pod.metadata.generate_name.clone().unwrap(), self.serial);
            self.serial += 1;
            let node = placement::target_node(&pod).unwrap().to_owned();
            pod.metadata.name = Some(name.clone());
            pod.metadata.uid = Some(format!("uid-{name}"));
            pod.metadata.creation_timestamp = Some(Time(self.clock));
            pod.spec.as_mut().unwrap().node_name = Some(node);
            pod.status = Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![ready_condition("False", Time(self.clock))]),
                ..PodStatus::default()
            });
            self.pods.push(pod);
        }
        if let Some(status) = &plan.status {
            self.ds.status = Some(status.clone());
        }
        self.backoff = plan.backoff.clone();
        plan
    }

    /// Lets `seconds` pass; every pod becomes ready.
    fn tick(&mut self, seconds: i64) {
        let before = Time(self.clock);
        self.clock += SignedDuration::from_secs(seconds);
        for pod in &mut self.pods {
            let status = pod.status.as_mut().unwrap();
            if status.phase.as_deref() == Some("Running") {
                let ready = status.conditions.iter().flatten().any(|c| c.status == "True");
                if !ready {
                    status.conditions = Some(vec![ready_condition("True", before.clone())]);
                }
            }
        }
    }

    /// Desired nodes with an available (ready) pod.
    fn available_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|node| {
                self.pods.iter().any(|pod| {
                    pod.spec.as_ref().unwrap().node_name == node.metadata.name
                        && status::is_available(pod, SignedDuration::ZERO, self.clock)
                })
            })
            .count()
    }

    fn pods_with_hash(&self, hash: &str) -> usize {
        self.pods.iter().filter(|pod| status::hash_label(pod) == Some(hash)).count()
    }
}
