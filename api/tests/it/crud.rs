//! Create, read, update and delete as kubectl sees them: metadata the server fills in,
//! optimistic concurrency, namespaces that refuse content, generations, the status
//! subresource, dry runs and YAML bodies.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    configmap, configmaps, create_namespace, deployment, item_names, wait_until, TestServer,
};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn a_configmap_is_created_read_listed_and_replaced() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/settings");

    // --- create fills in identity and bookkeeping
    let created = admin.post(&collection, &configmap("settings")).await?;
    let created = created.expect(StatusCode::CREATED)?;
    let uid = created.json.pointer("/metadata/uid").and_then(|v| v.as_str()).unwrap_or("");
    assert!(!uid.is_empty(), "{}", created.json);
    assert!(created.json.pointer("/metadata/creationTimestamp").is_some_and(|t| t.is_string()));
    assert_eq!(created.json.pointer("/metadata/namespace"), Some(&json!("default")));
    let first_rv = created.resource_version();
    assert!(first_rv > 0, "{}", created.json);

    // --- get returns the same object
    let got = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(got.json.pointer("/metadata/uid"), Some(&json!(uid)));
    assert_eq!(got.resource_version(), first_rv);
    assert_eq!(got.json["data"]["key"], "value");

    // --- a list is at least as new as the object
    let list = admin.get(&collection).await?.expect(StatusCode::OK)?;
    assert_eq!(list.json["kind"], "ConfigMapList");
    assert_eq!(item_names(&list.json), ["settings"]);
    assert!(list.resource_version() >= first_rv, "{}", list.json);

    // --- an update with the current resourceVersion succeeds and moves it forward
    let mut changed = got.json.clone();
    changed["data"]["key"] = json!("second");
    let updated = admin.put(&path, &changed).await?.expect(StatusCode::OK)?;
    let second_rv = updated.resource_version();
    assert!(second_rv > first_rv, "{second_rv} <= {first_rv}");
    assert_eq!(updated.json["data"]["key"], "second");
    assert_eq!(updated.json.pointer("/metadata/uid"), Some(&json!(uid)));

    // --- an update carrying the old resourceVersion is a conflict, and changes nothing
    let mut stale = got.json.clone();
    stale["data"]["key"] = json!("stale");
    let reply = admin.put(&path, &stale).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.json["reason"], "Conflict");
    assert_eq!(
        reply.json["message"],
        "Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    let got = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(got.json["data"]["key"], "second");
    assert_eq!(got.resource_version(), second_rv);

    // --- a second create of the same name already exists
    let reply = admin.post(&collection, &configmap("settings")).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.json["reason"], "AlreadyExists");
    assert_eq!(reply.json["message"], r#"configmaps "settings" already exists"#);

    // --- delete removes it
    admin.delete(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(admin.get(&path).await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn generate_name_gives_unique_names() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let body = json!({ "metadata": { "generateName": "gen-" }, "data": { "a": "b" } });

    let first = admin.post(&collection, &body).await?.expect(StatusCode::CREATED)?;
    let second = admin.post(&collection, &body).await?.expect(StatusCode::CREATED)?;
    let name = |reply: &crate::support::Reply| {
        reply.json.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("").to_string()
    };
    let (first, second) = (name(&first), name(&second));
    assert!(first.starts_with("gen-") && first.len() > "gen-".len(), "{first}");
    assert!(second.starts_with("gen-") && second != first, "{first} {second}");
    admin.get(&format!("{collection}/{first}")).await?.expect(StatusCode::OK)?;

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn namespaces_that_are_missing_or_terminating_refuse_content() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    // --- a namespace that does not exist
    let reply = admin.post(&configmaps("nope"), &configmap("c")).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json["reason"], "NotFound");
    assert_eq!(reply.json["message"], r#"namespaces "nope" not found"#);

    // --- a namespace being deleted stays Terminating while content it holds is going away
    create_namespace(&admin, "doomed").await?;
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    admin.post(&configmaps("doomed"), &held).await?.expect(StatusCode::CREATED)?;
    let reply = admin.delete("/api/v1/namespaces/doomed").await?;
    assert!(reply.status.is_success(), "{}: {}", reply.status, reply.text());
    let namespace = admin.get("/api/v1/namespaces/doomed").await?.expect(StatusCode::OK)?;
    assert_eq!(namespace.json.pointer("/status/phase"), Some(&json!("Terminating")));
    assert!(namespace.json.pointer("/metadata/deletionTimestamp").is_some());

    // --- and refuses new content
    let reply = admin.post(&configmaps("doomed"), &configmap("after")).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json["reason"], "Forbidden");
    assert_eq!(
        reply.json["message"],
        "unable to create new content in namespace doomed because it is being terminated"
    );

    // --- its content is deleted, and the namespace waits for the finalizer
    let held_path = format!("{}/held", configmaps("doomed"));
    wait_until("the namespace's content is being deleted", || async {
        let held = admin.get(&held_path).await?.expect(StatusCode::OK)?;
        Ok(held.json.pointer("/metadata/deletionTimestamp").is_some())
    })
    .await?;
    let list = admin.get(&configmaps("doomed")).await?.expect(StatusCode::OK)?;
    assert_eq!(item_names(&list.json), ["held"]);
    admin.get("/api/v1/namespaces/doomed").await?.expect(StatusCode::OK)?;

    // --- once the finalizer is removed the namespace goes away
    let release = json!({ "metadata": { "finalizers": null } });
    admin
        .patch(&held_path, "application/merge-patch+json", &release)
        .await?
        .expect(StatusCode::OK)?;
    wait_until("the namespace is gone", || async {
        Ok(admin.get("/api/v1/namespaces/doomed").await?.status == StatusCode::NOT_FOUND)
    })
    .await?;

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn generation_counts_spec_changes_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let path = format!("{DEPLOYMENTS}/web");

    let created = admin.post(DEPLOYMENTS, &deployment("web", &[("app", "nginx:1")])).await?;
    let created = created.expect(StatusCode::CREATED)?;
    assert_eq!(created.json.pointer("/metadata/generation"), Some(&json!(1)));

    // --- a label change keeps the generation
    let mut relabeled = created.json.clone();
    relabeled["metadata"]["labels"]["tier"] = json!("frontend");
    let reply = admin.put(&path, &relabeled).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json.pointer("/metadata/labels/tier"), Some(&json!("frontend")));
    assert_eq!(reply.json.pointer("/metadata/generation"), Some(&json!(1)));

    // --- a replicas change bumps it
    let mut scaled = reply.json.clone();
    scaled["spec"]["replicas"] = json!(3);
    let reply = admin.put(&path, &scaled).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json.pointer("/spec/replicas"), Some(&json!(3)));
    assert_eq!(reply.json.pointer("/metadata/generation"), Some(&json!(2)));

    // --- a client cannot set the generation itself
    let mut forged = reply.json.clone();
    forged["metadata"]["generation"] = json!(40);
    forged["metadata"]["labels"]["forged"] = json!("yes");
    let reply = admin.put(&path, &forged).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json.pointer("/metadata/generation"), Some(&json!(2)));

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_status_subresource_changes_only_status() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let path = format!("{DEPLOYMENTS}/web");
    let created = admin.post(DEPLOYMENTS, &deployment("web", &[("app", "nginx:1")])).await?;
    let created = created.expect(StatusCode::CREATED)?;

    // --- a status write that also tries to change spec and labels
    let mut body = created.json.clone();
    body["status"] = json!({ "replicas": 1, "readyReplicas": 1, "observedGeneration": 1 });
    body["spec"]["replicas"] = json!(9);
    body["metadata"]["labels"]["sneaky"] = json!("yes");
    let reply = admin.put(&format!("{path}/status"), &body).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json.pointer("/status/readyReplicas"), Some(&json!(1)));

    let stored = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(stored.json.pointer("/status/readyReplicas"), Some(&json!(1)));
    assert_eq!(stored.json.pointer("/spec/replicas"), Some(&json!(1)));
    assert_eq!(stored.json.pointer("/metadata/labels/sneaky"), None);
    assert_eq!(stored.json.pointer("/metadata/generation"), Some(&json!(1)));
    assert!(stored.resource_version() > created.resource_version());

    // --- and a main write cannot change status
    let mut body = stored.json.clone();
    body["status"]["readyReplicas"] = json!(7);
    body["spec"]["replicas"] = json!(2);
    let reply = admin.put(&path, &body).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json.pointer("/status/readyReplicas"), Some(&json!(1)));
    assert_eq!(reply.json.pointer("/spec/replicas"), Some(&json!(2)));

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn dry_run_persists_nothing() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/dry");

    // --- a dry-run create answers the object but stores nothing
    let reply = admin.post(&format!("{collection}?dryRun=All"), &configmap("dry")).await?;
    let reply = reply.expect(StatusCode::CREATED)?;
    assert_eq!(reply.json.pointer("/metadata/name"), Some(&json!("dry")));
    assert_eq!(admin.get(&path).await?.status, StatusCode::NOT_FOUND);

    // --- dry-run updates and deletes leave the stored object as it was
    let created = admin.post(&collection, &configmap("dry")).await?.expect(StatusCode::CREATED)?;
    let mut changed = created.json.clone();
    changed["data"]["key"] = json!("changed");
    let reply = admin.put(&format!("{path}?dryRun=All"), &changed).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["data"]["key"], "changed");
    admin.delete(&format!("{path}?dryRun=All")).await?.expect(StatusCode::OK)?;
    let stored = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(stored.json["data"]["key"], "value");
    assert_eq!(stored.resource_version(), created.resource_version());

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn yaml_bodies_are_accepted_and_yaml_is_served() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");

    let yaml =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  greeting: hello\n";
    let headers = [("content-type", "application/yaml")];
    admin.request(Method::POST, &collection, &headers, yaml).await?.expect(StatusCode::CREATED)?;
    let got = admin.get(&format!("{collection}/from-yaml")).await?.expect(StatusCode::OK)?;
    assert_eq!(got.json["data"]["greeting"], "hello");

    let reply = admin.get_as(&format!("{collection}/from-yaml"), "application/yaml").await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(
        reply.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/yaml")
    );
    assert!(reply.text().contains("greeting: hello"), "{}", reply.text());

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_body_naming_another_object_than_the_url_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let created = admin.post(&collection, &configmap("a")).await?.expect(StatusCode::CREATED)?;
    admin.post(&collection, &configmap("b")).await?.expect(StatusCode::CREATED)?;

    let mut renamed = created.json.clone();
    renamed["metadata"]["name"] = json!("b");
    renamed["data"]["key"] = json!("changed");
    let reply = admin.put(&format!("{collection}/a"), &renamed).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json["kind"], "Status");
    for name in ["a", "b"] {
        let stored = admin.get(&format!("{collection}/{name}")).await?.expect(StatusCode::OK)?;
        assert_eq!(stored.json["data"]["key"], "value");
    }

    // --- a body in another namespace than the URL's is refused too
    let mut moved = configmap("c");
    moved["metadata"]["namespace"] = json!("kube-system");
    let reply = admin.post(&collection, &moved).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(admin.get(&format!("{collection}/c")).await?.status, StatusCode::NOT_FOUND);
    let elsewhere = admin.get(&format!("{}/c", configmaps("kube-system"))).await?;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn concurrent_writers_with_the_same_resource_version_have_one_winner() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let path = format!("{collection}/contended");
    let created =
        admin.post(&collection, &configmap("contended")).await?.expect(StatusCode::CREATED)?;

    // --- eight writers read the same version and race
    let writers = (0..8).map(|writer| {
        let admin = admin.clone();
        let path = path.clone();
        let mut body = created.json.clone();
        body["data"]["key"] = json!(format!("writer-{writer}"));
        tokio::spawn(async move { admin.put(&path, &body).await })
    });
    let mut winners = Vec::new();
    for (writer, handle) in writers.enumerate() {
        let reply = handle.await??;
        match reply.status {
            StatusCode::OK => winners.push(writer),
            StatusCode::CONFLICT => assert_eq!(reply.json["reason"], "Conflict"),
            other => anyhow::bail!("writer {writer} got {other}: {}", reply.text()),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = admin.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(stored.json["data"]["key"], format!("writer-{}", winners[0]));

    // --- the same race on create: one object, the others AlreadyExists
    let creators = (0..8).map(|_| {
        let admin = admin.clone();
        let collection = collection.clone();
        tokio::spawn(async move { admin.post(&collection, &configmap("raced")).await })
    });
    let mut created = 0;
    for handle in creators {
        let reply = handle.await??;
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert_eq!(reply.json["reason"], "AlreadyExists"),
            other => anyhow::bail!("a create got {other}: {}", reply.text()),
        }
    }
    assert_eq!(created, 1);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn system_namespaces_cannot_be_deleted() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    for name in ["default", "kube-system", "kube-public"] {
        let reply = admin.delete(&format!("/api/v1/namespaces/{name}")).await?;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{name}: {}", reply.text());
        assert_eq!(
            reply.json["message"],
            format!(r#"namespaces "{name}" is forbidden: this namespace may not be deleted"#)
        );
        let namespace =
            admin.get(&format!("/api/v1/namespaces/{name}")).await?.expect(StatusCode::OK)?;
        assert_eq!(namespace.json.pointer("/status/phase"), Some(&json!("Active")));
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_list_at_a_future_resource_version_times_out() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let reply = admin.get("/api/v1/namespaces/default/configmaps?resourceVersion=999999&resourceVersionMatch=Exact").await?;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    let message = reply.json["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Timeout: Too large resource version: 999999, current: "),
        "{message}"
    );
    server.stop().await;
    Ok(())
}
