//! Service-account tokens as JSON Web Tokens: the claims kube-apiserver puts in them, signing,
//! and the checks that need nothing but the token, the key and the clock. Pure apart from the
//! signature's random nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};

use super::key::{SigningKey, ALGORITHM};

/// How far the clocks of the master that signed a token and the one checking it may differ
/// (go-jose's default leeway, which Kubernetes uses).
pub const LEEWAY_SECONDS: i64 = 60;

/// The claims of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Audiences,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(rename = "kubernetes.io", default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesClaims>,
    pub nbf: i64,
    pub sub: String,
}

/// `aud`: JWT allows one string or a list; Kubernetes writes a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audiences(pub Vec<String>);

impl<'de> Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => Audiences(vec![one]),
            OneOrMany::Many(many) => Audiences(many),
        })
    }
}

/// The private `kubernetes.io` claim: whose token it is and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    pub serviceaccount: ObjectRef,
}

/// An object a token names, by name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// Why a token is refused. Every variant is a 401 to the client; the reason is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JSON web token")]
    Malformed,
    #[error("signed with algorithm {0:?}, not {ALGORITHM}")]
    Algorithm(String),
    #[error("signed by another key (kid {0:?})")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("issued by {0:?}, not this cluster")]
    Issuer(String),
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("service account token is issued in the future")]
    IssuedInTheFuture,
    #[error("token audiences {0:?} are not accepted")]
    Audience(Vec<String>),
    #[error("the token has no kubernetes.io claim (legacy secret-based tokens are not supported)")]
    NotBound,
    #[error("service account {namespace}/{name} does not exist any more")]
    ServiceAccountGone { namespace: String, name: String },
    #[error("service account UID ({found}) does not match claim ({claimed})")]
    ServiceAccountReplaced { found: String, claimed: String },
    #[error("{kind} {namespace}/{name} the token is bound to does not exist any more")]
    BoundObjectGone { kind: &'static str, namespace: String, name: String },
    #[error("{kind} UID ({found}) does not match claim ({claimed})")]
    BoundObjectReplaced { kind: &'static str, found: String, claimed: String },
    #[error("{kind} {namespace}/{name} the token is bound to was deleted")]
    BoundObjectDeleted { kind: &'static str, namespace: String, name: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kid: String,
}

/// Signs `claims` into a compact JWS: `header.claims.signature`, each unpadded base64url.
pub fn encode(key: &SigningKey, claims: &Claims) -> Result<String, ring::error::Unspecified> {
    let header = Header { alg: ALGORITHM.into(), kid: key.key_id().into() };
    // Serializing plain structs of strings and integers cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(signed.as_bytes())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Whether a bearer token has the shape of a JWT (three dot-separated parts), so it is worth
/// checking as one.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Checks a token against the key, the issuer, the clock (`now`, Unix seconds) and the
/// audiences the caller accepts (one in common is enough), and returns its claims.
pub fn verify(
    key: &SigningKey,
    issuer: &str,
    token: &str,
    now: i64,
    accepted: &[String],
) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed);
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
    if header.alg != ALGORITHM {
        return Err(TokenError::Algorithm(header.alg));
    }
    if !header.kid.is_empty() && header.kid != key.key_id() {
        return Err(TokenError::UnknownKey(header.kid));
    }
    let signed_len = token.len() - signature.len() - 1;
    if !key.verify(&token.as_bytes()[..signed_len], &decode(signature)?) {
        return Err(TokenError::Signature);
    }
    let claims: Claims =
        serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
    if claims.iss != issuer {
        return Err(TokenError::Issuer(claims.iss));
    }
    if now > claims.exp + LEEWAY_SECONDS {
        return Err(TokenError::Expired);
    }
    if now + LEEWAY_SECONDS < claims.nbf {
        return Err(TokenError::NotValidYet);
    }
    if now + LEEWAY_SECONDS < claims.iat {
        return Err(TokenError::IssuedInTheFuture);
    }
    if !claims.aud.0.iter().any(|audience| accepted.contains(audience)) {
        return Err(TokenError::Audience(claims.aud.0));
    }
    if claims.kubernetes.is_none() {
        return Err(TokenError::NotBound);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceaccount::key::tests::new_key;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    const NOW: i64 = 1_700_000_000;

    fn claims(audiences: &[&str]) -> Claims {
        Claims {
            aud: Audiences(audiences.iter().map(|a| a.to_string()).collect()),
            exp: NOW + 3600,
            iat: NOW,
            iss: ISSUER.into(),
            jti: "5d2b1f1e-0000-4000-8000-000000000000".into(),
            kubernetes: Some(KubernetesClaims {
                namespace: "default".into(),
                node: None,
                pod: Some(ObjectRef { name: "web".into(), uid: "pod-uid".into() }),
                secret: None,
                serviceaccount: ObjectRef { name: "default".into(), uid: "sa-uid".into() },
            }),
            nbf: NOW,
            sub: "system:serviceaccount:default:default".into(),
        }
    }

    #[test]
    fn a_signed_token_round_trips() {
        let key = new_key();
        let token = encode(&key, &claims(&[ISSUER])).unwrap();
        assert!(looks_like_jwt(&token));
        let verified = verify(&key, ISSUER, &token, NOW + 10, &[ISSUER.into()]).unwrap();
        assert_eq!(verified, claims(&[ISSUER]));
    }

    #[test]
    fn the_header_and_claims_are_kubernetes_shaped() {
        let key = new_key();
        let token = encode(&key, &claims(&[ISSUER])).unwrap();
        let part = |index: usize| -> serde_json::Value {
            let text = token.split('.').nth(index).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
        };
        assert_eq!(part(0), serde_json::json!({ "alg": "ES256", "kid": key.key_id() }));
        let payload = part(1);
        assert_eq!(payload["aud"], serde_json::json!([ISSUER]));
        assert_eq!(payload["sub"], "system:serviceaccount:default:default");
        assert_eq!(payload["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(payload["kubernetes.io"]["pod"]["name"], "web");
        assert!(payload["kubernetes.io"].get("node").is_none(), "unbound parts are left out");
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let key = new_key();
        let good = encode(&key, &claims(&[ISSUER])).unwrap();
        let other_audience = encode(&key, &claims(&["vault"])).unwrap();
        let mut unbound = claims(&[ISSUER]);
        unbound.kubernetes = None;
        let unbound = encode(&key, &unbound).unwrap();
        let mut foreign_issuer = claims(&[ISSUER]);
        foreign_issuer.iss = "https://elsewhere".into();
        let foreign_issuer = encode(&key, &foreign_issuer).unwrap();
        let mut tampered: Vec<&str> = good.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&["vault", ISSUER])).unwrap());
        tampered[1] = &forged_payload;
        let tampered = tampered.join(".");
        let other_key = new_key();
        let accepted = [ISSUER.to_string()];
        let cases: Vec<(&str, String, i64, TokenError)> = vec![
            ("garbage", "not.a.jwt".into(), NOW, TokenError::Malformed),
            ("two parts", "abc.def".into(), NOW, TokenError::Malformed),
            ("tampered claims", tampered, NOW, TokenError::Signature),
            ("expired", good.clone(), NOW + 3600 + LEEWAY_SECONDS + 1, TokenError::Expired),
            ("not yet valid", good.clone(), NOW - LEEWAY_SECONDS - 1, TokenError::NotValidYet),
            ("wrong audience", other_audience, NOW, TokenError::Audience(vec!["vault".into()])),
            ("foreign issuer", foreign_issuer, NOW, TokenError::Issuer("https://elsewhere".into())),
            ("no kubernetes.io claim", unbound, NOW, TokenError::NotBound),
        ];
        for (name, token, now, expected) in cases {
            assert_eq!(verify(&key, ISSUER, &token, now, &accepted), Err(expected), "{name}");
        }
        assert_eq!(
            verify(&other_key, ISSUER, &good, NOW, &accepted),
            Err(TokenError::UnknownKey(key.key_id().into())),
            "a token of another cluster"
        );
        // Within the leeway a token just past its expiry still passes.
        assert!(verify(&key, ISSUER, &good, NOW + 3600 + LEEWAY_SECONDS, &accepted).is_ok());
    }

    #[test]
    fn audiences_may_be_one_string() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "aud": "api", "exp": 2, "iat": 1, "iss": ISSUER, "nbf": 1, "sub": "s",
        }))
        .unwrap();
        assert_eq!(claims.aud.0, ["api"]);
    }
}
