//! Integration tests of flotilla-net, in one binary to keep link time down.
//!
//! - [`dns`]: the cluster DNS over real UDP and TCP sockets on 127.0.0.1.
//! - [`gossip`]: gossip members joining, failing and leaving on 127.0.0.1.
//! - [`node_ports`]: the node ports' nftables table translating real packets between network
//!   namespaces (needs root, nft and busybox).

// Tests may unwrap: a panic is a test failure with its location.
#![allow(clippy::unwrap_used)]

mod dns;
mod gossip;
mod node_ports;
