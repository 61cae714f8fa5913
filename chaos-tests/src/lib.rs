//! A harness for tests on real flotilla processes: start a local cluster with `flotilla up`,
//! drive it with the real `etcdctl` and an etcd client, and inject faults (kill -9, SIGSTOP,
//! restart) into its members.
//!
//! [`netns::NetnsCluster`] runs masters in network namespaces of their own instead, for
//! partitions.
//!
//! The binary under test is `$FLOTILLA_BIN`, or `target/debug/flotilla` of this workspace
//! (build it first: `cargo build --bin flotilla`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub mod bench;
pub mod dns_load;
pub mod kube_proxy;
pub mod kubelet;
pub mod netns;

/// Returns the flotilla binary to test.
pub fn flotilla_bin() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("FLOTILLA_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/flotilla"),
    };
    if !path.exists() {
        bail!("{} does not exist: run `cargo build --bin flotilla` first", path.display());
    }
    Ok(path)
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One member of a running cluster.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub dir: PathBuf,
    pub client_url: String,
}

/// A cluster started by `flotilla up`, stopped (and its directory removed) on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub members: Vec<Member>,
    env: Vec<(String, String)>,
    up: Child,
    /// Leave `dir` in place when dropped (the cluster still stops).
    keep_dir: bool,
}

impl Cluster {
    /// Starts `flotilla up --masters N` in a fresh directory and waits for its `ready` line.
    pub fn start(masters: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with_agents(masters, 0)
    }

    /// As [`Cluster::start`], with `agents` node agents (`agent-1`, …) too.
    pub fn start_with_agents(masters: usize, agents: usize) -> anyhow::Result<Cluster> {
        Cluster::start_up(masters, &["--agents", &agents.to_string()])
    }

    /// As [`Cluster::start`], with `nodes` hollow nodes (`hollow-1`, …, simulated in one
    /// process, member `hollow`) too.
    pub fn start_with_hollow_nodes(masters: usize, nodes: usize) -> anyhow::Result<Cluster> {
        Cluster::start_up(masters, &["--hollow-nodes", &nodes.to_string()])
    }

