//! Benchmarks the node-local cluster DNS (`flotilla_net::dns`) against dnsmasq in one run: the
//! same UDP load drives each server in turn over loopback, and the table shows queries per
//! second, latency and server CPU for both, and the ratio (Flotilla's over dnsmasq's).
//!
//! Method:
//! - The zone: `--services` ClusterIP Services `svc-<n>.bench.svc.cluster.local`, each with a
//!   named port and one EndpointSlice of ten ready endpoints, plus 100 headless Services for
//!   the update phase, all fed through the public `ZoneHandle` as the agent feeds it. The
//!   reference, dnsmasq from Debian's `dnsmasq-base` (the cache kube-dns ran in front of its
//!   resolver), serves the same `svc-<n>` names from an additional hosts file.
//! - The load: `--clients` closed-loop clients, each on a connected UDP socket of its own, ask
//!   for the A record of a pseudo-random `svc-<n>` (the same sequence for both servers, queries
//!   encoded beforehand) and wait for the answer, 1 s at most, before asking again. Every
//!   answer's header must say NOERROR with an answer; one in 64 is decoded and must hold the
//!   name's address. Each server gets a 1 s warm-up, then `--seconds` one-second rounds,
//!   the two servers' rounds alternating (ABBA) so that whatever else runs on the machine
//!   weighs on both alike. On two cores the load and the server share the CPU, so server CPU
//!   time per query is the steadiest comparison.
//! - Processes: dnsmasq runs as a child process (single-threaded, as it is built); the
//!   Flotilla server runs in this process on a tokio runtime of its own (threads
//!   `flotilla-dns`, one worker per core, as the agent's runtime), the load on another
//!   (threads `dns-load`, two workers). Server CPU comes from `/proc`, per process or per
//!   thread name. This process uses the system allocator where the flotilla binary uses
//!   mimalloc, which, if anything, handicaps Flotilla.
//! - Update visibility (Flotilla only; dnsmasq rereads its hosts files only on SIGHUP, so its
//!   column shows "-"): under the same load, alternately a new Service with its slice is
//!   created and a headless Service's slice gets new endpoints, through the `ZoneHandle`; the
//!   time runs from just before the change until a query answers with the new address. It
//!   covers the zone and the server, not the API watch that brings the change to the agent.
//!
//! Targets (from the issue): queries/s at least the reference's; updates visible within
//! 100 ms (p99). The exit status is non-zero when something fails (a server does not start,
//! answers nothing or answers wrongly, an update never becomes visible), never for a missed
//! target.
//!
//! The load, the `/proc` CPU reader and the dnsmasq runner are in
//! [`flotilla_chaos_tests::dns_load`]; this binary builds the zone, alternates the rounds and
//! prints the report.
//!
//! Usage: `dns-bench [--services N] [--seconds S] [--clients C]` (see `deploy/bench-dns.sh`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_chaos_tests::bench::{quantile, spread};
use flotilla_chaos_tests::dns_load::{
    classify, encode_query, holds_address, Catalog, Cpu, Dnsmasq, Load, Reply, Tally, QUERY_TIMEOUT,
};
use flotilla_net::dns::{DnsConfig, DnsServer, Zone, ZoneConfig, ZoneHandle, SERVICE_NAME_LABEL};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::net::UdpSocket;

const NAMESPACE: &str = "bench";
const DOMAIN: &str = "cluster.local";
const ENDPOINTS_PER_SERVICE: u32 = 10;
const HEADLESS_SERVICES: usize = 100;
const MAX_SERVICES: u32 = 100_000;
/// How many changes the update phase makes.
const UPDATES: usize = 200;
/// How long an update may take to become visible before it counts as never visible.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);
/// How long one server is driven before the other's turn.
const ROUND: Duration = Duration::from_secs(1);
const TARGET_VISIBLE_P99: Duration = Duration::from_millis(100);
const SERVER_THREADS: &str = "flotilla-dns";
const LOAD_THREADS: &str = "dns-load";
const LOAD_WORKERS: usize = 2;

