//! Admission of a written object: metadata rules, then the rules of its type, then unknown
//! fields as `fieldValidation` asks. Returns the warnings to send back.

use flotilla_store::KvStore;
use serde_json::Value;

use super::write::{FieldValidation, WriteOptions};
use super::Registry;
use crate::error::ApiError;
use crate::openapi::strict_decoding_message;
use crate::resources::ResourceType;
use crate::selector::LabelSelector;
use crate::validation::{validate_name, validate_object_meta, FieldError, NameRule};

impl<S: KvStore> Registry<S> {
    /// Mutating admission of a new pod: ServiceAccount admission
    /// ([`crate::serviceaccount::admit_pod`]) with the pod's account as stored, read from this
    /// replica and, if it is not there, again with a read barrier.
    pub(crate) async fn admit_new_pod(&self, pod: &mut Value) -> Result<(), ApiError> {
        let Some(accounts) = self.catalog.get("", "v1", "serviceaccounts") else { return Ok(()) };
        let namespace = crate::meta::namespace(pod).map(str::to_string);
        let key = accounts.key(namespace.as_deref(), &crate::serviceaccount::account_name(pod));
        let account = match self.objects.get(&key, true).await? {
            Some(found) => Some(found),
            None => self.objects.get(&key, false).await?,
        };
        let account = account.map(|stored| stored.object);
        crate::serviceaccount::admit_pod(pod, account.as_ref(), &crate::meta::name_suffix());
        Ok(())
    }

    pub(crate) async fn admit(
        &self,
        resource: &ResourceType,
        object: &mut Value,
        old: Option<&Value>,
        options: &WriteOptions,
    ) -> Result<Vec<String>, ApiError> {
        let mut warnings = Vec::new();
        let unknown =
            self.openapi.unknown_fields(&resource.group, &resource.version, &resource.kind, object);
        if !unknown.is_empty() {
            match options.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::BadRequest(strict_decoding_message(
                        &resource.kind,
                        &resource.version,
                        &unknown,
                    )))
                }
                FieldValidation::Warn => warnings.extend(unknown),
                FieldValidation::Ignore => {}
            }
            // Unknown fields are dropped, never stored.
            self.openapi.prune_unknown(&resource.group, &resource.version, &resource.kind, object);
        }
        let object = &*object;
        let null = Value::Null;
        let metadata = object.get("metadata").unwrap_or(&null);
        let mut causes = validate_object_meta(metadata, resource.namespaced, resource.name_rule);
        causes.extend(validate_type(resource, object, old));
        if let (Some(user), "rbac.authorization.k8s.io") = (&options.user, resource.group.as_str())
        {
            let authorizer =
                crate::rbac::Authorizer { catalog: &self.catalog, objects: &self.objects };
            authorizer.check_escalation(user, &resource.kind, object).await?;
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                group: resource.group.clone(),
                kind: resource.kind.clone(),
                name: crate::meta::name(object).to_string(),
                causes,
            });
        }
        Ok(warnings)
    }
}

