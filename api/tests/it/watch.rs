//! Watches: where they start, what selectors make of changes, how they end, bookmarks, and
//! 410 Expired after the store's history is compacted.

use std::time::Duration;

use flotilla_store::KvStore;
use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{configmap, configmaps, encode, resource_version, TestServer};

/// An event's type and object name.
fn kind_and_name(event: &Value) -> (String, String) {
    let text =
        |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
    (text("/type"), text("/object/metadata/name"))
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_only_later_changes_in_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let before =
        admin.post(&collection, &configmap("before")).await?.expect(StatusCode::CREATED)?;

    // --- watch from the revision of the first object
    let mut watch = admin
        .watch(&format!("{collection}?watch=true&resourceVersion={}", before.resource_version()))
        .await?;

    // --- create, modify, delete another object
    let created =
        admin.post(&collection, &configmap("later")).await?.expect(StatusCode::CREATED)?;
    let mut changed = created.json.clone();
    changed["data"]["key"] = json!("changed");
    admin.put(&format!("{collection}/later"), &changed).await?.expect(StatusCode::OK)?;
    admin.delete(&format!("{collection}/later")).await?.expect(StatusCode::OK)?;

    let mut last_rv = before.resource_version();
    for (expected, data) in [("ADDED", "value"), ("MODIFIED", "changed"), ("DELETED", "changed")] {
        let event = watch.next().await?;
        assert_eq!(kind_and_name(&event), (expected.to_string(), "later".to_string()), "{event}");
        assert_eq!(event.pointer("/object/data/key"), Some(&json!(data)), "{event}");
        assert_eq!(event.pointer("/object/kind"), Some(&json!("ConfigMap")), "{event}");
        let rv = resource_version(&event["object"]);
        assert!(rv > last_rv, "{expected}: resourceVersion {rv} is not after {last_rv}");
        last_rv = rv;
    }

    drop(watch);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_watch_without_a_resource_version_starts_with_the_current_objects() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    for name in ["one", "two"] {
        admin.post(&collection, &configmap(name)).await?.expect(StatusCode::CREATED)?;
    }

    let mut watch = admin.watch(&format!("{collection}?watch=true")).await?;
    let mut initial =
        vec![kind_and_name(&watch.next().await?), kind_and_name(&watch.next().await?)];
    initial.sort();
    let added = |name: &str| ("ADDED".to_string(), name.to_string());
    assert_eq!(initial, [added("one"), added("two")]);

    admin.post(&collection, &configmap("three")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(kind_and_name(&watch.next().await?), added("three"));

    drop(watch);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_label_selector_turns_relabeling_into_deleted_and_added() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/shifty");
    let start = admin.get(&collection).await?.expect(StatusCode::OK)?.resource_version();
    let mut watch = admin
        .watch(&format!(
            "{collection}?watch=true&resourceVersion={start}&labelSelector={}",
            encode("app=web")
        ))
        .await?;

    let relabel = |app: &str| json!({ "metadata": { "labels": { "app": app } } });
    let merge = "application/merge-patch+json";
    // --- an object created outside the selector is not seen
    let mut body = configmap("shifty");
    body["metadata"]["labels"] = json!({ "app": "db" });
    admin.post(&collection, &body).await?.expect(StatusCode::CREATED)?;
    // --- relabeled in: ADDED; out: DELETED; in again: ADDED
    admin.patch(&path, merge, &relabel("web")).await?.expect(StatusCode::OK)?;
    admin.patch(&path, merge, &relabel("db")).await?.expect(StatusCode::OK)?;
    admin.patch(&path, merge, &relabel("web")).await?.expect(StatusCode::OK)?;
    // --- a change outside the selector is not seen; one inside is MODIFIED
    admin.post(&collection, &configmap("unlabeled")).await?.expect(StatusCode::CREATED)?;
    let change = json!({ "data": { "key": "new" } });
    admin.patch(&path, merge, &change).await?.expect(StatusCode::OK)?;

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = watch.next().await?;
        let (kind, name) = kind_and_name(&event);
        assert_eq!(name, "shifty", "{event}");
        // Every event carries a version that matched, DELETED the last one before it left.
        assert_eq!(event.pointer("/object/metadata/labels/app"), Some(&json!("web")), "{event}");
        seen.push(kind);
    }
    assert_eq!(seen, ["ADDED", "DELETED", "ADDED", "MODIFIED"]);

    drop(watch);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let mut watch =
        admin.watch(&format!("{}?watch=true&timeoutSeconds=1", configmaps("default"))).await?;
    let end = watch.next_within(Duration::from_secs(10)).await?;
    assert!(end.is_none(), "expected the stream to end, got {end:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_idle_watch_that_allows_bookmarks_gets_one() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let created = admin.post(&collection, &configmap("c")).await?.expect(StatusCode::CREATED)?;
    let rv = created.resource_version();

    let mut watch = admin
        .watch(&format!("{collection}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}"))
        .await?;
    let event = watch.next_within(Duration::from_secs(10)).await?;
    let event = event.ok_or_else(|| anyhow::anyhow!("the watch ended without a bookmark"))?;
    assert_eq!(event["type"], "BOOKMARK", "{event}");
    assert_eq!(event.pointer("/object/kind"), Some(&json!("ConfigMap")), "{event}");
    assert!(resource_version(&event["object"]) >= rv, "{event}");

    drop(watch);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn compaction_expires_old_watches_and_continue_tokens() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");

    // --- history to compact: objects, and a list page started before the compaction
    let first = admin.post(&collection, &configmap("a")).await?.expect(StatusCode::CREATED)?;
    for name in ["b", "c"] {
        admin.post(&collection, &configmap(name)).await?.expect(StatusCode::CREATED)?;
    }
    let page = admin.get(&format!("{collection}?limit=1")).await?.expect(StatusCode::OK)?;
    let token = page.json.pointer("/metadata/continue").and_then(Value::as_str);
    let token =
        token.ok_or_else(|| anyhow::anyhow!("no continue token: {}", page.json))?.to_string();
    let mut changed = first.json.clone();
    changed["data"]["key"] = json!("changed");
    admin.put(&format!("{collection}/a"), &changed).await?.expect(StatusCode::OK)?;

    // --- compact everything before now
    let now = server.store.current_revision();
    server.store.compact(now).await?;

    // --- a watch from before the compaction gets 410 Expired as an event
    let mut watch = admin
        .watch(&format!("{collection}?watch=true&resourceVersion={}", first.resource_version()))
        .await?;
    let event = watch.next().await?;
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event.pointer("/object/kind"), Some(&json!("Status")), "{event}");
    assert_eq!(event.pointer("/object/code"), Some(&json!(410)), "{event}");
    assert_eq!(event.pointer("/object/reason"), Some(&json!("Expired")), "{event}");

    // --- a continue token from before the compaction is expired
    let reply = admin.get(&format!("{collection}?limit=1&continue={}", encode(&token))).await?;
    assert_eq!(reply.status, StatusCode::GONE, "{}", reply.text());
    assert_eq!(reply.json["reason"], "Expired");

    // --- a watch from now still works
    let mut watch = admin.watch(&format!("{collection}?watch=true&resourceVersion={now}")).await?;
    admin.post(&collection, &configmap("d")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(kind_and_name(&watch.next().await?), ("ADDED".to_string(), "d".to_string()));

    drop(watch);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_watch_and_writes_share_one_http2_connection() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let connection = server.admin()?.http2().await?;
    let collection = configmaps("default");

    // --- the watch holds one stream open while other requests use the same connection
    let mut watch = connection.watch(&format!("{collection}?watch=true")).await?;
    let version = connection.get("/version").await?.expect(StatusCode::OK)?;
    assert_eq!(version.json["minor"], "33");
    for name in ["one", "two"] {
        connection.post(&collection, &configmap(name)).await?.expect(StatusCode::CREATED)?;
        assert_eq!(kind_and_name(&watch.next().await?), ("ADDED".to_string(), name.to_string()));
    }

    drop(watch);
    drop(connection);
    server.stop().await;
    Ok(())
}
