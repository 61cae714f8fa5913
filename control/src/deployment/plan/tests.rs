use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;

const UID: &str = "deploy-uid";

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: labels(&[("app", "web")]), ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

/// A Deployment "web" of `replicas` pods running `image`, rolling 25%/25% unless `strategy` says.
fn deployment(replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..LabelSelector::default()
            },
            template: template(image),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn with_strategy(mut d: Deployment, strategy: DeploymentStrategy) -> Deployment {
    if let Some(spec) = d.spec.as_mut() {
        spec.strategy = Some(strategy);
    }
    d
}

fn recreate(d: Deployment) -> Deployment {
    with_strategy(d, DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None })
}

fn rolling(d: Deployment, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    with_strategy(
        d,
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        },
    )
}

/// Changes the template to `image` and bumps the generation, as an apiserver update would.
fn change_image(d: &mut Deployment, image: &str) {
    let spec = d.spec.as_mut().unwrap();
    spec.template = template(image);
    d.metadata.generation = Some(d.metadata.generation.unwrap_or(0) + 1);
}

fn set_replicas(d: &mut Deployment, replicas: i32) {
    d.spec.as_mut().unwrap().replicas = Some(replicas);
    d.metadata.generation = Some(d.metadata.generation.unwrap_or(0) + 1);
}

/// A fake cluster: applies plans, and plays the ReplicaSet controller and kubelet.
struct Cluster {
    deployment: Deployment,
    sets: Vec<ReplicaSet>,
    created: i64,
}

impl Cluster {
    fn new(deployment: Deployment) -> Self {
        Cluster { deployment, sets: Vec::new(), created: 0 }
    }

    /// Plans and applies the plan; returns it.
    fn step(&mut self) -> DeploymentPlan {
        let plan = plan(&self.deployment, &self.sets, now()).unwrap();
        if let Some(mut set) = plan.create.clone() {
            self.created += 1;
            set.metadata.creation_timestamp =
                Some(Time(now() + SignedDuration::from_secs(self.created)));
            set.metadata.uid = Some(format!("rs-{}", self.created));
            self.sets.push(set);
        }
        for update in &plan.update {
            let existing = self.sets.iter_mut().find(|s| s.metadata.name == update.metadata.name);
            *existing.unwrap() = update.clone();
        }
        self.sets.retain(|s| !plan.delete.contains(s.metadata.name.as_ref().unwrap()));
        if let Some(status) = &plan.status {
            self.deployment.status = Some(status.clone());
        }
        plan
    }

    /// Pods follow spec: old pods go at once; new pods appear at once and become ready and
    /// available only when `ready` (one step later in a rollout).
    fn pods(&mut self, ready: bool) {
        for set in &mut self.sets {
            let spec = spec_replicas(set);
            let status = set.status.get_or_insert_with(ReplicaSetStatus::default);
            let available = status.available_replicas.unwrap_or(0).min(spec);
            let available = if ready { spec } else { available };
            status.replicas = spec;
            status.ready_replicas = Some(available);
            status.available_replicas = Some(available);
            status.observed_generation = set.metadata.generation;
        }
    }

    fn total_spec(&self) -> i32 {
        self.sets.iter().map(spec_replicas).sum()
    }

    fn available(&self) -> i32 {
        self.sets.iter().map(available_replicas).sum()
    }

    fn by_image(&self, image: &str) -> &ReplicaSet {
        let wanted = template(image);
        self.sets
            .iter()
            .find(|s| {
                equal_ignore_hash(s.spec.as_ref().unwrap().template.as_ref().unwrap(), &wanted)
            })
            .unwrap()
    }

    /// Runs pods/plan rounds until a plan changes nothing, checking `invariant` after each change.
    fn settle(&mut self, mut invariant: impl FnMut(&Cluster)) -> usize {
        for round in 0..50 {
            self.pods(false);
            invariant(self);
            self.pods(true);
            invariant(self);
            let plan = self.step();
            invariant(self);
            if plan.create.is_none() && plan.update.is_empty() && plan.status.is_none() {
                return round;
            }
        }
        panic!("did not settle");
    }
}

