//! Why the node's containerd could not be set up, started, fed or reset.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong with the node's containerd. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error(
        "{program} is not installed (looked in PATH and the system directories): \
         run deploy/install.sh"
    )]
    NotInstalled { program: String },
    #[error(
        "the CNI plugins {missing:?} are missing (looked in {searched:?}): run deploy/install.sh"
    )]
    CniPluginsMissing { missing: Vec<String>, searched: Vec<PathBuf> },
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName { name: String, reason: String },
    #[error(
        "containerd's socket {path} would be {length} bytes, over the {limit} a Unix socket path \
         may have: choose a shorter data directory"
    )]
    SocketPathTooLong { path: PathBuf, length: usize, limit: usize },
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    InvalidPodCidr { cidr: String, reason: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{socket} is served by a process this agent did not start (no live containerd in \
         {pid_file}): stop that process or choose another data directory"
    )]
    SocketInUse { socket: PathBuf, pid_file: PathBuf },
    #[error("containerd exited while starting ({status}); the last lines of {log}:\n{tail}")]
    Exited { status: String, log: PathBuf, tail: String },
    #[error(
        "containerd did not answer on {socket} within {waited:?}; the last lines of {log}:\n{tail}"
    )]
    NotReady { socket: PathBuf, waited: Duration, log: PathBuf, tail: String },
    #[error("containerd's CRI plugin is in state {status:?}, not ok; its lines in {log}:\n{tail}")]
    CriPluginFailed { status: String, log: PathBuf, tail: String },
    #[error("`ctr {args}` failed: {reason}")]
    Ctr { args: String, reason: String },
    #[error("no containerd answers at {socket}: is the node's agent running? (it imports the archives in its image directories when it starts)")]
    NotRunning { socket: PathBuf },
    #[error("importing the image archive {file}: {reason}")]
    Import { file: PathBuf, reason: String },
    #[error(
        "reset left things behind, run it again or remove them by hand:\n  {}",
        failures.join("\n  ")
    )]
    ResetIncomplete { failures: Vec<String> },
}

impl ContainerdError {
    /// An `Io` error for `action` ("writing", "reading", …) on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ContainerdError {
        let path = path.into();
        move |source| ContainerdError::Io { action, path, source }
    }
}
