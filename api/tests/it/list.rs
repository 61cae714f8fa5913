//! Lists: pages with `limit` and `continue`, label selectors in set-based syntax, and field
//! selectors.

use std::collections::BTreeSet;

use http::StatusCode;
use serde_json::json;

use crate::support::{configmap, configmaps, encode, item_names, TestServer};

#[tokio::test]
async fn pages_cover_every_object_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let mut created = BTreeSet::new();
    for index in 0..25 {
        let name = format!("cm-{index:02}");
        admin.post(&collection, &configmap(&name)).await?.expect(StatusCode::CREATED)?;
        created.insert(name);
    }

    // --- the first page says how many remain
    let first = admin.get(&format!("{collection}?limit=10")).await?.expect(StatusCode::OK)?;
    assert_eq!(item_names(&first.json).len(), 10);
    assert_eq!(first.json.pointer("/metadata/remainingItemCount"), Some(&json!(15)));

    // --- following continue tokens visits everything exactly once
    let mut seen = item_names(&first.json);
    let mut token =
        first.json.pointer("/metadata/continue").and_then(|t| t.as_str()).map(str::to_string);
    let mut pages = 1;
    while let Some(current) = token {
        let path = format!("{collection}?limit=10&continue={}", encode(&current));
        let page = admin.get(&path).await?.expect(StatusCode::OK)?;
        let names = item_names(&page.json);
        assert!(names.len() <= 10, "{names:?}");
        if pages == 1 {
            assert_eq!(page.json.pointer("/metadata/remainingItemCount"), Some(&json!(5)));
        }
        seen.extend(names);
        pages += 1;
        assert!(pages <= 3, "more pages than 25 objects need");
        token = page
            .json
            .pointer("/metadata/continue")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), created);

    // --- a continue token that is not one is a bad request
    let reply = admin.get(&format!("{collection}?limit=10&continue=bm90LWEtdG9rZW4")).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json["kind"], "Status");

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn label_selectors_use_set_based_syntax() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    let labeled = [
        ("alpha", json!({ "env": "a" })),
        ("beta", json!({ "env": "b" })),
        ("gamma", json!({ "env": "c" })),
        ("delta", json!({ "env": "a", "gone": "yes" })),
        ("epsilon", json!({})),
    ];
    for (name, labels) in labeled {
        let mut body = configmap(name);
        body["metadata"]["labels"] = labels;
        admin.post(&collection, &body).await?.expect(StatusCode::CREATED)?;
    }
    let select = |selector: &str| format!("{collection}?labelSelector={}", encode(selector));
    let names =
        |reply: crate::support::Reply| item_names(&reply.json).into_iter().collect::<BTreeSet<_>>();
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();

    let reply = admin.get(&select("env in (a,b),!gone")).await?.expect(StatusCode::OK)?;
    assert_eq!(names(reply), set(&["alpha", "beta"]));
    let reply = admin.get(&select("env notin (a)")).await?.expect(StatusCode::OK)?;
    assert_eq!(names(reply), set(&["beta", "gamma", "epsilon"]));
    let reply = admin.get(&select("env=a")).await?.expect(StatusCode::OK)?;
    assert_eq!(names(reply), set(&["alpha", "delta"]));
    let reply = admin.get(&select("gone")).await?.expect(StatusCode::OK)?;
    assert_eq!(names(reply), set(&["delta"]));

    // --- a selector that does not parse is a bad request
    let reply = admin.get(&select("env in (a")).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json["kind"], "Status");

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn field_selectors_select_by_name_and_refuse_unsupported_fields() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let collection = configmaps("default");
    for name in ["x", "y", "z"] {
        admin.post(&collection, &configmap(name)).await?.expect(StatusCode::CREATED)?;
    }

    let reply = admin.get(&format!("{collection}?fieldSelector=metadata.name%3Dx")).await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(item_names(&reply.json), ["x"]);
    let reply = admin.get(&format!("{collection}?fieldSelector=metadata.name!%3Dx")).await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(item_names(&reply.json), ["y", "z"]);

    // --- across namespaces, by namespace
    let reply = admin.get("/api/v1/configmaps?fieldSelector=metadata.namespace%3Ddefault").await?;
    let reply = reply.expect(StatusCode::OK)?;
    assert_eq!(item_names(&reply.json), ["x", "y", "z"]);

    // --- a field ConfigMaps cannot be selected by
    let reply = admin.get(&format!("{collection}?fieldSelector=spec.foo%3Dbar")).await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json["reason"], "BadRequest");
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(message.contains(r#""spec.foo" is not a known field selector"#), "{message}");

    // --- pods have their own field labels, and refuse others
    let reply =
        admin.get("/api/v1/namespaces/default/pods?fieldSelector=spec.nodeName%3Dnode-1").await?;
    reply.expect(StatusCode::OK)?;
    let reply = admin.get("/api/v1/namespaces/default/pods?fieldSelector=spec.foo%3Dbar").await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(message.ends_with("field label not supported: spec.foo"), "{message}");

    server.stop().await;
    Ok(())
}
