//! The node's own containerd, which the agent starts and supervises as k3s does: its files
//! ([`Layout`], all under `<data_dir>/containerd`), its configuration ([`render_config`]), its
//! pod network ([`write_cni`]), its process ([`Containerd`]), the images it is given offline
//! ([`Containerd::import`]) and the removal of everything it ran ([`reset`]).
//!
//! Invariants:
//! - One containerd per layout. A running one is found through its pid file and reused, so an
//!   agent restart never stops pods; it is restarted only when its configuration changed, which
//!   pods also survive (they run under their shims, not under containerd).
//! - containerd runs in its own process group, so a Ctrl-C to the agent does not reach it; it
//!   stops only through [`Containerd::stop`] or [`reset`].
//! - Every file containerd reads is written whole (temporary file, then rename).

mod config;
mod ctr;
mod error;
mod layout;
mod process;
mod reset;
mod tools;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tokio::process::{Child, Command};

pub use config::{render_cni, render_config, validate_pod_cidr};
pub use ctr::CRI_NAMESPACE;
use ctr::{cri_plugin_status, imported_images, Ctr};
pub use error::ContainerdError;
pub use layout::{cgroup_parent, Layout};
pub use reset::reset;
pub(crate) use reset::{cgroup_dirs, mount_points_under};
pub use tools::Tools;

/// The sandbox image `deploy/install.sh` builds, in the agent's default images directory.
pub const DEFAULT_PAUSE_IMAGE: &str = "flotilla.local/pause:1";
/// Where `deploy/install.sh` puts the image archives every node imports at start (k3s'
/// `agent/images`).
pub const DEFAULT_IMAGES_DIR: &str = "/var/lib/flotilla/images";

/// How long containerd gets to answer with its CRI plugin loaded.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is checked while waiting.
const READY_POLL: Duration = Duration::from_millis(100);
/// One `ctr` call that lists or inspects.
const CTR_TIMEOUT: Duration = Duration::from_secs(10);
/// One image archive's import.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(300);
/// containerd's log is moved aside to `<log>.1` at start once it is this large.
const LOG_ROTATE_BYTES: u64 = 16 << 20;
/// Log lines shown when containerd fails to start.
const TAIL_LINES: usize = 20;

/// The node's running containerd. Dropping it leaves containerd running, as an agent exit does;
/// the next [`Containerd::start`] finds it again.
#[derive(Debug)]
pub struct Containerd {
    layout: Layout,
    socket: PathBuf,
    ctr: PathBuf,
    pid: Pid,
    /// The process handle when this agent started containerd (waiting on it reaps it); `None`
    /// when a previous agent did.
    child: Option<Child>,
}

