//! The ControllerRevisions `kubectl rollout history/undo daemonset` read.

use super::*;

/// The DaemonSet running `image`.
fn ds_with(image: &str) -> DaemonSet {
    let mut set = ds();
    template_spec(&mut set).containers[0].image = Some(image.into());
    set
}

/// The revision of the template running `image`, numbered `number`.
fn revision_with(image: &str, number: i64) -> ControllerRevision {
    revision_of(&ds_with(image), number)
}

fn revision_names(revisions: &[ControllerRevision]) -> Vec<String> {
    revisions.iter().map(|revision| revision.metadata.name.clone().unwrap()).collect()
}

#[test]
fn the_first_plan_records_the_template_before_any_pod() {
    let mut set = ds();
    set.metadata.annotations = Some(labels(&[("kubernetes.io/change-cause", "install agent")]));
    let plan = plan_at(&set, &nodes(&["n1"]), &[], &[], now());
    let revision = plan.create_revision.clone().unwrap();
    let hash = hash_of(&set);
    assert_eq!(plan.hash, hash);
    assert_eq!(revision.metadata.name, Some(format!("agent-{hash}")));
    assert_eq!(revision.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(revision.revision, 1);
    assert_eq!(
        revision.metadata.labels,
        Some(labels(&[("app", "agent"), (CONTROLLER_REVISION_HASH_LABEL, &hash)]))
    );
    assert_eq!(revision.metadata.owner_references, Some(vec![controller_ref()]));
    assert_eq!(
        revision.metadata.annotations, set.metadata.annotations,
        "change-cause shows in history"
    );
    assert_eq!(
        revision.data.unwrap().0,
        history::revision_data(&set.spec.as_ref().unwrap().template)
    );
    let pod_labels = plan.create_pods[0].metadata.labels.clone().unwrap();
    assert_eq!(pod_labels.get(CONTROLLER_REVISION_HASH_LABEL), Some(&hash));
}

#[test]
fn an_undo_reuses_the_old_revision_with_the_next_number() {
    let first = revision_with("agent:1", 1);
    let second = revision_with("agent:2", 2);
    // `kubectl rollout undo` patches the template back from the first revision's data.
    let mut set = ds_with("agent:2");
    spec_mut(&mut set).template = history::template_of(&first).unwrap();
    set.metadata.generation = Some(3);
    let second_hash = hash_of(&ds_with("agent:2"));
    let pods = [pod_on("agent-a", "n1", &second_hash), pod_on("agent-b", "n2", &second_hash)];

    let plan = plan_at(&set, &nodes(&["n1", "n2"]), &pods, &[first.clone(), second], now());
    assert_eq!(plan.create_revision, None);
    assert_eq!(plan.hash, hash_of(&ds_with("agent:1")));
    let mut renumbered = first;
    renumbered.revision = 3;
    assert_eq!(plan.update_revisions, vec![renumbered]);
    assert_eq!(names(&plan.delete_pods), ["agent-a"], "the rollback rolls like an update");
    assert!(plan.delete_revisions.is_empty());
}

#[test]
fn a_current_revision_already_newest_is_left_alone() {
    let set = ds_with("agent:2");
    let revisions = [revision_with("agent:1", 1), revision_with("agent:2", 2)];
    let plan = plan_at(&set, &nodes(&["n1"]), &[], &revisions, now());
    assert!(plan.create_revision.is_none() && plan.update_revisions.is_empty());
}

#[test]
fn history_beyond_the_limit_goes_oldest_first_unless_a_pod_uses_it() {
    let mut set = ds_with("agent:6");
    spec_mut(&mut set).revision_history_limit = Some(2);
    let revisions: Vec<ControllerRevision> =
        (1..=6).map(|n| revision_with(&format!("agent:{n}"), n)).collect();
    // A pod on n2 still runs agent:2 (OnDelete-style straggler).
    let pods = [
        pod_on("agent-a", "n1", &hash_of(&set)),
        pod_on("agent-b", "n2", &hash_of(&ds_with("agent:2"))),
    ];
    on_delete(&mut set);
    let plan = plan_at(&set, &nodes(&["n1", "n2"]), &pods, &revisions, now());
    let doomed =
        revision_names(&[revisions[0].clone(), revisions[2].clone(), revisions[3].clone()]);
    assert_eq!(names(&plan.delete_revisions), doomed);
    assert_eq!(plan.delete_revisions[0].uid.as_deref(), Some("rev-uid-1"));
}

#[test]
fn duplicate_current_revisions_collapse_into_the_newest() {
    let set = ds();
    let mut duplicate = revision_of(&set, 2);
    duplicate.metadata.name = Some("agent-dup".into());
    duplicate.metadata.labels =
        Some(labels(&[("app", "agent"), (CONTROLLER_REVISION_HASH_LABEL, "dup")]));
    let kept = revision_of(&set, 4);
    let pods = [pod_on("agent-a", "n1", "dup"), pod_on("agent-b", "n2", &hash_of(&set))];
    let plan = plan_at(&set, &nodes(&["n1", "n2"]), &pods, &[duplicate, kept], now());
    assert_eq!(names(&plan.delete_revisions), ["agent-dup"]);
    assert_eq!(names(&plan.relabel_pods), ["agent-a"]);
    assert_eq!(plan.hash, hash_of(&set));
    assert!(plan.create_revision.is_none() && plan.update_revisions.is_empty());
}

#[test]
fn a_name_collision_bumps_the_collision_count() {
    let set = ds();
    // A revision holding another template already has the name agent-<hash>.
    let mut squatter = revision_with("agent:other", 1);
    squatter.metadata.name = Some(format!("agent-{}", hash_of(&set)));
    let plan = plan_at(&set, &nodes(&["n1"]), &[], &[squatter], now());
    let data = history::revision_data(&set.spec.as_ref().unwrap().template);
    let bumped = history::hash(&data, Some(1));
    let created = plan.create_revision.unwrap();
    assert_eq!(created.metadata.name, Some(format!("agent-{bumped}")));
    assert_eq!(created.revision, 2);
    assert_eq!(plan.hash, bumped);
    assert_eq!(plan.status.unwrap().collision_count, Some(1));
    let pod_labels = plan.create_pods[0].metadata.labels.clone().unwrap();
    assert_eq!(pod_labels.get(CONTROLLER_REVISION_HASH_LABEL), Some(&bumped));
}

#[test]
fn revisions_without_a_hash_label_are_labelled_with_their_name() {
    let set = ds_with("agent:2");
    let mut unlabelled = revision_with("agent:1", 1);
    unlabelled.metadata.labels = Some(labels(&[("app", "agent")]));
    let plan = plan_at(
        &set,
        &nodes(&["n1"]),
        &[],
        &[unlabelled.clone(), revision_with("agent:2", 2)],
        now(),
    );
    let name = unlabelled.metadata.name.clone().unwrap();
    assert_eq!(plan.update_revisions.len(), 1);
    let fixed = plan.update_revisions[0].metadata.labels.clone().unwrap();
    assert_eq!(fixed.get(CONTROLLER_REVISION_HASH_LABEL), Some(&name));
}

#[test]
fn orphan_revisions_are_adopted_and_reused() {
    let set = ds();
    let mut orphan = revision_of(&set, 1);
    orphan.metadata.owner_references = None;
    let mut foreign = revision_with("agent:other", 5);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
    let plan = plan_at(&set, &nodes(&["n1"]), &[], &[orphan.clone(), foreign], now());
    assert_eq!(names(&plan.adopt_revisions), [orphan.metadata.name.clone().unwrap().as_str()]);
    assert!(plan.create_revision.is_none(), "the adopted revision is the current one");
    assert!(
        plan.update_revisions.is_empty(),
        "the foreign revision is not counted: no renumbering"
    );
    assert_eq!(plan.hash, hash_of(&set));
}
