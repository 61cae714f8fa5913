#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

use super::*;
use crate::events::EventType;
use crate::objects::count;

const UID: &str = "job-uid";

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> Time {
    Time(now() - SignedDuration::from_secs(seconds))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The labels the API server adds to a Job's template (and so to its pods).
fn job_labels() -> BTreeMap<String, String> {
    map(&[
        ("batch.kubernetes.io/controller-uid", UID),
        ("batch.kubernetes.io/job-name", "pi"),
        ("controller-uid", UID),
        ("job-name", "pi"),
    ])
}

/// A Job "pi" as the API server stores it after defaulting.
fn job(completions: Option<i32>, parallelism: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            creation_timestamp: Some(ago(600)),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            completion_mode: Some("NonIndexed".into()),
            pod_replacement_policy: Some("TerminatingOrFailed".into()),
            suspend: Some(false),
            selector: Some(LabelSelector {
                match_labels: Some(map(&[("batch.kubernetes.io/controller-uid", UID)])),
                ..LabelSelector::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(job_labels()), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "pi".into(),
                        image: Some("perl:5.34".into()),
                        ..Container::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn with_spec(mut job: Job, change: impl FnOnce(&mut JobSpec)) -> Job {
    change(job.spec.as_mut().unwrap());
    job
}

fn with_status(mut job: Job, status: JobStatus) -> Job {
    job.status = Some(status);
    job
}

fn indexed(completions: i32, parallelism: i32) -> Job {
    with_spec(job(Some(completions), parallelism), |spec| {
        spec.completion_mode = Some("Indexed".into());
    })
}

/// A tracked pod of the Job, created 5 minutes ago, on a node.
fn pod(name: &str, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            resource_version: Some("1".into()),
            labels: Some(job_labels()),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            owner_references: Some(vec![owner_reference(&job(None, 1)).unwrap()]),
            creation_timestamp: Some(ago(300)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec { node_name: Some("n1".into()), ..PodSpec::default() }),
        status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
    }
}

fn with(mut pod: Pod, change: impl FnOnce(&mut Pod)) -> Pod {
    change(&mut pod);
    pod
}

/// Finished (all containers terminated) `seconds` ago.
fn finished(seconds: i64) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| {
        pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "pi".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    finished_at: Some(ago(seconds)),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
    }
}

fn ready(pod: &mut Pod) {
    pod.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(ago(60)),
        ..PodCondition::default()
    }]);
}

fn untracked(pod: &mut Pod) {
    pod.metadata.finalizers = None;
}

fn index(index: &'static str) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| {
        pod.metadata.annotations = Some(map(&[(COMPLETION_INDEX_ANNOTATION, index)]));
    }
}

fn names(refs: &[PodRef]) -> Vec<&str> {
    refs.iter().map(|pod| pod.name.as_str()).collect()
}

fn deleted(plan: &Plan) -> Vec<(&str, bool)> {
    plan.delete.iter().map(|d| (d.pod.name.as_str(), d.remove_finalizer_first)).collect()
}

fn conditions(status: &JobStatus) -> Vec<(&str, &str, &str)> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            (
                c.type_.as_str(),
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
            )
        })
        .collect()
}

fn uncounted(status: &JobStatus) -> (Vec<&str>, Vec<&str>) {
    fn uids(list: &Option<Vec<String>>) -> Vec<&str> {
        list.iter().flatten().map(String::as_str).collect()
    }
    let lists = status.uncounted_terminated_pods.as_ref().unwrap();
    (uids(&lists.succeeded), uids(&lists.failed))
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|event| event.reason.as_str()).collect()
}

/// Applies `plan` as the caller would: its status becomes the Job's.
fn after(job: &Job, plan: &Plan) -> Job {
    let mut next = job.clone();
    if let Some(status) = &plan.status {
        next.status = Some(status.clone());
    }
    next
}