/// The cluster IP of `svc-<n>` is `CLUSTER_IPS + n`; its endpoints follow `POD_IPS`.
const CLUSTER_IPS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const POD_IPS: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 1);
/// The update phase's new Services and the headless Services' endpoints, old and new.
const NEW_CLUSTER_IPS: Ipv4Addr = Ipv4Addr::new(10, 112, 0, 1);
const HEADLESS_POD_IPS: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);
const FRESH_POD_IPS: Ipv4Addr = Ipv4Addr::new(10, 80, 0, 1);

/// Returns the address `offset` after `base`.
fn nth(base: Ipv4Addr, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + offset)
}

fn fqdn(service: &str) -> String {
    format!("{service}.{NAMESPACE}.svc.{DOMAIN}")
}

fn service_name(n: u32) -> String {
    format!("svc-{n}")
}

/// Returns the endpoint addresses of `svc-<n>`.
fn endpoints_of(base: Ipv4Addr, n: u32) -> Vec<Ipv4Addr> {
    (0..ENDPOINTS_PER_SERVICE).map(|k| nth(base, n * ENDPOINTS_PER_SERVICE + k)).collect()
}

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        ..ObjectMeta::default()
    }
}

/// A Service with one named port; `cluster_ip` is an address or `None` (headless).
fn service(name: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: metadata(name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some(cluster_ip.to_owned()),
            cluster_ips: Some(vec![cluster_ip.to_owned()]),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The one EndpointSlice of `service`, every endpoint ready.
fn slice(service: &str, addresses: &[Ipv4Addr]) -> EndpointSlice {
    let mut metadata = metadata(&format!("{service}-bench"));
    metadata.labels = Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into());
    EndpointSlice {
        metadata,
        address_type: "IPv4".to_owned(),
        endpoints: addresses
            .iter()
            .map(|address| Endpoint { addresses: vec![address.to_string()], ..Endpoint::default() })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".to_owned()),
            port: Some(8080),
            protocol: Some("TCP".to_owned()),
            ..EndpointPort::default()
        }]),
    }
}

fn headless_name(n: usize) -> String {
    format!("headless-{n}")
}

/// Returns every `svc-<n>` name the load asks for, with the address it must get.
fn names(services: u32) -> impl Iterator<Item = (Ipv4Addr, String)> {
    (0..services).map(|n| (nth(CLUSTER_IPS, n), fqdn(&service_name(n))))
}

/// Returns the questions the load asks both servers.
fn catalog(services: u32) -> anyhow::Result<Catalog> {
    Catalog::new(names(services).map(|(address, name)| (name, address)))
}

/// Builds the zone Flotilla serves, through the handle as the agent's feed does.
fn build_zone(services: u32) -> anyhow::Result<ZoneHandle> {
    let zone = ZoneHandle::new(Zone::new(&ZoneConfig::default())?);
    for n in 0..services {
        let name = service_name(n);
        zone.upsert_service(&service(&name, &nth(CLUSTER_IPS, n).to_string()));
        zone.upsert_slice(&slice(&name, &endpoints_of(POD_IPS, n)));
    }
    for n in 0..HEADLESS_SERVICES {
        let name = headless_name(n);
        zone.upsert_service(&service(&name, "None"));
        zone.upsert_slice(&slice(&name, &endpoints_of(HEADLESS_POD_IPS, n as u32)));
    }
    Ok(zone)
}

/// A server under test: where it answers and whose CPU time is its.
struct Target {
    address: SocketAddr,
    cpu: Cpu,
}

/// What the load measured on one server, over all its rounds.
#[derive(Default)]
struct Measurement {
    tally: Tally,
    elapsed: Duration,
    server_cpu: Duration,
    load_cpu: Duration,
}

impl Measurement {
    fn queries_per_second(&self) -> f64 {
        self.tally.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_query_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.tally.latencies.len().max(1) as f64
    }

