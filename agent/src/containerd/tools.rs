//! The programs the node's containerd needs, found on this machine.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ContainerdError;

/// Searched after `PATH`: an agent started with a minimal environment still finds `runc` in
/// /usr/sbin.
const SYSTEM_DIRS: [&str; 6] =
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
/// Where distributions put the CNI plugins: Debian's package, then the upstream tarball's.
const CNI_BIN_DIRS: [&str; 3] = ["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"];
/// The plugins the node's network uses. containerd runs `loopback` for every sandbox by itself.
pub(crate) const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// Absolute paths of the programs containerd, its shims and its CNI plugins run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    /// The runtime shim containerd starts per pod; it must be on containerd's `PATH`.
    pub shim: PathBuf,
    pub runc: PathBuf,
    /// The bridge and portmap plugins run it to masquerade and forward ports.
    pub iptables: PathBuf,
    /// The directory holding [`CNI_PLUGINS`].
    pub cni_bin_dir: PathBuf,
}

impl Tools {
    /// Finds every program, or says which one to install.
    pub fn find() -> Result<Tools, ContainerdError> {
        Ok(Tools {
            containerd: find_program("containerd")?,
            ctr: find_program("ctr")?,
            shim: find_program("containerd-shim-runc-v2")?,
            runc: find_program("runc")?,
            iptables: find_program("iptables")?,
            cni_bin_dir: find_cni_bin_dir()?,
        })
    }

    /// The `PATH` containerd runs with: the shim's and iptables' directories first (containerd
    /// looks the shim up there, the CNI plugins iptables), then the agent's own `PATH`.
    pub(crate) fn child_path(&self) -> OsString {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let own = std::env::var_os("PATH").unwrap_or_default();
        let firsts =
            [&self.shim, &self.iptables, &self.runc].map(|p| p.parent().map(Path::to_path_buf));
        for dir in firsts.into_iter().flatten().chain(std::env::split_paths(&own)) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        std::env::join_paths(dirs).unwrap_or(own)
    }
}

/// The first executable `name` in `PATH`, then in the system directories.
pub(crate) fn find_program(name: &str) -> Result<PathBuf, ContainerdError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| ContainerdError::NotInstalled { program: name.to_string() })
}

fn find_cni_bin_dir() -> Result<PathBuf, ContainerdError> {
    let searched: Vec<PathBuf> = CNI_BIN_DIRS.iter().map(PathBuf::from).collect();
    let missing_in = |dir: &Path| -> Vec<String> {
        CNI_PLUGINS
            .iter()
            .filter(|plugin| !is_executable(&dir.join(plugin)))
            .map(|plugin| plugin.to_string())
            .collect()
    };
    let mut fewest_missing: Option<Vec<String>> = None;
    for dir in &searched {
        let missing = missing_in(dir);
        if missing.is_empty() {
            return Ok(dir.clone());
        }
        if fewest_missing.as_ref().is_none_or(|fewest| missing.len() < fewest.len()) {
            fewest_missing = Some(missing);
        }
    }
    Err(ContainerdError::CniPluginsMissing {
        missing: fewest_missing.unwrap_or_default(),
        searched,
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_itself_and_the_install_script() {
        let error = find_program("flotilla-no-such-program").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("flotilla-no-such-program is not installed"), "{message}");
        assert!(message.contains("deploy/install.sh"), "{message}");
    }

    #[test]
    fn finds_programs_in_the_system_directories() {
        // `sh` is in /bin or /usr/bin on every machine this builds on.
        let sh = find_program("sh").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
    }

    #[test]
    fn containerd_runs_with_the_shims_directory_on_its_path() {
        let tools = Tools {
            containerd: "/opt/x/containerd".into(),
            ctr: "/opt/x/ctr".into(),
            shim: "/opt/shim/containerd-shim-runc-v2".into(),
            runc: "/usr/sbin/runc".into(),
            iptables: "/usr/sbin/iptables".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
        };
        let path = tools.child_path();
        let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        assert_eq!(dirs[..2], [PathBuf::from("/opt/shim"), PathBuf::from("/usr/sbin")]);
        let unique: std::collections::HashSet<_> = dirs.iter().collect();
        assert_eq!(unique.len(), dirs.len(), "no directory twice: {dirs:?}");
    }
}
