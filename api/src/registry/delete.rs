//! Deletion: preconditions, finalizers, graceful pod deletion and propagation policy.
//!
//! An object with finalizers (or a namespace with `spec.finalizers`) is only marked with a
//! `deletionTimestamp`; it disappears when the last finalizer is removed (see `replace`). A pod
//! bound to a node gets a grace period and is removed when its agent confirms.

use flotilla_store::KvStore;
use serde_json::{json, Value};

use super::{Registry, Target};
use crate::error::ApiError;
use crate::meta;
use crate::storage::{self, Written as StoreWritten};

/// What happens to dependents (objects whose ownerReferences name the deleted one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn parse(value: &str) -> Result<Propagation, ApiError> {
        match value {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::BadRequest(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \
                 \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads options from query parameters, overridden by a `DeleteOptions` body if present.
    pub fn from_request(
        query: &crate::request::Query,
        body: Option<&Value>,
    ) -> Result<Self, ApiError> {
        let mut options = DeleteOptions {
            grace_period: query.int("gracePeriodSeconds").map_err(ApiError::BadRequest)?,
            propagation: query.get("propagationPolicy").map(Propagation::parse).transpose()?,
            uid: None,
            resource_version: None,
            dry_run: query.get("dryRun") == Some("All"),
        };
        if query.get("orphanDependents") == Some("true") && options.propagation.is_none() {
            options.propagation = Some(Propagation::Orphan);
        }
        if let Some(body) = body {
            if let Some(grace) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
                options.grace_period = Some(grace);
            }
            if let Some(policy) = body.get("propagationPolicy").and_then(Value::as_str) {
                options.propagation = Some(Propagation::parse(policy)?);
            }
            if body.get("orphanDependents") == Some(&json!(true)) && options.propagation.is_none() {
                options.propagation = Some(Propagation::Orphan);
            }
            let precondition = |field: &str| {
                body.pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            options.uid = precondition("uid");
            options.resource_version = precondition("resourceVersion");
            if body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.contains(&json!("All")))
            {
                options.dry_run = true;
            }
        }
        Ok(options)
    }
}

/// Namespaces Kubernetes never lets anyone delete.
const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Whether finalizers still hold an object that is being deleted.
pub(crate) fn held_by_finalizers(object: &Value) -> bool {
    let namespace_finalizers = object.get("kind") == Some(&json!("Namespace"))
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|list| !list.is_empty());
    !meta::finalizers(object).is_empty() || namespace_finalizers
}

/// How long a pod is given to stop, if it is deleted gracefully at all.
fn pod_grace(object: &Value, asked: Option<i64>) -> Option<i64> {
    if object.get("kind") != Some(&json!("Pod")) {
        return None;
    }
    let bound =
        object.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let phase = object.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if !bound || matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let grace = asked
        .or_else(|| object.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30);
    // Zero asks for removal now (`kubectl delete --force --grace-period=0`).
    (grace > 0).then_some(grace)
}

/// The result of a delete: the object, and whether it is gone (200) or only marked (202).
pub struct Deleted {
    pub object: Value,
    pub gone: bool,
}

