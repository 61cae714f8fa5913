//! `flotilla agent reset` (k3s' `k3s-killall.sh`, `kubeadm reset`): stops every pod of the
//! node and its containerd, and removes what they leave on the host.
//!
//! Killing pods through containerd skips CNI DEL, and a crashed agent may have skipped
//! everything, so reset removes the leftovers itself: host-local IP leases, the network's
//! iptables NAT rules, the bridge, sandbox network namespace mounts, pod cgroups and the volatile
//! state directory. Each step is idempotent and runs even when an earlier one failed; images and
//! pod logs are kept. The agent must not run meanwhile, or it starts the pods again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Command;

use super::ctr::{quiet_list, Ctr};
use super::tools::find_program;
use super::{process, Containerd, ContainerdError, Layout};

/// How long killed pod processes and shims get to exit before their cgroups are removed.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// One task deletion, which waits for the task to die.
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);
/// One `ctr` listing or `iptables`/`ip` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The cgroup v1 and v2 file system types in /proc/self/mountinfo.
const CGROUP_FS_TYPES: [&str; 2] = ["cgroup", "cgroup2"];

/// Stops every pod of `layout`'s node and its containerd, and removes what they leave behind.
/// Safe to run again: each step does nothing when there is nothing left to do. Fails, after
/// trying every step, with the list of what could not be removed.
pub async fn reset(layout: &Layout) -> Result<(), ContainerdError> {
    let mut failures = Vec::new();
    let socket = layout.socket();

    // Through containerd, started for this if it is not running, so that its records of the
    // containers go too and a later start finds none.
    match Containerd::start_as_configured(layout).await {
        Ok(Some(containerd)) => {
            let pid = containerd.pid;
            tracing::info!(pid = %pid, "removing every container of the containerd");
            remove_containers(&Ctr { program: &containerd.ctr, socket: &socket }, &mut failures)
                .await;
            containerd.stop().await;
            if process::alive(pid) {
                failures.push(format!("containerd {pid} still runs"));
            }
        }
        Ok(None) => {}
        Err(err) => failures.push(err.to_string()),
    }

    // What containerd did not stop (it could not be started, or a task resisted): the
    // processes in the node's pod cgroups, then the shims that served them.
    remove_cgroups(&layout.cgroup_parent(), &mut failures).await;
    let shims = process::shims_of(&socket);
    for &shim in &shims {
        let _ = process::signal(shim, Signal::SIGKILL);
    }
    wait_all_gone(&shims, "containerd shim", &mut failures).await;

    unmount_under(layout.base(), &mut failures);
    remove_dir(&layout.cni_data_dir().join("networks"), &mut failures).await;
    remove_nat_rules(layout.network(), &mut failures).await;
    delete_bridge(layout.bridge(), &mut failures).await;
    remove_dir(&layout.state(), &mut failures).await;

    if failures.is_empty() {
        tracing::info!(node = layout.node(), "reset the node's containerd");
        Ok(())
    } else {
        Err(ContainerdError::ResetIncomplete { failures })
    }
}

/// Deletes every task (killing it) and every container of every namespace.
async fn remove_containers(ctr: &Ctr<'_>, failures: &mut Vec<String>) {
    let namespaces = match ctr.run(None, &["namespaces", "ls", "-q"], COMMAND_TIMEOUT).await {
        Ok(output) => quiet_list(&output),
        Err(err) => return failures.push(err.to_string()),
    };
    for namespace in &namespaces {
        let namespace = Some(namespace.as_str());
        // A pod's containers share the sandbox's shim, so deleting one task can take others
        // down with it ("not found", "ttrpc: closed"): what is still listed after one pass
        // gets a second, and only failures of that pass count.
        for last_pass in [false, true] {
            let tasks = match ctr.run(namespace, &["tasks", "ls", "-q"], COMMAND_TIMEOUT).await {
                Ok(output) => quiet_list(&output),
                Err(err) => {
                    failures.push(err.to_string());
                    break;
                }
            };
            for task in tasks {
                let args = ["tasks", "delete", "--force", task.as_str()];
                match ctr.run(namespace, &args, DELETE_TIMEOUT).await {
                    Ok(_) => {}
                    Err(err) if last_pass && !err.to_string().contains("not found") => {
                        failures.push(err.to_string());
                    }
                    Err(_) => {}
                }
            }
        }
        match ctr.run(namespace, &["containers", "ls", "-q"], COMMAND_TIMEOUT).await {
            Ok(output) => {
                for container in quiet_list(&output) {
                    let args = ["containers", "delete", container.as_str()];
                    if let Err(err) = ctr.run(namespace, &args, COMMAND_TIMEOUT).await {
                        failures.push(err.to_string());
                    }
                }
            }
            Err(err) => failures.push(err.to_string()),
        }
    }
}

