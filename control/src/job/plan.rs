//! Decides what the Job controller does for one Job, as Kubernetes 1.33's `pkg/controller/job`
//! (with the TTL-after-finished controller) does, without any IO.
//!
//! [`plan`] takes the Job, every pod in its namespace and the current time, and returns a
//! [`Plan`]: orphans to adopt and strays to release, pods to create and delete, the status to
//! write, tracking finalizers to remove once that status is written, events, when to delete a
//! finished Job, and when to look again.
//!
//! Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer. A finished pod's uid
//! first goes into `status.uncountedTerminatedPods` (written by this plan's status), then its
//! finalizer is removed (this plan's `remove_finalizers`), and only a later plan, seeing the pod
//! without the finalizer or gone, moves the uid into `succeeded`/`failed`. So a finished pod is
//! counted exactly once even if it is deleted right after finishing or a write fails midway.
//!
//! Invariants:
//! - A pod is the Job's when its controller ownerReference carries the Job's uid and it matches
//!   the selector (or is a matching orphan this plan adopts).
//! - A Job is declared finished (`Complete`/`Failed`) only after the interim `SuccessCriteriaMet`
//!   or `FailureTarget` condition was written, no uid is left uncounted and no pod is still
//!   terminating, as 1.33 does with its JobManagedBy/JobPodReplacementPolicy gates on.
//! - A finished Job gets no status change; its remaining tracking finalizers are removed and its
//!   TTL honoured.
//! - At most 500 pods are created or deleted and 500 pods added to the uncounted lists per plan.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

use crate::events::Event;
use crate::objects::{controller_of, count};
use crate::selector::Selector;

mod indexes;
mod manage;
mod pods;
mod status;
#[cfg(test)]
mod tests;
mod tracking;

use indexes::Intervals;
use pods::{Phase, PodView};
use status::{ensure_condition, finish_time, new_condition, normalized, schedule_deletion};

/// Finalizer on every pod the controller creates or adopts, removed once the pod is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation (and label) holding an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation counting an index's failures that count against `backoffLimitPerIndex`.
pub const INDEX_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-failure-count";
/// Annotation counting an index's failures that do not count against the limit.
pub const INDEX_IGNORED_FAILURE_COUNT_ANNOTATION: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";
/// Environment variable, read from the index label, added to every container of Indexed pods.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// `spec.managedBy` value of the built-in controller; Jobs managed by anyone else are skipped.
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// Most pods created or deleted by one plan.
pub const MAX_POD_CREATE_DELETE: usize = 500;
/// Most pods added to `status.uncountedTerminatedPods` by one plan.
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// Backoff before replacing a failed pod; doubles with each failure since the last success.
pub const POD_FAILURE_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
/// Cap of the pod failure backoff.
pub const MAX_POD_FAILURE_BACKOFF: SignedDuration = SignedDuration::from_mins(10);

const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// What the controller should do for one Job. Execute in field order: the status must be
/// written before any finalizer is removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Orphans to adopt: add [`owner_reference`] and [`TRACKING_FINALIZER`] (patch with the
    /// pod's uid and resourceVersion as preconditions).
    pub adopt: Vec<PodRef>,
    /// Pods controlled by the Job that no longer match its selector: drop the Job's
    /// ownerReference and [`TRACKING_FINALIZER`].
    pub release: Vec<PodRef>,
    /// Pods to delete (uid precondition).
    pub delete: Vec<PodDeletion>,
    /// Pods to create, complete objects with `generateName`; record [`pod_created_event`] for
    /// each created.
    pub create: Vec<Pod>,
    /// The status to write (replace, conditional on the Job's resourceVersion); `None` when
    /// unchanged. If the write fails, stop: nothing below may run.
    pub status: Option<JobStatus>,
    /// Pods whose [`TRACKING_FINALIZER`] to remove, after `status` was written (patch
    /// `$deleteFromPrimitiveList/finalizers`, resourceVersion precondition; a missing pod is fine).
    pub remove_finalizers: Vec<PodRef>,
    /// The Job has finished and its `ttlSecondsAfterFinished` expires at this time: from then on,
    /// delete it with `propagationPolicy: Background` and its uid as precondition.
    pub delete_job_at: Option<Timestamp>,
    /// Events to record on the Job once the writes above succeeded.
    pub events: Vec<Event>,
    /// Reconcile again after this long (pod failure backoff, active deadline or TTL expiry),
    /// which no watch event announces.
    pub recheck_after: Option<SignedDuration>,
}

/// A pod named by a plan, with the preconditions to write it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// A pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDeletion {
    pub pod: PodRef,
    /// Remove [`TRACKING_FINALIZER`] before deleting, so the pod is never counted as failed
    /// (pods removed by scale-down or suspension). Pods deleted because the Job failed keep it
    /// until their failure is recorded.
    pub remove_finalizer_first: bool,
}

