//! How an agent reaches the masters: their API addresses resolved once at start, and a kube
//! client that talks TLS, with the node's own client certificate, through a local
//! [`Upstream`](crate::upstream::Upstream) forwarder to whichever master answers.

use std::net::SocketAddr;

use flotilla_store::pki::TlsFiles;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::AgentError;

/// The masters' API servers.
#[derive(Debug, Clone)]
pub(crate) struct Masters {
    /// Their addresses, in the order given.
    pub addresses: Vec<SocketAddr>,
    /// The name the first URL gives its host, which the masters' certificates are valid for
    /// (the forwarder's loopback address is not).
    pub server_name: String,
}

impl Masters {
    /// Resolves `https://host:port` URLs; at least one is needed.
    pub async fn resolve(urls: &[String]) -> Result<Masters, AgentError> {
        let mut addresses = Vec::new();
        let mut server_name = String::new();
        for url in urls {
            let (host, address) = socket_address(url).await?;
            if server_name.is_empty() {
                server_name = host;
            }
            addresses.push(address);
        }
        if addresses.is_empty() {
            return Err(AgentError::ApiUrl {
                url: String::new(),
                reason: "no master given".into(),
            });
        }
        Ok(Masters { addresses, server_name })
    }

    /// The addresses starting from the `first`-th (modulo their count), then the others in
    /// order: agents that prefer different masters spread their connections over all of them.
    pub fn rotated(&self, first: usize) -> Vec<SocketAddr> {
        let mut addresses = self.addresses.clone();
        let count = addresses.len().max(1);
        addresses.rotate_left(first % count);
        addresses
    }
}

/// `host:port` of an `https://host:port` URL, resolved.
async fn socket_address(url: &str) -> Result<(String, SocketAddr), AgentError> {
    let invalid = |reason: &str| AgentError::ApiUrl { url: url.into(), reason: reason.into() };
    let authority = url.strip_prefix("https://").ok_or_else(|| invalid("not https://"))?;
    let authority = authority.trim_end_matches('/');
    let host =
        authority.rsplit_once(':').map(|(host, _)| host).ok_or_else(|| invalid("no port"))?;
    let address = tokio::net::lookup_host(authority)
        .await
        .map_err(|err| invalid(&err.to_string()))?
        .next()
        .ok_or_else(|| invalid("resolves to nothing"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), address))
}

/// A kube client for the API at `local` (a forwarder), verifying the masters as `server_name`
/// and presenting the node's certificate of `files`.
pub(crate) async fn client(
    files: TlsFiles<'_>,
    local: SocketAddr,
    server_name: &str,
) -> Result<kube::Client, AgentError> {
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: masters
  cluster:
    server: https://{local}
    tls-server-name: {server_name}
    certificate-authority: {}
contexts:
- name: agent
  context: {{cluster: masters, user: agent}}
current-context: agent
users:
- name: agent
  user:
    client-certificate: {}
    client-key: {}
",
        files.ca.display(),
        files.cert.display(),
        files.key.display()
    );
    let error = |e: &dyn std::fmt::Display| AgentError::Client(e.to_string());
    let kubeconfig = Kubeconfig::from_yaml(&yaml).map_err(|e| error(&e))?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| error(&e))?;
    kube::Client::try_from(client_config).map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_resolve_and_rotate() {
        let urls = ["https://127.0.0.1:6443".to_string(), "https://localhost:7443/".to_string()];
        let masters = Masters::resolve(&urls).await.unwrap();
        assert_eq!(masters.server_name, "127.0.0.1");
        assert_eq!(masters.addresses[0], "127.0.0.1:6443".parse().unwrap());
        assert_eq!(masters.addresses[1].port(), 7443);
        assert_eq!(masters.rotated(1), [masters.addresses[1], masters.addresses[0]]);
        assert_eq!(masters.rotated(2), masters.addresses);
        assert!(Masters::resolve(&[]).await.is_err());
        assert!(Masters::resolve(&["http://127.0.0.1:1".into()]).await.is_err());
        assert!(Masters::resolve(&["https://127.0.0.1".into()]).await.is_err());
    }
}
