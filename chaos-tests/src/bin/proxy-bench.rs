//! Benchmarks the service proxy against kube-proxy's iptables mode, side by side in one run.
//!
//! Flotilla: one master (`flotilla up --masters 1`) holds `--services` Services with
//! `--endpoints` endpoints each (Services without selectors and EndpointSlices written by this
//! program, so no controller interferes). The agent's own code path — the watch feed, the
//! proxy and the real eBPF dataplane, attached to a cgroup and pin directory of this run's own
//! so nothing else on the machine is translated — programs them all, then `--changes`
//! EndpointSlice updates are made one at a time. Measured: the initial programming, and per
//! change the time from the watch event reaching the proxy to the maps holding the new
//! backends (what kube-proxy's sync duration measures) and from sending the write to the API
//! to the same point.
//!
//! kube-proxy: the `iptables-restore` input its iptables mode writes for the same Services
//! (`kube_proxy` module), restored in a network namespace of this run's own: one full sync,
//! then partial syncs as kube-proxy 1.27+ does for one changed Service (the `KUBE-SERVICES`
//! chain whole plus that Service's chains). kube-proxy also waits `minSyncPeriod` (1 s by
//! default) between syncs; that wait is not counted.
//!
//! Datapath: `--connections` connect-request-close cycles from a process in the cgroup to a
//! local server, straight to its address and through a Service address, alternately, nine
//! rounds each; the overhead is the ratio of the median cycles.
//!
//! The exit status is non-zero when something fails, never for a missed target.
//!
//! Usage: `proxy-bench [--services N] [--endpoints N] [--changes N] [--connections N] [--keep]`
//! (see `deploy/bench-proxy.sh`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use flotilla_chaos_tests::bench::{describe, quantile, Connection, Dialer};
use flotilla_chaos_tests::kube_proxy::{restore_input, Namespace, ServicePort};
use flotilla_chaos_tests::Cluster;
use flotilla_ebpf::{Backends, Dataplane, DataplaneConfig, Frontend, Protocol};
use flotilla_net::feed::{Feed, Sink};
use flotilla_net::proxy::plan::Frontends;
use flotilla_net::proxy::{NodeView, Proxy};
use hyper::Method;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const NAMESPACE: &str = "proxy-bench";
const TARGET_P99: Duration = Duration::from_millis(1);
const TARGET_OVERHEAD: f64 = 0.03;
/// Partial kube-proxy syncs timed (each restores the whole `KUBE-SERVICES` chain).
const REFERENCE_PARTIAL_SYNCS: usize = 20;
/// Alternating rounds of the datapath benchmark, each way; the medians are compared.
const DATAPATH_ROUNDS: usize = 9;
/// The Service address the datapath benchmark connects through.
const DATAPATH_VIP: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);

struct Options {
    services: usize,
    endpoints: usize,
    changes: usize,
    connections: usize,
    keep: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        services: 10_000,
        endpoints: 10,
        changes: 1_000,
        connections: 10_000,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> anyhow::Result<usize> {
            args.next().context("a number")?.parse().context("a number")
        };
        match arg.as_str() {
            "--services" => options.services = number()?,
            "--endpoints" => options.endpoints = number()?,
            "--changes" => options.changes = number()?,
            "--connections" => options.connections = number()?,
            "--keep" => options.keep = true,
            other => bail!("unknown argument {other}"),
        }
    }
    if options.services == 0 || options.endpoints == 0 || options.connections == 0 {
        bail!("--services, --endpoints and --connections must be at least 1");
    }
    Ok(options)
}

/// Endpoint `e` of Service `service` after `generation` changes: distinct addresses in
/// 10.128.0.0/9.
fn endpoint(service: usize, e: usize, generation: usize, per_service: usize) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    let index = (service * per_service + e) as u32;
    Ipv4Addr::from(base + ((index + generation as u32 * 7_919) % (1 << 23)))
}

