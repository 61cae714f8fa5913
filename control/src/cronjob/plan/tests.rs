#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
};
use k8s_openapi::api::core::v1::{ObjectReference, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::*;
use crate::events::EventType;

const UID: &str = "cron-uid";

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A CronJob "report" running every five minutes, created at 10:00:30 UTC.
fn cron(schedule: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("report".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            creation_timestamp: Some(Time(ts("2025-01-01T10:00:30Z"))),
            ..ObjectMeta::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(map(&[("app", "report")])),
                    annotations: Some(map(&[("team", "data")])),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec::default(),
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    }
}

fn with_spec(mut cron: CronJob, change: impl FnOnce(&mut CronJobSpec)) -> CronJob {
    change(cron.spec.as_mut().unwrap());
    cron
}

fn with_status(mut cron: CronJob, status: CronJobStatus) -> CronJob {
    cron.status = Some(status);
    cron
}

/// A Job of the CronJob, started at `start`, with `condition` True if given.
fn child(name: &str, start: Option<&str>, condition: Option<&str>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            resource_version: Some("7".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: "report".into(),
                uid: UID.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec::default()),
        status: Some(JobStatus {
            start_time: start.map(|start| Time(ts(start))),
            completion_time: (condition == Some("Complete"))
                .then(|| Time(ts("2025-01-01T10:03:00Z"))),
            conditions: condition.map(|type_| {
                vec![JobCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]
            }),
            ..JobStatus::default()
        }),
    }
}

fn reference(job: &Job) -> ObjectReference {
    job_reference(job)
}

fn active_status(jobs: &[&Job], last: &str) -> CronJobStatus {
    CronJobStatus {
        active: Some(jobs.iter().map(|job| reference(job)).collect()),
        last_schedule_time: Some(Time(ts(last))),
        last_successful_time: None,
    }
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|event| event.reason.as_str()).collect()
}

fn created_name(plan: &Plan) -> Option<&str> {
    plan.create.as_ref().and_then(|creation| creation.job.metadata.name.as_deref())
}

/// 10:05:00 UTC in minutes since the epoch.
const TEN_FIVE: i64 = 1_735_725_900 / 60;

#[test]
fn fires_on_schedule_with_the_job_from_the_template() {
    let cron = cron("*/5 * * * *");
    let plan = plan(&cron, &[], ts("2025-01-01T10:05:10Z")).unwrap();
    let creation = plan.create.clone().unwrap();
    let job = &creation.job;
    assert_eq!(creation.scheduled_time, ts("2025-01-01T10:05:00Z"));
    assert_eq!(job.metadata.name.as_deref(), Some(format!("report-{TEN_FIVE}").as_str()));
    assert_eq!(job.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(job.metadata.labels, Some(map(&[("app", "report")])));
    assert_eq!(
        job.metadata.annotations,
        Some(map(&[("team", "data"), (SCHEDULED_TIMESTAMP_ANNOTATION, "2025-01-01T10:05:00Z")]))
    );
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("CronJob", UID, Some(true))
    );
    assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(2));
    // Next run at 10:10:00, plus the 100 ms padding.
    assert_eq!(plan.recheck_after, Some(SignedDuration::from_millis(290_100)));
    assert_eq!(creation.created_event().message, format!("Created job report-{TEN_FIVE}"));

    // The caller records the Job the API returned, then writes the status.
    let mut created = job.clone();
    created.metadata.uid = Some("new-uid".into());
    created.metadata.resource_version = Some("42".into());
    let mut status = plan.status.clone().unwrap();
    creation.record(&mut status, &created);
    creation.record(&mut status, &created);
    assert_eq!(status.last_schedule_time, Some(Time(ts("2025-01-01T10:05:00Z"))));
    let active = status.active.unwrap();
    assert_eq!(active.len(), 1, "recording twice adds one reference");
    assert_eq!(active[0].kind.as_deref(), Some("Job"));
    assert_eq!(active[0].api_version.as_deref(), Some("batch/v1"));
    assert_eq!(active[0].uid.as_deref(), Some("new-uid"));
    assert_eq!(active[0].resource_version.as_deref(), Some("42"));
}

