#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSetOrdinals,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PersistentVolumeClaimSpec, PodCondition, PodSpec, PodStatus,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use super::*;
use crate::history;

mod world;

use world::World;

const UID: &str = "sts-uid";

/// Something that happens to the world between two plans.
type Change = Box<dyn Fn(&mut World)>;

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> Time {
    Time(now() - SignedDuration::from_secs(seconds))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

/// A StatefulSet "web" (service "nginx") of `replicas` nginx:1.27 pods selecting app=web.
fn set(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some("nginx".into()),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..LabelSelector::default()
            },
            template: template("nginx:1.27"),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: None,
                }),
            }),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "nginx".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn with(mut set: StatefulSet, change: impl FnOnce(&mut StatefulSetSpec)) -> StatefulSet {
    change(set.spec.as_mut().unwrap());
    set
}

fn parallel(spec: &mut StatefulSetSpec) {
    spec.pod_management_policy = Some("Parallel".into());
}

fn data_claims(spec: &mut StatefulSetSpec) {
    spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(labels(&[("tier", "db")])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }]);
}

fn retention(
    when_deleted: &'static str,
    when_scaled: &'static str,
) -> impl FnOnce(&mut StatefulSetSpec) {
    move |spec: &mut StatefulSetSpec| {
        spec.persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when_deleted.into()),
                when_scaled: Some(when_scaled.into()),
            });
    }
}

fn created_names(plan: &Plan) -> Vec<String> {
    plan.create_pods.iter().map(|pod| pod.metadata.name.clone().unwrap()).collect()
}

fn deleted_names(plan: &Plan) -> Vec<String> {
    plan.delete_pods.iter().map(|pod| pod.name.clone()).collect()
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn ordered_ready_scale_up_creates_one_pod_at_a_time() {
    let mut world = World::new(set(3));
    // Each row: what happens to the pods before planning, the pods the plan creates.
    let steps: Vec<(&str, Change, &[&str])> = vec![
        ("empty set", Box::new(|_| {}), &["web-0"]),
        ("web-0 pending", Box::new(|_| {}), &[]),
        ("web-0 running, not ready", Box::new(|w| w.running("web-0")), &[]),
        ("web-0 ready", Box::new(|w| w.ready("web-0")), &["web-1"]),
        ("web-1 running, not ready", Box::new(|w| w.running("web-1")), &[]),
        ("web-1 ready", Box::new(|w| w.ready("web-1")), &["web-2"]),
        ("web-2 ready", Box::new(|w| w.ready("web-2")), &[]),
    ];
    for (step, change, expected) in steps {
        change(&mut world);
        let plan = world.step();
        assert_eq!(created_names(&plan), names(expected), "{step}");
        assert!(plan.delete_pods.is_empty(), "{step}");
    }
    let status = world.set.status.clone().unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (3, Some(3)));
}

#[test]
fn ordered_ready_waits_for_min_ready_seconds() {
    let mut world = World::new(with(set(2), |spec| spec.min_ready_seconds = Some(10)));
    world.step();
    world.ready_since("web-0", 4);
    let plan = world.step();
    assert!(plan.create_pods.is_empty(), "web-0 is ready but not yet available");
    assert_eq!(plan.recheck_after, Some(SignedDuration::from_secs(7)));
    assert_eq!(plan.status.as_ref().unwrap().available_replicas, Some(0));

    world.ready_since("web-0", 11);
    assert_eq!(created_names(&world.step()), names(&["web-1"]));
}

#[test]
fn ordered_ready_waits_for_a_terminating_pod() {
    let mut world = World::with_ready_pods(set(3), 2);
    world.terminating("web-1");
    let plan = world.step();
    assert!(plan.create_pods.is_empty() && plan.delete_pods.is_empty());

    world.delete("web-1");
    assert_eq!(created_names(&world.step()), names(&["web-1"]), "recreated under its name");
}

#[test]
fn scale_down_removes_the_highest_ordinal_first() {
    let mut world = World::with_ready_pods(set(4), 4);
    world.set.spec.as_mut().unwrap().replicas = Some(1);
    for expected in ["web-3", "web-2", "web-1"] {
        let plan = world.step();
        assert_eq!(deleted_names(&plan), names(&[expected]));
        assert_eq!(plan.delete_pods[0].uid.as_deref(), Some(format!("uid-{expected}").as_str()));
    }
    assert!(world.step().delete_pods.is_empty());
    assert_eq!(world.pod_names(), names(&["web-0"]));
}

