//! Decisions and statuses together over a pod's life, as `kubectl get pods` shows it, with an
//! in-memory runtime that executes decisions.
#![allow(clippy::unwrap_used)]

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::pods::observed::{ContainerState, Observed, RunState, SandboxState};
use crate::pods::restart::{decide, Backoff};
use crate::pods::status::pod_status;
use crate::pods::testing::*;

/// A runtime that does what decisions say, instantly.
struct FakeRuntime {
    observed: Observed,
    backoff: Backoff,
    clock: Timestamp,
    next_id: u32,
}

impl FakeRuntime {
    fn new() -> Self {
        FakeRuntime {
            observed: Observed::default(),
            backoff: Backoff::default(),
            clock: now(),
            next_id: 0,
        }
    }

    /// Runs one sync: decide, execute, then write the status into the pod.
    fn sync(&mut self, pod: &mut Pod) {
        let decision = decide(pod, &self.observed, &self.backoff, self.clock);
        for kill in &decision.kill {
            let instance =
                self.observed.containers.iter_mut().find(|c| c.id == kill.container_id).unwrap();
            instance.state = RunState::Exited;
            instance.exit_code = 137;
            instance.finished_at = Some(self.clock);
        }
        if decision.stop_sandbox {
            self.observed.sandbox.as_mut().unwrap().ready = false;
        }
        self.observed.containers.retain(|c| !decision.remove.contains(&c.id));
        if let Some(attempt) = decision.create_sandbox {
            self.observed.sandbox =
                Some(SandboxState { id: format!("sb{attempt}"), attempt, ..sandbox() });
        }
        for start in &decision.start {
            self.next_id += 1;
            self.observed.containers.push(ContainerState {
                id: format!("c{}", self.next_id),
                sandbox_id: self.observed.sandbox.as_ref().unwrap().id.clone(),
                name: start.name.clone(),
                attempt: start.restart_count,
                state: RunState::Running,
                created_at: self.clock,
                started_at: Some(self.clock),
                image: "docker.io/library/nginx:1.27".to_owned(),
                image_ref: "docker.io/library/nginx@sha256:abc".to_owned(),
                ..ContainerState::default()
            });
            self.observed.start_failures.remove(&start.name);
        }
        self.observed.start_failures.extend(decision.held.clone());
        self.backoff = decision.backoff;
        pod.status =
            Some(pod_status(pod, &self.observed, &["192.168.1.10".to_owned()], self.clock));
    }

    /// The newest instance of `name` exits with `code`.
    fn exit(&mut self, name: &str, code: i32) {
        let mut instances: Vec<&mut ContainerState> =
            self.observed.containers.iter_mut().filter(|c| c.name == name).collect();
        instances.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        let latest = instances.into_iter().next().unwrap();
        latest.state = RunState::Exited;
        latest.exit_code = code;
        latest.finished_at = Some(self.clock);
    }

    fn advance(&mut self, seconds: i64) {
        self.clock += SignedDuration::from_secs(seconds);
    }
}

fn view(pod: &Pod) -> Columns {
    kubectl(pod, pod.status.as_ref().unwrap())
}

#[test]
fn crash_looping_container_as_kubectl_shows_it() {
    let mut pod = pod();
    let mut runtime = FakeRuntime::new();
    let mut seen = Vec::new();

    runtime.sync(&mut pod);
    seen.push(view(&pod));
    runtime.advance(5);
    runtime.exit("app", 1);
    runtime.sync(&mut pod); // first crash: restarted at once
    seen.push(view(&pod));
    runtime.advance(1);
    runtime.exit("app", 1);
    runtime.sync(&mut pod); // second crash: back-off 10 s
    seen.push(view(&pod));
    runtime.advance(10);
    runtime.sync(&mut pod);
    seen.push(view(&pod));

    assert_eq!(
        seen,
        [
            columns("1/1", "Running", 0),
            columns("1/1", "Running", 1),
            columns("0/1", "CrashLoopBackOff", 1),
            columns("1/1", "Running", 2),
        ]
    );
    let app = &pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    let last = app.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
}

#[test]
fn init_container_then_sidecar_then_app() {
    let mut pod = with(pod(), |p| {
        p.spec.as_mut().unwrap().init_containers = Some(vec![
            container("migrate"),
            Container { restart_policy: Some("Always".to_owned()), ..container("proxy") },
        ]);
    });
    let mut runtime = FakeRuntime::new();
    let mut seen = Vec::new();

    runtime.sync(&mut pod);
    seen.push((view(&pod), pod.status.as_ref().unwrap().phase.clone().unwrap()));
    runtime.advance(3);
    runtime.exit("migrate", 0);
    runtime.sync(&mut pod); // the sidecar starts
    seen.push((view(&pod), pod.status.as_ref().unwrap().phase.clone().unwrap()));
    runtime.advance(1);
    runtime.sync(&mut pod); // the sidecar started: the app starts
    seen.push((view(&pod), pod.status.as_ref().unwrap().phase.clone().unwrap()));

    assert_eq!(
        seen,
        [
            (columns("0/2", "Init:0/2", 0), "Pending".to_owned()),
            (columns("1/2", "PodInitializing", 0), "Pending".to_owned()),
            (columns("2/2", "Running", 0), "Running".to_owned()),
        ]
    );
}

#[test]
fn job_style_pod_completes_and_stops_its_sandbox() {
    let mut pod =
        with(pod(), |p| p.spec.as_mut().unwrap().restart_policy = Some("OnFailure".to_owned()));
    let mut runtime = FakeRuntime::new();
    runtime.sync(&mut pod);
    runtime.advance(5);
    runtime.exit("app", 2);
    runtime.sync(&mut pod);
    assert_eq!(view(&pod), columns("1/1", "Running", 1));
    runtime.advance(5);
    runtime.exit("app", 0);
    runtime.sync(&mut pod);
    assert_eq!(view(&pod), columns("0/1", "Completed", 1));
    assert_eq!(pod.status.as_ref().unwrap().phase.as_deref(), Some("Succeeded"));
    assert!(!runtime.observed.sandbox.as_ref().unwrap().ready, "sandbox stopped once done");
    runtime.advance(60);
    runtime.sync(&mut pod);
    assert_eq!(view(&pod), columns("0/1", "Completed", 1), "nothing restarts later");
    assert_eq!(
        runtime.observed.containers.iter().filter(|c| c.state == RunState::Running).count(),
        0
    );
}
