//! The CRI `ContainerConfig` kubelet sends to `CreateContainer` (`generateContainerConfig`):
//! command and args with `$(VAR)` expansion, environment, mounts, log path, labels and
//! annotations, Linux resources and security context.
//!
//! Invariants:
//! - Every reference the container makes (ConfigMaps, Secrets, volumes) is resolved from the
//!   [`Context`]; a missing non-optional one is a [`ConfigError`] whose message kubectl shows
//!   under `CreateContainerConfigError`.
//! - The log path is `<container>/<restartCount>.log` under the sandbox's log directory, so
//!   `kubectl logs --previous` finds the previous instance.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1::{
    security_profile, Capability, ContainerConfig, ContainerMetadata, ImageSpec, Int64Value,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, Mount,
    MountPropagation, SecurityProfile,
};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, SeccompProfile, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::pods::observed::StartFailure;
use crate::pods::sandbox::{self, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL};
use crate::pods::{pod, qos, quantity, resources};

mod env;
#[cfg(test)]
mod tests;

/// The downward API readers env vars use, shared with the agent's downward API volumes.
pub(crate) use env::{format_map, resource_value, subscripted};

/// Label naming the container.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Annotation holding the spec hash the container was created with.
pub const HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
/// Annotation holding the container's restart count.
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
/// Annotation holding the termination message path.
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
/// Annotation holding the termination message policy.
pub const TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";
const DELETION_GRACE_ANNOTATION: &str = "io.kubernetes.pod.deletionGracePeriod";
const TERMINATION_GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";
const PRE_STOP_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";
const PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";

/// Paths masked in `/proc` and `/sys` unless `procMount: Unmasked`.
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths made read-only in `/proc` unless `procMount: Unmasked`.
const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A volume the caller has set up on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostVolume {
    /// Where the volume is on the host.
    pub host_path: String,
    /// The volume plugin forces read-only mounts (e.g. a read-only PVC).
    pub read_only: bool,
}

/// The user an image runs as by default, from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// A numeric UID.
    Uid(i64),
    /// A user name the runtime resolves.
    Name(String),
}

/// Everything outside the pod that the container's configuration reads; the caller resolves
/// it (API lookups, volume setup, image inspection) before calling [`config`].
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// Restart count of the instance to create (0 for the first).
    pub restart_count: u32,
    /// The image reference resolved by the pull (an image ID); the spec's image when `None`.
    pub image_ref: Option<String>,
    /// ConfigMaps of the pod's namespace the container references, by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace the container references, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// Services known to the node, all namespaces; empty when unknown.
    pub services: Vec<Service>,
    /// The pod's IPs from the sandbox (the node's IPs for a host-network pod); without any, no
    /// `/etc/hosts` is mounted.
    pub pod_ips: Vec<String>,
    /// The node's IPs, primary first.
    pub host_ips: Vec<String>,
    /// The node's allocatable resources (limits the container does not set, as the downward
    /// API reports them).
    pub node_allocatable: BTreeMap<String, Quantity>,
    /// The node's memory capacity in bytes, for the OOM score (the default, 16 GiB, is only a
    /// placeholder: set it).
    pub memory_capacity: i64,
    /// Host paths of the pod's volumes, by volume name.
    pub volumes: BTreeMap<String, HostVolume>,
    /// Host path of the pod's managed `/etc/hosts`, if the caller wrote one.
    pub etc_hosts: Option<String>,
    /// Host path of the empty file created for this instance's termination message.
    pub termination_message_file: Option<String>,
    /// The image's default user, when known.
    pub image_user: Option<ImageUser>,
    /// The node uses cgroup v2.
    pub cgroup_v2: bool,
    /// Kubelet's `seccompDefault`: containers without a profile get `RuntimeDefault`.
    pub seccomp_default: bool,
    /// Directory of localhost seccomp profiles.
    pub seccomp_root: String,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            restart_count: 0,
            image_ref: None,
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            services: Vec::new(),
            pod_ips: Vec::new(),
            host_ips: Vec::new(),
            node_allocatable: BTreeMap::new(),
            memory_capacity: 1 << 34,
            volumes: BTreeMap::new(),
            etc_hosts: None,
            termination_message_file: None,
            image_user: None,
            cgroup_v2: true,
            seccomp_default: false,
            seccomp_root: "/var/lib/kubelet/seccomp".to_owned(),
        }
    }
}