#[test]
fn scale_down_waits_while_a_pod_is_terminating_or_unhealthy() {
    let cases: Vec<(&str, Change, &[&str])> = vec![
        ("all healthy", Box::new(|_| {}), &["web-2"]),
        ("condemned pod terminating", Box::new(|w| w.terminating("web-2")), &[]),
        ("remaining pod not ready", Box::new(|w| w.running("web-0")), &[]),
        ("condemned pod itself unhealthy", Box::new(|w| w.running("web-2")), &["web-2"]),
    ];
    for (case, change, expected) in cases {
        let mut world = World::with_ready_pods(set(1), 3);
        world.set.spec.as_mut().unwrap().replicas = Some(2);
        change(&mut world);
        assert_eq!(deleted_names(&world.step()), names(expected), "{case}");
    }
}

#[test]
fn parallel_creates_and_deletes_all_at_once() {
    let mut world = World::new(with(set(3), parallel));
    let plan = world.step();
    assert_eq!(created_names(&plan), names(&["web-0", "web-1", "web-2"]));

    world.set.spec.as_mut().unwrap().replicas = Some(0);
    let plan = world.step();
    assert_eq!(deleted_names(&plan), names(&["web-2", "web-1", "web-0"]));
}

#[test]
fn claims_are_created_before_pods_and_mounted() {
    let mut two = with(set(2), data_claims);
    two.spec.as_mut().unwrap().template.spec.as_mut().unwrap().volumes = Some(vec![
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]);
    let mut world = World::new(two);
    let plan = world.step();

    let claim = &plan.create_claims[0];
    assert_eq!(plan.create_claims.len(), 1);
    assert_eq!(claim.metadata.name.as_deref(), Some("data-web-0"));
    assert_eq!(claim.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(claim.metadata.labels, Some(labels(&[("app", "web"), ("tier", "db")])));
    assert_eq!(claim.metadata.owner_references, None, "Retain keeps claims unowned");
    assert_eq!(claim.spec.as_ref().unwrap().access_modes, Some(vec!["ReadWriteOnce".into()]));

    let volumes = plan.create_pods[0].spec.as_ref().unwrap().volumes.clone().unwrap();
    let volume_names: Vec<&str> = volumes.iter().map(|volume| volume.name.as_str()).collect();
    assert_eq!(volume_names, ["data", "cache"], "the claim replaces the template's volume");
    let source = volumes[0].persistent_volume_claim.as_ref().unwrap();
    assert_eq!(source.claim_name, "data-web-0");

    world.ready("web-0");
    let plan = world.step();
    assert_eq!(plan.create_claims[0].metadata.name.as_deref(), Some("data-web-1"));

    // A claim that survived an earlier scale-down is reused, not recreated.
    let mut world = World::new(with(set(1), data_claims));
    world.add_claim("data-web-0", vec![]);
    let plan = world.step();
    assert!(plan.create_claims.is_empty());
    assert_eq!(created_names(&plan), names(&["web-0"]));
}

#[test]
fn retention_policy_sets_claim_owners() {
    // whenDeleted: Delete makes the set the claim's controller from creation on.
    let mut world = World::new(with(with(set(1), data_claims), retention("Delete", "Retain")));
    let plan = world.step();
    let owners = plan.create_claims[0].metadata.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!((owners[0].kind.as_str(), owners[0].uid.as_str()), ("StatefulSet", UID));
    assert_eq!(owners[0].controller, Some(true));

    // whenScaled: Delete hands a scaled-down pod's claim to the pod before deleting the pod.
    let mut world =
        World::with_ready_pods(with(with(set(2), data_claims), retention("Retain", "Delete")), 2);
    world.set.spec.as_mut().unwrap().replicas = Some(1);
    let plan = world.step();
    assert_eq!(deleted_names(&plan), names(&["web-1"]));
    assert_eq!(plan.patch_claims.len(), 1);
    let patch = &plan.patch_claims[0];
    assert_eq!(patch.name, "data-web-1");
    assert_eq!(patch.resource_version.as_deref(), Some("rv-data-web-1"));
    let owner = &patch.owner_references[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Pod", "web-1"));
    assert_eq!(owner.uid, "uid-web-1");

    // Switching the policy to Delete/Delete adds the set to the remaining pod's claim.
    world.set = with(world.set.clone(), retention("Delete", "Delete"));
    let plan = world.step();
    assert_eq!(plan.patch_claims.len(), 1);
    assert_eq!(plan.patch_claims[0].name, "data-web-0");
    assert_eq!(plan.patch_claims[0].owner_references[0].kind, "StatefulSet");
}

#[test]
fn claims_block_pod_creation_while_being_deleted() {
    let cases: Vec<(&str, Change)> = vec![
        (
            "claim still owned by an earlier web-1",
            Box::new(|w| {
                w.add_claim("data-web-1", vec![world::pod_owner("web-1", "old-uid")]);
            }),
        ),
        (
            "claim being deleted",
            Box::new(|w| {
                w.add_claim("data-web-1", vec![]);
                w.claims.last_mut().unwrap().metadata.deletion_timestamp = Some(ago(1));
            }),
        ),
    ];
    for (case, change) in cases {
        let mut world = World::with_ready_pods(
            with(with(set(2), data_claims), retention("Retain", "Delete")),
            1,
        );
        change(&mut world);
        let plan = world.step();
        assert!(plan.create_pods.is_empty(), "{case}");
        assert_eq!(plan.recheck_after, Some(CLAIM_RETRY), "{case}");
    }
}

#[test]
fn rolling_update_with_partition_updates_from_the_highest_ordinal_down() {
    let mut world = World::with_ready_pods(set(4), 4);
    let old_revision = world.set.status.as_ref().unwrap().update_revision.clone().unwrap();
    world.set = with(world.set.clone(), |spec| {
        spec.template = template("nginx:1.28");
        spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(2);
    });

    // Each step: the plan deletes one outdated pod; the next recreates it at the new revision.
    let plan = world.step();
    let new_revision = plan.create_revision.clone().unwrap().metadata.name.unwrap();
    assert_eq!(deleted_names(&plan), names(&["web-3"]));
    let plan = world.step();
    assert_eq!(created_names(&plan), names(&["web-3"]));
    assert_eq!(label(&plan.create_pods[0], REVISION_LABEL), Some(new_revision.as_str()));
    assert_eq!(
        plan.create_pods[0].spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("nginx:1.28")
    );
    assert!(world.step().delete_pods.is_empty(), "waits for web-3 to be ready");
    world.ready("web-3");
    assert_eq!(deleted_names(&world.step()), names(&["web-2"]));
    world.step();
    world.ready("web-2");
    let plan = world.step();
    assert!(plan.delete_pods.is_empty(), "ordinals below the partition stay");

    let status = world.set.status.clone().unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(old_revision.as_str()));
    assert_eq!(status.update_revision.as_deref(), Some(new_revision.as_str()));
    assert_eq!((status.current_replicas, status.updated_replicas), (Some(2), Some(2)));
    assert_eq!(world.revision_of("web-1"), old_revision);
}

#[test]
fn rolling_update_completes_and_current_revision_catches_up() {
    let mut world = World::with_ready_pods(set(2), 2);
    world.set.spec.as_mut().unwrap().template = template("nginx:1.28");
    world.set.metadata.generation = Some(2);
    let plan = world.step();
    assert_eq!(deleted_names(&plan), names(&["web-1"]));
    assert_eq!(plan.status.as_ref().unwrap().current_replicas, Some(1), "deleted pod uncounted");
    world.step();
    world.ready("web-1");
    assert_eq!(deleted_names(&world.step()), names(&["web-0"]));
    world.step();
    world.ready("web-0");
    let plan = world.step();
    let status = plan.status.unwrap();
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!((status.current_replicas, status.updated_replicas), (Some(2), Some(2)));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(world.step().status, None, "nothing left to write");
}

#[test]
fn on_delete_replaces_only_pods_the_user_deletes() {
    let mut world = World::with_ready_pods(set(3), 3);
    world.set = with(world.set.clone(), |spec| {
        spec.template = template("nginx:1.28");
        spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
    });
    let plan = world.step();
    assert!(plan.delete_pods.is_empty());
    let update = plan.status.unwrap().update_revision.unwrap();

    world.delete("web-1");
    let plan = world.step();
    assert_eq!(created_names(&plan), names(&["web-1"]));
    assert_eq!(label(&plan.create_pods[0], REVISION_LABEL), Some(update.as_str()));
}

#[test]
fn finished_pods_are_deleted_and_recreated() {
    for phase in ["Failed", "Succeeded"] {
        let mut world = World::with_ready_pods(set(3), 2);
        world.pod_mut("web-1").status.as_mut().unwrap().phase = Some(phase.into());
        let plan = world.step();
        assert_eq!(deleted_names(&plan), names(&["web-1"]), "{phase}");
        assert_eq!(plan.delete_pods[0].uid.as_deref(), Some("uid-web-1"));
        assert!(plan.create_pods.is_empty(), "{phase}: web-2 waits for web-1");
        assert_eq!(created_names(&world.step()), names(&["web-1"]), "{phase}");
    }
    // Parallel replaces the failed pod and creates the missing one in the same plan.
    let mut world = World::with_ready_pods(with(set(3), parallel), 2);
    world.pod_mut("web-0").status.as_mut().unwrap().phase = Some("Failed".into());
    let plan = world.step();
    assert_eq!(
        (deleted_names(&plan), created_names(&plan)),
        (names(&["web-0"]), names(&["web-2"]))
    );
}

#[test]
fn new_pods_carry_the_stable_identity() {
    let mut world = World::new(set(1));
    let plan = world.step();
    let pod = &plan.create_pods[0];
    let revision = plan.create_revision.as_ref().unwrap().metadata.name.clone().unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("web-0"));
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-0"), Some("nginx"))
    );
    assert_eq!(
        pod.metadata.labels,
        Some(labels(&[
            ("app", "web"),
            (POD_NAME_LABEL, "web-0"),
            (POD_INDEX_LABEL, "0"),
            (REVISION_LABEL, &revision),
        ]))
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("StatefulSet", "web", UID)
    );
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
}

