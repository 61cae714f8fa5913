//! Decides what the CronJob controller does for one CronJob, as Kubernetes 1.33's
//! `pkg/controller/cronjob` (controller v2) does, without any IO.
//!
//! [`plan`] takes the CronJob, every Job in its namespace and the current time, and returns a
//! [`Plan`]: finished Jobs beyond the history limits and Jobs replaced by `concurrencyPolicy:
//! Replace` to delete, at most one Job to create for the most recent unmet schedule time, the
//! status to write, events and when to look again.
//!
//! Invariants:
//! - A Job is this CronJob's when its controller ownerReference carries the CronJob's uid.
//! - The Job for a scheduled time is always named `<cronjob>-<minutes since the epoch>`, so a
//!   retried creation answers AlreadyExists instead of running the schedule twice.
//! - Only the most recent unmet schedule time since `status.lastScheduleTime` (or creation) and
//!   within `startingDeadlineSeconds` is run; earlier missed times are skipped, as upstream does.
//! - A suspended or deleted CronJob, or one whose schedule or time zone is invalid, creates and
//!   replaces nothing; its active list and history are still maintained.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::events::Event;

mod history;
pub mod schedule;
#[cfg(test)]
mod tests;

pub use schedule::Schedule;

/// Annotation on created Jobs holding the scheduled time (RFC 3339, in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Padding added to every requeue so a slightly early wake-up still finds the time due.
const NEXT_SCHEDULE_DELTA: SignedDuration = SignedDuration::from_millis(100);
/// More missed schedule times than this draw a `TooManyMissedTimes` warning.
const TOO_MANY_MISSED: i64 = 100;

/// What the controller should do for one CronJob.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Jobs to delete, with `propagationPolicy: Background` and the uid as precondition (finished
    /// Jobs beyond the history limits, then active Jobs replaced under `Replace`).
    pub delete: Vec<JobDeletion>,
    /// The Job to create for the scheduled time; see [`JobCreation::record`].
    pub create: Option<JobCreation>,
    /// The status to write, replacing the CronJob's status conditionally on its
    /// resourceVersion; `None` when unchanged. Always present when `create` is.
    pub status: Option<CronJobStatus>,
    /// Events to record on the CronJob once the writes above succeeded.
    pub events: Vec<Event>,
    /// Reconcile again after this long: the next schedule time (plus 100 ms) is due then.
    pub recheck_after: Option<SignedDuration>,
}

/// A Job to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDeletion {
    pub name: String,
    pub uid: String,
}

/// The Job to create for one schedule time.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCreation {
    /// The Job to POST (a fixed name, so the creation is idempotent).
    pub job: Job,
    /// The schedule time the Job runs for.
    pub scheduled_time: Timestamp,
}

/// Why no plan could be made for a CronJob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field the controller needs is absent.
    #[error("cronjob has no {field}")]
    MissingField { field: &'static str },
}

impl JobCreation {
    /// The event to record once the Job was created (not when it already existed).
    pub fn created_event(&self) -> Event {
        let name = self.job.metadata.name.as_deref().unwrap_or_default();
        Event::normal("SuccessfulCreate", format!("Created job {name}"))
    }

    /// Records the Job the API returned (after a successful create, or the existing Job after
    /// AlreadyExists when it is controlled by this CronJob) in `status`, as upstream does before
    /// writing it: its reference joins `active` unless already there, and `lastScheduleTime`
    /// becomes the scheduled time.
    pub fn record(&self, status: &mut CronJobStatus, created: &Job) {
        let active = status.active.get_or_insert_with(Vec::new);
        let uid = created.metadata.uid.as_deref();
        if uid.is_some() && active.iter().any(|reference| reference.uid.as_deref() == uid) {
            return;
        }
        active.push(job_reference(created));
        status.last_schedule_time = Some(Time(self.scheduled_time));
    }
}