fn annotation_of<'s>(set: &'s ReplicaSet, key: &str) -> &'s str {
    annotation(set, key).map_or("", String::as_str)
}

fn progressing(status: &DeploymentStatus) -> (String, String) {
    let c = condition(status, PROGRESSING).unwrap();
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

fn available_condition(status: &DeploymentStatus) -> (String, String) {
    let c = condition(status, AVAILABLE).unwrap();
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

#[test]
fn first_rollout_creates_the_new_set_with_all_replicas() {
    let d = deployment(4, "v1");
    let plan = plan(&d, &[], now()).unwrap();
    let set = plan.create.unwrap();
    let hash = pod_template_hash(&template("v1"), None);
    assert_eq!(set.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(4));
    assert_eq!(spec.selector.match_labels, labels(&[("app", "web"), ("pod-template-hash", &hash)]));
    let template_labels = spec.template.as_ref().unwrap().metadata.as_ref().unwrap().labels.clone();
    assert_eq!(template_labels, labels(&[("app", "web"), ("pod-template-hash", &hash)]));
    assert_eq!(set.metadata.labels, template_labels);
    assert_eq!(annotation_of(&set, REVISION_ANNOTATION), "1");
    assert_eq!(annotation_of(&set, DESIRED_REPLICAS_ANNOTATION), "4");
    assert_eq!(annotation_of(&set, MAX_REPLICAS_ANNOTATION), "5");
    let owner = &set.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Deployment", UID, Some(true))
    );
    let status = plan.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(progressing(&status), ("True".into(), reason::NEW_REPLICA_SET_CREATED.into()));
    assert_eq!(available_condition(&status).1, reason::MINIMUM_REPLICAS_UNAVAILABLE);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
}

#[test]
fn pod_template_hash_is_stable_safe_and_salted_by_collisions() {
    let a = pod_template_hash(&template("v1"), None);
    assert_eq!(a, pod_template_hash(&template("v1"), None));
    assert_ne!(a, pod_template_hash(&template("v2"), None));
    assert_ne!(a, pod_template_hash(&template("v1"), Some(1)));
    assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
}

#[test]
fn first_rollout_settles_with_complete_status() {
    let mut cluster = Cluster::new(deployment(3, "v1"));
    cluster.settle(|_| {});
    let status = cluster.deployment.status.clone().unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(0))
    );
    assert_eq!(progressing(&status), ("True".into(), reason::NEW_REPLICA_SET_AVAILABLE.into()));
    assert_eq!(
        available_condition(&status),
        ("True".into(), reason::MINIMUM_REPLICAS_AVAILABLE.into())
    );
}

#[test]
fn rolling_update_stays_within_surge_and_unavailability() {
    // (replicas, maxSurge, maxUnavailable) and the bounds they resolve to.
    let cases = [
        (4, IntOrString::String("25%".into()), IntOrString::String("25%".into()), 5, 3),
        (10, IntOrString::String("25%".into()), IntOrString::String("25%".into()), 13, 8),
        (3, IntOrString::Int(0), IntOrString::Int(0), 3, 2),
        (5, IntOrString::Int(2), IntOrString::Int(0), 7, 5),
    ];
    for (replicas, surge, unavailable, max_total, min_available) in cases {
        let mut cluster = Cluster::new(rolling(deployment(replicas, "v1"), surge, unavailable));
        cluster.settle(|_| {});
        change_image(&mut cluster.deployment, "v2");
        let rounds = cluster.settle(|c| {
            assert!(c.total_spec() <= max_total, "replicas {replicas}: total {}", c.total_spec());
            assert!(
                c.available() >= min_available,
                "replicas {replicas}: available {}",
                c.available()
            );
        });
        assert!(rounds > 1, "replicas {replicas}: a rollout takes several steps");
        assert_eq!(spec_replicas(cluster.by_image("v2")), replicas);
        assert_eq!(spec_replicas(cluster.by_image("v1")), 0);
        assert_eq!(annotation_of(cluster.by_image("v2"), REVISION_ANNOTATION), "2");
        let status = cluster.deployment.status.clone().unwrap();
        assert_eq!(status.updated_replicas, Some(replicas));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(progressing(&status).1, reason::NEW_REPLICA_SET_AVAILABLE);
    }
}

