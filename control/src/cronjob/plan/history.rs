//! Keeps at most `successfulJobsHistoryLimit` completed and `failedJobsHistoryLimit` failed Jobs
//! of a CronJob, deleting the oldest first (upstream's `cleanupFinishedJobs`).
//!
//! Invariants: only finished Jobs not already being deleted count; Jobs are ordered by
//! `status.startTime` (missing last), then by name; a limit left unset keeps everything.

use std::cmp::Ordering;

use k8s_openapi::api::batch::v1::{CronJobSpec, Job};

use super::{finished_condition, JobDeletion, Plan};
use crate::events::Event;

/// Adds the deletions (and their events) to `out`, returning the uids of the deleted Jobs.
pub(super) fn clean_up(spec: &CronJobSpec, children: &[&Job], out: &mut Plan) -> Vec<String> {
    let mut deleted = Vec::new();
    for (condition, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Job> = children
            .iter()
            .copied()
            .filter(|job| job.metadata.deletion_timestamp.is_none())
            .filter(|job| finished_condition(job) == Some(condition))
            .collect();
        let keep = usize::try_from(limit).unwrap_or(0);
        if finished.len() <= keep {
            continue;
        }
        finished.sort_by(|a, b| oldest_first(a, b));
        let excess = finished.len() - keep;
        for job in finished.into_iter().take(excess) {
            let name = job.metadata.name.clone().unwrap_or_default();
            let uid = job.metadata.uid.clone().unwrap_or_default();
            out.events.push(Event::normal("SuccessfulDelete", format!("Deleted job {name}")));
            out.delete.push(JobDeletion { name, uid: uid.clone() });
            deleted.push(uid);
        }
    }
    deleted
}

/// Upstream's `byJobStartTime`: earlier start first, Jobs that never started last, then by name.
fn oldest_first(a: &Job, b: &Job) -> Ordering {
    let start = |job: &Job| {
        job.status.as_ref().and_then(|status| status.start_time.as_ref()).map(|time| time.0)
    };
    match (start(a), start(b)) {
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (a_start, b_start) => {
            a_start.cmp(&b_start).then_with(|| a.metadata.name.cmp(&b.metadata.name))
        }
    }
}
