//! The programs' attachment to the cgroup, as bpf links pinned in the pin directory.
//!
//! Invariants: `<pin_dir>/link_<program>` names the one link of each program that the
//! dataplane keeps; it stays attached with no process running. A new link is attached and
//! pinned at `link_<program>_staged` first, then renamed over the old pin (bpffs renames
//! atomically) and only then is the old link detached, so each hook always has a program
//! attached. For a moment both run; that is harmless, as the second program sees a backend
//! address, which is never a frontend.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr};
use aya::util::KernelVersion;
use aya::Ebpf;

use crate::error::EbpfError;
use crate::sys;

/// The programs in `bpf/lb.c`, by function name.
pub(crate) const PROGRAMS: [&str; 4] = ["connect4", "sendmsg4", "recvmsg4", "getpeername4"];

const LINK_PREFIX: &str = "link_";
// bpffs refuses dots in names.
const STAGED_SUFFIX: &str = "_staged";

/// Where the link of `program` is pinned.
pub(crate) fn link_pin(pin_dir: &Path, program: &str) -> PathBuf {
    pin_dir.join(format!("{LINK_PREFIX}{program}"))
}

/// Loads every program, attaches it to `cgroup` and pins its link in `pin_dir`, replacing
/// (and detaching) the link an earlier agent pinned there.
pub(crate) fn attach_all(ebpf: &mut Ebpf, pin_dir: &Path, cgroup: &Path) -> Result<(), EbpfError> {
    let cgroup_dir = File::open(cgroup)
        .map_err(|source| EbpfError::OpenCgroup { path: cgroup.to_owned(), source })?;
    // Older kernels attach cgroup programs without bpf links, which cannot outlive the agent.
    // aya decides the same way (an unreadable version means no links).
    let has_links =
        KernelVersion::current().is_ok_and(|current| current >= KernelVersion::new(5, 7, 0));
    if !has_links {
        return Err(EbpfError::LinksUnsupported { program: PROGRAMS[0] });
    }
    for program in PROGRAMS {
        let link = attach(ebpf, program, cgroup, &cgroup_dir)?;
        replace_pinned(link, pin_dir, program)?;
    }
    Ok(())
}

fn attach(
    ebpf: &mut Ebpf,
    program: &'static str,
    cgroup: &Path,
    cgroup_dir: &File,
) -> Result<FdLink, EbpfError> {
    let program_error = |source| EbpfError::Program {
        program,
        cgroup: cgroup.to_owned(),
        source: Box::new(source),
    };
    let loaded: &mut CgroupSockAddr = ebpf
        .program_mut(program)
        .ok_or(EbpfError::MissingProgram { program })?
        .try_into()
        .map_err(program_error)?;
    loaded.load().map_err(program_error)?;
    // With bpf links (kernel 5.7+, checked by the caller) the kernel always attaches in
    // multi-program mode and rejects any flag, so `Single` (no flag) is what asks for it.
    let link_id = loaded.attach(cgroup_dir, CgroupAttachMode::Single).map_err(program_error)?;
    let link = loaded.take_link(link_id).map_err(program_error)?;
    // Kernels before 5.7 attach without bpf links, which cannot be pinned.
    FdLink::try_from(link).map_err(|_| EbpfError::LinksUnsupported { program })
}

fn replace_pinned(link: FdLink, pin_dir: &Path, program: &'static str) -> Result<(), EbpfError> {
    let current = link_pin(pin_dir, program);
    let staged = pin_dir.join(format!("{LINK_PREFIX}{program}{STAGED_SUFFIX}"));
    // A staged pin left by an agent that stopped halfway through opening.
    unpin(&staged)?;
    let pinned = link.pin(&staged).map_err(|source| EbpfError::PinLink {
        program,
        path: staged.clone(),
        source: Box::new(source),
    })?;
    let previous = sys::open_pinned(&current)
        .map_err(|source| EbpfError::OpenPin { path: current.clone(), source })?;
    fs::rename(&staged, &current).map_err(|source| EbpfError::RenamePin {
        from: staged.clone(),
        to: current.clone(),
        source,
    })?;
    // The pin now keeps the new link attached; this process's handle is not needed.
    drop(pinned);
    if let Some(previous) = previous {
        sys::detach_link(&previous)
            .map_err(|source| EbpfError::DetachLink { path: current.clone(), source })?;
        tracing::debug!(program, pin = %current.display(), "replaced the link of an earlier agent");
    }
    Ok(())
}

/// Detaches the link pinned at `path` and removes the pin; nothing pinned there is fine.
fn unpin(path: &Path) -> Result<(), EbpfError> {
    let pinned = sys::open_pinned(path)
        .map_err(|source| EbpfError::OpenPin { path: path.to_owned(), source })?;
    let Some(link) = pinned else {
        return Ok(());
    };
    sys::detach_link(&link)
        .map_err(|source| EbpfError::DetachLink { path: path.to_owned(), source })?;
    remove_file(path)
}

/// Detaches every link pinned in `pin_dir` and removes the directory with the maps pinned in
/// it. Tolerates any of it being gone already.
pub(crate) fn reset(pin_dir: &Path) -> Result<(), EbpfError> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(EbpfError::RemovePin { path: pin_dir.to_owned(), source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|source| EbpfError::RemovePin { path: pin_dir.to_owned(), source })?;
        paths.push(entry.path());
    }
    // Links first: the programs stop before the maps they read go away.
    let is_link = |path: &PathBuf| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(LINK_PREFIX))
    };
    for path in paths.iter().filter(|path| is_link(path)) {
        unpin(path)?;
        tracing::debug!(pin = %path.display(), "detached link");
    }
    for path in paths.iter().filter(|path| !is_link(path)) {
        remove_file(path)?;
    }
    match fs::remove_dir(pin_dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EbpfError::RemovePin { path: pin_dir.to_owned(), source }),
    }
}

fn remove_file(path: &Path) -> Result<(), EbpfError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EbpfError::RemovePin { path: path.to_owned(), source }),
    }
}