/// Why no plan could be made for a Job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field the controller needs is absent.
    #[error("job has no {field}")]
    MissingField { field: &'static str },
    /// The selector is empty or malformed.
    #[error("invalid selector: {reason}")]
    InvalidSelector { reason: String },
    /// A finished Job's `Complete`/`Failed` condition has no transition time, so its TTL cannot
    /// be computed.
    #[error("unable to find the time when the Job finished")]
    UnknownFinishTime,
}

/// Returns the controller ownerReference pointing at `job`, for created and adopted pods.
pub fn owner_reference(job: &Job) -> Result<OwnerReference, PlanError> {
    Ok(OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "Job".to_owned(),
        name: job
            .metadata
            .name
            .clone()
            .ok_or(PlanError::MissingField { field: "metadata.name" })?,
        uid: job.metadata.uid.clone().ok_or(PlanError::MissingField { field: "metadata.uid" })?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The event to record on the Job for each pod created (the server picks the name).
pub fn pod_created_event(pod_name: &str) -> Event {
    Event::normal("SuccessfulCreate", format!("Created pod: {pod_name}"))
}

/// Returns what the controller should do for `job`, given every pod in its namespace.
pub fn plan(job: &Job, pods: &[Pod], now: Timestamp) -> Result<Plan, PlanError> {
    let uid =
        job.metadata.uid.as_deref().ok_or(PlanError::MissingField { field: "metadata.uid" })?;
    let name =
        job.metadata.name.as_deref().ok_or(PlanError::MissingField { field: "metadata.name" })?;
    let spec = job.spec.as_ref().ok_or(PlanError::MissingField { field: "spec" })?;
    if spec.managed_by.as_deref().is_some_and(|manager| manager != JOB_CONTROLLER_NAME) {
        return Ok(Plan::default());
    }
    let selector =
        spec.selector.as_ref().ok_or(PlanError::MissingField { field: "spec.selector" })?;
    let selector =
        Selector::parse(selector).map_err(|e| PlanError::InvalidSelector { reason: e.reason })?;
    let status = job.status.clone().unwrap_or_default();
    let mut out = Plan::default();
    let deleting = job.metadata.deletion_timestamp.is_some();

    if finish_time(&status).is_some() {
        for pod in pods.iter().filter(|pod| pod.metadata.namespace == job.metadata.namespace) {
            let ours = controller_of(pod).is_some_and(|owner| owner.uid == uid);
            let view = PodView::new(pod, false);
            if let Some(view) = view.filter(|view| ours && view.has_finalizer) {
                if selector.matches(pod.metadata.labels.as_ref()) {
                    out.remove_finalizers.push(pod_ref(&view));
                }
            }
        }
        schedule_deletion(job, &status, now, &mut out)?;
        return Ok(out);
    }
    let indexed = match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => false,
        Some("Indexed") => true,
        Some(_) => {
            out.events.push(Event::warning(
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown",
            ));
            return Ok(out);
        }
    };
    let completions = match (indexed, spec.completions) {
        (true, None) => return Err(PlanError::MissingField { field: "spec.completions" }),
        (_, completions) => completions,
    };

    if spec.template.spec.is_none() {
        return Err(PlanError::MissingField { field: "spec.template.spec" });
    }

    let mut owned = Vec::new();
    for pod in pods.iter().filter(|pod| pod.metadata.namespace == job.metadata.namespace) {
        let matches = selector.matches(pod.metadata.labels.as_ref());
        match controller_of(pod) {
            Some(owner) if owner.uid != uid => {}
            Some(_) if matches => owned.extend(PodView::new(pod, false)),
            Some(_) if !deleting => {
                out.release.extend(PodView::new(pod, false).map(|v| pod_ref(&v)))
            }
            None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                if let Some(view) = PodView::new(pod, true) {
                    out.adopt.push(pod_ref(&view));
                    owned.push(view);
                }
            }
            Some(_) | None => {}
        }
    }

    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let set = |uids: &Option<Vec<String>>| uids.iter().flatten().cloned().collect::<BTreeSet<_>>();
    let sync = Sync {
        job,
        name,
        owner: owner_reference(job)?,
        spec,
        now,
        indexed,
        completions,
        per_index: spec.backoff_limit_per_index,
        only_replace_failed: spec.pod_replacement_policy.as_deref() == Some("Failed")
            || spec.pod_failure_policy.is_some(),
        deleting,
        uncounted_succeeded: set(&uncounted.succeeded),
        uncounted_failed: set(&uncounted.failed),
        pods: owned,
    };
    if let Some(status) = sync.run(status, &mut out) {
        schedule_deletion(job, &status, now, &mut out)?;
        out.status = Some(status);
    }
    Ok(out)
}

