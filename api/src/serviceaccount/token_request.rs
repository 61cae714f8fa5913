//! The TokenRequest subresource (`POST …/serviceaccounts/{name}/token`, `kubectl create
//! token`): checks the request as kube-apiserver does, looks up the ServiceAccount and the
//! object the token is to be bound to, and answers with a signed token. Nothing is stored.

use flotilla_store::KvStore;
use serde_json::{json, Value};

use super::jwt::{self, Audiences, Claims, KubernetesClaims, ObjectRef};
use super::Issuer;
use crate::auth::User;
use crate::error::{ApiError, GroupResource};
use crate::handler::Api;
use crate::meta;
use crate::registry::{Registry, Target};
use crate::validation::FieldError;

/// A token's lifetime unless the request says otherwise.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a token may be asked for (ten minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (2^32 seconds).
const MAX_EXPIRATION_SECONDS: i64 = u32::MAX as i64;

/// What a token may be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundKind {
    Pod,
    Secret,
    Node,
}

impl BoundKind {
    fn plural(self) -> &'static str {
        match self {
            BoundKind::Pod => "pods",
            BoundKind::Secret => "secrets",
            BoundKind::Node => "nodes",
        }
    }

    fn name(self) -> &'static str {
        match self {
            BoundKind::Pod => "Pod",
            BoundKind::Secret => "Secret",
            BoundKind::Node => "Node",
        }
    }
}

/// `spec.boundObjectRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundRef {
    pub kind: BoundKind,
    pub name: String,
    pub uid: String,
}

/// A TokenRequest's spec with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundRef>,
}

/// The objects a token names besides its ServiceAccount, as found in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
}

fn invalid(name: &str, causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: name.into(),
        causes,
    }
}

/// Refuses a body whose `metadata.name` or `metadata.namespace` differ from the path's.
pub fn check_identity(body: &Value, namespace: &str, name: &str) -> Result<(), ApiError> {
    let field = |key: &str| meta::str_field(body, &["metadata", key]).filter(|v| !v.is_empty());
    if let Some(given) = field("name").filter(|given| *given != name) {
        let cause = FieldError::invalid(
            "metadata.name",
            given,
            "must match the service account name if specified",
        );
        return Err(invalid(name, vec![cause]));
    }
    if let Some(given) = field("namespace").filter(|given| *given != namespace) {
        let cause = FieldError::invalid(
            "metadata.namespace",
            given,
            "must match the service account namespace if specified",
        );
        return Err(invalid(name, vec![cause]));
    }
    Ok(())
}

/// Reads and validates `spec`: audiences default to the server's, the lifetime to an hour
/// and must lie between ten minutes and 2^32 seconds.
pub fn parse_spec(body: &Value, default_audiences: &[String]) -> Result<TokenSpec, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::BadRequest("spec.audiences must be strings".into()))?,
        Some(_) => return Err(ApiError::BadRequest("spec.audiences must be a list".into())),
    };
    let audiences = if audiences.is_empty() { default_audiences.to_vec() } else { audiences };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(value) => value.as_i64().ok_or_else(|| {
            ApiError::BadRequest("spec.expirationSeconds must be an integer".into())
        })?,
    };
    let mut causes = Vec::new();
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        causes.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration_seconds,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        causes.push(FieldError::too_long(
            "spec.expirationSeconds",
            Some(MAX_EXPIRATION_SECONDS as usize),
        ));
    }
    if !causes.is_empty() {
        return Err(invalid("", causes));
    }
    let bound = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(reference) => Some(bound_ref(reference)?),
    };
    Ok(TokenSpec { audiences, expiration_seconds, bound })
}

