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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_chaos_tests::bench::{
    closed_loop, describe, quantile, record_first_seen, Dialer, FirstSeen, Until,
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

/// When each pod was first seen bound, by name, filled in by the watch.
type Bound = FirstSeen;

fn is_bound(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty())
}

fn bound_count(bound: &Bound) -> usize {
    bound.lock().map(|b| b.len()).unwrap_or(0)
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

    let list = admin.get_json(&format!("/api/v1/namespaces/{NAMESPACE}/pods?limit=1")).await?;
    let from = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let bound: Bound = Arc::default();
    let watch_path = format!("/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={from}");
    let watch = tokio::spawn({
        let (connection, bound) = (dialer.connect(1).await?, bound.clone());
        async move { record_first_seen(connection, &watch_path, is_bound, bound).await }
    });

    eprintln!("--- create {pods} pods");
    let created_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; pods]));
    let started = Instant::now();
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let created = {
        let created_at = created_at.clone();
        let path = path.clone();
        closed_loop(&connections, Until::Count(pods), move |connection, n| {
            let created_at = created_at.clone();
            let path = path.clone();
            async move {
                let sent = Instant::now();
                connection.create(&path, &pod(n)).await?;
                if let Ok(mut at) = created_at.lock() {
                    at[n] = Some(sent);
                }
                Ok(())
            }
        })
        .await?
    };
    if created.errors.total() > 0 {
        bail!("creating pods failed: {}", created.errors.lines().join("; "));
    }
    let create_rate = pods as f64 / created.elapsed.as_secs_f64();
    eprintln!("created {pods} pods in {:.1} s ({create_rate:.0}/s)", created.elapsed.as_secs_f64());

    let deadline = Instant::now() + BIND_TIMEOUT;
    while bound_count(&bound) < pods {
        if Instant::now() > deadline || watch.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if watch.is_finished() {
        watch.await??;
        bail!("the watch ended early");
    }
    watch.abort();
    let bound = bound.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    if bound.len() < pods {
        bail!("only {} of {pods} pods were bound within {BIND_TIMEOUT:?}", bound.len());
    }
    let created_at = created_at.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut latencies: Vec<Duration> = (0..pods)
        .filter_map(|n| {
            let at = created_at[n]?;
            Some(bound.get(&format!("pod-{n:06}"))?.saturating_duration_since(at))
        })
        .collect();
    latencies.sort();
    let last = bound.values().max().copied().unwrap_or(started);
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
        let dir = cluster.dir.clone();
        cluster.dir = dir.join("kept by --keep, not a directory");
        eprintln!("cluster directory kept: {}", dir.display());
    }
    drop(cluster);
    outcome
}