/// Why a container's configuration could not be built. Every variant shows as waiting reason
/// `CreateContainerConfigError` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A referenced ConfigMap does not exist.
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    /// A referenced Secret does not exist.
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    /// A `configMapKeyRef` names a key the ConfigMap lacks.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound { key: String, namespace: String, name: String },
    /// A `secretKeyRef` names a key the Secret lacks.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound { key: String, namespace: String, name: String },
    /// A `fieldRef` names an API version other than v1.
    #[error("unsupported pod version: {version}")]
    UnsupportedPodVersion { version: String },
    /// A `fieldRef` path the downward API does not know.
    #[error("field label not supported: {label}")]
    FieldLabelNotSupported { label: String },
    /// A subscript on a field other than labels or annotations.
    #[error("field label does not support subscript: {label}")]
    FieldLabelNoSubscript { label: String },
    /// A known field path env vars cannot read.
    #[error("unsupported fieldPath: {path}")]
    UnsupportedFieldPath { path: String },
    /// A `resourceFieldRef` resource the downward API does not know.
    #[error("unsupported container resource : {resource}")]
    UnsupportedResource { resource: String },
    /// A `resourceFieldRef` names a container the pod lacks.
    #[error("container {name} not found")]
    ResourceContainerNotFound { name: String },
    /// A volume mount names a volume the caller did not set up.
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    VolumeNotFound { volume: String, container: String },
    /// `subPath` is absolute.
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    AbsoluteSubPath { sub_path: String },
    /// `subPath` climbs out of the volume.
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    SubPathBacksteps { sub_path: String },
    /// `subPathExpr` references variables that are unset or empty.
    #[error("missing value for {names}")]
    SubPathExprMissing { names: String },
    /// An unknown `mountPropagation`.
    #[error("invalid MountPropagation mode: {mode:?}")]
    InvalidPropagation { mode: String },
    /// `runAsNonRoot` with `runAsUser: 0`.
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsUserRoot { pod: String, container: String },
    /// `runAsNonRoot` and the image runs as UID 0.
    #[error(
        "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: \
         {container})"
    )]
    ImageRunsAsRoot { pod: String, container: String },
    /// `runAsNonRoot` and the image names its user.
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user \
         is non-root (pod: {pod:?}, container: {container})"
    )]
    NonNumericImageUser { user: String, pod: String, container: String },
    /// A `Localhost` seccomp profile without `localhostProfile`.
    #[error("localhostProfile must be set if seccompProfile type is Localhost.")]
    LocalhostProfileMissing,
}

impl From<&ConfigError> for StartFailure {
    fn from(error: &ConfigError) -> Self {
        StartFailure { reason: "CreateContainerConfigError".to_owned(), message: error.to_string() }
    }
}

