//! Benchmarks pod startup on a real node, as Kubernetes' pod startup SLO measures it: on a
//! `flotilla up --masters 1 --agents 1` cluster it starts itself, creates `--pods` pods of the
//! test image at once, and watches until each is Running and Ready; the latency of a pod is
//! from its create request to the watch event showing it Ready. With the pods running it reads
//! the agent's resident memory (and, separately, its containerd's).
//!
//! No kubelet exists on this machine, so the reference column holds Kubernetes' published
//! numbers: the pod startup SLO (p99 ≤ 5 s) and the k3s agent's memory with its containerd
//! (275 MB). The exit status is non-zero when pods fail to start, never for a missed target.
//!
//! Usage: `pod-bench [--pods N] [--keep]` (see `deploy/bench-pods.sh`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_chaos_tests::bench::{create_and_watch, describe, is_ready, quantile, Dialer};
use flotilla_chaos_tests::{flotilla_bin, Cluster};
use serde_json::{json, Value};

const NAMESPACE: &str = "pod-bench";
const IMAGE: &str = "flotilla.local/busybox:1";
/// How long the last pod may take to become Ready after the last one was created.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const REFERENCE_P99: Duration = Duration::from_secs(5);
const TARGET_P99: Duration = Duration::from_secs(1);
const REFERENCE_RSS_MB: f64 = 275.0;
const TARGET_RSS_MB: f64 = 30.0;

fn pod(index: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{index:03}")},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}],
        },
    })
}

/// Resident memory of a process, in MB, from `/proc/<pid>/status`.
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

fn pid_in(path: &std::path::Path) -> anyhow::Result<u32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim().parse().with_context(|| format!("{}: not a pid", path.display()))
}

async fn run(cluster: &Cluster, pods: usize) -> anyhow::Result<()> {
    let dialer = Dialer::ready(cluster).await?;
    let connections = dialer.connections(pods.clamp(1, 32)).await?;
    let admin = &connections[0];
    eprintln!("--- wait for the node to be Ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = admin.get_json("/api/v1/nodes/agent-1").await.unwrap_or_default();
        if is_ready(&node) {
            break;
        }
        if Instant::now() > deadline {
            bail!("agent-1 did not become Ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    admin.create("/api/v1/namespaces", &namespace).await.map_err(describe)?;
    eprintln!("--- create {pods} pods at once");
    let burst =
        create_and_watch(&dialer, &connections, NAMESPACE, pods, pod, is_ready, START_TIMEOUT)
            .await?;
    let latencies = burst.latencies;

    // Let the agent settle into its steady state with the pods running.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_dir = cluster.agent_dir(1);
    let agent_rss = rss_mb(pid_in(&agent_dir.join("pid"))?)?;
    let containerd_rss = rss_mb(pid_in(&agent_dir.join("data/containerd/state/containerd.pid"))?)?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = quantile(&latencies, 0.5);
    let p99 = quantile(&latencies, 0.99);
    println!();
    println!("pod startup benchmark: {pods} pods created at once on one node (1 master, 1 agent)");
    println!("{:<44} {:>12} {:>12} {:>8}", "metric", "flotilla", "reference", "ratio");
    println!("{:<44} {:>12.0}", "create → Ready p50 (ms)", ms(p50));
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>7.2}x",
        "create → Ready p99 (ms)",
        ms(p99),
        ms(REFERENCE_P99),
        p99.as_secs_f64() / REFERENCE_P99.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.0}",
        "create → Ready max (ms)",
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "{:<44} {:>12.1} {:>12.0} {:>7.2}x",
        "agent RSS with the pods (MB)",
        agent_rss,
        REFERENCE_RSS_MB,
        agent_rss / REFERENCE_RSS_MB
    );
    println!("{:<44} {:>12.1}", "its containerd's RSS (MB)", containerd_rss);
    println!(
        "{:<44} {:>12.1} {:>12.0} {:>7.2}x",
        "agent + containerd RSS (MB)",
        agent_rss + containerd_rss,
        REFERENCE_RSS_MB,
        (agent_rss + containerd_rss) / REFERENCE_RSS_MB
    );
    println!(
        "targets: startup p99 ≤ {} ms: {}; agent RSS ≤ {TARGET_RSS_MB:.0} MB: {}. References: Kubernetes' pod startup SLO (p99 5 s) and the k3s agent with its containerd (275 MB); no kubelet on this machine",
        TARGET_P99.as_millis(),
        if p99 <= TARGET_P99 { "met" } else { "missed" },
        if agent_rss <= TARGET_RSS_MB { "met" } else { "missed" },
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let pods = match args.iter().position(|a| a == "--pods") {
        Some(i) => args.get(i + 1).context("--pods needs a value")?.parse().context("--pods")?,
        None => 30,
    };
    let keep = args.iter().any(|a| a == "--keep");
    eprintln!("flotilla: {}", flotilla_bin()?.display());
    let mut cluster = Cluster::start_with_agents(1, 1)?;
    eprintln!("cluster: {}", cluster.dir.display());
    let outcome = run(&cluster, pods).await;
    if keep {
        cluster.keep_dir();
    }
    drop(cluster);
    outcome
}