    /// Runs `flotilla up --masters N <extra>` in a fresh directory and waits for its `ready`.
    fn start_up(masters: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut up = Command::new(flotilla_bin()?)
            .args(["up", "--masters", &masters.to_string()])
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting flotilla up")?;
        let stdout = up.stdout.take().ok_or_else(|| anyhow!("no stdout from flotilla up"))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let ready = line == "ready";
                if sender.send(line).is_err() || ready {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = up.kill();
                    bail!(
                        "flotilla up printed no `ready` line in time (logs in {})",
                        dir.display()
                    );
                }
            }
        }
        let env = read_env(&dir.join("etcd.env"))?;
        let endpoints = env
            .iter()
            .find(|(k, _)| k == "ETCDCTL_ENDPOINTS")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("etcd.env has no ETCDCTL_ENDPOINTS"))?;
        let members = endpoints
            .split(',')
            .enumerate()
            .map(|(i, url)| {
                let name = format!("master-{}", i + 1);
                Member { dir: dir.join(&name), name, client_url: url.to_string() }
            })
            .collect();
        Ok(Cluster { dir, members, env, up, keep_dir: false })
    }

    /// Keeps the cluster's directory (logs, data, certificates) once the cluster is dropped.
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }

    /// The administrator kubeconfig `flotilla up` wrote.
    /// Every master's API address, where the masters also gossip.
    pub fn api_addresses(&self) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        self.members.iter().map(Member::api_address).collect()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A kubectl command with the cluster's kubeconfig and a discovery cache of its own.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.join("home"))
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl against the master the kubeconfig names.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.kubectl_command(args).output().context("running kubectl")
    }

    /// kubectl's output, or empty text when kubectl failed: for conditions polled until they hold.
    pub fn kubectl_output(&self, args: &[&str]) -> String {
        self.kubectl(args).ok().and_then(|o| stdout_of(&o).ok()).unwrap_or_default()
    }

    /// Waits until `count` nodes report Ready, asking kubectl with the `--server=…` flag
    /// `server`.
    pub async fn wait_for_ready_nodes(&self, server: &str, count: usize) -> anyhow::Result<()> {
        wait_until(Duration::from_secs(60), &format!("{count} Ready nodes"), || async {
            let ready = self.kubectl_output(&[
                server,
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            ready.split_whitespace().filter(|status| *status == "True").count() == count
        })
        .await
    }

    /// Who holds the controller lease, as `server` answers (None when unknown or unheld).
    pub fn lease_holder(&self, server: &str) -> Option<String> {
        let holder = self.kubectl_output(&[
            server,
            "get",
            "lease",
            "flotilla-controller-manager",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        (!holder.is_empty()).then_some(holder)
    }

    /// The member holding the controller lease (its holder identity is `<member>_<pid>`).
    pub fn lease_holder_member(&self, holder: &str) -> anyhow::Result<usize> {
        self.members
            .iter()
            .position(|m| holder.starts_with(&format!("{}_", m.name)))
            .ok_or_else(|| anyhow!("lease holder {holder} is no member"))
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_input(&self, args: &[&str], input: &str) -> anyhow::Result<Output> {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, input.as_bytes())?;
        }
        child.wait_with_output().context("waiting for kubectl")
    }

    /// The ETCDCTL_* variables of `etcd.env`.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    fn env_value(&self, key: &str) -> anyhow::Result<String> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("etcd.env has no {key}"))
    }

    /// Runs the real etcdctl against the whole cluster.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.etcdctl_input(args, None)
    }

    /// Runs the real etcdctl against one endpoint only.
    pub fn etcdctl_on(&self, endpoint: &str, args: &[&str]) -> anyhow::Result<Output> {
        self.run_etcdctl(args, None, Some(endpoint))
    }

    /// Runs etcdctl with `input` on its standard input.
    pub fn etcdctl_input(&self, args: &[&str], input: Option<&str>) -> anyhow::Result<Output> {
        self.run_etcdctl(args, input, None)
    }

    fn run_etcdctl(
        &self,
        args: &[&str],
        input: Option<&str>,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Output> {
        use std::io::Write;
        let mut command = Command::new("etcdctl");
        command.args(args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(endpoint) = endpoint {
            command.env("ETCDCTL_ENDPOINTS", endpoint);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running etcdctl (install the etcd-client package)")?;
        if let Some(mut stdin) = child.stdin.take() {
            if let Some(input) = input {
                stdin.write_all(input.as_bytes())?;
            }
        }
        Ok(child.wait_with_output()?)
    }

    /// Connects an etcd client to the given endpoints (all members when empty).
    pub async fn client(&self, endpoints: &[String]) -> anyhow::Result<etcd_client::Client> {
        let endpoints: Vec<String> = if endpoints.is_empty() {
            self.members.iter().map(|m| m.client_url.clone()).collect()
        } else {
            endpoints.to_vec()
        };
        let read = |key: &str| -> anyhow::Result<Vec<u8>> {
            let path = self.env_value(key)?;
            std::fs::read(&path).with_context(|| path)
        };
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read("ETCDCTL_CACERT")?))
            .identity(etcd_client::Identity::from_pem(read("ETCDCTL_CERT")?, read("ETCDCTL_KEY")?));
        let options = etcd_client::ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(6));
        Ok(etcd_client::Client::connect(endpoints, Some(options)).await?)
    }

    /// Returns the index of the member the cluster reports as leader, asking each member.
    pub async fn leader(&self) -> Option<usize> {
        for member in &self.members {
            // A paused member accepts connections but never answers.
            let Some(status) =
                status_within(self.client(std::slice::from_ref(&member.client_url))).await
            else {
                continue;
            };
            if status.leader() != 0
                && status.leader() == status.header().map(|h| h.member_id()).unwrap_or(0)
            {
                return self.members.iter().position(|m| m.name == member.name);
            }
        }
        None
    }

    pub fn pid(&self, member: usize) -> anyhow::Result<i32> {
        let path = self.members[member].dir.join("pid");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        Ok(text.trim().parse()?)
    }

    pub fn signal(&self, member: usize, signal: Signal) -> anyhow::Result<()> {
        kill(Pid::from_raw(self.pid(member)?), signal)
            .with_context(|| format!("sending {signal} to {}", self.members[member].name))
    }

    /// Restarts a member with its recorded command; its log is appended to.
    pub fn restart(&self, member: usize) -> anyhow::Result<()> {
        restart_in(&self.members[member].dir)
    }

    /// The directory of agent `n` (`agent-<n>`, from 1).
    pub fn agent_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("agent-{n}"))
    }

    /// Sends `signal` to agent `n`.
    pub fn signal_agent(&self, n: usize, signal: Signal) -> anyhow::Result<()> {
        let pid: i32 = std::fs::read_to_string(self.agent_dir(n).join("pid"))?.trim().parse()?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal} to agent-{n}"))
    }

    /// The network namespace agent `n` runs in (the name under /run/netns, for `ip netns exec`).
    pub fn agent_netns(&self, n: usize) -> anyhow::Result<String> {
        let cmd = std::fs::read_to_string(self.agent_dir(n).join("cmd"))?;
        cmd.split_whitespace()
            .find_map(|word| word.strip_prefix("--netns="))
            .and_then(|path| path.rsplit('/').next())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("agent-{n} runs in no network namespace"))
    }

    /// A value of the agents' network as `flotilla up` describes it in `DIR/lan.env`
    /// (`FLOTILLA_LAN_BRIDGE`, `_SUBNET`, `_GATEWAY`, `_AGENTS`).
    pub fn lan(&self, key: &str) -> anyhow::Result<String> {
        read_env(&self.dir.join("lan.env"))?
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
            .ok_or_else(|| anyhow!("{key} is not in lan.env"))
    }

    /// Restarts agent `n` with its recorded command.
    pub fn restart_agent(&self, n: usize) -> anyhow::Result<()> {
        restart_in(&self.agent_dir(n))
    }
}

