//! The machine's side of the pod network: routes and addresses through `ip`, the egress table
//! through `nft`. Both run as one short process per call; route changes are rare (a node
//! joins, leaves or moves) and the text is what an operator reads back with
//! `ip route show proto 95` and `nft list table ip <table>`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

use super::plan::{Ipv4Net, RouteChange};
use crate::command::{self, CommandError};

/// The routing protocol number that marks the routes this module owns (`proto 95` in
/// `ip route`): the others on the machine are never touched.
pub const ROUTE_PROTOCOL: &str = "95";

#[derive(Debug, thiserror::Error)]
pub enum PodNetworkError {
    #[error("`{0}` is not installed (iproute2 and nftables are needed for routes between nodes)")]
    NotInstalled(&'static str),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("reading `{command}`: {reason}")]
    Output { command: String, reason: String },
}

/// The machine's routes, addresses and egress table, as the pod network needs them.
pub trait PodNetworkSystem: Send {
    /// The directly connected IPv4 networks of the interfaces that are up, loopback aside.
    fn links(&mut self) -> impl Future<Output = Result<Vec<Ipv4Net>, PodNetworkError>> + Send;
    /// The routes this module owns: destination → gateway.
    fn routes(
        &mut self,
    ) -> impl Future<Output = Result<BTreeMap<Ipv4Net, Ipv4Addr>, PodNetworkError>> + Send;
    fn change_route(
        &mut self,
        change: &RouteChange,
    ) -> impl Future<Output = Result<(), PodNetworkError>> + Send;
    /// Runs an `nft` script as one transaction.
    fn nft(&mut self, script: &str) -> impl Future<Output = Result<(), PodNetworkError>> + Send;
}

/// `ip` and `nft` of this machine, or of a network namespace.
#[derive(Debug, Clone)]
pub struct Commands {
    /// `ip`, or a command that runs it (`ip netns exec <ns> ip`).
    ip: Vec<OsString>,
    /// `nft`, or a command that runs it.
    nft: Vec<OsString>,
}

impl Commands {
    /// The machine's own `ip` and `nft`.
    pub fn find() -> Result<Commands, PodNetworkError> {
        let ip = command::find("ip").ok_or(PodNetworkError::NotInstalled("ip"))?;
        let nft = command::find("nft").ok_or(PodNetworkError::NotInstalled("nft"))?;
        Ok(Commands { ip: vec![ip.into()], nft: vec![nft.into()] })
    }

    /// `ip` and `nft` run inside the named network namespace (`ip netns exec`).
    pub fn in_namespace(namespace: &str) -> Result<Commands, PodNetworkError> {
        let ip = command::find("ip").ok_or(PodNetworkError::NotInstalled("ip"))?;
        let nft = command::find("nft").ok_or(PodNetworkError::NotInstalled("nft"))?;
        let exec = |program: PathBuf| -> Vec<OsString> {
            vec![ip.clone().into(), "netns".into(), "exec".into(), namespace.into(), program.into()]
        };
        Ok(Commands { ip: exec(ip.clone()), nft: exec(nft) })
    }

    /// Deletes every route this module made: what `flotilla reset` leaves of the routes.
    pub async fn remove_routes(&mut self) -> Result<(), PodNetworkError> {
        for to in self.routes().await?.keys() {
            self.change_route(&RouteChange::Delete { to: *to }).await?;
        }
        Ok(())
    }

    /// Deletes the egress table `table`; nothing to do if it is absent.
    pub async fn remove_table(&mut self, table: &str) -> Result<(), PodNetworkError> {
        self.nft(&format!("table ip {table} {{}}\ndelete table ip {table}\n")).await
    }

    /// Every IPv4 network the machine's addresses (loopback included) and routes (in any
    /// table, the default route aside) cover: where a new network must not go.
    pub async fn occupied(&self) -> Result<Vec<Ipv4Net>, PodNetworkError> {
        let command = "ip -j -4 addr show";
        let output = self.ip(&["-j", "-4", "addr", "show"]).await?;
        let mut networks = parse_address_networks(&output, true)
            .map_err(|reason| PodNetworkError::Output { command: command.into(), reason })?;
        let command = "ip -j -4 route show table all";
        let output = self.ip(&["-j", "-4", "route", "show", "table", "all"]).await?;
        let routes: Vec<Route> = serde_json::from_slice(&output).map_err(|e| {
            PodNetworkError::Output { command: command.into(), reason: e.to_string() }
        })?;
        networks.extend(
            routes.iter().filter_map(|r| r.dst.parse::<Ipv4Net>().ok()).filter(|n| n.prefix() > 0),
        );
        Ok(networks)
    }

