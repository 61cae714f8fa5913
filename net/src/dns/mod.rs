//! The cluster DNS: answers `*.svc.<domain>` and `*.pod.<domain>` from Services and
//! EndpointSlices, following the Kubernetes DNS-based service discovery specification, and
//! forwards every other name to the node's upstream resolvers.
//!
//! Shape: [`Zone`] is plain data updated in O(changed object) and searched without allocating;
//! [`resolve`] is a pure function from the zone and one question to an answer; [`DnsServer`] is
//! the thin IO around them (UDP and TCP listeners, forwarding), reading the zone through a
//! [`ZoneHandle`] shared with whatever watches the API, so an update is visible to the very
//! next query.
//!
//! Concurrency: one UDP receive loop per runtime worker answers every query the zone can
//! answer inline, with no task per packet; only a query that needs an upstream resolver gets a
//! task of its own, so a slow upstream never holds up zone answers. Each TCP connection has a
//! task. Everything stops when the server's cancellation token is cancelled.
//!
//! ```no_run
//! # async fn example() -> Result<(), flotilla_net::dns::DnsError> {
//! use flotilla_net::dns::{parse_resolv_conf, DnsConfig, DnsServer, Zone, ZoneConfig, ZoneHandle};
//! let zone = ZoneHandle::new(Zone::new(&ZoneConfig::default())?);
//! let upstreams = parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
//! let config = DnsConfig::new(vec!["10.88.0.1:53".parse().unwrap()], upstreams);
//! let server = DnsServer::bind(config, zone.clone()).await?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! server.run(cancel).await;
//! # Ok(())
//! # }
//! ```

mod config;
mod encode;
mod error;
mod forwarder;
mod handle;
mod listener;
mod names;
mod namespaced;
mod objects;
mod resolv_conf;
mod resolver;
mod responder;
mod response;
mod server;
mod zone;

pub use config::{
    DnsConfig, ZoneConfig, DEFAULT_DOMAIN, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_TTL, DEFAULT_UPSTREAM_TIMEOUT,
};
pub use error::DnsError;
pub use handle::ZoneHandle;
pub use objects::SERVICE_NAME_LABEL;
pub use resolv_conf::parse_resolv_conf;
pub use resolver::{resolve, Answer, Resolution, SCHEMA_VERSION};
pub use server::DnsServer;
pub use zone::Zone;