#[test]
fn new_job_creates_parallelism_pods_from_the_template() {
    let cases = [(Some(5), 2, 2), (Some(1), 3, 1), (None, 3, 3), (Some(4), 0, 0)];
    for (completions, parallelism, expected) in cases {
        let job = job(completions, parallelism);
        let plan = plan(&job, &[], now()).unwrap();
        assert_eq!(plan.create.len(), expected, "{completions:?}/{parallelism}");
        let status = plan.status.unwrap();
        assert_eq!(status.start_time, Some(Time(now())));
        assert_eq!(status.active, (expected > 0).then_some(count(expected)));
        assert_eq!((status.ready, status.terminating), (Some(0), Some(0)));
        assert_eq!(uncounted(&status), (vec![], vec![]));
    }

    let job = job(Some(1), 1);
    let pod = &plan(&job, &[], now()).unwrap().create[0];
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(pod.metadata.labels, Some(job_labels()));
    assert_eq!(pod.metadata.finalizers, Some(vec![TRACKING_FINALIZER.to_owned()]));
    assert_eq!(
        pod.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "pi".into(),
            uid: UID.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );
    assert_eq!(pod.spec, job.spec.as_ref().unwrap().template.spec);
    assert_eq!(pod_created_event("pi-x7k2p").message, "Created pod: pi-x7k2p");
}

#[test]
fn remaining_completions_cap_new_pods() {
    let job = with_status(job(Some(3), 5), JobStatus { succeeded: Some(1), ..Default::default() });
    let pods = [pod("a", "Running")];
    let plan = plan(&job, &pods, now()).unwrap();
    assert_eq!(plan.create.len(), 1, "3 completions - 1 succeeded - 1 running");
    assert_eq!(plan.status.unwrap().active, Some(2));
}

