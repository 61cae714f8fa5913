//! Service account tokens of `projected` volumes (kubelet's token manager): each
//! `serviceAccountToken` source is a token bound to the pod, requested through the API
//! (`POST /api/v1/namespaces/{ns}/serviceaccounts/{sa}/token`) and kept in the pod worker's
//! state, so a sync costs no request until the token is due for refresh.
//!
//! Invariants:
//! - A token is refreshed once 80 % of its lifetime has passed or it is older than 24 h
//!   (kubelet's `requiresRefresh`, with up to 10 s of jitter to spread refreshes).
//! - A failed refresh keeps the cached token until it expires, as kubelet does; without a
//!   usable token the volume fails with `failed to fetch token: …`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};

/// The API's default `expirationSeconds` of a token projection.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Tokens older than this are refreshed whatever their lifetime (kubelet's `maxTTL`).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The most jitter a refresh time gets (kubelet's `maxJitter`).
const MAX_JITTER_SECONDS: u64 = 10;

/// Where a token goes: the volume's name and the source's index in it (the cache lives in one
/// pod's worker state, so the pod is implied).
pub(crate) type TokenKey = (String, usize);

/// Why a token could not be obtained: the API's message, or what else failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// No token was ever obtained.
    #[error("failed to fetch token: {reason}")]
    Fetch { reason: String },
    /// The cached token expired and could not be refreshed.
    #[error("token {key} expired and refresh failed: {reason}")]
    Expired { key: String, reason: String },
}

/// The API boundary: creates a TokenRequest for a ServiceAccount. Implemented by the agent's
/// `kube::Client`; tests use in-memory and failing ones.
pub(crate) trait TokenRequester {
    /// Returns the issued token (the API's TokenRequest with `status`), or the API's reason
    /// for refusing it.
    fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> impl Future<Output = Result<TokenRequest, String>> + Send;
}

impl TokenRequester for kube::Client {
    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.clone(), namespace);
        match accounts.create_token_request(service_account, &PostParams::default(), request).await
        {
            Ok(issued) => Ok(issued),
            Err(kube::Error::Api(status)) => Err(status.message),
            Err(other) => Err(other.to_string()),
        }
    }
}

/// A token as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedToken {
    pub token: String,
    pub expires: Timestamp,
    /// The lifetime the API granted (`spec.expirationSeconds` of its answer).
    pub lifetime_seconds: i64,
}

/// Kubelet's `requiresRefresh`: the token is older than 24 h, or within 20 % of its lifetime
/// of expiring (each moment brought forward by `jitter`).
pub(crate) fn refresh_due(token: &CachedToken, now: Timestamp, jitter: Duration) -> bool {
    let jitter = jitter.as_secs() as i64;
    let expires = token.expires.as_second();
    let issued = expires - token.lifetime_seconds;
    let now = now.as_second();
    now > issued + MAX_AGE.as_secs() as i64 - jitter
        || now > expires - token.lifetime_seconds * 20 / 100 - jitter
}

/// Whether the token can no longer be used at all.
pub(crate) fn expired(token: &CachedToken, now: Timestamp) -> bool {
    now >= token.expires
}

/// The pod's ServiceAccount (`spec.serviceAccountName`, else the deprecated
/// `spec.serviceAccount`, else `default`).
pub(crate) fn service_account(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.service_account_name.clone())
        .or_else(|| spec.and_then(|s| s.service_account.clone()))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// The TokenRequest kubelet sends for a projection: the source's audience (the API server's
/// own audiences when unset), its lifetime, bound to the pod.
pub(crate) fn token_request(pod: &Pod, projection: &ServiceAccountTokenProjection) -> TokenRequest {
    let audiences = projection.audience.iter().filter(|a| !a.is_empty()).cloned().collect();
    TokenRequest {
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(
                projection.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            ),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    }
}

/// The token sources of the pod's projected volumes, by key.
pub(crate) fn projections(pod: &Pod) -> Vec<(TokenKey, &ServiceAccountTokenProjection)> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut out = Vec::new();
    for volume in volumes.into_iter().flatten() {
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for (index, source) in sources.into_iter().flatten().enumerate() {
            if let Some(projection) = &source.service_account_token {
                out.push(((volume.name.clone(), index), projection));
            }
        }
    }
    out
}

