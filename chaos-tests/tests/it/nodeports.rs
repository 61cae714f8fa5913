//! Node ports for clients on other machines, on `flotilla up --masters 1 --agents 2`: a
//! client machine, a network namespace of its own on the agents' LAN, reaches a NodePort
//! Service at each node's address through that node's nftables table (each agent runs in its
//! own network namespace, so each table sees only its node's packets). With
//! `externalTrafficPolicy: Cluster` the pod sees a node's address (masquerade); with `Local`
//! it sees the client's; a node whose endpoints all left drops `Local` traffic while the other
//! still answers; a Service with no endpoint refuses at once; and a deleted Service leaves no
//! rule behind. The client's namespace is removed on drop, also when the test fails.
//!
//! The agents' eBPF socket programs serve every process of this machine, the client's too, and
//! would translate its connections to the nodes' own addresses before a packet exists. So each
//! node gets a second address on its link, which the programs do not know and the node's
//! table serves like any local address: the client meets only the table there, as a client on
//! another machine meets it at any node address.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};

const IMAGE: &str = "flotilla.local/busybox:1";
/// The client's host number on the LAN (the agents are .11, .12).
const CLIENT_HOST: u8 = 250;
/// The nodes' second addresses on the LAN: agent `n` gets `.<SECOND_ADDRESS_BASE + n>`.
const SECOND_ADDRESS_BASE: u8 = 100;
const NAMESPACE_PREFIX: &str = "np-client-";
/// How long one fetch may take; a dropped connection takes all of it.
const FETCH_TIMEOUT: &str = "5";
/// The whole test, so that a hang still ends it (and runs the cleanup).
const TEST_TIMEOUT: Duration = Duration::from_secs(420);

/// Web servers pinned to `node`, each telling the client's address at `/cgi-bin/ip` (busybox
/// httpd runs CGI scripts) and its pod's name at `/`.
fn web(node: &str) -> String {
    format!(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {{name: np-{node}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: np-web, node: {node}}}}}
  template:
    metadata: {{labels: {{app: np-web, node: {node}}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {IMAGE}
        command:
        - sh
        - -c
        - |
          mkdir -p /tmp/www/cgi-bin && hostname > /tmp/www/index.html
          printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \"$REMOTE_ADDR\"\\n' > /tmp/www/cgi-bin/ip
          chmod +x /tmp/www/cgi-bin/ip
          exec httpd -f -p 8080 -h /tmp/www
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"
    )
}

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: np-web}
spec:
  type: NodePort
  selector: {app: np-web}
  ports: [{name: http, port: 80, targetPort: 8080}]
";

fn run(args: &[&str]) -> anyhow::Result<Output> {
    let output =
        Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("{args:?}"))?;
    if !output.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output)
}

/// The client machine: a network namespace on the cluster's LAN bridge; removed on drop.
struct RemoteClient {
    namespace: String,
    /// Its address on the LAN.
    address: String,
}

