//! Table tests of the documents as kubectl reads them and of strict field validation.

use serde_json::{json, Value};

use super::*;
use crate::resources::{builtin, Subresource, Verbs};

fn crontab_schema() -> Value {
    json!({
        "type": "object",
        "description": "A CronTab runs a command on a schedule.",
        "properties": {
            "spec": {
                "type": "object",
                "description": "What to run and when.",
                "properties": {
                    "cronSpec": {"type": "string", "description": "The schedule, in cron syntax."},
                    "replicas": {"type": "integer"},
                    "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    },
                },
            },
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        },
    })
}

fn crontab() -> ResourceType {
    let mut resource = builtin().remove(5);
    resource.group = "stable.example.com".into();
    resource.version = "v1".into();
    resource.kind = "CronTab".into();
    resource.plural = "crontabs".into();
    resource.singular = "crontab".into();
    resource.subresources = vec![Subresource::Status, Subresource::Scale];
    resource.schema = Some(crontab_schema());
    resource
}

fn catalog_with_crontab() -> Catalog {
    let catalog = Catalog::default();
    catalog.set_custom("stable.example.com", "crontabs", vec![crontab()]);
    catalog
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    }],
                },
            },
        },
    })
}

/// What `kubectl explain <resource>.<field path>` prints as the type and description of the
/// field, following the template kubectl v1.27+ uses: the kind comes from the operations of the
/// resource's paths, the schema from the matching `x-kubernetes-group-version-kind`, and fields
/// are followed through `$ref` and `allOf`.
fn explain(
    document: &Value,
    prefix: &str,
    plural: &str,
    fields: &[&str],
) -> Option<(String, String)> {
    let candidates =
        [format!("{prefix}/{plural}"), format!("{prefix}/namespaces/{{namespace}}/{plural}")];
    let gvk = candidates.iter().find_map(|path| {
        let item = document["paths"].get(path)?;
        ["get", "post", "put", "patch", "delete"]
            .iter()
            .find_map(|m| item.get(m)?.get(GVK_EXTENSION).cloned())
    })?;
    let schemas = document["components"]["schemas"].as_object()?;
    let mut schema = schemas.values().find(|s| {
        s.get(GVK_EXTENSION).and_then(Value::as_array).is_some_and(|tags| tags.contains(&gvk))
    })?;
    let resolve = |schema: &'_ Value| -> Option<Value> {
        let mut current = schema.clone();
        loop {
            if let Some(reference) = current.get("$ref").and_then(Value::as_str) {
                let name = reference.strip_prefix("#/components/schemas/")?;
                current = schemas.get(name)?.clone();
            } else if current.get("properties").is_none() {
                match current.get("allOf").and_then(|a| a.get(0)) {
                    Some(first) => current = first.clone(),
                    None => return Some(current),
                }
            } else {
                return Some(current);
            }
        }
    };
    let mut owned;
    for (position, field) in fields.iter().enumerate() {
        let resolved = resolve(schema)?;
        let property = resolved.get("properties")?.get(*field)?.clone();
        if position + 1 == fields.len() {
            let description = property.get("description")?.as_str()?.to_string();
            let resolved = resolve(&property)?;
            let kind = resolved.get("type").and_then(Value::as_str).unwrap_or("Object").to_string();
            return Some((kind, description));
        }
        owned = property;
        schema = &owned;
    }
    None
}

#[test]
fn index_lists_every_group_version_with_a_stable_hash() {
    let catalog = catalog_with_crontab();
    let openapi = OpenApi::new(catalog.clone());
    let index = openapi.index();
    let paths = index["paths"].as_object().unwrap();
    for path in ["api/v1", "apis/apps/v1", "apis/autoscaling/v2", "apis/stable.example.com/v1"] {
        let url = paths[path]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with(&format!("/openapi/v3/{path}?hash=")), "{url}");
    }
    let group_versions: usize = catalog.groups().iter().map(|g| g.versions.len()).sum();
    assert_eq!(paths.len(), group_versions);
    assert_eq!(openapi.index(), index, "the same catalog hashes the same");
    assert_eq!(super::index(&catalog), index, "the uncached index agrees");

    let hash = |index: &Value| index["paths"]["apis/stable.example.com/v1"].clone();
    let mut changed = crontab();
    changed.schema = Some(json!({"type": "object", "properties": {"spec": {"type": "object"}}}));
    catalog.set_custom("stable.example.com", "crontabs", vec![changed]);
    let after = openapi.index();
    assert_ne!(hash(&after), hash(&index), "a changed CRD changes its document's hash");
    assert_eq!(after["paths"]["apis/apps/v1"], index["paths"]["apis/apps/v1"]);
    catalog.set_custom("stable.example.com", "crontabs", Vec::new());
    assert!(openapi.index()["paths"].get("apis/stable.example.com/v1").is_none());
    assert!(openapi.document("stable.example.com", "v1").is_none());
}