/// Everything one plan reads, computed once.
struct Sync<'a> {
    job: &'a Job,
    name: &'a str,
    owner: OwnerReference,
    spec: &'a JobSpec,
    now: Timestamp,
    indexed: bool,
    completions: Option<i32>,
    per_index: Option<i32>,
    /// Replacement waits for terminating pods to finish (`podReplacementPolicy: Failed`, implied
    /// by a pod failure policy), and deleted pods do not count as failed.
    only_replace_failed: bool,
    /// The Job has a deletionTimestamp.
    deleting: bool,
    uncounted_succeeded: BTreeSet<String>,
    uncounted_failed: BTreeSet<String>,
    /// The Job's pods.
    pods: Vec<PodView<'a>>,
}

/// Why the Job is finishing, and whether the interim condition is already stored.
#[derive(Debug, Clone)]
struct Finishing {
    success: bool,
    reason: String,
    message: String,
    interim_stored: bool,
}

impl Finishing {
    /// The Job fails for `reason`; no interim condition is stored yet.
    fn failed(reason: &str, message: &str) -> Finishing {
        Finishing {
            success: false,
            reason: reason.to_owned(),
            message: message.to_owned(),
            interim_stored: false,
        }
    }
}

/// The counters one plan updates as it decides.
#[derive(Debug, Default)]
struct Counts {
    active: i32,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    failed: i32,
    prev_succeeded_indexes: Intervals,
    succeeded_indexes: Intervals,
    failed_indexes: Option<Intervals>,
}

impl<'a> Sync<'a> {
    /// Upstream's `syncJob` for an unfinished Job; returns the status to write, if changed.
    fn run(&self, mut status: JobStatus, out: &mut Plan) -> Option<JobStatus> {
        let original = normalized(status.clone());
        let suspended = self.spec.suspend == Some(true);
        let active: Vec<&PodView<'a>> = self.pods.iter().filter(|pod| pod.active()).collect();
        let new_succeeded =
            self.new_finished(&self.uncounted_succeeded, |pod| pod.phase == Phase::Succeeded);
        let new_failed = self.new_finished(&self.uncounted_failed, |pod| self.is_failed(pod));
        let mut counts = Counts {
            active: count(active.len()),
            ready: count(active.iter().filter(|pod| pod.ready).count()),
            terminating: count(self.pods.iter().filter(|pod| pod.terminating()).count()),
            succeeded: status.succeeded.unwrap_or(0)
                + count(new_succeeded)
                + count(self.uncounted_succeeded.len()),
            failed: status.failed.unwrap_or(0)
                + count(new_failed)
                + count(self.uncounted_failed.len()),
            ..Counts::default()
        };
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(Time(seconds(self.now)));
        }

        let mut finishing = self.stored_finishing(&status);
        if finishing.is_none() {
            finishing = self.failure(&status, counts.failed, &mut out.recheck_after);
        }
        let mut delayed = Default::default();
        if self.indexed {
            let completions = self.completions_usize();
            counts.prev_succeeded_indexes = Intervals::parse(
                status.completed_indexes.as_deref().unwrap_or_default(),
                completions,
            );
            counts.succeeded_indexes = counts.prev_succeeded_indexes.with_indexes(
                self.pods
                    .iter()
                    .filter(|pod| pod.phase == Phase::Succeeded && pod.has_finalizer)
                    .filter_map(|pod| self.valid_index(pod)),
            );
            counts.succeeded = count(counts.succeeded_indexes.total());
            if self.per_index.is_some() {
                let failed = self.failed_indexes(&status);
                if finishing.is_none() {
                    finishing = self.index_failure(&failed, &counts.succeeded_indexes);
                }
                delayed = self.delayed_deletions(&active, &counts.succeeded_indexes, &failed);
                counts.failed_indexes = Some(failed);
            }
        }

        if finishing.is_some() {
            // Delete what still runs, keeping finalizers until the failure is recorded.
            for pod in &active {
                self.delete_pod(pod, false, out);
                counts.terminating += 1;
                counts.ready -= i32::from(pod.ready);
            }
            counts.active = 0;
        } else {
            let managed = !self.deleting;
            if managed {
                self.manage(&active, &delayed, &mut counts, out);
            }
            let complete = match self.completions {
                None => counts.succeeded > 0 && counts.active == 0,
                Some(completions) => counts.succeeded >= completions && counts.active == 0,
            };
            if complete {
                finishing = Some(Finishing {
                    success: true,
                    reason: "CompletionsReached".to_owned(),
                    message: "Reached expected number of succeeded pods".to_owned(),
                    interim_stored: false,
                });
            } else if managed {
                self.suspend_condition(suspended, &mut status, out);
            }
        }