impl RemoteClient {
    fn create(cluster: &Cluster) -> anyhow::Result<RemoteClient> {
        remove_stale_namespaces();
        let bridge = cluster.lan("FLOTILLA_LAN_BRIDGE")?;
        let subnet = cluster.lan("FLOTILLA_LAN_SUBNET")?;
        let gateway = cluster.lan("FLOTILLA_LAN_GATEWAY")?;
        let (network, prefix) = subnet.split_once('/').context("subnet")?;
        let mut octets: [u8; 4] = network.parse::<std::net::Ipv4Addr>()?.octets();
        octets[3] = CLIENT_HOST;
        let pid = std::process::id();
        let client = RemoteClient {
            namespace: format!("{NAMESPACE_PREFIX}{pid}"),
            address: std::net::Ipv4Addr::from(octets).to_string(),
        };
        let host_link = format!("npc{pid}");
        let ns = client.namespace.as_str();
        run(&["ip", "netns", "add", ns])?;
        run(&[
            "ip", "link", "add", &host_link, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        run(&["ip", "link", "set", &host_link, "master", &bridge, "up"])?;
        let address = format!("{}/{prefix}", client.address);
        run(&["ip", "-n", ns, "addr", "add", &address, "dev", "eth0"])?;
        run(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", ns, "route", "add", "default", "via", &gateway])?;
        Ok(client)
    }

    /// GETs `path` of port `port` at `node` (an address) from the client: the body (an
    /// IPv4-mapped address shown plainly), or why not; and how long it took.
    fn fetch(&self, node: &str, port: &str, path: &str) -> (Result<String, String>, Duration) {
        let started = Instant::now();
        let url = format!("http://{node}:{port}{path}");
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespace, "timeout", FETCH_TIMEOUT])
            .args(["busybox", "wget", "-q", "-O", "-", &url])
            .output();
        let result = match output {
            Ok(output) if output.status.success() => {
                let body = String::from_utf8_lossy(&output.stdout);
                let body = body.trim();
                let plain = body.strip_prefix("[::ffff:").and_then(|b| b.strip_suffix(']'));
                Ok(plain.unwrap_or(body).to_owned())
            }
            Ok(output) => {
                Err(format!("{} {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
            }
            Err(err) => Err(err.to_string()),
        };
        (result, started.elapsed())
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair, the host's end included.
        let _ = Command::new("ip").args(["netns", "del", &self.namespace]).status();
    }
}

/// Removes client namespaces left by test processes that no longer exist.
fn remove_stale_namespaces() {
    let listing =
        run(&["ip", "netns", "list"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for line in listing.unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(NAMESPACE_PREFIX) else { continue };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Agent `node`'s nftables table, as the agent's layout names it: `flotilla-` and ten hex
/// digits of the node name's 64-bit FNV-1a hash (pinned there, so it never changes).
fn table_of(node: &str) -> String {
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("flotilla-{:010x}", hash & 0xff_ffff_ffff)
}

/// A node of the test: its name, the second address the client reaches it at, and its
/// network namespace.
struct Node {
    name: String,
    address: String,
    netns: String,
}

/// Gives agent `n` (from 1) of `cluster` a second address on the LAN.
fn second_address(cluster: &Cluster, n: usize) -> anyhow::Result<Node> {
    let subnet = cluster.lan("FLOTILLA_LAN_SUBNET")?;
    let (network, prefix) = subnet.split_once('/').context("subnet")?;
    let mut octets: [u8; 4] = network.parse::<std::net::Ipv4Addr>()?.octets();
    octets[3] = SECOND_ADDRESS_BASE + n as u8;
    let address = std::net::Ipv4Addr::from(octets).to_string();
    let netns = cluster.agent_netns(n)?;
    let with_prefix = format!("{address}/{prefix}");
    run(&["ip", "-n", &netns, "addr", "add", &with_prefix, "dev", "eth0"])?;
    Ok(Node { name: format!("agent-{n}"), address, netns })
}

impl Node {
    /// `nft list <what…>` of this node's table, in its network namespace.
    fn list(&self, what: &[&str]) -> Option<String> {
        let table = table_of(&self.name);
        let mut args = vec!["ip", "netns", "exec", &self.netns, "nft", "list"];
        args.extend_from_slice(&what[..1]);
        args.extend(["ip", table.as_str()]);
        args.extend_from_slice(&what[1..]);
        let output = run(&args).ok()?;
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The chain of TCP node port `port` in the node's table, or `None` if it has none.
    fn chain(&self, port: &str) -> Option<String> {
        self.list(&["chain", &format!("node-port-tcp-{port}")])
    }

    /// Whether the node's table refuses TCP node port `port` (it is in `no-endpoints`).
    fn refuses(&self, port: &str) -> bool {
        self.list(&["set", "no-endpoints"])
            .is_some_and(|set| set.contains(&format!("tcp . {port}")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_answer_clients_on_other_machines() -> anyhow::Result<()> {
    eprintln!("--- start 1 master and 2 agents; a client machine in a network namespace");
    let cluster = Cluster::start_with_agents(1, 2)?;
    let client = RemoteClient::create(&cluster)?;
    let nodes = [second_address(&cluster, 1)?, second_address(&cluster, 2)?];
    tokio::time::timeout(TEST_TIMEOUT, scenario(&cluster, &client, &nodes))
        .await
        .map_err(|_| anyhow::anyhow!("the test took longer than {TEST_TIMEOUT:?}"))?
}

async fn scenario(cluster: &Cluster, client: &RemoteClient, nodes: &[Node]) -> anyhow::Result<()> {
    let server = format!("--server={}", cluster.members[0].api_url()?);
    let s = server.as_str();
    let kubectl = |args: &[&str]| {
        let mut all = vec![s];
        all.extend_from_slice(args);
        cluster.kubectl_output(&all)
    };
    cluster.wait_for_ready_nodes(s, 2).await?;

    eprintln!("--- one web server per node, and a NodePort Service over both");
    for node in ["agent-1", "agent-2"] {
        stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], &web(node))?)?;
    }
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], SERVICE)?)?;
    let created = Instant::now();
    let port = kubectl(&["get", "service", "np-web", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    assert!(port.parse::<u16>().is_ok_and(|p| p >= 30000), "node port {port:?}");
    wait_until(Duration::from_secs(10), "both agents' node port chains", || async {
        nodes.iter().all(|node| node.chain(&port).is_some())
    })
    .await?;
    eprintln!(
        "node port {port} in both tables {:?} after the Service was created",
        created.elapsed()
    );
    for node in ["agent-1", "agent-2"] {
        stdout_of(&cluster.kubectl(&[
            s,
            "rollout",
            "status",
            &format!("deployment/np-{node}"),
            "--timeout=90s",
        ])?)?;
    }
    let pods: Vec<String> =
        kubectl(&["get", "pods", "-l", "app=np-web", "-o", "jsonpath={.items[*].metadata.name}"])
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let cidrs = kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
    // A masqueraded connection leaves a node through its pod bridge (a pod of its own) or its
    // LAN address (another node's pod).
    let mut node_addresses: Vec<String> = cidrs
        .split_whitespace()
        .filter_map(|cidr| flotilla_net::node::gateway(cidr).map(|ip| ip.to_string()))
        .collect();
    assert_eq!(node_addresses.len(), 2, "{cidrs}");
    node_addresses.extend(cluster.lan("FLOTILLA_LAN_AGENTS")?.split(',').map(str::to_owned));

    eprintln!(
        "--- Cluster: the remote client reaches a pod through either node, which masquerades"
    );
    for node in nodes {
        wait_until(Duration::from_secs(20), "a page through the node port", || async {
            client.fetch(&node.address, &port, "/").0.is_ok_and(|page| pods.contains(&page))
        })
        .await?;
        for _ in 0..5 {
            let (seen, took) = client.fetch(&node.address, &port, "/cgi-bin/ip");
            let seen = seen.map_err(anyhow::Error::msg)?;
            assert!(
                node_addresses.contains(&seen),
                "masqueraded to a node's address, not {seen} ({took:?} through {})",
                node.name
            );
        }
    }
    let masquerades = |node: &Node| node.chain(&port).is_some_and(|c| c.contains("meta mark set"));
    assert!(nodes.iter().all(masquerades));

    eprintln!("--- Local: the pod sees the client's own address");
    let patched = Instant::now();
    stdout_of(&cluster.kubectl(&[
        s,
        "patch",
        "service",
        "np-web",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ])?)?;
    wait_until(Duration::from_secs(10), "both tables without masquerade", || async {
        !nodes.iter().any(masquerades)
    })
    .await?;
    eprintln!("the policy change reached both tables {:?} after the patch", patched.elapsed());
    for node in nodes {
        for _ in 0..3 {
            let (seen, _) = client.fetch(&node.address, &port, "/cgi-bin/ip");
            assert_eq!(seen, Ok(client.address.clone()), "the client's address is kept");
        }
    }

    eprintln!("--- Local: the node whose endpoint left drops, the other still forwards");
    let scaled = Instant::now();
    stdout_of(&cluster.kubectl(&[s, "scale", "deployment/np-agent-2", "--replicas=0"])?)?;
    wait_until(Duration::from_secs(30), "agent-2 dropping the node port", || async {
        nodes[1].chain(&port).is_some_and(|c| c.contains("drop"))
    })
    .await?;
    eprintln!("agent-2 drops {:?} after the scale", scaled.elapsed());
    let forwarding = nodes[0].chain(&port).unwrap_or_default();
    assert!(forwarding.contains("dnat"), "{forwarding}");
    let (through_1, _) = client.fetch(&nodes[0].address, &port, "/cgi-bin/ip");
    assert_eq!(through_1, Ok(client.address.clone()), "agent-1 still answers");
    let (through_2, took) = client.fetch(&nodes[1].address, &port, "/");
    assert!(through_2.is_err(), "agent-2 dropped the connection: {through_2:?} after {took:?}");

    eprintln!("--- no endpoint at all: refused at once");
    stdout_of(&cluster.kubectl(&[s, "scale", "deployment/np-agent-1", "--replicas=0"])?)?;
    wait_until(Duration::from_secs(30), "both tables refusing the node port", || async {
        nodes.iter().all(|node| node.refuses(&port))
    })
    .await?;
    for node in nodes {
        let (refused, took) = client.fetch(&node.address, &port, "/");
        eprintln!("with no endpoint, {}: {refused:?} after {took:?}", node.name);
        assert!(refused.as_ref().is_err_and(|e| e.contains("refused")), "{refused:?}");
        assert!(took < Duration::from_secs(2), "refused after {took:?}");
    }

    eprintln!("--- a deleted Service leaves no rule");
    stdout_of(&cluster.kubectl(&[s, "delete", "service", "np-web"])?)?;
    wait_until(Duration::from_secs(10), "the node port gone from both tables", || async {
        nodes.iter().all(|node| node.chain(&port).is_none() && !node.refuses(&port))
    })
    .await?;
    stdout_of(&cluster.kubectl(&[s, "delete", "deployment", "np-agent-1", "np-agent-2"])?)?;
    Ok(())
}