#[test]
fn success_is_counted_through_uncounted_pods_then_completes() {
    let job = job(Some(1), 1);
    let done = with(pod("a", "Succeeded"), finished(5));

    // --- the pod's success is recorded, its finalizer released, SuccessCriteriaMet set
    let first = plan(&job, std::slice::from_ref(&done), now()).unwrap();
    let status = first.status.clone().unwrap();
    assert_eq!(uncounted(&status), (vec!["a-uid"], vec![]));
    assert_eq!(status.succeeded, None, "not counted until the finalizer is gone");
    assert_eq!(
        conditions(&status),
        [("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")]
    );
    assert_eq!(names(&first.remove_finalizers), ["a"]);
    assert!(first.create.is_empty() && first.events.is_empty());
    assert_eq!(status.completion_time, None);

    // --- once the finalizer is gone (or the pod deleted) the Job completes
    let job = after(&job, &first);
    for pods in [vec![with(done.clone(), untracked)], vec![]] {
        let second = plan(&job, &pods, now()).unwrap();
        let status = second.status.clone().unwrap();
        assert_eq!(status.succeeded, Some(1));
        assert_eq!(uncounted(&status), (vec![], vec![]));
        assert_eq!(
            conditions(&status),
            [
                (
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
                ("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
            ]
        );
        assert_eq!(status.completion_time, Some(Time(now())));
        assert_eq!(second.events, vec![Event::normal("Completed", "Job completed")]);
        assert!(second.create.is_empty());

        // --- finished: nothing more happens
        let third = plan(&after(&job, &second), &pods, now()).unwrap();
        assert_eq!(third, Plan::default());
    }
}

#[test]
fn backoff_limit_fails_the_job_after_its_pods_are_gone() {
    let job = with_spec(job(Some(5), 2), |spec| spec.backoff_limit = Some(1));
    let pods = [
        with(pod("f1", "Failed"), finished(100)),
        with(pod("f2", "Failed"), finished(50)),
        with(pod("run", "Running"), ready),
    ];

    // --- FailureTarget is recorded, the running pod deleted keeping its finalizer
    let first = plan(&job, &pods, now()).unwrap();
    let status = first.status.clone().unwrap();
    let reason =
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit");
    assert_eq!(conditions(&status), [reason]);
    assert_eq!(deleted(&first), [("run", false)]);
    assert_eq!(uncounted(&status).1, ["f1-uid", "f2-uid", "run-uid"]);
    assert_eq!(names(&first.remove_finalizers), ["f1", "f2", "run"]);
    assert_eq!((status.active, status.ready, status.terminating), (None, Some(0), Some(1)));
    assert!(first.create.is_empty());
    assert_eq!(reasons(&first), ["SuccessfulDelete"]);
    assert_eq!(first.events[0].message, "Deleted pod: run");

    // --- the deleted pod is still terminating: Failed waits
    let job = after(&job, &first);
    let terminating = with(pods[2].clone(), |pod| {
        untracked(pod);
        pod.metadata.deletion_timestamp = Some(ago(1));
    });
    let gone = |pod: &Pod| with(pod.clone(), untracked);
    let waiting = [gone(&pods[0]), gone(&pods[1]), terminating];
    let second = plan(&job, &waiting, now()).unwrap();
    let status = second.status.clone().unwrap();
    assert_eq!(status.failed, Some(3));
    assert_eq!(conditions(&status), [reason]);
    assert!(second.events.is_empty() && second.delete.is_empty());

    // --- all gone: Failed, with the warning event
    let job = after(&job, &second);
    let third = plan(&job, &[gone(&pods[0]), gone(&pods[1])], now()).unwrap();
    let status = third.status.clone().unwrap();
    assert_eq!(conditions(&status), [reason, ("Failed", reason.1, reason.2)]);
    assert_eq!(status.completion_time, None);
    assert_eq!(
        third.events,
        vec![Event::warning("BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    );
    assert_eq!(third.events[0].type_, EventType::Warning);
}

#[test]
fn failed_pods_are_replaced_after_the_pod_failure_backoff() {
    let failed = |name: &str, seconds| with(pod(name, "Failed"), finished(seconds));
    // Each row: pods, expected creations, expected recheck.
    let cases: Vec<(&str, Vec<Pod>, usize, Option<i64>)> = vec![
        ("one failure 4s ago waits 10s", vec![failed("f1", 4)], 0, Some(6)),
        ("one failure 11s ago is replaced", vec![failed("f1", 11)], 1, None),
        (
            "three failures wait 40s",
            vec![failed("f1", 90), failed("f2", 60), failed("f3", 30)],
            0,
            Some(10),
        ),
        (
            "failures before a success do not count",
            vec![
                failed("f1", 90),
                failed("f2", 80),
                with(pod("ok", "Succeeded"), finished(70)),
                failed("f3", 5),
            ],
            0,
            Some(5),
        ),
        (
            "the backoff is capped at 10 minutes",
            (0..8).map(|i| failed(&format!("f{i}"), 100 - i)).collect(),
            0,
            Some(600 - 93),
        ),
    ];
    for (case, pods, creates, recheck) in cases {
        let job = with_spec(job(Some(20), 1), |spec| spec.backoff_limit = Some(100));
        let plan = plan(&job, &pods, now()).unwrap();
        assert_eq!(plan.create.len(), creates, "{case}");
        assert_eq!(plan.recheck_after, recheck.map(SignedDuration::from_secs), "{case}");
    }
}

#[test]
fn active_deadline_fails_the_job_or_schedules_a_recheck() {
    let deadline = |started: i64| {
        let job = with_spec(job(Some(1), 1), |spec| spec.active_deadline_seconds = Some(60));
        with_status(job, JobStatus { start_time: Some(ago(started)), ..Default::default() })
    };
    let pods = [with(pod("run", "Running"), ready)];

    let early = plan(&deadline(20), &pods, now()).unwrap();
    assert_eq!(early.recheck_after, Some(SignedDuration::from_secs(40)));
    assert!(early.delete.is_empty());

    let late = plan(&deadline(60), &pods, now()).unwrap();
    let status = late.status.clone().unwrap();
    assert_eq!(
        conditions(&status),
        [("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline")]
    );
    assert_eq!(deleted(&late), [("run", false)]);
    assert_eq!(status.ready, Some(0));
}

#[test]
fn suspend_deletes_active_pods_and_resume_restarts_the_clock() {
    let job = with_spec(job(Some(3), 2), |spec| spec.suspend = Some(true));
    let pods = [with(pod("a", "Running"), ready), pod("b", "Pending")];
    let plan_suspend = plan(&job, &pods, now()).unwrap();
    assert_eq!(
        deleted(&plan_suspend),
        [("b", true), ("a", true)],
        "finalizers go first: not failures"
    );
    assert!(plan_suspend.create.is_empty());
    let status = plan_suspend.status.clone().unwrap();
    assert_eq!(conditions(&status), [("Suspended", "JobSuspended", "Job suspended")]);
    assert_eq!(status.start_time, None, "a Job created suspended has not started");
    assert_eq!((status.active, status.terminating), (None, Some(2)));
    assert_eq!(reasons(&plan_suspend), ["SuccessfulDelete", "SuccessfulDelete", "Suspended"]);
    assert_eq!(plan_suspend.events[2].message, "Job suspended");

    // Resumed later: the condition turns False, startTime restarts, pods are created.
    let mut resumed = after(&job, &plan_suspend);
    resumed.spec.as_mut().unwrap().suspend = Some(false);
    let mut status = resumed.status.clone().unwrap();
    status.start_time = Some(ago(3600));
    resumed.status = Some(status);
    let plan_resume = plan(&resumed, &[], now()).unwrap();
    let status = plan_resume.status.clone().unwrap();
    assert_eq!(conditions(&status), [("Suspended", "JobResumed", "Job resumed")]);
    assert_eq!(status.conditions.as_ref().unwrap()[0].status, "False");
    assert_eq!(status.start_time, Some(Time(now())));
    assert_eq!(plan_resume.create.len(), 2);
    assert_eq!(reasons(&plan_resume), ["Resumed"]);
}

#[test]
fn indexed_job_creates_the_lowest_pending_indexes() {
    let job = with_status(
        indexed(5, 3),
        JobStatus { completed_indexes: Some("0".into()), succeeded: Some(1), ..Default::default() },
    );
    let pods =
        [with(pod("one", "Running"), index("1")), with(pod("three", "Succeeded"), index("3"))];
    let plan = plan(&job, &pods, now()).unwrap();
    let created: Vec<&str> =
        plan.create.iter().map(|pod| pod.metadata.generate_name.as_deref().unwrap()).collect();
    assert_eq!(created, ["pi-2-", "pi-4-"]);
    let pod = &plan.create[0];
    assert_eq!(pod.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION], "2");
    assert_eq!(pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION], "2");
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["job-name"], "pi");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
    let env = &spec.containers[0].env.as_ref().unwrap()[0];
    assert_eq!(env.name, COMPLETION_INDEX_ENV);
    assert_eq!(
        env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path,
        "metadata.labels['batch.kubernetes.io/job-completion-index']"
    );
    let status = plan.status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!(status.succeeded, Some(2));
    assert_eq!(status.active, Some(3));
    assert_eq!(names(&plan.remove_finalizers), ["three"]);
}

#[test]
fn indexed_job_deletes_duplicate_and_invalid_indexes() {
    let pods = [
        with(pod("dup-ready", "Running"), |pod| {
            index("1")(pod);
            ready(pod);
        }),
        with(pod("dup-pending", "Pending"), index("1")),
        with(pod("out-of-range", "Running"), index("7")),
        pod("no-index", "Running"),
        with(pod("zero", "Running"), index("0")),
    ];
    let plan = plan(&indexed(3, 3), &pods, now()).unwrap();
    assert_eq!(deleted(&plan), [("no-index", true), ("dup-pending", true), ("out-of-range", true)]);
    assert!(plan.create.is_empty(), "deleting and creating never share a plan");
}

#[test]
fn scale_down_deletes_the_least_advanced_pods() {
    let pods = [
        with(pod("ready", "Running"), ready),
        pod("running", "Running"),
        pod("pending", "Pending"),
        with(pod("unscheduled", "Pending"), |pod| pod.spec.as_mut().unwrap().node_name = None),
    ];
    let plan = plan(&job(Some(10), 1), &pods, now()).unwrap();
    assert_eq!(deleted(&plan), [("unscheduled", true), ("pending", true), ("running", true)]);
    assert_eq!(plan.status.unwrap().active, Some(1));
}

#[test]
fn orphans_are_adopted_and_strays_released() {
    let pods = [
        with(pod("orphan", "Running"), |pod| {
            pod.metadata.owner_references = None;
            untracked(pod);
        }),
        with(pod("stray", "Running"), |pod| pod.metadata.labels = Some(map(&[("app", "x")]))),
        with(pod("foreign", "Running"), |pod| {
            pod.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        }),
        with(pod("orphan-deleted", "Running"), |pod| {
            pod.metadata.owner_references = None;
            pod.metadata.deletion_timestamp = Some(ago(1));
        }),
    ];
    let plan = plan(&job(Some(1), 1), &pods, now()).unwrap();
    assert_eq!(names(&plan.adopt), ["orphan"]);
    assert_eq!(names(&plan.release), ["stray"]);
    assert!(plan.create.is_empty(), "the adopted pod counts");
    assert_eq!(plan.status.unwrap().active, Some(1));
}

#[test]
fn ttl_after_finished_schedules_the_job_deletion() {
    let finished_job = |seconds_ago: i64| {
        let job = with_spec(job(Some(1), 1), |spec| spec.ttl_seconds_after_finished = Some(100));
        let complete = JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            last_transition_time: Some(ago(seconds_ago)),
            ..JobCondition::default()
        };
        with_status(job, JobStatus { conditions: Some(vec![complete]), ..Default::default() })
    };
    let waiting = plan(&finished_job(30), &[], now()).unwrap();
    assert_eq!(waiting.delete_job_at, Some(now() + SignedDuration::from_secs(70)));
    assert_eq!(waiting.recheck_after, Some(SignedDuration::from_secs(70)));
    assert_eq!(waiting.status, None);

    let expired = plan(&finished_job(300), &[], now()).unwrap();
    assert_eq!(expired.delete_job_at, Some(now() - SignedDuration::from_secs(200)));
    assert_eq!(expired.recheck_after, None);

    let mut deleting = finished_job(300);
    deleting.metadata.deletion_timestamp = Some(ago(1));
    assert_eq!(plan(&deleting, &[], now()).unwrap().delete_job_at, None);

    // The plan that completes the Job already knows when it expires.
    let job = with_spec(job(Some(1), 1), |spec| spec.ttl_seconds_after_finished = Some(0));
    let met = JobCondition {
        type_: "SuccessCriteriaMet".into(),
        status: "True".into(),
        ..Default::default()
    };
    let job = with_status(
        job,
        JobStatus { succeeded: Some(1), conditions: Some(vec![met]), ..Default::default() },
    );
    let plan = plan(&job, &[], now()).unwrap();
    assert_eq!(plan.delete_job_at, Some(now()));
}

#[test]
fn finished_job_releases_leftover_finalizers_only() {
    let complete = JobCondition {
        type_: "Complete".into(),
        status: "True".into(),
        last_transition_time: Some(ago(10)),
        ..JobCondition::default()
    };
    let job = with_status(
        job(Some(1), 1),
        JobStatus { conditions: Some(vec![complete]), ..Default::default() },
    );
    let pods = [
        with(pod("left", "Succeeded"), finished(20)),
        with(pod("clean", "Succeeded"), untracked),
        with(pod("foreign", "Succeeded"), |pod| {
            pod.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        }),
    ];
    let plan = plan(&job, &pods, now()).unwrap();
    assert_eq!(names(&plan.remove_finalizers), ["left"]);
    assert_eq!((plan.status, plan.create.len(), plan.delete.len()), (None, 0, 0));
}

#[test]
fn work_queue_completes_when_one_succeeded_and_none_run() {
    let job = job(None, 3);
    let pods = [with(pod("ok", "Succeeded"), finished(5)), pod("still", "Running")];
    let running = plan(&job, &pods, now()).unwrap();
    assert!(running.create.is_empty(), "no replacements once one pod succeeded");
    assert!(conditions(running.status.as_ref().unwrap()).is_empty());

    let done = [pods[0].clone(), with(pod("still", "Succeeded"), finished(1))];
    let finished = plan(&job, &done, now()).unwrap();
    assert_eq!(conditions(finished.status.as_ref().unwrap())[0].0, "SuccessCriteriaMet");
}

#[test]
fn on_failure_restarts_count_against_the_backoff_limit() {
    let job = with_spec(job(Some(1), 1), |spec| {
        spec.backoff_limit = Some(3);
        spec.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    });
    let restarting = |restarts| {
        with(pod("crashy", "Running"), move |pod| {
            pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
                restart_count: restarts,
                ..ContainerStatus::default()
            }]);
        })
    };
    let below = plan(&job, &[restarting(2)], now()).unwrap();
    assert!(conditions(below.status.as_ref().unwrap()).is_empty());
    let at = plan(&job, &[restarting(3)], now()).unwrap();
    assert_eq!(conditions(at.status.as_ref().unwrap())[0].1, "BackoffLimitExceeded");
}