#[test]
fn nothing_is_due_between_schedule_times() {
    let cases = [
        ("before the first time", None, "2025-01-01T10:03:00Z", 120_100),
        ("the time already ran", Some("2025-01-01T10:05:00Z"), "2025-01-01T10:07:00Z", 180_100),
    ];
    for (case, last, now, wait_ms) in cases {
        let status =
            CronJobStatus { last_schedule_time: last.map(|l| Time(ts(l))), ..Default::default() };
        let plan = plan(&with_status(cron("*/5 * * * *"), status), &[], ts(now)).unwrap();
        assert_eq!(plan.create, None, "{case}");
        assert_eq!(plan.status, None, "{case}");
        assert_eq!(plan.recheck_after, Some(SignedDuration::from_millis(wait_ms)), "{case}");
    }
}

#[test]
fn concurrency_policies_table() {
    let running = child("report-old", Some("2025-01-01T10:00:00Z"), None);
    let finished = child("report-done", Some("2025-01-01T10:00:00Z"), Some("Complete"));
    // Each row: policy, the active Job, whether a Job is created, deletions, active names after.
    let cases = [
        (Some("Forbid"), &running, false, vec![], vec!["report-old"]),
        (Some("Forbid"), &finished, true, vec![], vec![]),
        (Some("Replace"), &running, true, vec!["report-old"], vec![]),
        (Some("Allow"), &running, true, vec![], vec!["report-old"]),
        (None, &running, true, vec![], vec!["report-old"]),
    ];
    for (policy, active, creates, deletes, after) in cases {
        let cron =
            with_spec(cron("*/5 * * * *"), |spec| spec.concurrency_policy = policy.map(Into::into));
        let cron = with_status(cron, active_status(&[active], "2025-01-01T10:00:00Z"));
        let plan = plan(&cron, std::slice::from_ref(active), ts("2025-01-01T10:05:01Z")).unwrap();
        let case = format!("{policy:?} with {:?}", active.metadata.name);
        assert_eq!(plan.create.is_some(), creates, "{case}");
        let deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(deleted, deletes, "{case}");
        for deletion in &plan.delete {
            assert_eq!(deletion.uid, "report-old-uid", "{case}: uid precondition");
        }
        let status = plan.status.clone().unwrap_or_else(|| cron.status.clone().unwrap());
        let names: Vec<&str> =
            status.active.iter().flatten().filter_map(|r| r.name.as_deref()).collect();
        assert_eq!(names, after, "{case}");
        assert!(plan.recheck_after.is_some(), "{case}");
    }

    let forbid =
        with_spec(cron("*/5 * * * *"), |spec| spec.concurrency_policy = Some("Forbid".into()));
    let forbid = with_status(forbid, active_status(&[&running], "2025-01-01T10:00:00Z"));
    let plan = plan(&forbid, std::slice::from_ref(&running), ts("2025-01-01T10:05:01Z")).unwrap();
    assert_eq!(reasons(&plan), ["JobAlreadyActive"]);
    assert_eq!(
        plan.events[0].message,
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );

    let replace =
        with_spec(cron("*/5 * * * *"), |spec| spec.concurrency_policy = Some("Replace".into()));
    let replace = with_status(replace, active_status(&[&running], "2025-01-01T10:00:00Z"));
    let plan = super::plan(&replace, &[running], ts("2025-01-01T10:05:01Z")).unwrap();
    assert_eq!(reasons(&plan), ["SuccessfulDelete"]);
    assert_eq!(plan.events[0].message, "Deleted job report-old");
}

