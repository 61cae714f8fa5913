//! Service accounts end to end: TokenRequest (`kubectl create token`), authentication with
//! the token it returns, bound tokens, the issuer discovery documents and the
//! ServiceAccount admission of pods.

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{pod, Client, TestServer, BOB_TOKEN};

const ACCOUNTS: &str = "/api/v1/namespaces/default/serviceaccounts";
const PODS: &str = "/api/v1/namespaces/default/pods";

async fn create_account(admin: &Client, name: &str, extra: Value) -> anyhow::Result<Value> {
    let mut account =
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name } });
    if let (Some(account), Some(extra)) = (account.as_object_mut(), extra.as_object()) {
        account.extend(extra.clone());
    }
    Ok(admin.post(ACCOUNTS, &account).await?.expect(StatusCode::CREATED)?.json)
}

fn token_request(spec: Value) -> Value {
    json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec })
}

async fn request_token(admin: &Client, account: &str, spec: Value) -> anyhow::Result<String> {
    let reply = admin
        .post(&format!("{ACCOUNTS}/{account}/token"), &token_request(spec))
        .await?
        .expect(StatusCode::CREATED)?;
    Ok(reply.json.pointer("/status/token").and_then(Value::as_str).unwrap_or("").to_string())
}

async fn whoami(client: &Client) -> anyhow::Result<crate::support::Reply> {
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" });
    client.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review).await
}

