//! What DNS benchmarks share: a closed-loop UDP load of A queries with its tally, the CPU time
//! of a process or of named threads read from `/proc`, and dnsmasq serving a hosts file as the
//! reference server.
//!
//! The load is cheap on purpose, so that it leaves the CPU to the server under test: queries
//! are encoded beforehand, replies are classified from their header alone, and only one in
//! [`SAMPLE_EVERY`] is decoded and checked for the expected address.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::bench::spread;

/// How long a client waits for one answer before counting a timeout.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// One answer in this many is decoded and its address checked.
pub const SAMPLE_EVERY: u64 = 64;
/// Linux reports CPU times in `/proc` in USER_HZ, 100 per second on every architecture.
const TICKS_PER_SECOND: u64 = 100;

/// Returns an A query for `name`, recursion desired, with id `id`.
pub fn encode_query(name: &str, id: u16) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(message.to_vec()?)
}

/// What a received datagram is to the client waiting for query `id`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The answer: NOERROR with at least one record.
    Answered,
    /// The reply to this query, but not an answer.
    Wrong(String),
    /// Not the reply to this query (a late reply to an earlier one, or garbage).
    Stray,
}

/// Classifies a datagram from its header alone, which costs the client next to nothing.
pub fn classify(reply: &[u8], id: u16) -> Reply {
    if reply.len() < 12 || u16::from_be_bytes([reply[0], reply[1]]) != id || reply[2] & 0x80 == 0 {
        return Reply::Stray;
    }
    let truncated = reply[2] & 0x02 != 0;
    let code = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    match (code, answers, truncated) {
        (0, 1.., false) => Reply::Answered,
        (0, _, true) => Reply::Wrong("truncated".to_owned()),
        (0, 0, _) => Reply::Wrong("NOERROR without an answer".to_owned()),
        (code, _, _) => Reply::Wrong(format!("response code {code}")),
    }
}

/// Returns true when the reply holds an A record for `address`.
pub fn holds_address(reply: &[u8], address: Ipv4Addr) -> bool {
    Message::from_vec(reply).is_ok_and(|message| {
        message.answers.iter().any(|record| record.data == RData::A(A(address)))
    })
}

/// The questions the load asks, encoded beforehand, and the address each must get.
pub struct Catalog {
    names: Vec<String>,
    queries: Vec<Vec<u8>>,
    expected: Vec<Ipv4Addr>,
}

impl Catalog {
    /// Returns the catalog of A queries for each name, each expecting its address.
    pub fn new(entries: impl IntoIterator<Item = (String, Ipv4Addr)>) -> anyhow::Result<Self> {
        let (names, expected): (Vec<String>, Vec<Ipv4Addr>) = entries.into_iter().unzip();
        if names.is_empty() {
            bail!("a catalog needs at least one name");
        }
        let queries = names.iter().map(|name| encode_query(name, 0)).collect::<Result<_, _>>()?;
        Ok(Self { names, queries, expected })
    }

    /// Returns the address the `index`th name must get.
    pub fn expected(&self, index: usize) -> Ipv4Addr {
        self.expected[index]
    }
}

/// What the clients saw.
#[derive(Default)]
pub struct Tally {
    /// The latency of every answered query.
    pub latencies: Vec<Duration>,
    pub timeouts: u64,
    pub io_errors: u64,
    pub first_io_error: Option<String>,
    pub wrong: u64,
    pub first_wrong: Option<String>,
    /// How many answers were decoded and checked.
    pub sampled: u64,
}

impl Tally {
    fn io_error(&mut self, error: std::io::Error) {
        self.io_errors += 1;
        self.first_io_error.get_or_insert_with(|| error.to_string());
    }

    fn wrong(&mut self, what: impl FnOnce() -> String) {
        self.wrong += 1;
        if self.first_wrong.is_none() {
            self.first_wrong = Some(what());
        }
    }

    /// Adds what another tally saw.
    pub fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.timeouts += other.timeouts;
        self.io_errors += other.io_errors;
        self.first_io_error = self.first_io_error.take().or(other.first_io_error);
        self.wrong += other.wrong;
        self.first_wrong = self.first_wrong.take().or(other.first_wrong);
        self.sampled += other.sampled;
    }
}

