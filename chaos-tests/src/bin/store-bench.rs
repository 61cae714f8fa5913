//! Benchmarks Flotilla's store against etcd 3.4 (Debian's `etcd-server`) in one run: the same
//! etcd client drives a 3-member cluster of each on loopback, both with TLS and client
//! certificates, and prints throughput and latency for each and the ratio.
//!
//! Usage: `store-bench [--seconds S] [--nodes 3|1] [--only put:64,get:64,...]` (see
//! `deploy/bench-store.sh`). `--only` runs the listed workloads alone (`put`, `get` for
//! linearizable and `sget` for serializable gets, each with its client count).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_chaos_tests::{flotilla_bin, wait_until, Cluster};

const VALUE_BYTES: usize = 256;

struct Workload {
    name: &'static str,
    /// How `--only` names it.
    short: &'static str,
    clients: usize,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Put,
    Get { serializable: bool },
}

struct Result {
    /// Successful requests per second.
    ops_per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// A running system under test: its endpoints and TLS material.
#[derive(Clone)]
struct Target {
    endpoints: Vec<String>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Target {
    /// Returns the same system without the endpoint at `index`.
    fn without(&self, index: usize) -> Target {
        let mut endpoints = self.endpoints.clone();
        endpoints.remove(index);
        Target { endpoints, ..self.clone() }
    }

    async fn clients(&self, count: usize) -> anyhow::Result<Vec<etcd_client::Client>> {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&self.ca)?))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(&self.cert)?,
                std::fs::read(&self.key)?,
            ));
        let mut clients = Vec::new();
        for _ in 0..count {
            let options = etcd_client::ConnectOptions::new().with_tls(tls.clone());
            clients
                .push(etcd_client::Client::connect(self.endpoints.clone(), Some(options)).await?);
        }
        Ok(clients)
    }
}

async fn run(target: &Target, workload: &Workload, seconds: u64) -> anyhow::Result<Result> {
    // One connection per 16 concurrent clients, as etcd's own benchmark tool is usually run.
    let connections = workload.clients.div_ceil(16);
    let clients = target.clients(connections).await?;
    let value = Arc::new(vec![b'x'; VALUE_BYTES]);
    if let Kind::Get { .. } = workload.kind {
        let mut client = clients[0].clone();
        client.put("bench/read", value.as_slice().to_vec(), None).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..workload.clients {
        let mut client = clients[worker % connections].clone();
        let value = value.clone();
        let kind = workload.kind;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                let outcome = match kind {
                    Kind::Put => {
                        n += 1;
                        let key = format!("bench/{worker}/{}", n % 1000);
                        client.put(key, value.as_slice().to_vec(), None).await.map(|_| ())
                    }
                    Kind::Get { serializable } => {
                        let options = serializable
                            .then(|| etcd_client::GetOptions::new().with_serializable());
                        client.get("bench/read", options).await.map(|_| ())
                    }
                };
                match outcome {
                    Ok(()) => latencies.push(started.elapsed()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (done, failed) = task.await??;
        latencies.extend(done);
        errors.extend(failed);
    }
    if let Some(first) = errors.first() {
        eprintln!(
            "{} {}: {} requests failed, first: {first}",
            workload.name,
            workload.clients,
            errors.len()
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Result { ops_per_second: latencies.len() as f64 / elapsed, p50: at(0.50), p99: at(0.99) })
}

/// Returns the index of the endpoint whose member leads.
async fn leader_index(target: &Target) -> anyhow::Result<usize> {
    for (index, endpoint) in target.endpoints.iter().enumerate() {
        let single = Target { endpoints: vec![endpoint.clone()], ..target.clone() };
        let mut client = single.clients(1).await?.remove(0);
        let status = client.status().await?;
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            return Ok(index);
        }
    }
    bail!("no member reports itself as leader")
}

/// Writes through the survivors until a write succeeds; returns how long that took.
async fn time_to_next_write(target: &Target) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut client = target.clients(1).await?.remove(0);
    while started.elapsed() < Duration::from_secs(30) {
        let put = client.put("bench/failover", "x", None);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), put).await {
            return Ok(started.elapsed());
        }
    }
    bail!("no write succeeded within 30 s of the leader's death")
}

