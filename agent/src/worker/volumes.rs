//! The pod's volumes on the node: directories the containers mount, under the pod's own
//! directory (`<pods>/<uid>/volumes/<plugin>/<name>`, kubelet's layout).
//!
//! - `emptyDir`: a directory that lives as long as the pod (medium `Memory` is a tmpfs).
//! - `hostPath`: the node's path, checked against its `type` (`DirectoryOrCreate` creates it).
//! - `configMap`, `secret`, `downwardAPI` and `projected` (configMap, secret, downwardAPI and
//!   serviceAccountToken sources): files written by the [`atomic::AtomicWriter`], rewritten on
//!   every sync when their contents change, so a changed object or label reaches running
//!   containers all at once.
//! - `persistentVolumeClaim`: the path of the claim's bound PersistentVolume when it is a
//!   `hostPath` or `local` one ([`claim`]).
//!
//! What the volumes read is gathered into [`Sources`] first ([`referenced`] names it,
//! [`fetch`] gets it: ConfigMaps and Secrets from the node's watches of them, the rest through
//! the API); everything else here touches only the filesystem.
//! Other volume types, and volumes whose sources are missing, fail with a message naming the
//! volume, shown as a `FailedMount` event; the pod stays in `ContainerCreating`, as it would
//! with kubelet when a mount cannot be set up.

mod atomic;
mod claim;
mod downward;
mod fetch;
mod host_path;
mod objects;
mod projected;
pub(crate) mod token;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::containerd::mount_points_under;
use crate::pods::container::HostVolume;
use atomic::{AtomicWriteError, AtomicWriter, Payload};
use claim::{ClaimError, ClaimedPath};
use downward::DownwardError;
use host_path::{check_host_path, HostPathError};
use objects::ObjectError;
pub(crate) use objects::ObjectKind;
use projected::ProjectedError;
use token::{TokenError, TokenKey};

pub(crate) use fetch::{fetch, Scope};

/// The API's default `defaultMode` of configMap, secret and downwardAPI volumes.
const DEFAULT_MODE: i32 = 0o644;

/// Why a volume could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VolumeError {
    /// Boxed: the reasons are large and the happy path should not pay for them.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {reason}")]
    SetUp { volume: String, reason: Box<SetUpError> },
}

/// What went wrong setting up one volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SetUpError {
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Downward(#[from] DownwardError),
    #[error(transparent)]
    Projected(#[from] ProjectedError),
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// A `persistentVolumeClaim` that does not lead to a usable volume.
    #[error("error processing PVC {namespace}/{claim}: {reason}")]
    Claim { namespace: String, claim: String, reason: ClaimError },
    /// A `local` PersistentVolume whose path is not on this node.
    #[error("local volume path {path:?} does not exist")]
    LocalPathMissing { path: String },
    /// Preparing the volume's directory failed.
    #[error("{action} {path}: {message}")]
    Io { action: &'static str, path: String, message: String },
    /// A volume type the agent has no plugin for.
    #[error(
        "this volume type is not supported by the Flotilla agent yet (emptyDir, hostPath, \
         configMap, secret, downwardAPI, projected and persistentVolumeClaim are)"
    )]
    Unsupported,
}

/// The objects and node facts the pod's volumes read, gathered by the caller.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// PersistentVolumeClaims of the pod's namespace, by name.
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// The PersistentVolumes those claims are bound to, by name.
    pub persistent_volumes: BTreeMap<String, PersistentVolume>,
    /// The service account token of each `serviceAccountToken` source, or why there is none.
    pub tokens: BTreeMap<TokenKey, Result<String, TokenError>>,
    /// The node's allocatable resources, for downward API limits a container does not set.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// The names of the objects a pod reads, for the caller to fetch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct References {
    /// ConfigMaps of volumes, projections and the containers' environment.
    pub config_maps: Vec<String>,
    /// Secrets of volumes, projections and the containers' environment.
    pub secrets: Vec<String>,
    /// PersistentVolumeClaims of volumes.
    pub claims: Vec<String>,
}

