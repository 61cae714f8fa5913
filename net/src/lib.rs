//! Flotilla's node networking: the service proxy that programs the eBPF dataplane from
//! Services and EndpointSlices, the node ports' nftables table for clients on other machines,
//! the routes between nodes' pods, the cluster DNS, and the gossip membership of masters and
//! agents.

#![cfg_attr(test, allow(clippy::unwrap_used))]
mod api_relay;
pub mod command;
pub mod dns;
pub mod feed;
pub mod gossip;
pub mod node;
pub mod node_ports;
pub mod pod_network;
pub mod proxy;