        status.active = Some(counts.active);
        status.ready = Some(counts.ready);
        status.terminating = Some(counts.terminating);
        self.track(&mut status, &counts, finishing.as_ref(), &delayed, out);
        let status = normalized(status);
        (status != original).then_some(status)
    }

    /// The finishing decision already stored as an interim condition.
    fn stored_finishing(&self, status: &JobStatus) -> Option<Finishing> {
        let stored = |type_: &str| {
            status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
        };
        let (condition, success) = match stored("SuccessCriteriaMet") {
            Some(condition) => (condition, true),
            None => (stored("FailureTarget")?, false),
        };
        Some(Finishing {
            success,
            reason: condition.reason.clone().unwrap_or_default(),
            message: condition.message.clone().unwrap_or_default(),
            interim_stored: true,
        })
    }

    /// Backoff limit and active deadline; schedules a recheck for a deadline still ahead.
    fn failure(
        &self,
        status: &JobStatus,
        failed: i32,
        recheck: &mut Option<SignedDuration>,
    ) -> Option<Finishing> {
        let limit = self.spec.backoff_limit.unwrap_or(if self.per_index.is_some() {
            i32::MAX
        } else {
            DEFAULT_BACKOFF_LIMIT
        });
        if failed > limit || self.past_backoff_limit_on_failure(limit) {
            return Some(Finishing::failed(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        }
        let deadline = self.spec.active_deadline_seconds?;
        if self.spec.suspend == Some(true) {
            return None;
        }
        let start = status.start_time.as_ref().map_or(self.now, |time| time.0);
        let remaining = SignedDuration::from_secs(deadline) - start.duration_until(self.now);
        if remaining <= SignedDuration::ZERO {
            return Some(Finishing::failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        }
        earliest(recheck, remaining);
        None
    }

    /// `restartPolicy: OnFailure` counts container restarts of running pods against the limit.
    fn past_backoff_limit_on_failure(&self, limit: i32) -> bool {
        let restart_policy =
            self.spec.template.spec.as_ref().and_then(|spec| spec.restart_policy.as_deref());
        if restart_policy != Some("OnFailure") {
            return false;
        }
        let restarts = self.pods.iter().map(PodView::restarts).fold(0, i32::saturating_add);
        if limit == 0 {
            restarts > 0
        } else {
            restarts >= limit
        }
    }

    /// Sets the Suspended condition, and resets startTime on resume.
    fn suspend_condition(&self, suspended: bool, status: &mut JobStatus, out: &mut Plan) {
        let now = seconds(self.now);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if suspended {
            if ensure_condition(
                conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                out.events.push(Event::normal("Suspended", "Job suspended"));
            }
        } else if ensure_condition(
            conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ) {
            out.events.push(Event::normal("Resumed", "Job resumed"));
            // The active deadline counts from the resumption.
            status.start_time = Some(Time(now));
        }
    }

    /// Upstream's `isPodFailed`: Failed, or (unless only failed pods are replaced) deleted
    /// before succeeding.
    fn is_failed(&self, pod: &PodView<'_>) -> bool {
        pod.phase == Phase::Failed
            || (!self.only_replace_failed && pod.deleted && pod.phase != Phase::Succeeded)
    }

    /// The pod's completion index when below `completions`.
    fn valid_index(&self, pod: &PodView<'_>) -> Option<usize> {
        pod.index.filter(|index| *index < self.completions_usize())
    }

    fn completions_usize(&self) -> usize {
        self.completions.and_then(|completions| usize::try_from(completions).ok()).unwrap_or(0)
    }

    /// How many tracked pods finished in a way `uncounted` does not record yet.
    fn new_finished(
        &self,
        uncounted: &BTreeSet<String>,
        finished: impl Fn(&PodView<'_>) -> bool,
    ) -> usize {
        self.pods
            .iter()
            .filter(|pod| pod.has_finalizer && !uncounted.contains(pod.uid))
            .filter(|pod| !self.indexed || self.valid_index(pod).is_some())
            .filter(|pod| finished(pod))
            .count()
    }

    fn delete_pod(&self, pod: &PodView<'_>, remove_finalizer_first: bool, out: &mut Plan) {
        out.events.push(Event::normal("SuccessfulDelete", format!("Deleted pod: {}", pod.name)));
        out.delete.push(PodDeletion { pod: pod_ref(pod), remove_finalizer_first });
    }
}

fn pod_ref(pod: &PodView<'_>) -> PodRef {
    PodRef {
        name: pod.name.to_owned(),
        uid: pod.uid.to_owned(),
        resource_version: pod.resource_version.to_owned(),
    }
}

/// Truncates to whole seconds, the precision of `metav1.Time` on the wire.
fn seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// Keeps the earlier of the current recheck and `after`.
fn earliest(recheck: &mut Option<SignedDuration>, after: SignedDuration) {
    *recheck = Some(recheck.map_or(after, |current| current.min(after)));
}
