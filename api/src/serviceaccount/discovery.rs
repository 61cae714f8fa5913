//! The service-account issuer discovery documents (`/.well-known/openid-configuration` and
//! `/openid/v1/jwks`), which let other systems verify the cluster's tokens as OIDC ID tokens.
//! RBAC grants them to service accounts (`system:service-account-issuer-discovery`).

use serde_json::{json, Value};

use super::key::ALGORITHM;
use super::Issuer;

/// The path of the key set.
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// The OpenID provider configuration; `advertise` (`host:port`) is where this API is reached,
/// which is where the key set is served.
pub fn openid_configuration(issuer: &Issuer, advertise: &str) -> Value {
    json!({
        "issuer": issuer.name,
        "jwks_uri": format!("https://{advertise}{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
    })
}

/// The public keys tokens are signed with.
pub fn jwks(issuer: &Issuer) -> Value {
    json!({ "keys": [issuer.key.jwk()] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceaccount::key::tests::new_key;

    #[test]
    fn the_documents_name_the_issuer_and_its_key() {
        let issuer = Issuer::new(new_key());
        let configuration = openid_configuration(&issuer, "10.0.0.1:6443");
        assert_eq!(configuration["issuer"], "https://kubernetes.default.svc.cluster.local");
        assert_eq!(configuration["jwks_uri"], "https://10.0.0.1:6443/openid/v1/jwks");
        let keys = jwks(&issuer);
        assert_eq!(keys["keys"][0]["kid"], issuer.key.key_id());
        assert_eq!(keys["keys"][0]["alg"], "ES256");
    }
}
