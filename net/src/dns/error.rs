//! The cluster DNS's typed errors.

use std::net::SocketAddr;

/// Why a cluster DNS operation failed.
///
/// Configuration and bind errors stop the server before it starts; upstream errors concern one
/// forwarded query only and end in a SERVFAIL answer to that query.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The cluster domain is not a valid DNS name.
    #[error("invalid cluster domain {domain:?}: {reason}")]
    InvalidDomain { domain: String, reason: String },
    /// The configuration lists no address to listen on.
    #[error("no listen address configured")]
    NoListenAddress,
    /// An upstream resolver is also one of the server's own listen addresses, which would make
    /// every forwarded query loop back to this server.
    #[error("upstream {upstream} is one of the server's own listen addresses")]
    ForwardingLoop { upstream: SocketAddr },
    /// An upstream resolver has port 0.
    #[error("upstream {upstream} has no port")]
    InvalidUpstream { upstream: SocketAddr },
    /// A listening socket could not be created, configured or bound.
    #[error("cannot bind {protocol} socket on {address}: {source}")]
    Bind {
        address: SocketAddr,
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The configuration has no upstream resolver to forward a query to.
    #[error("no upstream resolver configured")]
    NoUpstream,
    /// Talking to an upstream resolver failed.
    #[error("upstream {upstream} failed: {source}")]
    Upstream {
        upstream: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An upstream resolver did not answer in time.
    #[error("upstream {upstream} did not answer within the timeout")]
    UpstreamTimeout { upstream: SocketAddr },
    /// An upstream resolver answered something that is not a response to the query sent.
    #[error("upstream {upstream} sent an unusable response: {reason}")]
    UpstreamResponse { upstream: SocketAddr, reason: String },
    /// A DNS message could not be decoded.
    #[error("cannot decode a dns message: {reason}")]
    Decode { reason: String },
    /// A DNS message could not be encoded.
    #[error("cannot encode a dns message: {reason}")]
    Encode { reason: String },
}
