//! Service accounts, as Kubernetes users expect them: bound tokens from the TokenRequest API
//! (`kubectl create token`), authentication of those tokens, the ServiceAccount admission of
//! pods (the `kube-api-access-*` projected volume) and the OpenID issuer documents.
//!
//! Tokens are ES256 JSON Web Tokens signed with the cluster's service-account key, which every
//! master loads from the same file (`--service-account-key-file`): any master verifies what any
//! other signed, and nothing about a token is stored. A token stays valid only while its
//! ServiceAccount, and the object it is bound to, exist with the uids it names.

mod admission;
mod authenticator;
mod discovery;
mod jwt;
mod key;
mod token_request;

pub use admission::{account_name, admit_pod, API_ACCESS_MOUNT_PATH};
pub use authenticator::{authenticate, Authenticated};
pub use discovery::{jwks, openid_configuration};
pub use jwt::{looks_like_jwt, Claims, TokenError};
pub use key::{KeyError, SigningKey};
pub use token_request::create_token;

/// The issuer (`iss`) of the cluster's tokens, and the audience they are for unless a
/// TokenRequest names others: kubeadm's `--service-account-issuer`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The cluster's token issuer: its signing key, its name and the audiences the API server
/// accepts tokens for.
#[derive(Debug)]
pub struct Issuer {
    pub key: SigningKey,
    /// The `iss` claim: who issued the token.
    pub name: String,
    /// Audiences this server accepts (`--api-audiences`, which defaults to the issuer).
    pub audiences: Vec<String>,
}

impl Issuer {
    /// The issuer Kubernetes clusters are usually set up with: [`ISSUER`] names it and is
    /// the one audience the API accepts.
    pub fn new(key: SigningKey) -> Issuer {
        Issuer { key, name: ISSUER.into(), audiences: vec![ISSUER.into()] }
    }
}

/// The user name of a service account, as RBAC subjects and tokens name it.
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}
