//! Authentication by service-account token: the JWT checks, then the objects the token names
//! must still exist with the uids it names (Kubernetes' "bound token" validation), then the
//! user a token stands for.

use flotilla_store::KvStore;
use serde_json::Value;

use super::jwt::{self, Claims, ObjectRef, TokenError};
use super::Issuer;
use crate::auth::User;
use crate::error::ApiError;
use crate::meta;
use crate::registry::Registry;

/// How long a token outlives the deletion of an object it names (Kubernetes' grace).
const DELETION_GRACE_SECONDS: i64 = 60;

/// The `user.extra` keys Kubernetes fills in from a token.
const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const NODE_UID: &str = "authentication.kubernetes.io/node-uid";
const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: User,
    /// The audiences of the token the caller accepts.
    pub audiences: Vec<String>,
}

/// The user a token with these claims stands for.
pub fn user_of(claims: &Claims) -> User {
    let Some(kubernetes) = &claims.kubernetes else {
        return User { name: claims.sub.clone(), ..User::default() };
    };
    let namespace = &kubernetes.namespace;
    let mut user = User {
        name: super::user_name(namespace, &kubernetes.serviceaccount.name),
        uid: kubernetes.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        ..User::default()
    };
    let mut extra = |key: &str, value: &str| {
        if !value.is_empty() {
            user.extra.insert(key.into(), vec![value.into()]);
        }
    };
    if let Some(pod) = &kubernetes.pod {
        extra(POD_NAME, &pod.name);
        extra(POD_UID, &pod.uid);
    }
    if let Some(node) = &kubernetes.node {
        extra(NODE_NAME, &node.name);
        extra(NODE_UID, &node.uid);
    }
    if !claims.jti.is_empty() {
        extra(CREDENTIAL_ID, &format!("JTI={}", claims.jti));
    }
    user.with_authenticated()
}

/// What a token names, checked against the object as stored: it must exist with the named
/// uid, and not have been deleted more than [`DELETION_GRACE_SECONDS`] before `now`.
pub fn check_object(
    kind: &'static str,
    namespace: &str,
    claimed: &ObjectRef,
    found: Option<&Value>,
    now: i64,
) -> Result<(), TokenError> {
    let account = kind == "ServiceAccount";
    let Some(found) = found else {
        let (namespace, name) = (namespace.to_string(), claimed.name.clone());
        return Err(if account {
            TokenError::ServiceAccountGone { namespace, name }
        } else {
            TokenError::BoundObjectGone { kind, namespace, name }
        });
    };
    let uid = meta::str_field(found, &["metadata", "uid"]).unwrap_or("").to_string();
    if uid != claimed.uid {
        let claimed = claimed.uid.clone();
        return Err(if account {
            TokenError::ServiceAccountReplaced { found: uid, claimed }
        } else {
            TokenError::BoundObjectReplaced { kind, found: uid, claimed }
        });
    }
    let deleted = meta::str_field(found, &["metadata", "deletionTimestamp"])
        .and_then(|at| at.parse::<jiff::Timestamp>().ok())
        .map(|at| at.as_second());
    if deleted.is_some_and(|at| at < now - DELETION_GRACE_SECONDS) {
        return Err(TokenError::BoundObjectDeleted {
            kind,
            namespace: namespace.into(),
            name: claimed.name.clone(),
        });
    }
    Ok(())
}

/// Reads a core object for a token check: from this replica first (cheap, and what a token
/// made a moment ago on another master usually finds), then, if it is missing or has another
/// uid, with a read barrier, so a lagging replica never refuses a good token.
async fn current<S: KvStore>(
    registry: &Registry<S>,
    plural: &str,
    namespace: Option<&str>,
    claimed: &ObjectRef,
) -> Result<Option<Value>, ApiError> {
    let Some(resource) = registry.catalog.get("", "v1", plural) else { return Ok(None) };
    let key = resource.key(namespace, &claimed.name);
    let local = registry.objects.get(&key, true).await?.map(|stored| stored.object);
    let matches = local.as_ref().is_some_and(|object| {
        meta::str_field(object, &["metadata", "uid"]) == Some(claimed.uid.as_str())
    });
    if matches {
        return Ok(local);
    }
    Ok(registry.objects.get(&key, false).await?.map(|stored| stored.object))
}

