//! Services on `flotilla up --masters 3 --agents 2`, through each agent's eBPF socket load
//! balancer and node-local cluster DNS: `kubectl expose` gives a Deployment a cluster IP that
//! spreads connections over every ready pod, from the host and from a pod on either node by
//! name; a NodePort Service answers on the node's address; a removed backend gets no new
//! connections; a Service without endpoints refuses
//! connections at once; a headless StatefulSet's pod resolves by its stable name; and an agent
//! restart does not fail a single connection of a client looping over the Service.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};
use nix::sys::signal::Signal;

const IMAGE: &str = "flotilla.local/busybox:1";
/// The cluster DNS address every agent answers (the masters' `kube-system/kube-dns`).
const CLUSTER_DNS: &str = "10.96.0.10";

/// A web server that answers every request with its pod's name.
const SERVE_NAME: &str =
    "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";

const HEADLESS: &str = "
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: flotilla.local/busybox:1, command: [sleep, '3600']}
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
";

/// A pod pinned to `node` that fetches `http://<host>/` 20 times and succeeds only if every
/// fetch answered and `backends` different pods did; it logs what it saw, and on a failed
/// fetch how the name resolves.
fn client(name: &str, node: &str, host: &str, backends: usize) -> String {
    format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: wget
    image: {IMAGE}
    command:
    - sh
    - -c
    - |
      for i in $(seq 20); do wget -q -O - http://{host}/ || echo \"fetch $i failed\"; done > /tmp/seen
      cat /tmp/seen
      if grep -q failed /tmp/seen; then cat /etc/resolv.conf; nslookup {host}; exit 1; fi
      test $(sort -u /tmp/seen | wc -l) -eq {backends}
"
    )
}