/// Kills every process in the cgroups under `parent` (in each hierarchy) and removes them,
/// deepest first, then `parent` and its own parent if no other node uses it.
async fn remove_cgroups(parent: &str, failures: &mut Vec<String>) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut dirs = Vec::new();
    for top in cgroup_dirs(&mountinfo, parent) {
        collect_dirs_deepest_first(&top, &mut dirs);
    }
    let pids_in = |dir: &Path| -> Vec<Pid> {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        procs.lines().filter_map(|line| line.trim().parse().ok()).map(Pid::from_raw).collect()
    };
    for dir in &dirs {
        for pid in pids_in(dir) {
            let _ = process::signal(pid, Signal::SIGKILL);
        }
    }
    let started = Instant::now();
    while dirs.iter().any(|dir| !pids_in(dir).is_empty()) && started.elapsed() < EXIT_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for dir in &dirs {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => failures.push(format!("removing the cgroup {}: {err}", dir.display())),
        }
    }
    // The shared `/flotilla` goes too once no node has pods under it; failing is expected.
    if let Some((root, _)) = parent.rsplit_once('/').filter(|(root, _)| !root.is_empty()) {
        for dir in cgroup_dirs(&mountinfo, root) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `dir` and every directory below it, children before their parents.
fn collect_dirs_deepest_first(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_dirs_deepest_first(&entry.path(), into);
        }
    }
    into.push(dir.to_path_buf());
}

/// Where the cgroupfs path `cgroup` (e.g. `/flotilla/node-1`) is in each mounted cgroup
/// hierarchy of `mountinfo` (`/sys/fs/cgroup/memory/flotilla/node-1`, …).
pub(crate) fn cgroup_dirs(mountinfo: &str, cgroup: &str) -> Vec<PathBuf> {
    let relative = cgroup.trim_start_matches('/');
    mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|mount| CGROUP_FS_TYPES.contains(&mount.fs_type))
        .map(|mount| mount.mount_point.join(relative))
        .collect()
}

/// Unmounts everything mounted under `dir` (sandbox network namespaces, container root file
/// systems, shm), deepest first. Lazily: a mount still in use goes once unused.
fn unmount_under(dir: &Path, failures: &mut Vec<String>) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount_point in mount_points_under(&mountinfo, dir) {
        // A point may have several mounts stacked on it; each umount removes the top one.
        for _ in 0..8 {
            match umount2(&mount_point, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(Errno::EINVAL | Errno::ENOENT) => break,
                Err(err) => {
                    failures.push(format!("unmounting {}: {err}", mount_point.display()));
                    break;
                }
            }
        }
    }
}

/// One line of /proc/self/mountinfo, the fields reset needs.
struct Mount<'a> {
    mount_point: PathBuf,
    fs_type: &'a str,
}

/// Parses `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`: the mount point
/// is the fifth field (octal-escaped), the type follows the ` - ` separator.
fn parse_mountinfo_line(line: &str) -> Option<Mount<'_>> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let fs_type = after.split(' ').next()?;
    Some(Mount { mount_point: PathBuf::from(unescape_octal(mount_point)), fs_type })
}