/// Restarts the member whose files are in `dir` with its recorded command, appending to its
/// log; `flotilla up` stops it at the end through its pid file.
fn restart_in(dir: &Path) -> anyhow::Result<()> {
    {
        let cmd = std::fs::read_to_string(dir.join("cmd"))?;
        let log = std::fs::OpenOptions::new().append(true).open(dir.join("log"))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", cmd.trim()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        std::fs::write(dir.join("pid"), format!("{}\n", child.id()))?;
        // The member is owned by `flotilla up`'s cleanup through its pid file, not by us.
        std::mem::forget(child);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.up.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        if self.keep_dir {
            eprintln!("cluster directory kept: {}", self.dir.display());
        } else if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes a key, retrying for up to 5 s while the cluster answers "unavailable" (a leader
/// change under load): for a test's setup writes, where the write itself is not under test.
/// Rewriting the same value is harmless if an earlier attempt did commit.
pub async fn put_retrying(
    client: &mut etcd_client::Client,
    key: &str,
    value: &str,
    options: Option<etcd_client::PutOptions>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.put(key, value, options.clone()).await {
            Ok(_) => return Ok(()),
            Err(etcd_client::Error::GRpcStatus(status))
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                eprintln!("retrying put {key}: {}", status.message());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads every key under `prefix` (linearizable) as text.
pub async fn read_prefix(
    client: &mut etcd_client::Client,
    prefix: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let response = client.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())).await?;
    Ok(response
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap_or_default().to_string(),
                kv.value_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Connects and asks for a member's status, each step bounded to a second; `None` when the
/// member does not answer in time.
pub async fn status_within(
    connect: impl std::future::Future<Output = anyhow::Result<etcd_client::Client>>,
) -> Option<etcd_client::StatusResponse> {
    let step = Duration::from_secs(1);
    let mut client = tokio::time::timeout(step, connect).await.ok()?.ok()?;
    tokio::time::timeout(step, client.status()).await.ok()?.ok()
}

fn read_env(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0)
}

/// Returns stdout as text, failing with stderr if the command failed.
pub fn stdout_of(output: &Output) -> anyhow::Result<String> {
    if !output.status.success() {
        bail!(
            "command failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Member {
    /// The member's Kubernetes API URL.
    pub fn api_url(&self) -> anyhow::Result<String> {
        self.flag("listen-api-url")
    }

    /// The member's API address, where it also gossips (over UDP).
    pub fn api_address(&self) -> anyhow::Result<std::net::SocketAddr> {
        let url = self.api_url()?;
        let address = url.trim_start_matches("https://").trim_end_matches('/');
        address.parse().with_context(|| format!("{} has API URL {url}", self.name))
    }

    /// Returns a `--flag=value` argument of the member's recorded command.
    pub fn flag(&self, flag: &str) -> anyhow::Result<String> {
        let cmd = std::fs::read_to_string(self.dir.join("cmd"))?;
        let prefix = format!("--{flag}=");
        cmd.split_whitespace()
            .find_map(|word| word.strip_prefix(&prefix))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{} has no --{flag}", self.name))
    }
}