impl Containerd {
    /// Starts the containerd of `layout` with the CRI plugin ready, or reuses the one already
    /// running for it. Writes its configuration first (`pause_image` is the sandbox image); if
    /// that changed, a running containerd is restarted to apply it.
    pub async fn start(
        layout: &Layout,
        tools: &Tools,
        pause_image: &str,
    ) -> Result<Containerd, ContainerdError> {
        for dir in [
            layout.root(),
            layout.state(),
            layout.cni_conf_dir(),
            layout.cni_data_dir(),
            layout.pod_log_dir(),
        ] {
            tokio::fs::create_dir_all(&dir).await.map_err(ContainerdError::io("creating", &dir))?;
        }
        let text = render_config(layout, pause_image, &tools.runc, &tools.cni_bin_dir);
        let changed = config::write_if_changed(&layout.config(), &text).await?;
        let socket = layout.socket();
        if let Some(pid) = process::running_pid(layout) {
            if !changed {
                let shown = socket.display();
                tracing::info!(pid = %pid, socket = %shown, "reusing the running containerd");
                let mut containerd = Containerd {
                    layout: layout.clone(),
                    socket,
                    ctr: tools.ctr.clone(),
                    pid,
                    child: None,
                };
                containerd.wait_ready(process::log_length(&layout.log_file())).await?;
                return Ok(containerd);
            }
            tracing::info!(pid = %pid, "containerd's configuration changed, restarting it");
            process::terminate(pid, None).await;
        } else if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Err(ContainerdError::SocketInUse { socket, pid_file: layout.pid_file() });
        }
        Containerd::spawn(layout, tools, socket).await
    }

    /// The containerd of `layout` running with its configuration as last written: the one
    /// already running, or a new one. `None` when no containerd was ever configured there.
    /// For [`reset`], which must reach containerd to remove its containers.
    pub(crate) async fn start_as_configured(
        layout: &Layout,
    ) -> Result<Option<Containerd>, ContainerdError> {
        let socket = layout.socket();
        if let Some(pid) = process::running_pid(layout) {
            let ctr = tools::find_program("ctr")?;
            let mut containerd =
                Containerd { layout: layout.clone(), socket, ctr, pid, child: None };
            containerd.wait_ready(process::log_length(&layout.log_file())).await?;
            return Ok(Some(containerd));
        }
        if !layout.config().exists() {
            return Ok(None);
        }
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Err(ContainerdError::SocketInUse { socket, pid_file: layout.pid_file() });
        }
        let tools = Tools::find()?;
        Containerd::spawn(layout, &tools, socket).await.map(Some)
    }

    /// Starts `containerd --config <layout's config>` and waits until it is ready.
    async fn spawn(
        layout: &Layout,
        tools: &Tools,
        socket: PathBuf,
    ) -> Result<Containerd, ContainerdError> {
        let log_path = layout.log_file();
        if process::log_length(&log_path) > LOG_ROTATE_BYTES {
            let old = log_path.with_extension("log.1");
            tokio::fs::rename(&log_path, &old)
                .await
                .map_err(ContainerdError::io("rotating", &log_path))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(ContainerdError::io("opening", &log_path))?;
        let log_start = process::log_length(&log_path);
        let stderr = log.try_clone().map_err(ContainerdError::io("opening", &log_path))?;
        let spawn_error =
            |source| ContainerdError::Spawn { program: tools.containerd.clone(), source };
        let child = Command::new(&tools.containerd)
            .arg("--config")
            .arg(layout.config())
            .env("PATH", tools.child_path())
            // Under systemd the agent's notify socket is its own, not containerd's.
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own process group: a Ctrl-C to the agent's terminal does not reach it.
            .process_group(0)
            // It outlives the agent (an agent restart must not stop pods).
            .kill_on_drop(false)
            .spawn()
            .map_err(spawn_error)?;
        let raw_pid = child.id().ok_or_else(|| {
            spawn_error(std::io::Error::other("containerd exited before its pid was read"))
        })?;
        let pid = Pid::from_raw(raw_pid as i32);
        let pid_file = layout.pid_file();
        let mut containerd = Containerd {
            layout: layout.clone(),
            socket,
            ctr: tools.ctr.clone(),
            pid,
            child: Some(child),
        };
        let ready = match config::write_if_changed(&pid_file, &format!("{pid}\n")).await {
            Ok(_) => containerd.wait_ready(log_start).await,
            Err(err) => Err(err),
        };
        if let Err(err) = ready {
            // A half-started containerd must not be adopted by the next start.
            let _ = process::signal(pid, nix::sys::signal::Signal::SIGKILL);
            if let Some(child) = containerd.child.as_mut() {
                let _ = child.wait().await;
            }
            let _ = tokio::fs::remove_file(&pid_file).await;
            return Err(err);
        }
        tracing::info!(
            pid = %pid,
            socket = %containerd.socket.display(),
            log = %log_path.display(),
            "started containerd"
        );
        Ok(containerd)
    }

    /// Waits until containerd answers on its socket with the CRI plugin loaded, failing at once
    /// if it exits or the plugin failed. `log_start` is where this start's log lines begin.
    async fn wait_ready(&mut self, log_start: u64) -> Result<(), ContainerdError> {
        let started = Instant::now();
        let log = self.layout.log_file();
        let ctr = Ctr { program: &self.ctr, socket: &self.socket };
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten().map(|status| status.to_string()),
                None => (!process::alive(self.pid)).then(|| "it is gone".to_string()),
            };
            if let Some(status) = exited {
                let tail = process::log_tail(&log, log_start, TAIL_LINES, "");
                return Err(ContainerdError::Exited { status, log, tail });
            }
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                // The socket opens after every plugin has loaded; a CRI plugin that failed
                // (a bad cgroup setting, say) shows only as a status in this list.
                if let Ok(plugins) = ctr.run(None, &["plugins", "ls"], CTR_TIMEOUT).await {
                    match cri_plugin_status(&plugins) {
                        Some("ok") => return Ok(()),
                        Some(status) => {
                            let tail = process::log_tail(&log, log_start, TAIL_LINES, "cri");
                            let status = status.to_string();
                            return Err(ContainerdError::CriPluginFailed { status, log, tail });
                        }
                        None => {}
                    }
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                let tail = process::log_tail(&log, log_start, TAIL_LINES, "");
                let socket = self.socket.clone();
                return Err(ContainerdError::NotReady { socket, waited: READY_TIMEOUT, log, tail });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// containerd's gRPC socket: CRI clients and `ctr` connect here.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Imports image archives into this containerd; see [`import`].
    pub async fn import(&self, source: &Path) -> Result<Vec<String>, ContainerdError> {
        import(&self.ctr, &self.socket, source).await
    }

    /// Returns once containerd has exited, with its exit status when this agent started it.
    /// Cancel-safe: a supervisor can `select!` on it.
    pub async fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.wait().await.ok(),
            None => {
                process::until_gone(self.pid).await;
                None
            }
        }
    }

    /// Stops containerd: SIGTERM, then SIGKILL after a grace period. Pods keep running under
    /// their shims, as with a systemd-managed containerd; a later [`Containerd::start`] finds
    /// them again.
    pub async fn stop(mut self) {
        // Once containerd has exited its pid may name another process: signal only our own.
        let still_running = match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => process::running_pid(&self.layout) == Some(self.pid),
        };
        if still_running {
            process::terminate(self.pid, self.child.as_mut()).await;
        }
        if !process::alive(self.pid) {
            let _ = tokio::fs::remove_file(self.layout.pid_file()).await;
        }
        tracing::info!(pid = %self.pid, "stopped containerd");
    }
}