/// A pod's tokens, kept between syncs.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: BTreeMap<TokenKey, CachedToken>,
}

impl TokenCache {
    /// Returns a token for every token source of `pod`: cached ones while fresh, new ones
    /// requested through `requester` when due.
    pub(crate) async fn tokens<R: TokenRequester>(
        &mut self,
        pod: &Pod,
        requester: &R,
        now: Timestamp,
    ) -> BTreeMap<TokenKey, Result<String, TokenError>> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = service_account(pod);
        let jitter = jitter_for(pod);
        let wanted = projections(pod);
        self.tokens.retain(|key, _| wanted.iter().any(|(wanted, _)| wanted == key));
        let mut out = BTreeMap::new();
        for (key, projection) in wanted {
            let cached = self.tokens.get(&key);
            if let Some(token) = cached.filter(|t| !refresh_due(t, now, jitter)) {
                out.insert(key, Ok(token.token.clone()));
                continue;
            }
            let request = token_request(pod, projection);
            let outcome = requester.request_token(namespace, &account, &request).await;
            let result = match (outcome.and_then(|issued| issued_token(&issued, &request)), cached)
            {
                (Ok(token), _) => {
                    tracing::debug!(volume = %key.0, expires = %token.expires, "issued a service account token");
                    let value = token.token.clone();
                    self.tokens.insert(key.clone(), token);
                    Ok(value)
                }
                (Err(reason), None) => Err(TokenError::Fetch { reason }),
                (Err(reason), Some(token)) if expired(token, now) => {
                    let key = format!("{namespace}/{account}/{}", key.0);
                    Err(TokenError::Expired { key, reason })
                }
                (Err(reason), Some(token)) => {
                    tracing::warn!(volume = %key.0, error = %reason, "refreshing a service account token");
                    Ok(token.token.clone())
                }
            };
            out.insert(key, result);
        }
        out
    }
}

/// The cached form of an API answer; its lifetime is the answer's, else the one asked for.
fn issued_token(issued: &TokenRequest, asked: &TokenRequest) -> Result<CachedToken, String> {
    let status = issued.status.as_ref().ok_or("the API answered without a token")?;
    if status.token.is_empty() {
        return Err("the API answered an empty token".to_owned());
    }
    let lifetime_seconds = issued
        .spec
        .expiration_seconds
        .or(asked.spec.expiration_seconds)
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    Ok(CachedToken {
        token: status.token.clone(),
        expires: status.expiration_timestamp.0,
        lifetime_seconds,
    })
}

