#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Pod, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backoff::pull_key;
use super::*;
use crate::pods::observed::{ProbeResults, SandboxState};
use crate::pods::testing::*;

fn policy(policy: &'static str) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| pod.spec.as_mut().unwrap().restart_policy = Some(policy.to_owned())
}

fn init_containers(containers: Vec<Container>) -> impl FnOnce(&mut Pod) {
    move |pod: &mut Pod| pod.spec.as_mut().unwrap().init_containers = Some(containers)
}

fn sidecar(name: &str) -> Container {
    Container { restart_policy: Some("Always".to_owned()), ..container(name) }
}

fn probes(mut observed: Observed, id: &str, results: ProbeResults) -> Observed {
    observed.probes.insert(id.to_owned(), results);
    observed
}

/// What `kubectl describe` and the runtime would show of a decision.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    create_sandbox: Option<u32>,
    stop_sandbox: bool,
    kill: Vec<String>,
    start: Vec<(String, u32)>,
    held: Vec<String>,
}

fn summary(decision: &Decision) -> Summary {
    Summary {
        create_sandbox: decision.create_sandbox,
        stop_sandbox: decision.stop_sandbox,
        kill: decision.kill.iter().map(|k| k.message.clone()).collect(),
        start: decision.start.iter().map(|s| (s.name.clone(), s.restart_count)).collect(),
        held: decision.held.iter().map(|(name, f)| format!("{name}: {}", f.reason)).collect(),
    }
}

