//! rustls configurations from a cluster's PEM files: a server that verifies client
//! certificates against the cluster CA, and a client that verifies servers against it and
//! presents its own certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, err: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), message: err.to_string() }
}

fn config_error(err: impl std::fmt::Display) -> TlsError {
    TlsError::Config(err.to_string())
}

/// The PEM files of one member: the cluster CA, its certificate chain and its key.
#[derive(Clone, Copy, Debug)]
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Whether a server requires clients to present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate is optional (another credential may be used) but must chain to the CA
    /// when presented.
    Optional,
    /// Every client must present a certificate that chains to the CA.
    Required,
}

impl TlsFiles<'_> {
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        CertificateDer::pem_file_iter(self.cert)
            .map_err(|e| file_error(self.cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(self.cert, e))
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_file(self.key).map_err(|e| file_error(self.key, e))
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.ca).map_err(|e| file_error(self.ca, e))? {
            let ca = ca.map_err(|e| file_error(self.ca, e))?;
            roots.add(ca).map_err(|e| file_error(self.ca, e))?;
        }
        Ok(roots)
    }

    /// A server presenting this member's certificate and verifying client certificates
    /// against the CA.
    pub fn server_config(&self, clients: ClientAuth) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone());
        let verifier = match clients {
            ClientAuth::Optional => builder.allow_unauthenticated().build(),
            ClientAuth::Required => builder.build(),
        }
        .map_err(config_error)?;
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, self.key()?)
            .map_err(config_error)
    }

    /// A client verifying servers against the CA and presenting this member's certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain()?, self.key()?)
            .map_err(config_error)
    }
}
