//! VolumeBinding: PreFilter and Filter messages, volume node affinity, WaitForFirstConsumer
//! matching and provisioning, and the snapshot's claims, volumes and assumptions.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use super::tests::{merge, node, pod};
use super::{schedule_from, Snapshot};

/// An Available ReadWriteOnce volume of `class`, reachable from `node` only (if given).
fn volume(name: &str, size: &str, node: Option<&str>, class: &str) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": class, "local": {"path": format!("/mnt/{name}")}},
        "status": {"phase": "Available"}
    });
    if let Some(node) = node {
        merge(
            &mut v,
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}),
        );
    }
    serde_json::from_value(v).unwrap()
}

/// A Pending ReadWriteOnce claim of `class` in "default".
fn claim(name: &str, size: &str, class: &str, extra: Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                 "storageClassName": class},
        "status": {"phase": "Pending"}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A claim the PersistentVolume controller bound to `volume`.
fn bound_claim(name: &str, volume: &str) -> PersistentVolumeClaim {
    claim(
        name,
        "1Gi",
        "",
        json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
               "spec": {"volumeName": volume}, "status": {"phase": "Bound"}}),
    )
}

fn class(name: &str, mode: &str, provisioner: &str, extra: Value) -> StorageClass {
    let mut v =
        json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode});
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// A pod mounting the named claims.
fn pod_using(name: &str, claims: &[&str], extra: Value) -> Pod {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mut p = pod(name, "100m", "128Mi", extra);
    let parsed: Pod =
        serde_json::from_value(json!({"spec": {"containers": [], "volumes": volumes}})).unwrap();
    p.spec.as_mut().unwrap().volumes = parsed.spec.unwrap().volumes;
    p
}

/// Nodes a, b, c (zones z1, z1, z2) with the given storage objects.
fn cluster(
    claims: Vec<PersistentVolumeClaim>,
    volumes: Vec<PersistentVolume>,
    classes: Vec<StorageClass>,
) -> Snapshot {
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let mut s = Snapshot::new(
        vec![
            node("a", "4", "8Gi", zone("z1")),
            node("b", "4", "8Gi", zone("z1")),
            node("c", "4", "8Gi", zone("z2")),
        ],
        vec![],
    );
    s.claims_relisted(claims);
    s.volumes_relisted(volumes);
    s.classes_relisted(classes);
    s
}

/// Where the pod goes and what is written first: `node [prebind volume>claim ...] [provision claim ...]`.
fn decide(s: &Snapshot, p: &Pod) -> String {
    match schedule_from(s, p, 0) {
        Ok(d) => {
            let mut out = d.placement.node;
            for (volume, claim) in &d.volumes.prebind {
                let (v, c) = (volume.metadata.name.as_deref(), claim.metadata.name.as_deref());
                out.push_str(&format!(" prebind {}>{}", v.unwrap(), c.unwrap()));
            }
            for claim in &d.volumes.provision {
                out.push_str(&format!(" provision {}", claim.metadata.name.as_deref().unwrap()));
            }
            out
        }
        Err(e) => format!("ERR {e}"),
    }
}