    /// Returns how many cores `used` CPU time kept busy during the rounds.
    fn cores(&self, used: Duration) -> f64 {
        used.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

/// Drives `target` with the load for `duration` and adds what it measured to `into`.
async fn drive(
    target: &Target,
    catalog: &Arc<Catalog>,
    clients: usize,
    duration: Duration,
    into: &mut Measurement,
) -> anyhow::Result<()> {
    let load_cpu = Cpu::Threads(LOAD_THREADS);
    let (server_before, load_before) = (target.cpu.used()?, load_cpu.used()?);
    let started = Instant::now();
    let load = Load::start(target.address, catalog, clients);
    tokio::time::sleep(duration).await;
    into.tally.merge(load.stop().await?);
    into.elapsed += started.elapsed();
    into.server_cpu += target.cpu.used()?.saturating_sub(server_before);
    into.load_cpu += load_cpu.used()?.saturating_sub(load_before);
    Ok(())
}

/// Warms both servers up, then drives them in alternating rounds (ABBA order), so that
/// whatever else the machine runs meanwhile weighs on both alike.
async fn measure(
    targets: &[Target; 2],
    catalog: &Arc<Catalog>,
    clients: usize,
    rounds: u64,
) -> anyhow::Result<[Measurement; 2]> {
    for target in targets {
        drive(target, catalog, clients, WARM_UP, &mut Measurement::default()).await?;
    }
    let mut measured = [Measurement::default(), Measurement::default()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            drive(&targets[index], catalog, clients, ROUND, &mut measured[index]).await?;
        }
    }
    for measurement in &mut measured {
        measurement.tally.latencies.sort_unstable();
    }
    Ok(measured)
}

/// Asks `socket`'s server for `name` until an answer holds `address`; returns how long that
/// took from `since`, or `None` after [`VISIBLE_TIMEOUT`].
async fn wait_visible(
    socket: &UdpSocket,
    name: &str,
    address: Ipv4Addr,
    since: Instant,
) -> anyhow::Result<Option<Duration>> {
    let mut buffer = vec![0u8; 4096];
    let mut id = 0u16;
    while since.elapsed() < VISIBLE_TIMEOUT {
        id = id.wrapping_add(1);
        socket.send(&encode_query(name, id)?).await?;
        let deadline = tokio::time::Instant::from_std(Instant::now() + QUERY_TIMEOUT);
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            let reply = &buffer[..received?];
            if classify(reply, id) == Reply::Stray {
                continue;
            }
            if holds_address(reply, address) {
                return Ok(Some(since.elapsed()));
            }
            break;
        }
    }
    Ok(None)
}

/// How fast updates became visible.
struct Updates {
    /// Sorted times from each change until a query answered with it.
    visible: Vec<Duration>,
    /// How many changes were not visible within [`VISIBLE_TIMEOUT`].
    never: usize,
    /// What the load running meanwhile saw.
    load: Tally,
}

/// Makes [`UPDATES`] changes under the load and measures until each is visible.
async fn measure_updates(
    server: SocketAddr,
    zone: &ZoneHandle,
    catalog: &Arc<Catalog>,
    clients: usize,
) -> anyhow::Result<Updates> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let load = Load::start(server, catalog, clients);
    tokio::time::sleep(WARM_UP).await;
    let mut visible = Vec::new();
    let mut never = 0;
    for update in 0..UPDATES {
        let fresh = endpoints_of(FRESH_POD_IPS, update as u32);
        let started = Instant::now();
        let (name, address) = if update % 2 == 0 {
            // A new Service with its endpoints.
            let name = format!("new-{update}");
            let address = nth(NEW_CLUSTER_IPS, update as u32);
            zone.upsert_service(&service(&name, &address.to_string()));
            zone.upsert_slice(&slice(&name, &fresh));
            (name, address)
        } else {
            // New endpoints in a headless Service's slice.
            let name = headless_name(spread(update, HEADLESS_SERVICES));
            zone.upsert_slice(&slice(&name, &fresh));
            (name, fresh[0])
        };
        match wait_visible(&socket, &fqdn(&name), address, started).await? {
            Some(took) => visible.push(took),
            None => never += 1,
        }
    }
    let load = load.stop().await?;
    visible.sort_unstable();
    Ok(Updates { visible, never, load })
}