fn array<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The rules of a type beyond its metadata, for the fields controllers and agents rely on.
fn validate_type(resource: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = object.get("spec") {
                pod_spec(spec, "spec", &mut errors);
            }
            if let (Some(old), Some(new)) = (old, object.get("spec")) {
                let image_only = |spec: &Value| {
                    let mut spec = spec.clone();
                    // Pods stored before the deprecated field was kept in step with the new
                    // one compare as they read now.
                    crate::defaults::sync_service_account(&mut spec);
                    for list in ["containers", "initContainers"] {
                        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                            for container in containers {
                                if let Some(map) = container.as_object_mut() {
                                    map.remove("image");
                                }
                            }
                        }
                    }
                    if let Some(map) = spec.as_object_mut() {
                        for mutable in [
                            "activeDeadlineSeconds",
                            "tolerations",
                            "terminationGracePeriodSeconds",
                            "nodeName",
                        ] {
                            map.remove(mutable);
                        }
                    }
                    spec
                };
                let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
                if image_only(&old_spec) != image_only(new) {
                    errors.push(FieldError::forbidden(
                        "spec",
                        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                    ));
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workload(object, &mut errors);
        }
        ("batch", "Job") => {
            if let Some(template) = object.pointer("/spec/template/spec") {
                pod_spec(template, "spec.template.spec", &mut errors);
                let policy = template.get("restartPolicy").and_then(Value::as_str).unwrap_or("");
                if !matches!(policy, "OnFailure" | "Never") {
                    errors.push(FieldError::not_supported(
                        "spec.template.spec.restartPolicy",
                        policy,
                        &["OnFailure", "Never"],
                    ));
                }
            } else {
                errors.push(FieldError::required("spec.template", ""));
            }
        }
        ("", "ConfigMap" | "Secret") => {
            let size: usize = ["data", "binaryData", "stringData"]
                .iter()
                .filter_map(|field| object.get(field).and_then(Value::as_object))
                .flat_map(|map| map.iter())
                .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
                .sum();
            if size > MAX_CONFIG_BYTES {
                errors.push(FieldError::too_long("[]", Some(MAX_CONFIG_BYTES)));
            }
            for field in ["data", "binaryData", "stringData"] {
                if let Some(map) = object.get(field).and_then(Value::as_object) {
                    for key in map.keys() {
                        if !is_config_key(key) {
                            errors.push(FieldError::invalid(
                                format!("{field}[{key}]"),
                                key.as_str(),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        ("", "Service") => {
            let kind = object.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let headless =
                object.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            if kind != "ExternalName" && !headless && array(object, "/spec/ports").is_empty() {
                errors.push(FieldError::required("spec.ports", ""));
            }
            for (index, port) in array(object, "/spec/ports").iter().enumerate() {
                let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&number) {
                    errors.push(FieldError::invalid(
                        format!("spec.ports[{index}].port"),
                        number,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        _ => {}
    }
    errors
}

/// The most a ConfigMap or Secret may hold (Kubernetes' limit).
const MAX_CONFIG_BYTES: usize = 1024 * 1024;

fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn workload(object: &Value, errors: &mut Vec<FieldError>) {
    let Some(selector) = object.pointer("/spec/selector") else {
        errors.push(FieldError::required("spec.selector", ""));
        return;
    };
    let labels = object.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    match LabelSelector::from_json(selector) {
        Err(err) => {
            errors.push(FieldError::invalid("spec.selector", selector.clone(), err.to_string()))
        }
        Ok(parsed) if parsed.is_everything() => errors.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            "empty selector is invalid for deployment",
        )),
        Ok(parsed) => {
            let empty = serde_json::Map::new();
            if !parsed.matches(labels.unwrap_or(&empty)) {
                errors.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    Value::Object(labels.cloned().unwrap_or_default()),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    if let Some(template) = object.pointer("/spec/template/spec") {
        pod_spec(template, "spec.template.spec", errors);
    } else {
        errors.push(FieldError::required("spec.template", ""));
    }
}

fn pod_spec(spec: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let containers = array(spec, "/containers");
    if containers.is_empty() {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (index, container) in array(spec, &format!("/{list}")).iter().enumerate() {
            let at = format!("{path}.{list}[{index}]");
            match container.get("name").and_then(Value::as_str) {
                None | Some("") => errors.push(FieldError::required(format!("{at}.name"), "")),
                Some(name) => {
                    for message in validate_name(name, NameRule::Dns1123Label) {
                        errors.push(FieldError::invalid(format!("{at}.name"), name, message));
                    }
                    if !names.insert(name.to_string()) {
                        errors.push(FieldError::duplicate(format!("{at}.name"), name));
                    }
                }
            }
            if container.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
                errors.push(FieldError::required(format!("{at}.image"), ""));
            }
        }
    }
    let policy = spec.get("restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    if !matches!(policy, "Always" | "OnFailure" | "Never") {
        errors.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Catalog;
    use serde_json::json;

    fn check(group: &str, plural: &str, object: Value) -> Vec<String> {
        let catalog = Catalog::default();
        let resource = catalog.get(group, "v1", plural).unwrap();
        validate_type(&resource, &object, None).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn pods_need_named_containers_with_images() {
        assert_eq!(check("", "pods", json!({"spec": {}})), ["spec.containers: Required value"]);
        let errors = check(
            "",
            "pods",
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a"}]}}),
        );
        assert_eq!(
            errors,
            [
                r#"spec.containers[1].name: Duplicate value: "a""#,
                "spec.containers[1].image: Required value"
            ]
        );
    }

    #[test]
    fn deployments_need_a_matching_selector() {
        let deployment = |selector: Value, labels: Value| json!({"spec": {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(check(
            "apps",
            "deployments",
            deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}))
        )
        .is_empty());
        let errors = check(
            "apps",
            "deployments",
            deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"})),
        );
        assert_eq!(
            errors,
            [
                r#"spec.template.metadata.labels: Invalid value: {"app":"db"}: `selector` does not match template `labels`"#
            ]
        );
    }

    #[test]
    fn config_keys_are_checked() {
        let errors = check("", "configmaps", json!({"data": {"ok.key": "1", "bad key": "2"}}));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("data[bad key]: Invalid value: \"bad key\""), "{errors:?}");
    }
}