/// kube's FitError message when no node passed.
fn nowhere(reasons: &str) -> String {
    format!(
        "ERR 0/3 nodes are available: {reasons}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
}

fn wffc_local() -> StorageClass {
    class("local", "WaitForFirstConsumer", "kubernetes.io/no-provisioner", json!({}))
}

#[test]
fn bound_claims_pin_the_pod_to_their_volume_node() {
    let s = cluster(
        vec![
            bound_claim("data", "local-b"),
            bound_claim("orphan", "gone"),
            bound_claim("anywhere", "network"),
            claim(
                "lost",
                "1Gi",
                "",
                json!({"spec": {"volumeName": "x"}, "status": {"phase": "Lost"}}),
            ),
            claim(
                "leaving",
                "1Gi",
                "",
                json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
            ),
            claim("pending", "1Gi", "", json!({})),
            claim("standard-pending", "1Gi", "standard", json!({})),
        ],
        vec![volume("local-b", "10Gi", Some("b"), ""), volume("network", "10Gi", None, "")],
        vec![class("standard", "Immediate", "example.com/nfs", json!({}))],
    );
    let on_a = json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "a"}}});
    let cases = [
        (pod_using("p", &["data"], json!({})), "b".to_string()),
        (pod_using("p", &["anywhere"], json!({})), "a".to_string()),
        (pod_using("p", &["data", "anywhere"], json!({})), "b".to_string()),
        (
            pod_using("p", &["data"], on_a.clone()),
            nowhere("1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector"),
        ),
        (
            pod_using("p", &["orphan"], json!({})),
            nowhere("3 node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"),
        ),
        (pod_using("p", &["missing"], json!({})), nowhere(r#"persistentvolumeclaim "missing" not found"#)),
        (
            pod_using("p", &["lost"], json!({})),
            nowhere(r#"persistentvolumeclaim "lost" bound to non-existent persistentvolume "x""#),
        ),
        (pod_using("p", &["leaving"], json!({})), nowhere(r#"persistentvolumeclaim "leaving" is being deleted"#)),
        (pod_using("p", &["pending"], json!({})), nowhere("pod has unbound immediate PersistentVolumeClaims")),
        (
            pod_using("p", &["data", "standard-pending"], json!({})),
            nowhere("pod has unbound immediate PersistentVolumeClaims"),
        ),
        // The first failing claim in volume order is the one reported.
        (
            pod_using("p", &["data", "missing", "lost"], json!({})),
            nowhere(r#"persistentvolumeclaim "missing" not found"#),
        ),
    ];
    for (i, (p, want)) in cases.into_iter().enumerate() {
        assert_eq!(decide(&s, &p), want, "case {i}");
    }
    let never = pod_using("p", &["missing"], json!({"spec": {"preemptionPolicy": "Never"}}));
    assert_eq!(
        decide(&s, &never),
        r#"ERR 0/3 nodes are available: persistentvolumeclaim "missing" not found. preemption: not eligible due to preemptionPolicy=Never."#
    );
}

#[test]
fn generic_ephemeral_volumes_need_their_claim_owned_by_the_pod() {
    let owned = claim(
        "p-scratch",
        "1Gi",
        "",
        json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"},
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pod-uid", "controller": true}]},
               "spec": {"volumeName": "local-c"}}),
    );
    let s = cluster(vec![owned], vec![volume("local-c", "1Gi", Some("c"), "")], vec![]);
    let ephemeral = |uid: &str| {
        let mut p = pod("p", "100m", "128Mi", json!({"metadata": {"uid": uid}}));
        let parsed: Pod = serde_json::from_value(json!({"spec": {"containers": [], "volumes": [
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}}]}}))
        .unwrap();
        p.spec.as_mut().unwrap().volumes = parsed.spec.unwrap().volumes;
        p
    };
    assert_eq!(decide(&s, &ephemeral("pod-uid")), "c");
    assert_eq!(
        decide(&s, &ephemeral("other-uid")),
        nowhere("PVC default/p-scratch was not created for pod default/p (pod is not owner)")
    );
    let empty = cluster(vec![], vec![], vec![]);
    assert_eq!(
        decide(&empty, &ephemeral("pod-uid")),
        nowhere(
            r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch""#
        )
    );
}

#[test]
fn wait_for_first_consumer_claims_get_the_smallest_volume_a_node_can_reach() {
    let s = cluster(
        vec![
            claim("eight", "8Gi", "local", json!({})),
            claim("four", "4Gi", "local", json!({})),
            claim("huge", "1Ti", "local", json!({})),
            claim("fast", "1Gi", "fast", json!({})),
            claim("zonal", "1Gi", "zonal", json!({})),
            claim("in-tree", "1Gi", "in-tree", json!({})),
            claim(
                "picky",
                "1Gi",
                "local",
                json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
            ),
            claim(
                "chosen-b",
                "1Gi",
                "fast",
                json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "b"}}}),
            ),
            bound_claim("data", "local-b-bound"),
        ],
        vec![
            volume("a-10", "10Gi", Some("a"), "local"),
            volume("a-5", "5Gi", Some("a"), "local"),
            volume("c-20", "20Gi", Some("c"), "local"),
            {
                let mut v = volume("c-gold", "2Gi", Some("c"), "local");
                v.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
                v
            },
            volume("local-b-bound", "1Gi", Some("b"), ""),
        ],
        vec![
            wffc_local(),
            class("fast", "WaitForFirstConsumer", "example.com/csi", json!({})),
            class("in-tree", "WaitForFirstConsumer", "kubernetes.io/aws-ebs", json!({})),
            class(
                "zonal",
                "WaitForFirstConsumer",
                "example.com/csi",
                json!({"allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["z2"]}]}]}),
            ),
        ],
    );
    let cases = [
        // a-10 (a) and c-20 (c) fit; a's is smaller on a, and "a" wins the tie of scores.
        (pod_using("p", &["eight"], json!({})), "a prebind a-10>eight"),
        // Smallest request first: four takes a-5, eight takes a-10; c-20 alone cannot serve both.
        (pod_using("p", &["eight", "four"], json!({})), "a prebind a-5>four prebind a-10>eight"),
        (pod_using("p", &["huge"], json!({})), "ERR 0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
        (pod_using("p", &["picky"], json!({})), "c prebind c-gold>picky"),
        // An external provisioner can create a volume anywhere its class allows.
        (pod_using("p", &["fast"], json!({})), "a provision fast"),
        (pod_using("p", &["zonal"], json!({})), "c provision zonal"),
        // No in-tree provisioner exists here.
        (pod_using("p", &["in-tree"], json!({})), "ERR 0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
        // A claim already selected for a node keeps the pod there.
        (pod_using("p", &["chosen-b"], json!({})), "b provision chosen-b"),
        // A bound claim on b and a waiting claim served on a or c: a and c have the affinity
        // conflict, b no volume to bind.
        (pod_using("p", &["data", "eight"], json!({})), "ERR 0/3 nodes are available: 1 node(s) didn't find available persistent volumes to bind, 2 node(s) had volume node affinity conflict. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
        // With a waiting claim no volume serves, a and c get both reasons, each counted.
        (pod_using("p", &["data", "huge"], json!({})), "ERR 0/3 nodes are available: 2 node(s) had volume node affinity conflict, 3 node(s) didn't find available persistent volumes to bind. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
    ];
    for (i, (p, want)) in cases.into_iter().enumerate() {
        assert_eq!(decide(&s, &p), want, "case {i}");
    }
}

#[test]
fn a_volume_pre_bound_to_the_claim_is_used_even_if_larger() {
    let mut pre_bound = volume("big-c", "100Gi", Some("c"), "local");
    pre_bound.spec.as_mut().unwrap().claim_ref =
        serde_json::from_value(json!({"namespace": "default", "name": "mine"})).unwrap();
    let mut taken = volume("small-a", "1Gi", Some("a"), "local");
    taken.spec.as_mut().unwrap().claim_ref = serde_json::from_value(
        json!({"namespace": "default", "name": "other", "uid": "other-uid"}),
    )
    .unwrap();
    let s = cluster(
        vec![claim("mine", "1Gi", "local", json!({})), claim("yours", "1Gi", "local", json!({}))],
        vec![pre_bound, taken, volume("small-b", "1Gi", Some("b"), "local")],
        vec![wffc_local()],
    );
    assert_eq!(decide(&s, &pod_using("p", &["mine"], json!({}))), "c prebind big-c>mine");
    assert_eq!(decide(&s, &pod_using("p", &["yours"], json!({}))), "b prebind small-b>yours");
}

#[test]
fn volumes_chosen_for_placed_pods_are_not_handed_out_twice() {
    let mut s = cluster(
        vec![claim("one", "1Gi", "local", json!({})), claim("two", "1Gi", "local", json!({}))],
        vec![volume("only", "5Gi", Some("b"), "local")],
        vec![wffc_local()],
    );
    let first = pod_using("first", &["one"], json!({}));
    let second = pod_using("second", &["two"], json!({}));
    let decision = schedule_from(&s, &first, 0).unwrap();
    assert_eq!(decision.placement.node, "b");
    s.add_pod(&first, "b");
    s.assume_volumes("default/first", "b", &decision.volumes);
    let taken = nowhere("3 node(s) didn't find available persistent volumes to bind");
    assert_eq!(decide(&s, &second), taken, "the only volume is assumed for claim one");
    // The same claim used by another pod follows its volume.
    assert_eq!(decide(&s, &pod_using("again", &["one"], json!({}))), "b prebind only>one");

    // --- the binding failed: the volume is free again
    s.forget_volumes("default/first");
    assert_eq!(decide(&s, &second), "b prebind only>two");

    // --- assumed again, then the watch shows the volume pre-bound: the watch is the truth
    s.assume_volumes("default/first", "b", &decision.volumes);
    let mut written = volume("only", "5Gi", Some("b"), "local");
    written.spec.as_mut().unwrap().claim_ref =
        serde_json::from_value(json!({"namespace": "default", "name": "one", "uid": "one-uid"}))
            .unwrap();
    s.upsert_volume(written);
    s.forget_volumes("default/first");
    assert_eq!(
        decide(&s, &second),
        taken,
        "forgetting the pod no longer frees a volume the watch shows taken"
    );
}

#[test]
fn provisioned_claims_are_assumed_on_their_node() {
    let fast = class("fast", "WaitForFirstConsumer", "example.com/csi", json!({}));
    let mut s = cluster(vec![claim("shared", "1Gi", "fast", json!({}))], vec![], vec![fast]);
    let first = pod_using(
        "first",
        &["shared"],
        json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "c"}}}),
    );
    let decision = schedule_from(&s, &first, 0).unwrap();
    assert_eq!(decision.placement.node, "c");
    s.assume_volumes("default/first", "c", &decision.volumes);
    // Another pod sharing the claim must follow it to c.
    assert_eq!(decide(&s, &pod_using("second", &["shared"], json!({}))), "c provision shared");
    // The watch shows the claim annotated: the annotation is the truth now.
    s.upsert_claim(claim(
        "shared",
        "1Gi",
        "fast",
        json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "c"}}}),
    ));
    s.forget_volumes("default/first");
    assert_eq!(decide(&s, &pod_using("second", &["shared"], json!({}))), "c provision shared");
}

