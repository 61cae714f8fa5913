//! Chooses the set's current and update ControllerRevisions (Kubernetes'
//! `getStatefulSetRevisions`) and which old revisions to delete (`truncateHistory`).
//!
//! The update revision is the revision whose data equals the set's template. When that is the
//! newest revision it is used as is; when it is an older one (a rollback) it is renumbered to
//! become the newest; when there is none, a new revision is created, its name made unique by
//! raising the collision count. The current revision is the one named by
//! `status.currentRevision`, or the update revision when there is none.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::{PlanError, RevisionRenumber, SetView};
use crate::history;

/// How many higher collision counts are tried before giving up on a free revision name.
const MAX_COLLISIONS: i32 = 1000;

/// The revisions one plan works with.
#[derive(Debug)]
pub(super) struct Revisions {
    pub(super) current: ControllerRevision,
    pub(super) update: ControllerRevision,
    pub(super) collision_count: i32,
    pub(super) create: Option<ControllerRevision>,
    pub(super) renumber: Option<RevisionRenumber>,
    /// The given revisions, oldest first (Kubernetes' `SortControllerRevisions`).
    sorted: Vec<ControllerRevision>,
}

impl Revisions {
    /// Chooses the current and update revisions among `revisions` for the set's template.
    pub(super) fn choose(
        set: &SetView<'_>,
        revisions: &[ControllerRevision],
    ) -> Result<Self, PlanError> {
        let mut sorted = revisions.to_vec();
        sorted.sort_by(|a, b| {
            a.revision
                .cmp(&b.revision)
                .then_with(|| {
                    let created = |r: &ControllerRevision| {
                        r.metadata.creation_timestamp.as_ref().map(|time| time.0)
                    };
                    created(a).cmp(&created(b))
                })
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let status = set.status;
        let mut collision_count = status.and_then(|status| status.collision_count).unwrap_or(0);
        let data = history::revision_data(set.template);
        let next = history::next_number(&sorted);

        // The newest equal revision, searched one by one so ties resolve as Kubernetes does.
        let equal = sorted
            .iter()
            .rev()
            .find(|revision| history::find_equal(std::slice::from_ref(*revision), &data).is_some());
        let newest = sorted.last().and_then(|revision| revision.metadata.name.as_deref());
        let (update, create, renumber) = match equal {
            Some(revision) if revision.metadata.name.as_deref() == newest => {
                (revision.clone(), None, None)
            }
            Some(revision) => {
                let mut renumbered = revision.clone();
                renumbered.revision = next;
                let renumber = RevisionRenumber {
                    name: revision.metadata.name.clone().unwrap_or_default(),
                    resource_version: revision.metadata.resource_version.clone(),
                    revision: next,
                };
                (renumbered, None, Some(renumber))
            }
            None => {
                let created = new_unique(set, &sorted, next, &mut collision_count)?;
                (created.clone(), Some(created), None)
            }
        };

        let current_name = status.and_then(|status| status.current_revision.as_deref());
        let current = sorted
            .iter()
            .find(|revision| {
                current_name.is_some() && revision.metadata.name.as_deref() == current_name
            })
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok(Self { current, update, collision_count, create, renumber, sorted })
    }

    pub(super) fn current_name(&self) -> &str {
        self.current.metadata.name.as_deref().unwrap_or_default()
    }

    pub(super) fn update_name(&self) -> &str {
        self.update.metadata.name.as_deref().unwrap_or_default()
    }

    /// Returns the names of old revisions to delete so at most `limit` revisions remain that
    /// are neither current, update, nor the revision of a pod in `pod_revisions`.
    pub(super) fn to_truncate<'p>(
        &self,
        limit: i32,
        pod_revisions: impl Iterator<Item = &'p str>,
    ) -> Vec<String> {
        let Ok(limit) = usize::try_from(limit) else { return Vec::new() };
        let mut live: BTreeSet<String> = pod_revisions.map(str::to_owned).collect();
        live.insert(self.current_name().to_owned());
        live.insert(self.update_name().to_owned());
        history::to_truncate(&self.sorted, &live, limit)
    }
}

/// Builds a new revision for the set's template whose name no given revision has, raising the
/// collision count past every name taken by a revision with other data.
fn new_unique(
    set: &SetView<'_>,
    sorted: &[ControllerRevision],
    number: i64,
    collision_count: &mut i32,
) -> Result<ControllerRevision, PlanError> {
    let labels =
        set.template.metadata.as_ref().and_then(|meta| meta.labels.clone()).unwrap_or_default();
    for _ in 0..MAX_COLLISIONS {
        let mut revision = history::new_revision(
            &set.owner,
            set.namespace.unwrap_or_default(),
            set.name,
            &labels,
            set.template,
            number,
            Some(*collision_count),
        );
        let taken = sorted.iter().any(|other| other.metadata.name == revision.metadata.name);
        if !taken {
            // Kubernetes copies the set's annotations onto each new revision.
            if let Some(annotations) = set.annotations.filter(|annotations| !annotations.is_empty())
            {
                revision
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            return Ok(revision);
        }
        *collision_count = collision_count.saturating_add(1);
    }
    Err(PlanError::RevisionNamesExhausted { collision_count: *collision_count })
}

/// Returns the pod template a revision records (its data is `{"spec":{"template":…}}` with a
/// `$patch: replace` directive, which replacing the whole template makes moot).
pub(super) fn template_of(revision: &ControllerRevision) -> Result<PodTemplateSpec, PlanError> {
    history::template_of(revision).map_err(|err| PlanError::InvalidRevision {
        name: revision.metadata.name.clone().unwrap_or_default(),
        reason: err.to_string(),
    })
}