/// Returns the configuration to create `container` (one of the pod's regular or init
/// containers) with.
pub fn config(
    pod: &Pod,
    container: &Container,
    context: &Context,
) -> Result<ContainerConfig, ConfigError> {
    let environment = env::environment(pod, container, context)?;
    let mounts = mounts(container, context, &environment)?;
    let security_context = security_context(pod, container, context)?;
    let lookup = |name: &str| environment.get(name).cloned();
    let command = container
        .command
        .iter()
        .flatten()
        .map(|part| crate::pods::expansion::expand(part, lookup))
        .collect();
    let args = container
        .args
        .iter()
        .flatten()
        .map(|arg| crate::pods::expansion::expand(arg, lookup))
        .collect();
    let image = container.image.clone().unwrap_or_default();
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: context.restart_count,
        }),
        image: Some(ImageSpec {
            image: context.image_ref.clone().unwrap_or_else(|| image.clone()),
            user_specified_image: image,
            ..ImageSpec::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: environment
            .into_pairs()
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        mounts,
        labels: labels(pod, container),
        annotations: annotations(pod, container, context.restart_count),
        log_path: log_path(&container.name, context.restart_count),
        stdin: container.stdin == Some(true),
        stdin_once: container.stdin_once == Some(true),
        tty: container.tty == Some(true),
        linux: Some(LinuxContainerConfig {
            resources: Some(linux_resources(pod, container, context)),
            security_context: Some(security_context),
        }),
        ..ContainerConfig::default()
    })
}

/// The container's log file relative to the sandbox's log directory.
pub fn log_path(container_name: &str, restart_count: u32) -> String {
    format!("{container_name}/{restart_count}.log")
}

/// Returns kubelet's hash of the container spec (`HashContainer`: name and image only), as
/// written to the `io.kubernetes.container.hash` annotation; a running container whose hash
/// differs from its spec's is restarted.
pub fn spec_hash(container: &Container) -> String {
    let json = format!(
        "{{\"image\":{},\"name\":{}}}",
        go_json_string(container.image.as_deref().unwrap_or_default()),
        go_json_string(&container.name)
    );
    // Kubelet hashes the spew rendering of the JSON bytes: `([]uint8)[123 34 ...]`.
    let bytes: Vec<String> = json.bytes().map(|b| b.to_string()).collect();
    let rendered = format!("([]uint8)[{}]", bytes.join(" "));
    let mut hash: u32 = 0x811c_9dc5;
    for byte in rendered.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:x}")
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe escapes included).
fn go_json_string(value: &str) -> String {
    let mut out = serde_json::Value::String(value.to_owned()).to_string();
    for (from, to) in [
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u{2028}", "\\u2028"),
        ("\u{2029}", "\\u2029"),
    ] {
        out = out.replace(from, to);
    }
    out
}

fn labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME_LABEL.to_owned(), pod::name(pod).to_owned()),
        (POD_NAMESPACE_LABEL.to_owned(), pod::namespace(pod).to_owned()),
        (POD_UID_LABEL.to_owned(), pod::uid(pod).to_owned()),
        (CONTAINER_NAME_LABEL.to_owned(), container.name.clone()),
    ])
}

fn annotations(pod: &Pod, container: &Container, restart_count: u32) -> HashMap<String, String> {
    let mut out = HashMap::from([
        (HASH_ANNOTATION.to_owned(), spec_hash(container)),
        (RESTART_COUNT_ANNOTATION.to_owned(), restart_count.to_string()),
        (
            TERMINATION_MESSAGE_PATH_ANNOTATION.to_owned(),
            termination_message_path(container).to_owned(),
        ),
        (
            TERMINATION_MESSAGE_POLICY_ANNOTATION.to_owned(),
            container.termination_message_policy.clone().unwrap_or_else(|| "File".to_owned()),
        ),
    ]);
    if let Some(seconds) = pod.metadata.deletion_grace_period_seconds {
        out.insert(DELETION_GRACE_ANNOTATION.to_owned(), seconds.to_string());
    }
    if let Some(seconds) = pod::spec(pod).termination_grace_period_seconds {
        out.insert(TERMINATION_GRACE_ANNOTATION.to_owned(), seconds.to_string());
    }
    if let Some(pre_stop) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        if let Ok(json) = serde_json::to_string(pre_stop) {
            out.insert(PRE_STOP_ANNOTATION.to_owned(), json);
        }
    }
    if let Some(ports) = container.ports.as_ref().filter(|ports| !ports.is_empty()) {
        if let Ok(json) = serde_json::to_string(ports) {
            out.insert(PORTS_ANNOTATION.to_owned(), json);
        }
    }
    out
}

