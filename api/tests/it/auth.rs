//! Authentication and authorization: certificates, bearer tokens, RBAC bindings and the
//! review endpoints behind `kubectl auth whoami` and `kubectl auth can-i`.

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{pod, TestServer, BOB_TOKEN};

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn requests_without_credentials_are_unauthorized_but_health_answers() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let anonymous = server.anonymous()?;

    // --- a resource request without a certificate or token
    let reply = anonymous.get(PODS).await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json["kind"], "Status");
    assert_eq!(reply.json["reason"], "Unauthorized");
    assert_eq!(reply.json["code"], 401);

    // --- an unknown bearer token is no better
    let stranger = server.bearer("not-a-token")?;
    assert_eq!(stranger.get(PODS).await?.status, StatusCode::UNAUTHORIZED);

    // --- health endpoints need no credentials
    assert_eq!(anonymous.get("/readyz").await?.status, StatusCode::OK);
    assert_eq!(anonymous.get("/livez").await?.status, StatusCode::OK);

    // --- the administrator's certificate works
    let admin = server.admin()?;
    let reply = admin.get(PODS).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["kind"], "PodList");

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_token_user_needs_a_role_binding() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let bob = server.bearer(BOB_TOKEN)?;

    // --- without bindings bob may not list pods
    let reply = bob.get(PODS).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json["reason"], "Forbidden");
    assert_eq!(
        reply.json["message"],
        r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#
    );

    // --- bind the view cluster role to bob in default
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "bob-view" },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "view",
        },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob" }],
    });
    admin
        .post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", &binding)
        .await?
        .expect(StatusCode::CREATED)?;

    // --- bob can now list pods in default, but not create them, nor list elsewhere
    let reply = bob.get(PODS).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["kind"], "PodList");
    let reply = bob.post(PODS, &pod("bobs-pod")).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json["message"],
        r#"pods is forbidden: User "bob" cannot create resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(admin.get(&format!("{PODS}/bobs-pod")).await?.status, StatusCode::NOT_FOUND);
    let reply = bob.get("/api/v1/namespaces/kube-system/pods").await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn reviews_answer_who_the_user_is_and_what_they_may_do() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let bob = server.bearer(BOB_TOKEN)?;

    // --- kubectl auth whoami
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" });
    let reply = bob
        .post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review)
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(reply.json["kind"], "SelfSubjectReview");
    assert_eq!(reply.json.pointer("/status/userInfo/username"), Some(&json!("bob")));
    assert_eq!(reply.json.pointer("/status/userInfo/uid"), Some(&json!("uid-bob")));
    let groups = reply.json.pointer("/status/userInfo/groups").cloned().unwrap_or_default();
    assert!(groups.as_array().is_some_and(|g| g.contains(&json!("system:authenticated"))));
    let reply = admin
        .post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review)
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(reply.json.pointer("/status/userInfo/username"), Some(&json!("admin")));

    // --- kubectl auth can-i
    let can_i = |verb: &str| {
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": { "verb": verb, "resource": "pods", "namespace": "default" },
            },
        })
    };
    let allowed = |reply: &crate::support::Reply| reply.json.pointer("/status/allowed").cloned();
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let reply = bob.post(path, &can_i("list")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(allowed(&reply), Some(Value::Bool(false)));

    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "bob-view" },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "view",
        },
        "subjects": [{ "kind": "User", "name": "bob" }],
    });
    admin
        .post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", &binding)
        .await?
        .expect(StatusCode::CREATED)?;
    let reply = bob.post(path, &can_i("list")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(allowed(&reply), Some(Value::Bool(true)));
    let reply = bob.post(path, &can_i("create")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(allowed(&reply), Some(Value::Bool(false)));
    let reply = admin.post(path, &can_i("create")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(allowed(&reply), Some(Value::Bool(true)));

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn certificates_name_the_user_and_groups_and_must_come_from_the_cluster_ca(
) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    // --- a certificate from the cluster CA names a user and groups, without rights
    let carol = server.certificate_user("carol", &["devs"])?;
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" });
    let reply = carol
        .post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review)
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(reply.json.pointer("/status/userInfo/username"), Some(&json!("carol")));
    let groups = reply.json.pointer("/status/userInfo/groups").cloned().unwrap_or_default();
    assert_eq!(groups, json!(["devs", "system:authenticated"]));
    let reply = carol.get("/api/v1/namespaces/default/configmaps").await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json["message"],
        r#"configmaps is forbidden: User "carol" cannot list resource "configmaps" in API group "" in the namespace "default""#
    );

    // --- a cluster role binding to her group lets her edit everywhere
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": "devs-edit" },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "edit",
        },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs" }],
    });
    admin
        .post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", &binding)
        .await?
        .expect(StatusCode::CREATED)?;
    let configmap = crate::support::configmap("carols");
    carol
        .post("/api/v1/namespaces/kube-public/configmaps", &configmap)
        .await?
        .expect(StatusCode::CREATED)?;
    carol.get("/api/v1/configmaps").await?.expect(StatusCode::OK)?;
    let reply = carol.get("/api/v1/nodes").await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "edit does not reach nodes");
    assert_eq!(
        reply.json["message"],
        r#"nodes is forbidden: User "carol" cannot list resource "nodes" in API group "" at the cluster scope"#
    );

    // --- a certificate from another CA gets nowhere, whatever it claims
    let impostor = server.impostor()?;
    match impostor.get(PODS).await {
        Err(_) => {}
        Ok(reply) => assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text()),
    }

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn nobody_grants_more_than_they_hold() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let bob = server.bearer(BOB_TOKEN)?;
    crate::support::create_namespace(&admin, "team").await?;
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings";
    let binding = |name: &str, role: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": [{ "kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io" }],
        })
    };

    // --- bob administers namespace team
    admin
        .post(bindings, &binding("bob-admin", "admin"))
        .await?
        .expect(http::StatusCode::CREATED)?;

    // --- he may bind what he holds, but not cluster-admin, nor write a role with more
    bob.post(bindings, &binding("bob-edit", "edit")).await?.expect(StatusCode::CREATED)?;
    let reply = bob.post(bindings, &binding("bob-root", "cluster-admin")).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let message = reply.json["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            r#"rolebindings.rbac.authorization.k8s.io "bob-root" is forbidden: user "bob""#
        ) && message.contains("is attempting to grant RBAC permissions not currently held"),
        "{message}"
    );
    let everything = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": "everything" },
        "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }],
    });
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles";
    assert_eq!(bob.post(roles, &everything).await?.status, StatusCode::FORBIDDEN);
    let modest = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": "reader" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
    });
    bob.post(roles, &modest).await?.expect(StatusCode::CREATED)?;

    // --- nothing he was refused exists
    assert_eq!(admin.get(&format!("{bindings}/bob-root")).await?.status, StatusCode::NOT_FOUND);
    assert_eq!(admin.get(&format!("{roles}/everything")).await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}
