//! Patches as kubectl sends them: JSON merge patch, JSON patch and strategic merge patch.

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{configmap, configmaps, deployment, TestServer};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn merge_patch_sets_and_removes_keys() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/settings");
    let mut body = configmap("settings");
    body["data"] = json!({ "keep": "1", "change": "2", "drop": "3" });
    let created = admin.post(&collection, &body).await?.expect(StatusCode::CREATED)?;

    let patch = json!({ "data": { "change": "two", "drop": null, "add": "4" } });
    let reply = admin.patch(&path, "application/merge-patch+json", &patch).await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(reply.json["data"], json!({ "keep": "1", "change": "two", "add": "4" }));
    assert!(reply.resource_version() > created.resource_version());
    let stored = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(stored.json["data"], reply.json["data"]);

    // --- a patch pinned to an old resourceVersion conflicts
    let stale = json!({
        "metadata": { "resourceVersion": created.json["metadata"]["resourceVersion"] },
        "data": { "keep": "stale" },
    });
    let reply = admin.patch(&path, "application/merge-patch+json", &stale).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());

    // --- a patch of a missing object is not found
    let reply = admin
        .patch(&format!("{collection}/missing"), "application/merge-patch+json", &patch)
        .await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // --- an unknown patch type is unsupported
    let reply = admin.patch(&path, "application/x-unknown-patch", &patch).await?;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", reply.text());

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn json_patch_applies_whole_or_not_at_all() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/settings");
    admin.post(&collection, &configmap("settings")).await?.expect(StatusCode::CREATED)?;

    // --- a successful patch
    let ops = json!([
        { "op": "test", "path": "/data/key", "value": "value" },
        { "op": "replace", "path": "/data/key", "value": "patched" },
        { "op": "add", "path": "/data/other", "value": "added" },
    ]);
    let reply =
        admin.patch(&path, "application/json-patch+json", &ops).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["data"], json!({ "key": "patched", "other": "added" }));
    let before = admin.get(&path).await?.expect(StatusCode::OK)?;

    // --- a failing test op rejects the patch, including the ops before it
    let ops = json!([
        { "op": "replace", "path": "/data/other", "value": "should not stick" },
        { "op": "test", "path": "/data/key", "value": "something else" },
        { "op": "replace", "path": "/data/key", "value": "should not stick" },
    ]);
    let reply = admin.patch(&path, "application/json-patch+json", &ops).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());
    assert_eq!(reply.json["kind"], "Status");
    let after = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(after.json["data"], before.json["data"]);
    assert_eq!(after.resource_version(), before.resource_version());

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let path = format!("{DEPLOYMENTS}/web");
    let body = deployment("web", &[("app", "nginx:1.27"), ("sidecar", "envoy:1.30")]);
    admin.post(DEPLOYMENTS, &body).await?.expect(StatusCode::CREATED)?;

    // --- kubectl set image deployment/web sidecar=envoy:1.31
    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "sidecar", "image": "envoy:1.31" },
    ] } } } });
    let reply = admin.patch(&path, "application/strategic-merge-patch+json", &patch).await?;
    let reply = reply.expect(StatusCode::OK)?;
    let images = |object: &Value| -> Vec<(String, String)> {
        object
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(|containers| {
                containers
                    .iter()
                    .map(|c| {
                        let text = |field: &str| c[field].as_str().unwrap_or("").to_string();
                        (text("name"), text("image"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected = [
        ("app".to_string(), "nginx:1.27".to_string()),
        ("sidecar".to_string(), "envoy:1.31".to_string()),
    ];
    assert_eq!(images(&reply.json), expected);
    assert_eq!(reply.json.pointer("/metadata/generation"), Some(&json!(2)));
    let stored = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(images(&stored.json), expected);

    // --- the same change as a merge patch replaces the whole list
    let reply = admin.patch(&path, "application/merge-patch+json", &patch).await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(images(&reply.json), [("sidecar".to_string(), "envoy:1.31".to_string())]);

    // --- $patch: delete removes one container by name
    let body = deployment("two", &[("a", "img:1"), ("b", "img:2")]);
    admin.post(DEPLOYMENTS, &body).await?.expect(StatusCode::CREATED)?;
    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "a", "$patch": "delete" },
    ] } } } });
    let reply = admin
        .patch(&format!("{DEPLOYMENTS}/two"), "application/strategic-merge-patch+json", &patch)
        .await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(images(&reply.json), [("b".to_string(), "img:2".to_string())]);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn server_side_apply_creates_tracks_owners_and_reports_conflicts() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let path = format!("{}/applied", configmaps("default"));
    let apply = "application/apply-patch+yaml";
    let config = |size: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "applied" }, "data": { "size": size } });

    // --- an apply without a field manager is refused
    let reply = admin.patch(&path, apply, &config("small")).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());

    // --- the first apply creates the object and records its manager
    let created =
        admin.patch(&format!("{path}?fieldManager=tool"), apply, &config("small")).await?;
    let created = created.expect(StatusCode::CREATED)?;
    let managed = &created.json["metadata"]["managedFields"][0];
    assert_eq!(managed["manager"], "tool");
    assert_eq!(managed["operation"], "Apply");
    assert_eq!(managed["fieldsV1"]["f:data"]["f:size"], json!({}));

    // --- another writer takes the field with an update; the next apply conflicts
    let merge = "application/merge-patch+json";
    let changed = admin
        .patch(
            &format!("{path}?fieldManager=editor"),
            merge,
            &json!({ "data": { "size": "large" } }),
        )
        .await?;
    changed.expect(StatusCode::OK)?;
    let reply = admin.patch(&format!("{path}?fieldManager=tool"), apply, &config("medium")).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    assert_eq!(
        reply.json["message"],
        r#"Apply failed with 1 conflict: conflict with "editor" using v1: .data.size"#
    );
    assert_eq!(reply.json["details"]["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(admin.get(&path).await?.json["data"]["size"], "large");

    // --- forced, the apply wins and owns the field again
    let forced = admin
        .patch(&format!("{path}?fieldManager=tool&force=true"), apply, &config("medium"))
        .await?;
    let forced = forced.expect(StatusCode::OK)?;
    assert_eq!(forced.json["data"]["size"], "medium");
    let owners: Vec<&str> = forced.json["metadata"]["managedFields"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(owners.contains(&"tool"), "{owners:?}");

    // --- force is only for applies
    let reply = admin.patch(&format!("{path}?force=true"), merge, &json!({ "data": {} })).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn concurrent_patches_without_a_resource_version_all_land() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    admin.post(&collection, &configmap("busy")).await?.expect(StatusCode::CREATED)?;
    let path = format!("{collection}/busy");

    // --- eight writers patch different keys at once; none names a resourceVersion, so each
    // --- one is retried on the server until it lands, never answered with a conflict
    let patches = (0..8).map(|i| {
        let admin = admin.clone();
        let path = path.clone();
        async move {
            let body = json!({ "data": { format!("key-{i}"): "v" } });
            admin.patch(&path, "application/merge-patch+json", &body).await
        }
    });
    for reply in futures::future::join_all(patches).await {
        let reply = reply?;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let stored = admin.get(&path).await?.expect(StatusCode::OK)?;
    let landed = stored.json["data"]
        .as_object()
        .map(|data| data.keys().filter(|key| key.starts_with("key-")).count());
    assert_eq!(landed, Some(8));

    server.stop().await;
    Ok(())
}