fn termination_message_path(container: &Container) -> &str {
    container.termination_message_path.as_deref().unwrap_or("/dev/termination-log")
}

/// Volume mounts, then the managed `/etc/hosts`, then the termination message file.
fn mounts(
    container: &Container,
    context: &Context,
    environment: &env::Environment,
) -> Result<Vec<Mount>, ConfigError> {
    let mut out = Vec::new();
    let mut mount_hosts_file = !context.pod_ips.is_empty();
    for volume_mount in container.volume_mounts.iter().flatten() {
        mount_hosts_file &= volume_mount.mount_path != "/etc/hosts";
        let volume =
            context.volumes.get(&volume_mount.name).ok_or_else(|| ConfigError::VolumeNotFound {
                volume: volume_mount.name.clone(),
                container: container.name.clone(),
            })?;
        let mut sub_path = volume_mount.sub_path.clone().unwrap_or_default();
        if let Some(expression) = volume_mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            let mut missing = std::collections::BTreeSet::new();
            sub_path = crate::pods::expansion::expand(expression, |name| {
                let value = environment.get(name).cloned().unwrap_or_default();
                if value.is_empty() {
                    missing.insert(name.to_owned());
                }
                Some(value)
            });
            if !missing.is_empty() {
                let names = missing.into_iter().collect::<Vec<_>>().join(", ");
                return Err(ConfigError::SubPathExprMissing { names });
            }
        }
        let mut host_path = volume.host_path.clone();
        if !sub_path.is_empty() {
            if sub_path.starts_with('/') {
                return Err(ConfigError::AbsoluteSubPath { sub_path });
            }
            if sub_path.split('/').any(|part| part == "..") {
                return Err(ConfigError::SubPathBacksteps { sub_path });
            }
            host_path = format!("{}/{sub_path}", host_path.trim_end_matches('/'));
        }
        let propagation = match volume_mount.mount_propagation.as_deref() {
            None | Some("None") => MountPropagation::PropagationPrivate,
            Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => MountPropagation::PropagationBidirectional,
            Some(other) => return Err(ConfigError::InvalidPropagation { mode: other.to_owned() }),
        };
        let read_only = volume_mount.read_only == Some(true) || volume.read_only;
        let container_path = if volume_mount.mount_path.starts_with('/') {
            volume_mount.mount_path.clone()
        } else {
            format!("/{}", volume_mount.mount_path)
        };
        out.push(Mount {
            container_path,
            host_path,
            readonly: read_only,
            propagation: propagation.into(),
            recursive_read_only: read_only && recursive_read_only(volume_mount),
            ..Mount::default()
        });
    }
    if let (true, Some(hosts)) = (mount_hosts_file, context.etc_hosts.as_ref()) {
        out.push(Mount {
            container_path: "/etc/hosts".to_owned(),
            host_path: hosts.clone(),
            ..Mount::default()
        });
    }
    if let Some(file) = context.termination_message_file.as_ref() {
        let path = termination_message_path(container);
        if !path.is_empty() {
            out.push(Mount {
                container_path: path.to_owned(),
                host_path: file.clone(),
                ..Mount::default()
            });
        }
    }
    Ok(out)
}

/// `recursiveReadOnly: Enabled` or `IfPossible` (the runtime is assumed to support it).
pub(crate) fn recursive_read_only(mount: &k8s_openapi::api::core::v1::VolumeMount) -> bool {
    matches!(mount.recursive_read_only.as_deref(), Some("Enabled" | "IfPossible"))
}

/// Kubelet's `generateLinuxContainerResources`.
fn linux_resources(pod: &Pod, container: &Container, context: &Context) -> LinuxContainerResources {
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let cpu_request = requests.and_then(|r| r.get("cpu")).map(|q| quantity::milli(Some(q)));
    let mut resources = resources::linux_resources(
        cpu_request,
        quantity::milli(limits.and_then(|l| l.get("cpu"))),
        quantity::value(limits.and_then(|l| l.get("memory"))),
        context.cgroup_v2,
    );
    resources.oom_score_adj = qos::oom_score_adj(pod, container, context.memory_capacity);
    resources
}

