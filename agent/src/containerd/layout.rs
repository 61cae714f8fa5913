//! Where the node's containerd keeps everything, and the names it uses on the host.
//!
//! Invariants: every path lies under one base directory, `<data_dir>/containerd`, so two agents
//! with different data directories never share a file; the host-wide names (bridge, CNI network,
//! cgroup parent) are derived from the node name alone, so two agents of different nodes on one
//! machine never share them; and the names stay the same across agent versions, so a newer
//! agent still finds (and `reset` still removes) what an older one left.

use std::path::{Path, PathBuf};

use super::ContainerdError;

/// Longest path a Unix socket may have: `sun_path` is 108 bytes with the terminating NUL.
const SOCKET_PATH_LIMIT: usize = 107;
/// containerd's ttrpc socket is its gRPC socket with this suffix, and the longer of the two.
const TTRPC_SUFFIX: &str = ".ttrpc";
/// Linux interface names are at most 15 bytes (`IFNAMSIZ` is 16 with the NUL).
const INTERFACE_NAME_LIMIT: usize = 15;
/// containerd's volatile state directory, under the base.
const STATE_DIR: &str = "state";
/// The parent of every node's pod cgroups (cgroupfs driver paths).
const CGROUP_ROOT: &str = "/flotilla";

/// Every path and host-wide name of one node's containerd. Built by [`Layout::new`], which
/// validates it; immutable afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    node: String,
    base: PathBuf,
    bridge: String,
    network: String,
}

impl Layout {
    /// The layout of node `node` whose agent keeps its state in `data_dir` (made absolute).
    pub fn new(data_dir: &Path, node: &str) -> Result<Layout, ContainerdError> {
        validate_node_name(node)?;
        let data_dir = std::path::absolute(data_dir)
            .map_err(ContainerdError::io("resolving the data directory", data_dir))?;
        let hash = format!("{:010x}", fnv1a(node.as_bytes()) & 0xff_ffff_ffff);
        let layout = Layout {
            node: node.to_string(),
            base: base_in(&data_dir),
            bridge: format!("flot-{hash}"),
            network: format!("flotilla-{hash}"),
        };
        let ttrpc = layout.ttrpc_socket();
        let length = ttrpc.as_os_str().len();
        if length > SOCKET_PATH_LIMIT {
            return Err(ContainerdError::SocketPathTooLong {
                path: ttrpc,
                length,
                limit: SOCKET_PATH_LIMIT,
            });
        }
        debug_assert!(layout.bridge.len() <= INTERFACE_NAME_LIMIT);
        Ok(layout)
    }

    /// The node this layout belongs to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `<data_dir>/containerd`: everything below is this containerd's.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// containerd's persistent root: content store, snapshots, metadata.
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// containerd's volatile state: sockets, task bundles, sandbox network namespaces. Nothing
    /// in it outlives `reset`.
    pub fn state(&self) -> PathBuf {
        self.base.join(STATE_DIR)
    }

    /// containerd's gRPC socket, which CRI clients and `ctr` use.
    pub fn socket(&self) -> PathBuf {
        socket_in(&self.base)
    }

    /// The gRPC socket of the containerd an agent with `data_dir` runs, whatever its node:
    /// for tools that reach a running node's containerd (`flotilla image import`).
    pub fn socket_of(data_dir: &Path) -> PathBuf {
        socket_in(&base_in(data_dir))
    }

    /// containerd's ttrpc socket (for shims); the gRPC socket with a suffix.
    pub fn ttrpc_socket(&self) -> PathBuf {
        let mut socket = self.socket().into_os_string();
        socket.push(TTRPC_SUFFIX);
        PathBuf::from(socket)
    }

    /// The pid of the containerd the agent started, so a restarted agent finds it again.
    pub fn pid_file(&self) -> PathBuf {
        self.state().join("containerd.pid")
    }

    /// containerd's configuration, written at every start.
    pub fn config(&self) -> PathBuf {
        self.base.join("config.toml")
    }

    /// The directory containerd watches for the CNI network configuration.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.base.join("net.d")
    }

    /// The node's CNI network configuration (the only file in [`Layout::cni_conf_dir`]).
    pub fn cni_conflist(&self) -> PathBuf {
        self.cni_conf_dir().join("10-flotilla.conflist")
    }

    /// Where the host-local IPAM plugin keeps its leases (`<dir>/<network>/<ip>`).
    pub fn cni_data_dir(&self) -> PathBuf {
        self.base.join("cni")
    }

    /// containerd's own stdout and stderr.
    pub fn log_file(&self) -> PathBuf {
        self.base.join("containerd.log")
    }

    /// Where container logs go (kubelet's `/var/log/pods`): the sandboxes' `log_directory`.
    pub fn pod_log_dir(&self) -> PathBuf {
        self.base.join("pods")
    }

    /// The Linux bridge the node's pods attach to: `flot-` and ten hex digits of the node
    /// name's hash (15 bytes).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The CNI network's name; it also names the network's iptables rules
    /// (`name: "<network>" id: "<sandbox>"` comments).
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The nftables table (family `ip`) of the node's node ports for other machines: named as
    /// the CNI network, whose plugins name no table of their own after it.
    pub fn node_port_table(&self) -> &str {
        &self.network
    }

    /// The nftables table (family `ip`) that masquerades the node's pods leaving the pod
    /// networks.
    pub fn egress_table(&self) -> String {
        format!("{}-egress", self.network)
    }

    /// The cgroup (cgroupfs path) under which this node's pod cgroups go: see [`cgroup_parent`].
    pub fn cgroup_parent(&self) -> String {
        cgroup_parent(&self.node)
    }
}

