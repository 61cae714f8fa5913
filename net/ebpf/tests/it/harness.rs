//! A sandbox per test: its own child cgroup and pin directory (removed on drop, also when the
//! test fails), a client process inside that cgroup, and backends listening on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flotilla_ebpf::{Backends, Dataplane, DataplaneConfig, Frontend, Protocol};
use serde_json::{json, Value};

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const BPFFS: &str = "/sys/fs/bpf";

/// errno values the client reports.
pub const EPERM: i64 = 1;
pub const ECONNREFUSED: i64 = 111;

/// A child cgroup and a pin directory of this test alone.
pub struct Sandbox {
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
}

impl Sandbox {
    pub fn new() -> Result<Sandbox> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "flotilla-ebpf-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = Path::new(CGROUP_ROOT).join(&name);
        std::fs::create_dir(&cgroup)
            .with_context(|| format!("creating cgroup {}", cgroup.display()))?;
        Ok(Sandbox { cgroup, pin_dir: Path::new(BPFFS).join(name) })
    }

    pub fn config(&self) -> DataplaneConfig {
        DataplaneConfig { pin_dir: self.pin_dir.clone(), cgroup: self.cgroup.clone() }
    }

    pub fn open(&self) -> Result<Dataplane> {
        Dataplane::open(&self.config()).context("opening the dataplane")
    }

    /// Starts a client process inside this sandbox's cgroup.
    pub fn client(&self) -> Result<Client> {
        Client::start(&self.cgroup)
    }

    /// The attach types of the programs attached to this sandbox's cgroup (from bpftool).
    pub fn attached(&self) -> Result<Vec<String>> {
        let output = Command::new("bpftool")
            .args(["-j", "cgroup", "show"])
            .arg(&self.cgroup)
            .output()
            .context("running bpftool (run deploy/install.sh)")?;
        if !output.status.success() {
            bail!("bpftool cgroup show failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let text = String::from_utf8(output.stdout)?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let programs: Value = serde_json::from_str(&text)?;
        let mut types: Vec<String> = programs
            .as_array()
            .context("bpftool output is not a list")?
            .iter()
            .filter_map(|program| program["attach_type"].as_str().map(str::to_owned))
            .collect();
        types.sort();
        Ok(types)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(error) = flotilla_ebpf::reset(&self.pin_dir) {
            eprintln!("cleanup: reset {}: {error:#}", self.pin_dir.display());
        }
        // The client has exited (it is dropped first); the kernel may take a moment to notice
        // the cgroup is empty.
        let removed = wait_until(Duration::from_secs(5), "the test cgroup to be removable", || {
            match std::fs::remove_dir(&self.cgroup) {
                Ok(()) => Ok(true),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Err(error) if error.raw_os_error() == Some(16) => Ok(false), // EBUSY
                Err(error) => Err(error.into()),
            }
        });
        if let Err(error) = removed {
            eprintln!("cleanup: cgroup {}: {error:#}", self.cgroup.display());
        }
    }
}

/// The client: a Python process in the sandbox cgroup that runs one socket operation per
/// request line and answers with one JSON line.
const CLIENT: &str = r#"
import json, os, socket, sys

with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as procs:
    procs.write(str(os.getpid()))

def failure(error):
    return {"ok": False, "errno": error.errno if error.errno is not None else -1, "error": str(error)}

def tcp(ip, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect((ip, port))
        peer = sock.getpeername()
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(64)
            if not chunk:
                break
            data += chunk
        return {"ok": True, "reply": data.decode().strip(), "peer": "%s:%d" % peer}
    except OSError as error:
        return failure(error)
    finally:
        sock.close()

def udp(ip, port, connected):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    try:
        if connected:
            sock.connect((ip, port))
            sock.send(b"ping")
        else:
            sock.sendto(b"ping", (ip, port))
        data, source = sock.recvfrom(64)
        answer = {"ok": True, "reply": data.decode(), "from": "%s:%d" % source}
        if connected:
            answer["peer"] = "%s:%d" % sock.getpeername()
        return answer
    except OSError as error:
        return failure(error)
    finally:
        sock.close()

def hammer(ip, port, stop_file):
    print(json.dumps({"started": True}), flush=True)
    count, failures, errors = 0, 0, []
    while count == 0 or not os.path.exists(stop_file):
        answer = tcp(ip, port)
        count += 1
        if not answer["ok"]:
            failures += 1
            errors = (errors + [answer["error"]])[-5:]
    return {"ok": True, "count": count, "failures": failures, "errors": errors}

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    op = request["op"]
    if op == "tcp":
        answer = tcp(request["ip"], request["port"])
    elif op == "udp":
        answer = udp(request["ip"], request["port"], request["connected"])
    elif op == "hammer":
        answer = hammer(request["ip"], request["port"], request["stop_file"])
    else:
        answer = {"ok": False, "errno": -1, "error": "unknown op " + op}
    print(json.dumps(answer), flush=True)
"#;

pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What one TCP connection or UDP exchange through the client gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The name of the backend that answered, the peer (getpeername) and, for UDP, the
    /// source address of the reply.
    Answered {
        backend: String,
        peer: Option<SocketAddrV4>,
        from: Option<SocketAddrV4>,
    },
    Failed {
        errno: i64,
        error: String,
        elapsed: Duration,
    },
}

impl Outcome {
    pub fn backend(&self) -> Result<&str> {
        match self {
            Outcome::Answered { backend, .. } => Ok(backend),
            Outcome::Failed { error, .. } => bail!("expected an answer, got: {error}"),
        }
    }
}

impl Client {
    fn start(cgroup: &Path) -> Result<Client> {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(CLIENT)
            .arg(cgroup)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting python3")?;
        let stdin = child.stdin.take().context("client stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("client stdout")?);
        let mut client = Client { child, stdin, stdout };
        let ready = client.read()?;
        if ready["ready"] != json!(true) {
            bail!("client did not start: {ready}");
        }
        Ok(client)
    }

    fn send(&mut self, request: &Value) -> Result<()> {
        writeln!(self.stdin, "{request}").context("writing to the client")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the client exited");
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn request(&mut self, request: Value) -> Result<(Value, Duration)> {
        let started = Instant::now();
        self.send(&request)?;
        let answer = self.read()?;
        Ok((answer, started.elapsed()))
    }

    pub fn tcp(&mut self, target: SocketAddrV4) -> Result<Outcome> {
        let (answer, elapsed) = self.request(json!({
            "op": "tcp", "ip": target.ip().to_string(), "port": target.port(),
        }))?;
        outcome(&answer, elapsed)
    }

    pub fn udp(&mut self, target: SocketAddrV4, connected: bool) -> Result<Outcome> {
        let (answer, elapsed) = self.request(json!({
            "op": "udp", "ip": target.ip().to_string(), "port": target.port(), "connected": connected,
        }))?;
        outcome(&answer, elapsed)
    }

    /// Connects to `target` over and over until `stop_file` exists; returns once the loop has
    /// started, and `Hammer::finish` collects its result.
    pub fn hammer(&mut self, target: SocketAddrV4, stop_file: &Path) -> Result<Hammer<'_>> {
        self.send(&json!({
            "op": "hammer", "ip": target.ip().to_string(), "port": target.port(),
            "stop_file": stop_file.to_string_lossy(),
        }))?;
        let started = self.read()?;
        if started["started"] != json!(true) {
            bail!("hammer did not start: {started}");
        }
        Ok(Hammer { client: self, stop_file: stop_file.to_owned() })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Hammer<'a> {
    client: &'a mut Client,
    stop_file: PathBuf,
}

/// What a hammer loop saw.
#[derive(Debug)]
pub struct HammerResult {
    pub connections: u64,
    pub failures: u64,
    pub errors: Value,
}

impl Hammer<'_> {
    pub fn finish(self) -> Result<HammerResult> {
        std::fs::write(&self.stop_file, b"stop")?;
        let answer = self.client.read()?;
        let _ = std::fs::remove_file(&self.stop_file);
        Ok(HammerResult {
            connections: answer["count"].as_u64().context("count")?,
            failures: answer["failures"].as_u64().context("failures")?,
            errors: answer["errors"].clone(),
        })
    }
}

fn outcome(answer: &Value, elapsed: Duration) -> Result<Outcome> {
    if answer["ok"] == json!(true) {
        let address = |field: &str| -> Result<Option<SocketAddrV4>> {
            answer[field]
                .as_str()
                .map(|text| text.parse().with_context(|| format!("{field}: {text}")))
                .transpose()
        };
        Ok(Outcome::Answered {
            backend: answer["reply"].as_str().context("reply")?.to_owned(),
            peer: address("peer")?,
            from: address("from")?,
        })
    } else {
        Ok(Outcome::Failed {
            errno: answer["errno"].as_i64().context("errno")?,
            error: answer["error"].as_str().unwrap_or_default().to_owned(),
            elapsed,
        })
    }
}

/// A backend on loopback answering every TCP connection or UDP datagram with its name.
pub struct Backend {
    pub name: String,
    pub address: SocketAddrV4,
    stop: Arc<AtomicBool>,
    protocol: Protocol,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Listens on `127.0.0.<host>` at a free port.
    pub fn tcp(name: &str, host: u8) -> Result<Backend> {
        let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, host), 0))?;
        let address = local_v4(listener.local_addr()?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stop, reply) = (stop.clone(), format!("{name}\n"));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut stream) = stream {
                    let _ = stream.write_all(reply.as_bytes());
                }
            }
        });
        Ok(Backend {
            name: name.to_owned(),
            address,
            stop,
            protocol: Protocol::Tcp,
            thread: Some(thread),
        })
    }

    /// Receives on `127.0.0.<host>` at a free port and replies to the sender.
    pub fn udp(name: &str, host: u8) -> Result<Backend> {
        let socket = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, host), 0))?;
        let address = local_v4(socket.local_addr()?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stop, reply) = (stop.clone(), name.to_owned());
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            while let Ok((_, sender)) = socket.recv_from(&mut buffer) {
                if thread_stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = socket.send_to(reply.as_bytes(), sender);
            }
        });
        Ok(Backend {
            name: name.to_owned(),
            address,
            stop,
            protocol: Protocol::Udp,
            thread: Some(thread),
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the thread blocked in accept or recv (this process is outside the sandbox's
        // cgroup, so nothing translates these).
        match self.protocol {
            Protocol::Tcp => {
                let _ =
                    TcpStream::connect(self.address).map(|mut stream| stream.read(&mut [0u8; 1]));
            }
            Protocol::Udp => {
                let _ = UdpSocket::bind("127.0.0.1:0")
                    .and_then(|socket| socket.send_to(b"stop", self.address));
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn local_v4(address: std::net::SocketAddr) -> Result<SocketAddrV4> {
    match address {
        std::net::SocketAddr::V4(address) => Ok(address),
        other => bail!("expected an IPv4 address, got {other}"),
    }
}

pub fn frontend(ip: [u8; 4], port: u16, protocol: Protocol) -> Frontend {
    Frontend { ip: Ipv4Addr::from(ip), port, protocol }
}

pub fn vip(frontend: Frontend) -> SocketAddrV4 {
    SocketAddrV4::new(frontend.ip, frontend.port)
}

pub fn backends(backends: &[&Backend]) -> Backends {
    Backends { addresses: backends.iter().map(|backend| backend.address).collect(), affinity: None }
}

/// Polls `condition` until it holds, failing after `timeout` with `what` in the message.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Collects which backends answer `attempts` TCP connections to `target`.
pub fn tcp_backends_seen(
    client: &mut Client,
    target: SocketAddrV4,
    attempts: usize,
) -> Result<Vec<String>> {
    let mut seen = Vec::with_capacity(attempts);
    for _ in 0..attempts {
        seen.push(client.tcp(target)?.backend()?.to_owned());
    }
    Ok(seen)
}
