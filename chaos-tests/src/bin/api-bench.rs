//! Benchmarks Flotilla's Kubernetes API on a 3-master `flotilla up` cluster it starts itself:
//! ConfigMap create, get and list in closed loops, updates at a fixed rate (open loop), watch
//! delivery latency to 100 watchers, and a LIST of 10,000 Pods as JSON and as a Table (what
//! kubectl asks for). Clients speak HTTP/2 over TLS with the administrator's client
//! certificate, one connection each, spread evenly over the three masters.
//!
//! There is no reference Kubernetes API server on this machine, so each result is printed
//! beside its target with the ratio measured/target. The exit status is non-zero only when
//! requests fail (any transport error, timeout or non-2xx answer), never for a missed target.
//!
//! Usage: `api-bench [--seconds S] [--keep] [--phases create,get,list,update,watch,pods]`
//! (see `deploy/bench-api.sh`). One file past the usual 600 lines: a benchmark binary has no
//! library to split into, and its phases read best side by side.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use bytes::Bytes;
use flotilla_chaos_tests::bench::{
    closed_loop, describe, open_loop, quantile, spread, unix_nanos, Connection, Dialer, Measured,
    RequestError, Tally, Until, MERGE_PATCH, REQUEST_TIMEOUT,
};
use flotilla_chaos_tests::{flotilla_bin, Cluster};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

const MASTERS: usize = 3;
/// Concurrent clients of the create, get, list and update phases, and of Pod creation.
const CLIENTS: usize = 64;
const VALUE_BYTES: usize = 256;
/// ConfigMaps the get phase reads at random.
const READ_OBJECTS: usize = 1000;
/// ConfigMaps in the namespace the list phase lists.
const LIST_OBJECTS: usize = 100;
const UPDATE_RATE: f64 = 1000.0;
/// ConfigMaps the update phase writes; a multiple of `CLIENTS`, so each has one writer.
const UPDATE_OBJECTS: usize = 640;
const WATCHERS: usize = 100;
const WATCH_PERIOD: Duration = Duration::from_millis(10);
/// How long watchers wait for the last update after the writer stopped.
const WATCH_GRACE: Duration = Duration::from_secs(10);
const PODS: usize = 10_000;
const POD_LISTS_PER_MASTER: usize = 10;
const POD_LIST_TIMEOUT: Duration = Duration::from_secs(60);
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const PHASES: [&str; 6] = ["create", "get", "list", "update", "watch", "pods"];

/// Kubernetes' API call latency SLOs (p99): mutating and single-object reads, namespace lists.
const SLO_OBJECT: Duration = Duration::from_secs(1);
const SLO_NAMESPACE_LIST: Duration = Duration::from_secs(5);
/// Flotilla's own targets.
const TARGET_UPDATE_P99: Duration = Duration::from_millis(20);
const TARGET_WATCH_P99: Duration = Duration::from_millis(10);
const TARGET_POD_LIST: Duration = Duration::from_millis(150);

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn value_data() -> Value {
    json!({"value": "x".repeat(VALUE_BYTES)})
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    })
}

async fn create_namespace(connection: &Connection, name: &str) -> anyhow::Result<()> {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    connection.create("/api/v1/namespaces", &namespace).await.map_err(describe)
}

/// Creates ConfigMaps `cm-0` … `cm-{count-1}` in `namespace`.
async fn seed_configmaps(
    connections: &[Connection],
    namespace: &str,
    count: usize,
) -> anyhow::Result<Measured> {
    let path = format!("/api/v1/namespaces/{namespace}/configmaps");
    closed_loop(connections, Until::Count(count), move |connection, n| {
        let path = path.clone();
        async move { connection.create(&path, &configmap(&format!("cm-{n}"), value_data())).await }
    })
    .await
}

/// Checks that a list answer parses and holds `expected` entries under `field`.
fn check_list(body: &[u8], field: &str, expected: usize) -> Result<(), RequestError> {
    let list: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::Invalid { what: "unparsable list", detail: e.to_string() })?;
    let found = list[field].as_array().map_or(0, Vec::len);
    if found != expected {
        return Err(RequestError::Invalid {
            what: "list with a wrong number of entries",
            detail: format!("{found} {field} instead of {expected}"),
        });
    }
    Ok(())
}