#[test]
fn deleted_job_releases_every_finalizer_and_creates_nothing() {
    let mut job = job(Some(3), 3);
    job.metadata.deletion_timestamp = Some(ago(1));
    let pods = [pod("run", "Running"), with(pod("ok", "Succeeded"), finished(5))];
    let plan = plan(&job, &pods, now()).unwrap();
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(names(&plan.remove_finalizers), ["run", "ok"]);
    assert_eq!(uncounted(plan.status.as_ref().unwrap()).0, ["ok-uid"], "the success still counts");
}

#[test]
fn jobs_this_controller_does_not_own_are_skipped() {
    let managed = with_spec(job(Some(1), 1), |spec| {
        spec.managed_by = Some("kueue.x-k8s.io/multikueue".into())
    });
    assert_eq!(plan(&managed, &[], now()).unwrap(), Plan::default());

    let unknown =
        with_spec(job(Some(1), 1), |spec| spec.completion_mode = Some("Sometimes".into()));
    let plan = plan(&unknown, &[], now()).unwrap();
    assert_eq!(
        plan.events,
        vec![Event::warning(
            "UnknownCompletionMode",
            "Skipped Job sync because completion mode is unknown"
        )]
    );
    assert!(plan.create.is_empty() && plan.status.is_none());
}

