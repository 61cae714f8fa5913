//! The network a local cluster's agents share, so each agent is a machine of its own: a
//! bridge on the host (the LAN, with the host as its router at the first address) and, per
//! agent, a network namespace joined to it by a veth pair, with its own address and a default
//! route through the host.
//!
//! The masters serve their API on the host's LAN address, which agents and their pods reach
//! like a remote master's. Nodes route each other's pod CIDRs through their LAN addresses
//! ([`flotilla_net::pod_network`]); the host does too, so its processes reach every pod, and
//! it masquerades what leaves the LAN for other networks.
//!
//! Names derive from a hash of the cluster directory, so two clusters on one machine do not
//! meet: bridge `flt-<hash>`, veths `flt-<hash>-<n>`, namespaces `flotilla-<hash>-agent-<n>`,
//! egress table `ip flotilla-<hash>-lan`. The subnet is the first `172.30.<k>.0/24` that no
//! address or route of the host overlaps.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context};
use flotilla_net::command;
use flotilla_net::pod_network::{Commands, Ipv4Net, PodNetworkConfig};
use tokio_util::sync::CancellationToken;

/// Where the LAN's subnet is taken from: `172.30.<k>.0/24`.
const SUBNETS: [u8; 2] = [172, 30];
/// The host of the first agent is `.11`, the next `.12`, …
const FIRST_AGENT_HOST: u8 = 11;
/// The most agents a LAN holds.
pub const MAX_AGENTS: usize = 200;
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// A local cluster's LAN, removed by [`Lan::remove`].
#[derive(Debug, Clone)]
pub struct Lan {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// The host's address on the LAN, where the masters listen.
    pub gateway: Ipv4Addr,
    /// Each agent's network namespace and address.
    pub agents: Vec<(String, Ipv4Addr)>,
    hash: String,
}

impl Lan {
    /// The names and addresses of a LAN for the cluster in `dir` with `agents` agents, on a
    /// subnet that none of the host's networks overlaps. Nothing is created yet.
    pub async fn plan(dir: &Path, agents: usize) -> anyhow::Result<Lan> {
        if agents > MAX_AGENTS {
            bail!("at most {MAX_AGENTS} agents fit a local cluster's network");
        }
        let mut hasher = DefaultHasher::new();
        dir.hash(&mut hasher);
        let hash = format!("{:06x}", hasher.finish() & 0xff_ffff);
        let taken = Commands::find()?.occupied().await?;
        let subnet = (0..=255u8)
            .filter_map(|k| Ipv4Net::containing(Ipv4Addr::new(SUBNETS[0], SUBNETS[1], k, 0), 24))
            .find(|candidate| !taken.iter().any(|t| overlaps(t, candidate)))
            .context("no free 172.30.<k>.0/24 for the cluster's network")?;
        let host = |last: u8| {
            let [a, b, c, _] = subnet.network().octets();
            Ipv4Addr::new(a, b, c, last)
        };
        let agents = (1..=agents)
            .map(|n| (format!("flotilla-{hash}-agent-{n}"), host(FIRST_AGENT_HOST + n as u8 - 1)))
            .collect();
        Ok(Lan { bridge: format!("flt-{hash}"), subnet, gateway: host(1), agents, hash })
    }

    /// The egress table of the host's side.
    fn table(&self) -> String {
        format!("flotilla-{}-lan", self.hash)
    }

    /// Creates the bridge and every agent's namespace. On failure what was made is removed.
    pub async fn create(&self) -> anyhow::Result<()> {
        let made = self.create_all().await;
        if made.is_err() {
            self.remove().await;
        }
        made
    }

    async fn create_all(&self) -> anyhow::Result<()> {
        let bridge = self.bridge.as_str();
        let gateway = format!("{}/{}", self.gateway, self.subnet.prefix());
        ip(&["link", "add", bridge, "type", "bridge"]).await?;
        ip(&["addr", "add", &gateway, "dev", bridge]).await?;
        ip(&["link", "set", bridge, "up"]).await?;
        for (index, (namespace, address)) in self.agents.iter().enumerate() {
            let veth = format!("{bridge}-{}", index + 1);
            let address = format!("{address}/{}", self.subnet.prefix());
            let gateway = self.gateway.to_string();
            ip(&["netns", "add", namespace]).await?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", namespace])
                .await?;
            ip(&["link", "set", &veth, "master", bridge, "up"]).await?;
            ip(&["-n", namespace, "addr", "add", &address, "dev", "eth0"]).await?;
            ip(&["-n", namespace, "link", "set", "lo", "up"]).await?;
            ip(&["-n", namespace, "link", "set", "eth0", "up"]).await?;
            ip(&["-n", namespace, "route", "add", "default", "via", &gateway]).await?;
        }
        // The host routes between the LAN, the pods and other networks.
        if std::fs::read_to_string(IP_FORWARD).context("reading IPv4 forwarding")?.trim() != "1" {
            std::fs::write(IP_FORWARD, "1\n").context("turning IPv4 forwarding on")?;
        }
        Ok(())
    }

    /// Keeps the host's routes to every node's pods, and its masquerade for the LAN, until
    /// `stop`.
    pub fn route(&self, client: kube::Client, stop: CancellationToken) -> anyhow::Result<()> {
        let config = PodNetworkConfig {
            node: None,
            egress_table: self.table(),
            masquerade: BTreeSet::from([self.subnet]),
            internal: BTreeSet::from([self.subnet]),
        };
        let commands = Commands::find()?;
        tokio::spawn(flotilla_net::pod_network::run(client, config, commands, stop));
        Ok(())
    }

    /// Removes the namespaces (and the veths in them), the bridge (and the host's routes
    /// through it) and the host's egress table. Every step runs; failures are logged.
    pub async fn remove(&self) {
        for (namespace, _) in &self.agents {
            if let Err(err) = ip(&["netns", "delete", namespace]).await {
                tracing::debug!(error = %err, "removing an agent's network namespace");
            }
        }
        if let Err(err) = ip(&["link", "delete", &self.bridge]).await {
            tracing::debug!(error = %err, "removing the cluster's bridge");
        }
        match Commands::find() {
            Ok(mut commands) => {
                if let Err(err) = commands.remove_table(&self.table()).await {
                    tracing::warn!(error = %err, "removing the cluster network's egress table");
                }
            }
            Err(err) => tracing::debug!(error = %err, "no nft to remove the egress table with"),
        }
    }

    /// `KEY=value` lines describing the LAN, for `DIR/lan.env`.
    pub fn env(&self) -> String {
        let agents = self.agents.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>();
        format!(
            "FLOTILLA_LAN_BRIDGE={}\nFLOTILLA_LAN_SUBNET={}\nFLOTILLA_LAN_GATEWAY={}\nFLOTILLA_LAN_AGENTS={}\n",
            self.bridge,
            self.subnet,
            self.gateway,
            agents.join(",")
        )
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Runs `ip` with `args`; its standard output.
async fn ip(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let program = command::find("ip").context("`ip` is not installed (install iproute2)")?;
    Ok(command::run(&[program.into_os_string()], args, None).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn networks_overlap_when_either_holds_the_other() {
        let net = |t: &str| t.parse::<Ipv4Net>().unwrap();
        assert!(overlaps(&net("172.30.0.0/16"), &net("172.30.4.0/24")));
        assert!(overlaps(&net("172.30.4.0/24"), &net("172.30.0.0/16")));
        assert!(overlaps(&net("172.30.4.7/32"), &net("172.30.4.0/24")));
        assert!(!overlaps(&net("172.30.5.0/24"), &net("172.30.4.0/24")));
    }
}
