//! Printers for `apps` kinds: Deployment, ReplicaSet, StatefulSet, DaemonSet and
//! ControllerRevision.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{integer, text, Column, AGE, CONTAINERS, IMAGES, NAME};
use crate::table::format::{
    age, at, container_cells, format_label_selector, format_labels, int_at, label_selector_string,
    list_at, map_at, name, opt_int_at, str_at,
};
use crate::table::Printer;

/// Returns the printer of an `apps` kind, if it has one.
pub(crate) fn printer(kind: &str) -> Option<Printer> {
    let printer = match kind {
        "Deployment" => Printer::new(deployment_columns, deployment_cells),
        "ReplicaSet" => Printer::new(replica_set_columns, replica_set_cells),
        "StatefulSet" => Printer::new(stateful_set_columns, stateful_set_cells),
        "DaemonSet" => Printer::new(daemon_set_columns, daemon_set_cells),
        "ControllerRevision" => Printer::new(revision_columns, revision_cells),
        _ => return None,
    };
    Some(printer)
}

const SELECTOR_DESCRIPTION: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";

/// Returns `spec.replicas`, which the API server defaults to 1.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int_at(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn template_spec(obj: &Value) -> &Value {
    at(obj, &["spec", "template", "spec"]).unwrap_or(&Value::Null)
}

fn deployment_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Ready", "Number of the pod with ready state"),
        text("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
        text("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE,
        CONTAINERS,
        IMAGES,
        text("Selector", SELECTOR_DESCRIPTION).wide(),
    ]
}

fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(template_spec(deployment));
    // Deployments print the raw selector string: empty for an empty selector.
    let selector = label_selector_string(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|| "<invalid>".to_string());
    vec![
        name(deployment).into(),
        format!(
            "{}/{}",
            int_at(deployment, &["status", "readyReplicas"]),
            desired_replicas(deployment)
        )
        .into(),
        int_at(deployment, &["status", "updatedReplicas"]).into(),
        int_at(deployment, &["status", "availableReplicas"]).into(),
        age(deployment, now).into(),
        names.into(),
        images.into(),
        selector.into(),
    ]
}

fn replica_set_columns() -> Vec<Column> {
    vec![
        NAME,
        integer("Desired", "Replicas is the number of desired replicas."),
        integer("Current", "Replicas is the most recently observed number of replicas."),
        integer("Ready", "The number of ready replicas for this replica set."),
        AGE,
        CONTAINERS,
        IMAGES,
        text(
            "Selector",
            "Selector is a label query over pods that should match the replica count.",
        )
        .wide(),
    ]
}

fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(template_spec(replica_set));
    vec![
        name(replica_set).into(),
        desired_replicas(replica_set).into(),
        int_at(replica_set, &["status", "replicas"]).into(),
        int_at(replica_set, &["status", "readyReplicas"]).into(),
        age(replica_set, now).into(),
        names.into(),
        images.into(),
        format_label_selector(at(replica_set, &["spec", "selector"])).into(),
    ]
}

fn stateful_set_columns() -> Vec<Column> {
    vec![NAME, text("Ready", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES]
}

fn stateful_set_cells(set: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(template_spec(set));
    vec![
        name(set).into(),
        format!("{}/{}", int_at(set, &["status", "readyReplicas"]), desired_replicas(set)).into(),
        age(set, now).into(),
        names.into(),
        images.into(),
    ]
}

fn daemon_set_columns() -> Vec<Column> {
    vec![
        NAME,
        integer("Desired", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
        integer("Current", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        integer("Ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        integer("Up-to-date", "The total number of nodes that are running updated daemon pod"),
        integer("Available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
        text("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE,
        CONTAINERS,
        IMAGES,
        text("Selector", "A label query over pods that are managed by the daemon set.").wide(),
    ]
}

fn daemon_set_cells(set: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(template_spec(set));
    let status = |field: &str| int_at(set, &["status", field]);
    vec![
        name(set).into(),
        status("desiredNumberScheduled").into(),
        status("currentNumberScheduled").into(),
        status("numberReady").into(),
        status("updatedNumberScheduled").into(),
        status("numberAvailable").into(),
        format_labels(map_at(set, &["spec", "template", "spec", "nodeSelector"])).into(),
        age(set, now).into(),
        names.into(),
        images.into(),
        format_label_selector(at(set, &["spec", "selector"])).into(),
    ]
}

fn revision_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Controller", "Controller of the object"),
        text("Revision", "Revision indicates the revision of the state represented by Data."),
        AGE,
    ]
}

fn revision_cells(revision: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(revision).into(),
        controller_name(revision).into(),
        int_at(revision, &["revision"]).into(),
        age(revision, now).into(),
    ]
}

/// Returns the controller owner as `kind.group/name` in lower case, or `<none>`.
pub(crate) fn controller_name(obj: &Value) -> String {
    let owner = list_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|owner| at(owner, &["controller"]).and_then(Value::as_bool) == Some(true));
    let Some(owner) = owner else { return "<none>".to_string() };
    let api_version = str_at(owner, &["apiVersion"]);
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    let group_kind = match (kind, group) {
        ("", "") => return owner_name.to_string(),
        (kind, "") => kind.to_string(),
        (kind, group) => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}