#[test]
fn finished_active_job_is_seen_and_dropped() {
    let done = child("report-done", Some("2025-01-01T10:00:00Z"), Some("Failed"));
    let cron = with_status(cron("*/5 * * * *"), active_status(&[&done], "2025-01-01T10:00:00Z"));
    let plan = plan(&cron, &[done], ts("2025-01-01T10:02:00Z")).unwrap();
    assert_eq!(reasons(&plan), ["SawCompletedJob"]);
    assert_eq!(plan.events[0].message, "Saw completed job: report-done, status: Failed");
    let status = plan.status.unwrap();
    assert_eq!(status.active, None);
    assert_eq!(status.last_schedule_time, Some(Time(ts("2025-01-01T10:00:00Z"))));
}

#[test]
fn last_successful_time_follows_the_latest_completed_job() {
    let done = child("report-done", Some("2025-01-01T10:00:00Z"), Some("Complete"));
    let status = CronJobStatus {
        last_schedule_time: Some(Time(ts("2025-01-01T10:00:00Z"))),
        last_successful_time: Some(Time(ts("2025-01-01T09:00:00Z"))),
        active: None,
    };
    let plan = plan(&with_status(cron("*/5 * * * *"), status), &[done], ts("2025-01-01T10:04:00Z"))
        .unwrap();
    assert_eq!(plan.status.unwrap().last_successful_time, Some(Time(ts("2025-01-01T10:03:00Z"))));
    assert!(plan.events.is_empty());
}

#[test]
fn active_list_bookkeeping_events() {
    let stray = child("report-stray", Some("2025-01-01T10:00:00Z"), None);
    let gone = child("report-gone", Some("2025-01-01T10:00:00Z"), None);
    let cron = with_status(cron("*/5 * * * *"), active_status(&[&gone], "2025-01-01T10:00:00Z"));
    let plan = plan(&cron, &[stray], ts("2025-01-01T10:02:00Z")).unwrap();
    assert_eq!(reasons(&plan), ["UnexpectedJob", "MissingJob"]);
    assert_eq!(plan.events[0].type_, EventType::Warning);
    assert_eq!(
        plan.events[0].message,
        "Saw a job that the controller did not create or forgot: report-stray"
    );
    assert_eq!(plan.events[1].message, "Active job went missing: report-gone");
    assert_eq!(plan.status.unwrap().active, None);
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let jobs = vec![
        child("ok-1", Some("2025-01-01T09:10:00Z"), Some("Complete")),
        child("ok-2", Some("2025-01-01T09:20:00Z"), Some("Complete")),
        child("ok-3", Some("2025-01-01T09:30:00Z"), Some("Complete")),
        child("ok-never-started", None, Some("Complete")),
        child("ok-4", Some("2025-01-01T09:40:00Z"), Some("Complete")),
        child("bad-1", Some("2025-01-01T09:15:00Z"), Some("Failed")),
        child("bad-2", Some("2025-01-01T09:25:00Z"), Some("Failed")),
        child("running", Some("2025-01-01T09:00:00Z"), None),
    ];
    let limited = |success: Option<i32>, failed: Option<i32>| {
        with_spec(cron("*/5 * * * *"), |spec| {
            spec.successful_jobs_history_limit = success;
            spec.failed_jobs_history_limit = failed;
        })
    };
    // Each row: limits, names deleted in order.
    let cases = [
        ((Some(3), Some(1)), vec!["ok-1", "ok-2", "bad-1"]),
        (
            (Some(0), Some(0)),
            vec!["ok-1", "ok-2", "ok-3", "ok-4", "ok-never-started", "bad-1", "bad-2"],
        ),
        ((Some(10), None), vec![]),
        ((None, None), vec![]),
    ];
    for ((success, failed), expected) in cases {
        let cron = with_status(
            limited(success, failed),
            active_status(&[&jobs[7]], "2025-01-01T10:00:00Z"),
        );
        let plan = plan(&cron, &jobs, ts("2025-01-01T10:01:00Z")).unwrap();
        let deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(deleted, expected, "limits {success:?}/{failed:?}");
        assert!(plan.events.iter().all(|e| e.reason == "SuccessfulDelete"));
        assert_eq!(plan.events.len(), expected.len());
    }

    // A Job already being deleted is not counted nor deleted again.
    let mut terminating = jobs.clone();
    terminating[0].metadata.deletion_timestamp = Some(Time(ts("2025-01-01T10:00:30Z")));
    let cron = limited(Some(3), None);
    let plan = plan(&cron, &terminating, ts("2025-01-01T10:01:00Z")).unwrap();
    let deleted: Vec<&str> = plan.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, ["ok-2"]);
}

