//! The node ports' nftables table with real packets: three network namespaces, a "node" whose
//! table is programmed through `ip netns exec <node> nft`, a "client" machine and a "pod"
//! machine running two busybox web servers, routed through the node (which also routes
//! everything else, external IPs included, towards the pod's machine). Needs root, iproute2,
//! nft and busybox (with httpd and wget).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use flotilla_ebpf::Protocol;
use flotilla_net::node_ports::{
    Change, Destination, ExternalAddress, NftTable, NodePort, NodePortTable, Rule, Rules, Update,
    Verdict,
};

const TABLE: &str = "flotilla-it";
/// The node's address on the client's link, and the client's.
const NODE: &str = "10.251.0.1";
const CLIENT: &str = "10.251.0.2";
/// The node's address on the pod's link (what masqueraded connections come from), and the
/// pod's.
const NODE_TO_POD: &str = "10.251.1.1";
const POD: Ipv4Addr = Ipv4Addr::new(10, 251, 1, 2);
/// How long a fetch may take; a dropped connection takes all of it.
const FETCH_TIMEOUT_SECONDS: u64 = 2;
/// Addresses the node does not hold that its clients send to it (external IPs, load balancer
/// IPs): TEST-NET-3.
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const EXTERNAL_REFUSED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
const EXTERNAL_DROPPED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn run(args: &[&str]) -> Result<Output> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?} (needs root, iproute2, nft, busybox)"))?;
    if !output.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output)
}

/// Three namespaces and the servers in the pod's, removed on drop (also when the test fails).
struct Machines {
    node: String,
    client: String,
    pod: String,
    servers: Vec<Child>,
    www: PathBuf,
}