#[test]
fn snapshot_follows_claims_volumes_and_classes() {
    let mut s = cluster(vec![], vec![], vec![]);
    let p = pod_using("p", &["data"], json!({}));
    assert_eq!(decide(&s, &p), nowhere(r#"persistentvolumeclaim "data" not found"#));

    // --- the claim appears, unbound, with a WaitForFirstConsumer class not known yet
    s.upsert_claim(claim("data", "1Gi", "local", json!({})));
    assert_eq!(decide(&s, &p), nowhere("pod has unbound immediate PersistentVolumeClaims"));
    s.upsert_class(wffc_local());
    assert_eq!(
        decide(&s, &p),
        nowhere("3 node(s) didn't find available persistent volumes to bind")
    );

    // --- a volume on c appears
    s.upsert_volume(volume("local-c", "1Gi", Some("c"), "local"));
    assert_eq!(decide(&s, &p), "c prebind local-c>data");

    // --- the controller binds them
    s.upsert_claim(bound_claim("data", "local-c"));
    assert_eq!(decide(&s, &p), "c");

    // --- the volume is deleted, then a relist forgets the claim
    s.remove_volume("local-c");
    assert_eq!(
        decide(&s, &p),
        nowhere("3 node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)")
    );
    s.claims_relisted(vec![]);
    assert_eq!(decide(&s, &p), nowhere(r#"persistentvolumeclaim "data" not found"#));

    // --- removing the class makes a waiting claim immediate again
    s.upsert_claim(claim("data", "1Gi", "local", json!({})));
    s.remove_class("local");
    assert_eq!(decide(&s, &p), nowhere("pod has unbound immediate PersistentVolumeClaims"));
    s.classes_relisted(vec![wffc_local()]);
    s.volumes_relisted(vec![volume("local-a", "1Gi", Some("a"), "local")]);
    assert_eq!(decide(&s, &p), "a prebind local-a>data");
    s.remove_claim("default", "data");
    assert_eq!(decide(&s, &p), nowhere(r#"persistentvolumeclaim "data" not found"#));
}