    async fn ip(&self, args: &[&str]) -> Result<Vec<u8>, PodNetworkError> {
        Ok(command::run(&self.ip, args, None).await?)
    }
}

impl PodNetworkSystem for Commands {
    async fn links(&mut self) -> Result<Vec<Ipv4Net>, PodNetworkError> {
        let output = self.ip(&["-j", "-4", "addr", "show", "up"]).await?;
        parse_address_networks(&output, false).map_err(|reason| PodNetworkError::Output {
            command: "ip -j -4 addr show up".into(),
            reason,
        })
    }

    async fn routes(&mut self) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, PodNetworkError> {
        let output = self.ip(&["-j", "-4", "route", "show", "proto", ROUTE_PROTOCOL]).await?;
        parse_routes(&output).map_err(|reason| PodNetworkError::Output {
            command: format!("ip -j -4 route show proto {ROUTE_PROTOCOL}"),
            reason,
        })
    }

    async fn change_route(&mut self, change: &RouteChange) -> Result<(), PodNetworkError> {
        match change {
            RouteChange::Replace { to, via } => {
                let (to, via) = (to.to_string(), via.to_string());
                self.ip(&["route", "replace", &to, "via", &via, "proto", ROUTE_PROTOCOL]).await?;
            }
            RouteChange::Delete { to } => {
                let to = to.to_string();
                self.ip(&["route", "delete", &to, "proto", ROUTE_PROTOCOL]).await?;
            }
        }
        Ok(())
    }

    async fn nft(&mut self, script: &str) -> Result<(), PodNetworkError> {
        command::run(&self.nft, &["-f", "-"], Some(script)).await?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    addr_info: Vec<Address>,
}

#[derive(Deserialize)]
struct Address {
    #[serde(default)]
    family: String,
    #[serde(default)]
    local: String,
    #[serde(default)]
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

/// The networks of `ip -j -4 addr show`'s addresses; host-scoped ones (loopback) only with
/// `host_scoped`.
fn parse_address_networks(output: &[u8], host_scoped: bool) -> Result<Vec<Ipv4Net>, String> {
    let links: Vec<Link> = serde_json::from_slice(output).map_err(|e| e.to_string())?;
    let mut networks: Vec<Ipv4Net> = links
        .iter()
        .flat_map(|link| &link.addr_info)
        .filter(|a| a.family == "inet" && (host_scoped || a.scope != "host"))
        .filter_map(|a| Ipv4Net::containing(a.local.parse().ok()?, a.prefixlen))
        .collect();
    networks.sort();
    networks.dedup();
    Ok(networks)
}

#[derive(Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
}

/// `ip -j -4 route show`'s routes through a gateway, destination → gateway.
fn parse_routes(output: &[u8]) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, String> {
    let routes: Vec<Route> = serde_json::from_slice(output).map_err(|e| e.to_string())?;
    let mut parsed = BTreeMap::new();
    for route in routes {
        let Some(gateway) = route.gateway else { continue };
        let to = if route.dst == "default" { "0.0.0.0/0".parse() } else { route.dst.parse() };
        let to: Ipv4Net = to?;
        let via: Ipv4Addr = gateway.parse().map_err(|_| format!("gateway {gateway:?}"))?;
        parsed.insert(to, via);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_the_networks_of_addresses_beyond_loopback() {
        let output = br#"[
            {"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[
                {"family":"inet","local":"172.30.0.11","prefixlen":24,"scope":"global"},
                {"family":"inet","local":"172.30.0.12","prefixlen":24,"scope":"global","secondary":true}]},
            {"ifindex":3,"ifname":"cni0","addr_info":[{"family":"inet","local":"10.244.1.1","prefixlen":24,"scope":"global"}]},
            {"ifindex":4,"ifname":"down0","addr_info":[]}
        ]"#;
        let text = |host_scoped| {
            let networks = parse_address_networks(output, host_scoped).unwrap();
            networks.iter().map(|n| n.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(text(false), ["10.244.1.0/24", "172.30.0.0/24"]);
        assert_eq!(text(true), ["10.244.1.0/24", "127.0.0.0/8", "172.30.0.0/24"]);
        assert!(parse_address_networks(b"[]", false).unwrap().is_empty());
        assert!(parse_address_networks(b"not json", false).is_err());
    }

    #[test]
    fn routes_are_read_by_destination_and_gateway() {
        let output = br#"[
            {"dst":"10.244.2.0/24","gateway":"172.30.0.12","dev":"eth0","protocol":"95","flags":[]},
            {"dst":"default","gateway":"172.30.0.1","dev":"eth0","protocol":"95","flags":[]},
            {"dst":"10.244.7.0/24","dev":"cni0","protocol":"95","scope":"link","flags":[]}
        ]"#;
        let routes = parse_routes(output).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[&"10.244.2.0/24".parse().unwrap()], Ipv4Addr::new(172, 30, 0, 12));
        assert_eq!(routes[&"0.0.0.0/0".parse().unwrap()], Ipv4Addr::new(172, 30, 0, 1));
        assert!(parse_routes(br#"[{"dst":"10.1.1.1/8","gateway":"1.1.1.1"}]"#).is_err());
    }
}
