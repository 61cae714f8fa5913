//! Kubelet's prober: liveness, readiness and startup probes of a pod's running containers,
//! each on its own timer, through the CRI (`exec`) or the network (`httpGet`, `tcpSocket`).
//!
//! Results follow kubelet's rules: a probe's result changes only after `successThreshold`
//! successes or `failureThreshold` failures in a row; readiness counts as failed and liveness
//! as passed until they first run; liveness and readiness wait for a startup probe to pass. A
//! changed result wakes the pod's worker, whose next pass reads [`Prober::results`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_control::events::{EventType, Recorder};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cri::Runtime;
use crate::pods::observed::ProbeResults;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// A running container the prober may probe.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub container_id: String,
    pub container: Container,
    /// The pod's primary IP (the node's for host-network pods).
    pub pod_ip: String,
    /// The event reference of the container (`fieldPath` set).
    pub reference: ObjectReference,
}

type Results = Arc<Mutex<BTreeMap<String, ProbeResults>>>;

/// The probes of one pod.
pub(crate) struct Prober {
    results: Results,
    tasks: HashMap<(String, Kind), JoinHandle<()>>,
    wake: Arc<Notify>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

impl Prober {
    pub(crate) fn new(wake: Arc<Notify>) -> Prober {
        Prober { results: Results::default(), tasks: HashMap::new(), wake }
    }

    /// The latest results by container id.
    pub(crate) fn results(&self) -> BTreeMap<String, ProbeResults> {
        self.results.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Probes exactly `targets`: starts the probes of containers new here and stops those of
    /// containers no longer running.
    pub(crate) fn update<R: Runtime>(
        &mut self,
        runtime: &R,
        recorder: &Recorder,
        targets: &[Target],
    ) {
        let wanted: Vec<(String, Kind, &Target, Probe)> = targets
            .iter()
            .flat_map(|target| {
                let c = &target.container;
                [
                    (Kind::Liveness, c.liveness_probe.clone()),
                    (Kind::Readiness, c.readiness_probe.clone()),
                    (Kind::Startup, c.startup_probe.clone()),
                ]
                .into_iter()
                .filter_map(move |(kind, probe)| {
                    probe.map(|probe| (target.container_id.clone(), kind, target, probe))
                })
            })
            .collect();
        self.tasks.retain(|(id, kind), task| {
            let keep = wanted.iter().any(|(wid, wkind, _, _)| wid == id && wkind == kind);
            if !keep {
                task.abort();
            }
            keep
        });
        if let Ok(mut results) = self.results.lock() {
            results.retain(|id, _| targets.iter().any(|t| &t.container_id == id));
        }
        for (id, kind, target, probe) in wanted {
            if self.tasks.contains_key(&(id.clone(), kind)) {
                continue;
            }
            let task = tokio::spawn(run(
                runtime.clone(),
                recorder.clone(),
                kind,
                probe,
                target.clone(),
                self.results.clone(),
                self.wake.clone(),
            ));
            self.tasks.insert((id, kind), task);
        }
    }
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default)).unwrap_or(0))
}

/// Reads a result slot of `kind`.
fn slot(results: &mut ProbeResults, kind: Kind) -> &mut Option<bool> {
    match kind {
        Kind::Liveness => &mut results.liveness,
        Kind::Readiness => &mut results.readiness,
        Kind::Startup => &mut results.startup,
    }
}