#[test]
fn rolling_update_first_steps_of_four_replicas() {
    let mut cluster = Cluster::new(deployment(4, "v1"));
    cluster.settle(|_| {});
    change_image(&mut cluster.deployment, "v2");
    // --- the new set is created with the one surge replica
    let plan = cluster.step();
    // and, 4 old pods being available where 3 suffice, one old pod goes in the same step
    assert_eq!(plan.create.as_ref().map(spec_replicas), Some(1));
    let sizes: Vec<_> = plan
        .update
        .iter()
        .map(|s| (annotation_of(s, REVISION_ANNOTATION).to_owned(), spec_replicas(s)))
        .collect();
    assert_eq!(sizes, [("1".to_owned(), 3)]);
    assert_eq!(progressing(plan.status.as_ref().unwrap()).1, reason::NEW_REPLICA_SET_CREATED);
    // --- the surge room freed by the old pod goes to the new set
    cluster.pods(false);
    let plan = cluster.step();
    assert_eq!(plan.update.iter().map(spec_replicas).collect::<Vec<_>>(), [2]);
    // --- at 5 pods with 2 new ones unavailable, nothing may move
    cluster.pods(false);
    let plan = cluster.step();
    assert!(plan.create.is_none() && plan.update.is_empty());
    // --- once the new pods are available, two old pods go (5 available, 3 needed)
    cluster.pods(true);
    let plan = cluster.step();
    assert_eq!(
        plan.update.iter().map(|s| (revision(s), spec_replicas(s))).collect::<Vec<_>>(),
        [(1, 1)]
    );
    assert_eq!(progressing(plan.status.as_ref().unwrap()).1, reason::REPLICA_SET_UPDATED);
}

#[test]
fn a_scaled_down_set_counts_no_more_available_pods_than_its_spec() {
    // The ReplicaSet controller writes the status of the pods it saw before deleting the extra
    // ones, so right after a scale-down a set reports more available pods than it will keep.
    let mut cluster = Cluster::new(deployment(20, "v1"));
    cluster.settle(|_| {});
    change_image(&mut cluster.deployment, "v2");
    cluster.step();
    // The room the old pods left goes to the new set: 25 pods, the most maxSurge allows.
    cluster.step();
    assert_eq!(spec_replicas(cluster.by_image("v1")), 15);
    assert_eq!(available_replicas(cluster.by_image("v1")), 20, "status not yet caught up");
    assert_eq!(spec_replicas(cluster.by_image("v2")), 10);
    let new = cluster.sets.iter_mut().find(|s| revision(s) == 2).unwrap();
    new.status = Some(ReplicaSetStatus {
        replicas: 10,
        available_replicas: Some(3),
        ..ReplicaSetStatus::default()
    });
    // 15 old + 3 new available where 15 must stay: 3 old pods may go, not 8.
    let plan = cluster.step();
    assert_eq!(
        plan.update.iter().map(|s| (revision(s), spec_replicas(s))).collect::<Vec<_>>(),
        [(1, 12)]
    );
}

