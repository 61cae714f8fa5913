//! Keeps the right number of pods running for an unfinished Job (upstream's `manageJob`):
//! deletes extra, duplicated or suspended pods, creates missing ones after the pod failure
//! backoff, and builds the pods to create.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::JobStatus;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::indexes::Intervals;
use super::pods::{delete_first, PodView};
use super::{
    earliest, Counts, Finishing, Plan, Sync, COMPLETION_INDEX_ANNOTATION, COMPLETION_INDEX_ENV,
    INDEX_FAILURE_COUNT_ANNOTATION, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION, MAX_POD_CREATE_DELETE,
    MAX_POD_FAILURE_BACKOFF, POD_FAILURE_BACKOFF, TRACKING_FINALIZER,
};
use crate::objects::count;

/// Longest `generateName` the API server keeps whole (63 minus 5 random characters).
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// For each index awaiting a replacement under `backoffLimitPerIndex`, its last failed pod.
pub(super) type Delayed<'p, 'a> = BTreeMap<usize, &'p PodView<'a>>;

impl<'a> Sync<'a> {
    /// Adds pod deletions or creations to `out` and updates the counters accordingly.
    pub(super) fn manage(
        &self,
        active: &[&PodView<'a>],
        delayed: &Delayed<'_, 'a>,
        counts: &mut Counts,
        out: &mut Plan,
    ) {
        let delete = |pods: Vec<&PodView<'a>>, counts: &mut Counts, out: &mut Plan| {
            for pod in pods {
                self.delete_pod(pod, true, out);
                counts.active -= 1;
                counts.terminating += 1;
                counts.ready -= i32::from(pod.ready);
            }
        };
        if self.spec.suspend == Some(true) {
            delete(self.removal_candidates(active, active.len()), counts, out);
            return;
        }
        let parallelism = self.spec.parallelism.unwrap_or(1);
        let want = match self.completions {
            // Work queue: once any pod succeeded, let the rest finish without replacing them.
            None if counts.succeeded > 0 => counts.active,
            None => parallelism,
            Some(completions) => (completions - counts.succeeded).min(parallelism).max(0),
        };
        let remove_at_least = usize::try_from(counts.active - want).unwrap_or(0);
        let mut removals = self.removal_candidates(active, remove_at_least);
        removals.truncate(MAX_POD_CREATE_DELETE);
        if !removals.is_empty() {
            // Deleting and creating never happen in the same plan; deleting goes first.
            delete(removals, counts, out);
            return;
        }
        let waiting = if self.only_replace_failed { counts.terminating } else { 0 };
        let missing = usize::try_from(want - waiting - counts.active).unwrap_or(0);
        if missing == 0 {
            return;
        }
        if self.per_index.is_none() {
            let remaining = self.backoff_remaining();
            if remaining.is_positive() {
                earliest(&mut out.recheck_after, remaining.max(SignedDuration::from_secs(1)));
                return;
            }
        }
        let missing = missing.min(MAX_POD_CREATE_DELETE);
        let creations: Vec<(Option<usize>, Option<&PodView<'a>>)> = if self.indexed {
            let mut indexes = self.pending_indexes(active, counts, missing);
            if self.per_index.is_some() {
                let (ready, waits): (Vec<usize>, Vec<usize>) = indexes.iter().partition(|index| {
                    !self.index_backoff(delayed.get(*index).copied()).is_positive()
                });
                if ready.is_empty() {
                    let wait = waits
                        .iter()
                        .map(|index| self.index_backoff(delayed.get(index).copied()))
                        .min();
                    if let Some(wait) = wait {
                        earliest(&mut out.recheck_after, wait.max(SignedDuration::from_secs(1)));
                    }
                    return;
                }
                indexes = ready;
            }
            indexes.into_iter().map(|index| (Some(index), delayed.get(&index).copied())).collect()
        } else {
            vec![(None, None); missing]
        };
        counts.active += count(creations.len());
        for (index, replaced) in creations {
            out.create.push(self.pod_to_create(index, replaced));
        }
    }

