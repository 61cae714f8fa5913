//! `flotilla up`: a local cluster of separate processes, TLS on. The store's members talk on
//! loopback. Agents each run in a network namespace of their own on a bridge ([`Lan`]), as
//! separate machines would, and the masters serve their API on the host's address there; a
//! cluster without agents keeps its API on loopback too.
//!
//! Layout of DIR: `pki/` (CA, member and admin certificates, and `sa.key`, the service-account
//! signing key the masters find beside the CA), `etcd.env` (etcdctl settings), `lan.env` (the
//! agents' network: bridge, subnet, addresses),
//! and per member (`master-<n>`, `agent-<n>`, `hollow` for all hollow nodes) `DIR/<member>/`
//! with `data/`, `log`, `pid` and `cmd` (the exact command that restarts the member). Members
//! that die are not restarted: chaos tests rely on that.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use flotilla_store::pki::ClusterPki;
use flotilla_store::ports::free_local_port;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::lan::Lan;
use crate::master::{
    kubernetes_service_ip, DEFAULT_SERVICE_CLUSTER_IP_RANGE, KUBERNETES_SERVICE_NAMES,
};

#[derive(Args, Clone, Debug)]
pub struct UpArgs {
    /// How many masters (odd: 1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// How many node agents to start (each registers a Node named `agent-<n>`).
    #[arg(long, default_value_t = 0)]
    pub agents: usize,
    /// How many hollow nodes to run beside the masters, all in one process (member `hollow`,
    /// nodes `hollow-<n>`): simulated nodes for scale tests, see `flotilla hollow`.
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
    /// The directory for certificates, data and logs (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// An image archive (OCI or Docker `*.tar`) every agent imports at start, besides those in
    /// /var/lib/flotilla/images; repeatable.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
}

/// How long `up` waits for the store to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The last object the API servers create at start.
const BOOTSTRAPPED_KEY: &str =
    "/registry/rbac.authorization.k8s.io/clusterrolebindings/flotilla:masters";
/// How long members get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

struct Member {
    name: String,
    client_url: String,
    api_url: String,
    child: Child,
    pid_file: PathBuf,
    /// For an agent: the data directory whose containerd and pods are removed at stop.
    agent_data: Option<PathBuf>,
}

impl Member {
    /// A member that serves no store or API: an agent (with its data directory) or the hollow
    /// nodes.
    fn node(name: String, child: Child, pid_file: PathBuf, agent_data: Option<PathBuf>) -> Member {
        let (client_url, api_url) = (String::new(), String::new());
        Member { name, client_url, api_url, child, pid_file, agent_data }
    }
}

/// Where `ip netns add` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Agents of a local cluster are `agent-1`, `agent-2`, …
const AGENT_PREFIX: &str = "agent-";
/// The member running the hollow nodes, and their names: `hollow-1`, `hollow-2`, …
const HOLLOW_MEMBER: &str = "hollow";
const HOLLOW_PREFIX: &str = "hollow-";

/// A member's data directory, under its own directory.
fn member_data_dir(member_dir: &Path) -> PathBuf {
    member_dir.join("data")
}

/// The agents of the local cluster in `dir` (name and data directory), in name order: those
/// `up` created, running or not.
pub fn local_agents(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut agents = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = member_data_dir(&entry.path());
        if name.strip_prefix(AGENT_PREFIX).is_some_and(|n| n.parse::<u32>().is_ok())
            && data.is_dir()
        {
            agents.push((name, data));
        }
    }
    agents.sort_by_key(|(name, _)| name[AGENT_PREFIX.len()..].parse::<u32>().unwrap_or(0));
    Ok(agents)
}

/// Quotes a word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(path))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.masters == 0 || args.masters % 2 == 0 {
        bail!("--masters must be odd (1, 3 or 5): an even count tolerates no more failures than one less");
    }
    let dir = absolute(&args.dir)?;
    if dir.join("etcd.env").exists() {
        bail!(
            "{} already holds a cluster (its members' data names their old addresses); remove it or choose another --dir",
            dir.display()
        );
    }
    let pki = ClusterPki::create(&dir.join("pki"))?;
    let lan = match args.agents {
        0 => None,
        agents => {
            let lan = Lan::plan(&dir, agents).await?;
            lan.create().await.context("creating the agents' network")?;
            std::fs::write(dir.join("lan.env"), lan.env())?;
            Some(lan)
        }
    };
    let up = start(&args, &dir, &pki, lan.as_ref()).await;
    if let Some(lan) = &lan {
        lan.remove().await;
    }
    up
}

