//! A cluster's own certificate authority: the CA, member certificates (server and client use)
//! and client certificates (CN = user, O = groups, as Kubernetes reads them).

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

/// A new cluster's certificate authority with its files: the CA and an administrator's client
/// certificate (CN `admin`, O `system:masters`), all in one directory.
pub struct ClusterPki {
    pub authority: Authority,
    pub dir: PathBuf,
    pub ca: CertFiles,
    pub admin: CertFiles,
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
        Ok(ClusterPki { authority, dir: dir.to_path_buf(), ca, admin })
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
        let common_name = format!("system:node:{name}");
        let request = CertRequest {
            common_name: &common_name,
            organizations: &["system:nodes"],
            hosts,
            server: true,
            client: true,
        };
        self.authority.issue(&request, &self.dir, name)
    }
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io { path: path.into(), source })
}

impl Authority {
    /// Creates a new CA.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
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
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority { cert, key })
    }

    /// Writes the CA certificate (and its key) to `dir/ca.crt` and `dir/ca.key`.
    pub fn write(&self, dir: &Path) -> Result<CertFiles, PkiError> {
        let files = CertFiles { cert: dir.join("ca.crt"), key: dir.join("ca.key") };
        write(&files.cert, &self.cert.pem())?;
        write(&files.key, &self.key.serialize_pem())?;
        Ok(files)
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