fn arg(args: &[String], flag: &str, default: u64) -> anyhow::Result<u64> {
    match args.iter().position(|a| a == flag) {
        Some(i) => Ok(args
            .get(i + 1)
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| flag.to_owned())?),
        None => Ok(default),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn row(metric: &str, reference: &str, flotilla: &str, ratio: &str) {
    println!("{metric:<34} {reference:>12} {flotilla:>12} {ratio:>8}");
}

/// A row of two numbers and their ratio (Flotilla's over the reference's).
fn compare(metric: &str, reference: f64, flotilla: f64, decimals: usize) {
    let ratio = if reference > 0.0 { format!("{:.2}x", flotilla / reference) } else { "-".into() };
    row(metric, &format!("{reference:.decimals$}"), &format!("{flotilla:.decimals$}"), &ratio);
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let services = arg(&args, "--services", 10_000)?;
    let seconds = arg(&args, "--seconds", 5)?;
    let clients = arg(&args, "--clients", 64)? as usize;
    if !(1..=u64::from(MAX_SERVICES)).contains(&services) {
        bail!("--services must be between 1 and {MAX_SERVICES}");
    }
    if seconds == 0 || clients == 0 {
        bail!("--seconds and --clients must be at least 1");
    }
    let services = services as u32;

    let load_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(LOAD_WORKERS)
        .thread_name(LOAD_THREADS)
        .enable_all()
        .build()?;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;

    eprintln!("--- build the zone and the catalog of {services} services");
    let built = Instant::now();
    let zone = build_zone(services)?;
    let catalog = Arc::new(catalog(services)?);
    eprintln!("built in {:.1} s", built.elapsed().as_secs_f64());
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = server_runtime
        .block_on(DnsServer::bind(DnsConfig::new(vec![loopback], vec![]), zone.clone()))?;
    let flotilla_address = server.local_addrs()[0];
    // This crate does not depend on tokio-util: the token's type is the one `run` takes.
    let stop_server = Default::default();
    let serving = server_runtime.spawn(server.run(Clone::clone(&stop_server)));

    let version = Dnsmasq::version();
    let mut dnsmasq = Dnsmasq::start(names(services), flotilla_net::dns::DEFAULT_TTL)?;
    let outcome = load_runtime.block_on(async {
        eprintln!("--- wait for {version} on {}", dnsmasq.address());
        dnsmasq.wait_serving(&fqdn(&service_name(0))).await?;
        eprintln!(
            "--- {clients} clients, {seconds} rounds of {ROUND:?} on each of dnsmasq and \
             flotilla ({flotilla_address})"
        );
        let targets = [
            Target { address: dnsmasq.address(), cpu: Cpu::Process(dnsmasq.pid()) },
            Target { address: flotilla_address, cpu: Cpu::Threads(SERVER_THREADS) },
        ];
        let [reference, flotilla] = measure(&targets, &catalog, clients, seconds).await?;
        eprintln!("--- flotilla: {UPDATES} updates under the same load");
        let updates = measure_updates(flotilla_address, &zone, &catalog, clients).await?;
        anyhow::Ok((reference, flotilla, updates))
    });
    drop(dnsmasq);
    stop_server.cancel();
    server_runtime.block_on(serving)?;
    let (reference, flotilla, updates) = outcome?;
    let Updates { visible, never, load: update_load } = updates;

    println!();
    println!(
        "dns benchmark: {services} services ({ENDPOINTS_PER_SERVICE} endpoints each), {clients} \
         closed-loop UDP clients, {seconds} s per server in alternating 1 s rounds; reference \
         {version}"
    );
    row("metric", "reference", "flotilla", "ratio");
    compare("answered queries/s", reference.queries_per_second(), flotilla.queries_per_second(), 0);
    for (name, q) in [("latency p50 (ms)", 0.5), ("latency p99 (ms)", 0.99)] {
        let at = |m: &Measurement| ms(quantile(&m.tally.latencies, q));
        compare(name, at(&reference), at(&flotilla), 3);
    }
    compare(
        "server CPU per query (µs)",
        reference.cpu_per_query_us(),
        flotilla.cpu_per_query_us(),
        1,
    );
    let server_cores = |m: &Measurement| m.cores(m.server_cpu);
    compare("server CPU (cores busy)", server_cores(&reference), server_cores(&flotilla), 2);
    let load_cores = |m: &Measurement| m.cores(m.load_cpu);
    compare("load generator CPU (cores busy)", load_cores(&reference), load_cores(&flotilla), 2);
    let timeouts = |m: &Measurement| m.tally.timeouts.to_string();
    row("timeouts (1 s)", &timeouts(&reference), &timeouts(&flotilla), "");
    let wrong = |m: &Measurement| format!("{}/{}", m.tally.wrong, m.tally.sampled);
    row("wrong answers / sampled", &wrong(&reference), &wrong(&flotilla), "");
    row("update → visible p50 (ms)", "-", &format!("{:.3}", ms(quantile(&visible, 0.5))), "");
    let visible_p99 = quantile(&visible, 0.99);
    row("update → visible p99 (ms)", "-", &format!("{:.3}", ms(visible_p99)), "");
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!(
        "target: queries/s ≥ reference: {}",
        verdict(flotilla.queries_per_second() >= reference.queries_per_second())
    );
    println!(
        "target: update visible ≤ {} ms p99: {}",
        TARGET_VISIBLE_P99.as_millis(),
        verdict(never == 0 && visible_p99 <= TARGET_VISIBLE_P99)
    );

    let mut failures = Vec::new();
    for (who, m) in [("dnsmasq", &reference), ("flotilla", &flotilla)] {
        if let Some(error) = &m.tally.first_io_error {
            eprintln!("{who}: {} socket errors, first: {error}", m.tally.io_errors);
        }
        if m.tally.latencies.is_empty() {
            failures.push(format!("{who} answered no query"));
        }
        if let Some(first) = &m.tally.first_wrong {
            failures.push(format!("{who}: {} wrong answers, first: {first}", m.tally.wrong));
        }
    }
    if let Some(first) = &update_load.first_wrong {
        failures.push(format!(
            "flotilla during updates: {} wrong answers, first: {first}",
            update_load.wrong
        ));
    }
    if never > 0 {
        failures.push(format!("{never} updates not visible within {VISIBLE_TIMEOUT:?}"));
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;

    #[test]
    fn both_servers_get_the_same_names() {
        let names: Vec<(Ipv4Addr, String)> = names(3).collect();
        assert_eq!(
            names,
            [
                (Ipv4Addr::new(10, 96, 0, 1), "svc-0.bench.svc.cluster.local".to_owned()),
                (Ipv4Addr::new(10, 96, 0, 2), "svc-1.bench.svc.cluster.local".to_owned()),
                (Ipv4Addr::new(10, 96, 0, 3), "svc-2.bench.svc.cluster.local".to_owned()),
            ]
        );
    }

    #[test]
    fn address_ranges_do_not_overlap_at_the_largest_size() {
        let last_service = nth(CLUSTER_IPS, MAX_SERVICES - 1);
        assert!(last_service < NEW_CLUSTER_IPS);
        assert!(nth(NEW_CLUSTER_IPS, UPDATES as u32) < POD_IPS);
        let last_headless = endpoints_of(HEADLESS_POD_IPS, HEADLESS_SERVICES as u32 - 1);
        assert!(*last_headless.last().unwrap() < FRESH_POD_IPS);
        let last_fresh = endpoints_of(FRESH_POD_IPS, UPDATES as u32 - 1);
        assert!(*last_fresh.last().unwrap() < CLUSTER_IPS);
        let last_pod = endpoints_of(POD_IPS, MAX_SERVICES - 1);
        assert!(last_pod.last().unwrap().octets()[0] == 10);
    }

    #[test]
    fn the_zone_answers_what_the_catalog_expects() {
        let zone = build_zone(3).unwrap();
        let catalog = catalog(3).unwrap();
        let name = Name::from_ascii(fqdn("svc-2")).unwrap();
        let resolution =
            zone.read(|zone| flotilla_net::dns::resolve(zone, &Query::query(name, RecordType::A)));
        let flotilla_net::dns::Resolution::Answer(answer) = resolution else {
            panic!("svc-2 is forwarded");
        };
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data, RData::A(A(catalog.expected(2))));
    }

    #[test]
    fn quantiles_come_from_the_shared_helper() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
    }
}