/// Returns the reference to `job` kept in `status.active` (client-go's `GetReference`).
pub fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Returns what the controller should do for `cron`, given every Job in its namespace.
pub fn plan(cron: &CronJob, jobs: &[Job], now: Timestamp) -> Result<Plan, PlanError> {
    let uid =
        cron.metadata.uid.as_deref().ok_or(PlanError::MissingField { field: "metadata.uid" })?;
    let spec = cron.spec.as_ref().ok_or(PlanError::MissingField { field: "spec" })?;
    let created = cron
        .metadata
        .creation_timestamp
        .as_ref()
        .ok_or(PlanError::MissingField { field: "metadata.creationTimestamp" })?
        .0;

    let children: Vec<&Job> = jobs
        .iter()
        .filter(|job| job.metadata.namespace == cron.metadata.namespace)
        .filter(|job| controller_uid(&job.metadata) == Some(uid))
        .collect();
    let original = normalized(cron.status.clone().unwrap_or_default());
    let mut status = original.clone();
    let mut active = status.active.take().unwrap_or_default();
    let mut out = Plan::default();

    let deleted = history::clean_up(spec, &children, &mut out);
    active.retain(|reference| !deleted.iter().any(|uid| reference.uid.as_ref() == Some(uid)));
    track_children(&children, &mut active, &mut status, &mut out);

    if cron.metadata.deletion_timestamp.is_none() {
        let context = Context { cron, spec, created, now };
        if let Some(creation) = context.schedule(&mut active, &status, &mut out)? {
            out.create = Some(creation);
        }
    }

    status.active = (!active.is_empty()).then_some(active);
    if status != original || out.create.is_some() {
        out.status = Some(status);
    }
    Ok(out)
}

/// Updates the active list and lastSuccessfulTime from the CronJob's Jobs (upstream's loop over
/// children, then its sweep for active Jobs that no longer exist).
fn track_children(
    children: &[&Job],
    active: &mut Vec<ObjectReference>,
    status: &mut CronJobStatus,
    out: &mut Plan,
) {
    for job in children {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let job_uid = job.metadata.uid.as_deref();
        let position = active
            .iter()
            .position(|reference| job_uid.is_some() && reference.uid.as_deref() == job_uid);
        let finished = finished_condition(job);
        match (position, finished) {
            (None, None) => out.events.push(Event::warning(
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            (Some(position), Some(condition)) => {
                active.remove(position);
                out.events.push(Event::normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, status: {condition}"),
                ));
            }
            (_, Some("Complete")) => {
                let completion =
                    job.status.as_ref().and_then(|status| status.completion_time.clone());
                let later = match (&status.last_successful_time, &completion) {
                    (None, _) => true,
                    (Some(last), Some(completion)) => completion.0 > last.0,
                    (Some(_), None) => false,
                };
                if later {
                    status.last_successful_time = completion;
                }
            }
            _ => {}
        }
    }
    active.retain(|reference| {
        let found = children.iter().any(|job| job.metadata.uid == reference.uid);
        if !found {
            let name = reference.name.as_deref().unwrap_or_default();
            out.events
                .push(Event::normal("MissingJob", format!("Active job went missing: {name}")));
        }
        found
    });
}

/// What scheduling needs to know about the CronJob.
struct Context<'a> {
    cron: &'a CronJob,
    spec: &'a CronJobSpec,
    created: Timestamp,
    now: Timestamp,
}

