//! A cluster's own certificate authority: the CA, member certificates (server and client use)
//! and client certificates (CN = user, O = groups, as Kubernetes reads them); beside them the
//! service-account signing key every master signs and verifies service-account tokens with.

use std::path::{Path, PathBuf};

mod subject;
mod tls;

pub use subject::Subject;
pub use tls::{ClientAuth, TlsError, TlsFiles};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Paths of one PEM certificate and its key.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority able to issue certificates.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// What a certificate is for.
pub struct CertRequest<'a> {
    pub common_name: &'a str,
    pub organizations: &'a [&'a str],
    /// DNS names and IP addresses the certificate is valid for as a server.
    pub hosts: &'a [&'a str],
    pub server: bool,
    pub client: bool,
}

/// The file name of the service-account signing key in a cluster's PKI directory (kubeadm's
/// name for it).
pub const SERVICE_ACCOUNT_KEY_FILE: &str = "sa.key";

/// A new cluster's certificate authority with its files: the CA, an administrator's client
/// certificate (CN `admin`, O `system:masters`) and the service-account signing key, all in
/// one directory.
pub struct ClusterPki {
    pub authority: Authority,
    pub dir: PathBuf,
    pub ca: CertFiles,
    pub admin: CertFiles,
    /// The service-account signing key (PKCS#8 PEM, ECDSA P-256), shared by every master.
    pub service_account_key: PathBuf,
}

impl ClusterPki {
    /// Creates `dir` and a new CA and administrator certificate in it.
    pub fn create(dir: &Path) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.into(), source })?;
        let authority = Authority::generate("flotilla-ca")?;
        let ca = authority.write(dir)?;
        let admin_request = CertRequest {
            common_name: "admin",
            organizations: &["system:masters"],
            hosts: &[],
            server: false,
            client: true,
        };
        let admin = authority.issue(&admin_request, dir, "admin")?;
        let service_account_key = dir.join(SERVICE_ACCOUNT_KEY_FILE);
        create_service_account_key(&service_account_key)?;
        Ok(ClusterPki { authority, dir: dir.to_path_buf(), ca, admin, service_account_key })
    }

    /// Issues a master's certificate (server and client use) for the given hosts, written as
    /// `<name>.crt` and `<name>.key`.
    pub fn issue_master(&self, name: &str, hosts: &[&str]) -> Result<CertFiles, PkiError> {
        let request = CertRequest {
            common_name: name,
            organizations: &["flotilla:masters"],
            hosts,
            server: true,
            client: true,
        };
        self.authority.issue(&request, &self.dir, name)
    }
}

impl ClusterPki {
    /// Issues a node agent's certificate: CN `system:node:<name>`, O `system:nodes`, as
    /// kubelets are named, for client use towards the masters and server use on its own API
    /// (valid for `hosts`, the node's addresses); written as `<name>.crt` and `<name>.key`.
    pub fn issue_agent(&self, name: &str, hosts: &[&str]) -> Result<CertFiles, PkiError> {
        self.authority.issue_agent(name, hosts, &self.dir)
    }
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io { path: path.into(), source })
}