fn expect(
    create_sandbox: Option<u32>,
    stop_sandbox: bool,
    kill: &[&str],
    start: &[(&str, u32)],
    held: &[&str],
) -> Summary {
    Summary {
        create_sandbox,
        stop_sandbox,
        kill: kill.iter().map(|s| (*s).to_owned()).collect(),
        start: start.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
        held: held.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A back-off in which `container` of `pod` was last allowed to restart `ago_seconds` ago with
/// `delay` seconds of delay.
fn backoff_for(pod: &Pod, name: &str, delay: i64, updated_ago: i64) -> Backoff {
    let container = pod::container(pod, name).unwrap();
    let mut backoff = Backoff::default();
    backoff.entries.insert(
        crash_key(pod, container),
        BackoffEntry { delay: SignedDuration::from_secs(delay), last_update: ago(updated_ago) },
    );
    backoff
}

#[test]
fn next_actions_follow_sync_pod() {
    let dead_sandbox = Observed {
        sandbox: Some(SandboxState { ready: false, attempt: 2, ..sandbox() }),
        containers: vec![exited("app", "c1", 4, 255, 30)],
        ..Observed::default()
    };
    let init_pod = || with(pod(), init_containers(vec![container("migrate"), container("seed")]));
    let sidecar_pod = || with(pod(), init_containers(vec![sidecar("proxy"), container("migrate")]));
    let cases: Vec<(&str, Pod, Observed, Backoff, Summary)> = vec![
        (
            "new pod gets a sandbox and its container",
            pod(),
            Observed::default(),
            Backoff::default(),
            expect(Some(0), false, &[], &[("app", 0)], &[]),
        ),
        (
            "new pod with init containers starts the first one only",
            init_pod(),
            Observed::default(),
            Backoff::default(),
            expect(Some(0), false, &[], &[("migrate", 0)], &[]),
        ),
        (
            "running container is kept",
            pod(),
            observed(vec![running("app", "c1", 0, 30)]),
            Backoff::default(),
            expect(None, false, &[], &[], &[]),
        ),
        (
            "first crash restarts at once",
            pod(),
            observed(vec![exited("app", "c1", 0, 1, 2)]),
            Backoff::default(),
            expect(None, false, &[], &[("app", 1)], &[]),
        ),
        (
            "crash inside the back-off is held",
            pod(),
            observed(vec![exited("app", "c2", 1, 1, 4)]),
            backoff_for(&pod(), "app", 10, 11),
            expect(None, false, &[], &[], &["app: CrashLoopBackOff"]),
        ),
        (
            "crash after the back-off restarts",
            pod(),
            observed(vec![exited("app", "c2", 1, 1, 11)]),
            backoff_for(&pod(), "app", 10, 20),
            expect(None, false, &[], &[("app", 2)], &[]),
        ),
        (
            "OnFailure does not restart a success and the pod stops",
            with(pod(), policy("OnFailure")),
            observed(vec![exited("app", "c1", 0, 0, 2)]),
            Backoff::default(),
            expect(None, true, &[], &[], &[]),
        ),
        (
            "Never does not restart a failure",
            with(pod(), policy("Never")),
            observed(vec![exited("app", "c1", 0, 1, 2)]),
            Backoff::default(),
            expect(None, true, &[], &[], &[]),
        ),
        (
            "failed liveness probe restarts the container",
            pod(),
            probes(
                observed(vec![running("app", "c1", 0, 60)]),
                "c1",
                ProbeResults { liveness: Some(false), ..ProbeResults::default() },
            ),
            Backoff::default(),
            expect(
                None,
                false,
                &["Container app failed liveness probe, will be restarted"],
                &[("app", 1)],
                &[],
            ),
        ),
        (
            "failed liveness probe with Never stops the pod",
            with(pod(), policy("Never")),
            probes(
                observed(vec![running("app", "c1", 0, 60)]),
                "c1",
                ProbeResults { liveness: Some(false), ..ProbeResults::default() },
            ),
            Backoff::default(),
            expect(None, true, &["Stopping container app"], &[], &[]),
        ),
        (
            "failed startup probe restarts the container",
            pod(),
            probes(
                observed(vec![running("app", "c1", 0, 60)]),
                "c1",
                ProbeResults { startup: Some(false), ..ProbeResults::default() },
            ),
            Backoff::default(),
            expect(
                None,
                false,
                &["Container app failed startup probe, will be restarted"],
                &[("app", 1)],
                &[],
            ),
        ),
        (
            "changed image restarts the container whatever the policy",
            with(pod(), policy("Never")),
            observed(vec![with(running("app", "c1", 0, 60), |c| {
                c.spec_hash = Some(spec_hash(&Container {
                    image: Some("nginx:1.26".into()),
                    ..container("app")
                }))
            })]),
            Backoff::default(),
            expect(
                None,
                false,
                &["Container app definition changed, will be restarted"],
                &[("app", 1)],
                &[],
            ),
        ),
        (
            "unchanged hash keeps the container",
            pod(),
            observed(vec![with(running("app", "c1", 0, 60), |c| {
                c.spec_hash = Some(spec_hash(&container("app")))
            })]),
            Backoff::default(),
            expect(None, false, &[], &[], &[]),
        ),
        (
            "container in unknown state is killed and started again",
            pod(),
            observed(vec![with(running("app", "c1", 0, 60), |c| c.state = RunState::Unknown)]),
            Backoff::default(),
            expect(
                None,
                false,
                &["Container is in \"unknown\" state, try killing it before restart"],
                &[("app", 1)],
                &[],
            ),
        ),
        (
            "container left in created state is started again",
            pod(),
            observed(vec![created("app", "c1", 2)]),
            Backoff::default(),
            expect(None, false, &[], &[("app", 3)], &[]),
        ),
        (
            "init container running waits",
            init_pod(),
            observed(vec![running("migrate", "i1", 0, 3)]),
            Backoff::default(),
            expect(None, false, &[], &[], &[]),
        ),
        (
            "first init container done starts the second",
            init_pod(),
            observed(vec![exited("migrate", "i1", 0, 0, 3)]),
            Backoff::default(),
            expect(None, false, &[], &[("seed", 0)], &[]),
        ),
        (
            "last init container done starts the regular containers",
            init_pod(),
            observed(vec![exited("migrate", "i1", 0, 0, 9), exited("seed", "i2", 0, 0, 3)]),
            Backoff::default(),
            expect(None, false, &[], &[("app", 0)], &[]),
        ),
        (
            "failed init container is retried",
            init_pod(),
            observed(vec![exited("migrate", "i1", 0, 1, 3)]),
            Backoff::default(),
            expect(None, false, &[], &[("migrate", 1)], &[]),
        ),
        (
            "failed init container with Never stops the pod",
            with(init_pod(), policy("Never")),
            observed(vec![exited("migrate", "i1", 0, 1, 3)]),
            Backoff::default(),
            expect(None, true, &[], &[], &[]),
        ),
        (
            "init container in back-off holds everything after it",
            init_pod(),
            observed(vec![exited("migrate", "i2", 1, 1, 3)]),
            backoff_for(&init_pod(), "migrate", 10, 9),
            expect(None, false, &[], &[], &["migrate: CrashLoopBackOff"]),
        ),
        (
            "started sidecar lets the next init container run",
            sidecar_pod(),
            observed(vec![running("proxy", "s1", 0, 3)]),
            Backoff::default(),
            expect(None, false, &[], &[("migrate", 0)], &[]),
        ),
        (
            "sidecar waits for its startup probe",
            with(sidecar_pod(), |p| {
                p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].startup_probe =
                    Some(Probe::default())
            }),
            observed(vec![running("proxy", "s1", 0, 3)]),
            Backoff::default(),
            expect(None, false, &[], &[], &[]),
        ),
        (
            "exited sidecar is restarted after initialization",
            sidecar_pod(),
            observed(vec![
                exited("proxy", "s1", 0, 1, 3),
                exited("migrate", "i1", 0, 0, 50),
                running("app", "c1", 0, 40),
            ]),
            Backoff::default(),
            expect(None, false, &[], &[("proxy", 1)], &[]),
        ),
        (
            "sidecars stop once the regular containers are done",
            with(sidecar_pod(), policy("Never")),
            observed(vec![
                running("proxy", "s1", 0, 60),
                exited("migrate", "i1", 0, 0, 50),
                exited("app", "c1", 0, 0, 1),
            ]),
            Backoff::default(),
            expect(None, true, &["Stopping container proxy"], &[], &[]),
        ),
        (
            "deleted pod stops everything",
            with(pod(), |p| p.metadata.deletion_timestamp = Some(Time(ago(1)))),
            observed(vec![running("app", "c1", 0, 60)]),
            Backoff::default(),
            expect(None, true, &["Stopping container app"], &[], &[]),
        ),
        (
            "pod past its active deadline stops",
            with(pod(), |p| {
                p.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
                p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                    start_time: Some(Time(ago(31))),
                    ..Default::default()
                });
            }),
            observed(vec![running("app", "c1", 0, 30)]),
            Backoff::default(),
            expect(None, true, &["Stopping container app"], &[], &[]),
        ),
        (
            "dead sandbox is replaced with the next attempt",
            pod(),
            dead_sandbox.clone(),
            Backoff::default(),
            expect(Some(3), false, &[], &[("app", 5)], &[]),
        ),
        (
            "dead sandbox of a finished Never pod is not replaced",
            with(pod(), policy("Never")),
            dead_sandbox,
            Backoff::default(),
            expect(None, false, &[], &[], &[]),
        ),
    ];
    for (name, pod, observed, backoff, expected) in cases {
        assert_eq!(summary(&decide(&pod, &observed, &backoff, now())), expected, "{name}");
    }
}