    /// Active pods to delete, most deletable first (upstream's `activePodsForRemoval`): for
    /// Indexed Jobs every pod without a valid index and all but the best of each duplicated
    /// index, then more until `at_least` are chosen.
    fn removal_candidates<'p>(
        &self,
        active: &[&'p PodView<'a>],
        at_least: usize,
    ) -> Vec<&'p PodView<'a>> {
        let mut remove: Vec<&'p PodView<'a>> = Vec::new();
        let mut left: Vec<&'p PodView<'a>> = Vec::new();
        if self.indexed {
            let mut by_index: BTreeMap<Option<usize>, Vec<&'p PodView<'a>>> = BTreeMap::new();
            for pod in active {
                by_index.entry(pod.index).or_default().push(pod);
            }
            for (index, mut pods) in by_index {
                if index.is_none_or(|index| index >= self.completions_usize()) {
                    remove.extend(pods);
                    continue;
                }
                pods.sort_by(|a, b| delete_first(a, b));
                if let Some(keep) = pods.pop() {
                    left.push(keep);
                }
                remove.extend(pods);
            }
        } else {
            left.extend_from_slice(active);
        }
        if remove.len() < at_least {
            left.sort_by(|a, b| delete_first(a, b));
            let more = at_least - remove.len();
            remove.extend(left.into_iter().take(more));
        }
        remove
    }

    /// The lowest indexes not succeeded, failed, running (or, when only failed pods are
    /// replaced, terminating): upstream's `firstPendingIndexes`.
    fn pending_indexes(
        &self,
        active: &[&PodView<'a>],
        counts: &Counts,
        wanted: usize,
    ) -> Vec<usize> {
        let mut taken =
            counts.succeeded_indexes.with_indexes(active.iter().filter_map(|pod| pod.index));
        if self.only_replace_failed {
            taken = taken.with_indexes(
                self.pods.iter().filter(|pod| pod.terminating()).filter_map(|p| p.index),
            );
        }
        if let Some(failed) = &counts.failed_indexes {
            taken = taken.merge(failed);
        }
        taken.first_missing(wanted, self.completions_usize())
    }

    /// Time left before failed pods may be replaced: 10 s doubling per failure since the last
    /// success, capped at 10 min, counted from the last failure.
    ///
    /// Upstream keeps the failure count in memory, fed by newly failed pods; this derives it
    /// from the visible pods instead: Failed pods (and deleted pods not yet counted) that
    /// finished after the last succeeded pod.
    fn backoff_remaining(&self) -> SignedDuration {
        let last_success = self
            .pods
            .iter()
            .filter(|pod| pod.phase == super::Phase::Succeeded)
            .map(PodView::finished_at)
            .max();
        let failures: Vec<Timestamp> = self
            .pods
            .iter()
            .filter(|pod| self.is_failed(pod) && (!pod.deleted || pod.has_finalizer))
            .map(PodView::finished_at)
            .filter(|finished| last_success.is_none_or(|success| *finished > success))
            .collect();
        match failures.iter().max() {
            Some(last) => self.remaining_backoff(failures.len(), *last),
            None => SignedDuration::ZERO,
        }
    }

    /// The backoff left for an index whose last failed pod is `last_failed`.
    fn index_backoff(&self, last_failed: Option<&PodView<'_>>) -> SignedDuration {
        let Some(pod) = last_failed else { return SignedDuration::ZERO };
        let failures = pod.index_failures().saturating_add(pod.index_ignored_failures());
        let failures = usize::try_from(failures).unwrap_or(0) + 1;
        self.remaining_backoff(failures, pod.finished_at())
    }

    fn remaining_backoff(&self, failures: usize, last_failure: Timestamp) -> SignedDuration {
        if failures == 0 {
            return SignedDuration::ZERO;
        }
        let mut backoff = POD_FAILURE_BACKOFF;
        for _ in 1..failures {
            backoff = backoff.saturating_mul(2);
            if backoff >= MAX_POD_FAILURE_BACKOFF {
                backoff = MAX_POD_FAILURE_BACKOFF;
                break;
            }
        }
        let elapsed = last_failure.duration_until(self.now);
        if backoff < elapsed {
            SignedDuration::ZERO
        } else {
            backoff - elapsed
        }
    }

    /// Returns the pod to create (upstream's `GetPodFromTemplate` plus the tracking finalizer and,
    /// for Indexed Jobs, the index annotation, label, hostname and environment variable).
    fn pod_to_create(&self, index: Option<usize>, replaced: Option<&PodView<'_>>) -> Pod {
        let template = &self.spec.template;
        let meta = template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels;
        let mut annotations = meta.annotations;
        let mut finalizers = meta.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|finalizer| finalizer == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.to_owned());
        }
        let mut spec = template.spec.clone().unwrap_or_default();
        let mut generate_name = format!("{}-", self.name);
        if let Some(index) = index {
            let containers =
                spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut());
            containers.for_each(add_index_env);
            let annotations = annotations.get_or_insert_with(Default::default);
            annotations.insert(COMPLETION_INDEX_ANNOTATION.to_owned(), index.to_string());
            labels
                .get_or_insert_with(Default::default)
                .insert(COMPLETION_INDEX_ANNOTATION.to_owned(), index.to_string());
            spec.hostname = Some(format!("{}-{index}", self.name));
            generate_name = generate_name_with_index(self.name, index);
            if self.per_index.is_some() {
                let failures = replaced.map_or(0, |pod| pod.index_failures().saturating_add(1));
                annotations.insert(INDEX_FAILURE_COUNT_ANNOTATION.to_owned(), failures.to_string());
                let ignored = replaced.map_or(0, PodView::index_ignored_failures);
                if ignored > 0 {
                    annotations.insert(
                        INDEX_IGNORED_FAILURE_COUNT_ANNOTATION.to_owned(),
                        ignored.to_string(),
                    );
                }
            }
        }
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(generate_name),
                namespace: self.job.metadata.namespace.clone(),
                labels,
                annotations,
                finalizers: Some(finalizers),
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Indexes that failed for good under `backoffLimitPerIndex`: those stored plus those of
    /// tracked pods that failed with the index's failure count at the limit.
    pub(super) fn failed_indexes(&self, status: &JobStatus) -> Intervals {
        let limit = self.per_index.unwrap_or(i32::MAX);
        let stored = status.failed_indexes.as_deref().unwrap_or_default();
        Intervals::parse(stored, self.completions_usize()).with_indexes(
            self.pods
                .iter()
                .filter(|pod| {
                    pod.has_finalizer && self.is_failed(pod) && pod.index_failures() >= limit
                })
                .filter_map(|pod| self.valid_index(pod)),
        )
    }

    /// Failing because of failed indexes: too many, or every index has an outcome.
    pub(super) fn index_failure(
        &self,
        failed: &Intervals,
        succeeded: &Intervals,
    ) -> Option<Finishing> {
        let max = self.spec.max_failed_indexes.and_then(|max| usize::try_from(max).ok());
        if max.is_some_and(|max| failed.total() > max) {
            return Some(Finishing::failed(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            ));
        }
        if failed.total() > 0 && failed.total() + succeeded.total() >= self.completions_usize() {
            return Some(Finishing::failed("FailedIndexes", "Job has failed indexes"));
        }
        None
    }

    /// For each index with no outcome and no running pod, its last failed pod: kept (with its
    /// finalizer) until the replacement carrying its failure count exists.
    pub(super) fn delayed_deletions(
        &self,
        active: &[&PodView<'a>],
        succeeded: &Intervals,
        failed: &Intervals,
    ) -> Delayed<'_, 'a> {
        let running: BTreeSet<usize> = active.iter().filter_map(|pod| pod.index).collect();
        let mut delayed: Delayed<'_, 'a> = BTreeMap::new();
        for pod in self.pods.iter().filter(|pod| pod.has_finalizer && self.is_failed(pod)) {
            let Some(index) = self.valid_index(pod) else { continue };
            if succeeded.has(index) || failed.has(index) || running.contains(&index) {
                continue;
            }
            let absolute = |pod: &PodView<'_>| {
                pod.index_failures().saturating_add(pod.index_ignored_failures())
            };
            let replace = delayed.get(&index).is_none_or(|last| {
                absolute(last) <= absolute(pod) && pod.finished_at() >= last.finished_at()
            });
            if replace {
                delayed.insert(index, pod);
            }
        }
        delayed
    }
}

/// Adds `JOB_COMPLETION_INDEX`, read from the index label, unless the container sets it.
fn add_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|var| var.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"),
            }),
            ..EnvVarSource::default()
        }),
    });
}

/// `<job>-<index>-`, with the Job name cut so the whole stays within the generated name limit.
pub(super) fn generate_name_with_index(job: &str, index: usize) -> String {
    let suffix = format!("-{index}-");
    let mut prefix = format!("{job}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME_LENGTH {
        let keep = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
        let cut = (0..=keep).rev().find(|at| job.is_char_boundary(*at)).unwrap_or(0);
        prefix = format!("{}{suffix}", &job[..cut]);
    }
    prefix
}
