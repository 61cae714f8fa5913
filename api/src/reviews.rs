//! Reviews: requests that ask a question and store nothing (`kubectl auth whoami`,
//! `kubectl auth can-i`, token and access reviews for other components).

use flotilla_store::KvStore;
use serde_json::{json, Value};

use crate::auth::User;
use crate::error::ApiError;
use crate::handler::Api;
use crate::rbac::Attributes;
use crate::resources::ResourceType;

fn user_info(user: &User) -> Value {
    let mut info = json!({ "username": user.name, "groups": user.groups });
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn attributes_of(spec: &Value) -> Attributes {
    let text = |value: Option<&Value>, field: &str| {
        value.and_then(|v| v.get(field)).and_then(Value::as_str).unwrap_or("").to_string()
    };
    if let Some(non_resource) = spec.get("nonResourceAttributes") {
        return Attributes {
            verb: text(Some(non_resource), "verb"),
            path: Some(text(Some(non_resource), "path")),
            ..Default::default()
        };
    }
    let resource = spec.get("resourceAttributes");
    Attributes {
        verb: text(resource, "verb"),
        group: text(resource, "group"),
        resource: text(resource, "resource"),
        subresource: text(resource, "subresource"),
        name: text(resource, "name"),
        namespace: text(resource, "namespace"),
        path: None,
    }
}

/// Answers one review; the answer is the review with its status filled in.
pub async fn review<S: KvStore>(
    api: &Api<S>,
    resource: &ResourceType,
    user: &User,
    mut review: Value,
) -> Result<Value, ApiError> {
    review["apiVersion"] = json!(resource.api_version());
    review["kind"] = json!(resource.kind);
    let authorizer = api.authorizer();
    match resource.kind.as_str() {
        "SelfSubjectReview" => {
            review["status"] = json!({ "userInfo": user_info(user) });
        }
        "TokenReview" => {
            let token = review.pointer("/spec/token").and_then(Value::as_str).unwrap_or("");
            // Audiences the reviewer names, else the ones the API server accepts.
            let mut wanted = strings(review.pointer("/spec/audiences"));
            if wanted.is_empty() {
                wanted = api.issuer.audiences.clone();
            }
            review["status"] = match api.token_user(token, &wanted).await? {
                Some((found, audiences)) => json!({
                    "authenticated": true,
                    "user": user_info(&found),
                    "audiences": audiences,
                }),
                None => json!({ "authenticated": false, "error": "invalid bearer token" }),
            };
        }
        "SelfSubjectAccessReview" | "SubjectAccessReview" => {
            let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
            let subject = if resource.kind == "SubjectAccessReview" {
                User {
                    name: spec.get("user").and_then(Value::as_str).unwrap_or("").to_string(),
                    uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").to_string(),
                    groups: strings(spec.get("groups")),
                    extra: (spec.get("extra").and_then(Value::as_object).into_iter().flatten())
                        .map(|(key, values)| (key.clone(), strings(Some(values))))
                        .collect(),
                }
            } else {
                user.clone()
            };
            let allowed = authorizer.allowed(&subject, &attributes_of(&spec)).await?;
            review["status"] = if allowed {
                json!({ "allowed": true, "reason": "allowed by RBAC" })
            } else {
                json!({ "allowed": false })
            };
        }
        "SelfSubjectRulesReview" => {
            let namespace = review.pointer("/spec/namespace").and_then(Value::as_str).unwrap_or("");
            let rules = if user.is_master() {
                vec![json!({ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] })]
            } else {
                authorizer.rules(user, namespace).await?
            };
            let (resource_rules, non_resource_rules): (Vec<Value>, Vec<Value>) =
                rules.into_iter().partition(|rule| rule.get("nonResourceURLs").is_none());
            let mut non_resource_rules = non_resource_rules;
            non_resource_rules.push(json!({ "verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/"] }));
            review["status"] = json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": false,
            });
        }
        _ => return Err(ApiError::MethodNotAllowed),
    }
    Ok(review)
}
