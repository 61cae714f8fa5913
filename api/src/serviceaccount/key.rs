//! The service-account signing key: an ECDSA P-256 key in PKCS#8 PEM that every master loads
//! from the same file, so a token one master signed verifies on every other.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Value};

/// The JWS algorithm of the tokens this key signs.
pub const ALGORITHM: &str = "ES256";

/// The DER prefix of a P-256 `SubjectPublicKeyInfo` (id-ecPublicKey, prime256v1, then the BIT
/// STRING header) before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why the signing key could not be loaded. The messages name the file and what to do, since
/// a master stops on them.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "--service-account-key-file {path}: {error}; every master must use the same key: copy \
         the cluster's key there, or for a new cluster create one with `openssl genpkey \
         -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {path}`"
    )]
    Read { path: String, error: std::io::Error },
    #[error(
        "--service-account-key-file {path}: {message}; expected an ECDSA P-256 private key in \
         PKCS#8 PEM (BEGIN PRIVATE KEY)"
    )]
    Format { path: String, message: String },
}

/// The key that signs and verifies service-account tokens.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// Kubernetes' key id: the unpadded base64url SHA-256 of the DER public key.
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads the key from a PEM file.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let shown = path.display().to_string();
        let pem =
            std::fs::read(path).map_err(|error| KeyError::Read { path: shown.clone(), error })?;
        SigningKey::from_pem(&pem).map_err(|message| KeyError::Format { path: shown, message })
    }

    /// Parses a PKCS#8 PEM key; the error says what is wrong with it.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let der = match PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())? {
            PrivateKeyDer::Pkcs8(der) => der,
            PrivateKeyDer::Sec1(_) => {
                return Err("a SEC1 key (BEGIN EC PRIVATE KEY); convert it with `openssl pkcs8 \
                            -topk8 -nocrypt`"
                    .into())
            }
            _ => return Err("not an elliptic-curve key".into()),
        };
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| format!("not a usable P-256 key ({e})"))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(SigningKey { pair, rng, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `message`: the 64-byte `r || s` signature JWS uses for ES256.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        Ok(self.pair.sign(&self.rng, message)?.as_ref().to_vec())
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(message, signature)
            .is_ok()
    }

    /// The public key as a JSON Web Key, as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        // The uncompressed point is 0x04 || x || y, 32 bytes each.
        let point = self.pair.public_key().as_ref();
        let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.key_id,
            "crv": "P-256",
            "alg": ALGORITHM,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })
    }
}

/// The key id Kubernetes gives a public key: SHA-256 of its DER `SubjectPublicKeyInfo`,
/// unpadded base64url.
fn key_id(point: &[u8]) -> String {
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh key, as `flotilla up` creates it.
    pub(crate) fn new_key() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        flotilla_store::pki::create_service_account_key(&path).unwrap();
        SigningKey::load(&path).unwrap()
    }

    #[test]
    fn a_created_key_signs_and_verifies() {
        let key = new_key();
        let signature = key.sign(b"message").unwrap();
        assert_eq!(signature.len(), 64);
        assert!(key.verify(b"message", &signature));
        assert!(!key.verify(b"other message", &signature));
        assert!(!new_key().verify(b"message", &signature), "another key's signature");
        assert_eq!(key.key_id().len(), 43, "unpadded base64url of 32 bytes");
    }

    #[test]
    fn the_jwk_carries_the_point_and_key_id() {
        let key = new_key();
        let jwk = key.jwk();
        assert_eq!(jwk["kid"], key.key_id());
        assert_eq!(jwk["kty"], "EC");
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        let mut point = vec![4];
        point.extend(x);
        point.extend(y);
        assert_eq!(point, key.pair.public_key().as_ref());
    }

    /// A throwaway key made by `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`, the command the missing-key error suggests.
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggDnFNpCHAG/KOy3b\n\
qqmy2oTMqrOO5CBatrfDw8GtTbuhRANCAARAUmBcg5XMJB3T9MN0CqAZ8nwCmWKC\n\
Ryy7JEFPVjPu0ROY9OWxV7anbs52Y2djafJHU2eUleFpRCxVSN5so1Ta\n\
-----END PRIVATE KEY-----\n";

    #[test]
    fn a_key_made_by_openssl_loads() {
        let key = SigningKey::from_pem(OPENSSL_KEY.as_bytes()).unwrap();
        assert!(key.verify(b"m", &key.sign(b"m").unwrap()));
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SigningKey::load(&dir.path().join("absent.key")).unwrap_err();
        assert!(missing.to_string().contains("every master must use the same key"), "{missing}");
        let rsa_like = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            SigningKey::from_pem(rsa_like.as_bytes()).unwrap_err(),
            "not an elliptic-curve key"
        );
        assert!(SigningKey::from_pem(b"garbage").is_err());
    }
}
