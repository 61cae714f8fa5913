//! The few system calls aya does not wrap: mounting bpffs, opening a pinned object and
//! detaching a link no matter who else holds it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use nix::libc;
use nix::mount::{mount, MsFlags};

use crate::error::EbpfError;

/// Where bpffs is mounted on Linux.
pub(crate) const BPFFS: &str = "/sys/fs/bpf";
const MOUNTS: &str = "/proc/mounts";
const BPFFS_TYPE: &str = "bpf";

/// `enum bpf_cmd` values from `linux/bpf.h`.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Mounts bpffs at `/sys/fs/bpf` unless a bpffs is mounted there already.
///
/// Racing callers (tests start many processes at once) must not stack two mounts, or each
/// would pin into a different one: the check and the mount happen under an exclusive lock on
/// the mount point directory. Whoever mounts holds the lock on the directory underneath the
/// mount; later callers lock the bpffs root instead, but find the mount already listed.
pub(crate) fn ensure_bpffs() -> Result<(), EbpfError> {
    if bpffs_mounted()? {
        return Ok(());
    }
    let mount_error = |source: io::Error| EbpfError::MountBpffs { path: BPFFS.into(), source };
    let mount_point = File::open(BPFFS).map_err(mount_error)?;
    let _lock = Flock::lock(mount_point, FlockArg::LockExclusive)
        .map_err(|(_, errno)| mount_error(errno.into()))?;
    if bpffs_mounted()? {
        return Ok(());
    }
    mount(Some(BPFFS_TYPE), BPFFS, Some(BPFFS_TYPE), MsFlags::empty(), None::<&str>)
        .map_err(|errno| mount_error(errno.into()))?;
    tracing::info!(path = BPFFS, "mounted bpffs");
    Ok(())
}

fn bpffs_mounted() -> Result<bool, EbpfError> {
    let mounts = std::fs::read_to_string(MOUNTS)
        .map_err(|source| EbpfError::ReadMounts { path: MOUNTS.into(), source })?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_device, target, fstype) = (fields.next(), fields.next(), fields.next());
        target == Some(BPFFS) && fstype == Some(BPFFS_TYPE)
    }))
}

/// `union bpf_attr` as `BPF_OBJ_GET` reads it.
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `union bpf_attr` as `BPF_LINK_DETACH` reads it.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
    pad: u32,
}

/// Opens the object pinned at `path`; `Ok(None)` when nothing is pinned there.
pub(crate) fn open_pinned(path: &Path) -> io::Result<Option<OwnedFd>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let attr = ObjGetAttr { pathname: c_path.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix for BPF_OBJ_GET of the size
    // passed; `c_path` outlives the call. The kernel reads only `size_of::<ObjGetAttr>()` bytes.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if result < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(error),
        };
    }
    let fd = RawFd::try_from(result)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    // SAFETY: BPF_OBJ_GET succeeded, so `fd` is a new file descriptor this process owns and
    // nothing else closes.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Detaches the link `link` from its hook, even while other processes hold it.
pub(crate) fn detach_link(link: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let fd = u32::try_from(link.as_raw_fd())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let attr = LinkDetachAttr { link_fd: fd, pad: 0 };
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix for BPF_LINK_DETACH of the size
    // passed, and the call reads nothing else from this process.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &attr as *const LinkDetachAttr,
            std::mem::size_of::<LinkDetachAttr>(),
        )
    };
    if result < 0 {
        // Detaching a link that is already detached succeeds, so every error is real.
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