#[test]
fn start_ordinal_shifts_names_and_condemns_pods_outside_the_range() {
    let mut world = World::new(with(set(2), |spec| {
        spec.ordinals = Some(StatefulSetOrdinals { start: Some(5) });
    }));
    assert_eq!(created_names(&world.step()), names(&["web-5"]));
    world.ready("web-5");
    let plan = world.step();
    assert_eq!(created_names(&plan), names(&["web-6"]));
    assert_eq!(label(&plan.create_pods[0], POD_INDEX_LABEL), Some("6"));

    let mut world = World::with_ready_pods(set(2), 2);
    world.set.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(1) });
    let plan = world.step();
    assert_eq!(created_names(&plan), names(&["web-2"]), "web-1 stays, web-2 is new");
    world.ready("web-2");
    assert_eq!(deleted_names(&world.step()), names(&["web-0"]));
}

#[test]
fn wrong_identity_labels_are_patched() {
    let mut world = World::with_ready_pods(set(2), 2);
    world.pod_mut("web-1").metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
    let plan = world.step();
    assert_eq!(
        plan.patch_pods,
        vec![PodPatch {
            name: "web-1".into(),
            resource_version: Some("rv-web-1".into()),
            labels: labels(&[(POD_NAME_LABEL, "web-1"), (POD_INDEX_LABEL, "1")]),
        }]
    );
    assert!(world.step().patch_pods.is_empty());
}