/// Authenticates a bearer token as a service-account token accepted for one of `audiences`,
/// at `now` (Unix seconds). The outer error is a failed lookup; the inner one a refused token.
pub async fn authenticate<S: KvStore>(
    registry: &Registry<S>,
    issuer: &Issuer,
    token: &str,
    audiences: &[String],
    now: i64,
) -> Result<Result<Authenticated, TokenError>, ApiError> {
    let claims = match jwt::verify(&issuer.key, &issuer.name, token, now, audiences) {
        Ok(claims) => claims,
        Err(refused) => return Ok(Err(refused)),
    };
    let Some(kubernetes) = &claims.kubernetes else { return Ok(Err(TokenError::NotBound)) };
    let namespace = kubernetes.namespace.as_str();
    let account = &kubernetes.serviceaccount;
    let found = current(registry, "serviceaccounts", Some(namespace), account).await?;
    if let Err(refused) = check_object("ServiceAccount", namespace, account, found.as_ref(), now) {
        return Ok(Err(refused));
    }
    // A pod-bound token carries its node for information only; a node-bound one is checked.
    let node = kubernetes.node.as_ref().filter(|_| kubernetes.pod.is_none());
    let bound = [
        ("Pod", "pods", Some(namespace), kubernetes.pod.as_ref()),
        ("Secret", "secrets", Some(namespace), kubernetes.secret.as_ref()),
        ("Node", "nodes", None, node),
    ];
    for (kind, plural, scope, claimed) in bound {
        let Some(claimed) = claimed else { continue };
        let found = current(registry, plural, scope, claimed).await?;
        if let Err(refused) = check_object(kind, namespace, claimed, found.as_ref(), now) {
            return Ok(Err(refused));
        }
    }
    let accepted =
        claims.aud.0.iter().filter(|audience| audiences.contains(audience)).cloned().collect();
    Ok(Ok(Authenticated { user: user_of(&claims), audiences: accepted }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceaccount::jwt::{Audiences, KubernetesClaims};
    use serde_json::json;

    fn reference(name: &str, uid: &str) -> ObjectRef {
        ObjectRef { name: name.into(), uid: uid.into() }
    }

    #[test]
    fn a_token_stands_for_its_service_account() {
        let claims = Claims {
            aud: Audiences(vec!["a".into()]),
            exp: 2,
            iat: 1,
            iss: "i".into(),
            jti: "j-1".into(),
            kubernetes: Some(KubernetesClaims {
                namespace: "dev".into(),
                node: Some(reference("n1", "node-uid")),
                pod: Some(reference("web", "pod-uid")),
                secret: None,
                serviceaccount: reference("robot", "sa-uid"),
            }),
            nbf: 1,
            sub: "system:serviceaccount:dev:robot".into(),
        };
        let user = user_of(&claims);
        assert_eq!(user.name, "system:serviceaccount:dev:robot");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"]
        );
        let extra: Vec<(&str, &str)> =
            user.extra.iter().map(|(k, v)| (k.as_str(), v[0].as_str())).collect();
        assert_eq!(
            extra,
            [
                (CREDENTIAL_ID, "JTI=j-1"),
                (NODE_NAME, "n1"),
                (NODE_UID, "node-uid"),
                (POD_NAME, "web"),
                (POD_UID, "pod-uid"),
            ]
        );
    }

    #[test]
    fn named_objects_must_still_be_there() {
        let now = 1_700_000_000;
        let at = |seconds: i64| meta::timestamp(jiff::Timestamp::from_second(seconds).unwrap());
        let pod = |uid: &str, deleted: Option<i64>| {
            let mut pod = json!({"metadata": {"name": "web", "uid": uid}});
            if let Some(deleted) = deleted {
                pod["metadata"]["deletionTimestamp"] = json!(at(deleted));
            }
            pod
        };
        let claimed = reference("web", "u1");
        type Case = (&'static str, &'static str, Option<Value>, Result<(), TokenError>);
        let cases: Vec<Case> = vec![
            ("present", "Pod", Some(pod("u1", None)), Ok(())),
            ("being deleted", "Pod", Some(pod("u1", Some(now + 30))), Ok(())),
            ("deleted within the grace", "Pod", Some(pod("u1", Some(now - 59))), Ok(())),
            (
                "deleted long ago",
                "Pod",
                Some(pod("u1", Some(now - 61))),
                Err(TokenError::BoundObjectDeleted {
                    kind: "Pod",
                    namespace: "dev".into(),
                    name: "web".into(),
                }),
            ),
            (
                "gone",
                "Pod",
                None,
                Err(TokenError::BoundObjectGone {
                    kind: "Pod",
                    namespace: "dev".into(),
                    name: "web".into(),
                }),
            ),
            (
                "replaced",
                "Pod",
                Some(pod("u2", None)),
                Err(TokenError::BoundObjectReplaced {
                    kind: "Pod",
                    found: "u2".into(),
                    claimed: "u1".into(),
                }),
            ),
            (
                "account gone",
                "ServiceAccount",
                None,
                Err(TokenError::ServiceAccountGone { namespace: "dev".into(), name: "web".into() }),
            ),
            (
                "account replaced",
                "ServiceAccount",
                Some(pod("u2", None)),
                Err(TokenError::ServiceAccountReplaced {
                    found: "u2".into(),
                    claimed: "u1".into(),
                }),
            ),
        ];
        for (name, kind, found, expected) in cases {
            assert_eq!(
                check_object(kind, "dev", &claimed, found.as_ref(), now),
                expected,
                "{name}"
            );
        }
    }
}
