//! Plain, validated-once configuration of the zone and the server.
//!
//! Defaults live here and only here: `ZoneConfig::default()` and `DnsConfig::new` use the
//! constants below, so the CLI and the tests share them.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::error::DnsError;

/// The cluster domain used when none is configured.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// The TTL, in seconds, of every record the zone serves.
pub const DEFAULT_TTL: u32 = 5;
/// How long one upstream resolver gets to answer a forwarded query before the next is tried.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle TCP connection is kept open between two queries.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many queries may wait on an upstream resolver at once; a further UDP one is dropped (its
/// client retries), a further TCP one waits. Queries the zone answers never wait on this.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// What the zone serves: the cluster domain and the TTL of its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain, e.g. `cluster.local`; a trailing dot is optional.
    pub domain: String,
    /// The TTL, in seconds, of answers and of negative answers (SOA minimum).
    pub ttl: u32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self { domain: DEFAULT_DOMAIN.to_owned(), ttl: DEFAULT_TTL }
    }
}

impl ZoneConfig {
    /// Returns the cluster domain as a lowercase, fully qualified name, or why it is invalid.
    pub fn origin(&self) -> Result<Name, DnsError> {
        let invalid = |reason: &str| DnsError::InvalidDomain {
            domain: self.domain.clone(),
            reason: reason.to_owned(),
        };
        let trimmed = self.domain.trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(invalid("the cluster domain must not be the root"));
        }
        let labels: Vec<&[u8]> = trimmed.split('.').map(str::as_bytes).collect();
        if labels.iter().any(|label| !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
        {
            return Err(invalid("labels may hold only letters, digits and '-'"));
        }
        let name = Name::from_labels(labels).map_err(|error| invalid(&error.to_string()))?;
        Ok(name.to_lowercase())
    }

    /// Checks the configuration once, before the zone is built.
    pub fn validate(&self) -> Result<(), DnsError> {
        self.origin().map(|_| ())
    }
}

/// How the server listens and where it forwards names outside the cluster domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The addresses to answer on, over both UDP and TCP. An IPv4 address need not exist yet
    /// (the sockets are bound with `IP_FREEBIND`). Port 0 picks one free port shared by UDP and
    /// TCP.
    pub listen: Vec<SocketAddr>,
    /// The upstream resolvers, tried in order (see [`super::parse_resolv_conf`]).
    pub upstreams: Vec<SocketAddr>,
    /// How long each upstream gets before the next one is tried.
    pub upstream_timeout: Duration,
    /// How long an idle TCP connection stays open.
    pub tcp_idle_timeout: Duration,
    /// How many queries may wait on an upstream resolver at once (see
    /// [`DEFAULT_MAX_IN_FLIGHT`]).
    pub max_in_flight: usize,
}

impl DnsConfig {
    /// Returns a configuration with the default timeouts and concurrency.
    pub fn new(listen: Vec<SocketAddr>, upstreams: Vec<SocketAddr>) -> Self {
        Self {
            listen,
            upstreams,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Checks the configuration once, before any socket is bound.
    pub fn validate(&self) -> Result<(), DnsError> {
        if self.listen.is_empty() {
            return Err(DnsError::NoListenAddress);
        }
        for upstream in &self.upstreams {
            if upstream.port() == 0 {
                return Err(DnsError::InvalidUpstream { upstream: *upstream });
            }
            let loops_back = self.listen.iter().any(|listen| {
                listen == upstream
                    || (listen.port() == upstream.port()
                        && listen.ip().is_unspecified()
                        && upstream.ip().is_loopback())
            });
            if loops_back {
                return Err(DnsError::ForwardingLoop { upstream: *upstream });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_lowercase_and_fully_qualified() {
        let config = ZoneConfig { domain: "Cluster.Local.".to_owned(), ttl: 5 };
        assert_eq!(config.origin().unwrap().to_ascii(), "cluster.local.");
    }

    #[test]
    fn invalid_domains_are_rejected() {
        for domain in ["", ".", "a..b", "has space.local", "x_y.local"] {
            let config = ZoneConfig { domain: domain.to_owned(), ttl: 5 };
            assert!(
                matches!(config.validate(), Err(DnsError::InvalidDomain { .. })),
                "{domain:?} must be rejected"
            );
        }
    }

    #[test]
    fn an_upstream_that_is_a_listen_address_is_a_loop() {
        let address: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let config = DnsConfig::new(vec![address], vec![address]);
        assert!(matches!(config.validate(), Err(DnsError::ForwardingLoop { .. })));
        let wildcard = DnsConfig::new(
            vec!["0.0.0.0:53".parse().unwrap()],
            vec!["127.0.0.1:53".parse().unwrap()],
        );
        assert!(matches!(wildcard.validate(), Err(DnsError::ForwardingLoop { .. })));
        let remote = DnsConfig::new(
            vec!["0.0.0.0:53".parse().unwrap()],
            vec!["10.0.0.2:53".parse().unwrap()],
        );
        assert!(remote.validate().is_ok());
        assert!(matches!(
            DnsConfig::new(vec![], vec![]).validate(),
            Err(DnsError::NoListenAddress)
        ));
    }
}
