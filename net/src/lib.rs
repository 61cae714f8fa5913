//! Flotilla's node networking: the service proxy that programs the eBPF dataplane from
//! Services and EndpointSlices, and the cluster DNS.

#![cfg_attr(test, allow(clippy::unwrap_used))]
pub mod dns;
pub mod feed;
pub mod node;
pub mod proxy;