fn bound_ref(reference: &Value) -> Result<BoundRef, ApiError> {
    let text = |key: &str| reference.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
    let kind = match (group, kind.as_str()) {
        ("", "Pod") => BoundKind::Pod,
        ("", "Secret") => BoundKind::Secret,
        ("", "Node") => BoundKind::Node,
        _ => {
            let version = api_version.rsplit('/').next().unwrap_or("");
            return Err(ApiError::BadRequest(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    let name = text("name");
    if name.is_empty() {
        return Err(ApiError::BadRequest("resource name may not be empty".into()));
    }
    Ok(BoundRef { kind, name, uid: text("uid") })
}

/// Kubernetes' NodeRestriction for token requests: a node may only ask for tokens bound to
/// a pod (named with its uid) that runs on it. `pod` is the bound pod as stored.
pub fn node_restriction(
    user: &User,
    account: &str,
    spec: &TokenSpec,
    pod: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(node) = user.name.strip_prefix("system:node:") else { return Ok(()) };
    if !user.groups.iter().any(|group| group == "system:nodes") {
        return Ok(());
    }
    let forbidden = |reason: &str| {
        ApiError::Forbidden(format!("serviceaccounts \"{account}\" is forbidden: {reason}"))
    };
    let Some(bound) = spec.bound.as_ref().filter(|bound| bound.kind == BoundKind::Pod) else {
        return Err(forbidden("node requested token not bound to a pod"));
    };
    if bound.uid.is_empty() {
        return Err(forbidden("node requested token with a pod binding without a uid"));
    }
    let scheduled = pod.and_then(|pod| meta::str_field(pod, &["spec", "nodeName"]));
    if scheduled != Some(node) {
        return Err(forbidden("node requested token bound to a pod scheduled on a different node"));
    }
    Ok(())
}

/// The claims of a new token for `account` (the ServiceAccount as stored), valid from `now`
/// (Unix seconds) for the spec's lifetime.
pub fn claims(
    issuer: &str,
    account: &Value,
    spec: &TokenSpec,
    bindings: Bindings,
    now: i64,
    jti: String,
) -> Claims {
    let namespace = meta::namespace(account).unwrap_or("").to_string();
    let name = meta::name(account).to_string();
    let uid = meta::str_field(account, &["metadata", "uid"]).unwrap_or("").to_string();
    Claims {
        aud: Audiences(spec.audiences.clone()),
        exp: now + spec.expiration_seconds,
        iat: now,
        iss: issuer.into(),
        jti,
        kubernetes: Some(KubernetesClaims {
            namespace: namespace.clone(),
            node: bindings.node,
            pod: bindings.pod,
            secret: bindings.secret,
            serviceaccount: ObjectRef { name: name.clone(), uid },
        }),
        nbf: now,
        sub: super::user_name(&namespace, &name),
    }
}

/// The answer: the request with defaults, its metadata, and the token in its status.
pub fn response(mut request: Value, claims: &Claims, spec: &TokenSpec, token: String) -> Value {
    let at = |seconds: i64| {
        jiff::Timestamp::from_second(seconds).map(meta::timestamp).unwrap_or_default()
    };
    if !request.is_object() {
        request = json!({});
    }
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    let kubernetes = claims.kubernetes.as_ref();
    let metadata = meta::metadata_mut(&mut request);
    if let Some(kubernetes) = kubernetes {
        metadata.insert("name".into(), json!(kubernetes.serviceaccount.name));
        metadata.insert("namespace".into(), json!(kubernetes.namespace));
    }
    metadata.insert("creationTimestamp".into(), json!(at(claims.iat)));
    if !request.get("spec").is_some_and(Value::is_object) {
        request["spec"] = json!({});
    }
    request["spec"]["audiences"] = json!(spec.audiences);
    request["spec"]["expirationSeconds"] = json!(spec.expiration_seconds);
    request["status"] = json!({ "token": token, "expirationTimestamp": at(claims.exp) });
    request
}

/// Reads one object of a core type, or its 404.
async fn get_core<S: KvStore>(
    registry: &Registry<S>,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let resource = registry
        .catalog
        .get("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
    let target = Target {
        resource: resource.clone(),
        namespace: namespace.map(Into::into),
        name: name.into(),
    };
    Ok(registry.get(&target, false).await?.object)
}

fn object_ref(object: &Value) -> ObjectRef {
    ObjectRef {
        name: meta::name(object).to_string(),
        uid: meta::str_field(object, &["metadata", "uid"]).unwrap_or("").to_string(),
    }
}

/// Serves `POST …/serviceaccounts/{name}/token` for `user`; `target` is the ServiceAccount.
pub async fn create_token<S: KvStore>(
    api: &Api<S>,
    target: &Target,
    body: Value,
    user: &User,
) -> Result<Value, ApiError> {
    let registry = &api.registry;
    let issuer: &Issuer = &api.issuer;
    let namespace = target.namespace.as_deref().unwrap_or("");
    check_identity(&body, namespace, &target.name)?;
    let account = registry.get(target, false).await?.object;
    let spec = parse_spec(&body, &issuer.audiences)?;
    let mut bindings = Bindings::default();
    let mut bound_pod = None;
    if let Some(bound) = &spec.bound {
        let scope = (bound.kind != BoundKind::Node).then_some(namespace);
        let object = get_core(registry, bound.kind.plural(), scope, &bound.name).await?;
        let found = object_ref(&object);
        match bound.kind {
            BoundKind::Pod => {
                let runs_as = meta::str_field(&object, &["spec", "serviceAccountName"]);
                if runs_as.unwrap_or("") != target.name {
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token for serviceaccount {:?} to pod running with different \
                         serviceaccount name.",
                        target.name
                    )));
                }
                if let Some(node) = meta::str_field(&object, &["spec", "nodeName"]) {
                    // As Kubernetes: a node that cannot be read leaves the claim out.
                    let node = get_core(registry, "nodes", None, node).await.ok();
                    bindings.node = node.as_ref().map(object_ref);
                }
                bindings.pod = Some(found.clone());
                bound_pod = Some(object);
            }
            BoundKind::Secret => bindings.secret = Some(found.clone()),
            BoundKind::Node => bindings.node = Some(found.clone()),
        }
        if !bound.uid.is_empty() && bound.uid != found.uid {
            return Err(ApiError::Conflict {
                resource: GroupResource::new("", bound.kind.name()),
                name: bound.name.clone(),
                message: format!(
                    "the UID in the bound object reference ({}) does not match the UID in \
                     record. The object might have been deleted and then recreated",
                    bound.uid
                ),
            });
        }
    }
    node_restriction(user, &target.name, &spec, bound_pod.as_ref())?;
    let now = jiff::Timestamp::now().as_second();
    let claims = claims(&issuer.name, &account, &spec, bindings, now, meta::new_uid());
    let token = jwt::encode(&issuer.key, &claims)
        .map_err(|_| ApiError::Internal("signing the token failed".into()))?;
    tracing::debug!(
        account = %claims.sub,
        audiences = ?spec.audiences,
        expiration_seconds = spec.expiration_seconds,
        "issued a service account token"
    );
    Ok(response(body, &claims, &spec, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    fn defaults() -> Vec<String> {
        vec![ISSUER.to_string()]
    }

    #[test]
    fn specs_get_defaults_and_are_validated() {
        let spec = parse_spec(&json!({}), &defaults()).unwrap();
        assert_eq!(
            spec,
            TokenSpec { audiences: defaults(), expiration_seconds: 3600, bound: None }
        );
        let spec = parse_spec(
            &json!({"spec": {"audiences": ["x"], "expirationSeconds": 5400,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u1"}}}),
            &defaults(),
        )
        .unwrap();
        assert_eq!(spec.audiences, ["x"]);
        assert_eq!(spec.expiration_seconds, 5400);
        assert_eq!(
            spec.bound,
            Some(BoundRef { kind: BoundKind::Pod, name: "web".into(), uid: "u1".into() })
        );

        let cases = [
            (
                json!({"spec": {"expirationSeconds": 599}}),
                (
                    422,
                    r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"#,
                ),
            ),
            (
                json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}}}),
                (400, "cannot bind token to object of type /v1, Kind=ConfigMap"),
            ),
            (
                json!({"spec": {"boundObjectRef": {"apiVersion": "apps/v1", "kind": "Pod", "name": "p"}}}),
                (400, "cannot bind token to object of type apps/v1, Kind=Pod"),
            ),
            (
                json!({"spec": {"expirationSeconds": "long"}}),
                (400, "spec.expirationSeconds must be an integer"),
            ),
        ];
        for (body, (code, message)) in cases {
            let err = parse_spec(&body, &defaults()).unwrap_err();
            assert_eq!((err.code_and_reason().0, err.to_string().as_str()), (code, message));
        }
    }

    #[test]
    fn the_body_may_not_name_another_account() {
        assert!(check_identity(&json!({}), "default", "robot").is_ok());
        assert!(check_identity(&json!({"metadata": {"name": "robot"}}), "default", "robot").is_ok());
        let err = check_identity(&json!({"metadata": {"name": "other"}}), "default", "robot")
            .unwrap_err();
        assert!(err.to_string().contains("must match the service account name"), "{err}");
        let err = check_identity(&json!({"metadata": {"namespace": "x"}}), "default", "robot")
            .unwrap_err();
        assert!(err.to_string().contains("must match the service account namespace"), "{err}");
    }

    #[test]
    fn claims_name_the_account_and_its_bindings() {
        let account = json!({"metadata": {"name": "robot", "namespace": "dev", "uid": "sa-1"}});
        let spec = TokenSpec { audiences: defaults(), expiration_seconds: 600, bound: None };
        let pod = ObjectRef { name: "web".into(), uid: "pod-1".into() };
        let bindings = Bindings { pod: Some(pod.clone()), ..Bindings::default() };
        let claims = claims(ISSUER, &account, &spec, bindings, 1000, "jti-1".into());
        assert_eq!(claims.sub, "system:serviceaccount:dev:robot");
        assert_eq!((claims.iat, claims.nbf, claims.exp), (1000, 1000, 1600));
        assert_eq!(claims.aud.0, defaults());
        let kubernetes = claims.kubernetes.clone().unwrap();
        assert_eq!(kubernetes.namespace, "dev");
        assert_eq!(
            kubernetes.serviceaccount,
            ObjectRef { name: "robot".into(), uid: "sa-1".into() }
        );
        assert_eq!(kubernetes.pod, Some(pod));

        let answer = response(json!({"spec": {}}), &claims, &spec, "t0ken".into());
        assert_eq!(answer["kind"], "TokenRequest");
        assert_eq!(answer["metadata"]["name"], "robot");
        assert_eq!(answer["metadata"]["namespace"], "dev");
        assert_eq!(answer["metadata"]["creationTimestamp"], "1970-01-01T00:16:40Z");
        assert_eq!(answer["status"]["token"], "t0ken");
        assert_eq!(answer["status"]["expirationTimestamp"], "1970-01-01T00:26:40Z");
        assert_eq!(answer["spec"]["expirationSeconds"], 600);
    }

    #[test]
    fn nodes_may_only_ask_for_tokens_of_their_own_pods() {
        let node = User {
            name: "system:node:n1".into(),
            groups: vec!["system:nodes".into()],
            ..User::default()
        };
        let admin = User { name: "admin".into(), ..User::default() };
        let bound = |uid: &str| TokenSpec {
            audiences: defaults(),
            expiration_seconds: 3607,
            bound: Some(BoundRef { kind: BoundKind::Pod, name: "web".into(), uid: uid.into() }),
        };
        let unbound = TokenSpec { bound: None, ..bound("") };
        let on = |node: &str| json!({"spec": {"nodeName": node}});
        let cases: [(&User, &TokenSpec, Option<Value>, Option<&str>); 5] = [
            (&node, &bound("u"), Some(on("n1")), None),
            (
                &node,
                &bound("u"),
                Some(on("n2")),
                Some("bound to a pod scheduled on a different node"),
            ),
            (&node, &bound(""), Some(on("n1")), Some("a pod binding without a uid")),
            (&node, &unbound, None, Some("node requested token not bound to a pod")),
            (&admin, &unbound, None, None),
        ];
        for (user, spec, pod, refused) in cases {
            let outcome = node_restriction(user, "default", spec, pod.as_ref());
            match refused {
                None => assert!(outcome.is_ok(), "{outcome:?}"),
                Some(reason) => {
                    let message = outcome.unwrap_err().to_string();
                    assert!(message.starts_with("serviceaccounts \"default\" is forbidden: "));
                    assert!(message.contains(reason), "{message}");
                }
            }
        }
    }
}