/// One line of the result table.
struct Row {
    phase: String,
    clients: usize,
    ops_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    target: Duration,
    errors: u64,
}

/// Everything the run measured, printed at the end.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    errors: Tally,
}

impl Report {
    /// Adds a row (its target is for p99) and counts its failures.
    fn add(&mut self, phase: &str, clients: usize, mut measured: Measured, target: Duration) {
        measured.latencies.sort();
        let row = Row {
            phase: phase.to_string(),
            clients,
            ops_per_second: measured.latencies.len() as f64 / measured.elapsed.as_secs_f64(),
            p50: quantile(&measured.latencies, 0.50),
            p99: quantile(&measured.latencies, 0.99),
            max: measured.latencies.last().copied().unwrap_or_default(),
            target,
            errors: measured.errors.total(),
        };
        eprintln!(
            "{phase}: {} ok, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
            measured.latencies.len(),
            row.ops_per_second,
            ms(row.p50),
            ms(row.p99),
            row.errors
        );
        self.rows.push(row);
        self.count_errors(phase, measured.errors);
    }

    /// Counts failures of setup requests or checks that have no row of their own.
    fn count_errors(&mut self, phase: &str, errors: Tally) {
        for line in errors.lines() {
            eprintln!("{phase}: failed {line}");
        }
        self.errors.merge(errors);
    }

    fn note(&mut self, note: String) {
        eprintln!("{note}");
        self.notes.push(note);
    }