/// Starts the members, stays until interrupted, then stops them.
async fn start(
    args: &UpArgs,
    dir: &Path,
    pki: &ClusterPki,
    lan: Option<&Lan>,
) -> anyhow::Result<()> {
    let (ca, admin) = (pki.ca.clone(), pki.admin.clone());

    let names: Vec<String> = (1..=args.masters).map(|i| format!("master-{i}")).collect();
    let ports: Vec<(u16, u16, u16)> = names
        .iter()
        .map(|_| Ok((free_local_port()?, free_local_port()?, free_local_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let initial_cluster = names
        .iter()
        .zip(&ports)
        .map(|(name, (peer, _, _))| format!("{name}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let binary = std::env::current_exe().context("locating the flotilla binary")?;

    // The masters serve in-cluster clients too, who know the API as the `kubernetes` Service
    // (the masters run with the default service range).
    let service_ip = kubernetes_service_ip(DEFAULT_SERVICE_CLUSTER_IP_RANGE)?.to_string();
    let api_host = lan.map_or_else(|| "127.0.0.1".to_string(), |lan| lan.gateway.to_string());
    let mut hosts = vec!["127.0.0.1", "localhost", service_ip.as_str(), api_host.as_str()];
    hosts.extend(KUBERNETES_SERVICE_NAMES);

    let mut members = Vec::new();
    for (name, (peer, client, api)) in names.iter().zip(&ports) {
        let member_dir = dir.join(name);
        std::fs::create_dir_all(&member_dir)?;
        let cert = pki.issue_master(name, &hosts)?;
        let client_url = format!("https://127.0.0.1:{client}");
        let argv: Vec<String> = vec![
            binary.display().to_string(),
            "master".into(),
            format!("--name={name}"),
            format!("--data-dir={}", member_data_dir(&member_dir).display()),
            format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
            format!("--listen-client-urls={client_url}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--trusted-ca-file={}", ca.cert.display()),
            format!("--cert-file={}", cert.cert.display()),
            format!("--key-file={}", cert.key.display()),
            format!("--listen-api-url=https://{api_host}:{api}"),
        ];
        let (child, pid_file) = spawn(&member_dir, name, &argv)?;
        let api_url = format!("https://{api_host}:{api}");
        members.push(Member {
            name: name.clone(),
            client_url,
            api_url,
            child,
            pid_file,
            agent_data: None,
        });
    }

    let endpoints: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
    let env_file = dir.join("etcd.env");
    std::fs::write(
        &env_file,
        format!(
            "export ETCDCTL_API=3\nexport ETCDCTL_ENDPOINTS={}\nexport ETCDCTL_CACERT={}\nexport ETCDCTL_CERT={}\nexport ETCDCTL_KEY={}\n",
            endpoints.join(","),
            ca.cert.display(),
            admin.cert.display(),
            admin.key.display()
        ),
    )?;

    let ready = tokio::select! {
        ready = wait_for_leader(&endpoints, &ca.cert, &admin.cert, &admin.key) => ready,
        _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted before the cluster was ready")),
    };
    if let Err(e) = ready {
        stop(&mut members).await;
        return Err(e);
    }
    let api_urls: Vec<String> = members.iter().map(|m| m.api_url.clone()).collect();
    for (index, (namespace, address)) in lan.iter().flat_map(|lan| &lan.agents).enumerate() {
        let name = format!("{AGENT_PREFIX}{}", index + 1);
        let member_dir = dir.join(&name);
        std::fs::create_dir_all(&member_dir)?;
        let address = address.to_string();
        let cert = pki.issue_agent(&name, &[address.as_str()])?;
        let argv: Vec<String> = vec![
            binary.display().to_string(),
            "agent".into(),
            format!("--name={name}"),
            format!("--netns={NETNS_DIR}/{namespace}"),
            format!("--api-servers={}", api_urls.join(",")),
            format!("--ca-file={}", ca.cert.display()),
            format!("--cert-file={}", cert.cert.display()),
            format!("--key-file={}", cert.key.display()),
            format!("--node-ip={address}"),
            format!("--gossip-port={}", free_local_port()?),
            format!("--kubelet-port={}", free_local_port()?),
            format!("--data-dir={}", member_data_dir(&member_dir).display()),
            format!("--image={}", flotilla_agent::DEFAULT_IMAGES_DIR),
        ];
        let mut argv = argv;
        for image in &args.images {
            argv.push(format!("--image={}", absolute(image)?.display()));
        }
        let (child, pid_file) = spawn(&member_dir, &name, &argv)?;
        members.push(Member::node(name, child, pid_file, Some(member_data_dir(&member_dir))));
    }
    if args.hollow_nodes > 0 {
        let name = HOLLOW_MEMBER.to_string();
        let member_dir = dir.join(&name);
        std::fs::create_dir_all(&member_dir)?;
        let argv: Vec<String> = vec![
            binary.display().to_string(),
            "hollow".into(),
            format!("--nodes={}", args.hollow_nodes),
            format!("--prefix={HOLLOW_PREFIX}"),
            format!("--api-servers={}", api_urls.join(",")),
            format!("--ca-file={}", ca.cert.display()),
            format!("--ca-key-file={}", ca.key.display()),
            format!("--data-dir={}", member_data_dir(&member_dir).display()),
        ];
        let (child, pid_file) = spawn(&member_dir, &name, &argv)?;
        members.push(Member::node(name, child, pid_file, None));
    }
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubeconfig_yaml(&members[0].api_url, &ca.cert, &admin.cert, &admin.key),
    )?;
    println!("store: {} masters, endpoints {}", args.masters, endpoints.join(","));
    println!("etcdctl: . {}; etcdctl member list", env_file.display());
    println!("api: {}", api_urls.join(","));
    if args.agents > 0 {
        println!("agents: {} (nodes agent-1..agent-{})", args.agents, args.agents);
    }
    if args.hollow_nodes > 0 {
        let count = args.hollow_nodes;
        println!("hollow: {count} (nodes {HOLLOW_PREFIX}1..{HOLLOW_PREFIX}{count}, one process)");
    }
    let routing = CancellationToken::new();
    if let Some(lan) = lan {
        let routed = async { lan.route(admin_client(&kubeconfig).await?, routing.clone()) };
        if let Err(err) = routed.await {
            stop(&mut members).await;
            return Err(err.context("routing the host to the pods"));
        }
        println!("lan: {} on bridge {} (the host is {})", lan.subnet, lan.bridge, lan.gateway);
    }
    println!("kubectl: KUBECONFIG={} kubectl get nodes", kubeconfig.display());
    println!("ready");

    shutdown_signal().await;
    routing.cancel();
    stop(&mut members).await;
    Ok(())
}

/// Starts one member process with its output appended to `DIR/<member>/log`, after writing
/// the command line to `cmd` (to restart it by hand) and, once started, its pid to `pid`.
fn spawn(member_dir: &Path, name: &str, argv: &[String]) -> anyhow::Result<(Child, PathBuf)> {
    let cmd_line = argv.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ");
    std::fs::write(member_dir.join("cmd"), format!("{cmd_line}\n"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(member_dir.join("log"))
        .context("opening the member log")?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid_file = member_dir.join("pid");
    std::fs::write(&pid_file, format!("{}\n", child.id().unwrap_or(0)))?;
    Ok((child, pid_file))
}

/// A client of the API as the administrator, from the kubeconfig `up` wrote.
async fn admin_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(file, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

/// An administrator's kubeconfig for the API at `server`, using the cluster's certificates.
fn kubeconfig_yaml(server: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: flotilla
  cluster:
    server: {server}
    certificate-authority: {}
contexts:
- name: flotilla
  context:
    cluster: flotilla
    user: admin
current-context: flotilla
users:
- name: admin
  user:
    client-certificate: {}
    client-key: {}
",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; waiting for Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Polls the members until the store has a leader and the API its bootstrap objects.
async fn wait_for_leader(
    endpoints: &[String],
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(ca)?))
        .identity(etcd_client::Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?));
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        for endpoint in endpoints {
            let options = etcd_client::ConnectOptions::new()
                .with_tls(tls.clone())
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(2));
            let Ok(mut client) = etcd_client::Client::connect([endpoint], Some(options)).await
            else {
                continue;
            };
            let Ok(status) = client.status().await else { continue };
            if status.leader() == 0 {
                continue;
            }
            // The API servers write their bootstrap objects once the store has a leader; the
            // last of them tells that the API is usable.
            if let Ok(found) = client.get(BOOTSTRAPPED_KEY, None).await {
                if !found.kvs().is_empty() {
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the cluster was not ready within {READY_TIMEOUT:?}; see the member logs");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops every member: SIGTERM, then SIGKILL after the grace period. A member restarted by
/// hand (its pid file rewritten) is stopped too.
async fn stop(members: &mut [Member]) {
    for member in members.iter_mut() {
        let mut pids = Vec::new();
        if let Some(pid) = member.child.id() {
            pids.push(pid as i32);
        }
        if let Ok(text) = std::fs::read_to_string(&member.pid_file) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        for pid in pids {
            // The process may be gone already (killed by a test); that is fine.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for member in members.iter_mut() {
        match tokio::time::timeout(STOP_GRACE, member.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(member = %member.name, "did not stop in time; killing");
                let _ = member.child.kill().await;
            }
        }
    }
    // A local cluster leaves nothing running: each agent's containerd and pods go too.
    for member in members.iter() {
        let Some(data) = &member.agent_data else { continue };
        let outcome = match flotilla_agent::Layout::new(data, &member.name) {
            Ok(layout) => flotilla_agent::reset(&layout).await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = outcome {
            tracing::warn!(member = %member.name, error = %err, "removing the agent's pods");
        }
    }
}