impl<S: KvStore> Registry<S> {
    pub async fn delete(
        &self,
        target: &Target,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let resource = &target.resource;
        if resource.group.is_empty()
            && resource.kind == "Namespace"
            && PROTECTED_NAMESPACES.contains(&target.name.as_str())
        {
            return Err(ApiError::Forbidden(format!(
                "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                target.name
            )));
        }
        for attempt in 0..8 {
            let current = self.current(target, attempt).await?;
            let uid = meta::str_field(&current.object, &["metadata", "uid"]).unwrap_or("");
            // A precondition this replica's copy fails is checked again on the leader's
            // copy: the replica may lag the client.
            if let Some(expected) = options.uid.as_deref().filter(|u| !u.is_empty()) {
                if expected != uid {
                    if attempt == 0 {
                        continue;
                    }
                    return Err(precondition_failed(target, "UID", expected, uid));
                }
            }
            let revision = current.revision.to_string();
            if let Some(expected) = options.resource_version.as_deref().filter(|v| !v.is_empty()) {
                if expected != revision {
                    if attempt == 0 {
                        continue;
                    }
                    return Err(precondition_failed(
                        target,
                        "ResourceVersion",
                        expected,
                        &revision,
                    ));
                }
            }
            let mut object = current.object.clone();
            let already = meta::is_deleting(&object);
            let grace = pod_grace(&object, options.grace_period);
            if !already {
                let added = match options.propagation {
                    Some(Propagation::Foreground) => Some("foregroundDeletion"),
                    Some(Propagation::Orphan) => Some("orphan"),
                    _ => None,
                };
                if let Some(finalizer) = added {
                    let mut finalizers = meta::finalizers(&object);
                    if !finalizers.iter().any(|f| f == finalizer) {
                        finalizers.push(finalizer.to_string());
                    }
                    meta::metadata_mut(&mut object).insert("finalizers".into(), json!(finalizers));
                }
            }
            let force_now = options.grace_period == Some(0);
            let mark = held_by_finalizers(&object) || (grace.is_some() && !force_now);
            if mark {
                if already && object == current.object {
                    return Ok(Deleted { object, gone: false });
                }
                let seconds = if force_now { 0 } else { grace.unwrap_or(0) };
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
                let metadata = meta::metadata_mut(&mut object);
                if !already || grace.is_some() {
                    metadata.insert("deletionTimestamp".into(), meta::timestamp(at).into());
                    metadata.insert("deletionGracePeriodSeconds".into(), seconds.into());
                }
                if object.get("kind") == Some(&json!("Namespace")) {
                    object["status"]["phase"] = json!("Terminating");
                }
                if options.dry_run {
                    return Ok(Deleted { object, gone: false });
                }
                match self.objects.update(&target.key(), current.revision, &object, &[]).await? {
                    StoreWritten::Done(revision) => {
                        storage::set_resource_version(&mut object, revision);
                        return Ok(Deleted { object, gone: false });
                    }
                    StoreWritten::Conflict(_) => continue,
                }
            }
            if options.dry_run {
                return Ok(Deleted { object, gone: true });
            }
            let side = if object.get("kind") == Some(&json!("Service")) {
                crate::allocate::release_service(&object)
            } else {
                Vec::new()
            };
            match self.objects.delete(&target.key(), current.revision, &side).await? {
                StoreWritten::Done(_) => return Ok(Deleted { object, gone: true }),
                StoreWritten::Conflict(_) => continue,
            }
        }
        Err(target.conflict())
    }
}

fn precondition_failed(target: &Target, what: &str, expected: &str, actual: &str) -> ApiError {
    ApiError::Conflict {
        resource: target.resource.group_resource(),
        name: target.name.clone(),
        message: format!(
            "Precondition failed: {what} in precondition: {expected}, {what} in object meta: {actual}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bound_running_pods_get_a_grace_period() {
        let pod = |node: &str, phase: &str| json!({"kind": "Pod", "spec": {"nodeName": node, "terminationGracePeriodSeconds": 20}, "status": {"phase": phase}});
        assert_eq!(pod_grace(&pod("n1", "Running"), None), Some(20));
        assert_eq!(pod_grace(&pod("n1", "Running"), Some(5)), Some(5));
        assert_eq!(pod_grace(&pod("n1", "Running"), Some(0)), None);
        assert_eq!(pod_grace(&pod("", "Pending"), None), None);
        assert_eq!(pod_grace(&pod("n1", "Succeeded"), None), None);
        assert_eq!(pod_grace(&json!({"kind": "ConfigMap"}), None), None);
    }

    #[test]
    fn namespaces_are_held_by_spec_finalizers() {
        assert!(held_by_finalizers(
            &json!({"kind": "Namespace", "spec": {"finalizers": ["kubernetes"]}})
        ));
        assert!(!held_by_finalizers(&json!({"kind": "Namespace", "spec": {"finalizers": []}})));
        assert!(held_by_finalizers(
            &json!({"kind": "ConfigMap", "metadata": {"finalizers": ["x"]}})
        ));
    }
}