/// Writes a new service-account signing key to `path`: an ECDSA P-256 key in PKCS#8 PEM,
/// readable by its owner only. An existing file is replaced, so callers decide whether a key
/// may be created (a new cluster) or must be shared (every further master).
pub fn create_service_account_key(path: &Path) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let io = |source| PkiError::Io { path: path.into(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(key.serialize_pem().as_bytes()).map_err(io)
}

impl Authority {
    /// Creates a new CA.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let cert = Authority::generate_params(common_name)?.self_signed(&key)?;
        Ok(Authority { cert, key })
    }

    /// A CA's parameters; [`Authority::load`] rebuilds them to sign with a loaded key.
    fn generate_params(common_name: &str) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(params)
    }

    /// Loads a CA that [`Authority::generate`] made and [`Authority::write`] wrote, so that a
    /// later process (`flotilla hollow`) can issue certificates of the same cluster.
    ///
    /// rcgen signs with the issuer's key, subject and key identifier method only, so the CA's
    /// parameters are rebuilt as `generate` made them, with the subject read from the
    /// certificate; the key must be the certificate's own.
    pub fn load(files: &CertFiles) -> Result<Self, PkiError> {
        use rustls::pki_types::pem::PemObject;
        let invalid = |path: &Path, reason: &str| PkiError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string()),
        };
        let der = rustls::pki_types::CertificateDer::from_pem_file(&files.cert)
            .map_err(|err| invalid(&files.cert, &err.to_string()))?;
        let key_pem = std::fs::read_to_string(&files.key)
            .map_err(|source| PkiError::Io { path: files.key.clone(), source })?;
        let key = KeyPair::from_pem(&key_pem)?;
        // The subject public key info carries the raw public key: a key that is not the
        // certificate's would issue certificates nobody trusts.
        let public = key.public_key_raw();
        if !der.windows(public.len()).any(|window| window == public) {
            return Err(invalid(&files.key, "the key is not the CA certificate's"));
        }
        let subject =
            Subject::read(&der).ok_or_else(|| invalid(&files.cert, "not an X.509 certificate"))?;
        let common_name = subject
            .common_name
            .ok_or_else(|| invalid(&files.cert, "the CA certificate has no common name"))?;
        if !subject.organizations.is_empty() {
            return Err(invalid(&files.cert, "not a CA made by flotilla (it names organizations)"));
        }
        let rebuilt = Authority::generate_params(&common_name)?.self_signed(&key)?;
        Ok(Authority { cert: rebuilt, key })
    }

    /// Writes the CA certificate (and its key) to `dir/ca.crt` and `dir/ca.key`.
    pub fn write(&self, dir: &Path) -> Result<CertFiles, PkiError> {
        let files = CertFiles { cert: dir.join("ca.crt"), key: dir.join("ca.key") };
        write(&files.cert, &self.cert.pem())?;
        write(&files.key, &self.key.serialize_pem())?;
        Ok(files)
    }

    /// Issues a node agent's certificate (see [`ClusterPki::issue_agent`]) into `dir`.
    pub fn issue_agent(
        &self,
        name: &str,
        hosts: &[&str],
        dir: &Path,
    ) -> Result<CertFiles, PkiError> {
        let common_name = format!("system:node:{name}");
        let request = CertRequest {
            common_name: &common_name,
            organizations: &["system:nodes"],
            hosts,
            server: true,
            client: true,
        };
        self.issue(&request, dir, name)
    }

    /// Issues a certificate and writes it to `dir/<stem>.crt` and `dir/<stem>.key`.
    pub fn issue(
        &self,
        request: &CertRequest<'_>,
        dir: &Path,
        stem: &str,
    ) -> Result<CertFiles, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, request.common_name);
        for organization in request.organizations {
            name.push(DnType::OrganizationName, *organization);
        }
        params.distinguished_name = name;
        params.subject_alt_names = request
            .hosts
            .iter()
            .map(|host| match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*host).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if request.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if request.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    /// Whether the certificate in `cert` chains to the CA in `ca` as a client certificate.
    fn verifies(ca: &Path, cert: &Path) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let leaf = CertificateDer::from_pem_file(cert).unwrap();
        verifier.verify_client_cert(&leaf, &[], UnixTime::now()).is_ok()
    }

    #[test]
    fn a_loaded_authority_issues_certificates_the_cluster_trusts() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::create(dir.path()).unwrap();
        let loaded = Authority::load(&pki.ca).unwrap();
        let issued = loaded.issue_agent("hollow-1", &["127.0.0.1"], dir.path()).unwrap();
        assert!(verifies(&pki.ca.cert, &issued.cert));
        let subject = Subject::read(&CertificateDer::from_pem_file(&issued.cert).unwrap()).unwrap();
        assert_eq!(subject.common_name.as_deref(), Some("system:node:hollow-1"));

        // Another cluster's CA does not verify it.
        let other = tempfile::tempdir().unwrap();
        let other = ClusterPki::create(other.path()).unwrap();
        assert!(!verifies(&other.ca.cert, &issued.cert));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::create(dir.path()).unwrap();
        let mismatched = CertFiles { cert: pki.ca.cert.clone(), key: pki.admin.key.clone() };
        let error = Authority::load(&mismatched).err().unwrap();
        assert!(error.to_string().contains("not the CA certificate's"), "{error}");
    }
}
