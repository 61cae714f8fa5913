//! A pod's containers started and stopped, kubelet's way: the image pulled as the container's
//! policy says, the container created and started with its events, its `postStart` hook run
//! (a failure kills it), and a `preStop` hook run before any running container is stopped.

use std::time::Duration;

use jiff::Timestamp;
use k8s_cri::v1::PodSandboxConfig;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::hooks::{self, Hook, POST_START_TIMEOUT};
use super::probe::Target;
use super::sync::{container_reference, grace_period, kubelet_pod_name, PodState, Syncer};
use crate::cri::{CriError, Runtime};
use crate::pods::container::{self, Context, ImageUser};
use crate::pods::event::PodEvent;
use crate::pods::observed::{SandboxState, StartFailure};
use crate::pods::restart::Start;

/// Kubernetes' defaulting of `imagePullPolicy`: `Always` for `:latest` or untagged images.
fn pull_policy(container: &Container) -> &str {
    if let Some(policy) = container.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return policy;
    }
    let image = container.image.as_deref().unwrap_or_default();
    let name = image.split('@').next().unwrap_or(image);
    let tag = name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map(|(_, tag)| tag);
    match tag {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    }
}

impl<R: Runtime> Syncer<R> {
    /// The pod's primary IP as probes and hooks reach it: the node's for host-network pods.
    pub(super) fn pod_ip(&self, sandbox: Option<&SandboxState>) -> String {
        let ips = match sandbox {
            Some(sandbox) if sandbox.host_network => &self.node.host_ips,
            Some(sandbox) => &sandbox.ips,
            None => return String::new(),
        };
        ips.first().cloned().unwrap_or_default()
    }

    /// Stops a running container: its `preStop` hook first (when `target` names its spec),
    /// inside `grace`, then the runtime's stop with the grace that is left.
    pub(super) async fn stop_container(
        &self,
        pod: &Pod,
        container_id: &str,
        target: Option<Target>,
        grace: Duration,
    ) -> Result<(), CriError> {
        let mut left = grace;
        if let Some(target) = &target {
            let (remaining, failure) =
                hooks::pre_stop(&self.runtime, target, &kubelet_pod_name(pod), grace).await;
            if let Some(message) = failure {
                let event = PodEvent::warning(Hook::PreStop.failed_reason(), message);
                self.record(pod, &event.on(&target.container.name)).await;
            }
            left = remaining;
        }
        self.runtime.stop_container(container_id, left).await
    }