#[test]
fn orphans_are_adopted_and_mismatches_released() {
    let mut world = World::with_ready_pods(set(1), 2);
    world.pod_mut("web-0").metadata.owner_references = None;
    world.pod_mut("web-1").metadata.labels.as_mut().unwrap().insert("app".into(), "db".into());
    let mut other = world.pod("web-0").clone();
    other.metadata.name = Some("api-0".into());
    other.metadata.owner_references = None;
    world.pods.push(other);

    let plan = world.step();
    let reference = |name: &str| PodRef { name: name.into(), uid: Some(format!("uid-{name}")) };
    assert_eq!(plan.adopt_pods, vec![reference("web-0")]);
    assert_eq!(plan.release_pods, vec![reference("web-1")]);
    assert_eq!(plan.status.unwrap().replicas, 1, "the released pod no longer counts");
    assert_eq!(owner_reference(&world.set).unwrap().uid, UID);
}

#[test]
fn status_counts_pods_by_readiness_and_revision() {
    let mut world = World::with_ready_pods(with(set(4), parallel), 4);
    let old = world.set.status.as_ref().unwrap().update_revision.clone().unwrap();
    world.set.spec.as_mut().unwrap().template = template("nginx:1.28");
    world.step();
    world.step();
    // web-3 now runs the new revision but is not ready; make web-0 terminating, web-1 pending.
    world.running("web-3");
    world.terminating("web-0");
    world.pod_mut("web-1").status.as_mut().unwrap().phase = Some("Pending".into());
    let plan = world.step();
    let status = plan.status.unwrap();
    let update = status.update_revision.clone().unwrap();
    assert_ne!(update, old);
    assert_eq!(status.replicas, 4);
    assert_eq!(status.ready_replicas, Some(2), "web-0 (terminating but ready) and web-2");
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.current_replicas, Some(2), "web-1, web-2; terminating web-0 is not");
    assert_eq!(status.updated_replicas, Some(1));
    assert_eq!(status.current_revision.as_deref(), Some(old.as_str()));
    assert_eq!(status.collision_count, Some(0));
    assert_eq!(status.observed_generation, Some(1));
}