#[test]
fn recreate_scales_old_to_zero_waits_then_creates() {
    let mut cluster = Cluster::new(recreate(deployment(3, "v1")));
    cluster.settle(|_| {});
    change_image(&mut cluster.deployment, "v2");
    // --- old set goes to zero, nothing new yet
    let plan = cluster.step();
    assert!(plan.create.is_none());
    assert_eq!(plan.update.iter().map(spec_replicas).collect::<Vec<_>>(), [0]);
    // --- while old pods still run, wait
    let plan = cluster.step();
    assert!(plan.create.is_none() && plan.update.is_empty());
    // --- old pods gone: the new set is created with every replica
    cluster.pods(true);
    let plan = cluster.step();
    assert_eq!(plan.create.as_ref().map(spec_replicas), Some(3));
    assert_eq!(annotation_of(plan.create.as_ref().unwrap(), REVISION_ANNOTATION), "2");
    cluster.settle(|c| assert!(c.total_spec() <= 3));
    assert_eq!(
        progressing(cluster.deployment.status.as_ref().unwrap()).1,
        reason::NEW_REPLICA_SET_AVAILABLE
    );
}

#[test]
fn rollback_reuses_the_old_set_with_a_new_revision() {
    let mut cluster = Cluster::new(deployment(4, "v1"));
    cluster.settle(|_| {});
    change_image(&mut cluster.deployment, "v2");
    cluster.settle(|_| {});
    let old_name = cluster.by_image("v1").metadata.name.clone();
    // --- `kubectl rollout undo` copies the v1 template back
    change_image(&mut cluster.deployment, "v1");
    let plan = cluster.step();
    assert!(plan.create.is_none());
    let reused = plan.update.iter().find(|s| s.metadata.name == old_name).unwrap();
    assert_eq!(annotation_of(reused, REVISION_ANNOTATION), "3");
    assert_eq!(annotation_of(reused, REVISION_HISTORY_ANNOTATION), "1");
    assert_eq!(spec_replicas(reused), 1);
    cluster.settle(|c| assert!(c.available() >= 3));
    assert_eq!(cluster.sets.len(), 2);
    assert_eq!(spec_replicas(cluster.by_image("v1")), 4);
    assert_eq!(spec_replicas(cluster.by_image("v2")), 0);
}