fn base_in(data_dir: &Path) -> PathBuf {
    data_dir.join("containerd")
}

fn socket_in(base: &Path) -> PathBuf {
    base.join(STATE_DIR).join("containerd.sock")
}

/// The cgroup (a cgroupfs driver path) under which node `node` puts its pod cgroups, as
/// `<parent>/pod<uid>`: `/flotilla/<node>`. runc creates it in every hierarchy (each cgroup v1
/// controller and, on hybrid machines, the v2 one); nothing removes it but the agent.
pub fn cgroup_parent(node: &str) -> String {
    format!("{CGROUP_ROOT}/{node}")
}

/// Node names are DNS subdomains; this checks what the paths and names here rely on.
fn validate_node_name(node: &str) -> Result<(), ContainerdError> {
    let invalid = |reason: &str| ContainerdError::InvalidNodeName {
        name: node.to_string(),
        reason: reason.to_string(),
    };
    if node.is_empty() || node.len() > 253 {
        return Err(invalid("must have 1 to 253 characters"));
    }
    if !node.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(invalid("may only have lowercase letters, digits, '-' and '.'"));
    }
    if !node.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !node.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(invalid("must start and end with a letter or digit"));
    }
    Ok(())
}

/// 64-bit FNV-1a: a hash that, unlike std's `DefaultHasher`, is fixed forever, so the names
/// derived from it are the same for every agent version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_lies_under_the_base_directory() {
        let layout = Layout::new(Path::new("/var/lib/flotilla/agent"), "node-1").unwrap();
        let base = Path::new("/var/lib/flotilla/agent/containerd");
        assert_eq!(layout.base(), base);
        for path in [
            layout.root(),
            layout.state(),
            layout.socket(),
            layout.ttrpc_socket(),
            layout.pid_file(),
            layout.config(),
            layout.cni_conf_dir(),
            layout.cni_conflist(),
            layout.cni_data_dir(),
            layout.log_file(),
            layout.pod_log_dir(),
        ] {
            assert!(path.starts_with(base), "{path:?}");
        }
        assert_eq!(layout.socket(), base.join("state/containerd.sock"));
        assert_eq!(layout.ttrpc_socket(), base.join("state/containerd.sock.ttrpc"));
    }

    #[test]
    fn host_wide_names_are_stable_short_and_distinct_per_node() {
        let first = Layout::new(Path::new("/a"), "node-1").unwrap();
        let again = Layout::new(Path::new("/elsewhere"), "node-1").unwrap();
        let second = Layout::new(Path::new("/a"), "node-2").unwrap();
        assert_eq!(first.bridge(), again.bridge(), "derived from the node name only");
        assert_ne!(first.bridge(), second.bridge());
        assert_ne!(first.network(), second.network());
        // Pinned: a changed hash would strand the bridges and rules of older agents.
        assert_eq!(first.bridge(), "flot-c2207879c3");
        assert_eq!(first.network(), "flotilla-c2207879c3");
        assert_eq!(first.node_port_table(), "flotilla-c2207879c3");
        let long = Layout::new(Path::new("/a"), &"n".repeat(253)).unwrap();
        for layout in [&first, &second, &long] {
            assert!(layout.bridge().len() <= INTERFACE_NAME_LIMIT, "{}", layout.bridge());
            assert!(layout.bridge().starts_with("flot-"));
            assert!(layout.network().starts_with("flotilla-"));
        }
        assert_eq!(first.cgroup_parent(), "/flotilla/node-1");
        assert_eq!(cgroup_parent("a.b"), "/flotilla/a.b");
    }

    #[test]
    fn a_relative_data_directory_is_made_absolute() {
        let layout = Layout::new(Path::new("data"), "n").unwrap();
        assert!(layout.base().is_absolute(), "{:?}", layout.base());
        assert!(layout.base().ends_with("data/containerd"));
    }

    #[test]
    fn rejects_socket_paths_unix_sockets_cannot_have() {
        let deep = format!("/{}", "d".repeat(80));
        let error = Layout::new(Path::new(&deep), "n").unwrap_err();
        assert!(
            matches!(
                error,
                ContainerdError::SocketPathTooLong { length, limit: 107, .. } if length > 107
            ),
            "{error}"
        );
        assert!(error.to_string().contains("choose a shorter data directory"), "{error}");
        // The longest directory that still fits: the ttrpc socket is exactly 107 bytes.
        let suffix = "/containerd/state/containerd.sock.ttrpc".len();
        let fits = format!("/{}", "d".repeat(SOCKET_PATH_LIMIT - suffix - 1));
        Layout::new(Path::new(&fits), "n").unwrap();
    }

    #[test]
    fn rejects_node_names_that_are_not_dns_subdomains() {
        for name in ["", "Node", "a/b", "..", "-a", "a-", "a b", &"n".repeat(254)] {
            let error = Layout::new(Path::new("/a"), name).unwrap_err();
            assert!(matches!(error, ContainerdError::InvalidNodeName { .. }), "{name:?}: {error}");
        }
        for name in ["a", "node-1", "n1.example.com", "0"] {
            Layout::new(Path::new("/a"), name).unwrap();
        }
    }
}