#[test]
fn apps_document_serves_deployment_as_kubectl_needs() {
    let catalog = Catalog::default();
    let document = document(&catalog, "apps", "v1", &no_patch_extensions).unwrap();
    assert_eq!(document["openapi"], "3.0.0");
    let schemas = &document["components"]["schemas"];
    let gvk = json!({"group": "apps", "kind": "Deployment", "version": "v1"});
    assert_eq!(schemas["io.k8s.api.apps.v1.Deployment"][GVK_EXTENSION], json!([gvk]));
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentList"][GVK_EXTENSION],
        json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
    );
    assert_eq!(
        schemas["io.k8s.api.autoscaling.v1.Scale"][GVK_EXTENSION],
        json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
    );
    for name in ["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.api.core.v1.Container"]
    {
        assert!(schemas.get(name).is_some(), "{name}");
    }

    let item = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch[GVK_EXTENSION], gvk);
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let parameters: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(parameters, ["dryRun", "force", "fieldManager", "fieldValidation"]);
    let content = patch["requestBody"]["content"].as_object().unwrap();
    let media_types: Vec<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(
        media_types,
        [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ]
    );
    for method in ["get", "put", "delete"] {
        assert_eq!(item[method][GVK_EXTENSION], gvk, "{method}");
    }
    let paths = document["paths"].as_object().unwrap();
    let collection = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(collection["get"]["operationId"], "listAppsV1NamespacedDeployment");
    let list_parameters: Vec<&str> = collection["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(list_parameters.contains(&"labelSelector") && list_parameters.contains(&"watch"));
    assert_eq!(collection["delete"]["x-kubernetes-action"], "deletecollection");
    assert!(paths["/apis/apps/v1/deployments"]["get"]["operationId"]
        .as_str()
        .is_some_and(|id| id == "listAppsV1DeploymentForAllNamespaces"));
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"][GVK_EXTENSION],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    let status = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
    assert_eq!(status["put"]["operationId"], "replaceAppsV1NamespacedDeploymentStatus");
}

/// kubectl's QueryParamVerifierV3 stops at the first PATCH operation of the kind it meets, in
/// map order: every such operation must list the parameter.
#[test]
fn every_patch_operation_lists_field_validation() {
    let catalog = catalog_with_crontab();
    let openapi = OpenApi::new(catalog.clone());
    for group in catalog.groups() {
        for version in &group.versions {
            let document = openapi.document(&group.group, version).unwrap();
            for (path, item) in document.document()["paths"].as_object().unwrap() {
                let Some(patch) = item.get("patch") else { continue };
                if patch["x-kubernetes-action"] == "connect" {
                    continue;
                }
                assert!(patch[GVK_EXTENSION].is_object(), "{path}");
                let has = patch["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query");
                assert!(has, "{path}");
            }
        }
    }
}

#[test]
fn explain_finds_fields_through_references() {
    let catalog = catalog_with_crontab();
    let apps = document(&catalog, "apps", "v1", &no_patch_extensions).unwrap();
    let (kind, description) =
        explain(&apps, "/apis/apps/v1", "deployments", &["spec", "replicas"]).unwrap();
    assert_eq!(kind, "integer");
    assert!(description.contains("desired pods"), "{description}");
    let (_, description) =
        explain(&apps, "/apis/apps/v1", "deployments", &["spec", "template", "spec", "containers"])
            .unwrap();
    assert!(description.contains("containers"), "{description}");
    assert!(explain(&apps, "/apis/apps/v1", "deployments", &["spec", "replicaz"]).is_none());

    let core = document(&catalog, "", "v1", &no_patch_extensions).unwrap();
    let (kind, _) = explain(&core, "/api/v1", "nodes", &["spec", "unschedulable"]).unwrap();
    assert_eq!(kind, "boolean");

    let custom = document(&catalog, "stable.example.com", "v1", &no_patch_extensions).unwrap();
    let prefix = "/apis/stable.example.com/v1";
    let (kind, description) = explain(&custom, prefix, "crontabs", &["spec", "cronSpec"]).unwrap();
    assert_eq!((kind.as_str(), description.as_str()), ("string", "The schedule, in cron syntax."));
    let (_, description) = explain(&custom, prefix, "crontabs", &["metadata", "name"]).unwrap();
    assert!(description.starts_with("Name must be unique"), "{description}");
}