#[test]
fn scaling_without_template_change_scales_the_new_set() {
    for (from, to) in [(4, 7), (4, 1), (3, 0)] {
        let mut cluster = Cluster::new(deployment(from, "v1"));
        cluster.settle(|_| {});
        set_replicas(&mut cluster.deployment, to);
        let plan = cluster.step();
        assert!(plan.create.is_none(), "{from}->{to}");
        assert_eq!(plan.update.len(), 1);
        assert_eq!(spec_replicas(&plan.update[0]), to);
        assert_eq!(annotation_of(&plan.update[0], DESIRED_REPLICAS_ANNOTATION), to.to_string());
        cluster.settle(|_| {});
        assert_eq!(cluster.sets.len(), 1);
        assert_eq!(cluster.deployment.status.as_ref().unwrap().replicas, Some(to));
    }
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut cluster = Cluster::new(deployment(4, "v1"));
    cluster.settle(|_| {});
    change_image(&mut cluster.deployment, "v2");
    cluster.step(); // new set created with 1 (old 4, new 1, max-replicas 5)
    set_replicas(&mut cluster.deployment, 8); // allowed 8 + 2 = 10: twice the sizes
    let plan = cluster.step();
    let mut sizes: Vec<_> = plan.update.iter().map(|s| (revision(s), spec_replicas(s))).collect();
    sizes.sort();
    assert_eq!(sizes, [(1, 8), (2, 2)]);
    assert!(plan.update.iter().all(|s| annotation_of(s, MAX_REPLICAS_ANNOTATION) == "10"));
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_first() {
    let mut d = deployment(2, "v0");
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let mut cluster = Cluster::new(d);
    cluster.settle(|_| {});
    for version in 1..=4 {
        change_image(&mut cluster.deployment, &format!("v{version}"));
        cluster.settle(|_| {});
    }
    let mut revisions: Vec<_> = cluster.sets.iter().map(revision).collect();
    revisions.sort();
    assert_eq!(revisions, [3, 4, 5]);
}

#[test]
fn paused_deployment_does_not_roll_out_but_scales() {
    let mut cluster = Cluster::new(deployment(4, "v1"));
    cluster.settle(|_| {});
    cluster.deployment.spec.as_mut().unwrap().paused = Some(true);
    change_image(&mut cluster.deployment, "v2");
    let plan = cluster.step();
    assert!(plan.create.is_none() && plan.update.is_empty());
    let status = plan.status.unwrap();
    assert_eq!(progressing(&status), ("Unknown".into(), reason::DEPLOYMENT_PAUSED.into()));
    assert_eq!(status.observed_generation, Some(2));
    set_replicas(&mut cluster.deployment, 6);
    let plan = cluster.step();
    assert!(plan.create.is_none());
    assert_eq!(plan.update.iter().map(spec_replicas).collect::<Vec<_>>(), [6]);
    // --- resuming rolls out
    cluster.deployment.spec.as_mut().unwrap().paused = Some(false);
    let plan = cluster.step();
    assert!(plan.create.is_some());
}

#[test]
fn deleted_deployment_only_gets_status() {
    let mut d = deployment(4, "v1");
    d.metadata.deletion_timestamp = Some(Time(now()));
    let plan = plan(&d, &[], now()).unwrap();
    assert!(plan.create.is_none() && plan.update.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.unwrap().replicas, Some(0));
}

#[test]
fn no_progress_past_the_deadline_is_reported() {
    let mut cluster = Cluster::new(deployment(2, "v1"));
    cluster.step();
    cluster.pods(false); // pods never become available
    let plan = cluster.step();
    assert_eq!(plan.recheck_after, Some(SignedDuration::from_secs(600)));
    let later = now() + SignedDuration::from_secs(601);
    let plan = super::plan(&cluster.deployment, &cluster.sets, later).unwrap();
    let status = plan.status.unwrap();
    assert_eq!(progressing(&status), ("False".into(), reason::PROGRESS_DEADLINE_EXCEEDED.into()));
    assert_eq!(
        available_condition(&status),
        ("False".into(), reason::MINIMUM_REPLICAS_UNAVAILABLE.into())
    );
    assert_eq!(status.unavailable_replicas, Some(2));
    assert_eq!(plan.recheck_after, None);
}

#[test]
fn found_new_set_is_reported_when_no_progress_condition_exists() {
    let mut cluster = Cluster::new(deployment(2, "v1"));
    cluster.settle(|_| {});
    cluster.deployment.status.as_mut().unwrap().conditions = None;
    let status = cluster.step().status.unwrap();
    // Found, then immediately complete in the same sync.
    assert_eq!(progressing(&status).1, reason::NEW_REPLICA_SET_AVAILABLE);
}

#[test]
fn hash_collision_with_an_owned_set_bumps_the_collision_count() {
    let d = deployment(1, "v1");
    let mut squatter = plan(&d, &[], now()).unwrap().create.unwrap();
    squatter.spec.as_mut().unwrap().template = Some(template("other"));
    let plan = plan(&d, &[squatter.clone()], now()).unwrap();
    let created = plan.create.unwrap();
    assert_ne!(created.metadata.name, squatter.metadata.name);
    assert_eq!(plan.status.unwrap().collision_count, Some(1));
}

#[test]
fn invalid_input_is_rejected() {
    let mut d = deployment(1, "v1");
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    assert_eq!(plan(&d, &[], now()), Err(PlanError::EmptySelector));
    let d = rolling(deployment(1, "v1"), IntOrString::String("lots".into()), IntOrString::Int(0));
    assert!(matches!(
        plan(&d, &[], now()),
        Err(PlanError::InvalidIntOrPercent { field: "maxSurge", .. })
    ));
}
