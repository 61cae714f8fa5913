//! ImageLocality: name normalization, kube-scheduler 1.33's arithmetic, the image accounting in
//! the snapshot, and the score's effect on placement.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::filters::PodContext;
use super::images::{calculate_priority, normalized_image_name};
use super::scores::image_locality;
use super::snapshot::NodeInfo;
use super::tests::{node, place, pod};
use super::Snapshot;

const MB: i64 = 1024 * 1024;

/// A node listing `images` as (names, size in MiB).
fn node_with_images(name: &str, images: &[(&[&str], i64)]) -> Node {
    let images: Vec<Value> =
        images.iter().map(|(names, mb)| json!({"names": names, "sizeBytes": mb * MB})).collect();
    node(name, "4", "8Gi", json!({"status": {"images": images}}))
}

/// A pod whose init containers and containers run these images.
fn pod_running(init: &[&str], containers: &[&str]) -> Pod {
    let list = |prefix: &str, images: &[&str]| -> Vec<Value> {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("{prefix}{i}"), "image": image}))
            .collect()
    };
    let mut p = pod("p", "100m", "128Mi", json!({}));
    let spec: Value =
        json!({"initContainers": list("i", init), "containers": list("c", containers)});
    let spec: Pod = serde_json::from_value(json!({"spec": spec})).unwrap();
    let spec = spec.spec.unwrap();
    let target = p.spec.as_mut().unwrap();
    target.init_containers = spec.init_containers;
    target.containers = spec.containers;
    p
}

fn image_scores(s: &Snapshot, p: &Pod) -> Vec<i64> {
    let ctx = PodContext::new(s, p);
    let nodes: Vec<&NodeInfo> = s.nodes.iter().collect();
    image_locality(&ctx, s, &nodes)
}

#[test]
fn image_names_are_normalized_to_what_nodes_list() {
    let cases = [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("docker.io/library/nginx", "docker.io/library/nginx:latest"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("localhost:5000/app:v2", "localhost:5000/app:v2"),
        ("flotilla.local/busybox:1", "flotilla.local/busybox:1"),
        ("registry.example/app@sha256:0123abcd", "registry.example/app@sha256:0123abcd"),
        ("", ""),
    ];
    for (image, want) in cases {
        assert_eq!(normalized_image_name(image), want, "{image}");
    }
}

#[test]
fn priority_is_clamped_between_the_thresholds() {
    // 100 × (sum − 23 MiB) / (1000 MiB × containers − 23 MiB), integer division.
    let cases = [
        (0, 1, 0),
        (23 * MB, 1, 0),
        (500 * MB, 1, 48), // 100 × 477 / 977
        (500 * MB, 2, 24), // 100 × 477 / 1977
        (1000 * MB, 1, 100),
        (2000 * MB, 1, 100), // clamped to 1000 MiB
        (2000 * MB, 3, 66),  // 100 × 1977 / 2977
    ];
    for (sum, containers, want) in cases {
        assert_eq!(calculate_priority(sum, containers), want, "{sum} over {containers}");
    }
    assert_eq!(calculate_priority(0, 0), 0, "a pod without containers scores nothing");
}

#[test]
fn scores_follow_size_spread_and_container_count() {
    let s = Snapshot::new(
        vec![
            node_with_images(
                "a",
                &[(&["registry.example/app:v1"], 600), (&["registry.example/sidecar:v1"], 200)],
            ),
            node_with_images(
                "b",
                &[(&["registry.example/app:v1", "registry.example/app@sha256:aa"], 600)],
            ),
            node_with_images(
                "c",
                &[(&["docker.io/library/nginx:latest"], 150), (&["registry.example/init:v1"], 400)],
            ),
            node_with_images("d", &[]),
        ],
        vec![],
    );
    // Expected values from kube's formula: each held image adds size × holders / 4 nodes.
    let cases: [(&[&str], &[&str], [i64; 4]); 7] = [
        // 600 MiB × 2/4 = 300 MiB: 100 × 277 / 977 = 28.
        (&[], &["registry.example/app:v1"], [28, 28, 0, 0]),
        // a: 300 + 200 × 1/4 = 350 MiB over 2 containers: 100 × 327 / 1977 = 16; b: 277 → 14.
        (&[], &["registry.example/app:v1", "registry.example/sidecar:v1"], [16, 14, 0, 0]),
        // Init containers count, and `nginx` is the `docker.io/library/nginx:latest` c lists:
        // 400 × 1/4 + 150 × 1/4 = 137.5 MiB over 2 containers: 100 × 114.5 / 1977 = 5.
        (&["registry.example/init:v1"], &["nginx"], [0, 0, 5, 0]),
        // 200 × 1/4 = 50 MiB: 100 × 27 / 977 = 2.
        (&[], &["registry.example/sidecar:v1"], [2, 0, 0, 0]),
        // 150 × 1/4 = 37.5 MiB: 100 × 14.5 / 977 = 1.
        (&[], &["docker.io/library/nginx"], [0, 0, 1, 0]),
        // A digest name is matched as written: 600 × 1/4 = 150 MiB, 100 × 127 / 977 = 12.
        (&[], &["registry.example/app@sha256:aa"], [0, 12, 0, 0]),
        // The same image twice counts twice against a doubled threshold: 100 × 577 / 1977 = 29.
        (&[], &["registry.example/app:v1", "registry.example/app:v1"], [29, 29, 0, 0]),
    ];
    for (i, (init, containers, want)) in cases.iter().enumerate() {
        assert_eq!(image_scores(&s, &pod_running(init, containers)), want.to_vec(), "case {i}");
    }
}

#[test]
fn snapshot_counts_the_nodes_holding_each_image() {
    let mut s = Snapshot::new(
        vec![
            node_with_images("a", &[(&["app:v1", "app:v1"], 100)]),
            node_with_images("b", &[(&["app:v1"], 300)]),
        ],
        vec![],
    );
    // Nodes' names are kept in their full form.
    let app = normalized_image_name("app:v1");
    let state = |s: &Snapshot| s.images.get(&app).map(|st| (st.size, st.nodes));
    assert_eq!(state(&s), Some((100 * MB, 2)), "a name listed twice counts once; first size wins");
    s.upsert_node(node_with_images("a", &[(&["other:v1"], 50)]));
    assert_eq!(state(&s), Some((100 * MB, 1)), "an update drops the images a node no longer lists");
    s.remove_node("b");
    assert_eq!(state(&s), None, "an image no node lists is forgotten");
    assert_eq!(s.images.get(&normalized_image_name("other:v1")).map(|st| st.nodes), Some(1));
    s.upsert_node(node_with_images("b", &[(&["app:v1"], 300)]));
    assert_eq!(state(&s), Some((300 * MB, 1)));
}

#[test]
fn a_node_holding_the_image_wins_an_otherwise_even_choice() {
    let s = Snapshot::new(
        vec![
            node_with_images("a", &[]),
            node_with_images("b", &[(&["registry.example/ml:v3"], 800)]),
        ],
        vec![],
    );
    // Without the image the tie goes to "a"; with it, b scores 100 × (400 − 23) / 977 = 38.
    assert_eq!(place(&s, &pod_running(&[], &["registry.example/other:v1"])), "a");
    assert_eq!(place(&s, &pod_running(&[], &["registry.example/ml:v3"])), "b");
}