/// Starts an etcd 3.4 cluster of `nodes` members with the same certificates Flotilla uses.
fn start_etcd(nodes: usize, dir: &Path, pki: &Path) -> anyhow::Result<(Vec<Child>, Vec<String>)> {
    let free = flotilla_store::ports::free_local_port;
    let ports: Vec<(u16, u16)> =
        (0..nodes).map(|_| Ok((free()?, free()?))).collect::<anyhow::Result<_>>()?;
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (peer, _))| format!("etcd-{i}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    let mut endpoints = Vec::new();
    for (i, (peer, client)) in ports.iter().enumerate() {
        let cert = pki.join("master-1.crt");
        let key = pki.join("master-1.key");
        let ca = pki.join("ca.crt");
        let log = std::fs::File::create(dir.join(format!("etcd-{i}.log")))?;
        let child = Command::new("etcd")
            .arg(format!("--name=etcd-{i}"))
            .arg(format!("--data-dir={}", dir.join(format!("etcd-{i}")).display()))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=https://127.0.0.1:{client}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--cert-file={}", cert.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--trusted-ca-file={}", ca.display()))
            .arg("--client-cert-auth")
            .arg(format!("--peer-cert-file={}", cert.display()))
            .arg(format!("--peer-key-file={}", key.display()))
            .arg(format!("--peer-trusted-ca-file={}", ca.display()))
            .arg("--peer-client-cert-auth")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting etcd (install Debian's etcd-server)")?;
        children.push(child);
        endpoints.push(format!("https://127.0.0.1:{client}"));
    }
    Ok((children, endpoints))
}

fn arg(args: &[String], flag: &str, default: u64) -> anyhow::Result<u64> {
    match args.iter().position(|a| a == flag) {
        Some(i) => Ok(args.get(i + 1).context("flag needs a value")?.parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds = arg(&args, "--seconds", 5)?;
    let nodes = arg(&args, "--nodes", 3)? as usize;
    // Profiling aid: `--keep` leaves the cluster running (and its directory in place) after
    // the last workload until the process is interrupted.
    let keep = args.iter().any(|a| a == "--keep");
    let only: Option<Vec<String>> = match args.iter().position(|a| a == "--only") {
        Some(i) => Some(
            args.get(i + 1)
                .context("--only needs a list such as put:64,get:64")?
                .split(',')
                .map(str::to_owned)
                .collect(),
        ),
        None => None,
    };
    if nodes != 1 && nodes != 3 {
        bail!("--nodes must be 1 or 3");
    }
    eprintln!("flotilla: {}", flotilla_bin()?.display());
    let flotilla = Cluster::start(nodes)?;
    let pki = flotilla.dir.join("pki");
    let etcd_dir = flotilla.dir.join("etcd");
    std::fs::create_dir_all(&etcd_dir)?;
    let (mut etcd_children, etcd_endpoints) = start_etcd(nodes, &etcd_dir, &pki)?;
    let env = |key: &str| {
        flotilla
            .env()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| PathBuf::from(v))
            .context("etcd.env")
    };
    let flotilla_target = Target {
        endpoints: flotilla.members.iter().map(|m| m.client_url.clone()).collect(),
        ca: env("ETCDCTL_CACERT")?,
        cert: env("ETCDCTL_CERT")?,
        key: env("ETCDCTL_KEY")?,
    };
    let etcd_target = Target {
        endpoints: etcd_endpoints,
        ca: flotilla_target.ca.clone(),
        cert: flotilla_target.cert.clone(),
        key: flotilla_target.key.clone(),
    };
    wait_until(Duration::from_secs(30), "etcd to serve", || async {
        match etcd_target.clients(1).await {
            Ok(mut clients) => clients[0].put("bench/ready", "1", None).await.is_ok(),
            Err(_) => false,
        }
    })
    .await?;

    let workloads = [
        Workload { name: "put", short: "put", clients: 1, kind: Kind::Put },
        Workload { name: "put", short: "put", clients: 16, kind: Kind::Put },
        Workload { name: "put", short: "put", clients: 64, kind: Kind::Put },
        Workload { name: "put", short: "put", clients: 256, kind: Kind::Put },
        Workload {
            name: "get linearizable",
            short: "get",
            clients: 64,
            kind: Kind::Get { serializable: false },
        },
        Workload {
            name: "get serializable",
            short: "sget",
            clients: 64,
            kind: Kind::Get { serializable: true },
        },
    ];
    let selected = |w: &&Workload| match &only {
        None => true,
        Some(list) => list.iter().any(|s| *s == format!("{}:{}", w.short, w.clients)),
    };
    let workloads: Vec<&Workload> = workloads.iter().filter(selected).collect();
    if workloads.is_empty() {
        bail!("--only names no workload (known: put:1, put:16, put:64, put:256, get:64, sget:64)");
    }
    println!("store benchmark: {nodes} member(s) each, {VALUE_BYTES}-byte values, {seconds} s per run, TLS on both");
    println!(
        "{:<18} {:>7} | {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9} | {:>9} {:>9}",
        "workload",
        "clients",
        "etcd op/s",
        "p50 ms",
        "p99 ms",
        "flot op/s",
        "p50 ms",
        "p99 ms",
        "thru x",
        "p99 x"
    );
    for workload in workloads {
        let etcd = run(&etcd_target, workload, seconds).await?;
        let ours = run(&flotilla_target, workload, seconds).await?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<18} {:>7} | {:>10.0} {:>9.2} {:>9.2} | {:>10.0} {:>9.2} {:>9.2} | {:>9.2} {:>9.2}",
            workload.name,
            workload.clients,
            etcd.ops_per_second,
            ms(etcd.p50),
            ms(etcd.p99),
            ours.ops_per_second,
            ms(ours.p50),
            ms(ours.p99),
            ours.ops_per_second / etcd.ops_per_second,
            ms(ours.p99) / ms(etcd.p99),
        );
    }
    if nodes == 3 && only.is_none() {
        let etcd_failover = {
            let leader = leader_index(&etcd_target).await?;
            let _ = etcd_children[leader].kill();
            time_to_next_write(&etcd_target.without(leader)).await?
        };
        let flotilla_failover = {
            let leader = leader_index(&flotilla_target).await?;
            flotilla.signal(leader, nix::sys::signal::Signal::SIGKILL)?;
            time_to_next_write(&flotilla_target.without(leader)).await?
        };
        println!(
            "{:<18} {:>7} | {:>10.0} ms {:>18} | {:>10.0} ms {:>18} | {:>9.2}",
            "leader kill -9",
            "-",
            etcd_failover.as_secs_f64() * 1000.0,
            "until a write",
            flotilla_failover.as_secs_f64() * 1000.0,
            "until a write",
            flotilla_failover.as_secs_f64() / etcd_failover.as_secs_f64(),
        );
    }
    if keep {
        println!("cluster kept in {}; Ctrl-C ends it", flotilla.dir.display());
        tokio::signal::ctrl_c().await?;
    }
    for child in &mut etcd_children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}
