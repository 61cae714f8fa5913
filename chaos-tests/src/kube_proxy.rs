//! The reference for the service proxy benchmark: the `iptables-restore` input kube-proxy's
//! iptables mode writes for ClusterIP Services, in the shape of its rules (one
//! `KUBE-SERVICES` jump per service port, a `KUBE-SVC-*` chain choosing an endpoint with the
//! `statistic` match, a `KUBE-SEP-*` chain per endpoint that DNATs), and the restore timed in
//! a network namespace of its own so the machine's rules are never touched.
//!
//! kube-proxy writes everything on a full sync; since 1.27 a partial sync rewrites the
//! top-level `KUBE-SERVICES` chain and only the chains of Services that changed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One ClusterIP service port and its endpoints.
pub struct ServicePort {
    pub name: String,
    pub frontend: SocketAddrV4,
    pub endpoints: Vec<SocketAddrV4>,
}

/// A chain name from a hash of `what`, as kube-proxy derives its 16-character suffixes.
fn chain(prefix: &str, what: &str) -> String {
    // FNV-1a, 64 bits, printed in base 32: stable and collision-free enough for a benchmark.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in what.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const DIGITS: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let suffix: String =
        (0..13).map(|i| DIGITS[((hash >> (i * 5)) & 31) as usize] as char).collect();
    format!("{prefix}-{suffix}")
}

/// The nat table rules for `ports`; with `changed`, only those services' chains (a partial
/// sync), otherwise all (a full sync). `KUBE-SERVICES` is always written whole.
pub fn restore_input(ports: &[ServicePort], changed: Option<&[usize]>) -> String {
    let mut chains = String::from("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let mut rules = String::from("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    let written = |index: usize| changed.is_none_or(|changed| changed.contains(&index));
    for (index, port) in ports.iter().enumerate() {
        let svc = chain("KUBE-SVC", &port.name);
        let (ip, number) = (port.frontend.ip(), port.frontend.port());
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {ip}/32 \
             --dport {number} -j {svc}",
            port.name
        );
        if !written(index) {
            continue;
        }
        let _ = writeln!(chains, ":{svc} - [0:0]");
        let _ = writeln!(
            rules,
            "-A {svc} ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m tcp --dport {number} -j KUBE-MARK-MASQ"
        );
        let count = port.endpoints.len();
        for (n, endpoint) in port.endpoints.iter().enumerate() {
            let sep = chain("KUBE-SEP", &format!("{}/{endpoint}", port.name));
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let remaining = count - n;
            if remaining > 1 {
                let _ = writeln!(
                    rules,
                    "-A {svc} -m comment --comment \"{} -> {endpoint}\" -m statistic --mode random \
                     --probability {:.10} -j {sep}",
                    port.name,
                    1.0 / remaining as f64
                );
            } else {
                let _ = writeln!(
                    rules,
                    "-A {svc} -m comment --comment \"{} -> {endpoint}\" -j {sep}",
                    port.name
                );
            }
            let _ = writeln!(rules, "-A {sep} -s {}/32 -j KUBE-MARK-MASQ", endpoint.ip());
            let _ = writeln!(rules, "-A {sep} -p tcp -m tcp -j DNAT --to-destination {endpoint}");
        }
    }
    chains.push_str(&rules);
    chains.push_str("COMMIT\n");
    chains
}

/// A network namespace that is deleted when dropped.
pub struct Namespace(String);

impl Namespace {
    pub fn create(name: &str) -> anyhow::Result<Namespace> {
        let _ = Command::new("ip").args(["netns", "delete", name]).stderr(Stdio::null()).status();
        let status = Command::new("ip").args(["netns", "add", name]).status()?;
        if !status.success() {
            bail!("ip netns add {name} failed");
        }
        Ok(Namespace(name.to_owned()))
    }

    /// The restore program: the legacy backend where installed (the faster one at this size,
    /// so the reference is not handicapped), else `iptables-restore`.
    pub fn restore_program() -> &'static str {
        if Path::new("/usr/sbin/iptables-legacy-restore").exists() {
            "iptables-legacy-restore"
        } else {
            "iptables-restore"
        }
    }

    /// Runs the restore program with `--noflush` and `input` in the namespace; returns how
    /// long it took.
    pub fn restore(&self, input: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, Self::restore_program(), "--noflush"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running iptables-restore")?;
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("iptables-restore failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(started.elapsed())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ports() -> Vec<ServicePort> {
        (0..3)
            .map(|i| ServicePort {
                name: format!("bench/svc-{i}:http"),
                frontend: format!("10.96.1.{i}:80").parse().unwrap(),
                endpoints: (0..2)
                    .map(|e| format!("10.244.{i}.{e}:8080").parse().unwrap())
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn a_full_sync_has_every_chain_and_a_partial_one_only_the_changed() {
        let full = restore_input(&ports(), None);
        assert_eq!(full.matches("-A KUBE-SERVICES ").count(), 3);
        assert_eq!(full.matches(":KUBE-SVC-").count(), 3);
        assert_eq!(full.matches(":KUBE-SEP-").count(), 6);
        assert_eq!(full.matches("DNAT --to-destination").count(), 6);
        assert!(full.contains("--probability 0.5000000000"));
        assert!(full.starts_with("*nat\n") && full.ends_with("COMMIT\n"));
        let partial = restore_input(&ports(), Some(&[1]));
        assert_eq!(partial.matches("-A KUBE-SERVICES ").count(), 3, "always whole");
        assert_eq!(partial.matches(":KUBE-SVC-").count(), 1);
        assert_eq!(partial.matches(":KUBE-SEP-").count(), 2);
    }

    #[test]
    fn chain_names_are_stable_and_distinct() {
        assert_eq!(chain("KUBE-SVC", "a"), chain("KUBE-SVC", "a"));
        assert_ne!(chain("KUBE-SVC", "a"), chain("KUBE-SVC", "b"));
        assert!(chain("KUBE-SEP", "x").len() <= 28, "iptables chain names are at most 28");
    }
}