/// Undoes the kernel's `\040`-style escaping of spaces, tabs, newlines and backslashes.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value =
                    digits.iter().fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points in `mountinfo` at or below `dir`, deepest first.
pub(crate) fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .map(|mount| mount.mount_point)
        .filter(|point| point.starts_with(dir))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    points
}

/// What to remove from the nat table for one CNI network.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NatCleanup {
    /// Rules to delete, each as `iptables -t nat -D` takes it: the chain, then the rule.
    pub rules: Vec<Vec<String>>,
    /// The per-sandbox chains (`CNI-…`, `CNI-DN-…`) to flush and delete, after the rules.
    pub chains: Vec<String>,
}

/// Decides, from `iptables-save -t nat` output, which rules and chains network `network` left.
///
/// The bridge (masquerade) and portmap (DNAT) plugins comment every rule they add with
/// `name: "<network>" id: "<sandbox>"` (portmap prefixes `dnat `) and jump from shared chains
/// to a chain per sandbox. Those chains go whole; the commented rules and any jump to such a
/// chain are deleted; the shared `CNI-HOSTPORT-*` chains stay, as other networks use them.
pub(crate) fn nat_cleanup(save: &str, network: &str) -> NatCleanup {
    let marker = format!("name: \"{network}\" id: ");
    let rules: Vec<Vec<String>> = save
        .lines()
        .filter(|line| line.starts_with("-A "))
        .map(split_words)
        .filter(|words| words.len() >= 2)
        .collect();
    let commented = |words: &Vec<String>| words.iter().any(|word| word.contains(&marker));
    let chains: BTreeSet<String> = rules
        .iter()
        .filter(|words| commented(words))
        .filter_map(|words| jump_target(words))
        .filter(|target| target.starts_with("CNI-") && !target.starts_with("CNI-HOSTPORT-"))
        .map(String::from)
        .collect();
    let delete = rules
        .iter()
        .filter(|words| !chains.contains(&words[1]))
        .filter(|words| commented(words) || jump_target(words).is_some_and(|t| chains.contains(t)))
        .map(|words| words[1..].to_vec())
        .collect();
    NatCleanup { rules: delete, chains: chains.into_iter().collect() }
}

/// The chain a rule jumps (`-j`) or goes (`-g`) to.
fn jump_target(words: &[String]) -> Option<&str> {
    let position = words.iter().position(|word| word == "-j" || word == "-g")?;
    words.get(position + 1).map(String::as_str)
}

/// Splits an `iptables-save` line into words: double quotes group, `\` escapes within them.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => word.extend(chars.next()),
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Deletes the nat rules and chains of `network`. Without iptables there is nothing to delete:
/// the CNI plugins could not have added any.
async fn remove_nat_rules(network: &str, failures: &mut Vec<String>) {
    let (Ok(save), Ok(iptables)) = (find_program("iptables-save"), find_program("iptables")) else {
        return;
    };
    let rules = match run(&save, &["-t", "nat"]).await {
        Ok(output) => output,
        Err(err) => return failures.push(err),
    };
    let cleanup = nat_cleanup(&rules, network);
    for rule in &cleanup.rules {
        let mut args = vec!["-w", "-t", "nat", "-D"];
        args.extend(rule.iter().map(String::as_str));
        if let Err(err) = run(&iptables, &args).await {
            failures.push(err);
        }
    }
    for chain in &cleanup.chains {
        for flag in ["-F", "-X"] {
            if let Err(err) = run(&iptables, &["-w", "-t", "nat", flag, chain]).await {
                failures.push(err);
            }
        }
    }
    if !cleanup.rules.is_empty() {
        tracing::info!(
            network,
            rules = cleanup.rules.len(),
            chains = cleanup.chains.len(),
            "removed nat rules"
        );
    }
}

/// Deletes the node's bridge, which the CNI bridge plugin never deletes.
async fn delete_bridge(bridge: &str, failures: &mut Vec<String>) {
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return;
    }
    let result = match find_program("ip") {
        Ok(ip) => run(&ip, &["link", "delete", bridge]).await.map(drop),
        Err(err) => Err(err.to_string()),
    };
    if let Err(err) = result {
        failures.push(err);
    }
}