impl Context<'_> {
    /// Decides whether a Job is due now (upstream's `syncCronJob` after its bookkeeping), adding
    /// deletions, events and the recheck to `out`, and returns the Job to create.
    fn schedule(
        &self,
        active: &mut Vec<ObjectReference>,
        status: &CronJobStatus,
        out: &mut Plan,
    ) -> Result<Option<JobCreation>, PlanError> {
        let spec = self.spec;
        let zone_name = spec.time_zone.as_deref();
        let zone = match zone_name.map(TimeZone::get).transpose() {
            Ok(zone) => zone.unwrap_or(TimeZone::UTC),
            Err(_) => {
                let name = zone_name.unwrap_or_default();
                out.events.push(Event::warning(
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: unknown time zone {name}"),
                ));
                return Ok(None);
            }
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(schedule) => schedule,
            Err(err) => {
                out.events.push(Event::warning(
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {err}", spec.schedule),
                ));
                return Ok(None);
            }
        };
        let now = self.now.to_zoned(zone);
        let last = status.last_schedule_time.as_ref().map(|time| time.0);
        let recent = match self.most_recent(&schedule, last, &now, true) {
            Ok(recent) => recent,
            Err(reason) => {
                out.events.push(Event::warning(
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {reason}", spec.schedule),
                ));
                return Ok(None);
            }
        };
        let Some(scheduled) = recent.most_recent else {
            out.recheck_after = self.recheck(&schedule, last, &now);
            return Ok(None);
        };
        if recent.missed > TOO_MANY_MISSED {
            out.events.push(Event::warning(
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check \
                 clock skew",
            ));
        }
        if let Some(deadline) = spec.starting_deadline_seconds {
            if scheduled.timestamp() + SignedDuration::from_secs(deadline) < self.now {
                let when = scheduled.timestamp().strftime("%a, %d %b %Y %H:%M:%S +0000");
                out.events.push(Event::warning(
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {when}"),
                ));
                out.recheck_after = self.recheck(&schedule, last, &now);
                return Ok(None);
            }
        }
        let job_name = job_name(self.cron, scheduled.timestamp());
        let already_active =
            active.iter().any(|reference| reference.name.as_deref() == Some(&job_name));
        if already_active || last == Some(scheduled.timestamp()) {
            out.recheck_after = self.recheck(&schedule, last, &now);
            return Ok(None);
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                out.events.push(Event::normal(
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy \
                     is Forbid",
                ));
                out.recheck_after = self.recheck(&schedule, last, &now);
                return Ok(None);
            }
            Some("Replace") => {
                for reference in active.drain(..) {
                    let name = reference.name.unwrap_or_default();
                    out.events
                        .push(Event::normal("SuccessfulDelete", format!("Deleted job {name}")));
                    out.delete.push(JobDeletion { name, uid: reference.uid.unwrap_or_default() });
                }
            }
            _ => {}
        }
        let job = job_from_template(self.cron, job_name, &scheduled)?;
        out.recheck_after = self.recheck(&schedule, Some(scheduled.timestamp()), &now);
        Ok(Some(JobCreation { job, scheduled_time: scheduled.timestamp() }))
    }

    /// Upstream's `mostRecentScheduleTime`: the latest schedule time in (earliest, now], where
    /// earliest is the last schedule time (or creation), moved up to `now - startingDeadline`
    /// when `with_deadline`; also roughly how many times were missed. The error says why the
    /// schedule has no usable interval (e.g. it never fires).
    fn most_recent(
        &self,
        schedule: &Schedule,
        last: Option<Timestamp>,
        now: &Zoned,
        with_deadline: bool,
    ) -> Result<Recent, &'static str> {
        const NO_INTERVAL: &str = "time difference between two schedules is less than 1 second";
        let mut earliest = last.unwrap_or(self.created);
        if let (true, Some(deadline)) = (with_deadline, self.spec.starting_deadline_seconds) {
            let scheduling_deadline = now.timestamp() - SignedDuration::from_secs(deadline);
            earliest = earliest.max(scheduling_deadline);
        }
        let earliest = earliest.to_zoned(now.time_zone().clone());
        let none_missed =
            |most_recent| Recent { earliest: earliest.clone(), most_recent, missed: 0 };
        let first = schedule.next_after(&earliest).ok_or(NO_INTERVAL)?;
        if *now < first {
            return Ok(none_missed(None));
        }
        let second = schedule.next_after(&first).ok_or(NO_INTERVAL)?;
        if *now < second {
            return Ok(none_missed(Some(first)));
        }
        let between = round_to_seconds(first.duration_until(&second));
        if between < 1 {
            return Err(NO_INTERVAL);
        }
        let elapsed = first.duration_until(now).as_secs();
        let missed = elapsed / between + 1;
        // Jump close to now, then walk the schedule: exact for irregular schedules too.
        let jump = SignedDuration::from_secs((missed - 2).saturating_mul(between));
        let mut most_recent = None;
        let mut candidate =
            first.checked_add(jump).ok().and_then(|start| schedule.next_after(&start));
        while let Some(time) = candidate.filter(|time| time <= now) {
            candidate = schedule.next_after(&time);
            most_recent = Some(time);
        }
        Ok(Recent { earliest, most_recent, missed })
    }

    /// Upstream's `nextScheduleTimeDuration`: how long until the schedule time after the most
    /// recent one (ignoring the starting deadline), plus [`NEXT_SCHEDULE_DELTA`].
    fn recheck(
        &self,
        schedule: &Schedule,
        last: Option<Timestamp>,
        now: &Zoned,
    ) -> Option<SignedDuration> {
        let from = match self.most_recent(schedule, last, now, false) {
            Err(_) => now.clone(),
            Ok(Recent { most_recent: Some(time), .. }) => time,
            Ok(Recent { earliest, missed: 0, .. }) => earliest,
            Ok(_) => now.clone(),
        };
        let next = schedule.next_after(&from)?;
        Some(now.duration_until(&next) + NEXT_SCHEDULE_DELTA)
    }
}