/// The logs of pod `name`'s containers on every agent (read from the agents' log
/// directories: `kubectl logs` is not served yet).
fn pod_logs(cluster: &Cluster, name: &str) -> String {
    let mut logs = String::new();
    for agent in [1, 2] {
        let root = cluster.agent_dir(agent).join("data/containerd/pods");
        let Ok(pods) = std::fs::read_dir(&root) else { continue };
        for pod in pods.flatten() {
            if !pod.file_name().to_string_lossy().starts_with(&format!("default_{name}_")) {
                continue;
            }
            for file in walk(&pod.path()) {
                logs.push_str(&format!("== {}\n", file.display()));
                logs.push_str(&std::fs::read_to_string(&file).unwrap_or_default());
            }
        }
    }
    logs
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Fetches `http://<address>/` from this machine; the pod name that answered, or the error.
fn fetch(address: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let body = response.split("\r\n\r\n").nth(1).ok_or("no body")?;
    Ok(body.trim().to_owned())
}

/// The pods that answered `count` fetches of `address` (an error fails the caller).
fn answering(address: SocketAddr, count: usize) -> Result<BTreeSet<String>, String> {
    (0..count).map(|_| fetch(address)).collect()
}

/// Asks the cluster DNS for `name` with busybox's nslookup; the addresses it answered.
fn lookup(name: &str) -> Vec<String> {
    let output =
        std::process::Command::new("busybox").args(["nslookup", name, CLUSTER_DNS]).output();
    let Ok(output) = output else { return Vec::new() };
    let text = String::from_utf8_lossy(&output.stdout);
    // The server's own address comes first; answers follow the name.
    text.split(name)
        .nth(1)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Address:"))
        .filter_map(|address| address.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_balance_resolve_and_survive_an_agent_restart() -> anyhow::Result<()> {
    eprintln!("--- start 3 masters and 2 agents");
    let cluster = Cluster::start_with_agents(3, 2)?;
    let server = format!("--server={}", cluster.members[0].api_url()?);
    let s = server.as_str();
    let kubectl = |args: &[&str]| {
        let mut all = vec![s];
        all.extend_from_slice(args);
        cluster.kubectl_output(&all)
    };
    cluster.wait_for_ready_nodes(s, 2).await?;
    let services = kubectl(&["get", "services", "-A"]);
    eprintln!("{services}");
    assert!(services.contains("kubernetes") && services.contains("kube-dns"), "{services}");

    eprintln!("--- kubectl create deployment web + kubectl expose deployment web --port 80");
    stdout_of(&cluster.kubectl(&[
        s,
        "create",
        "deployment",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=3",
        "--",
        "sh",
        "-c",
        SERVE_NAME,
    ])?)?;
    stdout_of(&cluster.kubectl(&[
        s,
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ])?)?;
    stdout_of(&cluster.kubectl(&[s, "rollout", "status", "deployment/web", "--timeout=90s"])?)?;
    let ip = kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let vip: SocketAddr = format!("{ip}:80").parse()?;
    let pods: BTreeSet<String> = kubectl(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .map(|line| line.trim_start_matches("pod/").to_owned())
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");

    eprintln!("--- from the host, connections to {vip} spread over all 3 pods");
    wait_until(Duration::from_secs(20), "every pod answering through the cluster IP", || async {
        answering(vip, 30).map(|seen| seen == pods).unwrap_or(false)
    })
    .await?;

    eprintln!("--- a NodePort Service answers on the node address");
    stdout_of(&cluster.kubectl(&[
        s,
        "expose",
        "deployment",
        "web",
        "--name=web-nodeport",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ])?)?;
    let node_port =
        kubectl(&["get", "service", "web-nodeport", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let node_ip = kubectl(&[
        "get",
        "node",
        "agent-2",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let node_address: SocketAddr = format!("{node_ip}:{node_port}").parse()?;
    wait_until(Duration::from_secs(10), "the node port answering", || async {
        answering(node_address, 10).is_ok_and(|seen| seen.is_subset(&pods) && !seen.is_empty())
    })
    .await?;

    eprintln!("--- the cluster DNS names the Service");
    wait_until(Duration::from_secs(10), "web.default.svc.cluster.local", || async {
        lookup("web.default.svc.cluster.local") == vec![ip.clone()]
    })
    .await?;

    eprintln!("--- from a pod on each node, by name, through the node's DNS and proxy");
    for (name, node, host) in
        [("client-1", "agent-1", "web.default.svc.cluster.local"), ("client-2", "agent-2", "web")]
    {
        stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], &client(name, node, host, 3))?)?;
    }
    wait_until(Duration::from_secs(60), "both clients to succeed", || async {
        let phases = kubectl(&[
            "get",
            "pods",
            "client-1",
            "client-2",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        if phases.contains("Failed") {
            let logs = pod_logs(&cluster, "client-1") + &pod_logs(&cluster, "client-2");
            panic!("a client failed: {phases}\n{logs}");
        }
        phases == "Succeeded Succeeded"
    })
    .await?;

    eprintln!("--- scale to 2: the removed pod gets no new connections");
    stdout_of(&cluster.kubectl(&[s, "scale", "deployment/web", "--replicas=2"])?)?;
    wait_until(Duration::from_secs(30), "two endpoints", || async {
        let addresses = kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ]);
        addresses.split_whitespace().count() == 2
    })
    .await?;
    let remaining: BTreeSet<String> = kubectl(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].targetRef.name}",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect();
    wait_until(Duration::from_secs(5), "only the remaining pods answering", || async {
        answering(vip, 30).is_ok_and(|seen| seen == remaining)
    })
    .await?;
    for _ in 0..3 {
        let seen = answering(vip, 30).map_err(anyhow::Error::msg)?;
        assert_eq!(seen, remaining, "the removed pod got a new connection");
    }

    eprintln!("--- a headless StatefulSet's pod resolves by name; an empty Service refuses");
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], HEADLESS)?)?;
    stdout_of(&cluster.kubectl(&[s, "rollout", "status", "statefulset/db", "--timeout=60s"])?)?;
    let db_ip = kubectl(&["get", "pod", "db-0", "-o", "jsonpath={.status.podIP}"]);
    wait_until(Duration::from_secs(10), "db-0.db resolving", || async {
        lookup("db-0.db.default.svc.cluster.local") == vec![db_ip.clone()]
    })
    .await?;
    let empty = kubectl(&["get", "service", "empty", "-o", "jsonpath={.spec.clusterIP}"]);
    let empty: SocketAddr = format!("{empty}:80").parse()?;
    wait_until(Duration::from_secs(10), "the empty Service refusing at once", || async {
        let started = Instant::now();
        let refused = TcpStream::connect_timeout(&empty, Duration::from_secs(2)).is_err();
        refused && started.elapsed() < Duration::from_millis(100)
    })
    .await?;

    eprintln!("--- restart both agents while a client loops over the Service");
    let looping = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut failures = Vec::new();
        let mut count = 0;
        while Instant::now() < deadline {
            count += 1;
            if let Err(err) = fetch(vip) {
                failures.push(err);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (count, failures)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    for agent in [1, 2] {
        cluster.signal_agent(agent, Signal::SIGKILL)?;
        cluster.restart_agent(agent)?;
    }
    let (count, failures) = looping.await?;
    eprintln!("{count} requests, {} failed", failures.len());
    assert!(count > 50, "the client looped: {count}");
    assert!(failures.is_empty(), "failed connections: {failures:?}");
    eprintln!("--- the restarted agents follow new changes: scale back to 3");
    stdout_of(&cluster.kubectl(&[s, "scale", "deployment/web", "--replicas=3"])?)?;
    stdout_of(&cluster.kubectl(&[s, "rollout", "status", "deployment/web", "--timeout=60s"])?)?;
    wait_until(Duration::from_secs(20), "3 pods answering again", || async {
        answering(vip, 30).map(|seen| seen.len() == 3).unwrap_or(false)
    })
    .await?;
    Ok(())
}