    fn print(&self, seconds: u64) {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!(
            "api benchmark: {MASTERS} masters on loopback, HTTP/2 over TLS (admin client certificate), \
             one connection per client, {seconds} s per timed phase, {cpus} CPUs shared by client and masters"
        );
        println!(
            "{:<24} {:>7} | {:>9} {:>9} {:>9} {:>9} | {:>13} {:>7} | {:>6}",
            "phase",
            "clients",
            "op/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "target p99 ms",
            "p99 x",
            "errors"
        );
        for row in &self.rows {
            println!(
                "{:<24} {:>7} | {:>9.0} {:>9.2} {:>9.2} {:>9.2} | {:>13.0} {:>7.2} | {:>6}",
                row.phase,
                row.clients,
                row.ops_per_second,
                ms(row.p50),
                ms(row.p99),
                ms(row.max),
                ms(row.target),
                ms(row.p99) / ms(row.target),
                row.errors
            );
        }
        for note in &self.notes {
            println!("note: {note}");
        }
        println!("errors: {}", self.errors.total());
        for line in self.errors.lines() {
            println!("{line}");
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The cluster under test and the run's settings.
struct Bench {
    dialer: Dialer,
    seconds: Duration,
}

impl Bench {
    fn deadline(&self) -> Until {
        Until::Deadline(Instant::now() + self.seconds)
    }
}

async fn phase_create(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    create_namespace(&bench.dialer.connect(0).await?, "bench-create").await?;
    let connections = bench.dialer.connections(CLIENTS).await?;
    let measured = closed_loop(&connections, bench.deadline(), |connection, n| async move {
        let path = "/api/v1/namespaces/bench-create/configmaps";
        connection.create(path, &configmap(&format!("cm-{n}"), value_data())).await
    })
    .await?;
    report.add("create configmap", CLIENTS, measured, SLO_OBJECT);
    Ok(())
}

async fn phase_get(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    create_namespace(&bench.dialer.connect(0).await?, "bench-get").await?;
    let connections = bench.dialer.connections(CLIENTS).await?;
    let seeded = seed_configmaps(&connections, "bench-get", READ_OBJECTS).await?;
    report.count_errors("get setup", seeded.errors);
    let measured = closed_loop(&connections, bench.deadline(), |connection, n| async move {
        let path =
            format!("/api/v1/namespaces/bench-get/configmaps/cm-{}", spread(n, READ_OBJECTS));
        connection.call(Method::GET, &path, &[], Bytes::new()).await.map(drop)
    })
    .await?;
    report.add("get configmap", CLIENTS, measured, SLO_OBJECT);
    Ok(())
}

async fn phase_list(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    create_namespace(&bench.dialer.connect(0).await?, "bench-list").await?;
    let connections = bench.dialer.connections(CLIENTS).await?;
    let seeded = seed_configmaps(&connections, "bench-list", LIST_OBJECTS).await?;
    report.count_errors("list setup", seeded.errors);
    let measured = closed_loop(&connections, bench.deadline(), |connection, _| async move {
        let path = "/api/v1/namespaces/bench-list/configmaps";
        let body = connection.call(Method::GET, path, &[], Bytes::new()).await?;
        check_list(&body, "items", LIST_OBJECTS)
    })
    .await?;
    report.add("list 100 configmaps", CLIENTS, measured, SLO_NAMESPACE_LIST);
    Ok(())
}

async fn phase_update(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    create_namespace(&bench.dialer.connect(0).await?, "bench-update").await?;
    let connections = bench.dialer.connections(CLIENTS).await?;
    let seeded = seed_configmaps(&connections, "bench-update", UPDATE_OBJECTS).await?;
    report.count_errors("update setup", seeded.errors);
    let measured =
        open_loop(&connections, UPDATE_RATE, bench.seconds, |connection, n| async move {
            let path =
                format!("/api/v1/namespaces/bench-update/configmaps/cm-{}", n % UPDATE_OBJECTS);
            let patch = Bytes::from(json!({"data": {"value": n.to_string()}}).to_string());
            connection.call(Method::PATCH, &path, &[MERGE_PATCH], patch).await.map(drop)
        })
        .await?;
    let name = format!("patch at {UPDATE_RATE:.0}/s (open)");
    report.add(&name, CLIENTS, measured, TARGET_UPDATE_P99);
    Ok(())
}

/// What one watcher saw: a latency per delivered update, how many, and what went wrong.
#[derive(Default)]
struct Deliveries {
    measured: Measured,
    events: u64,
}

/// Reads a watch of the `clock` ConfigMap until it delivered the update numbered as `last`
/// says (set once the writer stopped), or `WATCH_GRACE` after that.
async fn watch_deliveries(
    connection: Connection,
    mut body: Incoming,
    mut last: tokio::sync::watch::Receiver<Option<u64>>,
) -> Deliveries {
    let _connection = connection;
    let mut seen = Deliveries::default();
    let mut buffer = Vec::new();
    let mut highest = 0u64;
    let mut give_up = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        if let Some(last) = *last.borrow_and_update() {
            if highest >= last {
                break;
            }
            give_up = give_up.min(tokio::time::Instant::now() + WATCH_GRACE);
        }
        let frame = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(give_up) => break,
            changed = last.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            frame = body.frame() => frame,
        };
        let received = unix_nanos(SystemTime::now());
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Some(Err(e)) => {
                let message = e.to_string();
                seen.measured.errors.add(&RequestError::Transport { method: Method::GET, message });
                break;
            }
            None => {
                let detail = format!("after {} events", seen.events);
                seen.measured
                    .errors
                    .add(&RequestError::Invalid { what: "watch ended early", detail });
                break;
            }
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
            let object = &event["object"];
            match event["type"].as_str() {
                Some("MODIFIED") => {}
                Some("BOOKMARK") => continue,
                _ => {
                    let detail = String::from_utf8_lossy(&line).chars().take(200).collect();
                    let error = RequestError::Invalid { what: "unexpected watch event", detail };
                    seen.measured.errors.add(&error);
                    continue;
                }
            }
            let field = |name: &str| -> Option<u128> {
                object["data"][name].as_str().and_then(|v| v.parse().ok())
            };
            let (Some(sequence), Some(sent)) = (field("seq"), field("sent")) else { continue };
            let sequence = sequence as u64;
            if sequence <= highest {
                let detail = format!("update {sequence} after update {highest}");
                let error =
                    RequestError::Invalid { what: "watch event repeated or reordered", detail };
                seen.measured.errors.add(&error);
            }
            highest = highest.max(sequence);
            seen.events += 1;
            let latency = received.saturating_sub(sent);
            seen.measured.latencies.push(Duration::from_nanos(latency as u64));
        }
    }
    seen
}