#[test]
fn pod_replacement_policy_failed_waits_for_terminating_pods() {
    // Deleted a minute ago, past the 10 s failure backoff it starts when it counts as failed.
    let terminating =
        with(pod("going", "Running"), |pod| pod.metadata.deletion_timestamp = Some(ago(60)));
    let cases = [("TerminatingOrFailed", 1, Some("going-uid")), ("Failed", 0, None)];
    for (policy, creates, failed) in cases {
        let job =
            with_spec(job(Some(2), 1), |spec| spec.pod_replacement_policy = Some(policy.into()));
        let plan = plan(&job, std::slice::from_ref(&terminating), now()).unwrap();
        assert_eq!(plan.create.len(), creates, "{policy}");
        let status = plan.status.unwrap();
        assert_eq!(
            uncounted(&status).1.first().copied(),
            failed,
            "{policy}: a deleted pod is a failure?"
        );
        assert_eq!(status.terminating, Some(1), "{policy}");
    }
}

#[test]
fn backoff_limit_per_index_replaces_then_fails_indexes() {
    let job = with_spec(indexed(2, 2), |spec| {
        spec.backoff_limit_per_index = Some(1);
        spec.backoff_limit = Some(i32::MAX);
    });
    let first_failure = with(pod("a0", "Failed"), |pod| {
        index("0")(pod);
        finished(30)(pod);
    });
    let running = with(pod("b1", "Running"), index("1"));

    // --- index 0 failed once: replaced after 10 s, with its failure count; the failed pod keeps
    // its finalizer until the replacement exists
    let plan_retry = plan(&job, &[first_failure.clone(), running.clone()], now()).unwrap();
    assert_eq!(plan_retry.create.len(), 1);
    let annotations = plan_retry.create[0].metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[COMPLETION_INDEX_ANNOTATION], "0");
    assert_eq!(annotations[INDEX_FAILURE_COUNT_ANNOTATION], "1");
    assert!(plan_retry.remove_finalizers.is_empty(), "delayed until replaced");
    assert_eq!(plan_retry.status.as_ref().unwrap().failed_indexes.as_deref(), Some(""));

    let recent = with(first_failure.clone(), finished(4));
    let plan_wait = plan(&job, &[recent, running.clone()], now()).unwrap();
    assert!(plan_wait.create.is_empty());
    assert_eq!(plan_wait.recheck_after, Some(SignedDuration::from_secs(6)));

    // --- the replacement failed too, at the limit: index 0 fails for good; with index 1
    // succeeded every index has an outcome, so the Job fails
    let second_failure = with(pod("a0-2", "Failed"), |pod| {
        pod.metadata.annotations =
            Some(map(&[(COMPLETION_INDEX_ANNOTATION, "0"), (INDEX_FAILURE_COUNT_ANNOTATION, "1")]));
        finished(5)(pod);
    });
    let done = with(pod("b1", "Succeeded"), |pod| {
        index("1")(pod);
        finished(3)(pod);
    });
    let plan_fail =
        plan(&job, &[with(first_failure, untracked), second_failure, done], now()).unwrap();
    let status = plan_fail.status.unwrap();
    assert_eq!(status.failed_indexes.as_deref(), Some("0"));
    assert_eq!(status.completed_indexes.as_deref(), Some("1"));
    assert_eq!(conditions(&status), [("FailureTarget", "FailedIndexes", "Job has failed indexes")]);
}

