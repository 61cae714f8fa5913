//! ImageLocality: which container images each node already holds (`Node.status.images`), how
//! many nodes hold each image name, and the score kube-scheduler 1.33 gives a node for holding a
//! pod's images.
//!
//! Invariant: [`ImageStates`] counts, per image name, the nodes of the snapshot that list it; a
//! node listing a name twice counts once. An entry keeps the size it was first reported with
//! until no node lists the name any more, as kube-scheduler's cache does.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::scores::MAX_SCORE;

const MB: i64 = 1024 * 1024;
/// Images summing to less than this earn nothing (`minThreshold`).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Images summing to more than this per container earn the full score
/// (`maxContainerThreshold`).
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// One image name as the whole cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageState {
    /// `sizeBytes` of the first node that reported the name.
    pub size: i64,
    /// How many nodes list the name.
    pub nodes: usize,
}

/// Image names over every node of the snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageStates {
    by_name: HashMap<String, ImageState>,
}

/// The image names a node lists with their sizes, without repeating a name (the first wins).
pub(crate) fn node_images(node: &Node) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    let images = node.status.as_ref().and_then(|s| s.images.as_deref()).unwrap_or_default();
    for image in images {
        let size = image.size_bytes.unwrap_or(0);
        for name in image.names.iter().flatten() {
            let name = normalized_image_name(name);
            if !out.iter().any(|(seen, _)| *seen == name) {
                out.push((name, size));
            }
        }
    }
    out
}

impl ImageStates {
    /// Counts a node listing `images` (names without repeats, as [`node_images`] returns).
    pub fn add_node(&mut self, images: &[(String, i64)]) {
        for (name, size) in images {
            self.by_name
                .entry(name.clone())
                .or_insert(ImageState { size: *size, nodes: 0 })
                .nodes += 1;
        }
    }

    /// Stops counting a node that listed `names`; names no node lists any more are forgotten.
    pub fn remove_node<'a>(&mut self, names: impl Iterator<Item = &'a String>) {
        for name in names {
            if let Some(state) = self.by_name.get_mut(name) {
                state.nodes -= 1;
                if state.nodes == 0 {
                    self.by_name.remove(name);
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&ImageState> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// An image name in the full form containerd lists on nodes, so a pod's `nginx` and a node's
/// `docker.io/library/nginx:latest` are one image: a name without a registry (no `.` or `:` in
/// its first part, and not `localhost`) is on `docker.io`, under `library/` when it has no
/// path; a name without a tag gets `:latest` (kube-scheduler's `normalizedImageName`: the last
/// `:` must follow the last `/`), a digest stays as written. kube-scheduler 1.33 leaves out
/// the registry part, so there `nginx` never matches what a node lists.
pub(crate) fn normalized_image_name(image: &str) -> String {
    if image.is_empty() {
        return String::new();
    }
    let qualified = match image.split_once('/') {
        None => format!("docker.io/library/{image}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => image.to_string(),
        Some(_) => format!("docker.io/{image}"),
    };
    // `None < Some(_)` plays the role of Go's `LastIndex` returning -1.
    if qualified.rfind(':') <= qualified.rfind('/') {
        format!("{qualified}:latest")
    } else {
        qualified
    }
}

/// The normalized images of the pod's init containers and containers, one per container
/// (kube-scheduler 1.33 scores both kinds and counts both in the threshold).
pub(crate) fn pod_images(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| normalized_image_name(c.image.as_deref().unwrap_or_default()))
        .collect()
}

/// The size of an image scaled by the fraction of all nodes holding it (`scaledImageScore`), so
/// an image present everywhere does not pull every pod onto the same few nodes.
fn scaled_image_score(state: &ImageState, total_nodes: usize) -> i64 {
    let spread = state.nodes as f64 / total_nodes as f64;
    (state.size as f64 * spread) as i64
}

/// `calculatePriority`: the summed scaled sizes, clamped to
/// `[23 MiB, 1000 MiB × containers]`, mapped linearly onto 0..=100.
pub(crate) fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * containers as i64;
    let clamped = if sum < MIN_THRESHOLD {
        MIN_THRESHOLD
    } else if sum > max_threshold {
        max_threshold
    } else {
        sum
    };
    MAX_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

/// ImageLocality's score for a node listing `node_images`, in a snapshot of `total_nodes` nodes.
pub(crate) fn image_locality(
    images: &[String],
    node_images: &[String],
    states: &ImageStates,
    total_nodes: usize,
) -> i64 {
    let sum = images
        .iter()
        .filter(|name| node_images.contains(name))
        .filter_map(|name| states.get(name))
        .map(|state| scaled_image_score(state, total_nodes))
        .sum();
    calculate_priority(sum, images.len())
}