/// The result of [`Context::most_recent`].
struct Recent {
    earliest: Zoned,
    most_recent: Option<Zoned>,
    /// Roughly how many schedule times passed unmet (0 when at most one is due).
    missed: i64,
}

/// Go's `Duration.Round(time.Second)` in whole seconds (halves away from zero).
fn round_to_seconds(duration: SignedDuration) -> i64 {
    let seconds = duration.as_secs();
    let nanos = i64::from(duration.subsec_nanos());
    if nanos >= 500_000_000 {
        seconds + 1
    } else if nanos <= -500_000_000 {
        seconds - 1
    } else {
        seconds
    }
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
fn job_name(cron: &CronJob, scheduled: Timestamp) -> String {
    let name = cron.metadata.name.as_deref().unwrap_or_default();
    format!("{name}-{}", scheduled.as_second().div_euclid(60))
}

/// Returns the Job to create for `scheduled` (upstream's `getJobFromTemplate2`).
fn job_from_template(cron: &CronJob, name: String, scheduled: &Zoned) -> Result<Job, PlanError> {
    let spec = cron.spec.as_ref().ok_or(PlanError::MissingField { field: "spec" })?;
    let template = &spec.job_template;
    let job_spec =
        template.spec.clone().ok_or(PlanError::MissingField { field: "spec.jobTemplate.spec" })?;
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.to_owned(), rfc3339(scheduled));
    let owner = OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "CronJob".to_owned(),
        name: cron
            .metadata
            .name
            .clone()
            .ok_or(PlanError::MissingField { field: "metadata.name" })?,
        uid: cron.metadata.uid.clone().ok_or(PlanError::MissingField { field: "metadata.uid" })?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cron.metadata.namespace.clone(),
            labels: template_meta.labels.filter(|labels| !labels.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(job_spec),
        status: None,
    })
}

/// Go's `time.RFC3339` layout: `Z` for UTC, otherwise `±hh:mm`.
fn rfc3339(time: &Zoned) -> String {
    let offset = time.offset().seconds();
    let zone = if offset == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs() / 60;
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    };
    format!("{}{zone}", time.strftime("%Y-%m-%dT%H:%M:%S"))
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|reference| reference.controller == Some(true) && reference.kind == "CronJob")
        .map(|reference| reference.uid.as_str())
}

/// `Complete` or `Failed` when the Job has that condition `True`.
fn finished_condition(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|condition| condition.status == "True").find_map(|condition| {
        match condition.type_.as_str() {
            "Complete" => Some("Complete"),
            "Failed" => Some("Failed"),
            _ => None,
        }
    })
}

/// Drops an empty active list, as a Go `omitempty` round trip does.
fn normalized(mut status: CronJobStatus) -> CronJobStatus {
    crate::objects::omit_empty(&mut status.active);
    status
}