#[test]
fn creations_are_capped_per_plan() {
    let plan = plan(&job(Some(2000), 1200), &[], now()).unwrap();
    assert_eq!(plan.create.len(), MAX_POD_CREATE_DELETE);
    assert_eq!(plan.status.unwrap().active, Some(500));
}

#[test]
fn steady_state_writes_no_status() {
    let job = job(Some(2), 1);
    let pods = [with(pod("run", "Running"), ready)];
    let first = plan(&job, &pods, now()).unwrap();
    let status = first.status.clone().unwrap();
    assert_eq!((status.active, status.ready), (Some(1), Some(1)));
    let again = plan(&after(&job, &first), &pods, now()).unwrap();
    assert_eq!(again, Plan::default());
}

#[test]
fn uncounted_failed_pod_is_not_counted_twice() {
    // A failure already listed as uncounted whose finalizer removal failed is listed again for
    // removal but not added twice.
    let job = with_status(
        job(Some(3), 1),
        JobStatus {
            start_time: Some(ago(100)),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                failed: Some(vec!["f-uid".into()]),
                succeeded: None,
            }),
            ..Default::default()
        },
    );
    let pods = [with(pod("f", "Failed"), finished(200)), pod("run", "Running")];
    let plan = plan(&job, &pods, now()).unwrap();
    assert_eq!(names(&plan.remove_finalizers), ["f"]);
    let status = plan.status.unwrap_or_else(|| job.status.clone().unwrap());
    assert_eq!(uncounted(&status).1, ["f-uid"]);
    assert_eq!(status.failed, None);
}