/// Imports the archive `file` into the running containerd at `socket` (a node's, found with
/// [`Layout::socket_of`], or any CRI runtime's containerd), for `flotilla image import`.
pub async fn import_into_running(
    socket: &Path,
    file: &Path,
) -> Result<Vec<String>, ContainerdError> {
    let meta = tokio::fs::metadata(file).await.map_err(ContainerdError::io("reading", file))?;
    if meta.is_dir() {
        let reason = "it is a directory; name the *.tar files".to_string();
        return Err(ContainerdError::Import { file: file.to_path_buf(), reason });
    }
    if tokio::net::UnixStream::connect(socket).await.is_err() {
        return Err(ContainerdError::NotRunning { socket: socket.to_path_buf() });
    }
    import(&tools::find_program("ctr")?, socket, file).await
}

/// Imports image archives (OCI or Docker format) into the CRI namespace of the containerd at
/// `socket`, through `ctr`: `source` itself if it is a file, or every `*.tar` in it, in name
/// order, if it is a directory (k3s' `agent/images`). Returns the image names imported; a
/// missing `source` imports nothing. Importing an archive again is a no-op (same digests, same
/// image records).
pub async fn import(
    ctr: &Path,
    socket: &Path,
    source: &Path,
) -> Result<Vec<String>, ContainerdError> {
    let archives = match tokio::fs::metadata(source).await {
        Ok(meta) if meta.is_dir() => archives_in(source).await?,
        Ok(_) => vec![source.to_path_buf()],
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(source = %source.display(), "no image archives to import");
            return Ok(Vec::new());
        }
        Err(err) => return Err(ContainerdError::io("reading", source)(err)),
    };
    let ctr = Ctr { program: ctr, socket };
    let mut names = Vec::new();
    for archive in archives {
        let import_error =
            |reason: String| ContainerdError::Import { file: archive.clone(), reason };
        let args = [OsStr::new("images"), OsStr::new("import"), archive.as_os_str()];
        let output = ctr
            .run(Some(CRI_NAMESPACE), &args, IMPORT_TIMEOUT)
            .await
            .map_err(|err| import_error(err.to_string()))?;
        let imported = imported_images(&output);
        if imported.is_empty() {
            return Err(import_error(
                "it names no image (no io.containerd.image.name annotation)".into(),
            ));
        }
        tracing::info!(archive = %archive.display(), images = ?imported, "imported images");
        names.extend(imported);
    }
    Ok(names)
}

/// The `*.tar` files in `dir`, in name order.
async fn archives_in(dir: &Path) -> Result<Vec<PathBuf>, ContainerdError> {
    let mut entries =
        tokio::fs::read_dir(dir).await.map_err(ContainerdError::io("reading", dir))?;
    let mut archives = Vec::new();
    while let Some(entry) =
        entries.next_entry().await.map_err(ContainerdError::io("reading", dir))?
    {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "tar") && path.is_file() {
            archives.push(path);
        }
    }
    archives.sort();
    Ok(archives)
}

/// Writes the node's CNI network for `pod_cidr` (see [`render_cni`]) where containerd watches
/// for it, unless it is already there; containerd picks it up without a restart. Returns whether
/// it wrote.
pub async fn write_cni(layout: &Layout, pod_cidr: &str) -> Result<bool, ContainerdError> {
    validate_pod_cidr(pod_cidr)?;
    let written =
        config::write_if_changed(&layout.cni_conflist(), &render_cni(layout, pod_cidr)).await?;
    if written {
        tracing::info!(
            network = layout.network(),
            bridge = layout.bridge(),
            pod_cidr,
            "wrote the pod network configuration"
        );
    }
    Ok(written)
}
