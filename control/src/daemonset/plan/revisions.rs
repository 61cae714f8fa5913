//! The DaemonSet's ControllerRevision history, as Kubernetes' `constructHistory`,
//! `dedupCurHistories`, `snapshot` and `cleanupHistory` keep it.
//!
//! Invariants:
//! - Exactly one claimed revision holds the current template after the plan: an equal one is
//!   reused (and renumbered to the newest when the template was rolled back to it), duplicates
//!   are deleted, or a new one is created.
//! - A revision's hash is its `controller-revision-hash` label; a revision without one is given
//!   its own name as label, as Kubernetes does, so hash collisions never matter for old ones.
//! - History beyond `revisionHistoryLimit` is deleted oldest first, counting every old revision
//!   but never deleting one whose hash a claimed pod (even a terminated one) still carries.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ControllerRevision;

use super::{
    status, ObjectRef, Work, CONTROLLER_REVISION_HASH_LABEL, DEFAULT_REVISION_HISTORY_LIMIT,
};
use crate::history;
use crate::objects::controller_of;
use crate::selector::Selector;

impl<'a> Work<'a> {
    /// Claims revisions, finds or creates the current one and sets the plan's hash.
    pub(super) fn construct_history(
        &mut self,
        revisions: &'a [ControllerRevision],
        selector: &Selector,
    ) {
        let mut claimed: Vec<ControllerRevision> = Vec::new();
        let mut adopted: BTreeSet<String> = BTreeSet::new();
        let mut relabelled: BTreeSet<String> = BTreeSet::new();
        for revision in revisions {
            if revision.metadata.namespace.as_deref().unwrap_or_default() != self.namespace {
                continue;
            }
            let name = revision.metadata.name.clone().unwrap_or_default();
            match controller_of(revision) {
                Some(reference) if reference.uid != self.owner.uid => continue,
                Some(_) => {}
                None if selector.matches(revision.metadata.labels.as_ref())
                    && revision.metadata.deletion_timestamp.is_none() =>
                {
                    self.out.adopt_revisions.push(revision_ref(revision));
                    adopted.insert(name.clone());
                }
                None => continue,
            }
            let mut revision = revision.clone();
            let labels = revision.metadata.labels.get_or_insert_with(BTreeMap::new);
            if !labels.contains_key(CONTROLLER_REVISION_HASH_LABEL) {
                labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), name.clone());
                relabelled.insert(name);
            }
            claimed.push(revision);
        }

        let data = history::revision_data(&self.spec.template);
        let (current, old): (Vec<ControllerRevision>, Vec<ControllerRevision>) =
            claimed.iter().cloned().partition(|revision| {
                revision.data.as_ref().is_some_and(|stored| history::data_equal(&stored.0, &data))
            });
        let next = history::next_number(&old);
        let mut updates: BTreeMap<String, ControllerRevision> = claimed
            .iter()
            .filter(|revision| relabelled.contains(&name_of(revision)))
            .map(|revision| (name_of(revision), revision.clone()))
            .collect();

        match history::find_equal(&current, &data) {
            Some(keep) => {
                for duplicate in
                    current.iter().filter(|revision| revision.metadata.name != keep.metadata.name)
                {
                    self.out.delete_revisions.push(revision_ref(duplicate));
                    self.duplicate_hashes.insert(hash_of(duplicate));
                    updates.remove(&name_of(duplicate));
                }
                if keep.revision < next {
                    let mut renumbered = keep.clone();
                    renumbered.revision = next;
                    updates.insert(name_of(keep), renumbered);
                }
                self.hash = hash_of(keep);
            }
            None => self.create_revision(revisions, next),
        }
        // An adopted revision is updated by the next plan, once the adoption has landed, so the
        // two writes never race on its resourceVersion.
        self.out.update_revisions = updates
            .into_values()
            .filter(|revision| !adopted.contains(&name_of(revision)))
            .collect();
        self.old_revisions = old;

        if !self.duplicate_hashes.is_empty() {
            let stale: Vec<ObjectRef> = self
                .claimed
                .iter()
                .filter(|pod| {
                    status::hash_label(pod).is_some_and(|hash| self.duplicate_hashes.contains(hash))
                })
                .map(|pod| super::object_ref(pod))
                .collect();
            self.out.relabel_pods = stale;
        }
    }

    /// Builds the revision for the current template, numbered `number`, choosing a collision
    /// count whose name no visible revision holds (Kubernetes bumps `collisionCount` on
    /// AlreadyExists instead).
    fn create_revision(&mut self, visible: &[ControllerRevision], number: i64) {
        let taken: BTreeSet<&str> =
            visible.iter().filter_map(|revision| revision.metadata.name.as_deref()).collect();
        let data = history::revision_data(&self.spec.template);
        let mut collisions = self.collision_count;
        // Each count gives another hash, so at most `taken.len()` counts can collide; the bound
        // only guards against a pathological hash (creation then fails and the caller bumps).
        for _ in 0..=taken.len() {
            let name = history::revision_name(&self.owner.name, &history::hash(&data, collisions));
            if !taken.contains(name.as_str()) {
                break;
            }
            collisions = Some(collisions.unwrap_or(0).saturating_add(1));
        }
        let labels = self
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|meta| meta.labels.clone())
            .unwrap_or_default();
        let mut revision = history::new_revision(
            &self.owner,
            &self.namespace,
            &self.owner.name,
            &labels,
            &self.spec.template,
            number,
            collisions,
        );
        // Kubernetes copies the DaemonSet's annotations; `kubectl rollout history` shows their
        // kubernetes.io/change-cause.
        revision.metadata.annotations = self.ds.metadata.annotations.clone();
        self.hash = hash_of(&revision);
        self.collision_count = collisions;
        self.out.create_revision = Some(revision);
    }

    /// Deletes the oldest old revisions beyond `revisionHistoryLimit` that no pod still uses.
    pub(super) fn cleanup_history(&mut self) {
        let limit = self.spec.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut excess = self.old_revisions.len().saturating_sub(limit);
        if excess == 0 {
            return;
        }
        let live: BTreeSet<&str> =
            self.claimed.iter().filter_map(|pod| status::hash_label(pod)).collect();
        let mut doomed = Vec::new();
        for revision in history::sorted(&self.old_revisions) {
            if excess == 0 {
                break;
            }
            if live.contains(hash_of(revision).as_str()) {
                continue;
            }
            doomed.push(revision_ref(revision));
            excess -= 1;
        }
        self.out.delete_revisions.extend(doomed);
    }
}

fn name_of(revision: &ControllerRevision) -> String {
    revision.metadata.name.clone().unwrap_or_default()
}

/// The revision's hash label (claimed revisions always have one), else its name.
fn hash_of(revision: &ControllerRevision) -> String {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(CONTROLLER_REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| name_of(revision))
}

fn revision_ref(revision: &ControllerRevision) -> ObjectRef {
    ObjectRef { name: name_of(revision), uid: revision.metadata.uid.clone() }
}