#[test]
fn starting_deadline_skips_late_runs() {
    let cron = with_spec(cron("*/5 * * * *"), |spec| spec.starting_deadline_seconds = Some(60));
    // Within the deadline the 10:05 run starts.
    let plan_in_time = plan(&cron, &[], ts("2025-01-01T10:05:50Z")).unwrap();
    assert_eq!(created_name(&plan_in_time), Some(format!("report-{TEN_FIVE}").as_str()));
    // Past it, the 10:05 run is skipped; the next one is awaited.
    let late = plan(&cron, &[], ts("2025-01-01T10:06:30Z")).unwrap();
    assert_eq!(late.create, None);
    assert_eq!(late.status, None);
    assert_eq!(late.recheck_after, Some(SignedDuration::from_millis(210_100)));
}

#[test]
fn many_missed_times_warn_and_run_the_most_recent() {
    let cron = cron("* * * * *");
    let plan = plan(&cron, &[], ts("2025-01-02T10:00:30Z")).unwrap();
    assert_eq!(reasons(&plan), ["TooManyMissedTimes"]);
    assert_eq!(
        plan.events[0].message,
        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
    );
    assert_eq!(plan.create.unwrap().scheduled_time, ts("2025-01-02T10:00:00Z"));

    // A few missed times stay quiet and still run only the latest one.
    let plan = super::plan(&cron, &[], ts("2025-01-01T10:20:30Z")).unwrap();
    assert!(plan.events.is_empty());
    assert_eq!(plan.create.unwrap().scheduled_time, ts("2025-01-01T10:20:00Z"));
}

#[test]
fn irregular_schedule_finds_the_most_recent_time() {
    // Weekdays 06:30, 10:30, 14:30: intervals differ, the jump must not overshoot.
    let cron = cron("30 6-16/4 * * 1-5");
    let plan = plan(&cron, &[], ts("2025-01-08T09:00:00Z")).unwrap();
    assert_eq!(plan.create.unwrap().scheduled_time, ts("2025-01-08T06:30:00Z"));
}

#[test]
fn suspended_or_deleted_cronjob_creates_nothing() {
    let done = child("report-done", Some("2025-01-01T10:00:00Z"), Some("Complete"));
    let suspended = with_spec(cron("*/5 * * * *"), |spec| spec.suspend = Some(true));
    let mut deleted = cron("*/5 * * * *");
    deleted.metadata.deletion_timestamp = Some(Time(ts("2025-01-01T10:05:00Z")));
    for (case, cron) in [("suspended", suspended), ("deleted", deleted)] {
        let cron = with_status(cron, active_status(&[&done], "2025-01-01T10:00:00Z"));
        let plan = plan(&cron, std::slice::from_ref(&done), ts("2025-01-01T10:05:10Z")).unwrap();
        assert_eq!(plan.create, None, "{case}");
        assert_eq!(plan.recheck_after, None, "{case}");
        assert_eq!(reasons(&plan), ["SawCompletedJob"], "{case}: bookkeeping goes on");
        assert_eq!(plan.status.unwrap().active, None, "{case}");
    }
}

