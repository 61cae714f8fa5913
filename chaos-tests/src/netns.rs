//! Clusters whose masters each run in a network namespace of their own, so that a test can cut
//! one master off the network and heal it again.
//!
//! Layout: a Linux bridge `flbr<tag>` in the root namespace holds `10.213.<n>.1/24`, where
//! `10.213.<n>.0/24` is a subnet no address or route of this host uses yet. Master `i` runs in
//! namespace `flotilla-chaos-<tag>-m<i>` behind a veth pair whose root end `flve<tag>m<i>` is a
//! port of the bridge, and listens on `10.213.<n>.<10 + i>` (peers on 2380, clients on 2379). The tag is
//! the test's pid plus a letter, so tests running at the same time never share a name. The
//! namespaces have no default route: traffic stays on the bridge and on loopback.
//!
//! Everything is removed on drop: the masters (SIGTERM, then SIGKILL), the veth pairs, the
//! namespaces and the bridge. Masters are also started with `setpriv --pdeathsig KILL`, so they
//! die with the thread that started them even when the test process is killed (a test timeout);
//! namespaces and links left behind by a test process that no longer exists are removed by the
//! next [`NetnsCluster::start`].
//!
//! Needs root, iproute2 (`ip`), util-linux (`setpriv`), and `etcdctl` for
//! [`NetnsCluster::etcdctl_in`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use flotilla_store::pki::{CertFiles, ClusterPki};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::flotilla_bin;

const PEER_PORT: u16 = 2380;
const CLIENT_PORT: u16 = 2379;
/// How long `start` waits for the masters to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long masters get to stop after SIGTERM before they are killed. Masters stopped while a
/// peer is cut off have been seen not to exit on SIGTERM at all, so this is a real bound.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The names and address in-cluster clients reach the API by (the `kubernetes` Service on the
/// first address of the masters' default service range, 10.96.0.0/12), which every master's
/// serving certificate is valid for, as `flotilla up` issues them.
const IN_CLUSTER_API_HOSTS: [&str; 5] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];
const NAMESPACE_PREFIX: &str = "flotilla-chaos-";
const BRIDGE_PREFIX: &str = "flbr";
const VETH_PREFIX: &str = "flve";

/// One master of a [`NetnsCluster`].
#[derive(Clone, Debug)]
pub struct NetnsMember {
    pub name: String,
    /// The network namespace the master runs in.
    pub namespace: String,
    /// The master's address on the bridge.
    pub address: Ipv4Addr,
    pub client_url: String,
    pub peer_url: String,
    /// Holds the master's `data/` and `log`.
    pub dir: PathBuf,
    /// The root namespace's end of the master's veth pair (a bridge port).
    veth: String,
}

/// Masters in network namespaces of their own, joined by a bridge; removed on drop.
pub struct NetnsCluster {
    pub dir: PathBuf,
    pub members: Vec<NetnsMember>,
    ca: CertFiles,
    admin: CertFiles,
    masters: Masters,
    network: Network,
}

