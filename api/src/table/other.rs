//! Printers for the remaining built-in groups: policy, RBAC bindings, storage,
//! coordination, API registration, scheduling, node, admission registration and
//! certificates.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{boolean, integer, text, Column, AGE, NAME};
use crate::table::format::{
    age, at, bool_at, human_duration, int_at, int_or_string, len_at, list_at, name, opt_bool_at,
    opt_int_at, opt_str_at, or, str_at,
};
use crate::table::Printer;

/// Returns the printer of a kind in one of this module's groups, if it has one.
pub(crate) fn printer(group: &str, kind: &str) -> Option<Printer> {
    let printer = match (group, kind) {
        ("policy", "PodDisruptionBudget") => Printer::new(pdb_columns, pdb_cells),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            Printer::new(role_binding_columns, binding_cells)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            Printer::new(cluster_role_binding_columns, binding_cells)
        }
        ("storage.k8s.io", "StorageClass") => {
            Printer::new(storage_class_columns, storage_class_cells)
        }
        ("storage.k8s.io", "CSIDriver") => Printer::new(csi_driver_columns, csi_driver_cells),
        ("storage.k8s.io", "CSINode") => Printer::new(csi_node_columns, csi_node_cells),
        ("storage.k8s.io", "VolumeAttachment") => {
            Printer::new(volume_attachment_columns, volume_attachment_cells)
        }
        ("coordination.k8s.io", "Lease") => Printer::new(lease_columns, lease_cells),
        ("apiregistration.k8s.io", "APIService") => {
            Printer::new(api_service_columns, api_service_cells)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            Printer::new(priority_class_columns, priority_class_cells)
        }
        ("node.k8s.io", "RuntimeClass") => Printer::new(runtime_class_columns, runtime_class_cells),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => Printer::new(webhook_columns, webhook_cells),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            Printer::new(admission_policy_columns, admission_policy_cells)
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            Printer::new(csr_columns, csr_cells)
        }
        _ => return None,
    };
    Some(printer)
}

fn pdb_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Min Available", "The minimum number of pods that must be available."),
        text("Max Unavailable", "The maximum number of pods that may be unavailable."),
        integer(
            "Allowed Disruptions",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ]
}

fn pdb_cells(budget: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |field: &str| at(budget, &["spec", field]).map_or("N/A".to_string(), int_or_string);
    vec![
        name(budget).into(),
        bound("minAvailable").into(),
        bound("maxUnavailable").into(),
        int_at(budget, &["status", "disruptionsAllowed"]).into(),
        age(budget, now).into(),
    ]
}

fn role_binding_columns() -> Vec<Column> {
    binding_columns("roleBinding")
}

fn cluster_role_binding_columns() -> Vec<Column> {
    binding_columns("clusterRoleBinding")
}

fn binding_columns(kind: &str) -> Vec<Column> {
    let (users, groups, accounts) = if kind == "roleBinding" {
        (
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        )
    } else {
        (
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        )
    };
    vec![
        NAME,
        text("Role", "RoleRef can only reference a ClusterRole in the global namespace."),
        AGE,
        text("Users", users).wide(),
        text("Groups", groups).wide(),
        text("ServiceAccounts", accounts).wide(),
    ]
}

/// Prints `Kind/name` of the role and, wide, the subjects split like `SubjectsStrings`.
fn binding_cells(binding: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut accounts = Vec::new();
    for subject in list_at(binding, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "ServiceAccount" => {
                accounts.push(format!("{}/{subject_name}", str_at(subject, &["namespace"])))
            }
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            _ => {}
        }
    }
    let role = format!(
        "{}/{}",
        str_at(binding, &["roleRef", "kind"]),
        str_at(binding, &["roleRef", "name"])
    );
    vec![
        name(binding).into(),
        role.into(),
        age(binding, now).into(),
        users.join(", ").into(),
        groups.join(", ").into(),
        accounts.join(", ").into(),
    ]
}