async fn remove_dir(dir: &Path, failures: &mut Vec<String>) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => failures.push(format!("removing {}: {err}", dir.display())),
    }
}

/// Waits until every process of `pids` has exited, for a bounded time.
async fn wait_all_gone(pids: &[Pid], what: &str, failures: &mut Vec<String>) {
    let started = Instant::now();
    while pids.iter().any(|&pid| process::alive(pid)) {
        if started.elapsed() > EXIT_WAIT {
            let left: Vec<String> =
                pids.iter().filter(|&&pid| process::alive(pid)).map(Pid::to_string).collect();
            return failures.push(format!("{what} processes {} outlived SIGKILL", left.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `program args`, returning its stdout, or an error message with its stderr.
async fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let describe = || format!("{} {}", program.display(), args.join(" "));
    let output = Command::new(program).args(args).kill_on_drop(true).output();
    match tokio::time::timeout(COMMAND_TIMEOUT, output).await {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => Err(format!(
            "`{}` failed ({}): {}",
            describe(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(Err(err)) => Err(format!("running `{}`: {err}", describe())),
        Err(_) => Err(format!("`{}` did not finish within {COMMAND_TIMEOUT:?}", describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iptables-save -t nat` after two pods of network `flotilla-aa` (one with a hostPort)
    /// and one of network `flotilla-aab` (a name `flotilla-aa` is a prefix of).
    const SAVE: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Tue Nov 24 10:59:56 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
:CNI-1111 - [0:0]
:CNI-2222 - [0:0]
:CNI-3333 - [0:0]
:CNI-DN-2222 - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s 10.88.0.2/32 -m comment --comment "name: \"flotilla-aa\" id: \"abc\"" -j CNI-1111
-A POSTROUTING -s 10.88.0.3/32 -m comment --comment "name: \"flotilla-aa\" id: \"def\"" -j CNI-2222
-A POSTROUTING -s 10.88.1.2/32 -m comment --comment "name: \"flotilla-aab\" id: \"ghi\"" -j CNI-3333
-A CNI-1111 -d 10.88.0.0/24 -m comment --comment "name: \"flotilla-aa\" id: \"abc\"" -j ACCEPT
-A CNI-1111 ! -d 224.0.0.0/4 -m comment --comment "name: \"flotilla-aa\" id: \"abc\"" -j MASQUERADE
-A CNI-2222 -d 10.88.0.0/24 -m comment --comment "name: \"flotilla-aa\" id: \"def\"" -j ACCEPT
-A CNI-2222 ! -d 224.0.0.0/4 -m comment --comment "name: \"flotilla-aa\" id: \"def\"" -j MASQUERADE
-A CNI-3333 ! -d 224.0.0.0/4 -m comment --comment "name: \"flotilla-aab\" id: \"ghi\"" -j MASQUERADE
-A CNI-DN-2222 -s 10.88.0.3/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-2222 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.3:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"flotilla-aa\" id: \"def\"" -m multiport --dports 8080 -j CNI-DN-2222
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
"#;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    #[test]
    fn nat_cleanup_removes_one_networks_rules_and_chains() {
        let cleanup = nat_cleanup(SAVE, "flotilla-aa");
        assert_eq!(cleanup.chains, ["CNI-1111", "CNI-2222", "CNI-DN-2222"]);
        let comment = |id: &str| format!("name: \"flotilla-aa\" id: \"{id}\"");
        let mut masquerade_abc = words("POSTROUTING -s 10.88.0.2/32 -m comment --comment");
        masquerade_abc.extend([comment("abc"), "-j".into(), "CNI-1111".into()]);
        let mut masquerade_def = words("POSTROUTING -s 10.88.0.3/32 -m comment --comment");
        masquerade_def.extend([comment("def"), "-j".into(), "CNI-2222".into()]);
        let mut dnat_def = words("CNI-HOSTPORT-DNAT -p tcp -m comment --comment");
        dnat_def.push(format!("dnat {}", comment("def")));
        dnat_def.extend(words("-m multiport --dports 8080 -j CNI-DN-2222"));
        assert_eq!(cleanup.rules, [masquerade_abc, masquerade_def, dnat_def]);
    }

    #[test]
    fn nat_cleanup_leaves_other_networks_and_shared_chains_alone() {
        let other = nat_cleanup(SAVE, "flotilla-aab");
        assert_eq!(other.chains, ["CNI-3333"]);
        assert_eq!(other.rules.len(), 1);
        assert_eq!(other.rules[0][..3], words("POSTROUTING -s 10.88.1.2/32"));
        assert_eq!(nat_cleanup(SAVE, "flotilla-zz"), NatCleanup::default());
        assert_eq!(nat_cleanup("", "flotilla-aa"), NatCleanup::default());
        for cleanup in [nat_cleanup(SAVE, "flotilla-aa"), other] {
            assert!(cleanup.chains.iter().all(|chain| !chain.starts_with("CNI-HOSTPORT-")));
        }
    }

    #[test]
    fn nat_cleanup_deletes_uncommented_jumps_to_removed_chains() {
        let save = r#"-A CNI-HOSTPORT-DNAT -m comment --comment "dnat name: \"n\" id: \"x\"" -j CNI-DN-9
-A OUTPUT -j CNI-DN-9
"#;
        let cleanup = nat_cleanup(save, "n");
        assert_eq!(cleanup.chains, ["CNI-DN-9"]);
        assert_eq!(cleanup.rules.len(), 2);
        assert_eq!(cleanup.rules[1], words("OUTPUT -j CNI-DN-9"));
    }

    #[test]
    fn splits_iptables_save_words_with_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"-A X -m comment --comment "a \"b\" c\\d" -j Y"#),
            ["-A", "X", "-m", "comment", "--comment", r#"a "b" c\d"#, "-j", "Y"]
        );
        assert_eq!(split_words(r#"--comment """#), ["--comment", ""]);
        assert!(split_words("   ").is_empty());
    }

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 22 0:4 net:[4026532300] /d/containerd/state/netns/cni-1 rw shared:2 - nsfs nsfs rw
91 22 0:50 / /d/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
92 91 0:51 / /d/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs/dev rw - tmpfs tmpfs rw
93 22 0:52 / /d/containerd-other/state/netns/cni-2 rw - nsfs nsfs rw
94 22 0:53 / /d/containerd/state/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_a_cgroup_in_every_hierarchy() {
        let dirs = cgroup_dirs(MOUNTINFO, "/flotilla/node-1");
        assert_eq!(
            dirs,
            [
                PathBuf::from("/sys/fs/cgroup/memory/flotilla/node-1"),
                PathBuf::from("/sys/fs/cgroup/systemd/flotilla/node-1"),
                PathBuf::from("/sys/fs/cgroup/unified/flotilla/node-1"),
            ]
        );
        let v2_only = "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_dirs(v2_only, "/flotilla/n"),
            [PathBuf::from("/sys/fs/cgroup/flotilla/n")]
        );
    }

    #[test]
    fn finds_the_mounts_under_a_directory_deepest_first() {
        let points = mount_points_under(MOUNTINFO, Path::new("/d/containerd"));
        let rootfs = "/d/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs";
        assert_eq!(
            points,
            [
                PathBuf::from(format!("{rootfs}/dev")),
                PathBuf::from(rootfs),
                PathBuf::from("/d/containerd/state/netns/cni-1"),
                PathBuf::from("/d/containerd/state/with space"),
            ]
        );
        assert!(mount_points_under(MOUNTINFO, Path::new("/e")).is_empty());
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_octal(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape_octal(r"/a\04"), r"/a\04", "a cut escape stays");
        assert_eq!(unescape_octal(r"\\"), r"\\");
    }
}
