//! Field helpers of the plan: reading ReplicaSet counts and annotations, template equality,
//! Deployment annotations on new sets and Deployment conditions, as `deployment_util.go` does.

use super::*;

/// Resolves an int-or-percent against `total` (Kubernetes' `GetScaledValueFromIntOrPercent`).
pub(super) fn scaled_value(
    value: &IntOrString,
    total: i32,
    round_up: bool,
    field: &'static str,
) -> Result<i32, PlanError> {
    let invalid = || PlanError::InvalidIntOrPercent { field, value: format!("{value:?}") };
    match value {
        IntOrString::Int(number) => Ok(*number),
        IntOrString::String(text) => {
            let percent: i64 =
                text.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(invalid)?;
            let product = percent * i64::from(total);
            let scaled =
                if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
            i32::try_from(scaled).map_err(|_| invalid())
        }
    }
}

pub(super) fn created_order(set: &ReplicaSet) -> (Option<Timestamp>, String) {
    (set.metadata.creation_timestamp.as_ref().map(|t| t.0), name_of(set))
}

pub(super) fn name_of(set: &ReplicaSet) -> String {
    set.metadata.name.clone().unwrap_or_default()
}

pub(super) fn spec_replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(super) fn status_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().map_or(0, |s| s.replicas)
}

pub(super) fn ready_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub(super) fn available_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// The available pods a set will keep: right after a scale-down its status still counts the
/// pods it is deleting, so a rollout may count no more than its spec.
pub(super) fn kept_available(set: &ReplicaSet) -> i32 {
    available_replicas(set).min(spec_replicas(set))
}

pub(super) fn annotation<'s>(set: &'s ReplicaSet, key: &str) -> Option<&'s String> {
    set.metadata.annotations.as_ref().and_then(|a| a.get(key))
}

pub(super) fn annotation_int(set: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(set, key).and_then(|value| value.parse().ok())
}

/// A set's revision; 0 when missing or unparsable.
pub(super) fn revision(set: &ReplicaSet) -> i64 {
    annotation(set, REVISION_ANNOTATION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Whether two templates are equal once the `pod-template-hash` label is dropped from both.
pub(super) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(template: &PodTemplateSpec) -> PodTemplateSpec {
        let mut template = template.clone();
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        template
    }
    strip(a) == strip(b)
}

/// Copies the Deployment's annotations and raises the revision of the new set, remembering the
/// revision it replaces (Kubernetes' `SetNewReplicaSetAnnotations`); returns whether it changed.
pub(super) fn set_new_annotations(
    deployment: &Deployment,
    set: &mut ReplicaSet,
    new_revision: i64,
) -> bool {
    let annotations = set.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in deployment.metadata.annotations.iter().flatten() {
        if SKIP_COPY_ANNOTATIONS.contains(&key.as_str()) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(number)) => number,
        // Kubernetes leaves a set with a malformed revision alone.
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = match annotations.get(REVISION_HISTORY_ANNOTATION) {
                Some(history) if !history.is_empty() => format!("{history},{old}"),
                _ => old,
            };
            annotations.insert(REVISION_HISTORY_ANNOTATION.into(), history);
        }
    }
    changed
}

/// Records `desired` and `max` replicas on a set; returns whether they changed.
pub(super) fn set_replicas_annotations(set: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = set.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS_ANNOTATION, desired), (MAX_REPLICAS_ANNOTATION, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

pub(super) fn condition<'s>(
    status: &'s DeploymentStatus,
    type_: &str,
) -> Option<&'s DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

pub(super) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// Sets a condition as Kubernetes' `SetDeploymentCondition`: no change when status and reason
/// match; the transition time is kept when only the reason changes.
pub(super) fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    if let Some(current) = condition(status, &new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &new.type_);
    status.conditions.get_or_insert_with(Vec::new).push(new);
}
