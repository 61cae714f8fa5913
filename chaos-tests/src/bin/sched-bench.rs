//! Benchmarks Flotilla's scheduler end to end, in the spirit of Kubernetes' scheduler_perf:
//! on a 3-master `flotilla up` cluster it starts itself, registers `--nodes` Node objects
//! through the API, creates `--pods` pods as fast as 64 clients can, and watches the pods until
//! every one is bound. Prints pods bound per second (from the first pod created to the last
//! one bound) and the time from each pod's creation to its binding.
//!
//! No kube-scheduler exists on this machine, so the reference column is the throughput
//! Kubernetes' scheduler_perf accepts at this size (its published thresholds). The exit status
//! is non-zero when requests fail or pods stay unbound, never for a missed target.
//!
//! Usage: `sched-bench [--nodes N] [--pods P] [--keep]` (see `deploy/bench-scheduler.sh`).

use std::time::Duration;

use anyhow::{bail, Context};
use flotilla_chaos_tests::bench::{
    closed_loop, create_and_watch, describe, quantile, Dialer, Until,
};
use flotilla_chaos_tests::{flotilla_bin, Cluster};
use serde_json::{json, Value};

const MASTERS: usize = 3;
const CLIENTS: usize = 64;
const NAMESPACE: &str = "sched-bench";
/// How long the last pod may take to be bound after the last one was created.
const BIND_TIMEOUT: Duration = Duration::from_secs(300);
/// scheduler_perf's accepted throughput for 5,000 nodes (SchedulingBasic, pods/s).
const REFERENCE_PODS_PER_SECOND: f64 = 680.0;
const TARGET_PODS_PER_SECOND: f64 = 5000.0;

fn node(index: usize) -> Value {
    let name = format!("node-{index:05}");
    let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": format!("zone-{}", index % 10),
            },
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod(index: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{index:06}")},
        "spec": {"containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
        }]},
    })
}

fn is_bound(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty())
}

async fn run(cluster: &Cluster, nodes: usize, pods: usize) -> anyhow::Result<()> {
    let dialer = Dialer::ready(cluster).await?;
    let connections = dialer.connections(CLIENTS).await?;
    let admin = &connections[0];
    admin
        .create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        )
        .await
        .map_err(describe)?;

    eprintln!("--- register {nodes} nodes");
    let registered = closed_loop(&connections, Until::Count(nodes), |connection, n| async move {
        connection.create("/api/v1/nodes", &node(n)).await
    })
    .await?;
    if registered.errors.total() > 0 {
        bail!("registering nodes failed: {}", registered.errors.lines().join("; "));
    }
    eprintln!("registered {nodes} nodes in {:.1} s", registered.elapsed.as_secs_f64());

    eprintln!("--- create {pods} pods");
    let burst =
        create_and_watch(&dialer, &connections, NAMESPACE, pods, pod, is_bound, BIND_TIMEOUT)
            .await?;
    let create_rate = pods as f64 / burst.create_elapsed.as_secs_f64();
    eprintln!(
        "created {pods} pods in {:.1} s ({create_rate:.0}/s)",
        burst.create_elapsed.as_secs_f64()
    );
    let (started, latencies) = (burst.started, burst.latencies);
    let last = burst.reached.values().max().copied().unwrap_or(started);
    let elapsed = last.saturating_duration_since(started);
    let rate = pods as f64 / elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("scheduler benchmark: {nodes} nodes, {pods} pods, {MASTERS} masters, {CLIENTS} creating clients");
    println!("{:<44} {:>12} {:>12} {:>8}", "metric", "flotilla", "reference", "ratio");
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>7.1}x",
        "pods bound/s (first create → last bound)",
        rate,
        REFERENCE_PODS_PER_SECOND,
        rate / REFERENCE_PODS_PER_SECOND
    );
    println!("{:<44} {:>12.0}", "pods created/s (API, 64 clients)", create_rate);
    println!("{:<44} {:>12.1}", "create → bound p50 (ms)", ms(quantile(&latencies, 0.5)));
    println!("{:<44} {:>12.1}", "create → bound p99 (ms)", ms(quantile(&latencies, 0.99)));
    println!(
        "target: ≥ {TARGET_PODS_PER_SECOND:.0} pods/s: {} (measured/target {:.2}); reference is scheduler_perf's accepted minimum at 5,000 nodes (no kube-scheduler on this machine)",
        if rate >= TARGET_PODS_PER_SECOND { "met" } else { "missed" },
        rate / TARGET_PODS_PER_SECOND
    );
    Ok(())
}

fn arg(args: &[String], flag: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == flag) {
        Some(i) => {
            let value = args.get(i + 1).with_context(|| format!("{flag} needs a value"))?;
            value.parse().with_context(|| format!("{flag} {value}: not a number"))
        }
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let nodes = arg(&args, "--nodes", 5000)?;
    let pods = arg(&args, "--pods", 50_000)?;
    let keep = args.iter().any(|a| a == "--keep");
    eprintln!("flotilla: {}", flotilla_bin()?.display());
    let mut cluster = Cluster::start(MASTERS)?;
    eprintln!("cluster: {}", cluster.dir.display());
    let outcome = run(&cluster, nodes, pods).await;
    if keep {
        cluster.keep_dir();
    }
    drop(cluster);
    outcome
}