/// One probe's loop: waits `initialDelaySeconds`, then probes every `periodSeconds`.
async fn run<R: Runtime>(
    runtime: R,
    recorder: Recorder,
    kind: Kind,
    probe: Probe,
    target: Target,
    results: Results,
    wake: Arc<Notify>,
) {
    let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(seconds(probe.initial_delay_seconds, 0)).await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        let startup_done = kind == Kind::Startup
            || target.container.startup_probe.is_none()
            || results
                .lock()
                .is_ok_and(|r| r.get(&target.container_id).and_then(|p| p.startup) == Some(true));
        if startup_done {
            let outcome = execute(&runtime, &probe, &target, timeout).await;
            let verdict = match &outcome {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    (successes >= success_threshold).then_some(true)
                }
                Err(message) => {
                    failures += 1;
                    successes = 0;
                    let text = format!("{} probe failed: {message}", kind.label());
                    recorder
                        .record_for(
                            target.reference.clone(),
                            EventType::Warning,
                            "Unhealthy",
                            &text,
                        )
                        .await;
                    (failures >= failure_threshold).then_some(false)
                }
            };
            if let Some(value) = verdict {
                let changed = results.lock().is_ok_and(|mut all| {
                    let entry = all.entry(target.container_id.clone()).or_default();
                    let current = slot(entry, kind);
                    let changed = *current != Some(value);
                    *current = Some(value);
                    changed
                });
                if changed {
                    wake.notify_one();
                }
            }
            // A startup probe stops once it passed; liveness and readiness take over.
            if kind == Kind::Startup && verdict == Some(true) {
                return;
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// A named port resolved against the container's ports.
fn port_number(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => {
            u16::try_from(*number).map_err(|_| format!("invalid port {number}"))
        }
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

/// Runs the probe once; `Err` carries the message kubelet shows.
pub(super) async fn execute<R: Runtime>(
    runtime: &R,
    probe: &Probe,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let output = runtime
            .exec_sync(&target.container_id, command, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if output.exit_code == 0 {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(if text.trim().is_empty() {
            format!("command exited with code {}", output.exit_code)
        } else {
            text.trim_end().to_owned()
        });
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port_number(&tcp.port, &target.container)?;
        let host = tcp.host.clone().unwrap_or_else(|| target.pod_ip.clone());
        return match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("dial tcp {host}:{port}: connect: {err}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(http) = &probe.http_get {
        if http.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
            return Err("HTTPS probes are not supported by the Flotilla agent yet".into());
        }
        let port = port_number(&http.port, &target.container)?;
        let host = http.host.clone().unwrap_or_else(|| target.pod_ip.clone());
        let path = http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> =
            http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        let request = http_request(&host, port, &path, &headers);
        let url = format!("http://{host}:{port}{path}");
        let exchange = async {
            let mut stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut head = vec![0u8; 1024];
            let read = stream.read(&mut head).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..read]).into_owned())
        };
        let head = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(head)) => head,
            Ok(Err(err)) => return Err(format!("Get \"{url}\": {err}")),
            Err(_) => {
                return Err(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ))
            }
        };
        return match status_code(&head) {
            Some(code) if (200..400).contains(&code) => Ok(()),
            Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
            None => Err(format!("Get \"{url}\": malformed HTTP response")),
        };
    }
    Err("the probe has no handler the Flotilla agent supports (exec, httpGet, tcpSocket)".into())
}

/// The request kubelet's HTTP prober sends.
fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("Host") {
        request.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("User-Agent") {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("Accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request
}

/// The status code of an HTTP/1.x response head.
fn status_code(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::ContainerPort;

    use super::*;

    #[test]
    fn status_codes_are_read_from_the_status_line() {
        let cases = [
            ("HTTP/1.1 200 OK\r\n", Some(200)),
            ("HTTP/1.0 404 Not Found\r\n\r\n", Some(404)),
            ("garbage", None),
            ("", None),
        ];
        for (head, expected) in cases {
            assert_eq!(status_code(head), expected, "{head:?}");
        }
    }

    #[test]
    fn requests_carry_kubelets_headers_unless_overridden() {
        let plain = http_request("10.0.0.1", 8080, "/healthz", &[]);
        assert!(plain.starts_with("GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"));
        assert!(plain.contains("User-Agent: kube-probe/1.33\r\n"));
        let custom = http_request("h", 80, "/", &[("Host".into(), "example.com".into())]);
        assert!(custom.contains("Host: example.com\r\n") && !custom.contains("Host: h:80"));
    }

    #[test]
    fn named_ports_resolve_against_the_container() {
        let container = Container {
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        };
        assert_eq!(port_number(&IntOrString::String("http".into()), &container), Ok(8080));
        assert_eq!(port_number(&IntOrString::Int(9090), &container), Ok(9090));
        assert!(port_number(&IntOrString::String("grpc".into()), &container).is_err());
    }
}
