//! Bad requests: every one is answered with a Kubernetes `Status` and the right code, and
//! none leaves anything behind.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::{configmap, configmaps, deployment, item_names, Client, Reply, TestServer};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// Posts a raw body with a content type to the default namespace's ConfigMaps.
async fn post_raw(
    admin: &Client,
    content_type: &str,
    body: impl Into<bytes::Bytes>,
) -> anyhow::Result<Reply> {
    let headers = [("content-type", content_type)];
    admin.request(Method::POST, &configmaps("default"), &headers, body).await
}

/// Asserts that a reply is a failure `Status` with this code.
fn assert_status(reply: &Reply, code: StatusCode) {
    assert_eq!(reply.status, code, "{}", reply.text());
    assert_eq!(reply.json["kind"], "Status", "{}", reply.text());
    assert_eq!(reply.json["status"], "Failure", "{}", reply.text());
    assert_eq!(reply.json["code"], code.as_u16(), "{}", reply.text());
}

#[tokio::test]
async fn undecodable_bodies_are_refused_with_a_status() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    // --- malformed JSON
    let reply = post_raw(&admin, "application/json", r#"{"metadata": {"name": "x""#).await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json["reason"], "BadRequest");

    // --- a JSON array is not an object
    let reply = post_raw(&admin, "application/json", r#"[{"metadata": {"name": "x"}}]"#).await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);

    // --- malformed YAML
    let reply = post_raw(&admin, "application/yaml", "metadata: [name: x").await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);

    // --- a content type the server does not read
    let reply = post_raw(&admin, "text/plain", configmap("x").to_string()).await?;
    assert_status(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.json["reason"], "UnsupportedMediaType");

    // --- protobuf that is not a Kubernetes protobuf envelope
    let garbage: &'static [u8] = &[0xff, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef];
    let reply = post_raw(&admin, "application/vnd.kubernetes.protobuf", garbage).await?;
    assert!(
        matches!(reply.status, StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "{}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(reply.json["kind"], "Status", "{}", reply.text());

    // --- nothing was created, and the server still serves
    let list = admin.get(&configmaps("default")).await?.expect(StatusCode::OK)?;
    assert!(item_names(&list.json).is_empty(), "{}", list.json);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_body_over_three_mebibytes_is_too_large() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    let mut body = configmap("huge");
    body["data"]["key"] = json!("x".repeat(3 * 1024 * 1024 + 100));
    let reply = post_raw(&admin, "application/json", body.to_string()).await?;
    assert_status(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json["reason"], "RequestEntityTooLarge");

    let reply = admin.get(&format!("{}/huge", configmaps("default"))).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_name_is_unprocessable_with_the_field_named() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    let reply = admin.post(&configmaps("default"), &configmap("Not_A_Valid_Name")).await?;
    assert_status(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json["reason"], "Invalid");
    assert_eq!(reply.json.pointer("/details/causes/0/field"), Some(&json!("metadata.name")));
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(r#"ConfigMap "Not_A_Valid_Name" is invalid: metadata.name"#),
        "{message}"
    );

    // --- a deployment whose selector does not match its template is invalid too
    let mut mismatched = deployment("web", &[("app", "nginx:1")]);
    mismatched["spec"]["template"]["metadata"]["labels"] = json!({ "app": "other" });
    let reply = admin.post(DEPLOYMENTS, &mismatched).await?;
    assert_status(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.json.pointer("/details/causes/0/field"),
        Some(&json!("spec.template.metadata.labels"))
    );

    // --- neither failed create left an object behind
    assert!(item_names(&admin.get(&configmaps("default")).await?.json).is_empty());
    assert!(item_names(&admin.get(DEPLOYMENTS).await?.json).is_empty());

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_fields_fail_strict_validation_and_warn_when_asked() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let mut body = deployment("web", &[("app", "nginx:1")]);
    body["spec"]["replicaz"] = json!(3);

    // --- strict is the default
    let reply = admin.post(DEPLOYMENTS, &body).await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(message.contains(r#"unknown field "spec.replicaz""#), "{message}");
    assert_eq!(admin.get(&format!("{DEPLOYMENTS}/web")).await?.status, StatusCode::NOT_FOUND);
    let reply = admin.post(&format!("{DEPLOYMENTS}?fieldValidation=Strict"), &body).await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);

    // --- a field given twice is refused too (a decoded object could not tell)
    let twice = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"twice"},"data":{"a":"1"},"data":{"b":"2"}}"#;
    let reply = admin
        .request(
            Method::POST,
            &configmaps("default"),
            &[("content-type", "application/json")],
            twice,
        )
        .await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json["message"],
        r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: duplicate field "data""#
    );

    // --- an unsupported fieldValidation value is itself a bad request
    let reply = admin.post(&format!("{DEPLOYMENTS}?fieldValidation=Loose"), &body).await?;
    assert_status(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(admin.get(&format!("{DEPLOYMENTS}/web")).await?.status, StatusCode::NOT_FOUND);

    // --- Warn creates the object and says why in a Warning header
    let reply = admin.post(&format!("{DEPLOYMENTS}?fieldValidation=Warn"), &body).await?;
    let reply = reply.expect(StatusCode::CREATED)?;
    let warnings: Vec<&str> =
        reply.headers.get_all("warning").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(
        warnings.iter().any(|w| w.starts_with("299 ") && w.contains("spec.replicaz")),
        "{warnings:?}"
    );
    let stored = admin.get(&format!("{DEPLOYMENTS}/web")).await?.expect(StatusCode::OK)?;
    assert_eq!(stored.json.pointer("/spec/replicas"), Some(&json!(1)));
    assert_eq!(stored.json.pointer("/spec/replicaz"), None, "unknown fields are dropped");

    server.stop().await;
    Ok(())
}
