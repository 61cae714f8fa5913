//! Flotilla's node networking: the service proxy that programs the eBPF dataplane from
//! Services and EndpointSlices, the cluster DNS, and the gossip membership of masters and
//! agents.

#![cfg_attr(test, allow(clippy::unwrap_used))]
pub mod dns;
pub mod feed;
pub mod gossip;
pub mod node;
pub mod proxy;
