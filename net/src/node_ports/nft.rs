//! The real node-port table: nftables, programmed by piping a script to `nft -f -`.
//!
//! `nft` rather than netlink from Rust: the CNI plugins already need the nftables tools
//! (iptables-nft), a script is one atomic transaction, and the text is what an operator reads
//! back with `nft list table ip <table>`. One process per update costs a few milliseconds,
//! and updates are batched by the caller.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::NodePortError;
use super::script;
use super::state::Update;
use super::table::NodePortTable;
use crate::command;

/// The host's IPv4 forwarding switch, which translated packets need.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// One nftables table (family `ip`) holding a node's node ports.
#[derive(Debug, Clone)]
pub struct NftTable {
    /// `nft`, or a command that runs it (`ip netns exec <ns> nft` in tests).
    command: Vec<OsString>,
    table: String,
    /// The forwarding switch to turn on at the first replacement, if any.
    forwarding: Option<PathBuf>,
}

impl NftTable {
    /// The table `table` programmed with the machine's `nft`; the first replacement also turns
    /// IPv4 forwarding on (the CNI bridge plugin does too, but only once a pod starts, and a node
    /// without pods still forwards node ports to other nodes' pods).
    pub fn find(table: &str) -> Result<NftTable, NodePortError> {
        let program = command::find("nft").ok_or(NodePortError::NotInstalled)?;
        Ok(NftTable {
            command: vec![program.into_os_string()],
            table: table.to_owned(),
            forwarding: Some(PathBuf::from(IP_FORWARD)),
        })
    }

    /// The table `table` programmed by running `command` (a program and its first arguments,
    /// to which `-f -` is added); forwarding is left as it is.
    pub fn with_command(command: Vec<OsString>, table: &str) -> NftTable {
        NftTable { command, table: table.to_owned(), forwarding: None }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// Deletes the table (every node port stops translating); nothing to do if it is absent.
    pub async fn remove(&self) -> Result<(), NodePortError> {
        self.run(&script::delete(&self.table)).await?;
        tracing::info!(table = %self.table, "removed the node ports' nftables table");
        Ok(())
    }

    /// Runs `script` as one transaction.
    async fn run(&self, script: &str) -> Result<(), NodePortError> {
        command::run(&self.command, &["-f", "-"], Some(script)).await?;
        Ok(())
    }
}

impl NodePortTable for NftTable {
    type Error = NodePortError;

    async fn apply(&mut self, update: &Update) -> Result<(), NodePortError> {
        let text = match update {
            Update::Replace(rules) => {
                if let Some(path) = &self.forwarding {
                    turn_forwarding_on(path)?;
                }
                script::replace(&self.table, rules)
            }
            Update::Changes(changes) => script::changes(&self.table, changes),
        };
        self.run(&text).await
    }
}

/// Writes `1` to the forwarding switch at `path` unless it is already on.
fn turn_forwarding_on(path: &Path) -> Result<(), NodePortError> {
    let error = |source| NodePortError::Forwarding { path: path.to_owned(), source };
    if std::fs::read_to_string(path).map_err(error)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(path, "1\n").map_err(error)?;
    tracing::info!(path = %path.display(), "turned IPv4 forwarding on for node ports");
    Ok(())
}
