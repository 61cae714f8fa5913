//! Node agents on `flotilla up --masters 3 --agents 2`, running real pods in their own
//! containerd: each registers its Node with its own credentials and the machine's capacity and
//! becomes Ready once its runtime and pod network are; a Deployment's pods run with IPs from
//! their node's pod CIDR once their HTTP readiness probes pass; a pod on one node reaches a pod
//! on the other; a ConfigMap change reaches a mounted file; downwardAPI, projected and
//! hostPath-PV-backed claim volumes show the pod, a ConfigMap and the node's directory, and a
//! label change reaches its file; a failing liveness probe restarts its container; a crashing container and a missing image show the reasons kubectl users know;
//! postStart and preStop hooks run around a container; an image loaded with `flotilla image
//! import` runs; every node holds its Lease; an in-cluster Python client reaches the API
//! through the `kubernetes` Service with its service-account token;
//! `kubectl logs`, `exec` (`-i`, `-it`), `cp` and `port-forward` reach containers through
//! their agent; an agent killed while a master is
//! down comes back through another master and keeps its pods, none duplicated; an agent
//! killed for good is found dead through gossip within 3 s and its pods run on the other node
//! within 10 s, and when it comes back it rejoins without duplicating them; and deleting the
//! workloads leaves no container behind.

mod node_features;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};
use nix::sys::signal::Signal;

/// The test image `deploy/install.sh` builds and every agent imports at start.
const IMAGE: &str = "flotilla.local/busybox:1";

fn get(cluster: &Cluster, server: &str, args: &[&str]) -> String {
    let mut all = vec![server];
    all.extend_from_slice(args);
    cluster.kubectl_output(&all)
}

/// The status of `node`'s Ready condition.
fn ready(cluster: &Cluster, server: &str, node: &str) -> String {
    let path = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    get(cluster, server, &["get", "node", node, "-o", path])
}

/// Agent `n`'s containerd socket (its layout: `<data>/containerd/state/containerd.sock`).
fn socket(cluster: &Cluster, n: usize) -> PathBuf {
    cluster.agent_dir(n).join("data/containerd/state/containerd.sock")
}

/// The ids of the pod containers agent `n`'s containerd holds (sandboxes included).
fn containers(cluster: &Cluster, n: usize) -> Vec<String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket(cluster, n))
        .args(["--namespace", "k8s.io", "containers", "ls", "-q"])
        .output();
    match output {
        Ok(output) => {
            String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
        }
        Err(_) => Vec::new(),
    }
}

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: flotilla.local/busybox:1
        command: [httpd, -f, -p, '8080', -h, /var/www]
        ports: [{name: http, containerPort: 8080}]
        env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
";

