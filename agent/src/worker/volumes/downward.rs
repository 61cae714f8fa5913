//! The files of a downward API volume or projection (kubelet's `downwardapi.CollectData`):
//! each item is the pod field (`fieldRef`) or container resource (`resourceFieldRef`) it names,
//! rendered as kubelet renders it, without a trailing newline.
//!
//! Volumes read fewer fields than env vars: only the pod's metadata
//! (`fieldpath.ExtractFieldPathAsString`), because the file must be rewritable while the pod
//! runs; labels and annotations are `key="value"` lines sorted by key, values quoted as Go's
//! `strconv.Quote` does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic::{FileProjection, Payload};
use crate::pods::container::{self, format_map, subscripted, ConfigError, Context};

/// Why a downward API item could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DownwardError {
    /// A subscript on a field other than labels or annotations.
    #[error("fieldPath {path:?} does not support subscript")]
    NoSubscript { path: String },
    /// A field a volume cannot read.
    #[error("unsupported fieldPath: {path}")]
    UnsupportedFieldPath { path: String },
    /// A `resourceFieldRef` that cannot be resolved (unknown container or resource).
    #[error(transparent)]
    Resource(#[from] ConfigError),
    /// Several items failed; kubelet aggregates their errors as `[a, b]`.
    #[error("[{}]", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Several(Vec<DownwardError>),
}

/// Returns the files of `items` for `pod`; `allocatable` stands in for resource limits a
/// container does not set. All items are tried; their errors are reported together.
pub(crate) fn payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, DownwardError> {
    let mut out = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, &field.field_path)
        } else if let Some(resource) = &item.resource_field_ref {
            resource_value(pod, resource, allocatable)
        } else {
            Ok(String::new())
        };
        match value {
            Ok(value) => {
                let mode = item.mode.unwrap_or(default_mode);
                out.insert(item.path.clone(), FileProjection::new(value, mode));
            }
            Err(error) => errors.push(error),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(DownwardError::Several(errors)),
    }
}

/// Kubelet's `fieldpath.ExtractFieldPathAsString` for a pod.
pub(crate) fn field_value(pod: &Pod, path: &str) -> Result<String, DownwardError> {
    let metadata = &pod.metadata;
    if let Some((field, key)) = subscripted(path) {
        let map = match field {
            "metadata.labels" => metadata.labels.as_ref(),
            "metadata.annotations" => metadata.annotations.as_ref(),
            _ => return Err(DownwardError::NoSubscript { path: path.to_owned() }),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.labels" => format_map(metadata.labels.as_ref()),
        "metadata.annotations" => format_map(metadata.annotations.as_ref()),
        "metadata.name" => metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        _ => return Err(DownwardError::UnsupportedFieldPath { path: path.to_owned() }),
    })
}

/// Kubelet's `ExtractResourceValueByContainerNameAndNodeAllocatable`: the named container's
/// value, its unset limits read as the node's allocatable amounts. The container name is
/// required in volumes (there is no "this container").
fn resource_value(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, DownwardError> {
    let name = selector.container_name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let target = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .ok_or(ConfigError::ResourceContainerNotFound { name })?;
    let context = Context { node_allocatable: allocatable.clone(), ..Context::default() };
    Ok(container::resource_value(pod, target, selector, &context)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::ObjectFieldSelector;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"tier": "front", "app": "web"},
                "annotations": {"note": "say \"hi\"\n\tbye\u{7}\u{a0}é", "empty": ""}
            },
            "spec": {
                "initContainers": [{"name": "setup", "resources": {"limits": {"cpu": "250m"}}}],
                "containers": [{
                    "name": "main",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"memory": "128Mi"}}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn fields_render_as_kubelet_renders_them() {
        let cases = [
            ("metadata.name", Ok("web")),
            ("metadata.namespace", Ok("shop")),
            ("metadata.uid", Ok("u-1")),
            ("metadata.labels", Ok("app=\"web\"\ntier=\"front\"")),
            ("metadata.annotations", Ok("empty=\"\"\nnote=\"say \\\"hi\\\"\\n\\tbye\\a\\u00a0é\"")),
            ("metadata.labels['tier']", Ok("front")),
            ("metadata.labels['absent']", Ok("")),
            ("metadata.annotations['note']", Ok("say \"hi\"\n\tbye\u{7}\u{a0}é")),
            ("spec.nodeName", Err("unsupported fieldPath: spec.nodeName")),
            ("status.podIP", Err("unsupported fieldPath: status.podIP")),
            (
                "metadata.name['x']",
                Err("fieldPath \"metadata.name['x']\" does not support subscript"),
            ),
        ];
        let pod = pod();
        for (path, expected) in cases {
            let got = field_value(&pod, path).map_err(|e| e.to_string());
            assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "{path}");
        }
    }

    fn resource(container: &str, resource: &str, divisor: Option<&str>) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: "value".into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some(container.into()),
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
            }),
            ..DownwardAPIVolumeFile::default()
        }
    }

    #[test]
    fn resources_divide_and_default_to_the_node() {
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
        ]);
        let cases = [
            (resource("main", "requests.cpu", None), Ok("1")),
            (resource("main", "requests.cpu", Some("1m")), Ok("100")),
            (resource("main", "requests.memory", Some("1Mi")), Ok("64")),
            (resource("main", "limits.memory", Some("1Mi")), Ok("128")),
            (resource("main", "limits.cpu", None), Ok("4")),
            (resource("main", "limits.cpu", Some("1m")), Ok("4000")),
            (resource("setup", "limits.cpu", Some("1m")), Ok("250")),
            (resource("setup", "limits.memory", Some("1Gi")), Ok("8")),
            (resource("absent", "limits.cpu", None), Err("container absent not found")),
            (
                resource("main", "limits.gpu", None),
                Err("unsupported container resource : limits.gpu"),
            ),
        ];
        let pod = pod();
        for (item, expected) in cases {
            let got = payload(&pod, std::slice::from_ref(&item), 0o644, &allocatable)
                .map(|files| String::from_utf8(files["value"].data.clone()).unwrap())
                .map_err(|e| e.to_string());
            let shown = item.resource_field_ref.as_ref().map(|r| (&r.container_name, &r.resource));
            assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "{shown:?}");
        }
    }

    #[test]
    fn items_take_their_mode_and_errors_are_aggregated() {
        let field = |path: &str, field_path: &str, mode: Option<i32>| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.into(),
            }),
            mode,
            ..DownwardAPIVolumeFile::default()
        };
        let pod = pod();
        let items =
            [field("name", "metadata.name", None), field("labels", "metadata.labels", Some(0o600))];
        let files = payload(&pod, &items, 0o444, &BTreeMap::new()).unwrap();
        assert_eq!(files["name"], FileProjection::new("web", 0o444));
        assert_eq!(files["labels"].mode, 0o600);

        let broken = [field("a", "spec.nodeName", None), field("b", "status.phase", None)];
        let error = payload(&pod, &broken, 0o644, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "[unsupported fieldPath: spec.nodeName, unsupported fieldPath: status.phase]"
        );
    }
}
