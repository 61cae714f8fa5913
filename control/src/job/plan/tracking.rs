//! Counts finished pods through `status.uncountedTerminatedPods` and the tracking finalizer, and
//! declares the Job finished (upstream's `trackJobStatusAndRemoveFinalizers` and
//! `enactJobFinished`).
//!
//! Invariant: a uid moves from the uncounted lists into `succeeded`/`failed` only once its pod
//! has lost the tracking finalizer (or is gone), and the finalizer is removed only by a plan whose
//! status already lists the uid; so no finished pod is counted twice or lost.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::JobStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::manage::Delayed;
use super::pods::{Phase, PodView};
use super::{
    ensure_condition, new_condition, pod_ref, seconds, Counts, Event, Finishing, Plan, Sync,
    MAX_UNCOUNTED_PODS,
};
use crate::objects::count;

impl<'a> Sync<'a> {
    /// Updates `status` with newly finished pods, the index sets and the conditions, and lists
    /// the finalizers to remove.
    pub(super) fn track(
        &self,
        status: &mut JobStatus,
        counts: &Counts,
        finishing: Option<&Finishing>,
        delayed: &Delayed<'_, 'a>,
        out: &mut Plan,
    ) {
        let now = seconds(self.now);
        let with_finalizer: BTreeSet<&str> =
            self.pods.iter().filter(|pod| pod.has_finalizer).map(|pod| pod.uid).collect();
        let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();

        // Uids whose pods lost the finalizer (or vanished) are counted now.
        let count_released = |uids: &mut Option<Vec<String>>, counter: &mut Option<i32>| {
            let list = uids.get_or_insert_with(Vec::new);
            let before = list.len();
            list.retain(|uid| with_finalizer.contains(uid.as_str()));
            *counter = Some(counter.unwrap_or(0) + count(before - list.len()));
        };
        count_released(&mut uncounted.succeeded, &mut status.succeeded);
        count_released(&mut uncounted.failed, &mut status.failed);
        let mut uncounted_succeeded = uncounted.succeeded.take().unwrap_or_default();
        let mut uncounted_failed = uncounted.failed.take().unwrap_or_default();

        let mut pods: Vec<&PodView<'a>> =
            self.pods.iter().filter(|pod| pod.has_finalizer).collect();
        if self.indexed {
            pods.sort_by_key(|pod| pod.index);
        }
        let failing = finishing.is_some_and(|finishing| !finishing.success);
        let mut new_succeeded_indexes = Vec::new();
        let mut reached_max = false;
        for pod in pods {
            let failed = self.is_failed(pod);
            if !self.can_remove_finalizer(pod, failed, finishing.is_some(), delayed) {
                continue;
            }
            out.remove_finalizers.push(pod_ref(pod));
            let uid = pod.uid.to_owned();
            if pod.phase == Phase::Succeeded && !self.uncounted_failed.contains(&uid) {
                if self.indexed {
                    // The index alone keeps a succeeded pod from being counted twice.
                    if let Some(index) = self.valid_index(pod) {
                        if !counts.prev_succeeded_indexes.has(index) {
                            new_succeeded_indexes.push(index);
                        }
                    }
                } else if !self.uncounted_succeeded.contains(&uid) {
                    uncounted_succeeded.push(uid);
                }
            } else if (failed || failing)
                && !self.uncounted_failed.contains(&uid)
                && (!self.indexed || self.valid_index(pod).is_some())
            {
                // Once the Job is failing, every pod not succeeded counts as failed.
                uncounted_failed.push(uid);
            }
            let pending =
                new_succeeded_indexes.len() + uncounted_succeeded.len() + uncounted_failed.len();
            if pending >= MAX_UNCOUNTED_PODS {
                // Keep the status small; the next plan carries on.
                reached_max = true;
                break;
            }
        }

        if self.indexed {
            let succeeded = counts.succeeded_indexes.with_indexes(new_succeeded_indexes);
            status.succeeded = Some(count(succeeded.total()));
            status.completed_indexes = Some(succeeded.to_string());
            status.failed_indexes = counts.failed_indexes.as_ref().map(ToString::to_string);
        }
        let nothing_uncounted = uncounted_succeeded.is_empty() && uncounted_failed.is_empty();
        uncounted.succeeded = Some(uncounted_succeeded);
        uncounted.failed = Some(uncounted_failed);
        status.uncounted_terminated_pods = Some(uncounted);

        let Some(finishing) = finishing else { return };
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let (interim, last) = if finishing.success {
            ("SuccessCriteriaMet", "Complete")
        } else {
            ("FailureTarget", "Failed")
        };
        let stored = conditions.iter().any(|c| c.type_ == interim && c.status == "True");
        if !finishing.interim_stored && !stored {
            // Recorded before any finalizer is removed, so the outcome survives a restart.
            conditions.push(new_condition(
                interim,
                "True",
                &finishing.reason,
                &finishing.message,
                now,
            ));
        }
        if reached_max || !nothing_uncounted || counts.terminating > 0 {
            return;
        }
        ensure_condition(conditions, last, "True", &finishing.reason, &finishing.message, now);
        if finishing.success {
            status.completion_time = Some(Time(now));
            let succeeded = status.succeeded.unwrap_or(0);
            if self.completions.is_some_and(|completions| succeeded > completions) {
                out.events.push(Event::warning(
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                ));
            }
            out.events.push(Event::normal("Completed", "Job completed"));
        } else {
            out.events.push(Event::warning(&finishing.reason, finishing.message.clone()));
        }
    }

    /// Upstream's `canRemoveFinalizer`: always once the Job is deleted or finishing, or the pod
    /// succeeded; for a failed pod unless it is kept for its index's replacement.
    fn can_remove_finalizer(
        &self,
        pod: &PodView<'_>,
        failed: bool,
        finishing: bool,
        delayed: &Delayed<'_, 'a>,
    ) -> bool {
        if self.deleting || finishing || pod.phase == Phase::Succeeded {
            return true;
        }
        if !failed {
            return false;
        }
        let kept =
            pod.index.and_then(|index| delayed.get(&index)).is_some_and(|kept| kept.uid == pod.uid);
        !(self.per_index.is_some() && kept)
    }
}
