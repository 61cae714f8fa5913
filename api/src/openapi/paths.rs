//! `paths` of one document: the collection and item paths of each resource (namespaced,
//! cluster-wide, and the all-namespaces list), and its subresources, with the operations, query
//! parameters, request bodies and responses the Kubernetes API server lists for them.
//!
//! Every operation carries `x-kubernetes-action` and `x-kubernetes-group-version-kind`: kubectl
//! finds a resource's kind through the operations of its paths (`kubectl explain`) and checks a
//! query parameter such as `fieldValidation` among the parameters of every PATCH operation of
//! that kind (`QueryParamVerifierV3`), so those parameters sit on the operation itself, never on
//! the path or behind a `$ref`.

use serde_json::{json, Map, Value};

use super::parameters::{
    connect_parameters, delete_collection_parameters, delete_parameters, list_parameters,
    log_parameters, patch_parameters, path_parameter, path_parameters, write_parameters,
};
use super::schemas::{reference, Gvk, DELETE_OPTIONS, GVK_EXTENSION, PATCH, STATUS};
use crate::resources::{ResourceType, Subresource};

const MEDIA_TYPES: &[&str] = &["application/json", "application/yaml"];
const WATCH_MEDIA_TYPES: &[&str] =
    &["application/json", "application/json;stream=watch", "application/yaml"];
const PATCH_MEDIA_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// The names one group version gives its paths and operations.
struct GroupVersionNames {
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    /// `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
    tag: String,
    /// The middle of operation ids: `CoreV1`, `AppsV1`, `RbacAuthorizationV1`.
    id: String,
}

