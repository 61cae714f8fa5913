//! The pod's volumes on the node: directories the containers mount, under the pod's own
//! directory (`<pods>/<uid>/volumes/<plugin>/<name>`, kubelet's layout).
//!
//! - `emptyDir`: a directory that lives as long as the pod (medium `Memory` is a tmpfs).
//! - `hostPath`: the node's path, checked against its `type` (`DirectoryOrCreate` creates it).
//! - `configMap` and `secret`: one file per key (or per listed item), rewritten on every sync so
//!   a changed object reaches the running containers.
//!
//! Other volume types fail with a message naming the volume, shown as a `FailedMount` event; the
//! pod stays in `ContainerCreating`, as it would with kubelet when a mount cannot be set up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use k8s_openapi::ByteString;

use crate::containerd::mount_points_under;
use crate::pods::container::HostVolume;

/// Why a volume could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VolumeError {
    #[error("MountVolume.SetUp failed for volume {volume:?} : {reason}")]
    SetUp { volume: String, reason: String },
}

/// A volume's files: relative path → contents and mode (the volume's default when `None`).
type Files = BTreeMap<String, (Vec<u8>, Option<i32>)>;

/// The objects the pod's volumes read, fetched by the caller.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

/// The ConfigMap and Secret names the pod's volumes and containers reference.
pub(crate) fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = pod.spec.as_ref() else { return (config_maps, secrets) };
    for volume in spec.volumes.iter().flatten() {
        if let Some(source) = &volume.config_map {
            config_maps.push(source.name.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(name);
        }
    }
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in containers {
        for from in container.env_from.iter().flatten() {
            config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for env in container.env.iter().flatten() {
            let source = env.value_from.as_ref();
            config_maps
                .extend(source.and_then(|s| s.config_map_key_ref.as_ref()).map(|r| r.name.clone()));
            secrets.extend(source.and_then(|s| s.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        }
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}

/// Sets up every volume of `pod` under `pod_dir` and returns where each is on the host.
pub(crate) fn set_up(
    pod: &Pod,
    pod_dir: &Path,
    sources: &Sources,
) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
    let mut out = BTreeMap::new();
    for volume in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let fail = |reason: String| VolumeError::SetUp { volume: volume.name.clone(), reason };
        let host = set_up_one(volume, pod_dir, sources).map_err(fail)?;
        out.insert(volume.name.clone(), host);
    }
    Ok(out)
}

fn set_up_one(volume: &Volume, pod_dir: &Path, sources: &Sources) -> Result<HostVolume, String> {
    let plugin_dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&volume.name);
    let writable =
        |path: PathBuf| HostVolume { host_path: path.display().to_string(), read_only: false };
    if let Some(empty) = &volume.empty_dir {
        let dir = plugin_dir("kubernetes.io~empty-dir");
        create_dir(&dir)?;
        if empty.medium.as_deref() == Some("Memory") {
            mount_tmpfs(&dir)?;
        }
        return Ok(writable(dir));
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        check_host_path(&path, host.type_.as_deref().unwrap_or(""))?;
        return Ok(writable(path));
    }
    if let Some(source) = &volume.config_map {
        let dir = plugin_dir("kubernetes.io~configmap");
        let files = match sources.config_maps.get(&source.name) {
            Some(map) => config_map_files(map),
            None if source.optional == Some(true) => BTreeMap::new(),
            None => return Err(format!("configmap {:?} not found", source.name)),
        };
        let files = select(files, source.items.as_deref(), "configmap", &source.name)?;
        write_files(&dir, &files, source.default_mode.unwrap_or(0o644))?;
        return Ok(HostVolume { host_path: dir.display().to_string(), read_only: true });
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let dir = plugin_dir("kubernetes.io~secret");
        let files = match sources.secrets.get(&name) {
            Some(secret) => secret_files(secret),
            None if source.optional == Some(true) => BTreeMap::new(),
            None => return Err(format!("secret {name:?} not found")),
        };
        let files = select(files, source.items.as_deref(), "secret", &name)?;
        write_files(&dir, &files, source.default_mode.unwrap_or(0o644))?;
        return Ok(HostVolume { host_path: dir.display().to_string(), read_only: true });
    }
    Err("this volume type is not supported by the Flotilla agent yet (emptyDir, hostPath, \
         configMap and secret are)"
        .to_owned())
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// Mounts a tmpfs on `dir` unless one is there already.
fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mount_points_under(&mountinfo, dir).iter().any(|point| point == dir) {
        return Ok(());
    }
    let target = dir.display();
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| format!("mounting a tmpfs on {target}: {e}"))
}

/// Kubelet's hostPath type checks.
fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => create_dir(path),
        "Directory" if metadata.as_ref().is_ok_and(|m| m.is_dir()) => Ok(()),
        "Directory" => Err(format!("hostPath type check failed: {shown} is not a directory")),
        "FileOrCreate" if metadata.is_ok() => Ok(()),
        "FileOrCreate" => {
            if let Some(parent) = path.parent() {
                create_dir(parent)?;
            }
            std::fs::write(path, b"").map_err(|e| format!("creating {shown}: {e}"))
        }
        "File" if metadata.as_ref().is_ok_and(|m| m.is_file()) => Ok(()),
        "File" => Err(format!("hostPath type check failed: {shown} is not a file")),
        "Socket" | "CharDevice" | "BlockDevice" if metadata.is_ok() => Ok(()),
        "Socket" | "CharDevice" | "BlockDevice" => {
            Err(format!("hostPath type check failed: {shown} does not exist"))
        }
        other => Err(format!("invalid hostPath type {other:?}")),
    }
}