#[test]
fn revisions_are_reused_rolled_back_and_made_unique() {
    // The template's revision exists and is the newest: nothing to create.
    let mut world = World::with_ready_pods(set(1), 1);
    let first = world.revisions[0].clone();
    assert_eq!(world.step().create_revision, None);

    // Changing the template creates revision 2; changing it back renumbers revision 1 as 3.
    world.set.spec.as_mut().unwrap().template = template("nginx:1.28");
    let plan = world.step();
    assert_eq!(plan.create_revision.as_ref().unwrap().revision, 2);
    world.set.spec.as_mut().unwrap().template = template("nginx:1.27");
    let plan = world.step();
    assert_eq!(plan.create_revision, None);
    let renumber = plan.renumber_revision.clone().unwrap();
    assert_eq!(
        (renumber.name.as_str(), renumber.revision),
        (first.metadata.name.as_deref().unwrap(), 3)
    );
    assert_eq!(plan.status.unwrap().update_revision, first.metadata.name);

    // A revision with other data holding the new name forces the next collision count.
    let mut world = World::new(set(1));
    let data = history::revision_data(&template("nginx:1.27"));
    let taken = history::revision_name("web", &history::hash(&data, Some(0)));
    let mut squatter = history::new_revision(
        &owner_reference(&world.set).unwrap(),
        "default",
        "web",
        &BTreeMap::new(),
        &template("busybox"),
        1,
        Some(0),
    );
    squatter.metadata.name = Some(taken.clone());
    world.revisions.push(squatter);
    let plan = world.step();
    let created = plan.create_revision.unwrap();
    assert_ne!(created.metadata.name.as_deref(), Some(taken.as_str()));
    assert_eq!(plan.status.unwrap().collision_count, Some(1));
}

#[test]
fn old_revisions_beyond_the_history_limit_are_deleted() {
    let mut world =
        World::with_ready_pods(with(set(1), |spec| spec.revision_history_limit = Some(2)), 1);
    for (number, image) in ["a", "b", "c", "d"].iter().enumerate() {
        let mut revision = history::new_revision(
            &owner_reference(&world.set).unwrap(),
            "default",
            "web",
            &BTreeMap::new(),
            &template(image),
            -(4 - i64::try_from(number).unwrap()),
            Some(0),
        );
        revision.metadata.name = Some(format!("web-old-{image}"));
        world.revisions.push(revision);
    }
    let plan = world.step();
    assert_eq!(plan.delete_revisions, names(&["web-old-a", "web-old-b"]));
}

#[test]
fn a_set_being_deleted_only_gets_its_status() {
    let mut world = World::with_ready_pods(set(3), 2);
    world.set.spec.as_mut().unwrap().replicas = Some(1);
    world.set.metadata.deletion_timestamp = Some(ago(1));
    world.set.metadata.generation = Some(2);
    let plan = world.step();
    assert!(plan.create_pods.is_empty() && plan.delete_pods.is_empty());
    assert_eq!(plan.status.unwrap().observed_generation, Some(2));
}

#[test]
fn invalid_sets_are_rejected() {
    let cases: Vec<(&str, StatefulSet, PlanError)> = vec![
        (
            "empty selector",
            with(set(1), |spec| spec.selector = LabelSelector::default()),
            PlanError::InvalidSelector { reason: "empty selector would match every pod".into() },
        ),
        (
            "no uid",
            {
                let mut set = set(1);
                set.metadata.uid = None;
                set
            },
            PlanError::MissingField { field: "metadata.uid" },
        ),
    ];
    for (case, set, expected) in cases {
        assert_eq!(plan(&set, &[], &[], &[], now()), Err(expected), "{case}");
    }
}

#[test]
fn pod_names_parse_to_ordinals() {
    let cases = [
        ("web-0", Some(0)),
        ("web-12", Some(12)),
        ("web-01", None),
        ("web-", None),
        ("web-1-0", None),
        ("webx-1", None),
        ("web-99999999999", None),
    ];
    for (name, expected) in cases {
        assert_eq!(pods::ordinal_of("web", name), expected, "{name}");
    }
    assert!(is_member("web", "web-01") && !is_member("web", "web-1-a"));
}

#[test]
fn ready_condition_and_phase_decide_health() {
    let pod = |phase: &str, ready: &str| Pod {
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    assert!(pods::is_healthy(&pod("Running", "True")));
    assert!(!pods::is_healthy(&pod("Running", "False")));
    assert!(!pods::is_healthy(&pod("Pending", "True")));
}