/// One closed-loop client: asks, waits for the answer, asks again, until `stop`.
async fn client(
    server: SocketAddr,
    catalog: Arc<Catalog>,
    index: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Tally> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut tally = Tally::default();
    let mut query = Vec::with_capacity(512);
    let mut buffer = vec![0u8; 4096];
    let mut sequence = 0usize;
    while !stop.load(Ordering::Relaxed) {
        sequence += 1;
        let question = spread((index << 40) + sequence, catalog.queries.len());
        let id = sequence as u16;
        query.clear();
        query.extend_from_slice(&catalog.queries[question]);
        query[..2].copy_from_slice(&id.to_be_bytes());
        let started = Instant::now();
        if let Err(error) = socket.send(&query).await {
            tally.io_error(error);
            continue;
        }
        let deadline = tokio::time::Instant::from_std(started + QUERY_TIMEOUT);
        loop {
            let len = match tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
                Ok(Ok(len)) => len,
                Ok(Err(error)) => {
                    tally.io_error(error);
                    break;
                }
                Err(_) => {
                    tally.timeouts += 1;
                    break;
                }
            };
            let name = &catalog.names[question];
            match classify(&buffer[..len], id) {
                Reply::Stray => continue,
                Reply::Wrong(what) => tally.wrong(|| format!("{name}: {what}")),
                Reply::Answered => {
                    tally.latencies.push(started.elapsed());
                    if tally.latencies.len() as u64 % SAMPLE_EVERY == 0 {
                        tally.sampled += 1;
                        let expected = catalog.expected[question];
                        if !holds_address(&buffer[..len], expected) {
                            tally.wrong(|| format!("{name}: no A record {expected}"));
                        }
                    }
                }
            }
            break;
        }
    }
    Ok(tally)
}

/// The load: closed-loop clients asking pseudo-random names of a catalog (the same sequence on
/// every run), spawned on the current runtime.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<anyhow::Result<Tally>>>,
}

impl Load {
    /// Starts `clients` clients, each on a connected UDP socket of its own.
    pub fn start(server: SocketAddr, catalog: &Arc<Catalog>, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|index| tokio::spawn(client(server, catalog.clone(), index, stop.clone())))
            .collect();
        Self { stop, clients }
    }

    /// Stops every client after its current query and returns what they saw.
    pub async fn stop(self) -> anyhow::Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for client in self.clients {
            tally.merge(client.await??);
        }
        Ok(tally)
    }
}

/// Whose CPU time to read.
pub enum Cpu {
    Process(u32),
    /// The threads of this process with this name.
    Threads(&'static str),
}

impl Cpu {
    /// Returns the CPU time (user and system) used so far.
    pub fn used(&self) -> anyhow::Result<Duration> {
        let ticks = match self {
            Cpu::Process(pid) => {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
                stat_cpu(&stat).context("unreadable stat")?.1
            }
            Cpu::Threads(name) => {
                let mut ticks = 0;
                for task in std::fs::read_dir("/proc/self/task")? {
                    // A thread may end between the listing and the read.
                    let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
                        continue;
                    };
                    match stat_cpu(&stat) {
                        Some((comm, used)) if comm == *name => ticks += used,
                        _ => {}
                    }
                }
                ticks
            }
        };
        Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
    }
}

/// Returns the command name and the user plus system ticks of a `/proc/<pid>/stat` line.
fn stat_cpu(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After the name come the fields from the 3rd (state) on; utime and stime are 14th and 15th.
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((comm, user + system))
}

/// Returns a hosts file (as dnsmasq's `--addn-hosts` reads it) naming every `(address, name)`.
fn hosts_file(entries: impl IntoIterator<Item = (Ipv4Addr, String)>) -> String {
    entries.into_iter().map(|(address, name)| format!("{address} {name}\n")).collect()
}

/// dnsmasq (Debian's `dnsmasq-base`) answering from a hosts file on a free loopback port,
/// killed (and its directory removed) on drop. It runs single-threaded, as it is built.
pub struct Dnsmasq {
    child: Child,
    dir: PathBuf,
    address: SocketAddr,
}