fn storage_class_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Provisioner", "provisioner indicates the type of the provisioner."),
        text("ReclaimPolicy", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
        text("VolumeBindingMode", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
        text("AllowVolumeExpansion", "allowVolumeExpansion shows whether the storage class allow volume expand."),
        AGE,
    ]
}

fn storage_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    let annotation = |key: &str| str_at(class, &["metadata", "annotations", key]) == "true";
    let mut class_name = name(class).to_string();
    if annotation("storageclass.kubernetes.io/is-default-class")
        || annotation("storageclass.beta.kubernetes.io/is-default-class")
    {
        class_name.push_str(" (default)");
    }
    vec![
        class_name.into(),
        str_at(class, &["provisioner"]).into(),
        opt_str_at(class, &["reclaimPolicy"]).unwrap_or("Delete").into(),
        opt_str_at(class, &["volumeBindingMode"]).unwrap_or("Immediate").into(),
        bool_at(class, &["allowVolumeExpansion"]).into(),
        age(class, now).into(),
    ]
}

fn csi_driver_columns() -> Vec<Column> {
    vec![
        NAME,
        boolean("AttachRequired", "attachRequired indicates this CSI volume driver requires an attach operation."),
        boolean("PodInfoOnMount", "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
        boolean("StorageCapacity", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity."),
        text("TokenRequests", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication."),
        boolean("RequiresRepublish", "requiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called to reflect any possible change in the mounted volume."),
        text("Modes", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
        AGE,
    ]
}

fn csi_driver_cells(driver: &Value, now: Timestamp) -> Vec<Value> {
    let token_requests = match at(driver, &["spec", "tokenRequests"]).and_then(Value::as_array) {
        Some(requests) => {
            requests.iter().map(|r| str_at(r, &["audience"])).collect::<Vec<_>>().join(",")
        }
        None => "<unset>".to_string(),
    };
    let modes: Vec<&str> = list_at(driver, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        name(driver).into(),
        opt_bool_at(driver, &["spec", "attachRequired"]).unwrap_or(true).into(),
        bool_at(driver, &["spec", "podInfoOnMount"]).into(),
        bool_at(driver, &["spec", "storageCapacity"]).into(),
        token_requests.into(),
        bool_at(driver, &["spec", "requiresRepublish"]).into(),
        or(&modes.join(","), "<none>").into(),
        age(driver, now).into(),
    ]
}

fn csi_node_columns() -> Vec<Column> {
    vec![
        NAME,
        integer("Drivers", "Drivers indicates the number of CSI drivers registered on the node"),
        AGE,
    ]
}

fn csi_node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(node).into(), len_at(node, &["spec", "drivers"]).into(), age(node, now).into()]
}

fn volume_attachment_columns() -> Vec<Column> {
    vec![
        NAME,
        Column {
            format: "name",
            ..text(
                "Attacher",
                "attacher indicates the name of the volume driver that MUST handle this request.",
            )
        },
        text("PV", "persistentVolumeName represents the name of the persistent volume to attach."),
        text("Node", "nodeName represents the node that the volume should be attached to."),
        boolean("Attached", "attached indicates the volume is successfully attached."),
        AGE,
    ]
}

fn volume_attachment_cells(attachment: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(attachment).into(),
        str_at(attachment, &["spec", "attacher"]).into(),
        str_at(attachment, &["spec", "source", "persistentVolumeName"]).into(),
        str_at(attachment, &["spec", "nodeName"]).into(),
        bool_at(attachment, &["status", "attached"]).into(),
        age(attachment, now).into(),
    ]
}

fn lease_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Holder", "holderIdentity contains the identity of the holder of a current lease."),
        AGE,
    ]
}

fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease).into(),
        str_at(lease, &["spec", "holderIdentity"]).into(),
        age(lease, now).into(),
    ]
}

fn api_service_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Service", "The reference to the service that hosts this API endpoint."),
        text("Available", "Whether this service is available."),
        AGE,
    ]
}