#[test]
fn missing_or_invalid_fields_are_errors() {
    let mut no_selector = job(Some(1), 1);
    no_selector.spec.as_mut().unwrap().selector = None;
    assert_eq!(
        plan(&no_selector, &[], now()),
        Err(PlanError::MissingField { field: "spec.selector" })
    );
    let empty = with_spec(job(Some(1), 1), |spec| spec.selector = Some(LabelSelector::default()));
    assert!(matches!(plan(&empty, &[], now()), Err(PlanError::InvalidSelector { .. })));
    let no_completions = with_spec(indexed(1, 1), |spec| spec.completions = None);
    assert_eq!(
        plan(&no_completions, &[], now()),
        Err(PlanError::MissingField { field: "spec.completions" })
    );
}

#[test]
fn index_strings_round_trip() {
    let cases = [
        ("", 10, ""),
        ("0", 10, "0"),
        ("0,1", 10, "0,1"),
        ("0-2,4", 10, "0-2,4"),
        ("1-3,5-9", 7, "1-3,5,6"),
        ("x,2,8", 5, "2"),
    ];
    for (text, completions, expected) in cases {
        assert_eq!(indexes::Intervals::parse(text, completions).to_string(), expected, "{text}");
    }
    let merged = indexes::Intervals::parse("0,4", 10).with_indexes([1, 2, 3, 7]);
    assert_eq!((merged.to_string(), merged.total()), ("0-4,7".to_owned(), 6));
}

#[test]
fn indexed_generate_name_stays_within_the_generated_name_limit() {
    assert_eq!(manage::generate_name_with_index("pi", 12), "pi-12-");
    let long = "a".repeat(60);
    let name = manage::generate_name_with_index(&long, 3);
    assert_eq!(name.len(), 58);
    assert!(name.ends_with("a-3-"));
}