impl Machines {
    /// Starts the machines of test `test` (a short name, unique among the tests).
    fn start(test: &str) -> Result<Machines> {
        let tag = format!("np-{test}-{}", std::process::id());
        let www = std::env::temp_dir().join(&tag);
        let mut machines = Machines {
            node: format!("{tag}-node"),
            client: format!("{tag}-client"),
            pod: format!("{tag}-pod"),
            servers: Vec::new(),
            www,
        };
        for namespace in [&machines.node, &machines.client, &machines.pod] {
            run(&["ip", "netns", "add", namespace])?;
            run(&["ip", "-n", namespace, "link", "set", "lo", "up"])?;
        }
        let node = machines.node.clone();
        for (peer, link, node_address, peer_address) in [
            (&machines.client, "to-client", NODE, CLIENT),
            (&machines.pod, "to-pod", NODE_TO_POD, &POD.to_string()),
        ] {
            run(&[
                "ip", "-n", &node, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                "netns", peer,
            ])?;
            run(&["ip", "-n", &node, "addr", "add", &format!("{node_address}/30"), "dev", link])?;
            run(&["ip", "-n", &node, "link", "set", link, "up"])?;
            run(&["ip", "-n", peer, "addr", "add", &format!("{peer_address}/30"), "dev", "eth0"])?;
            run(&["ip", "-n", peer, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", peer, "route", "add", "default", "via", node_address])?;
        }
        // The node's other routes lead on to the pod's machine, which forwards nothing: a packet
        // the node passes on untranslated is lost.
        run(&["ip", "-n", &node, "route", "add", "default", "via", &POD.to_string()])?;
        run(&["ip", "netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // Two servers: each names itself at `/` and tells the client's address at /cgi-bin/ip.
        for (name, port) in [("a", 8080), ("b", 8081)] {
            let root = machines.www.join(name);
            std::fs::create_dir_all(root.join("cgi-bin"))?;
            std::fs::write(root.join("index.html"), name)?;
            let script = root.join("cgi-bin/ip");
            std::fs::write(
                &script,
                "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
            )?;
            run(&["chmod", "+x", &script.display().to_string()])?;
            let server = Command::new("ip")
                .args(["netns", "exec", &machines.pod, "busybox", "httpd", "-f", "-p"])
                .arg(port.to_string())
                .arg("-h")
                .arg(&root)
                .stdout(Stdio::null())
                .spawn()
                .context("starting busybox httpd")?;
            machines.servers.push(server);
        }
        Ok(machines)
    }

    fn table(&self) -> NftTable {
        let command = ["ip", "netns", "exec", &self.node, "nft"].map(OsString::from).to_vec();
        NftTable::with_command(command, TABLE)
    }

    /// The table as `nft list` shows it, or `None` if it does not exist.
    fn listing(&self) -> Option<String> {
        let output = run(&["ip", "netns", "exec", &self.node, "nft", "list", "table", "ip", TABLE]);
        output.ok().map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The addresses of the clients in affinity set `set`.
    fn remembered(&self, set: &str) -> Result<String> {
        let output =
            run(&["ip", "netns", "exec", &self.node, "nft", "list", "set", "ip", TABLE, set])?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// GETs `path` on the node's port `port` from the client: the body if it answered, else
    /// wget's complaint; and how long it took.
    fn fetch(&self, port: u16, path: &str) -> (Result<String, String>, Duration) {
        self.fetch_from(NODE.parse().unwrap(), port, path)
    }

    /// GETs `path` on `ip`'s port `port` from the client, routed through the node.
    fn fetch_from(
        &self,
        ip: Ipv4Addr,
        port: u16,
        path: &str,
    ) -> (Result<String, String>, Duration) {
        let started = Instant::now();
        let url = format!("http://{ip}:{port}{path}");
        let output = Command::new("ip")
            .args(["netns", "exec", &self.client, "timeout", &FETCH_TIMEOUT_SECONDS.to_string()])
            .args(["busybox", "wget", "-q", "-O", "-", &url])
            .output();
        let result = match output {
            Ok(output) if output.status.success() => {
                // busybox httpd listens on IPv6 too, so it shows IPv4 clients as
                // `[::ffff:a.b.c.d]`.
                let body = String::from_utf8_lossy(&output.stdout);
                let body = body.trim();
                Ok(body
                    .strip_prefix("[::ffff:")
                    .and_then(|b| b.strip_suffix(']'))
                    .unwrap_or(body)
                    .to_owned())
            }
            Ok(output) => {
                Err(format!("{} {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
            }
            Err(err) => Err(err.to_string()),
        };
        (result, started.elapsed())
    }

    /// Waits until the servers answer on the pod's own address.
    fn wait_for_servers(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for port in [8080, 8081] {
            let url = format!("http://{POD}:{port}/");
            while run(&["ip", "netns", "exec", &self.pod, "busybox", "wget", "-q", "-O", "-", &url])
                .is_err()
            {
                if Instant::now() > deadline {
                    bail!("the web servers in the pod's namespace never answered");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        for namespace in [&self.node, &self.client, &self.pod] {
            let _ = Command::new("ip").args(["netns", "del", namespace]).status();
        }
        let _ = std::fs::remove_dir_all(&self.www);
    }
}

fn tcp(port: u16) -> Destination {
    NodePort { protocol: Protocol::Tcp, port }.into()
}

fn external(ip: Ipv4Addr, port: u16) -> Destination {
    ExternalAddress { ip, protocol: Protocol::Tcp, port }.into()
}

fn rule(verdict: Verdict) -> Rule {
    Rule { service: "default/web:http".to_owned(), verdict }
}

fn forward(ports: &[u16], masquerade: bool) -> Rule {
    let backends = ports.iter().map(|port| SocketAddrV4::new(POD, *port)).collect();
    rule(Verdict::Forward { backends, masquerade, affinity: None })
}

/// Forwards to `ports`, masqueraded, keeping each client on its backend for `timeout`.
fn sticky(ports: &[u16], timeout: Duration) -> Rule {
    let backends = ports.iter().map(|port| SocketAddrV4::new(POD, *port)).collect();
    rule(Verdict::Forward { backends, masquerade: true, affinity: Some(timeout) })
}

/// The server on `port` names itself so.
fn server_name(port: u16) -> &'static str {
    if port == 8080 {
        "a"
    } else {
        "b"
    }
}

/// Waits until `condition` holds, checking every 50 ms for at most `timeout`.
fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Applies `update` and returns how long the kernel took.
async fn apply(table: &mut NftTable, update: &Update) -> Result<Duration> {
    let started = Instant::now();
    table.apply(update).await.context("applying an update")?;
    Ok(started.elapsed())
}

#[tokio::test]
async fn node_ports_translate_packets_from_another_machine() -> Result<()> {
    eprintln!("--- three machines: client -> node -> pod (two web servers)");
    let machines = Machines::start("node")?;
    machines.wait_for_servers()?;
    let mut table = machines.table();

    eprintln!("--- an earlier agent's table is replaced whole");
    let stale = Rules::from([(tcp(30099), forward(&[8080], true))]);
    apply(&mut table, &Update::Replace(stale)).await?;
    assert_eq!(machines.fetch(30099, "/").0, Ok("a".to_owned()));
    let rules = Rules::from([
        (tcp(30080), forward(&[8080, 8081], true)),
        (tcp(30081), forward(&[8081], false)),
        (tcp(30082), rule(Verdict::Reject)),
        (tcp(30083), rule(Verdict::Drop)),
    ]);
    let took = apply(&mut machines.table(), &Update::Replace(rules.clone())).await?;
    eprintln!("replacing the table took {took:?}");
    let listing = machines.listing().context("the table exists")?;
    assert!(!listing.contains("30099"), "{listing}");
    let (stale, _) = machines.fetch(30099, "/");
    assert!(stale.is_err(), "a node port nothing wants no longer answers: {stale:?}");

    eprintln!("--- Cluster: spread over both backends, masqueraded");
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen.insert(machines.fetch(30080, "/").0);
    }
    let both = BTreeSet::from([Ok("a".to_owned()), Ok("b".to_owned())]);
    assert_eq!(seen, both, "20 connections reach both backends");
    assert_eq!(machines.fetch(30080, "/cgi-bin/ip").0, Ok(NODE_TO_POD.to_owned()));

    eprintln!("--- Local: the client's own address reaches the pod");
    assert_eq!(machines.fetch(30081, "/").0, Ok("b".to_owned()));
    assert_eq!(machines.fetch(30081, "/cgi-bin/ip").0, Ok(CLIENT.to_owned()));

    eprintln!("--- no endpoint: refused at once; Local without a local endpoint: dropped");
    let (refused, took) = machines.fetch(30082, "/");
    eprintln!("rejected after {took:?}: {refused:?}");
    assert!(refused.as_ref().is_err_and(|e| e.contains("refused")), "{refused:?}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let (dropped, took) = machines.fetch(30083, "/");
    eprintln!("dropped: gave up after {took:?}: {dropped:?}");
    assert!(dropped.is_err());
    assert!(took >= Duration::from_secs(FETCH_TIMEOUT_SECONDS), "answered after {took:?}");

    eprintln!("--- changes touch only their node ports");
    let changes = vec![
        Change { destination: tcp(30080), from: rules.get(&tcp(30080)).cloned(), to: None },
        Change {
            destination: tcp(30081),
            from: rules.get(&tcp(30081)).cloned(),
            to: Some(rule(Verdict::Reject)),
        },
        Change {
            destination: tcp(30082),
            from: rules.get(&tcp(30082)).cloned(),
            to: Some(forward(&[8080], true)),
        },
        Change {
            destination: tcp(30083),
            from: rules.get(&tcp(30083)).cloned(),
            to: Some(forward(&[8081], false)),
        },
    ];
    let took = apply(&mut table, &Update::Changes(changes)).await?;
    eprintln!("four changes took {took:?}");
    assert_eq!(machines.fetch(30082, "/cgi-bin/ip").0, Ok(NODE_TO_POD.to_owned()));
    assert_eq!(machines.fetch(30083, "/cgi-bin/ip").0, Ok(CLIENT.to_owned()));
    let (refused, took) = machines.fetch(30081, "/");
    assert!(refused.as_ref().is_err_and(|e| e.contains("refused")), "{refused:?}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let (gone, _) = machines.fetch(30080, "/");
    assert!(gone.is_err(), "{gone:?}");
    let listing = machines.listing().context("the table exists")?;
    assert!(!listing.contains("node-port-tcp-30080"), "{listing}");
    assert!(!listing.contains("node-port-tcp-30081"), "{listing}");

    eprintln!("--- a change that does not match the table fails whole and changes nothing");
    let wrong = vec![
        Change { destination: tcp(30084), from: None, to: Some(forward(&[8080], true)) },
        Change { destination: tcp(30090), from: Some(rule(Verdict::Reject)), to: None },
    ];
    assert!(table.apply(&Update::Changes(wrong)).await.is_err());
    assert!(!machines.listing().unwrap_or_default().contains("30084"));

    eprintln!("--- removing the table stops every node port, and is idempotent");
    table.remove().await?;
    assert_eq!(machines.listing(), None);
    table.remove().await?;
    assert!(machines.fetch(30083, "/").0.is_err());
    Ok(())
}

#[tokio::test]
async fn session_affinity_keeps_a_client_on_its_backend_while_it_stays() -> Result<()> {
    eprintln!("--- three machines: client -> node -> pod (two web servers)");
    let machines = Machines::start("affinity")?;
    machines.wait_for_servers()?;
    let mut table = machines.table();
    let hours = Duration::from_secs(10_800);
    let both = sticky(&[8080, 8081], hours);
    apply(&mut table, &Update::Replace(Rules::from([(tcp(30080), both.clone())]))).await?;

    eprintln!("--- every connection of the client goes to the backend it first got");
    let (first, _) = machines.fetch(30080, "/");
    let first = first.map_err(anyhow::Error::msg).context("the first connection")?;
    let (kept, left) = if first == "a" { (8080, 8081) } else { (8081, 8080) };
    for _ in 0..20 {
        assert_eq!(machines.fetch(30080, "/").0, Ok(first.clone()), "20 more connections stay");
    }
    assert_eq!(
        machines.fetch(30080, "/cgi-bin/ip").0,
        Ok(NODE_TO_POD.to_owned()),
        "affinity and masquerading go together"
    );
    let set = |port| format!("affinity-node-port-tcp-30080/{POD}/{port}");
    assert!(machines.remembered(&set(kept))?.contains(CLIENT), "the client is remembered");

    eprintln!("--- its backend leaves: the client moves to the other");
    let without = sticky(&[left], hours);
    let change = Change { destination: tcp(30080), from: Some(both.clone()), to: Some(without) };
    apply(&mut table, &Update::Changes(vec![change.clone()])).await?;
    for _ in 0..5 {
        assert_eq!(machines.fetch(30080, "/").0, Ok(server_name(left).to_owned()));
    }

    eprintln!("--- the first backend comes back: the client stays where it went");
    let change = Change { destination: tcp(30080), from: change.to, to: Some(both.clone()) };
    apply(&mut table, &Update::Changes(vec![change])).await?;
    for _ in 0..20 {
        assert_eq!(machines.fetch(30080, "/").0, Ok(server_name(left).to_owned()));
    }
    assert!(!machines.remembered(&set(kept))?.contains(CLIENT), "it came back with no clients");

    eprintln!("--- a one-second timeout: once it expires, the client picks again");
    let short = Duration::from_secs(1);
    let change = Change {
        destination: tcp(30080),
        from: Some(both),
        to: Some(sticky(&[8080, 8081], short)),
    };
    apply(&mut table, &Update::Changes(vec![change])).await?;
    let mut seen = BTreeSet::new();
    for round in 0..16 {
        let (body, _) = machines.fetch(30080, "/");
        let body = body.map_err(anyhow::Error::msg).context("a connection after the timeout")?;
        eprintln!("round {round}: {body}");
        seen.insert(body);
        if seen.len() == 2 {
            break;
        }
        wait_until(Duration::from_secs(5), "the client's entry to expire", || {
            [8080, 8081]
                .iter()
                .all(|port| machines.remembered(&set(*port)).is_ok_and(|set| !set.contains(CLIENT)))
        })?;
    }
    assert_eq!(seen.len(), 2, "after each expiry the client picked at random again: {seen:?}");
    Ok(())
}

#[tokio::test]
async fn external_addresses_translate_packets_routed_through_the_node() -> Result<()> {
    eprintln!(
        "--- three machines: client -> node -> pod; the client routes everything via the node"
    );
    let machines = Machines::start("external")?;
    machines.wait_for_servers()?;
    let mut table = machines.table();
    let node: Ipv4Addr = NODE.parse()?;
    let rules = Rules::from([
        (external(EXTERNAL, 80), forward(&[8080], true)),
        (external(EXTERNAL, 81), forward(&[8081], false)),
        (external(EXTERNAL_REFUSED, 80), rule(Verdict::Reject)),
        (external(EXTERNAL_DROPPED, 80), rule(Verdict::Drop)),
        (external(node, 8000), forward(&[8081], true)),
        (tcp(30080), forward(&[8080], true)),
    ]);
    apply(&mut table, &Update::Replace(rules.clone())).await?;

    eprintln!("--- Cluster: to the backend, masqueraded; Local: the client's address kept");
    assert_eq!(machines.fetch_from(EXTERNAL, 80, "/").0, Ok("a".to_owned()));
    assert_eq!(machines.fetch_from(EXTERNAL, 80, "/cgi-bin/ip").0, Ok(NODE_TO_POD.to_owned()));
    assert_eq!(machines.fetch_from(EXTERNAL, 81, "/").0, Ok("b".to_owned()));
    assert_eq!(machines.fetch_from(EXTERNAL, 81, "/cgi-bin/ip").0, Ok(CLIENT.to_owned()));

    eprintln!("--- an external IP the node holds itself");
    assert_eq!(machines.fetch_from(node, 8000, "/").0, Ok("b".to_owned()));

    eprintln!("--- only the Service's port: the node port is not on the external IP");
    let (elsewhere, _) = machines.fetch_from(EXTERNAL, 30080, "/");
    assert!(elsewhere.is_err(), "{elsewhere:?}");

    eprintln!("--- no endpoint: refused at once; Local without a local endpoint: dropped");
    let (refused, took) = machines.fetch_from(EXTERNAL_REFUSED, 80, "/");
    eprintln!("rejected after {took:?}: {refused:?}");
    assert!(refused.as_ref().is_err_and(|e| e.contains("refused")), "{refused:?}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let (dropped, took) = machines.fetch_from(EXTERNAL_DROPPED, 80, "/");
    assert!(dropped.is_err());
    assert!(took >= Duration::from_secs(FETCH_TIMEOUT_SECONDS), "answered after {took:?}");

    eprintln!("--- changes: the refused address gets an endpoint, another address goes");
    let changes = vec![
        Change {
            destination: external(EXTERNAL, 80),
            from: rules.get(&external(EXTERNAL, 80)).cloned(),
            to: None,
        },
        Change {
            destination: external(EXTERNAL_REFUSED, 80),
            from: rules.get(&external(EXTERNAL_REFUSED, 80)).cloned(),
            to: Some(forward(&[8081], true)),
        },
    ];
    apply(&mut table, &Update::Changes(changes)).await?;
    assert_eq!(machines.fetch_from(EXTERNAL_REFUSED, 80, "/").0, Ok("b".to_owned()));
    let (gone, _) = machines.fetch_from(EXTERNAL, 80, "/");
    assert!(gone.is_err(), "an address nothing wants is no longer translated: {gone:?}");
    assert_eq!(machines.fetch_from(EXTERNAL, 81, "/").0, Ok("b".to_owned()), "untouched");
    Ok(())
}