/// Prints `Local` or `namespace/name`, and the Available condition as `True` or
/// `False (Reason)`.
fn api_service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let backend = match at(service, &["spec", "service"]) {
        Some(backend) => {
            format!("{}/{}", str_at(backend, &["namespace"]), str_at(backend, &["name"]))
        }
        None => "Local".to_string(),
    };
    let available = list_at(service, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Available")
        .map_or("Unknown".to_string(), |c| {
            let status = str_at(c, &["status"]);
            match str_at(c, &["reason"]) {
                reason if status != "True" && !reason.is_empty() => format!("{status} ({reason})"),
                _ => status.to_string(),
            }
        });
    vec![name(service).into(), backend.into(), available.into(), age(service, now).into()]
}

fn priority_class_columns() -> Vec<Column> {
    vec![
        NAME,
        integer("Value", "value represents the integer value of this priority class."),
        boolean("Global-Default", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
        AGE,
        text("PreemptionPolicy", "preemptionPolicy is the Policy for preempting pods with lower priority."),
    ]
}

fn priority_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class).into(),
        int_at(class, &["value"]).into(),
        bool_at(class, &["globalDefault"]).into(),
        age(class, now).into(),
        str_at(class, &["preemptionPolicy"]).into(),
    ]
}

fn runtime_class_columns() -> Vec<Column> {
    vec![NAME, text("Handler", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."), AGE]
}

fn runtime_class_cells(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(class).into(), str_at(class, &["handler"]).into(), age(class, now).into()]
}

fn webhook_columns() -> Vec<Column> {
    vec![
        NAME,
        integer(
            "Webhooks",
            "Webhooks indicates the number of webhooks registered in this configuration",
        ),
        AGE,
    ]
}

fn webhook_cells(configuration: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(configuration).into(),
        len_at(configuration, &["webhooks"]).into(),
        age(configuration, now).into(),
    ]
}

fn admission_policy_columns() -> Vec<Column> {
    vec![
        NAME,
        integer(
            "Validations",
            "Validations indicates the number of validation rules defined in this configuration",
        ),
        text(
            "ParamKind",
            "ParamKind specifies the kind of resources used to parameterize this policy",
        ),
        AGE,
    ]
}

fn admission_policy_cells(policy: &Value, now: Timestamp) -> Vec<Value> {
    let param_kind = match at(policy, &["spec", "paramKind"]) {
        Some(kind) => format!("{}/{}", str_at(kind, &["apiVersion"]), str_at(kind, &["kind"])),
        None => "<unset>".to_string(),
    };
    vec![
        name(policy).into(),
        len_at(policy, &["spec", "validations"]).into(),
        param_kind.into(),
        age(policy, now).into(),
    ]
}

fn csr_columns() -> Vec<Column> {
    vec![
        NAME,
        AGE,
        text("SignerName", "Requested signer for the request."),
        text("Requestor", "Base64-encoded PKCS#10 CSR data"),
        text(
            "RequestedDuration",
            "expirationSeconds is the requested duration of validity of the issued certificate.",
        ),
        text("Condition", "Conditions applied to the request, such as approval or denial."),
    ]
}

fn csr_cells(request: &Value, now: Timestamp) -> Vec<Value> {
    let conditions = list_at(request, &["status", "conditions"]);
    let has = |kind: &str| conditions.iter().any(|c| str_at(c, &["type"]) == kind);
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(request, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    let duration = opt_int_at(request, &["spec", "expirationSeconds"]).map_or_else(
        || "<none>".to_string(),
        |seconds| human_duration(jiff::SignedDuration::from_secs(seconds)),
    );
    vec![
        name(request).into(),
        age(request, now).into(),
        or(str_at(request, &["spec", "signerName"]), "<none>").into(),
        str_at(request, &["spec", "username"]).into(),
        duration.into(),
        condition.into(),
    ]
}
