//! What kubectl reads before it does anything: discovery (legacy and aggregated), OpenAPI,
//! the version, server-side tables, and the metrics endpoint.

use http::StatusCode;
use serde_json::Value;

use crate::support::{pod, TestServer};

const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// The element of `array` whose `field` is `value`.
fn find<'a>(array: &'a Value, field: &str, value: &str) -> Option<&'a Value> {
    array.as_array()?.iter().find(|item| item.pointer(field).and_then(Value::as_str) == Some(value))
}

#[tokio::test]
async fn legacy_and_aggregated_discovery_list_groups_and_resources() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    // --- legacy discovery
    let api = admin.get("/api").await?.expect(StatusCode::OK)?;
    assert_eq!(api.json["kind"], "APIVersions");
    assert_eq!(api.json["versions"], serde_json::json!(["v1"]));
    let apis = admin.get("/apis").await?.expect(StatusCode::OK)?;
    assert_eq!(apis.json["kind"], "APIGroupList");
    let apps = find(&apis.json["groups"], "/name", "apps")
        .ok_or_else(|| anyhow::anyhow!("no apps group"))?;
    assert_eq!(
        apps.pointer("/preferredVersion/groupVersion").and_then(Value::as_str),
        Some("apps/v1")
    );
    let resources = admin.get("/apis/apps/v1").await?.expect(StatusCode::OK)?;
    assert_eq!(resources.json["kind"], "APIResourceList");
    assert!(find(&resources.json["resources"], "/name", "deployments/scale").is_some());
    let core = admin.get("/api/v1").await?.expect(StatusCode::OK)?;
    let pods =
        find(&core.json["resources"], "/name", "pods").ok_or_else(|| anyhow::anyhow!("no pods"))?;
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["kind"], "Pod");

    // --- aggregated discovery, as kubectl asks for it
    let reply = admin.get_as("/apis", AGGREGATED).await?.expect(StatusCode::OK)?;
    let content_type =
        reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.contains("as=APIGroupDiscoveryList"), "{content_type}");
    assert_eq!(reply.json["kind"], "APIGroupDiscoveryList");
    let apps = find(&reply.json["items"], "/metadata/name", "apps")
        .ok_or_else(|| anyhow::anyhow!("no apps group in {}", reply.json))?;
    let v1 =
        find(&apps["versions"], "/version", "v1").ok_or_else(|| anyhow::anyhow!("no apps/v1"))?;
    let deployments = find(&v1["resources"], "/resource", "deployments")
        .ok_or_else(|| anyhow::anyhow!("no deployments"))?;
    assert_eq!(deployments["scope"], "Namespaced");
    assert!(find(&deployments["subresources"], "/subresource", "scale").is_some(), "{deployments}");
    let core = admin.get_as("/api", AGGREGATED).await?.expect(StatusCode::OK)?;
    assert_eq!(core.json["kind"], "APIGroupDiscoveryList");
    let core_v1 = core.json.pointer("/items/0/versions/0").cloned().unwrap_or_default();
    assert!(find(&core_v1["resources"], "/resource", "pods").is_some(), "{}", core.json);

    // --- a group that does not exist
    assert_eq!(admin.get("/apis/nothing.example.com").await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn openapi_and_version_describe_the_server() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    let index = admin.get("/openapi/v3").await?.expect(StatusCode::OK)?;
    let apps =
        index.json.pointer("/paths/apis~1apps~1v1/serverRelativeURL").and_then(Value::as_str);
    let apps = apps.ok_or_else(|| anyhow::anyhow!("no apis/apps/v1 in {}", index.json))?;
    assert!(index.json.pointer("/paths/api~1v1").is_some());
    let document = admin.get(apps).await?.expect(StatusCode::OK)?;
    assert!(document.json["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let schemas = document.json.pointer("/components/schemas").and_then(Value::as_object);
    assert!(schemas.is_some_and(|s| s.contains_key("io.k8s.api.apps.v1.Deployment")));

    let version = admin.get("/version").await?.expect(StatusCode::OK)?;
    assert_eq!(version.json["major"], "1");
    assert_eq!(version.json["minor"], "33");
    assert!(version.json["gitVersion"].as_str().is_some_and(|v| v.starts_with("v1.33.")));

    // --- any authenticated user may read discovery and the version
    let bob = server.bearer(crate::support::BOB_TOKEN)?;
    bob.get("/version").await?.expect(StatusCode::OK)?;
    bob.get("/apis").await?.expect(StatusCode::OK)?;

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn pods_list_as_a_table() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let pods = "/api/v1/namespaces/default/pods";
    admin.post(pods, &pod("web")).await?.expect(StatusCode::CREATED)?;

    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let table = admin.get_as(pods, accept).await?.expect(StatusCode::OK)?;
    assert_eq!(table.json["kind"], "Table");
    assert_eq!(table.json["apiVersion"], "meta.k8s.io/v1");
    let columns: Vec<&str> = table.json["columnDefinitions"]
        .as_array()
        .map(|columns| columns.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(columns.get(..5), Some(&["Name", "Ready", "Status", "Restarts", "Age"][..]));
    let row = table.json.pointer("/rows/0/cells").cloned().unwrap_or_default();
    assert_eq!(row[0], "web", "{}", table.json);
    assert_eq!(row[1], "0/1", "{}", table.json);
    assert_eq!(row[2], "Pending", "{}", table.json);

    // --- a single object as a table too
    let one = admin.get_as(&format!("{pods}/web"), accept).await?.expect(StatusCode::OK)?;
    assert_eq!(one.json["kind"], "Table");
    assert_eq!(one.json["rows"].as_array().map(Vec::len), Some(1));

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn metrics_count_requests() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    admin.get("/api/v1/namespaces/default/configmaps").await?.expect(StatusCode::OK)?;

    let metrics = admin.get("/metrics").await?.expect(StatusCode::OK)?;
    let text = metrics.text();
    let counted = text.lines().any(|line| {
        line.starts_with("apiserver_request_total{")
            && line.contains(r#"verb="LIST""#)
            && line.contains(r#"resource="configmaps""#)
            && line.contains(r#"code="200""#)
    });
    assert!(counted, "{text}");

    // --- metrics are not for everyone
    let bob = server.bearer(crate::support::BOB_TOKEN)?;
    assert_eq!(bob.get("/metrics").await?.status, StatusCode::FORBIDDEN);

    server.stop().await;
    Ok(())
}
