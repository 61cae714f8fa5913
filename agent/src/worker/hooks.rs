//! Container lifecycle hooks, as kubelet runs them: `postStart` right after a container
//! starts (the pod's worker waits for it; a failure kills the container, which then restarts
//! as its policy says), `preStop` before a running container is stopped, inside its grace
//! period (whatever the hook used is taken off the time the container gets to exit, but never
//! below kubelet's two-second minimum).
//!
//! Handlers: `exec` (through the CRI, in the container), `httpGet` (to the pod's IP unless a
//! host is given) and `sleep`. `tcpSocket` is accepted by the API for compatibility only and,
//! as in kubelet, does nothing.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LifecycleHandler, Probe};

use super::probe::{execute, Target};
use crate::cri::Runtime;

/// How long a `postStart` hook may run. Kubelet sets no bound and blocks the pod's worker for
/// as long as the hook takes; a bound keeps one stuck hook from holding the pod forever.
pub(crate) const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// The shortest time a container is given to stop after its `preStop` hook (kubelet's
/// `minimumGracePeriodInSeconds`).
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    /// The event reason of a failure.
    pub(crate) fn failed_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }

    fn handler(self, target: &Target) -> Option<&LifecycleHandler> {
        let lifecycle = target.container.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => lifecycle.post_start.as_ref(),
            Hook::PreStop => lifecycle.pre_stop.as_ref(),
        }
    }
}

/// Whether the container of `target` has `hook`.
pub(crate) fn has(hook: Hook, target: &Target) -> bool {
    hook.handler(target).is_some()
}

/// Runs the container's `hook`, if it has one, for at most `timeout`; `Err` carries the
/// message kubelet records with the failure event. `pod` is kubelet's `name_namespace(uid)`.
pub(crate) async fn run<R: Runtime>(
    runtime: &R,
    hook: Hook,
    target: &Target,
    pod: &str,
    timeout: Duration,
) -> Result<(), String> {
    let Some(handler) = hook.handler(target) else { return Ok(()) };
    if let Some(sleep) = &handler.sleep {
        let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds).min(timeout)).await;
        return Ok(());
    }
    if handler.exec.is_none() && handler.http_get.is_none() {
        tracing::debug!(pod, container = %target.container.name, "a tcpSocket hook does nothing");
        return Ok(());
    }
    let as_probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        ..Probe::default()
    };
    let outcome = tokio::time::timeout(timeout, execute(runtime, &as_probe, target, timeout)).await;
    let error = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => error,
        Err(_) => format!("did not complete within {}s", timeout.as_secs()),
    };
    Err(failure_message(handler, &target.container.name, pod, &error))
}

/// Kubelet's wording of a failed hook, naming the handler, the container and the pod.
fn failure_message(handler: &LifecycleHandler, container: &str, pod: &str, error: &str) -> String {
    match (&handler.exec, &handler.http_get) {
        (Some(exec), _) => {
            // Go's `%v` of the command: `[sh -c exit 3]`.
            let command = exec.command.clone().unwrap_or_default().join(" ");
            format!(
                "Exec lifecycle hook ([{command}]) for Container {container:?} in Pod {pod:?} \
                 failed - error: {error}"
            )
        }
        (None, Some(http)) => {
            let path = http.path.as_deref().unwrap_or("/");
            format!(
                "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} \
                 failed - error: {error}"
            )
        }
        (None, None) => error.to_string(),
    }
}

/// The time a container gets to stop after its `preStop` hook ran for `spent` of `grace`.
/// A zero grace (a forced deletion) stays zero: no hook runs then.
pub(crate) fn remaining_grace(grace: Duration, spent: Duration) -> Duration {
    if grace.is_zero() {
        return grace;
    }
    grace.saturating_sub(spent).max(MINIMUM_GRACE)
}

/// Runs the `preStop` hook of `target`, if any and if `grace` allows one, and returns the
/// grace left for stopping the container.
pub(crate) async fn pre_stop<R: Runtime>(
    runtime: &R,
    target: &Target,
    pod: &str,
    grace: Duration,
) -> (Duration, Option<String>) {
    if grace.is_zero() || !has(Hook::PreStop, target) {
        return (grace, None);
    }
    let started = Instant::now();
    let failure = run(runtime, Hook::PreStop, target, pod, grace).await.err();
    (remaining_grace(grace, started.elapsed()), failure)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    #[test]
    fn the_grace_left_after_a_hook_keeps_kubelets_minimum() {
        let s = Duration::from_secs;
        let cases = [
            (s(30), s(5), s(25)),
            (s(30), s(29), s(2)),
            (s(30), s(40), s(2)),
            (s(0), s(0), s(0)),
            (s(1), s(0), s(2)),
        ];
        for (grace, spent, left) in cases {
            assert_eq!(remaining_grace(grace, spent), left, "{grace:?} - {spent:?}");
        }
    }

    #[test]
    fn failures_name_the_handler_container_and_pod() {
        let exec = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), "exit 3".into()]),
            }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            failure_message(&exec, "app", "web_default(u1)", "command exited with code 3"),
            "Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \
             \"web_default(u1)\" failed - error: command exited with code 3"
        );
        let http = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/quit".into()),
                port: IntOrString::Int(80),
                ..HTTPGetAction::default()
            }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            failure_message(&http, "app", "p_ns(u)", "connection refused"),
            "HTTP lifecycle hook (/quit) for Container \"app\" in Pod \"p_ns(u)\" failed - \
             error: connection refused"
        );
    }
}
