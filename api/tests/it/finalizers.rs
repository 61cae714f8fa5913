//! Deletion: finalizers hold objects, preconditions guard deletes, and pods bound to a node
//! are deleted gracefully unless forced.

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{configmap, configmaps, pod, TestServer};

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn a_finalizer_holds_an_object_until_it_is_removed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/held");
    let mut body = configmap("held");
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    admin.post(&collection, &body).await?.expect(StatusCode::CREATED)?;

    // --- delete marks the object and keeps it
    let reply = admin.delete(&path).await?.expect(StatusCode::ACCEPTED)?;
    assert!(reply.json.pointer("/metadata/deletionTimestamp").is_some_and(Value::is_string));
    let held = admin.get(&path).await?.expect(StatusCode::OK)?;
    let marked_at = held.json.pointer("/metadata/deletionTimestamp").cloned();
    assert!(marked_at.is_some(), "{}", held.json);
    assert_eq!(held.json.pointer("/metadata/finalizers"), Some(&json!(["example.com/hold"])));

    // --- a second delete changes nothing
    admin.delete(&path).await?;
    let again = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(again.json.pointer("/metadata/deletionTimestamp").cloned(), marked_at);

    // --- the deletion timestamp cannot be taken back by an update
    let mut revived = again.json.clone();
    if let Some(metadata) = revived["metadata"].as_object_mut() {
        metadata.remove("deletionTimestamp");
    }
    revived["data"]["key"] = json!("revived");
    let reply = admin.put(&path, &revived).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json.pointer("/metadata/deletionTimestamp").cloned(), marked_at);

    // --- removing the last finalizer completes the deletion
    let patch = json!({ "metadata": { "finalizers": null } });
    admin.patch(&path, "application/merge-patch+json", &patch).await?.expect(StatusCode::OK)?;
    assert_eq!(admin.get(&path).await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn delete_preconditions_must_match() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/guarded");
    let created =
        admin.post(&collection, &configmap("guarded")).await?.expect(StatusCode::CREATED)?;
    let uid = created.json.pointer("/metadata/uid").cloned().unwrap_or_default();
    let options = |preconditions: Value| json!({ "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions });

    // --- a wrong uid or resourceVersion is a conflict and deletes nothing
    let reply = admin.delete_with(&path, &options(json!({ "uid": "not-the-uid" }))).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    assert_eq!(reply.json["reason"], "Conflict");
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(message.contains("Precondition failed: UID in precondition: not-the-uid"), "{message}");
    let reply = admin.delete_with(&path, &options(json!({ "resourceVersion": "1" }))).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    admin.get(&path).await?.expect(StatusCode::OK)?;

    // --- the right ones delete
    let rv = created.json.pointer("/metadata/resourceVersion").cloned().unwrap_or_default();
    let reply =
        admin.delete_with(&path, &options(json!({ "uid": uid, "resourceVersion": rv }))).await?;
    reply.expect(StatusCode::OK)?;
    assert_eq!(admin.get(&path).await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_bound_pod_is_deleted_gracefully_unless_forced() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let path = format!("{PODS}/web");
    admin.post(PODS, &pod("web")).await?.expect(StatusCode::CREATED)?;

    // --- bind it to a node as the scheduler does
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": "web" },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "node-1" },
    });
    admin.post(&format!("{path}/binding"), &binding).await?.expect(StatusCode::CREATED)?;
    let bound = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(bound.json.pointer("/spec/nodeName"), Some(&json!("node-1")));
    let reply = admin.post(&format!("{path}/binding"), &binding).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT, "a pod is bound once: {}", reply.text());

    // --- a plain delete gives the pod its grace period
    let reply = admin.delete(&path).await?;
    assert!(reply.status.is_success(), "{}: {}", reply.status, reply.text());
    let terminating = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert!(
        terminating.json.pointer("/metadata/deletionTimestamp").is_some(),
        "{}",
        terminating.json
    );
    assert_eq!(
        terminating.json.pointer("/metadata/deletionGracePeriodSeconds"),
        Some(&json!(30)),
        "{}",
        terminating.json
    );

    // --- a forced delete removes it now
    admin.delete(&format!("{path}?gracePeriodSeconds=0")).await?.expect(StatusCode::OK)?;
    assert_eq!(admin.get(&path).await?.status, StatusCode::NOT_FOUND);

    // --- an unbound pod goes at once
    admin.post(PODS, &pod("pending")).await?.expect(StatusCode::CREATED)?;
    admin.delete(&format!("{PODS}/pending")).await?.expect(StatusCode::OK)?;
    assert_eq!(admin.get(&format!("{PODS}/pending")).await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}
