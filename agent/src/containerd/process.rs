//! containerd's process and its shims, seen through the pid file, `/proc` and signals.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

use super::Layout;

/// How long containerd gets to exit on SIGTERM before it is killed. It exits in well under a
/// second; its shims, and so the pods, keep running either way.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How often a process that is not our child is looked at while waiting for it to exit.
const POLL: Duration = Duration::from_millis(50);
/// How much of the end of containerd's log is read for an error message.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The pid in `layout`'s pid file, if that process is alive and is a containerd running
/// `layout`'s configuration (so a recycled pid is never mistaken for it).
pub(crate) fn running_pid(layout: &Layout) -> Option<Pid> {
    let text = std::fs::read_to_string(layout.pid_file()).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (alive(pid) && runs_config(&cmdline, &layout.config())).then_some(pid)
}

/// Whether `cmdline` (NUL-separated, as in `/proc/<pid>/cmdline`) is `containerd --config
/// <config>`.
pub(crate) fn runs_config(cmdline: &[u8], config: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_containerd = args.first().is_some_and(|argv0| {
        Path::new(OsStr::from_bytes(argv0)).file_name() == Some(OsStr::new("containerd"))
    });
    let config = config.as_os_str().as_bytes();
    is_containerd && args.windows(2).any(|pair| pair[0] == b"--config" && pair[1] == config)
}

/// Whether `cmdline` is a containerd shim serving the containerd at `socket`.
pub(crate) fn is_shim_of(cmdline: &[u8], socket: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_shim = args.first().is_some_and(|argv0| {
        Path::new(OsStr::from_bytes(argv0))
            .file_name()
            .is_some_and(|name| name.as_bytes().starts_with(b"containerd-shim"))
    });
    let socket = socket.as_os_str().as_bytes();
    is_shim && args.windows(2).any(|pair| pair[0] == b"-address" && pair[1] == socket)
}

/// The pids of the shims serving the containerd at `socket`.
pub(crate) fn shims_of(socket: &Path) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| is_shim_of(&cmdline, socket))
        })
        .map(Pid::from_raw)
        .collect()
}

/// Whether `pid` runs: it exists and is not a zombie waiting for its parent.
pub(crate) fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name, which may itself hold ") ".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: Pid, signal: Signal) -> Result<(), Errno> {
    match kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Stops containerd `pid`: SIGTERM, then SIGKILL if it has not exited within the grace period.
/// `child` is its handle when this agent started it, so that it is also reaped.
pub(crate) async fn terminate(pid: Pid, mut child: Option<&mut Child>) {
    if let Err(err) = signal(pid, Signal::SIGTERM) {
        tracing::warn!(pid = %pid, error = %err, "could not signal containerd");
        return;
    }
    if exited_within(pid, child.as_deref_mut(), STOP_GRACE).await {
        return;
    }
    tracing::warn!(pid = %pid, grace = ?STOP_GRACE, "containerd ignored SIGTERM, killing it");
    if let Err(err) = signal(pid, Signal::SIGKILL) {
        tracing::warn!(pid = %pid, error = %err, "could not kill containerd");
        return;
    }
    if !exited_within(pid, child, STOP_GRACE).await {
        tracing::warn!(pid = %pid, "containerd outlived SIGKILL");
    }
}

/// Waits until `pid` has exited, for at most `limit`; says whether it did.
async fn exited_within(pid: Pid, child: Option<&mut Child>, limit: Duration) -> bool {
    match child {
        Some(child) => tokio::time::timeout(limit, child.wait()).await.is_ok(),
        None => tokio::time::timeout(limit, until_gone(pid)).await.is_ok(),
    }
}

/// Returns once `pid` no longer runs. For processes that are not this agent's children.
pub(crate) async fn until_gone(pid: Pid) {
    while alive(pid) {
        tokio::time::sleep(POLL).await;
    }
}

/// The length of `path` now, so that later only what was appended is shown.
pub(crate) fn log_length(path: &Path) -> u64 {
    path.metadata().map(|meta| meta.len()).unwrap_or(0)
}

/// The last `lines` lines of `path` written after byte `since` that contain `filter` (all
/// lines if `filter` is empty), for error messages; what cannot be read is left out.
pub(crate) fn log_tail(path: &Path, since: u64, lines: usize, filter: &str) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let start = file.metadata()?.len().saturating_sub(LOG_TAIL_BYTES).max(since);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = read().unwrap_or_default();
    let matching: Vec<&str> = text.lines().filter(|line| line.contains(filter)).collect();
    matching[matching.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_the_containerd_of_a_configuration() {
        let config = Path::new("/d/containerd/config.toml");
        for (cmdline, expected) in [
            (&b"/usr/bin/containerd\0--config\0/d/containerd/config.toml\0"[..], true),
            (b"containerd\0--log-level\0debug\0--config\0/d/containerd/config.toml\0", true),
            (b"/usr/bin/containerd\0--config\0/e/containerd/config.toml\0", false),
            (b"/usr/bin/containerd\0", false),
            (b"/usr/bin/vim\0--config\0/d/containerd/config.toml\0", false),
            (b"", false),
        ] {
            assert_eq!(
                runs_config(cmdline, config),
                expected,
                "{:?}",
                String::from_utf8_lossy(cmdline)
            );
        }
    }

    #[test]
    fn recognizes_the_shims_of_a_socket() {
        let socket = Path::new("/d/containerd/state/containerd.sock");
        let shim = |address: &str| {
            let args = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc"];
            let mut cmdline: Vec<u8> =
                args.iter().flat_map(|arg| [arg.as_bytes(), b"\0"]).flatten().copied().collect();
            cmdline.extend_from_slice(format!("-address\0{address}\0").as_bytes());
            cmdline
        };
        assert!(is_shim_of(&shim("/d/containerd/state/containerd.sock"), socket));
        assert!(!is_shim_of(&shim("/run/containerd/containerd.sock"), socket));
        assert!(!is_shim_of(
            b"/usr/bin/containerd\0-address\0/d/containerd/state/containerd.sock\0",
            socket
        ));
    }

    #[test]
    fn this_process_is_alive_and_a_finished_child_is_not() {
        assert!(alive(Pid::this()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        child.wait().unwrap();
        assert!(!alive(pid), "reaped");
        assert!(!alive(Pid::from_raw(i32::MAX)), "never existed");
    }

    #[test]
    fn log_tail_shows_only_new_matching_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("containerd.log");
        std::fs::write(&log, "old cri line\n").unwrap();
        let since = log_length(&log);
        std::fs::write(&log, "old cri line\none\ncri two\nthree\ncri four\n").unwrap();
        assert_eq!(log_tail(&log, since, 10, ""), "one\ncri two\nthree\ncri four");
        assert_eq!(log_tail(&log, since, 1, "cri"), "cri four");
        assert_eq!(log_tail(&log, since, 5, "cri"), "cri two\ncri four");
        assert_eq!(log_tail(&dir.path().join("missing"), 0, 5, ""), "");
    }
}
