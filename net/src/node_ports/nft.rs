//! The real node-port table: nftables, programmed by piping a script to `nft -f -`.
//!
//! `nft` rather than netlink from Rust: the CNI plugins already need the nftables tools
//! (iptables-nft), a script is one atomic transaction, and the text is what an operator reads
//! back with `nft list table ip <table>`. One process per update costs a few milliseconds,
//! and updates are batched by the caller.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::NodePortError;
use super::script;
use super::state::Update;
use super::table::NodePortTable;

/// Where `nft` is looked for after `PATH`.
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"];
/// One `nft` run, which the kernel answers in milliseconds.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);
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
        let program = find_nft().ok_or(NodePortError::NotInstalled)?;
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
        let program = PathBuf::from(self.command.first().cloned().unwrap_or_default());
        let spawn_error = |source| NodePortError::Spawn { program: program.clone(), source };
        let mut child = Command::new(&program)
            .args(self.command.iter().skip(1))
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let finished = async {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(script.as_bytes()).await?;
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(NFT_TIMEOUT, finished)
            .await
            .map_err(|_| NodePortError::Timeout { program: program.clone(), timeout: NFT_TIMEOUT })?
            .map_err(spawn_error)?;
        if !output.status.success() {
            return Err(NodePortError::Failed {
                program,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
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

/// The first executable `nft` in `PATH`, then in the system directories.
fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|candidate| candidate.is_file())
}