impl NetnsCluster {
    /// Creates the bridge and one namespace per master, starts `masters` masters and waits
    /// until one of them reports a leader.
    ///
    /// The masters die with the thread that spawns them (see the module docs): await this
    /// directly in the test's body, not in a spawned task.
    pub async fn start(masters: usize) -> anyhow::Result<NetnsCluster> {
        if masters == 0 || masters > 9 {
            bail!("a netns cluster has 1 to 9 masters, not {masters}");
        }
        remove_stale_networks();
        let tag = new_tag();
        let subnet = free_subnet()?;
        let dir = std::env::temp_dir().join(format!("flotilla-netns-{tag}"));
        let pki = ClusterPki::create(&dir.join("pki"))?;
        let (ca, admin) = (pki.ca.clone(), pki.admin.clone());

        let bridge_address = Ipv4Addr::new(10, 213, subnet, 1);
        let mut network = Network::create(&format!("{BRIDGE_PREFIX}{tag}"), bridge_address)?;
        let mut members = Vec::new();
        for i in 1..=masters {
            let address = Ipv4Addr::new(10, 213, subnet, 10 + i as u8);
            let member = NetnsMember {
                name: format!("master-{i}"),
                namespace: format!("{NAMESPACE_PREFIX}{tag}-m{i}"),
                address,
                client_url: format!("https://{address}:{CLIENT_PORT}"),
                peer_url: format!("https://{address}:{PEER_PORT}"),
                dir: dir.join(format!("master-{i}")),
                veth: format!("{VETH_PREFIX}{tag}m{i}"),
            };
            network.add_host(&member.namespace, &member.veth, address)?;
            members.push(member);
        }
        eprintln!(
            "netns cluster: bridge {} ({bridge_address}), members {}",
            network.bridge,
            members
                .iter()
                .map(|m| format!("{}={}@{}", m.name, m.address, m.namespace))
                .collect::<Vec<_>>()
                .join(" ")
        );

        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let binary = flotilla_bin()?;
        let mut running = Masters::default();
        for member in &members {
            std::fs::create_dir_all(&member.dir)?;
            let address = member.address.to_string();
            let mut hosts = vec![address.as_str(), "127.0.0.1", "localhost"];
            hosts.extend(IN_CLUSTER_API_HOSTS);
            let cert = pki.issue_master(&member.name, &hosts)?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(member.dir.join("log"))
                .context("opening the member log")?;
            let child = Command::new("ip")
                .args(["netns", "exec", &member.namespace])
                .args(["setpriv", "--pdeathsig", "KILL", "--"])
                .arg(&binary)
                .arg("master")
                .arg(format!("--name={}", member.name))
                .arg(format!("--data-dir={}", member.dir.join("data").display()))
                .arg(format!("--listen-peer-urls={}", member.peer_url))
                .arg(format!("--listen-client-urls={}", member.client_url))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!("--trusted-ca-file={}", ca.cert.display()))
                .arg(format!("--cert-file={}", cert.cert.display()))
                .arg(format!("--key-file={}", cert.key.display()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {} in {}", member.name, member.namespace))?;
            running.children.push((member.name.clone(), child));
        }

        let cluster = NetnsCluster { dir, members, ca, admin, masters: running, network };
        let all: Vec<usize> = (0..masters).collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        while cluster.leader_among(&all).await.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "the masters elected no leader within {READY_TIMEOUT:?} (logs in {})",
                    cluster.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(cluster)
    }

    /// Connects an etcd client from the root namespace to the given members (all when empty).
    pub async fn client(&self, members: &[usize]) -> anyhow::Result<etcd_client::Client> {
        let endpoints: Vec<String> = if members.is_empty() {
            self.members.iter().map(|m| m.client_url.clone()).collect()
        } else {
            members.iter().map(|i| self.members[*i].client_url.clone()).collect()
        };
        let read = |path: &PathBuf| -> anyhow::Result<Vec<u8>> {
            std::fs::read(path).with_context(|| path.display().to_string())
        };
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca.cert)?))
            .identity(etcd_client::Identity::from_pem(
                read(&self.admin.cert)?,
                read(&self.admin.key)?,
            ));
        let options = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(6));
        Ok(etcd_client::Client::connect(endpoints, Some(options)).await?)
    }

    /// Returns the index of the member among `members` that reports itself leader, asking each
    /// of them from the root namespace (so an isolated member is never asked successfully).
    pub async fn leader_among(&self, members: &[usize]) -> Option<usize> {
        for &member in members {
            // An isolated member never answers.
            let Some(status) =
                crate::status_within(self.client(std::slice::from_ref(&member))).await
            else {
                continue;
            };
            let own_id = status.header().map(|h| h.member_id()).unwrap_or(0);
            if status.leader() != 0 && status.leader() == own_id {
                return Some(member);
            }
        }
        None
    }

    /// Returns, for each member, the leader id it reports (`None` when it does not answer).
    pub async fn reported_leaders(&self) -> Vec<Option<u64>> {
        let mut leaders = Vec::new();
        for member in 0..self.members.len() {
            let status = async {
                let mut client = self.client(&[member]).await.ok()?;
                client.status().await.ok()
            };
            let status = tokio::time::timeout(Duration::from_secs(2), status).await.ok().flatten();
            leaders.push(status.map(|s| s.leader()).filter(|id| *id != 0));
        }
        leaders
    }

    /// Runs the real etcdctl inside `member`'s namespace against that member's client URL
    /// only, with `--command-timeout` set to `timeout`. Fails if etcdctl has not exited two
    /// seconds after that.
    pub async fn etcdctl_in(
        &self,
        member: usize,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let member = &self.members[member];
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &member.namespace, "etcdctl"])
            .arg(format!("--endpoints={}", member.client_url))
            .arg(format!("--cacert={}", self.ca.cert.display()))
            .arg(format!("--cert={}", self.admin.cert.display()))
            .arg(format!("--key={}", self.admin.key.display()))
            .arg("--dial-timeout=2s")
            .arg(format!("--command-timeout={}ms", timeout.as_millis()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .env_remove("ETCDCTL_CACERT")
            .env_remove("ETCDCTL_CERT")
            .env_remove("ETCDCTL_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running etcdctl (install the etcd-client package)")?;
        let limit = timeout + Duration::from_secs(2);
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(output) => Ok(output?),
            Err(_) => bail!(
                "etcdctl {} in {} did not exit within {limit:?}",
                args.join(" "),
                member.namespace
            ),
        }
    }

    /// Cuts `member` off the network: the bridge end of its veth pair goes down, so nothing
    /// reaches it and nothing leaves it; it can still talk to itself.
    pub fn isolate(&self, member: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.members[member].veth, "down"])
    }

    /// Puts `member` back on the network.
    pub fn heal(&self, member: usize) -> anyhow::Result<()> {
        ip(&["link", "set", &self.members[member].veth, "up"])
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        // The masters stop first: a namespace with processes in it outlives `ip netns del`.
        let stopping = Instant::now();
        self.masters.stop();
        self.network.remove();
        eprintln!("netns cluster: stopped and removed in {:?}", stopping.elapsed());
        if std::thread::panicking() {
            for member in &self.members {
                let log = std::fs::read_to_string(member.dir.join("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- last lines of {}'s log", member.name);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            eprintln!("keeping {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The running masters; stopped on drop (also when `start` fails half-way).
#[derive(Default)]
struct Masters {
    children: Vec<(String, Child)>,
}

impl Masters {
    fn stop(&mut self) {
        for (_, child) in &self.children {
            // `ip netns exec` and `setpriv` exec the master: the child's pid is the master's.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for (name, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("{name} did not stop within {STOP_GRACE:?}; killing it");
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Masters {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bridge, namespaces and veth pairs created so far; removed on drop.
struct Network {
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
    removed: bool,
}

impl Network {
    /// Creates the bridge with `address`/24 on it.
    fn create(bridge: &str, address: Ipv4Addr) -> anyhow::Result<Network> {
        ip(&["link", "add", bridge, "type", "bridge"])?;
        let network = Network {
            bridge: bridge.to_string(),
            namespaces: Vec::new(),
            veths: Vec::new(),
            removed: false,
        };
        ip(&["addr", "add", &format!("{address}/24"), "dev", bridge])?;
        ip(&["link", "set", bridge, "up"])?;
        Ok(network)
    }

    /// Creates `namespace`, joined to the bridge by a veth pair (`veth` on the bridge, `eth0`
    /// with `address`/24 in the namespace), with loopback up.
    fn add_host(&mut self, namespace: &str, veth: &str, address: Ipv4Addr) -> anyhow::Result<()> {
        ip(&["netns", "add", namespace])?;
        self.namespaces.push(namespace.to_string());
        ip(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace])?;
        self.veths.push(veth.to_string());
        ip(&["link", "set", veth, "master", &self.bridge, "up"])?;
        ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        ip(&["-n", namespace, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", namespace, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Removes everything; reports what could not be removed.
    fn remove(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        // Deleting a namespace frees its links asynchronously: delete the veths explicitly.
        let links = self.veths.iter().chain(std::iter::once(&self.bridge));
        for link in links {
            if let Err(e) = ip(&["link", "del", link]) {
                eprintln!("removing link {link}: {e:#}");
            }
        }
        for namespace in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", namespace]) {
                eprintln!("removing namespace {namespace}: {e:#}");
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `ip` with `args`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context("running ip (install iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

fn ip_output(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip").args(args).output().context("running ip (install iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Returns a name tag unique among live processes: this pid and a letter per cluster.
fn new_tag() -> String {
    static CLUSTERS: AtomicU32 = AtomicU32::new(0);
    let n = CLUSTERS.fetch_add(1, Ordering::Relaxed) % 26;
    format!("{}{}", std::process::id(), char::from(b'a' + n as u8))
}

/// Returns `n` such that no address or route of the root namespace is in `10.213.<n>.0/24`,
/// starting from one derived from the pid so that concurrent tests rarely race for one.
fn free_subnet() -> anyhow::Result<u8> {
    let used = format!("{}\n{}", ip_output(&["-4", "-o", "addr"])?, ip_output(&["-4", "route"])?);
    let start = std::process::id() % 256;
    (0..256)
        .map(|offset| ((start + offset) % 256) as u8)
        .find(|n| !used.contains(&format!("10.213.{n}.")))
        .ok_or_else(|| anyhow!("every /24 of 10.213.0.0/16 is in use"))
}

/// Removes the namespaces, bridges and veths of netns clusters whose test process is gone and
/// whose namespace has no process left in it.
fn remove_stale_networks() {
    let owner_is_gone = |rest: &str| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<i32>() {
            Ok(pid) => kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH),
            Err(_) => false,
        }
    };
    if let Ok(links) = ip_output(&["-o", "link"]) {
        for line in links.lines() {
            // "5: flve1234am1@if2: <...>"
            let Some(name) = line.split(": ").nth(1) else { continue };
            let name = name.split('@').next().unwrap_or(name);
            let rest = name.strip_prefix(VETH_PREFIX).or_else(|| name.strip_prefix(BRIDGE_PREFIX));
            if rest.is_some_and(owner_is_gone) {
                eprintln!("removing link {name} left by a test that is gone");
                let _ = ip(&["link", "del", name]);
            }
        }
    }
    if let Ok(namespaces) = ip_output(&["netns", "list"]) {
        for line in namespaces.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) else { continue };
            let empty =
                ip_output(&["netns", "pids", name]).is_ok_and(|pids| pids.trim().is_empty());
            if owner_is_gone(rest) && empty {
                eprintln!("removing namespace {name} left by a test that is gone");
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}
