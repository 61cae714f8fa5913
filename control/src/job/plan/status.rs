//! The Job's status bookkeeping shared by the planner: conditions as upstream sets them, the
//! `omitempty` normalization that makes a computed status comparable to the stored one, and the
//! TTL-after-finished deletion time.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{earliest, Plan, PlanError};
use crate::objects::{omit_empty, omit_zero};

/// Adds the TTL-after-finished deletion time for a finished Job (and a recheck until then).
pub(super) fn schedule_deletion(
    job: &Job,
    status: &JobStatus,
    now: Timestamp,
    out: &mut Plan,
) -> Result<(), PlanError> {
    let Some(ttl) = job.spec.as_ref().and_then(|spec| spec.ttl_seconds_after_finished) else {
        return Ok(());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(finished) = finish_time(status) else { return Ok(()) };
    let finished = finished.ok_or(PlanError::UnknownFinishTime)?;
    let at = finished + SignedDuration::from_secs(i64::from(ttl));
    out.delete_job_at = Some(at);
    if at > now {
        earliest(&mut out.recheck_after, now.duration_until(at));
    }
    Ok(())
}

/// `Some(time)` when the Job is finished (`Some(None)` when the condition has no time).
pub(super) fn finish_time(status: &JobStatus) -> Option<Option<Timestamp>> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|condition| condition.last_transition_time.as_ref().map(|time| time.0))
}

/// Upstream's `ensureJobConditionStatus`: updates the condition of that type when its status,
/// reason or message differ, appends it if missing unless `False`; returns whether it changed.
pub(super) fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let new = new_condition(type_, status, reason, message, now);
    if let Some(existing) = conditions.iter_mut().find(|condition| condition.type_ == type_) {
        let same = existing.status == status
            && existing.reason.as_deref().unwrap_or_default() == reason
            && existing.message.as_deref().unwrap_or_default() == message;
        if !same {
            *existing = new;
        }
        return !same;
    }
    if status == "False" {
        return false;
    }
    conditions.push(new);
    true
}

pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
        reason: text(reason),
        message: text(message),
    }
}

/// Drops empty optional values, as a Go `omitempty` round trip through the API does, so a
/// computed status compares equal to the stored one.
pub(super) fn normalized(mut status: JobStatus) -> JobStatus {
    omit_zero(&mut status.active);
    omit_zero(&mut status.succeeded);
    omit_zero(&mut status.failed);
    omit_empty(&mut status.conditions);
    omit_zero(&mut status.completed_indexes);
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    omit_empty(&mut uncounted.succeeded);
    omit_empty(&mut uncounted.failed);
    status.uncounted_terminated_pods = Some(uncounted);
    status
}