impl Dnsmasq {
    fn program() -> &'static str {
        if Path::new("/usr/sbin/dnsmasq").exists() {
            "/usr/sbin/dnsmasq"
        } else {
            "dnsmasq"
        }
    }

    /// Returns the installed version, e.g. `Dnsmasq version 2.90`.
    pub fn version() -> String {
        let output = Command::new(Self::program()).arg("--version").output();
        let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let first = text.unwrap_or_default().lines().next().unwrap_or_default().to_owned();
        first.split("  ").next().unwrap_or_default().trim().to_owned()
    }

    /// Starts dnsmasq answering for every `(address, name)` of `hosts` with `ttl`, forwarding
    /// nothing, with a cache large enough for every name.
    pub fn start(
        hosts: impl IntoIterator<Item = (Ipv4Addr, String)>,
        ttl: u32,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("dnsmasq-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let hosts_path = dir.join("hosts");
        let hosts = hosts_file(hosts);
        std::fs::write(&hosts_path, &hosts)?;
        let port = flotilla_store::ports::free_local_port()?;
        let log = std::fs::File::create(dir.join("dnsmasq.log"))?;
        let child = Command::new(Self::program())
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null"])
            .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file"])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts_path.display()))
            .arg(format!("--cache-size={}", hosts.lines().count().max(150)))
            .arg(format!("--local-ttl={ttl}"))
            .arg("--log-facility=-")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dnsmasq (install Debian's dnsmasq-base)")?;
        Ok(Self { child, dir, address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)) })
    }

    /// Returns where dnsmasq answers.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the process id, whose CPU time is dnsmasq's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// Waits until dnsmasq answers for `name`, 10 s at most.
    pub async fn wait_serving(&mut self, name: &str) -> anyhow::Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(self.address).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let query = encode_query(name, 1)?;
        let mut buffer = vec![0u8; 4096];
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("dnsmasq exited ({status}): {}", self.log().trim());
            }
            // Until dnsmasq binds, the send may fail with "connection refused".
            if socket.send(&query).await.is_ok() {
                let reply =
                    tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buffer));
                if let Ok(Ok(len)) = reply.await {
                    if classify(&buffer[..len], 1) == Reply::Answered {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("dnsmasq did not answer within 10 s: {}", self.log().trim());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::Record;

    use super::*;

    const NAME: &str = "svc-0.bench.svc.cluster.local";
    const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

    fn reply(id: u16, code: ResponseCode, address: Option<Ipv4Addr>) -> Vec<u8> {
        let mut message = Message::response(id, OpCode::Query);
        message.metadata.response_code = code;
        let name = Name::from_ascii(NAME).unwrap();
        message.add_query(Query::query(name.clone(), RecordType::A));
        if let Some(address) = address {
            message.add_answer(Record::from_rdata(name, 5, RData::A(A(address))));
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn the_hosts_file_has_one_line_per_name() {
        let entries = [(ADDRESS, NAME.to_owned()), (Ipv4Addr::new(10, 96, 0, 2), "b".to_owned())];
        assert_eq!(hosts_file(entries), "10.96.0.1 svc-0.bench.svc.cluster.local\n10.96.0.2 b\n");
    }

    #[test]
    fn replies_are_classified_from_their_header() {
        let address = Some(ADDRESS);
        assert_eq!(classify(&reply(7, ResponseCode::NoError, address), 7), Reply::Answered);
        assert_eq!(classify(&reply(6, ResponseCode::NoError, address), 7), Reply::Stray);
        assert_eq!(classify(&encode_query("a.b", 7).unwrap(), 7), Reply::Stray);
        assert_eq!(classify(&[0, 7, 0x80], 7), Reply::Stray);
        assert!(matches!(classify(&reply(7, ResponseCode::NXDomain, None), 7), Reply::Wrong(_)));
        assert!(matches!(classify(&reply(7, ResponseCode::NoError, None), 7), Reply::Wrong(_)));
    }

    #[test]
    fn a_sampled_reply_must_hold_the_address() {
        let answer = reply(1, ResponseCode::NoError, Some(ADDRESS));
        assert!(holds_address(&answer, ADDRESS));
        assert!(!holds_address(&answer, Ipv4Addr::new(10, 96, 0, 2)));
        assert!(!holds_address(b"garbage", ADDRESS));
    }

    #[test]
    fn a_catalog_encodes_each_name_once() {
        let catalog = Catalog::new([(NAME.to_owned(), ADDRESS)]).unwrap();
        assert_eq!(catalog.expected(0), ADDRESS);
        let query = Message::from_vec(&catalog.queries[0]).unwrap();
        assert_eq!(query.queries[0].name().to_ascii(), format!("{NAME}."));
        assert!(Catalog::new([]).is_err(), "an empty catalog gives the load nothing to ask");
    }

    #[test]
    fn stat_lines_give_name_and_cpu_ticks() {
        let stat = "4242 (flotilla-dns) S 1 4242 4242 0 -1 4194368 100 0 0 0 120 30 0 0 20 0 2 0";
        assert_eq!(stat_cpu(stat), Some(("flotilla-dns", 150)));
        // A name may hold spaces and parentheses.
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0";
        assert_eq!(stat_cpu(odd), Some(("a (b) c", 11)));
        assert_eq!(stat_cpu("7 (x) R 1"), None);
    }
}
