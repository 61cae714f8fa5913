//! The node ports' nftables table with real packets: three network namespaces, a "node" whose
//! table is programmed through `ip netns exec <node> nft`, a "client" machine and a "pod"
//! machine running two busybox web servers, routed through the node. Needs root, iproute2,
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
    Change, NftTable, NodePort, NodePortTable, Rule, Rules, Update, Verdict,
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
    fn start() -> Result<Machines> {
        let tag = format!("np-it-{}", std::process::id());
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

    /// GETs `path` on the node's port `port` from the client: the body if it answered, else
    /// wget's complaint; and how long it took.
    fn fetch(&self, port: u16, path: &str) -> (Result<String, String>, Duration) {
        let started = Instant::now();
        let url = format!("http://{NODE}:{port}{path}");
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

fn tcp(port: u16) -> NodePort {
    NodePort { protocol: Protocol::Tcp, port }
}

fn rule(verdict: Verdict) -> Rule {
    Rule { service: "default/web:http".to_owned(), verdict }
}

fn forward(ports: &[u16], masquerade: bool) -> Rule {
    let backends = ports.iter().map(|port| SocketAddrV4::new(POD, *port)).collect();
    rule(Verdict::Forward { backends, masquerade })
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
    let machines = Machines::start()?;
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
        Change { port: tcp(30080), from: rules.get(&tcp(30080)).cloned(), to: None },
        Change {
            port: tcp(30081),
            from: rules.get(&tcp(30081)).cloned(),
            to: Some(rule(Verdict::Reject)),
        },
        Change {
            port: tcp(30082),
            from: rules.get(&tcp(30082)).cloned(),
            to: Some(forward(&[8080], true)),
        },
        Change {
            port: tcp(30083),
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
        Change { port: tcp(30084), from: None, to: Some(forward(&[8080], true)) },
        Change { port: tcp(30090), from: Some(rule(Verdict::Reject)), to: None },
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