/// A page served from a ConfigMap volume, and a container whose liveness probe fails.
const PAGE_AND_UNHEALTHY: &str = "
apiVersion: v1
kind: ConfigMap
metadata: {name: page}
data: {index.html: first}
---
apiVersion: v1
kind: Pod
metadata: {name: page}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: www, configMap: {name: page}}]
  containers:
  - name: httpd
    image: flotilla.local/busybox:1
    command: [httpd, -f, -p, '8080', -h, /var/www]
    volumeMounts: [{name: www, mountPath: /var/www}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: flotilla.local/busybox:1
    command: [sleep, '3600']
    livenessProbe: {exec: {command: ['false']}, periodSeconds: 1, failureThreshold: 1}
";

/// A pod reading itself (downwardAPI), a ConfigMap beside its namespace (projected) and a claim
/// bound to a hostPath PersistentVolume at `host_dir`, where its container writes a file.
fn volume_kinds(host_dir: &str) -> String {
    format!(
        "
apiVersion: v1
kind: ConfigMap
metadata: {{name: about}}
data: {{motto: steady}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: scratch}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {{path: '{host_dir}', type: DirectoryOrCreate}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: scratch}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: volumes, labels: {{app: volumes, stage: one}}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: self
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
  - name: merged
    projected:
      sources:
      - configMap: {{name: about}}
      - downwardAPI: {{items: [{{path: namespace, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
  - name: scratch
    persistentVolumeClaim: {{claimName: scratch}}
  containers:
  - name: main
    image: {IMAGE}
    command: [sh, -c, 'echo from-pod > /scratch/written; sleep 3600']
    volumeMounts:
    - {{name: self, mountPath: /self}}
    - {{name: merged, mountPath: /merged}}
    - {{name: scratch, mountPath: /scratch}}
"
    )
}

/// The `volumes` pod sees itself, the ConfigMap and the claim's host directory, and a label
/// change reaches its downward API file while it runs.
async fn volumes_show_the_pod_and_its_claim(
    cluster: &Cluster,
    s: &str,
    host_dir: &std::path::Path,
) -> anyhow::Result<()> {
    stdout_of(&cluster.kubectl(&[
        s,
        "wait",
        "--for=condition=Ready",
        "pod/volumes",
        "--timeout=60s",
    ])?)?;
    let script = "cat /self/name; echo; cat /self/labels; echo; cat /merged/motto; echo; \
                  cat /merged/namespace; echo; ls /merged";
    let seen = stdout_of(&cluster.kubectl(&[s, "exec", "volumes", "--", "sh", "-c", script])?)?;
    assert_eq!(
        seen,
        "volumes\napp=\"volumes\"\nstage=\"one\"\nsteady\ndefault\nmotto\nnamespace\n"
    );
    let written = host_dir.join("written");
    wait_until(Duration::from_secs(10), "the pod's file in the PV's host directory", || async {
        std::fs::read_to_string(&written).is_ok_and(|text| text == "from-pod\n")
    })
    .await?;
    stdout_of(&cluster.kubectl(&[s, "label", "pod", "volumes", "stage=two", "--overwrite"])?)?;
    wait_until(Duration::from_secs(15), "the changed label in the mounted file", || async {
        get(cluster, s, &["exec", "volumes", "--", "cat", "/self/labels"])
            == "app=\"volumes\"\nstage=\"two\""
    })
    .await
}

/// GETs `url` from this machine (pod networks are routed on the host).
async fn fetch(url: &str) -> String {
    let output = tokio::process::Command::new("wget").args(["-q", "-O", "-", url]).output().await;
    output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// A pod pinned to `node` that fetches `url` once; it succeeds only if the page arrives.
fn fetcher(node: &str, url: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: fetch}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: wget
    image: {IMAGE}
    command: [sh, -c, 'wget -q -O - {url} | grep flotilla']
"
    )
}

const CRASHING: &str = "
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - {name: main, image: flotilla.local/busybox:1, command: [sh, -c, 'echo crashing; exit 1']}
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - {name: main, image: 'flotilla.local/absent:1'}
";

/// A pod that prints to both streams, then a line a second.
const TALKER: &str = "
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: flotilla.local/busybox:1
    command: [sh, -c, 'echo one; sleep 1; echo two >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done']
";

/// `kubectl logs` through the masters and the pod's agent: the whole log, `--tail`, `-f`,
/// `--previous`, and kubelet's errors for containers without a log.
async fn logs_are_read_through_the_agent(cluster: &Cluster, s: &str) -> anyhow::Result<()> {
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], TALKER)?)?;
    stdout_of(&cluster.kubectl(&[
        s,
        "wait",
        "--for=condition=Ready",
        "pod/talker",
        "--timeout=60s",
    ])?)?;
    wait_until(Duration::from_secs(10), "two ticks", || async {
        cluster.kubectl_output(&[s, "logs", "talker"]).contains("tick 2\n")
    })
    .await?;
    let all = stdout_of(&cluster.kubectl(&[s, "logs", "talker"])?)?;
    // Each stream keeps its order; the two streams interleave as the runtime read them.
    let ticks: Vec<&str> = all.lines().filter(|l| l.starts_with("tick")).take(2).collect();
    assert!(all.starts_with("one\n") && all.contains("two\n"), "{all}");
    assert_eq!(ticks, ["tick 1", "tick 2"], "{all}");
    let tail = stdout_of(&cluster.kubectl(&[s, "logs", "talker", "--tail=1"])?)?;
    assert!(tail.starts_with("tick ") && tail.lines().count() == 1, "{tail}");
    let stamped =
        stdout_of(&cluster.kubectl(&[s, "logs", "talker", "--timestamps", "--limit-bytes=40"])?)?;
    assert!(stamped.len() == 40 && stamped.contains("Z one"), "{stamped}");
    // -f streams new lines as they are written, until the reader stops.
    let followed = cluster
        .kubectl_command(&[s, "logs", "-f", "talker", "--tail=0", "--request-timeout=0"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(followed.id() as i32), Signal::SIGTERM)?;
    // Stopped by the signal, so its output is read whatever its exit status.
    let followed = String::from_utf8_lossy(&followed.wait_with_output()?.stdout).into_owned();
    assert!(followed.lines().filter(|l| l.starts_with("tick ")).count() >= 2, "{followed:?}");
    assert!(!followed.contains("one"), "--tail=0 starts at the end: {followed:?}");
    let previous = stdout_of(&cluster.kubectl(&[s, "logs", "crash", "--previous"])?)?;
    assert_eq!(previous, "crashing\n");
    let refused = |args: &[&str]| -> anyhow::Result<String> {
        let output = cluster.kubectl(&[&[s, "logs"], args].concat())?;
        assert!(!output.status.success(), "{args:?}");
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let error = refused(&["missing"])?;
    assert!(error.contains("Error from server (BadRequest): container \"main\" in pod \"missing\" is waiting to start"), "{error}");
    let error = refused(&["talker", "-c", "nope"])?;
    assert!(error.contains("container nope is not valid for pod talker"), "{error}");
    let error = refused(&["talker", "--previous"])?;
    assert!(
        error.contains("previous terminated container \"main\" in pod \"talker\" not found"),
        "{error}"
    );
    stdout_of(&cluster.kubectl(&[s, "delete", "pod", "talker", "--wait=false"])?)?;
    Ok(())
}

/// `kubectl exec` (plain, `-i` with stdin to its end, `-it` through a terminal, exit codes),
/// `cp` both ways and `port-forward` to the `page` pod, through the masters and its agent.
async fn streams_reach_the_pod_through_its_agent(cluster: &Cluster, s: &str) -> anyhow::Result<()> {
    let listing = stdout_of(&cluster.kubectl(&[s, "exec", "page", "--", "ls", "/var/www"])?)?;
    assert_eq!(listing, "index.html\n");
    let output = cluster.kubectl(&[s, "exec", "page", "--", "sh", "-c", "exit 3"])?;
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let echoed = stdout_of(
        &cluster.kubectl_input(&[s, "exec", "-i", "page", "--", "wc", "-c"], "twelve bytes")?,
    )?;
    assert_eq!(echoed.trim(), "12", "stdin reaches the command and ends");
    // -it needs a terminal on kubectl's side: script(1) gives it one.
    let server = s.trim_start_matches("--server=");
    let mut terminal = Command::new("script")
        .args(["-qec", &format!("kubectl --server={server} exec -it page -- sh"), "/dev/null"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = terminal.stdin.take() {
        std::io::Write::write_all(&mut stdin, b"echo $((6*7))\nexit 0\n")?;
    }
    let session = stdout_of(&terminal.wait_with_output()?)?;
    assert!(session.contains("42"), "{session:?}");
    let local = std::env::temp_dir().join(format!("flotilla-cp-{}", std::process::id()));
    std::fs::write(&local, "copied\n")?;
    let local_path = local.display().to_string();
    stdout_of(&cluster.kubectl(&[s, "cp", &local_path, "page:/tmp/copied"])?)?;
    let copied = stdout_of(&cluster.kubectl(&[s, "exec", "page", "--", "cat", "/tmp/copied"])?)?;
    assert_eq!(copied, "copied\n");
    std::fs::remove_file(&local)?;
    stdout_of(&cluster.kubectl(&[s, "cp", "page:/tmp/copied", &local_path])?)?;
    assert_eq!(std::fs::read_to_string(&local)?, "copied\n");
    std::fs::remove_file(&local)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut forward = cluster
        .kubectl_command(&[s, "port-forward", "pod/page", &format!("{port}:8080")])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}/");
    let forwarded = wait_until(Duration::from_secs(15), "the forwarded page", || async {
        fetch(&url).await == "second"
    })
    .await;
    forward.kill()?;
    forward.wait()?;
    forwarded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_run_pods_and_survive_a_master_loss() -> anyhow::Result<()> {
    eprintln!("--- start 3 masters and 2 agents");
    let cluster = Cluster::start_with_agents(3, 2)?;
    let first = format!("--server={}", cluster.members[0].api_url()?);
    let s = first.as_str();

    eprintln!("--- both nodes are registered by their agents and become Ready");
    cluster.wait_for_ready_nodes(s, 2).await?;
    let cpus = std::thread::available_parallelism()?.get().to_string();
    for node in ["agent-1", "agent-2"] {
        let capacity = get(&cluster, s, &["get", "node", node, "-o", "jsonpath={.status.capacity.cpu}/{.status.capacity.pods}/{.status.nodeInfo.kubeletVersion}"]);
        assert_eq!(capacity, format!("{cpus}/110/v1.33.0+flotilla.0.1.0"), "{node}");
        let runtime = get(
            &cluster,
            s,
            &["get", "node", node, "-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion}"],
        );
        assert!(runtime.starts_with("containerd://"), "{runtime}");
    }
    eprintln!("{}", get(&cluster, s, &["get", "nodes", "-o", "wide"]));
    wait_until(Duration::from_secs(30), "pod CIDRs and no taints", || async {
        let cidrs = get(&cluster, s, &["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
        let taints =
            get(&cluster, s, &["get", "nodes", "-o", "jsonpath={.items[*].spec.taints[*].key}"]);
        let cidrs: Vec<&str> = cidrs.split_whitespace().collect();
        cidrs.len() == 2 && cidrs[0] != cidrs[1] && taints.is_empty()
    })
    .await?;

    eprintln!("--- a Deployment of 4: every pod Running 1/1 with an IP of its node's pod CIDR");
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], DEPLOYMENT)?)?;
    stdout_of(&cluster.kubectl(&[s, "rollout", "status", "deployment/web", "--timeout=90s"])?)?;
    let table = get(&cluster, s, &["get", "pods", "-l", "app=web", "-o", "wide"]);
    eprintln!("{table}");
    assert_eq!(table.matches("1/1").count(), 4, "{table}");
    assert_eq!(table.matches("Running").count(), 4, "{table}");
    let rows = get(
        &cluster,
        s,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
        ],
    );
    let mut by_node: Vec<(String, String)> = Vec::new();
    for line in rows.lines() {
        let (node, ip) = line.split_once(' ').unwrap_or_default();
        let cidr = get(&cluster, s, &["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
        let prefix = cidr.rsplit_once('.').map(|(net, _)| format!("{net}.")).unwrap_or_default();
        assert!(!prefix.is_empty() && ip.starts_with(&prefix), "{ip} outside {cidr} of {node}");
        by_node.push((node.to_owned(), ip.to_owned()));
    }
    assert_eq!(by_node.len(), 4, "{rows}");

    eprintln!("--- a pod on one node fetches a page from a pod on the other");
    let target = by_node.iter().find(|(node, _)| node == "agent-2").or(by_node.first());
    let (target_node, target_ip) = target.cloned().unwrap_or_default();
    let other = if target_node == "agent-1" { "agent-2" } else { "agent-1" };
    let manifest = fetcher(other, &format!("http://{target_ip}:8080/"));
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], &manifest)?)?;
    wait_until(Duration::from_secs(60), "the fetch to succeed", || async {
        get(&cluster, s, &["get", "pod", "fetch", "-o", "jsonpath={.status.phase}"]) == "Succeeded"
    })
    .await?;

    eprintln!("--- a crashing container restarts with back-off; a missing image is reported");
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], CRASHING)?)?;
    wait_until(Duration::from_secs(60), "crash loop and pull errors", || async {
        let table = get(&cluster, s, &["get", "pods", "crash", "missing"]);
        let restarts = get(
            &cluster,
            s,
            &["get", "pod", "crash", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"],
        );
        restarts.parse::<u32>().is_ok_and(|n| n >= 1)
            && (table.contains("CrashLoopBackOff") || table.contains("Error"))
            && (table.contains("ErrImagePull") || table.contains("ImagePullBackOff"))
    })
    .await?;
    eprintln!("{}", get(&cluster, s, &["get", "pods", "crash", "missing"]));

    eprintln!("--- kubectl logs: whole, --tail, --timestamps, -f, --previous, and refusals");
    logs_are_read_through_the_agent(&cluster, s).await?;

    eprintln!("--- a ConfigMap change reaches the mounted file; a failing liveness probe restarts");
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], PAGE_AND_UNHEALTHY)?)?;
    // Started now so its pod is up by the time it is checked.
    let pv_dir = cluster.agent_dir(1).with_file_name("pv-scratch");
    let volumes_manifest = volume_kinds(&pv_dir.display().to_string());
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], &volumes_manifest)?)?;
    stdout_of(&cluster.kubectl(&[
        s,
        "wait",
        "--for=condition=Ready",
        "pod/page",
        "--timeout=60s",
    ])?)?;
    let ip = get(&cluster, s, &["get", "pod", "page", "-o", "jsonpath={.status.podIP}"]);
    let url = format!("http://{ip}:8080/");
    assert_eq!(fetch(&url).await, "first");
    stdout_of(&cluster.kubectl(&[
        s,
        "patch",
        "configmap",
        "page",
        "-p",
        r#"{"data":{"index.html":"second"}}"#,
    ])?)?;
    wait_until(Duration::from_secs(30), "the changed page", || async {
        fetch(&url).await == "second"
    })
    .await?;
    eprintln!("--- downwardAPI, projected and PVC volumes; a label change reaches the file");
    volumes_show_the_pod_and_its_claim(&cluster, s, &pv_dir).await?;
    eprintln!("--- postStart and preStop hooks; images from `flotilla image import`; node leases");
    let hooks_dir = cluster.agent_dir(1).with_file_name("hooks-scratch");
    node_features::hooks_run_around_the_container(&cluster, s, &hooks_dir).await?;
    node_features::imported_images_run(&cluster, s).await?;
    node_features::nodes_hold_their_leases(&cluster, s);
    eprintln!("--- an in-cluster client reaches the API through the kubernetes Service");
    node_features::in_cluster_clients_reach_the_api(&cluster, s).await?;
    eprintln!("--- kubectl exec, exec -i, exec -it, cp and port-forward through the agent");
    streams_reach_the_pod_through_its_agent(&cluster, s).await?;
    wait_until(Duration::from_secs(60), "a liveness restart", || async {
        let restarts = get(
            &cluster,
            s,
            &[
                "get",
                "pod",
                "unhealthy",
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
        );
        restarts.parse::<u32>().is_ok_and(|n| n >= 1)
    })
    .await?;
    let events = get(
        &cluster,
        s,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=unhealthy,reason=Unhealthy",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(events.contains("Liveness probe failed"), "{events}");

    eprintln!("--- kill -9 master-1 and agent-1; the restarted agent keeps its pods");
    let before_uid =
        get(&cluster, s, &["get", "node", "agent-1", "-o", "jsonpath={.metadata.uid}"]);
    let web_containers = |server: &str| {
        get(
            &cluster,
            server,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "--field-selector",
                "spec.nodeName=agent-1",
                "-o",
                "jsonpath={.items[*].status.containerStatuses[*].containerID}",
            ],
        )
    };
    let before = web_containers(s);
    let sandboxes_before = containers(&cluster, 1).len();
    cluster.signal(0, Signal::SIGKILL)?;
    cluster.signal_agent(1, Signal::SIGKILL)?;
    cluster.restart_agent(1)?;
    let second = format!("--server={}", cluster.members[1].api_url()?);
    let s = second.as_str();
    let log = cluster.agent_dir(1).join("log");
    wait_until(Duration::from_secs(30), "the agent taking its node over", || async {
        std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains("the node was registered before"))
    })
    .await?;
    let after_uid = get(&cluster, s, &["get", "node", "agent-1", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(before_uid, after_uid, "the same Node, not a new one");
    // A few relists later the same containers run: none restarted, none started twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(web_containers(s), before, "the Deployment's containers on agent-1");
    let table = get(&cluster, s, &["get", "pods", "-l", "app=web"]);
    assert_eq!(table.matches("Running").count(), 4, "{table}");
    let sandboxes_after = containers(&cluster, 1).len();
    // Only the crash-looping pod may have changed what agent-1 holds, by one instance.
    assert!(
        sandboxes_after.abs_diff(sandboxes_before) <= 1,
        "containers on agent-1: {sandboxes_before} before, {sandboxes_after} after"
    );

    eprintln!(
        "--- kill -9 agent-2: NotReady within 3 s, its web pods Running on agent-1 within 10 s"
    );
    let killed = Instant::now();
    cluster.signal_agent(2, Signal::SIGKILL)?;
    wait_until(Duration::from_secs(10), "agent-2 not Ready", || async {
        ready(&cluster, s, "agent-2") == "Unknown"
    })
    .await?;
    let not_ready_after = killed.elapsed();
    let live_web_on_agent_1 = || async {
        let path = "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.spec.nodeName}={.metadata.deletionTimestamp}{\"\\n\"}{end}";
        let pods = get(&cluster, s, &["get", "pods", "-l", "app=web", "-o", path]);
        pods.lines().filter(|line| *line == "agent-1=").count()
    };
    wait_until(Duration::from_secs(30), "4 web pods Running on agent-1", || async {
        live_web_on_agent_1().await == 4
    })
    .await?;
    let moved_after = killed.elapsed();
    eprintln!("agent-2 killed: NotReady after {not_ready_after:?}, its pods Running on agent-1 after {moved_after:?}");
    let taints =
        get(&cluster, s, &["get", "node", "agent-2", "-o", "jsonpath={.spec.taints[*].key}"]);
    assert!(taints.contains("node.kubernetes.io/unreachable"), "{taints}");
    assert!(not_ready_after <= Duration::from_secs(3), "NotReady after {not_ready_after:?}");
    assert!(moved_after <= Duration::from_secs(10), "pods moved after {moved_after:?}");

    eprintln!("--- restart agent-2: Ready again, the evicted pods gone, none duplicated");
    cluster.restart_agent(2)?;
    wait_until(Duration::from_secs(30), "agent-2 Ready again", || async {
        ready(&cluster, s, "agent-2") == "True"
    })
    .await?;
    wait_until(Duration::from_secs(30), "the evicted pods confirmed gone", || async {
        let nodes = get(
            &cluster,
            s,
            &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"],
        );
        nodes.split_whitespace().all(|n| n == "agent-1")
    })
    .await?;
    assert_eq!(live_web_on_agent_1().await, 4, "still exactly 4 web pods");
    let taints =
        get(&cluster, s, &["get", "node", "agent-2", "-o", "jsonpath={.spec.taints[*].key}"]);
    assert!(!taints.contains("node.kubernetes.io/unreachable"), "{taints}");

    eprintln!("--- deleting everything leaves no container in either containerd");
    stdout_of(&cluster.kubectl(&[s, "delete", "deployment", "web"])?)?;
    // Bare pods agent-2 ran were evicted with it.
    stdout_of(&cluster.kubectl(&[
        s,
        "delete",
        "--ignore-not-found",
        "pod",
        "fetch",
        "crash",
        "missing",
        "page",
        "unhealthy",
        "volumes",
        "badhook",
        "imported",
        "incluster",
        "--wait=false",
    ])?)?;
    let outcome = wait_until(Duration::from_secs(60), "no containers and no pods", || async {
        let pods = get(&cluster, s, &["get", "pods", "-o", "name"]);
        pods.is_empty() && containers(&cluster, 1).is_empty() && containers(&cluster, 2).is_empty()
    })
    .await;
    if outcome.is_err() {
        eprintln!("{}", get(&cluster, s, &["get", "pods", "-o", "wide"]));
        for n in [1, 2] {
            for id in containers(&cluster, n) {
                let info = Command::new("ctr")
                    .arg("--address")
                    .arg(socket(&cluster, n))
                    .args(["--namespace", "k8s.io", "containers", "info", &id])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let pod = info.lines().find(|l| l.contains("io.kubernetes.pod.name")).unwrap_or("");
                eprintln!("agent-{n} still holds {id}: {}", pod.trim());
            }
            let log = std::fs::read_to_string(cluster.agent_dir(n).join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("agent-{n} log (newest first):\n{}", tail.join("\n"));
        }
    }
    // A panic, not an error, so the cluster's directory is kept for inspection.
    assert!(outcome.is_ok(), "{outcome:?}");
    Ok(())
}