/// A per-pod jitter below kubelet's 10 s, from the pod's uid (no randomness needed: it only
/// has to spread pods apart).
fn jitter_for(pod: &Pod) -> Duration {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let sum: u64 = uid.bytes().map(u64::from).sum();
    Duration::from_secs(sum % MAX_JITTER_SECONDS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use k8s_openapi::api::authentication::v1::TokenRequestStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn refresh_is_due_at_80_percent_or_after_a_day() {
        const HOUR: i64 = 3600;
        let token = |issued: i64, lifetime: i64| CachedToken {
            token: "t".into(),
            expires: at(issued + lifetime),
            lifetime_seconds: lifetime,
        };
        let cases = [
            ("fresh", token(0, HOUR), 0, Duration::ZERO, false),
            ("at 80 %", token(0, HOUR), 2880, Duration::ZERO, false),
            ("past 80 %", token(0, HOUR), 2881, Duration::ZERO, true),
            ("jitter brings it forward", token(0, HOUR), 2875, Duration::from_secs(9), true),
            ("a 48 h token at 20 h", token(0, 48 * HOUR), 20 * HOUR, Duration::ZERO, false),
            ("a 48 h token after 24 h", token(0, 48 * HOUR), 24 * HOUR + 1, Duration::ZERO, true),
            ("expired", token(0, HOUR), 2 * HOUR, Duration::ZERO, true),
        ];
        for (name, token, now, jitter, due) in cases {
            assert_eq!(refresh_due(&token, at(now), jitter), due, "{name}");
        }
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn token_pod() -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "serviceAccountName": "builder",
                "containers": [],
                "volumes": [{"name": "api", "projected": {"sources": [
                    {"configMap": {"name": "ca"}},
                    {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}}
                ]}}]
            }
        }))
    }

    #[test]
    fn requests_are_bound_to_the_pod() {
        let pod = token_pod();
        let found = projections(&pod);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, ("api".to_string(), 1));
        let request = token_request(&pod, found[0].1);
        assert_eq!(
            serde_json::to_value(&request).unwrap()["spec"],
            serde_json::json!({
                "audiences": ["vault"],
                "expirationSeconds": 600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u-1"}
            })
        );
        let defaults = ServiceAccountTokenProjection { path: "t".into(), ..Default::default() };
        let request = token_request(&pod, &defaults);
        assert!(request.spec.audiences.is_empty());
        assert_eq!(request.spec.expiration_seconds, Some(3600));

        assert_eq!(service_account(&pod), "builder");
        assert_eq!(service_account(&Pod::default()), "default");
    }

    /// An API that issues numbered tokens living `lifetime` seconds from `now`, or fails.
    struct FakeApi {
        now: Mutex<i64>,
        issued: Mutex<Vec<(String, String)>>,
        failing: Mutex<Option<String>>,
    }

    impl FakeApi {
        fn new() -> FakeApi {
            FakeApi {
                now: Mutex::new(0),
                issued: Mutex::new(Vec::new()),
                failing: Mutex::new(None),
            }
        }
    }

    impl TokenRequester for FakeApi {
        async fn request_token(
            &self,
            namespace: &str,
            service_account: &str,
            request: &TokenRequest,
        ) -> Result<TokenRequest, String> {
            if let Some(reason) = self.failing.lock().unwrap().clone() {
                return Err(reason);
            }
            let mut issued = self.issued.lock().unwrap();
            issued.push((namespace.to_owned(), service_account.to_owned()));
            let lifetime = request.spec.expiration_seconds.unwrap();
            let now = *self.now.lock().unwrap();
            Ok(TokenRequest {
                spec: request.spec.clone(),
                status: Some(TokenRequestStatus {
                    token: format!("token-{}", issued.len()),
                    expiration_timestamp: Time(at(now + lifetime)),
                }),
                ..TokenRequest::default()
            })
        }
    }

    /// The token of the test pod's source as a sync at `second` gets it.
    async fn token_at(
        cache: &mut TokenCache,
        api: &FakeApi,
        second: i64,
    ) -> Result<String, TokenError> {
        *api.now.lock().unwrap() = second;
        let mut tokens = cache.tokens(&token_pod(), api, at(second)).await;
        tokens.remove(&("api".to_string(), 1)).unwrap()
    }

    #[tokio::test]
    async fn tokens_are_cached_refreshed_and_kept_through_failures() {
        let api = FakeApi::new();
        let mut cache = TokenCache::default();

        // --- the first sync requests a token for the pod's service account
        assert_eq!(token_at(&mut cache, &api, 0).await, Ok("token-1".to_owned()));
        assert_eq!(api.issued.lock().unwrap()[0], ("shop".to_owned(), "builder".to_owned()));
        // --- later syncs reuse it until 80 % of its 600 s have passed (less the jitter)
        assert_eq!(token_at(&mut cache, &api, 400).await, Ok("token-1".to_owned()));
        assert_eq!(token_at(&mut cache, &api, 490).await, Ok("token-2".to_owned()));
        assert_eq!(api.issued.lock().unwrap().len(), 2);

        // --- a failed refresh keeps the token while it lives, then fails the volume
        *api.failing.lock().unwrap() = Some("serviceaccounts \"builder\" not found".into());
        assert_eq!(token_at(&mut cache, &api, 990).await, Ok("token-2".to_owned()));
        let error = token_at(&mut cache, &api, 1090).await.unwrap_err().to_string();
        assert!(error.contains("expired and refresh failed"), "{error}");

        // --- without any token, the API's reason is the volume's
        let mut empty = TokenCache::default();
        let error = token_at(&mut empty, &api, 0).await.unwrap_err().to_string();
        assert_eq!(error, "failed to fetch token: serviceaccounts \"builder\" not found");
    }
}