    /// Creates and starts one container, pulling its image as its policy says.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start(
        &self,
        pod: &Pod,
        container: &Container,
        start: &Start,
        sandbox_id: &str,
        sandbox_config: &PodSandboxConfig,
        base: &Context,
        state: &mut PodState,
    ) -> Result<(), StartFailure> {
        let (image_ref, image_user) =
            self.ensure_image(pod, container, sandbox_config, state).await?;
        let context = Context {
            restart_count: start.restart_count,
            image_ref: Some(image_ref),
            image_user,
            ..base.clone()
        };
        let failed =
            |reason: &str, message: String| StartFailure { reason: reason.to_owned(), message };
        let config = match container::config(pod, container, &context) {
            Ok(config) => config,
            Err(err) => {
                let message = format!("Error: {err}");
                self.record(pod, &PodEvent::warning("Failed", message).on(&container.name)).await;
                return Err(StartFailure::from(&err));
            }
        };
        let id = match self
            .runtime
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(err) => {
                let message = format!("Error: {err}");
                self.record(pod, &PodEvent::warning("Failed", message.clone()).on(&container.name))
                    .await;
                return Err(failed("CreateContainerError", message));
            }
        };
        let created = format!("Created container: {}", container.name);
        self.record(pod, &PodEvent::normal("Created", created).on(&container.name)).await;
        if let Err(err) = self.runtime.start_container(&id).await {
            let message = format!("Error: {err}");
            self.record(pod, &PodEvent::warning("Failed", message.clone()).on(&container.name))
                .await;
            return Err(failed("RunContainerError", message));
        }
        let started = format!("Started container {}", container.name);
        self.record(pod, &PodEvent::normal("Started", started).on(&container.name)).await;
        let target = Target {
            container_id: id.clone(),
            container: container.clone(),
            pod_ip: base.pod_ips.first().cloned().unwrap_or_default(),
            reference: container_reference(pod, &container.name),
        };
        let pod_name = kubelet_pod_name(pod);
        if let Err(message) =
            hooks::run(&self.runtime, Hook::PostStart, &target, &pod_name, POST_START_TIMEOUT).await
        {
            // As kubelet: the failure is recorded, the container killed (its preStop hook
            // runs) and restarted as its policy says.
            let failed_hook = Hook::PostStart.failed_reason();
            let event = PodEvent::warning(failed_hook, message.clone()).on(&container.name);
            self.record(pod, &event).await;
            let killing = PodEvent::normal("Killing", failed_hook.to_string());
            self.record(pod, &killing.on(&container.name)).await;
            if let Err(err) = self.stop_container(pod, &id, Some(target), grace_period(pod)).await {
                tracing::warn!(pod = %pod_name, error = %err, "stopping a container whose postStart hook failed");
            }
            return Err(failed("PostStartHookError", message));
        }
        Ok(())
    }

    /// Returns the image's reference and default user, pulling it when its policy says so.
    async fn ensure_image(
        &self,
        pod: &Pod,
        container: &Container,
        sandbox_config: &PodSandboxConfig,
        state: &mut PodState,
    ) -> Result<(String, Option<ImageUser>), StartFailure> {
        let image = container.image.clone().unwrap_or_default();
        let now = Timestamp::now();
        let on = |event: PodEvent| event.on(&container.name);
        let policy = pull_policy(container);
        let present = match self.runtime.image_status(&image).await {
            Ok(found) => found,
            Err(err) => {
                let message = format!("checking image {image:?}: {err}");
                return Err(StartFailure { reason: "ErrImageInspect".into(), message });
            }
        };
        if let Some(found) = present.filter(|_| policy != "Always") {
            let message = format!("Container image \"{image}\" already present on machine");
            self.record(pod, &on(PodEvent::normal("Pulled", message))).await;
            let user = match (&found.uid, found.username.as_str()) {
                (Some(uid), _) => Some(ImageUser::Uid(uid.value)),
                (None, "") => None,
                (None, name) => Some(ImageUser::Name(name.to_owned())),
            };
            return Ok((found.id, user));
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            self.record(pod, &on(PodEvent::warning("ErrImageNeverPull", message.clone()))).await;
            return Err(StartFailure { reason: "ErrImageNeverPull".into(), message });
        }
        if let Some((failure, event)) = state.backoff.image_pull_held(pod, container, now) {
            self.record(pod, &on(event)).await;
            return Err(failure);
        }
        self.record(pod, &on(PodEvent::normal("Pulling", format!("Pulling image \"{image}\""))))
            .await;
        let started = std::time::Instant::now();
        match self.runtime.pull_image(&image, Some(sandbox_config.clone())).await {
            Ok(reference) => {
                let message = format!(
                    "Successfully pulled image \"{image}\" in {:.3}s",
                    started.elapsed().as_secs_f64()
                );
                self.record(pod, &on(PodEvent::normal("Pulled", message))).await;
                Ok((reference, None))
            }
            Err(err) => {
                let (failure, event) =
                    state.backoff.image_pull_failed(pod, container, &err.to_string(), now);
                self.record(pod, &on(event)).await;
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_kubernetes() {
        let cases = [
            ("busybox", None, "Always"),
            ("busybox:latest", None, "Always"),
            ("busybox:1.36", None, "IfNotPresent"),
            ("registry:5000/busybox", None, "Always"),
            ("registry:5000/busybox:1", None, "IfNotPresent"),
            ("busybox:1.36", Some("Never"), "Never"),
        ];
        for (image, policy, expected) in cases {
            let container = Container {
                image: Some(image.into()),
                image_pull_policy: policy.map(str::to_owned),
                ..Container::default()
            };
            assert_eq!(pull_policy(&container), expected, "{image}");
        }
    }
}