#[test]
fn custom_documents_use_the_crd_schema() {
    let catalog = catalog_with_crontab();
    let document = document(&catalog, "stable.example.com", "v1", &no_patch_extensions).unwrap();
    let schemas = &document["components"]["schemas"];
    let crontab = &schemas["com.example.stable.v1.CronTab"];
    assert_eq!(
        crontab[GVK_EXTENSION],
        json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
    );
    assert_eq!(crontab["properties"]["apiVersion"]["type"], "string");
    assert_eq!(
        crontab["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        crontab["properties"]["spec"]["properties"]["ports"]["x-kubernetes-list-type"],
        "map"
    );
    assert!(schemas.get("com.example.stable.v1.CronTabList").is_some());
    let paths = &document["paths"];
    let item = &paths["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"];
    assert_eq!(item["patch"]["operationId"], "patchStableExampleComV1NamespacedCronTab");
    let status =
        &paths["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"];
    assert_eq!(status["get"][GVK_EXTENSION]["kind"], "CronTab");
    assert!(schemas.get("io.k8s.api.autoscaling.v1.Scale").is_some());
}

#[test]
fn core_document_lists_pod_subresources_and_reviews_only_create() {
    let catalog = Catalog::default();
    let core = document(&catalog, "", "v1", &no_patch_extensions).unwrap();
    let paths = core["paths"].as_object().unwrap();
    let pod = "/api/v1/namespaces/{namespace}/pods/{name}";
    let cases = [
        ("binding", "post", "Binding"),
        ("eviction", "post", "Eviction"),
        ("log", "get", "Pod"),
        ("exec", "post", "PodExecOptions"),
        ("ephemeralcontainers", "patch", "Pod"),
    ];
    for (sub, method, kind) in cases {
        let operation = &paths[&format!("{pod}/{sub}")][method];
        assert_eq!(operation[GVK_EXTENSION]["kind"], kind, "{sub}");
    }
    assert!(paths.contains_key(&format!("{pod}/proxy/{{path}}")));
    assert_eq!(paths["/api/v1/namespaces/{name}/finalize"]["put"]["x-kubernetes-action"], "put");
    assert_eq!(
        core["components"]["schemas"]["io.k8s.api.policy.v1.Eviction"][GVK_EXTENSION][0]["group"],
        "policy"
    );

    let authorization =
        document(&catalog, "authorization.k8s.io", "v1", &no_patch_extensions).unwrap();
    let reviews = &authorization["paths"]["/apis/authorization.k8s.io/v1/subjectaccessreviews"];
    let methods: Vec<&String> = reviews.as_object().unwrap().keys().collect();
    assert_eq!(methods, ["parameters", "post"]);
    assert!(authorization["paths"]
        .get("/apis/authorization.k8s.io/v1/subjectaccessreviews/{name}")
        .is_none());
    assert_eq!(
        catalog.get("authorization.k8s.io", "v1", "subjectaccessreviews").unwrap().verbs,
        Verbs::CreateOnly
    );
}

#[test]
fn patch_extension_hook_merges_into_properties() {
    let catalog = Catalog::default();
    let hook = |definition: &str, field: &str| match (definition, field) {
        ("io.k8s.api.core.v1.PodSpec", "containers") => Some(json!({
            "x-kubernetes-patch-strategy": "merge",
            "x-kubernetes-patch-merge-key": "name",
        })),
        _ => None,
    };
    let document = document(&catalog, "apps", "v1", &hook).unwrap();
    let pod_spec = &document["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"];
    assert_eq!(pod_spec["containers"]["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(pod_spec["containers"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(pod_spec["containers"]["type"], "array", "the property keeps its schema");
    assert!(pod_spec["volumes"].get("x-kubernetes-patch-strategy").is_none());

    let openapi = OpenApi::new(catalog).with_patch_extensions(hook);
    let cached = openapi.document("apps", "v1").unwrap();
    let containers = &cached.document()["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]
        ["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
}

#[test]
fn documents_are_cached_until_their_types_change() {
    let catalog = catalog_with_crontab();
    let openapi = OpenApi::new(catalog.clone());
    let apps = openapi.document("apps", "v1").unwrap();
    let custom = openapi.document("stable.example.com", "v1").unwrap();
    assert!(Arc::ptr_eq(&apps, &openapi.document("apps", "v1").unwrap()));
    assert!(Arc::ptr_eq(&custom, &openapi.document("stable.example.com", "v1").unwrap()));
    assert_eq!(serde_json::from_slice::<Value>(custom.json()).unwrap(), *custom.document());

    let mut widened = crontab();
    widened.kind = "CronTab".into();
    let mut schema = crontab_schema();
    schema["properties"]["spec"]["properties"]["suspend"] = json!({"type": "boolean"});
    widened.schema = Some(schema);
    catalog.set_custom("stable.example.com", "crontabs", vec![widened]);
    let rebuilt = openapi.document("stable.example.com", "v1").unwrap();
    assert_ne!(rebuilt.hash(), custom.hash());
    assert!(Arc::ptr_eq(&apps, &openapi.document("apps", "v1").unwrap()));
    let object = json!({"spec": {"suspend": true}});
    assert!(openapi.unknown_fields("stable.example.com", "v1", "CronTab", &object).is_empty());
}

struct Case {
    name: &'static str,
    gvk: (&'static str, &'static str, &'static str),
    object: Value,
    expected: &'static [&'static str],
}

#[test]
fn unknown_fields_match_strict_decoding() {
    let openapi = OpenApi::new(catalog_with_crontab());
    let mut typo = deployment();
    typo["spec"]["replicaz"] = json!(3);
    typo["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("nginx");
    let bogus_pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any-key": "ok"}, "bogus": 1},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    });
    let cases = [
        Case {
            name: "valid deployment",
            gvk: ("apps", "v1", "Deployment"),
            object: deployment(),
            expected: &[],
        },
        Case {
            name: "typos in a deployment",
            gvk: ("apps", "v1", "Deployment"),
            object: typo,
            expected: &[
                r#"unknown field "spec.replicaz""#,
                r#"unknown field "spec.template.spec.containers[0].imagee""#,
            ],
        },
        Case {
            name: "bogus pod metadata",
            gvk: ("", "v1", "Pod"),
            object: bogus_pod,
            expected: &[r#"unknown field "metadata.bogus""#],
        },
        Case {
            name: "scale outside a served group version",
            gvk: ("autoscaling", "v1", "Scale"),
            object: json!({"spec": {"replicas": 1, "replica": 2}}),
            expected: &[r#"unknown field "spec.replica""#],
        },
        Case {
            name: "custom resource",
            gvk: ("stable.example.com", "v1", "CronTab"),
            object: json!({
                "apiVersion": "stable.example.com/v1",
                "kind": "CronTab",
                "metadata": {"name": "c", "bogus": true},
                "spec": {
                    "cronSpec": "* * * * *",
                    "cronspec": "x",
                    "template": {"anything": {"goes": 1}},
                    "ports": [{"name": "http", "port": 80}],
                },
                "extra": 1,
            }),
            expected: &[
                r#"unknown field "extra""#,
                r#"unknown field "metadata.bogus""#,
                r#"unknown field "spec.cronspec""#,
                r#"unknown field "spec.ports[0].port""#,
            ],
        },
        Case {
            name: "unknown kind",
            gvk: ("apps", "v1", "Nonexistent"),
            object: json!({"x": 1}),
            expected: &[],
        },
    ];
    for Case { name, gvk: (group, version, kind), object, expected } in cases {
        assert_eq!(openapi.unknown_fields(group, version, kind, &object), expected, "{name}");
        let body = serde_json::to_vec(&object).unwrap();
        let strict = openapi.strict_field_errors(group, version, kind, &body).unwrap();
        assert_eq!(strict, expected, "{name} (raw body)");
    }
}

#[test]
fn raw_bodies_report_duplicates_in_order() {
    let openapi = OpenApi::new(Catalog::default());
    let body = br#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
        "spec": {"replicas": 1, "replicaz": 2, "replicas": 3,
            "selector": {"matchLabels": {"a": "b", "a": "c"}},
            "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}}"#;
    let errors = openapi.strict_field_errors("apps", "v1", "Deployment", body).unwrap();
    assert_eq!(
        errors,
        [
            r#"unknown field "spec.replicaz""#,
            r#"duplicate field "spec.replicas""#,
            r#"duplicate field "spec.selector.matchLabels.a""#,
            r#"unknown field "spec.template.spec.containers[0].imagee""#,
        ]
    );
    assert_eq!(
        strict_decoding_message("Deployment", "v1", &errors[..1]),
        r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replicaz""#
    );
    assert!(openapi.strict_field_errors("apps", "v1", "Deployment", b"{\"spec\": ").is_err());
}

fn collect_references<'a>(value: &'a Value, references: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => references.push(reference),
                    _ => collect_references(value, references),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, references)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_within_its_document() {
    let catalog = catalog_with_crontab();
    let openapi = OpenApi::new(catalog.clone());
    for group in catalog.groups() {
        for version in &group.versions {
            let document = openapi.document(&group.group, version).unwrap();
            let schemas = document.document()["components"]["schemas"].as_object().unwrap();
            assert!(schemas.values().all(Value::is_object), "{}/{version}", group.group);
            let mut references = Vec::new();
            collect_references(document.document(), &mut references);
            assert!(!references.is_empty());
            for reference in references {
                let name = reference.strip_prefix("#/components/schemas/").unwrap();
                assert!(schemas.contains_key(name), "{}/{version}: {reference}", group.group);
            }
        }
    }
}