/// Kubelet's `determineEffectiveSecurityContext`: the container's settings, falling back to
/// the pod's, plus namespaces, groups and the default masked paths.
fn security_context(
    pod: &Pod,
    container: &Container,
    context: &Context,
) -> Result<LinuxContainerSecurityContext, ConfigError> {
    let pod_sc = pod::spec(pod).security_context.as_ref();
    let sc = container.security_context.as_ref();
    let run_as_user = sc.and_then(|s| s.run_as_user).or(pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc.and_then(|s| s.run_as_group).or(pod_sc.and_then(|s| s.run_as_group));
    let run_as_non_root =
        sc.and_then(|s| s.run_as_non_root).or(pod_sc.and_then(|s| s.run_as_non_root));
    if run_as_non_root == Some(true) {
        let (pod_name, name) = (pod::display(pod), container.name.clone());
        match (run_as_user, context.image_user.as_ref()) {
            (Some(0), _) => {
                return Err(ConfigError::RunAsUserRoot { pod: pod_name, container: name })
            }
            (Some(_), _) | (None, None) => {}
            (None, Some(ImageUser::Uid(0))) => {
                return Err(ConfigError::ImageRunsAsRoot { pod: pod_name, container: name })
            }
            (None, Some(ImageUser::Uid(_))) => {}
            (None, Some(ImageUser::Name(user))) => {
                return Err(ConfigError::NonNumericImageUser {
                    user: user.clone(),
                    pod: pod_name,
                    container: name,
                })
            }
        }
    }
    let mut out = LinuxContainerSecurityContext {
        capabilities: sc.and_then(|s| s.capabilities.as_ref()).map(|caps| Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: sc.and_then(|s| s.privileged) == Some(true),
        namespace_options: Some(sandbox::namespace_options(pod)),
        run_as_user: run_as_user.map(|value| Int64Value { value }),
        run_as_group: run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: Some(seccomp(
            sc.and_then(|s| s.seccomp_profile.as_ref())
                .or(pod_sc.and_then(|s| s.seccomp_profile.as_ref())),
            context,
        )?),
        ..LinuxContainerSecurityContext::default()
    };
    if out.run_as_user.is_none() {
        match context.image_user.as_ref() {
            Some(ImageUser::Uid(uid)) => out.run_as_user = Some(Int64Value { value: *uid }),
            Some(ImageUser::Name(name)) => out.run_as_username = name.clone(),
            None => {}
        }
    }
    out.supplemental_groups = pod_sc.and_then(|s| s.fs_group).into_iter().collect();
    out.supplemental_groups
        .extend(pod_sc.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default());
    if sc.and_then(|s| s.proc_mount.as_deref()) != Some("Unmasked") {
        out.masked_paths = MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect();
        out.readonly_paths = READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect();
    }
    Ok(out)
}

fn seccomp(
    profile: Option<&SeccompProfile>,
    context: &Context,
) -> Result<SecurityProfile, ConfigError> {
    use security_profile::ProfileType;
    let (profile_type, localhost_ref) = match profile.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => (ProfileType::RuntimeDefault, String::new()),
        Some("Localhost") => {
            let name = profile
                .and_then(|p| p.localhost_profile.as_deref())
                .filter(|name| !name.is_empty())
                .ok_or(ConfigError::LocalhostProfileMissing)?;
            (
                ProfileType::Localhost,
                format!("{}/{name}", context.seccomp_root.trim_end_matches('/')),
            )
        }
        Some(_) => (ProfileType::Unconfined, String::new()),
        None if context.seccomp_default => (ProfileType::RuntimeDefault, String::new()),
        None => (ProfileType::Unconfined, String::new()),
    };
    Ok(SecurityProfile { profile_type: profile_type.into(), localhost_ref })
}