fn slice(service: usize, generation: usize, per_service: usize) -> Value {
    let endpoints: Vec<Value> = (0..per_service)
        .map(|e| {
            json!({
                "addresses": [endpoint(service, e, generation, per_service).to_string()],
                "conditions": {"ready": true},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("svc-{service}"),
            "labels": {"kubernetes.io/service-name": format!("svc-{service}")},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// Creates `count` objects with `make`, spread over the connections.
async fn create_all(
    connections: &[Connection],
    path: &str,
    count: usize,
    make: impl Fn(usize) -> Value + Send + Sync + Clone + 'static,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for (worker, connection) in connections.iter().enumerate() {
        let (connection, path, make) = (connection.clone(), path.to_owned(), make.clone());
        let stride = connections.len();
        tasks.push(tokio::spawn(async move {
            for index in (worker..count).step_by(stride) {
                connection.create(&path, &make(index)).await.map_err(describe)?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// What the proxy reports to the benchmark.
enum Record {
    Listed { took: Duration },
    Slice { name: String, done: Instant, took: Duration },
}

/// The agent's path (the proxy over the real dataplane), timed.
struct Timed {
    proxy: Proxy<Dataplane>,
    records: mpsc::UnboundedSender<Record>,
}

impl Sink for Timed {
    fn apply_service(&mut self, service: Service) {
        if let Err(err) = self.proxy.apply_service(service) {
            eprintln!("programming a service: {err}");
        }
    }
    fn delete_service(&mut self, namespace: &str, name: &str) {
        let _ = self.proxy.delete_service(namespace, name);
    }
    fn apply_slice(&mut self, slice: EndpointSlice) {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let started = Instant::now();
        if let Err(err) = self.proxy.apply_slice(slice) {
            eprintln!("programming a slice: {err}");
        }
        let done = Instant::now();
        let _ = self.records.send(Record::Slice { name, done, took: done - started });
    }
    fn delete_slice(&mut self, namespace: &str, name: &str) {
        let _ = self.proxy.delete_slice(namespace, name);
    }
    fn listed(&mut self) {
        let started = Instant::now();
        if let Err(err) = self.proxy.listed() {
            eprintln!("programming the listing: {err}");
        }
        let _ = self.records.send(Record::Listed { took: started.elapsed() });
    }
}

/// A cgroup and a pin directory of this run's own, removed on drop.
struct Sandbox {
    cgroup: PathBuf,
    pins: PathBuf,
}

impl Sandbox {
    fn create() -> anyhow::Result<Sandbox> {
        let name = format!("flotilla-proxy-bench-{}", std::process::id());
        let cgroup = Path::new(flotilla_ebpf::DEFAULT_CGROUP).join(&name);
        std::fs::create_dir_all(&cgroup).with_context(|| cgroup.display().to_string())?;
        Ok(Sandbox { cgroup, pins: Path::new("/sys/fs/bpf").join(name) })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(err) = flotilla_ebpf::reset(&self.pins) {
            eprintln!("removing {}: {err}", self.pins.display());
        }
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// The client half of the datapath benchmark, run as a child process inside the cgroup:
/// `proxy-bench --client CGROUP ADDRESS COUNT` prints the median nanoseconds of `COUNT`
/// cycles (the median of single cycles is steadier than a total on a busy machine).
fn client(cgroup: &str, address: &str, count: &str) -> anyhow::Result<()> {
    std::fs::write(Path::new(cgroup).join("cgroup.procs"), std::process::id().to_string())?;
    let address: SocketAddr = address.parse()?;
    let count: usize = count.parse()?;
    let mut buffer = [0u8; 256];
    let mut cycles = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let mut stream = TcpStream::connect(address)?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        while stream.read(&mut buffer)? > 0 {}
        cycles.push(started.elapsed());
    }
    println!("{}", median(cycles).as_nanos());
    Ok(())
}

/// A server answering every connection with a short HTTP response, on its own threads.
fn serve() -> anyhow::Result<SocketAddrV4> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let SocketAddr::V4(address) = listener.local_addr()? else { bail!("not IPv4") };
    std::thread::spawn(move || {
        let mut buffer = [0u8; 256];
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    Ok(address)
}

fn run_client(cgroup: &Path, address: SocketAddr, count: usize) -> anyhow::Result<Duration> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("--client")
        .arg(cgroup)
        .arg(address.to_string())
        .arg(count.to_string())
        .output()?;
    if !output.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let nanos: u64 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    Ok(Duration::from_nanos(nanos))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

fn row(metric: &str, reference: String, flotilla: String, ratio: String) {
    println!("{metric:<44} {reference:>16} {flotilla:>16} {ratio:>10}");
}

/// Flotilla's time over the reference's, as other benchmarks print it; tiny ratios in
/// scientific notation so they keep their digits.
fn ratio(flotilla: Duration, reference: Duration) -> String {
    let ratio = flotilla.as_secs_f64() / reference.as_secs_f64().max(1e-9);
    if ratio >= 0.01 {
        format!("{ratio:.2}×")
    } else {
        format!("{ratio:.1e}×")
    }
}

async fn run(cluster: &Cluster, options: &Options) -> anyhow::Result<()> {
    let dialer = Dialer::ready(cluster).await?;
    let connections = dialer.connections(32).await?;
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    connections[0].create("/api/v1/namespaces", &namespace).await.map_err(describe)?;
    let (services, per_service) = (options.services, options.endpoints);
    eprintln!(
        "--- create {services} Services and their EndpointSlices ({per_service} endpoints each)"
    );
    let started = Instant::now();
    let services_path = format!("/api/v1/namespaces/{NAMESPACE}/services");
    create_all(&connections, &services_path, services, |i| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}")},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        })
    })
    .await?;
    let slices_path = format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices");
    create_all(&connections, &slices_path, services, move |i| slice(i, 0, per_service)).await?;
    eprintln!("    created in {:.1} s", started.elapsed().as_secs_f64());

    eprintln!("--- the proxy programs them into the eBPF dataplane");
    let sandbox = Sandbox::create()?;
    let dataplane = Dataplane::open(&DataplaneConfig {
        pin_dir: sandbox.pins.clone(),
        cgroup: sandbox.cgroup.clone(),
    })?;
    let proxy = Proxy::new(dataplane, NodeView::new("bench", &[]), Frontends::new())?;
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let (records_tx, mut records) = mpsc::unbounded_channel();
    let mut sink = Timed { proxy, records: records_tx };
    let started = Instant::now();
    let feeding = tokio::spawn(async move {
        let mut feed = Feed::watch(client);
        while feed.step(&mut sink).await {}
        sink
    });
    let programming = loop {
        match tokio::time::timeout(Duration::from_secs(300), records.recv()).await {
            Ok(Some(Record::Listed { took })) => break took,
            Ok(Some(Record::Slice { .. })) => {}
            Ok(None) | Err(_) => bail!("the proxy never finished its first listing"),
        }
    };
    let initial = started.elapsed();
    eprintln!("    listed and programmed in {:.2} s", initial.as_secs_f64());

    eprintln!("--- {} EndpointSlice changes, one at a time", options.changes);
    let mut event_to_map = Vec::new();
    let mut write_to_map = Vec::new();
    for change in 0..options.changes {
        let service = (change * 7_919) % services;
        let name = format!("svc-{service}");
        let sent = Instant::now();
        let patch = json!({"endpoints": slice(service, change + 1, per_service)["endpoints"]});
        let path = format!("{slices_path}/{name}");
        connections[0]
            .call(
                Method::PATCH,
                &path,
                &[("content-type", "application/merge-patch+json")],
                Bytes::from(patch.to_string()),
            )
            .await
            .map_err(describe)?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), records.recv()).await {
                Ok(Some(Record::Slice { name: applied, done, took })) if applied == name => {
                    event_to_map.push(took);
                    write_to_map.push(done.saturating_duration_since(sent));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!("the change to {name} never reached the proxy"),
            }
        }
    }
    feeding.abort();
    event_to_map.sort();
    write_to_map.sort();

    eprintln!("--- kube-proxy's iptables-restore for the same Services (a namespace of its own)");
    let ports: Vec<ServicePort> = (0..services)
        .map(|i| ServicePort {
            name: format!("{NAMESPACE}/svc-{i}:http"),
            frontend: SocketAddrV4::new(
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 11 + i as u32),
                80,
            ),
            endpoints: (0..per_service)
                .map(|e| SocketAddrV4::new(endpoint(i, e, 0, per_service), 8080))
                .collect(),
        })
        .collect();
    let netns = Namespace::create(&format!("flotilla-proxy-bench-{}", std::process::id()))?;
    let full = netns.restore(&restore_input(&ports, None))?;
    let mut partial = Vec::new();
    for change in 0..REFERENCE_PARTIAL_SYNCS {
        let service = (change * 7_919) % services;
        partial.push(netns.restore(&restore_input(&ports, Some(&[service])))?);
    }
    partial.sort();
    drop(netns);

    eprintln!(
        "--- datapath: {} connect-request-close cycles, direct and through a Service address",
        options.connections
    );
    let server = serve()?;
    let frontend = Frontend { ip: DATAPATH_VIP, port: 80, protocol: Protocol::Tcp };
    let mut dataplane = Dataplane::open(&DataplaneConfig {
        pin_dir: sandbox.pins.clone(),
        cgroup: sandbox.cgroup.clone(),
    })?;
    use flotilla_ebpf::ServiceTable;
    dataplane.upsert(frontend, &Backends { addresses: vec![server], affinity: None })?;
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    // A warm-up, then alternating rounds so drift hits both alike.
    run_client(&sandbox.cgroup, SocketAddr::V4(server), options.connections / 10 + 1)?;
    for _ in 0..DATAPATH_ROUNDS {
        direct.push(run_client(&sandbox.cgroup, SocketAddr::V4(server), options.connections)?);
        through.push(run_client(
            &sandbox.cgroup,
            SocketAddr::from((DATAPATH_VIP, 80)),
            options.connections,
        )?);
    }
    let (direct, through) = (median(direct), median(through));
    drop(dataplane);
    drop(sandbox);

    let p50 = |samples: &[Duration]| quantile(samples, 0.5);
    let p99 = |samples: &[Duration]| quantile(samples, 0.99);
    println!();
    println!(
        "{services} Services × {per_service} endpoints, {} changes; kube-proxy column: {}",
        options.changes,
        Namespace::restore_program()
    );
    row("metric", "kube-proxy".into(), "flotilla".into(), "ratio".into());
    row("initial programming (full sync)", ms(full), ms(programming), ratio(programming, full));
    row("  … including the watch listing", "-".into(), ms(initial), "-".into());
    row(
        "change → rules/maps, p50 (partial sync)",
        ms(p50(&partial)),
        ms(p50(&event_to_map)),
        ratio(p50(&event_to_map), p50(&partial)),
    );
    row(
        "change → rules/maps, p99 (partial sync)",
        ms(p99(&partial)),
        ms(p99(&event_to_map)),
        ratio(p99(&event_to_map), p99(&partial)),
    );
    row("API write sent → maps, p50", "-".into(), ms(p50(&write_to_map)), "-".into());
    row("API write sent → maps, p99", "-".into(), ms(p99(&write_to_map)), "-".into());
    row(
        "connect-request-close (median), direct",
        "-".into(),
        format!("{:.1} µs", direct.as_secs_f64() * 1e6),
        "-".into(),
    );
    let overhead = through.as_secs_f64() / direct.as_secs_f64() - 1.0;
    row(
        "  … through the Service address",
        "-".into(),
        format!("{:.1} µs", through.as_secs_f64() * 1e6),
        format!("{:+.1} %", overhead * 100.0),
    );
    println!();
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!(
        "target: change → map update p99 ≤ {} ({})",
        ms(TARGET_P99),
        verdict(p99(&event_to_map) <= TARGET_P99)
    );
    println!(
        "target: Service address overhead ≤ {:.0} % ({})",
        TARGET_OVERHEAD * 100.0,
        verdict(overhead <= TARGET_OVERHEAD)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, cgroup, address, count] = args.as_slice() {
        if flag == "--client" {
            return client(cgroup, address, count);
        }
    }
    let options = options()?;
    let mut cluster = Cluster::start(1)?;
    if options.keep {
        cluster.keep_dir();
    }
    let outcome = run(&cluster, &options).await;
    drop(cluster);
    outcome
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_distinct_and_change_with_the_generation() {
        let mut seen = std::collections::HashSet::new();
        for service in 0..100 {
            for e in 0..10 {
                assert!(seen.insert(endpoint(service, e, 0, 10)));
            }
        }
        assert_ne!(endpoint(3, 0, 0, 10), endpoint(3, 0, 1, 10));
        let object = slice(7, 2, 10);
        assert_eq!(object["endpoints"].as_array().unwrap().len(), 10);
        assert_eq!(object["metadata"]["labels"]["kubernetes.io/service-name"], "svc-7");
    }
}