fn config_map_files(map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, value) in map.data.iter().flatten() {
        files.insert(key.clone(), value.clone().into_bytes());
    }
    for (key, ByteString(value)) in map.binary_data.iter().flatten() {
        files.insert(key.clone(), value.clone());
    }
    files
}

fn secret_files(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, ByteString(value)) in secret.data.iter().flatten() {
        files.insert(key.clone(), value.clone());
    }
    for (key, value) in secret.string_data.iter().flatten() {
        files.insert(key.clone(), value.clone().into_bytes());
    }
    files
}

/// Applies `items` (key → path) to the object's files: with items, only those keys, at their
/// paths; a missing key is an error, as with kubelet.
fn select(
    files: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    kind: &str,
    name: &str,
) -> Result<Files, String> {
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return Ok(files.into_iter().map(|(key, bytes)| (key, (bytes, None))).collect());
    };
    let mut out = BTreeMap::new();
    for item in items {
        let bytes = files
            .get(&item.key)
            .ok_or_else(|| format!("{kind} {name:?} has no key {:?}", item.key))?;
        if item.path.split('/').any(|part| part == "..") || item.path.starts_with('/') {
            return Err(format!("invalid path {:?} for key {:?}", item.path, item.key));
        }
        out.insert(item.path.clone(), (bytes.clone(), item.mode));
    }
    Ok(out)
}

/// Writes `files` into `dir`, each through a temporary file and a rename so a reader never
/// sees half a file, and removes files no longer there.
fn write_files(dir: &Path, files: &Files, default_mode: i32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    create_dir(dir)?;
    for (path, (bytes, mode)) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            create_dir(parent)?;
        }
        if std::fs::read(&target).is_ok_and(|current| current == *bytes) {
            continue;
        }
        let temporary = target.with_extension("flotilla-tmp");
        std::fs::write(&temporary, bytes).map_err(|e| format!("writing {path}: {e}"))?;
        let mode = mode.unwrap_or(default_mode) as u32 & 0o777;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("setting the mode of {path}: {e}"))?;
        std::fs::rename(&temporary, &target).map_err(|e| format!("writing {path}: {e}"))?;
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kept = files.keys().any(|path| path == &name || path.starts_with(&format!("{name}/")));
        if !kept {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
        PersistentVolumeClaimVolumeSource, PodSpec,
    };

    use super::*;

    fn pod_with(volumes: Vec<Volume>) -> Pod {
        Pod {
            spec: Some(PodSpec { volumes: Some(volumes), ..PodSpec::default() }),
            ..Pod::default()
        }
    }

    fn config_map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ConfigMap::default()
        }
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
        let volumes = set_up(&pod, dir.path(), &sources).unwrap();
        assert!(Path::new(&volumes["scratch"].host_path).is_dir());
        assert!(host.is_dir(), "DirectoryOrCreate creates the host directory");
        let config = Path::new(&volumes["config"].host_path);
        assert_eq!(std::fs::read_to_string(config.join("greeting")).unwrap(), "hello");
        assert!(volumes["config"].read_only);

        // --- a changed ConfigMap rewrites the file in place and drops removed keys
        sources.config_maps.insert("settings".into(), config_map(&[("other", "x")]));
        set_up(&pod, dir.path(), &sources).unwrap();
        assert!(!config.join("greeting").exists());
        assert_eq!(std::fs::read_to_string(config.join("other")).unwrap(), "x");
    }

    #[test]
    fn failures_name_the_volume_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing_map = Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "absent".into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        };
        let not_a_dir = Volume {
            name: "data".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/nonexistent/flotilla".into(),
                type_: Some("Directory".into()),
            }),
            ..Volume::default()
        };
        let unsupported = Volume {
            name: "claim".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data".into(),
                read_only: None,
            }),
            ..Volume::default()
        };
        let cases = [
            (missing_map, "configmap \"absent\" not found"),
            (not_a_dir, "is not a directory"),
            (unsupported, "not supported"),
        ];
        for (volume, expected) in cases {
            let name = volume.name.clone();
            let error = set_up(&pod_with(vec![volume]), dir.path(), &Sources::default())
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("{name:?}")), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn items_select_keys_and_paths() {
        let files =
            BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        let items = [KeyToPath { key: "b".into(), path: "sub/b.txt".into(), mode: Some(0o600) }];
        let selected = select(files.clone(), Some(&items), "configmap", "m").unwrap();
        assert_eq!(selected.keys().collect::<Vec<_>>(), ["sub/b.txt"]);
        let escape = [KeyToPath { key: "a".into(), path: "../a".into(), mode: None }];
        assert!(select(files.clone(), Some(&escape), "configmap", "m").is_err());
        let absent = [KeyToPath { key: "z".into(), path: "z".into(), mode: None }];
        assert!(select(files, Some(&absent), "configmap", "m").unwrap_err().contains("no key"));
    }

    #[test]
    fn referenced_objects_come_from_volumes_and_environment() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "volumes": [{"name": "c", "configMap": {"name": "vol-map"}},
                            {"name": "s", "secret": {"secretName": "vol-secret"}}],
                "containers": [{
                    "name": "main",
                    "envFrom": [{"configMapRef": {"name": "env-map"}}],
                    "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}]
                }]
            }
        }))
        .unwrap();
        let (maps, secrets) = referenced(&pod);
        assert_eq!(maps, ["env-map", "vol-map"]);
        assert_eq!(secrets, ["env-secret", "vol-secret"]);
    }
}
