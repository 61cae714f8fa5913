//! What can go wrong while loading, attaching or programming the dataplane.

use std::io;
use std::path::PathBuf;

use crate::table::Frontend;

/// An error from the eBPF dataplane; every variant names the path, map or program involved.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("cannot mount bpffs at {path}")]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot read the mount table {path}")]
    ReadMounts {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot create the pin directory {path}")]
    CreatePinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot remove {path}")]
    RemovePin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot rename pin {from} to {to}")]
    RenamePin {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot open pinned object {path}")]
    OpenPin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot detach the link pinned at {path}")]
    DetachLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot open cgroup {path}")]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot load the eBPF object with maps pinned in {pin_dir}")]
    Load {
        pin_dir: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },

    #[error("the eBPF object has no program {program}")]
    MissingProgram { program: &'static str },

    #[error("the eBPF object has no map {map}")]
    MissingMap { map: &'static str },

    #[error("cannot load or attach program {program} to cgroup {cgroup}")]
    Program {
        program: &'static str,
        cgroup: PathBuf,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("program {program} was attached without a bpf link (kernel older than 5.7?); links are needed to keep it attached")]
    LinksUnsupported { program: &'static str },

    #[error("cannot pin the link of program {program} at {path}")]
    PinLink {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: Box<aya::pin::PinError>,
    },

    #[error("pinned map {path} does not match this build ({detail}); run `flotilla reset`")]
    IncompatibleMap { path: PathBuf, detail: String },

    #[error("map {map}: {operation} failed")]
    Map {
        map: &'static str,
        operation: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("map services holds an entry with unknown protocol number {protocol}")]
    UnknownProtocol { protocol: u8 },

    #[error(
        "service {frontend:?} uses backend set {set_id} but its slot {slot} is missing from map \
         backends"
    )]
    MissingSlot { frontend: Frontend, set_id: u32, slot: u32 },

    #[error("service {frontend:?} has {count} backends; at most {max} are supported")]
    TooManyBackends { frontend: Frontend, count: usize, max: usize },

    #[error("service {frontend:?} has a session affinity timeout of {millis} ms; it must be 1 ms to {max_millis} ms")]
    InvalidAffinity { frontend: Frontend, millis: u128, max_millis: u32 },
}