#[tokio::test]
async fn a_requested_token_authenticates_as_its_service_account() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let robot = create_account(&admin, "robot", json!({})).await?;

    eprintln!("--- request a token as kubectl create token does");
    let reply = admin
        .post(&format!("{ACCOUNTS}/robot/token"), &token_request(json!({})))
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(reply.json["kind"], "TokenRequest");
    assert_eq!(reply.json["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        reply.json["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert!(reply.json.pointer("/status/expirationTimestamp").and_then(Value::as_str).is_some());
    let token = reply.json["status"]["token"].as_str().unwrap_or("").to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    eprintln!("--- the token is the account: discovery works, RBAC decides the rest");
    let client = server.bearer(&token)?;
    client.get("/api").await?.expect(StatusCode::OK)?;
    let reply = client.get(PODS).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json["message"],
        r#"pods is forbidden: User "system:serviceaccount:default:robot" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let me = whoami(&client).await?.expect(StatusCode::CREATED)?;
    let info = &me.json["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:robot");
    assert_eq!(info["uid"], robot["metadata"]["uid"]);
    assert_eq!(
        info["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"])
    );
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "robot-view" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
        "subjects": [{ "kind": "ServiceAccount", "name": "robot", "namespace": "default" }],
    });
    admin
        .post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", &binding)
        .await?
        .expect(StatusCode::CREATED)?;
    client.get(PODS).await?.expect(StatusCode::OK)?;

    eprintln!("--- a token for another audience is no API credential, but reviews as one");
    let vault = request_token(&admin, "robot", json!({ "audiences": ["vault"] })).await?;
    assert_eq!(server.bearer(&vault)?.get("/api").await?.status, StatusCode::UNAUTHORIZED);
    let review = |token: &str, audiences: Value| {
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": { "token": token, "audiences": audiences } })
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let reply = admin.post(path, &review(&vault, json!(["vault"]))).await?;
    assert_eq!(reply.json["status"]["authenticated"], true, "{}", reply.text());
    assert_eq!(reply.json["status"]["audiences"], json!(["vault"]));
    let reply = admin.post(path, &review(&vault, json!([]))).await?;
    assert_eq!(reply.json["status"]["authenticated"], false);

    eprintln!("--- the token dies with its account, and stays dead for a namesake");
    admin.delete(&format!("{ACCOUNTS}/robot")).await?.expect(StatusCode::OK)?;
    assert_eq!(client.get("/api").await?.status, StatusCode::UNAUTHORIZED);
    create_account(&admin, "robot", json!({})).await?;
    assert_eq!(client.get("/api").await?.status, StatusCode::UNAUTHORIZED);

    eprintln!("--- requests kube-apiserver refuses");
    let reply = admin.post(&format!("{ACCOUNTS}/nobody/token"), &token_request(json!({}))).await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json["message"], r#"serviceaccounts "nobody" not found"#);
    let short = token_request(json!({ "expirationSeconds": 60 }));
    let reply = admin.post(&format!("{ACCOUNTS}/robot/token"), &short).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.json["message"],
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_pod_bound_token_lives_as_long_as_its_pod() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    create_account(&admin, "default", json!({})).await?;
    let created = admin.post(PODS, &pod("web")).await?.expect(StatusCode::CREATED)?;
    let uid = created.json["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let bound = |uid: &str| json!({ "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": "web", "uid": uid } });

    eprintln!("--- a token bound to the pod names it");
    let token = request_token(&admin, "default", bound(&uid)).await?;
    let client = server.bearer(&token)?;
    let me = whoami(&client).await?.expect(StatusCode::CREATED)?;
    let extra = &me.json["status"]["userInfo"]["extra"];
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], json!(["web"]));
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"], json!([uid]));

    eprintln!("--- a stale uid is a conflict");
    let reply =
        admin.post(&format!("{ACCOUNTS}/default/token"), &token_request(bound("other"))).await?;
    assert_eq!(reply.status, StatusCode::CONFLICT);

    eprintln!("--- a node may only ask for tokens of pods it runs");
    let node = server.certificate_user("system:node:n1", &["system:nodes"])?;
    let reply = node.post(&format!("{ACCOUNTS}/default/token"), &token_request(json!({}))).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json["message"],
        r#"serviceaccounts "default" is forbidden: node requested token not bound to a pod"#
    );
    let reply =
        node.post(&format!("{ACCOUNTS}/default/token"), &token_request(bound(&uid))).await?;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "the pod is not on n1");

    eprintln!("--- the token dies with the pod");
    admin.delete(&format!("{PODS}/web")).await?;
    assert_eq!(client.get("/api").await?.status, StatusCode::UNAUTHORIZED);

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn new_pods_get_api_access_unless_turned_off() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    eprintln!("--- a pod in a namespace whose default account is not there yet is admitted");
    let created = admin.post(PODS, &pod("web")).await?.expect(StatusCode::CREATED)?;
    let spec = &created.json["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let volume = spec["volumes"][0]["name"].as_str().unwrap_or("").to_string();
    assert!(volume.starts_with("kube-api-access-") && volume.len() == 21, "{volume}");
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{ "name": volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }])
    );

    eprintln!("--- an update sends the admitted spec back unchanged");
    let mut updated = created.json.clone();
    updated["metadata"]["labels"] = json!({ "tier": "web" });
    let reply = admin.put(&format!("{PODS}/web"), &updated).await?.expect(StatusCode::OK)?;
    assert_eq!(reply.json["spec"]["volumes"], created.json["spec"]["volumes"]);

    eprintln!("--- an account that turns automount off");
    create_account(&admin, "quiet", json!({ "automountServiceAccountToken": false })).await?;
    let mut quiet = pod("quiet");
    quiet["spec"]["serviceAccountName"] = json!("quiet");
    let created = admin.post(PODS, &quiet).await?.expect(StatusCode::CREATED)?;
    assert!(created.json["spec"].get("volumes").is_none(), "{}", created.text());
    quiet["metadata"]["name"] = json!("loud");
    quiet["spec"]["automountServiceAccountToken"] = json!(true);
    let created = admin.post(PODS, &quiet).await?.expect(StatusCode::CREATED)?;
    assert_eq!(created.json["spec"]["volumes"].as_array().map(Vec::len), Some(1));

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn service_accounts_may_read_the_issuer_documents() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    create_account(&admin, "default", json!({})).await?;
    let token = request_token(&admin, "default", json!({})).await?;
    let client = server.bearer(&token)?;

    let configuration = client.get("/.well-known/openid-configuration").await?;
    let configuration = configuration.expect(StatusCode::OK)?;
    assert_eq!(configuration.json["issuer"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(configuration.json["jwks_uri"], "https://127.0.0.1:6443/openid/v1/jwks");
    let keys = client.get("/openid/v1/jwks").await?.expect(StatusCode::OK)?;
    let kid = keys.json["keys"][0]["kid"].as_str().unwrap_or("");
    let header = token.split('.').next().unwrap_or("");
    assert!(!kid.is_empty());
    assert!(crate::support::decode_base64url(header)?.contains(kid), "the token names the key");

    // As in Kubernetes, other users need a binding to read them.
    let bob = server.bearer(BOB_TOKEN)?;
    assert_eq!(bob.get("/openid/v1/jwks").await?.status, StatusCode::FORBIDDEN);

    server.stop().await;
    Ok(())
}