#[test]
fn time_zone_sets_schedule_name_and_annotation() {
    let cron = with_spec(cron("0 9 * * *"), |spec| spec.time_zone = Some("Europe/Berlin".into()));
    let plan = plan(&cron, &[], ts("2025-07-01T07:00:30Z")).unwrap();
    let creation = plan.create.unwrap();
    assert_eq!(creation.scheduled_time, ts("2025-07-01T07:00:00Z"));
    let minutes = ts("2025-07-01T07:00:00Z").as_second() / 60;
    assert_eq!(creation.job.metadata.name, Some(format!("report-{minutes}")));
    let annotations = creation.job.metadata.annotations.unwrap();
    assert_eq!(annotations[SCHEDULED_TIMESTAMP_ANNOTATION], "2025-07-01T09:00:00+02:00");
    // Next: 09:00 CEST tomorrow, 24 h later.
    assert_eq!(
        plan.recheck_after,
        Some(SignedDuration::from_secs(86_370) + SignedDuration::from_millis(100))
    );
}

#[test]
fn invalid_time_zone_and_schedule_warn() {
    let cases = [
        (
            with_spec(cron("0 9 * * *"), |spec| spec.time_zone = Some("Mars/Olympus".into())),
            "UnknownTimeZone",
            "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus",
        ),
        (
            cron("TZ=UTC 0 9 * * *"),
            "UnparseableSchedule",
            "unparseable schedule: \"TZ=UTC 0 9 * * *\" : cannot use TZ or CRON_TZ in schedule, use \
             timeZone field instead",
        ),
        (
            cron("0 9 * *"),
            "UnparseableSchedule",
            "unparseable schedule: \"0 9 * *\" : expected exactly 5 fields, found 4: [0 9 * *]",
        ),
        (
            cron("0 0 30 2 *"),
            "InvalidSchedule",
            "invalid schedule: 0 0 30 2 * : time difference between two schedules is less than 1 second",
        ),
    ];
    for (cron, reason, message) in cases {
        let plan = plan(&cron, &[], ts("2025-01-01T10:05:10Z")).unwrap();
        assert_eq!(plan.create, None, "{reason}");
        assert_eq!(plan.recheck_after, None, "{reason}");
        assert_eq!(plan.events, vec![Event::warning(reason, message)]);
    }
}

#[test]
fn job_named_for_the_time_already_active_is_not_created_again() {
    let cron = cron("*/5 * * * *");
    let first = plan(&cron, &[], ts("2025-01-01T10:05:10Z")).unwrap();
    let mut existing = first.create.unwrap().job;
    existing.metadata.uid = Some("existing-uid".into());
    // The status write was lost: lastScheduleTime is old but the Job is listed as active.
    let cron = with_status(cron, active_status(&[&existing], "2025-01-01T10:00:00Z"));
    let again = plan(&cron, &[existing], ts("2025-01-01T10:05:20Z")).unwrap();
    assert_eq!(again.create, None);
    assert_eq!(again.status, None);
}

#[test]
fn jobs_of_others_are_ignored() {
    let mut foreign = child("other-1", Some("2025-01-01T10:00:00Z"), None);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
    let plan = plan(&cron("*/5 * * * *"), &[foreign], ts("2025-01-01T10:02:00Z")).unwrap();
    assert!(plan.events.is_empty());
    assert_eq!(plan.status, None);
}

#[test]
fn missing_fields_are_errors() {
    let mut no_uid = cron("*/5 * * * *");
    no_uid.metadata.uid = None;
    assert_eq!(
        plan(&no_uid, &[], ts("2025-01-01T10:05:10Z")),
        Err(PlanError::MissingField { field: "metadata.uid" })
    );
    let no_template = with_spec(cron("*/5 * * * *"), |spec| spec.job_template.spec = None);
    assert_eq!(
        plan(&no_template, &[], ts("2025-01-01T10:05:10Z")),
        Err(PlanError::MissingField { field: "spec.jobTemplate.spec" })
    );
}
