//! `persistentVolumeClaim` volumes: from the claim to its bound PersistentVolume to a path on
//! this node (kubelet's desired-state populator, then the volume plugin). The agent mounts
//! PersistentVolumes of type `hostPath` (with the PV's type check) and `local`; other types
//! need a driver it does not have.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// Why a claim does not lead to a path, worded as kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClaimError {
    #[error("failed to fetch PVC from API server: persistentvolumeclaims {name:?} not found")]
    ClaimNotFound { name: String },
    #[error("PVC is being deleted")]
    ClaimDeleting,
    #[error("PVC is not bound")]
    NotBound,
    #[error("failed to fetch PV {name} from API server: persistentvolumes {name:?} not found")]
    VolumeNotFound { name: String },
    #[error(
        "found PV object {name} but it has a nil pv.Spec.ClaimRef indicating it is not yet \
         bound to the claim"
    )]
    NoClaimRef { name: String },
    #[error(
        "found PV object {name} but its pv.Spec.ClaimRef.UID {found} does not point to \
         claim.UID {expected}"
    )]
    ClaimRefMismatch { name: String, found: String, expected: String },
    /// A PersistentVolume type that needs a driver (NFS, CSI, iSCSI, …).
    #[error(
        "PersistentVolume {name} is of type {kind}, which the Flotilla agent cannot mount \
         (it mounts hostPath and local volumes)"
    )]
    UnsupportedType { name: String, kind: String },
}

/// Where a bound claim's volume is on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimedPath {
    /// A `hostPath` PV: the path, checked against the PV's `type` like a hostPath volume.
    HostPath { path: String, kind: String },
    /// A `local` PV: the path, which must exist.
    Local { path: String },
}

/// Resolves the claim `name` of the pod's namespace to its volume's path, given the claim
/// (if it exists) and the PersistentVolumes fetched by name.
pub(crate) fn resolve(
    name: &str,
    claim: Option<&PersistentVolumeClaim>,
    volumes: &BTreeMap<String, PersistentVolume>,
) -> Result<ClaimedPath, ClaimError> {
    let claim = claim.ok_or_else(|| ClaimError::ClaimNotFound { name: name.to_owned() })?;
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(ClaimError::ClaimDeleting);
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let bound_to = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let volume_name = match (phase, bound_to) {
        (Some("Bound"), Some(volume)) if !volume.is_empty() => volume,
        _ => return Err(ClaimError::NotBound),
    };
    let volume = volumes
        .get(volume_name)
        .ok_or_else(|| ClaimError::VolumeNotFound { name: volume_name.to_owned() })?;
    let spec = volume.spec.clone().unwrap_or_default();
    let claim_ref = spec
        .claim_ref
        .as_ref()
        .ok_or_else(|| ClaimError::NoClaimRef { name: volume_name.to_owned() })?;
    let expected = claim.metadata.uid.clone().unwrap_or_default();
    let found = claim_ref.uid.clone().unwrap_or_default();
    if found != expected {
        return Err(ClaimError::ClaimRefMismatch { name: volume_name.to_owned(), found, expected });
    }
    if let Some(host) = spec.host_path {
        return Ok(ClaimedPath::HostPath { path: host.path, kind: host.type_.unwrap_or_default() });
    }
    if let Some(local) = spec.local {
        return Ok(ClaimedPath::Local { path: local.path });
    }
    // The volume's type is the one object member of the spec that is not common to all.
    let kind = serde_json::to_value(&spec)
        .ok()
        .and_then(|value| {
            let object = value.as_object()?.clone();
            let common = |key: &str| matches!(key, "claimRef" | "capacity" | "nodeAffinity");
            object.into_iter().find(|(k, v)| v.is_object() && !common(k)).map(|(key, _)| key)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Err(ClaimError::UnsupportedType { name: volume_name.to_owned(), kind })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn claim(json: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json).unwrap()
    }

    fn volume(json: serde_json::Value) -> (String, PersistentVolume) {
        let volume: PersistentVolume = serde_json::from_value(json).unwrap();
        (volume.metadata.name.clone().unwrap(), volume)
    }

    #[test]
    fn claims_resolve_to_paths_of_their_bound_volume() {
        let bound = |volume: &str| {
            claim(serde_json::json!({
                "metadata": {"name": "data", "uid": "c-1"},
                "spec": {"volumeName": volume},
                "status": {"phase": "Bound"}
            }))
        };
        let pending = claim(serde_json::json!({
            "metadata": {"name": "data", "uid": "c-1"}, "spec": {}, "status": {"phase": "Pending"}
        }));
        let deleting = claim(serde_json::json!({
            "metadata": {"name": "data", "uid": "c-1", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"volumeName": "pv-host"}, "status": {"phase": "Bound"}
        }));
        let volumes = BTreeMap::from([
            volume(serde_json::json!({
                "metadata": {"name": "pv-host"},
                "spec": {"claimRef": {"uid": "c-1"}, "capacity": {"storage": "1Gi"},
                         "hostPath": {"path": "/srv/data", "type": "DirectoryOrCreate"}}
            })),
            volume(serde_json::json!({
                "metadata": {"name": "pv-local"},
                "spec": {"claimRef": {"uid": "c-1"}, "local": {"path": "/mnt/disk"}}
            })),
            volume(serde_json::json!({
                "metadata": {"name": "pv-nfs"},
                "spec": {"claimRef": {"uid": "c-1"}, "nfs": {"server": "n", "path": "/x"}}
            })),
            volume(serde_json::json!({
                "metadata": {"name": "pv-other"},
                "spec": {"claimRef": {"uid": "c-2"}, "hostPath": {"path": "/x"}}
            })),
            volume(serde_json::json!({
                "metadata": {"name": "pv-free"}, "spec": {"hostPath": {"path": "/x"}}
            })),
        ]);
        let host =
            ClaimedPath::HostPath { path: "/srv/data".into(), kind: "DirectoryOrCreate".into() };
        let cases: Vec<(&str, Option<PersistentVolumeClaim>, Result<ClaimedPath, &str>)> = vec![
            ("hostPath PV", Some(bound("pv-host")), Ok(host)),
            ("local PV", Some(bound("pv-local")), Ok(ClaimedPath::Local { path: "/mnt/disk".into() })),
            (
                "absent claim",
                None,
                Err("failed to fetch PVC from API server: persistentvolumeclaims \"data\" not found"),
            ),
            ("pending claim", Some(pending), Err("PVC is not bound")),
            ("claim being deleted", Some(deleting), Err("PVC is being deleted")),
            (
                "absent PV",
                Some(bound("pv-gone")),
                Err("failed to fetch PV pv-gone from API server: persistentvolumes \"pv-gone\" not found"),
            ),
            ("PV of another claim", Some(bound("pv-other")), Err("does not point to claim.UID c-1")),
            ("PV without claimRef", Some(bound("pv-free")), Err("nil pv.Spec.ClaimRef")),
            ("NFS PV", Some(bound("pv-nfs")), Err("is of type nfs, which the Flotilla agent cannot mount")),
        ];
        for (name, claim, expected) in cases {
            let got = resolve("data", claim.as_ref(), &volumes);
            match expected {
                Ok(path) => assert_eq!(got, Ok(path), "{name}"),
                Err(text) => {
                    let error = got.unwrap_err().to_string();
                    assert!(error.contains(text), "{name}: {error}");
                }
            }
        }
    }
}