#[test]
fn crash_loop_message_and_event_name_the_delay() {
    let pod = pod();
    let decision = decide(
        &pod,
        &observed(vec![exited("app", "c3", 2, 1, 4)]),
        &backoff_for(&pod, "app", 40, 5),
        now(),
    );
    let held = &decision.held["app"];
    assert_eq!(
        held.message,
        format!("back-off 40s restarting failed container=app pod=web_default({UID})")
    );
    assert_eq!(decision.requeue_after, Some(SignedDuration::from_secs(36)));
    let event = &decision.events[0];
    assert_eq!((event.warning, event.reason), (true, "BackOff"));
    assert_eq!(
        event.message,
        format!("Back-off restarting failed container app in pod web_default({UID})")
    );
}

#[test]
fn back_off_doubles_to_five_minutes_and_resets_after_ten_minutes_of_running() {
    let pod = pod();
    let mut backoff = Backoff::default();
    let mut clock = now();
    let mut restarts = 0;
    let mut delays = Vec::new();
    // The container crashes a second after each start.
    let mut finished = clock;
    for _ in 0..30 {
        if delays.len() == 7 {
            break;
        }
        let crashed = ContainerState {
            finished_at: Some(finished),
            created_at: finished - SignedDuration::from_secs(2),
            ..exited("app", &format!("c{restarts}"), restarts, 1, 0)
        };
        let observed = observed(vec![crashed.clone()]);
        let decision = decide(&pod, &observed, &backoff, clock);
        if let Some(wait) = decision.requeue_after {
            // Held: look again when the back-off ends.
            assert!(decision.start.is_empty());
            clock += wait;
            continue;
        }
        assert_eq!(decision.start.len(), 1, "restarts once the back-off ended");
        backoff = decision.backoff;
        let entry =
            *backoff.entry(&crash_key(&pod, &pod.spec.as_ref().unwrap().containers[0])).unwrap();
        delays.push(entry.delay.as_secs());
        restarts += 1;
        finished = clock + SignedDuration::from_secs(1);
        clock = finished;
    }
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);

    // Now it runs for eleven minutes before crashing: the next restart is immediate and the
    // back-off starts over at 10 s.
    let started = clock;
    let finished = started + SignedDuration::from_secs(660);
    let crashed = ContainerState {
        started_at: Some(started),
        finished_at: Some(finished),
        created_at: started,
        ..exited("app", "late", restarts, 1, 0)
    };
    let decision = decide(&pod, &observed(vec![crashed]), &backoff, finished);
    assert_eq!(decision.start.len(), 1);
    let key = crash_key(&pod, &pod.spec.as_ref().unwrap().containers[0]);
    assert_eq!(decision.backoff.entry(&key).unwrap().delay, INITIAL_BACKOFF);
}