/// The ConfigMaps, Secrets and claims the pod's volumes (projected sources included) and
/// containers reference, sorted and without duplicates.
pub(crate) fn referenced(pod: &Pod) -> References {
    let mut out = References::default();
    let Some(spec) = pod.spec.as_ref() else { return out };
    for volume in spec.volumes.iter().flatten() {
        if let Some(source) = &volume.config_map {
            out.config_maps.push(source.name.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.secrets.push(name);
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            out.claims.push(claim.claim_name.clone());
        }
        let projections = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for projection in projections.into_iter().flatten() {
            out.config_maps.extend(projection.config_map.as_ref().map(|m| m.name.clone()));
            out.secrets.extend(projection.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in containers {
        for from in container.env_from.iter().flatten() {
            out.config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            out.secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for env in container.env.iter().flatten() {
            let source = env.value_from.as_ref();
            let map = source.and_then(|s| s.config_map_key_ref.as_ref()).map(|r| r.name.clone());
            out.config_maps.extend(map);
            out.secrets
                .extend(source.and_then(|s| s.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        }
    }
    for names in [&mut out.config_maps, &mut out.secrets, &mut out.claims] {
        names.retain(|name| !name.is_empty());
        names.sort();
        names.dedup();
    }
    out
}

/// Whether a volume's files follow objects or the pod's metadata, and so are rewritten on
/// every sync of a running pod.
fn is_updated(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// Whether the pod has volumes [`refresh`] rewrites.
pub(crate) fn has_updated_volumes(pod: &Pod) -> bool {
    volumes_of(pod).any(is_updated)
}

fn volumes_of(pod: &Pod) -> impl Iterator<Item = &Volume> {
    pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten()
}

/// Sets up every volume of `pod` under `pod_dir` and returns where each is on the host.
pub(crate) fn set_up(
    pod: &Pod,
    pod_dir: &Path,
    sources: &Sources,
    now: Timestamp,
) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
    let mut out = BTreeMap::new();
    for volume in volumes_of(pod) {
        let fail =
            |reason| VolumeError::SetUp { volume: volume.name.clone(), reason: Box::new(reason) };
        let host = set_up_one(pod, volume, pod_dir, sources, now).map_err(fail)?;
        out.insert(volume.name.clone(), host);
    }
    Ok(out)
}

/// Rewrites the files of the pod's configMap, secret, downwardAPI and projected volumes of a
/// running pod where their contents changed; the other volumes stay as set up.
pub(crate) fn refresh(
    pod: &Pod,
    pod_dir: &Path,
    sources: &Sources,
    now: Timestamp,
) -> Result<(), VolumeError> {
    for volume in volumes_of(pod).filter(|volume| is_updated(volume)) {
        let fail =
            |reason| VolumeError::SetUp { volume: volume.name.clone(), reason: Box::new(reason) };
        set_up_one(pod, volume, pod_dir, sources, now).map_err(fail)?;
    }
    Ok(())
}

fn set_up_one(
    pod: &Pod,
    volume: &Volume,
    pod_dir: &Path,
    sources: &Sources,
    now: Timestamp,
) -> Result<HostVolume, SetUpError> {
    let plugin_dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&volume.name);
    let writable =
        |path: &Path| HostVolume { host_path: path.display().to_string(), read_only: false };
    // Files written by the agent are mounted read-only, as kubelet mounts them.
    let written = |plugin: &str, payload: Payload| -> Result<HostVolume, SetUpError> {
        let dir = plugin_dir(plugin);
        AtomicWriter::new(&dir).write(&payload, now)?;
        Ok(HostVolume { host_path: dir.display().to_string(), read_only: true })
    };
    if let Some(empty) = &volume.empty_dir {
        let dir = plugin_dir("kubernetes.io~empty-dir");
        create_dir(&dir)?;
        if empty.medium.as_deref() == Some("Memory") {
            mount_tmpfs(&dir)?;
        }
        return Ok(writable(&dir));
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        check_host_path(&path, host.type_.as_deref().unwrap_or(""))?;
        return Ok(writable(&path));
    }
    if let Some(source) = &volume.config_map {
        let data = sources.config_maps.get(&source.name).map(objects::config_map_data);
        let payload = objects::payload(
            ObjectKind::ConfigMap,
            &source.name,
            data,
            source.items.as_deref(),
            source.default_mode.unwrap_or(DEFAULT_MODE),
            source.optional == Some(true),
        )?;
        return written("kubernetes.io~configmap", payload);
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let data = sources.secrets.get(&name).map(objects::secret_data);
        let payload = objects::payload(
            ObjectKind::Secret,
            &name,
            data,
            source.items.as_deref(),
            source.default_mode.unwrap_or(DEFAULT_MODE),
            source.optional == Some(true),
        )?;
        return written("kubernetes.io~secret", payload);
    }
    if let Some(source) = &volume.downward_api {
        let items = source.items.as_deref().unwrap_or_default();
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let payload = downward::payload(pod, items, mode, &sources.node_allocatable)?;
        return written("kubernetes.io~downward-api", payload);
    }
    if let Some(source) = &volume.projected {
        let payload = projected::payload(pod, &volume.name, source, sources)?;
        return written("kubernetes.io~projected", payload);
    }
    if let Some(source) = &volume.persistent_volume_claim {
        let name = &source.claim_name;
        let resolved = claim::resolve(name, sources.claims.get(name), &sources.persistent_volumes)
            .map_err(|reason| SetUpError::Claim {
                namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                claim: name.clone(),
                reason,
            })?;
        let path = match resolved {
            ClaimedPath::HostPath { path, kind } => {
                check_host_path(Path::new(&path), &kind)?;
                path
            }
            ClaimedPath::Local { path } if Path::new(&path).exists() => path,
            ClaimedPath::Local { path } => return Err(SetUpError::LocalPathMissing { path }),
        };
        return Ok(HostVolume { host_path: path, read_only: source.read_only == Some(true) });
    }
    Err(SetUpError::Unsupported)
}

fn create_dir(dir: &Path) -> Result<(), SetUpError> {
    std::fs::create_dir_all(dir).map_err(|e| SetUpError::Io {
        action: "creating",
        path: dir.display().to_string(),
        message: e.to_string(),
    })
}

/// Mounts a tmpfs on `dir` unless one is there already.
fn mount_tmpfs(dir: &Path) -> Result<(), SetUpError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mount_points_under(&mountinfo, dir).iter().any(|point| point == dir) {
        return Ok(());
    }
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| SetUpError::Io {
            action: "mounting a tmpfs on",
            path: dir.display().to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, PodSpec,
    };

    use super::*;

    fn pod_with(volumes: Vec<Volume>) -> Pod {
        Pod {
            spec: Some(PodSpec { volumes: Some(volumes), ..PodSpec::default() }),
            ..Pod::default()
        }
    }

    fn pod_from(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn config_map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ConfigMap::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn read(dir: &str, path: &str) -> String {
        std::fs::read_to_string(Path::new(dir).join(path)).unwrap()
    }

    #[test]
    fn empty_dir_host_path_and_config_map_volumes_are_set_up() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host/data");
        let pod = pod_with(vec![
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            Volume {
                name: "data".into(),
                host_path: Some(HostPathVolumeSource {
                    path: host.display().to_string(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Volume::default()
            },
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "settings".into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]);
        let mut sources = Sources::default();
        sources.config_maps.insert("settings".into(), config_map(&[("greeting", "hello")]));
        let volumes = set_up(&pod, dir.path(), &sources, at(1)).unwrap();
        assert!(Path::new(&volumes["scratch"].host_path).is_dir());
        assert!(host.is_dir(), "DirectoryOrCreate creates the host directory");
        let config = Path::new(&volumes["config"].host_path);
        assert_eq!(std::fs::read_to_string(config.join("greeting")).unwrap(), "hello");
        assert!(config.join("greeting").is_symlink(), "user-visible names are links");
        assert!(volumes["config"].read_only);

        // --- a changed ConfigMap swaps the files at once and drops removed keys
        sources.config_maps.insert("settings".into(), config_map(&[("other", "x")]));
        refresh(&pod, dir.path(), &sources, at(2)).unwrap();
        assert!(!config.join("greeting").exists());
        assert_eq!(std::fs::read_to_string(config.join("other")).unwrap(), "x");
    }

    #[test]
    fn failures_name_the_volume_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let volume = |json: serde_json::Value| -> Volume { serde_json::from_value(json).unwrap() };
        let cases = [
            (
                volume(serde_json::json!({"name": "config", "configMap": {"name": "absent"}})),
                "configmap \"absent\" not found",
            ),
            (
                volume(
                    serde_json::json!({"name": "data", "hostPath": {"path": "/nonexistent/flotilla", "type": "Directory"}}),
                ),
                "is not a directory",
            ),
            (
                volume(
                    serde_json::json!({"name": "claim", "persistentVolumeClaim": {"claimName": "data"}}),
                ),
                "error processing PVC default/data: failed to fetch PVC from API server: \
              persistentvolumeclaims \"data\" not found",
            ),
            (
                volume(serde_json::json!({"name": "info", "downwardAPI": {"items": [
                {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}}]}})),
                "unsupported fieldPath: spec.nodeName",
            ),
            (
                volume(serde_json::json!({"name": "escape", "configMap": {"name": "m", "items": [
                {"key": "a", "path": "../a"}]}})),
                "invalid path: must not contain '..': ../a",
            ),
            (
                volume(serde_json::json!({"name": "disk", "gcePersistentDisk": {"pdName": "d"}})),
                "not supported",
            ),
        ];
        let mut sources = Sources::default();
        sources.config_maps.insert("m".into(), config_map(&[("a", "1")]));
        for (volume, expected) in cases {
            let name = volume.name.clone();
            let error = set_up(&pod_with(vec![volume]), dir.path(), &sources, at(1))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with(&format!("MountVolume.SetUp failed for volume {name:?} : ")),
                "{error}"
            );
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn downward_api_files_follow_the_pods_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut pod = pod_from(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [], "volumes": [{"name": "info", "downwardAPI": {
                "defaultMode": 0o600,
                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                          {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o644}]
            }}]}
        }));
        let volumes = set_up(&pod, dir.path(), &Sources::default(), at(1)).unwrap();
        let info = &volumes["info"].host_path;
        assert!(info.ends_with("volumes/kubernetes.io~downward-api/info"), "{info}");
        assert_eq!(read(info, "labels"), "app=\"web\"");
        assert_eq!(read(info, "meta/name"), "web");

        // --- a label change rewrites the file through the same directory
        pod.metadata.labels.as_mut().unwrap().insert("tier".into(), "front".into());
        refresh(&pod, dir.path(), &Sources::default(), at(2)).unwrap();
        assert_eq!(read(info, "labels"), "app=\"web\"\ntier=\"front\"");
    }

    #[test]
    fn projected_volumes_merge_their_sources() {
        let dir = tempfile::tempdir().unwrap();
        let pod = pod_from(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [], "volumes": [{"name": "all", "projected": {"sources": [
                {"configMap": {"name": "settings"}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "token"}}
            ]}}]}
        }));
        let mut sources = Sources::default();
        sources.config_maps.insert("settings".into(), config_map(&[("greeting", "hello")]));
        sources.tokens.insert(("all".into(), 2), Ok("jwt".into()));
        let volumes = set_up(&pod, dir.path(), &sources, at(1)).unwrap();
        let all = &volumes["all"].host_path;
        assert!(all.ends_with("volumes/kubernetes.io~projected/all"), "{all}");
        assert_eq!(
            [read(all, "greeting"), read(all, "namespace"), read(all, "token")],
            ["hello", "shop", "jwt"]
        );
        assert!(volumes["all"].read_only);
    }

    #[test]
    fn claims_mount_their_persistent_volume() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pv-data");
        let disk = dir.path().join("disk");
        std::fs::create_dir(&disk).unwrap();
        let pod = pod_from(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "disk", "persistentVolumeClaim": {"claimName": "disk", "readOnly": true}}
            ]}
        }));
        let mut sources = Sources::default();
        for (claim, volume) in [("data", "pv-data"), ("disk", "pv-disk")] {
            sources.claims.insert(
                claim.into(),
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": claim, "uid": format!("uid-{claim}")},
                    "spec": {"volumeName": volume}, "status": {"phase": "Bound"}
                }))
                .unwrap(),
            );
        }
        let claim_ref = |claim: &str| serde_json::json!({"uid": format!("uid-{claim}")});
        let volumes = [
            serde_json::json!({"metadata": {"name": "pv-data"}, "spec": {"claimRef": claim_ref("data"),
                "hostPath": {"path": data.display().to_string(), "type": "DirectoryOrCreate"}}}),
            serde_json::json!({"metadata": {"name": "pv-disk"}, "spec": {"claimRef": claim_ref("disk"),
                "local": {"path": disk.display().to_string()}}}),
        ];
        for volume in volumes {
            let volume: PersistentVolume = serde_json::from_value(volume).unwrap();
            sources.persistent_volumes.insert(volume.metadata.name.clone().unwrap(), volume);
        }
        let mounted = set_up(&pod, dir.path(), &sources, at(1)).unwrap();
        assert_eq!(
            mounted["data"],
            HostVolume { host_path: data.display().to_string(), read_only: false }
        );
        assert!(data.is_dir(), "the PV's DirectoryOrCreate type creates the path");
        assert_eq!(
            mounted["disk"],
            HostVolume { host_path: disk.display().to_string(), read_only: true }
        );

        // --- a local PV whose path is not on the node fails
        std::fs::remove_dir(&disk).unwrap();
        let error = set_up(&pod, dir.path(), &sources, at(2)).unwrap_err().to_string();
        assert!(error.contains("local volume path") && error.contains("does not exist"), "{error}");
    }

    #[test]
    fn referenced_objects_come_from_volumes_projections_and_environment() {
        let pod = pod_from(serde_json::json!({
            "spec": {
                "volumes": [{"name": "c", "configMap": {"name": "vol-map"}},
                            {"name": "s", "secret": {"secretName": "vol-secret"}},
                            {"name": "p", "projected": {"sources": [
                                {"configMap": {"name": "projected-map"}},
                                {"secret": {"name": "projected-secret"}},
                                {"serviceAccountToken": {"path": "token"}}]}},
                            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                "containers": [{
                    "name": "main",
                    "envFrom": [{"configMapRef": {"name": "env-map"}}],
                    "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                            {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "vol-map", "key": "k"}}}]
                }]
            }
        }));
        let found = referenced(&pod);
        assert_eq!(found.config_maps, ["env-map", "projected-map", "vol-map"]);
        assert_eq!(found.secrets, ["env-secret", "projected-secret", "vol-secret"]);
        assert_eq!(found.claims, ["data"]);
        assert!(has_updated_volumes(&pod));
        assert!(!has_updated_volumes(&pod_with(vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }])));
    }
}
