//! What the agent reports about its machine: CPUs, memory, disk, kernel and OS, read from the
//! running system, or the fixed facts of a hollow node's simulated machine.

use std::path::{Path, PathBuf};

/// The machine's facts, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u64,
    pub memory_bytes: u64,
    /// `MemAvailable`: memory the kernel can give without swapping.
    pub memory_available_bytes: u64,
    /// Free bytes on the filesystem of the agent's data directory.
    pub disk_available_bytes: u64,
    /// Size of that filesystem.
    pub disk_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
    pub boot_id: String,
    pub machine_id: String,
}

/// Why the machine could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
}

fn read(path: &str) -> Result<String, MachineError> {
    std::fs::read_to_string(path)
        .map_err(|err| MachineError::Read { path: path.into(), reason: err.to_string() })
}

/// A field of /proc/meminfo (`MemTotal`, `MemAvailable`), in bytes.
fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `PRETTY_NAME` of /etc/os-release.
fn os_image(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())
}

/// Kubernetes' architecture names for Rust's.
fn architecture(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Machine {
    /// Reads the machine; `data_dir` is where the agent keeps its state (its filesystem is the
    /// node's ephemeral storage).
    pub fn read(data_dir: &Path) -> Result<Machine, MachineError> {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        let meminfo = read("/proc/meminfo")?;
        let field = |name: &str| {
            meminfo_bytes(&meminfo, name).ok_or_else(|| MachineError::Read {
                path: "/proc/meminfo".into(),
                reason: format!("no {name}"),
            })
        };
        let (memory_bytes, memory_available_bytes) = (field("MemTotal")?, field("MemAvailable")?);
        let disk = nix::sys::statvfs::statvfs(data_dir).map_err(|err| MachineError::Read {
            path: data_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let fragment = disk.fragment_size() as u64;
        let uname = nix::sys::utsname::uname()
            .map_err(|err| MachineError::Read { path: "uname".into(), reason: err.to_string() })?;
        let os_image = read("/etc/os-release").ok().and_then(|text| os_image(&text));
        Ok(Machine {
            cpus,
            memory_bytes,
            memory_available_bytes,
            disk_available_bytes: disk.blocks_available() as u64 * fragment,
            disk_bytes: disk.blocks() as u64 * fragment,
            kernel_version: uname.release().to_string_lossy().into_owned(),
            os_image: os_image.unwrap_or_else(|| "Linux".into()),
            architecture: architecture(std::env::consts::ARCH).to_string(),
            boot_id: read("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string(),
            machine_id: read("/etc/machine-id").unwrap_or_default().trim().to_string(),
        })
    }
}

/// Where an agent's machine facts come from, looked at again for every status report.
#[derive(Debug, Clone)]
pub enum MachineSource {
    /// The machine the agent runs on; the filesystem of `data_dir` is the node's storage.
    Host { data_dir: PathBuf },
    /// A hollow node's simulated machine: the same facts every time, so its status never
    /// changes by itself (and nothing of the host it shares with a thousand others leaks in).
    Simulated(Machine),
}

impl MachineSource {
    pub fn read(&self) -> Result<Machine, MachineError> {
        match self {
            MachineSource::Host { data_dir } => Machine::read(data_dir),
            MachineSource::Simulated(machine) => Ok(machine.clone()),
        }
    }
}

/// The size of a hollow node's simulated machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedSize {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Default for SimulatedSize {
    /// A common cloud worker: 4 CPUs, 16 GiB of memory, 100 GiB of disk.
    fn default() -> Self {
        SimulatedSize { cpus: 4, memory_bytes: 16 << 30, disk_bytes: 100 << 30 }
    }
}

impl Machine {
    /// The machine hollow node `name` pretends to be: `size`, nothing used, the host's
    /// architecture, and ids of its own (derived from the name, so they survive a restart).
    pub fn simulated(name: &str, size: SimulatedSize) -> Machine {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut hasher);
        let id = format!("{:016x}{:016x}", hasher.finish(), !hasher.finish());
        Machine {
            cpus: size.cpus,
            memory_bytes: size.memory_bytes,
            memory_available_bytes: size.memory_bytes,
            disk_available_bytes: size.disk_bytes,
            disk_bytes: size.disk_bytes,
            kernel_version: "hollow".into(),
            os_image: "Flotilla hollow node".into(),
            architecture: architecture(std::env::consts::ARCH).to_string(),
            boot_id: id.clone(),
            machine_id: id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_os_release() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree: 1 kB\nMemAvailable: 2048 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24_576_000 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(2048 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None);
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_image(release).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(architecture("x86_64"), "amd64");
    }

    #[test]
    fn a_simulated_machine_is_the_same_every_time_and_its_own() {
        let size = SimulatedSize { cpus: 8, memory_bytes: 1 << 30, disk_bytes: 2 << 30 };
        let source = MachineSource::Simulated(Machine::simulated("hollow-1", size));
        let (first, second) = (source.read().unwrap(), source.read().unwrap());
        assert_eq!(first, second);
        assert_eq!((first.cpus, first.memory_available_bytes), (8, 1 << 30));
        assert_eq!(first.machine_id.len(), 32);
        assert_eq!(Machine::simulated("hollow-1", size), first, "stable across restarts");
        assert_ne!(Machine::simulated("hollow-2", size).machine_id, first.machine_id);
    }

    #[test]
    fn reads_this_machine() {
        let machine = Machine::read(Path::new("/")).unwrap();
        assert!(machine.cpus >= 1 && machine.memory_bytes > 0 && machine.disk_bytes > 0);
        assert!(!machine.kernel_version.is_empty());
    }
}