async fn phase_watch(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let writer = bench.dialer.connect(0).await?;
    create_namespace(&writer, "bench-watch").await?;
    let path = "/api/v1/namespaces/bench-watch/configmaps";
    let clock = configmap("clock", json!({"seq": "0", "sent": "0"}));
    writer.create(path, &clock).await.map_err(describe)?;
    let list = writer.get_json(path).await?;
    let version = list["metadata"]["resourceVersion"].as_str().context("list resourceVersion")?;
    let (last_sender, last) = tokio::sync::watch::channel(None);
    let mut watchers = JoinSet::new();
    let watch = format!("{path}?watch=true&resourceVersion={version}");
    for index in 0..WATCHERS {
        let connection = bench.dialer.connect(index).await?;
        let started = tokio::time::timeout(
            REQUEST_TIMEOUT,
            connection.send(Method::GET, &watch, &[], Bytes::new()),
        )
        .await
        .context("watch answered no headers")?
        .map_err(describe)?;
        watchers.spawn(watch_deliveries(connection, started.into_body(), last.clone()));
    }

    let mut writes = Measured::default();
    let mut ticker = tokio::time::interval(WATCH_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (started, mut sequence, mut written, mut last_written) = (Instant::now(), 0u64, 0u64, 0);
    while started.elapsed() < bench.seconds {
        ticker.tick().await;
        sequence += 1;
        let sent = SystemTime::now();
        let data = json!({"seq": sequence.to_string(), "sent": unix_nanos(sent).to_string()});
        let patch = Bytes::from(json!({"data": data}).to_string());
        let outcome =
            writer.call(Method::PATCH, &format!("{path}/clock"), &[MERGE_PATCH], patch).await;
        writes.record(&outcome, sent.elapsed().unwrap_or_default());
        if outcome.is_ok() {
            written += 1;
            last_written = sequence;
        }
    }
    let writing = started.elapsed();
    last_sender.send_replace(Some(last_written));

    let mut all = Measured::default();
    let (mut fewest, mut most) = (u64::MAX, 0);
    while let Some(done) = watchers.join_next().await {
        let seen = done?;
        fewest = fewest.min(seen.events);
        most = most.max(seen.events);
        if seen.events != written {
            let detail = format!("a watcher got {} events for {written} updates", seen.events);
            let error = RequestError::Invalid { what: "watcher missed or repeated events", detail };
            all.errors.add(&error);
        }
        all.merge(seen.measured);
    }
    all.elapsed = writing;
    writes.latencies.sort();
    report.note(format!(
        "watch: {written} updates sent (writer p50 {:.2} ms); each of {WATCHERS} watchers got {fewest}..{most} events",
        ms(quantile(&writes.latencies, 0.5))
    ));
    report.count_errors("watch writer", writes.errors);
    report.add("watch delivery", WATCHERS, all, TARGET_WATCH_P99);
    Ok(())
}

async fn phase_pods(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    create_namespace(&bench.dialer.connect(0).await?, "bench-pods").await?;
    let connections = bench.dialer.connections(CLIENTS).await?;
    let created = closed_loop(&connections, Until::Count(PODS), |connection, n| async move {
        connection.create("/api/v1/namespaces/bench-pods/pods", &pod(&format!("pod-{n}"))).await
    })
    .await?;
    drop(connections);
    report.add("create pod (10k)", CLIENTS, created, SLO_OBJECT);

    for (name, accept, field) in [
        ("list 10k pods json", "application/json", "items"),
        ("list 10k pods table", TABLE, "rows"),
    ] {
        let mut measured = Measured::default();
        // Per successful list: when the headers came, when the body was read, its size.
        let mut stages: Vec<(Duration, Duration, usize)> = Vec::new();
        let mut parse_times: Vec<Duration> = Vec::new();
        let started = Instant::now();
        for master in 0..MASTERS {
            let connection = bench.dialer.connect(master).await?;
            let mut times = Vec::new();
            for _ in 0..POD_LISTS_PER_MASTER {
                let sent = Instant::now();
                let outcome = async {
                    let path = "/api/v1/namespaces/bench-pods/pods";
                    let exchange = async {
                        let accept_header = [("accept", accept)];
                        let response = connection
                            .send(Method::GET, path, &accept_header, Bytes::new())
                            .await?;
                        let headers = sent.elapsed();
                        let body = response.into_body().collect().await.map_err(|e| {
                            RequestError::Transport { method: Method::GET, message: e.to_string() }
                        })?;
                        Ok((headers, body.to_bytes()))
                    };
                    let timeout =
                        RequestError::Timeout { method: Method::GET, after: POD_LIST_TIMEOUT };
                    let (headers, body) = tokio::time::timeout(POD_LIST_TIMEOUT, exchange)
                        .await
                        .unwrap_or(Err(timeout))?;
                    let read = sent.elapsed();
                    check_list(&body, field, PODS)?;
                    Ok((headers, read, body.len()))
                }
                .await;
                // The latency is the server's answer read whole, as the Kubernetes SLO counts
                // it; parsing it is the client's business and reported apart.
                let parsed = sent.elapsed();
                let latency = outcome.as_ref().map_or(parsed, |(_, read, _)| *read);
                if let Ok(stage) = outcome {
                    parse_times.push(parsed - stage.1);
                    stages.push(stage);
                    times.push(latency);
                }
                measured.record(&outcome, latency);
            }
            times.sort();
            eprintln!(
                "{name} on master-{}: median {:.1} ms, max {:.1} ms",
                master + 1,
                ms(quantile(&times, 0.5)),
                ms(times.last().copied().unwrap_or_default())
            );
        }
        measured.elapsed = started.elapsed();
        let median = |mut values: Vec<Duration>| {
            values.sort();
            ms(quantile(&values, 0.5))
        };
        report.note(format!(
            "{name}: {:.1} MB per answer; medians: headers after {:.0} ms, body read after {:.0} ms; parsing it in the client (not counted) {:.0} ms",
            stages.last().map_or(0, |s| s.2) as f64 / 1e6,
            median(stages.iter().map(|s| s.0).collect()),
            median(stages.iter().map(|s| s.1).collect()),
            median(parse_times),
        ));
        report.add(name, 1, measured, TARGET_POD_LIST);
    }
    Ok(())
}

async fn run(cluster: &Cluster, seconds: u64, phases: &[String]) -> anyhow::Result<Report> {
    let dialer = Dialer::ready(cluster).await?;
    let bench = Bench { dialer, seconds: Duration::from_secs(seconds) };
    let mut report = Report::default();
    for phase in phases {
        eprintln!("--- {phase}");
        let outcome = match phase.as_str() {
            "create" => phase_create(&bench, &mut report).await,
            "get" => phase_get(&bench, &mut report).await,
            "list" => phase_list(&bench, &mut report).await,
            "update" => phase_update(&bench, &mut report).await,
            "watch" => phase_watch(&bench, &mut report).await,
            "pods" => phase_pods(&bench, &mut report).await,
            other => bail!("unknown phase {other}"),
        };
        // A phase whose setup failed counts as one error; the later phases still run.
        if let Err(e) = outcome {
            let error =
                RequestError::Invalid { what: "phase aborted", detail: format!("{phase}: {e:#}") };
            let mut tally = Tally::default();
            tally.add(&error);
            report.count_errors(phase, tally);
        }
    }
    Ok(report)
}

fn arg(args: &[String], flag: &str) -> anyhow::Result<Option<String>> {
    match args.iter().position(|a| a == flag) {
        Some(i) => Ok(Some(args.get(i + 1).context("flag needs a value")?.clone())),
        None => Ok(None),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = arg(&args, "--seconds")?.map_or(Ok(5), |s| s.parse())?;
    // `--keep` leaves the cluster's directory (logs, data, certificates) after the run.
    let keep = args.iter().any(|a| a == "--keep");
    let phases: Vec<String> = match arg(&args, "--phases")? {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => PHASES.iter().map(|p| p.to_string()).collect(),
    };
    if let Some(unknown) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        bail!("unknown phase {unknown}: choose from {}", PHASES.join(","));
    }
    eprintln!("flotilla: {}", flotilla_bin()?.display());
    let mut cluster = Cluster::start(MASTERS)?;
    eprintln!("cluster: {}", cluster.dir.display());
    let outcome = run(&cluster, seconds, &phases).await;
    if keep {
        cluster.keep_dir();
    }
    let report = outcome?;
    report.print(seconds);
    drop(cluster);
    let failed = report.errors.total();
    if failed > 0 {
        bail!("{failed} requests failed");
    }
    Ok(())
}