#[test]
fn image_pull_back_off_wraps_the_last_error() {
    let pod = pod();
    let app = pod.spec.as_ref().unwrap().containers[0].clone();
    let mut backoff = Backoff::default();
    let (failure, event) = backoff.image_pull_failed(&pod, &app, "rpc error: not found", now());
    assert_eq!(
        (failure.reason.as_str(), failure.message.as_str()),
        ("ErrImagePull", "rpc error: not found")
    );
    assert_eq!(event.message, "Failed to pull image \"nginx:1.27\": rpc error: not found");

    let (held, event) =
        backoff.image_pull_held(&pod, &app, now() + SignedDuration::from_secs(9)).unwrap();
    assert_eq!(held.reason, "ImagePullBackOff");
    assert_eq!(held.message, "Back-off pulling image \"nginx:1.27\": rpc error: not found");
    assert_eq!(event.message, "Back-off pulling image \"nginx:1.27\"");
    assert!(backoff.image_pull_held(&pod, &app, now() + SignedDuration::from_secs(10)).is_none());

    let later = now() + SignedDuration::from_secs(10);
    backoff.image_pull_failed(&pod, &app, "rpc error: not found", later);
    assert!(backoff.image_pull_held(&pod, &app, later + SignedDuration::from_secs(19)).is_some());
    assert!(backoff.image_pull_held(&pod, &app, later + SignedDuration::from_secs(20)).is_none());

    backoff.collect_garbage(later + SignedDuration::from_secs(601));
    assert!(backoff.entry(&pull_key(&pod, "nginx:1.27")).is_none());
}

#[test]
fn old_init_container_runs_are_removed_and_purged_for_a_new_sandbox() {
    let pod = with(pod(), init_containers(vec![container("migrate")]));
    let runs = vec![
        exited("migrate", "i3", 2, 1, 3),
        exited("migrate", "i2", 1, 1, 30),
        exited("migrate", "i1", 0, 1, 90),
    ];
    let decision = decide(&pod, &observed(runs.clone()), &Backoff::default(), now());
    assert_eq!(decision.remove, ["i2", "i1"]);

    let fresh = Observed { sandbox: None, containers: runs, ..Observed::default() };
    let decision = decide(&pod, &fresh, &Backoff::default(), now());
    assert_eq!(decision.create_sandbox, Some(0));
    assert_eq!(decision.remove, ["i3", "i2", "i1"]);
}
