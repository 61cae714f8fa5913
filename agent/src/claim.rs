//! One agent per node name on a machine. A node's machine-wide resources are named after the
//! node alone: its eBPF pin directory (`/sys/fs/bpf/flotilla/<node>`) and its pods' cgroup
//! parent (`/flotilla/<node>`). A second agent of the same name, say another local cluster's
//! `agent-1`, would take over the first one's service maps and programs, and its reset would
//! remove them. So an agent, and a reset, hold an exclusive lock on `<dir>/<node>.lock` (the file
//! names the holder's data directory) and the second one stops with an error saying which.
//!
//! The kernel drops the lock with the process, however it ends, so a killed agent's successor
//! claims the node at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Where the locks live: `/run` is emptied at boot, as are the pins and cgroups they guard.
pub const DEFAULT_CLAIM_DIR: &str = "/run/flotilla/nodes";

/// Why a node could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "node {node} is already run on this machine by the agent with data directory {holder}: \
         its eBPF pins and pod cgroups are named after the node, so give this agent another name \
         (or stop that one first)"
    )]
    Taken { node: String, holder: String },
    #[error("claiming node {node} with {path}: {source}")]
    Io {
        node: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The lock on one node name, held while it lives.
#[derive(Debug)]
pub struct NodeClaim {
    _lock: Flock<File>,
}

impl NodeClaim {
    /// [`NodeClaim::acquire`] in [`DEFAULT_CLAIM_DIR`], waiting as a restarted member does for a
    /// holder that is exiting: a killed agent's successor can start before the kernel has
    /// finished the old process.
    pub async fn wait_for(node: &str, data_dir: &Path) -> Result<NodeClaim, ClaimError> {
        flotilla_store::ports::after_predecessor(
            || std::future::ready(NodeClaim::acquire(Path::new(DEFAULT_CLAIM_DIR), node, data_dir)),
            |error| matches!(error, ClaimError::Taken { .. }),
        )
        .await
    }

    /// Claims `node` for the agent with `data_dir`, or says which agent holds it.
    pub fn acquire(dir: &Path, node: &str, data_dir: &Path) -> Result<NodeClaim, ClaimError> {
        let path = dir.join(format!("{node}.lock"));
        let io = |source: std::io::Error| ClaimError::Io {
            node: node.to_owned(),
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                // Unreadable (being rewritten) still means taken.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "unknown" } else { holder };
                return Err(ClaimError::Taken { node: node.to_owned(), holder: holder.to_owned() });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        let holder = format!("{}\n", data_dir.display());
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        lock.write_all(holder.as_bytes()).map_err(io)?;
        Ok(NodeClaim { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_claimed_once_until_its_holder_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = NodeClaim::acquire(dir.path(), "agent-1", Path::new("/clusters/a/agent-1"))
            .expect("the first claim");

        let second = NodeClaim::acquire(dir.path(), "agent-1", Path::new("/clusters/b/agent-1"));
        let message = second.expect_err("the node is taken").to_string();
        assert!(message.contains("node agent-1 is already run"), "{message}");
        assert!(message.contains("/clusters/a/agent-1"), "{message}");

        // Another name is another claim.
        NodeClaim::acquire(dir.path(), "agent-2", Path::new("/clusters/b/agent-2"))
            .expect("another node");

        drop(first);
        NodeClaim::acquire(dir.path(), "agent-1", Path::new("/clusters/b/agent-1"))
            .expect("claimed again once released");
        let holder = std::fs::read_to_string(dir.path().join("agent-1.lock")).expect("lock file");
        assert_eq!(holder, "/clusters/b/agent-1\n");
    }
}
