//! What PreBind writes and when it considers the claims bound.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::{json, Value};

use super::{check_bindings, prebound, with_selected_node, Progress, VolumeBindingError};

fn volume(claim_ref: Value, node: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": "local-a", "resourceVersion": "7"},
        "spec": {"capacity": {"storage": "1Gi"}, "claimRef": claim_ref,
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
    }))
    .unwrap()
}

fn claim(annotations: Value, volume_name: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": "data", "namespace": "default", "uid": "data-uid",
                     "resourceVersion": "3", "annotations": annotations},
        "spec": {"volumeName": volume_name},
    }))
    .unwrap()
}

fn labels(node: &str) -> BTreeMap<String, String> {
    [("kubernetes.io/hostname".to_string(), node.to_string())].into()
}

#[test]
fn prebinding_writes_the_claim_ref_once() {
    let free = volume(Value::Null, "a");
    let c = claim(json!({}), None);
    let written = prebound(&free, &c).unwrap().expect("an unclaimed volume is written");
    let reference = written.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(
        (reference.name.as_deref(), reference.namespace.as_deref(), reference.uid.as_deref()),
        (Some("data"), Some("default"), Some("data-uid"))
    );
    let annotations = written.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.get("pv.kubernetes.io/bound-by-controller").map(String::as_str),
        Some("yes")
    );
    assert_eq!(written.metadata.resource_version.as_deref(), Some("7"), "conditional on the read");
    assert!(prebound(&written, &c).unwrap().is_none(), "already pre-bound: nothing to write");

    // A user's pre-binding without a uid gets the uid, and stays the user's.
    let by_user = volume(json!({"name": "data", "namespace": "default"}), "a");
    let written = prebound(&by_user, &c).unwrap().unwrap();
    assert_eq!(written.spec.unwrap().claim_ref.unwrap().uid.as_deref(), Some("data-uid"));
    assert!(written.metadata.annotations.unwrap_or_default().is_empty());

    let taken = volume(json!({"name": "other", "namespace": "default", "uid": "o"}), "a");
    assert!(matches!(prebound(&taken, &c), Err(VolumeBindingError::VolumeTaken { .. })));
}

#[test]
fn provisioning_selects_the_node_once() {
    let c = claim(json!({}), None);
    let written = with_selected_node(&c, "a").unwrap().unwrap();
    let annotations = written.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.get("volume.kubernetes.io/selected-node").map(String::as_str),
        Some("a")
    );
    assert!(with_selected_node(&written, "a").unwrap().is_none());
    assert!(matches!(
        with_selected_node(&written, "b"),
        Err(VolumeBindingError::ProvisioningFailed { .. })
    ));
    let bound = claim(json!({"pv.kubernetes.io/bind-completed": "yes"}), Some("local-a"));
    assert!(with_selected_node(&bound, "b").unwrap().is_none(), "a bound claim needs nothing");
}

#[test]
fn bindings_are_done_when_every_claim_is_bound_on_a_reachable_volume() {
    let reference = json!({"name": "data", "namespace": "default", "uid": "data-uid"});
    let prebound_volume = volume(reference.clone(), "a");
    let waiting = claim(json!({}), None);
    let bound = claim(json!({"pv.kubernetes.io/bind-completed": "yes"}), Some("local-a"));
    let selected = claim(json!({"volume.kubernetes.io/selected-node": "a"}), None);
    let check =
        |claim: &PersistentVolumeClaim, volume: Option<&PersistentVolume>, prebound: bool| {
            check_bindings(&[Progress { claim, volume, prebound }], "a", &labels("a"))
        };
    // Pre-bound volumes: wait for the controller, fail if it let the volume go.
    assert!(!check(&waiting, Some(&prebound_volume), true).unwrap());
    assert!(check(&bound, Some(&prebound_volume), true).unwrap());
    let released = volume(Value::Null, "a");
    assert!(matches!(
        check(&waiting, Some(&released), true),
        Err(VolumeBindingError::ClaimRefReset { .. })
    ));
    assert!(matches!(check(&waiting, None, true), Err(VolumeBindingError::VolumeGone { .. })));
    let elsewhere = volume(reference, "b");
    assert!(matches!(
        check(&bound, Some(&elsewhere), true),
        Err(VolumeBindingError::NodeAffinity { .. })
    ));
    // Provisioned claims: wait while selected, fail when the provisioner gives the node up.
    assert!(!check(&selected, None, false).unwrap());
    assert!(matches!(
        check(&waiting, None, false),
        Err(VolumeBindingError::ProvisioningFailed { .. })
    ));
    assert!(check(&bound, Some(&prebound_volume), false).unwrap());
    // All claims together: one still waiting keeps the pod waiting.
    let both = [
        Progress { claim: &bound, volume: Some(&prebound_volume), prebound: true },
        Progress { claim: &selected, volume: None, prebound: false },
    ];
    assert!(!check_bindings(&both, "a", &labels("a")).unwrap());
}
