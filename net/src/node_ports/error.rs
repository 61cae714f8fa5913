//! Why programming the node ports through `nft` failed.

use std::path::PathBuf;

use crate::command::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum NodePortError {
    #[error("nft is not installed (searched PATH, /usr/sbin and /sbin)")]
    NotInstalled,
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("turning IPv4 forwarding on ({path}): {source}")]
    Forwarding { path: PathBuf, source: std::io::Error },
}
