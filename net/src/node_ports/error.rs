//! Why programming the node ports through `nft` failed.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NodePortError {
    #[error("nft is not installed (searched PATH, /usr/sbin and /sbin)")]
    NotInstalled,
    #[error("running {program}: {source}")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("{program} -f - failed ({status}): {stderr}")]
    Failed { program: PathBuf, status: std::process::ExitStatus, stderr: String },
    #[error("{program} did not finish within {timeout:?}")]
    Timeout { program: PathBuf, timeout: Duration },
    #[error("turning IPv4 forwarding on ({path}): {source}")]
    Forwarding { path: PathBuf, source: std::io::Error },
}