impl GroupVersionNames {
    fn new(group: &str, version: &str) -> Self {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let group_id: String = if group.is_empty() {
            "Core".to_string()
        } else {
            group.trim_end_matches(".k8s.io").split(['.', '-']).map(capitalize).collect()
        };
        let mut tag = group_id.clone();
        if let Some(first) = tag.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        GroupVersionNames {
            prefix,
            tag: format!("{tag}_{version}"),
            id: format!("{group_id}{}", capitalize(version)),
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One operation before it is rendered.
struct Operation {
    action: &'static str,
    id: String,
    description: String,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Value,
}

impl Operation {
    fn render(self, names: &GroupVersionNames, gvk: &Gvk) -> Value {
        let mut operation = json!({
            "tags": [names.tag],
            "description": self.description,
            "operationId": self.id,
            "responses": self.responses,
            "x-kubernetes-action": self.action,
            GVK_EXTENSION: gvk.to_value(),
        });
        if !self.parameters.is_empty() {
            operation["parameters"] = Value::Array(self.parameters);
        }
        if let Some(body) = self.body {
            operation["requestBody"] = body;
        }
        operation
    }
}

fn schema_of(definition: Option<&str>) -> Value {
    match definition {
        Some(name) => json!({"$ref": reference(name)}),
        None => json!({"type": "object"}),
    }
}

fn content(media_types: &[&str], schema: &Value) -> Value {
    let map: Map<String, Value> = media_types
        .iter()
        .map(|media_type| (media_type.to_string(), json!({"schema": schema})))
        .collect();
    Value::Object(map)
}

/// Responses with the given codes, each returning `schema`, plus 401.
fn responses(codes: &[(&str, &str)], media_types: &[&str], schema: &Value) -> Value {
    let mut map = Map::new();
    for (code, description) in codes {
        let response = json!({"description": description, "content": content(media_types, schema)});
        map.insert(code.to_string(), response);
    }
    map.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(map)
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const OK_CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const OK_CREATED_ACCEPTED: &[(&str, &str)] =
    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const OK_ACCEPTED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

fn object_body(definition: Option<&str>) -> Value {
    json!({"content": {"*/*": {"schema": schema_of(definition)}}, "required": true})
}

fn patch_body() -> Value {
    json!({"content": content(PATCH_MEDIA_TYPES, &schema_of(Some(PATCH))), "required": true})
}

fn delete_body() -> Value {
    json!({"content": {"*/*": {"schema": schema_of(Some(DELETE_OPTIONS))}}})
}

/// definitions `object` and `list`.
pub fn add_resource(
    paths: &mut Map<String, Value>,
    resource: &ResourceType,
    object: Option<&str>,
    list: Option<&str>,
) {
    let names = GroupVersionNames::new(&resource.group, &resource.version);
    let gvk = Gvk::new(&resource.group, &resource.version, &resource.kind);
    let kind = &resource.kind;
    let gv = &names.id;
    let scope = if resource.namespaced { "Namespaced" } else { "" };
    let verbs = resource.verbs.names();
    let has = |verb: &str| verbs.contains(&verb);
    let object_schema = schema_of(object);
    let status_schema = schema_of(Some(STATUS));

    let collection = collection_path(&names, resource);
    let mut collection_item = Map::new();
    collection_item.insert("parameters".into(), path_parameters(None, resource.namespaced));
    if has("list") {
        let operation = Operation {
            action: "list",
            id: format!("list{gv}{scope}{kind}"),
            description: format!("list or watch objects of kind {kind}"),
            parameters: list_parameters(),
            body: None,
            responses: responses(OK, WATCH_MEDIA_TYPES, &schema_of(list)),
        };
        collection_item.insert("get".into(), operation.render(&names, &gvk));
    }
    if has("create") {
        let operation = Operation {
            action: "post",
            id: format!("create{gv}{scope}{kind}"),
            description: format!("create a {kind}"),
            parameters: write_parameters(),
            body: Some(object_body(object)),
            responses: responses(OK_CREATED_ACCEPTED, MEDIA_TYPES, &object_schema),
        };
        collection_item.insert("post".into(), operation.render(&names, &gvk));
    }
    if has("deletecollection") {
        let operation = Operation {
            action: "deletecollection",
            id: format!("delete{gv}Collection{scope}{kind}"),
            description: format!("delete collection of {kind}"),
            parameters: delete_collection_parameters(),
            body: Some(delete_body()),
            responses: responses(OK, MEDIA_TYPES, &status_schema),
        };
        collection_item.insert("delete".into(), operation.render(&names, &gvk));
    }
    paths.insert(collection.clone(), Value::Object(collection_item));

    if resource.namespaced && has("list") {
        let operation = Operation {
            action: "list",
            id: format!("list{gv}{kind}ForAllNamespaces"),
            description: format!("list or watch objects of kind {kind}"),
            parameters: list_parameters(),
            body: None,
            responses: responses(OK, WATCH_MEDIA_TYPES, &schema_of(list)),
        };
        let path = format!("{}/{}", names.prefix, resource.plural);
        let item = json!({
            "parameters": path_parameters(None, false),
            "get": operation.render(&names, &gvk),
        });
        paths.insert(path, item);
    }

    if !has("get") {
        return;
    }
    let mut item = Map::new();
    item.insert("parameters".into(), path_parameters(Some(kind), resource.namespaced));
    let read = Operation {
        action: "get",
        id: format!("read{gv}{scope}{kind}"),
        description: format!("read the specified {kind}"),
        parameters: Vec::new(),
        body: None,
        responses: responses(OK, MEDIA_TYPES, &object_schema),
    };
    item.insert("get".into(), read.render(&names, &gvk));
    if has("update") {
        let operation = Operation {
            action: "put",
            id: format!("replace{gv}{scope}{kind}"),
            description: format!("replace the specified {kind}"),
            parameters: write_parameters(),
            body: Some(object_body(object)),
            responses: responses(OK_CREATED, MEDIA_TYPES, &object_schema),
        };
        item.insert("put".into(), operation.render(&names, &gvk));
    }
    if has("patch") {
        let operation = Operation {
            action: "patch",
            id: format!("patch{gv}{scope}{kind}"),
            description: format!("partially update the specified {kind}"),
            parameters: patch_parameters(),
            body: Some(patch_body()),
            responses: responses(OK_CREATED, MEDIA_TYPES, &object_schema),
        };
        item.insert("patch".into(), operation.render(&names, &gvk));
    }
    if has("delete") {
        let operation = Operation {
            action: "delete",
            id: format!("delete{gv}{scope}{kind}"),
            description: format!("delete a {kind}"),
            parameters: delete_parameters(),
            body: Some(delete_body()),
            responses: responses(OK_ACCEPTED, MEDIA_TYPES, &status_schema),
        };
        item.insert("delete".into(), operation.render(&names, &gvk));
    }
    paths.insert(format!("{collection}/{{name}}"), Value::Object(item));
}

fn collection_path(names: &GroupVersionNames, resource: &ResourceType) -> String {
    if resource.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", names.prefix, resource.plural)
    } else {
        format!("{}/{}", names.prefix, resource.plural)
    }
}

/// Adds the path of one subresource of `resource`. Its operations carry `gvk`, the kind the
/// subresource serves (the resource's own kind for status, `autoscaling/v1` Scale for scale),
/// whose definition is `definition`.
pub fn add_subresource(
    paths: &mut Map<String, Value>,
    resource: &ResourceType,
    subresource: Subresource,
    gvk: &Gvk,
    definition: Option<&str>,
) {
    let names = GroupVersionNames::new(&resource.group, &resource.version);
    let kind = &resource.kind;
    let gv = &names.id;
    let scope = if resource.namespaced { "Namespaced" } else { "" };
    let name = subresource.name();
    let suffix = capitalize(name);
    let (_, _, verbs) = subresource.discovery(kind);
    let base = format!("{}/{{name}}/{name}", collection_path(&names, resource));
    let schema = schema_of(definition);
    let text = json!({"type": "string"});

    let mut item = Map::new();
    item.insert("parameters".into(), path_parameters(Some(kind), resource.namespaced));
    let connect = matches!(
        subresource,
        Subresource::Exec | Subresource::Attach | Subresource::PortForward | Subresource::Proxy
    );
    for verb in verbs {
        let method = match *verb {
            "get" => "get",
            "create" => "post",
            "update" => "put",
            "patch" => "patch",
            "delete" => "delete",
            _ => continue,
        };
        let operation = if connect {
            Operation {
                action: "connect",
                id: format!("connect{gv}{}{scope}{kind}{suffix}", capitalize(method)),
                description: format!(
                    "connect {} requests to {name} of {kind}",
                    method.to_uppercase()
                ),
                parameters: connect_parameters(subresource),
                body: None,
                responses: responses(OK, &["*/*"], &text),
            }
        } else if subresource == Subresource::Log {
            Operation {
                action: "get",
                id: format!("read{gv}{scope}{kind}{suffix}"),
                description: format!("read {name} of the specified {kind}"),
                parameters: log_parameters(),
                body: None,
                responses: responses(OK, &["text/plain", "application/json"], &text),
            }
        } else {
            match method {
                "get" => Operation {
                    action: "get",
                    id: format!("read{gv}{scope}{kind}{suffix}"),
                    description: format!("read {name} of the specified {kind}"),
                    parameters: Vec::new(),
                    body: None,
                    responses: responses(OK, MEDIA_TYPES, &schema),
                },
                "put" => Operation {
                    action: "put",
                    id: format!("replace{gv}{scope}{kind}{suffix}"),
                    description: format!("replace {name} of the specified {kind}"),
                    parameters: write_parameters(),
                    body: Some(object_body(definition)),
                    responses: responses(OK_CREATED, MEDIA_TYPES, &schema),
                },
                "patch" => Operation {
                    action: "patch",
                    id: format!("patch{gv}{scope}{kind}{suffix}"),
                    description: format!("partially update {name} of the specified {kind}"),
                    parameters: patch_parameters(),
                    body: Some(patch_body()),
                    responses: responses(OK_CREATED, MEDIA_TYPES, &schema),
                },
                "post" => Operation {
                    action: "post",
                    id: format!("create{gv}{scope}{kind}{suffix}"),
                    description: format!("create {name} of a {kind}"),
                    parameters: write_parameters(),
                    body: Some(object_body(definition)),
                    responses: responses(OK_CREATED_ACCEPTED, MEDIA_TYPES, &schema),
                },
                _ => continue,
            }
        };
        item.insert(method.into(), operation.render(&names, gvk));
    }

    if subresource == Subresource::Proxy {
        // The proxy also forwards to a path below the object.
        let mut with_path = item.clone();
        let mut parameters = path_parameters(Some(kind), resource.namespaced);
        if let Value::Array(parameters) = &mut parameters {
            parameters.insert(0, path_parameter("path", "path to the resource"));
        }
        with_path.insert("parameters".into(), parameters);
        for operation in with_path.values_mut() {
            if let Some(Value::String(id)) = operation.get_mut("operationId") {
                id.push_str("WithPath");
            }
            if let Some(Value::Array(parameters)) = operation.get_mut("parameters") {
                parameters.retain(|parameter| parameter["name"] != "path");
            }
        }
        paths.insert(format!("{base}/{{path}}"), Value::Object(with_path));
    }
    paths.insert(base, Value::Object(item));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_server() {
        let core = GroupVersionNames::new("", "v1");
        assert_eq!(
            (core.prefix.as_str(), core.tag.as_str(), core.id.as_str()),
            ("/api/v1", "core_v1", "CoreV1")
        );
        let rbac = GroupVersionNames::new("rbac.authorization.k8s.io", "v1");
        assert_eq!(rbac.prefix, "/apis/rbac.authorization.k8s.io/v1");
        assert_eq!(rbac.tag, "rbacAuthorization_v1");
        assert_eq!(rbac.id, "RbacAuthorizationV1");
        let custom = GroupVersionNames::new("stable.example.com", "v1beta1");
        assert_eq!(custom.tag, "stableExampleCom_v1beta1");
        assert_eq!(custom.id, "StableExampleComV1beta1");
    }
}
