//! Workload controllers end to end with the real kubectl on `flotilla up --masters 3`, with
//! Node objects registered by the test and a stand-in kubelet reporting their pods running:
//! a Deployment of 20 spread over the nodes within their capacity, rolled out (bounds counted
//! all along), rolled back, scaled to 0 and back; Services get EndpointSlices and Endpoints;
//! a StatefulSet starts web-0, web-1, web-2 in order; Jobs complete; a CronJob fires on
//! schedule; a DaemonSet runs on every untainted node; a tainted node gets only pods that
//! tolerate it; a claim binds to a volume, and a `WaitForFirstConsumer` one waits for its pod
//! and gets the volume that fits on the pod's node; each namespace gets its default
//! ServiceAccount; deletions follow each propagation policy. A second test kills the controller
//! lease holder during a rollout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_chaos_tests::bench::{is_ready, Connection, Dialer};
use flotilla_chaos_tests::kubelet::FakeKubelet;
use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};
use nix::sys::signal::Signal;
use serde_json::Value;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const TAINTED: &str = "node-gpu";
const REPLICAS: i64 = 20;
/// 25% of 20, rounded up for surge and down for unavailability (both give 5 here).
const MAX_SURGE: i64 = 5;
const MAX_UNAVAILABLE: i64 = 5;

fn node_manifest(name: &str, taint: bool) -> String {
    let taints = if taint {
        "\nspec:\n  taints: [{key: dedicated, value: gpu, effect: NoSchedule}]"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}}}}}{taints}\nstatus:\n  capacity: {{cpu: '4', memory: 8Gi, pods: '110'}}\n  allocatable: {{cpu: '4', memory: 8Gi, pods: '110'}}\n  conditions: [{{type: Ready, status: 'True'}}]\n"
    )
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 20
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        ports: [{name: http, containerPort: 8080}]
        resources: {requests: {cpu: 250m, memory: 128Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
";

const STATEFUL_SET: &str = "apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: main, image: busybox:1.36}]
";

const DAEMON_SET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: main, image: busybox:1.36}]
";

const VOLUME: &str = "apiVersion: v1
kind: PersistentVolume
metadata: {name: disk-1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ''
  hostPath: {path: /tmp/disk-1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ''
  resources: {requests: {storage: 500Mi}}
";

/// A `WaitForFirstConsumer` class, a 1Gi volume reachable from node-1 only, a 5Gi one from
/// node-2 only, and a 2Gi claim of the class: only the 5Gi volume fits it.
const WFC_STORAGE: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-wfc}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: wfc-small}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-wfc
  local: {path: /mnt/wfc-small}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-1]}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: wfc-big}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-wfc
  local: {path: /mnt/wfc-big}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-2]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: wfc-data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-wfc
  resources: {requests: {storage: 2Gi}}
";

/// The node `wfc-big` is pinned to.
const WFC_BIG_NODE: &str = NODES[1];

/// The first consumer of `wfc-data`.
const WFC_CONSUMER: &str = "apiVersion: v1
kind: Pod
metadata: {name: wfc-consumer}
spec:
  containers:
  - name: main
    image: busybox:1.36
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: wfc-data}}]
";

/// A 10Gi claim of the `WaitForFirstConsumer` class, which no volume fits, and its consumer.
const WFC_STARVED: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: wfc-none}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-wfc
  resources: {requests: {storage: 10Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: wfc-starved}
spec:
  containers:
  - name: main
    image: busybox:1.36
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: wfc-none}}]
";

/// Runs kubectl and returns its output, failing with its stderr.
fn kubectl(cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    stdout_of(&cluster.kubectl(args)?)
}

/// Applies a manifest given as text.
fn apply(cluster: &Cluster, server: &str, manifest: &str) -> anyhow::Result<String> {
    stdout_of(&cluster.kubectl_input(&[server, "apply", "-f", "-"], manifest)?)
}

/// The controller manager's lease.
const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/flotilla-controller-manager";

/// What the rollout monitor saw: the most pods of the app at once and the fewest ready ones.
#[derive(Debug, Clone, Default)]
struct Bounds {
    most_pods: i64,
    fewest_ready: i64,
    samples: u64,
    /// The sample with the fewest ready pods: the list's resourceVersion and, per
    /// pod-template-hash, ready/all pods not being deleted.
    fewest_ready_sample: String,
}

/// Samples the `app=web` pods every 20 ms until dropped, counting pods not being deleted and
/// those among them that are Ready.
struct Monitor {
    bounds: Arc<Mutex<Bounds>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    fn start(connection: Connection) -> Monitor {
        let bounds = Arc::new(Mutex::new(Bounds { fewest_ready: i64::MAX, ..Bounds::default() }));
        let shared = bounds.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = connection
                    .get_json("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
                    .await
                {
                    let pods: Vec<&Value> = list["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                        .collect();
                    let ready = pods.iter().filter(|p| is_ready(p)).count() as i64;
                    let fewer = shared.lock().is_ok_and(|b| ready < b.fewest_ready);
                    // Which controller manager acted, for a failure to explain itself.
                    let lease = if fewer {
                        connection.get_json(LEASE_PATH).await.unwrap_or_default()
                    } else {
                        Value::Null
                    };
                    if let Ok(mut b) = shared.lock() {
                        b.most_pods = b.most_pods.max(pods.len() as i64);
                        if ready < b.fewest_ready {
                            b.fewest_ready = ready;
                            b.fewest_ready_sample = format!(
                                "{} lease {}/{} transitions",
                                describe_sample(&list, &pods),
                                lease["spec"]["holderIdentity"].as_str().unwrap_or("?"),
                                lease["spec"]["leaseTransitions"]
                            );
                        }
                        b.samples += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Monitor { bounds, task }
    }

    fn stop(self) -> Bounds {
        self.task.abort();
        self.bounds.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// `rv=N hash:ready/all ...` for a pod list sample.
fn describe_sample(list: &Value, pods: &[&Value]) -> String {
    let mut per_hash: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for pod in pods {
        let hash = pod["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or("-");
        let entry = per_hash.entry(hash.to_owned()).or_default();
        entry.0 += usize::from(is_ready(pod));
        entry.1 += 1;
    }
    let mut text = format!("rv={}", list["metadata"]["resourceVersion"].as_str().unwrap_or("?"));
    for (hash, (ready, all)) in per_hash {
        text.push_str(&format!(" {hash}:{ready}/{all}"));
    }
    text
}

/// Pods per node of the pods labelled `selector`, excluding those being deleted.
fn pods_per_node(cluster: &Cluster, server: &str, selector: &str) -> BTreeMap<String, usize> {
    let text = cluster.kubectl_output(&[
        server,
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName}={.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        if let Some(node) = line.strip_suffix('=') {
            *counts.entry(node.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

async fn register_nodes(cluster: &Cluster, server: &str) -> anyhow::Result<()> {
    let mut manifest = String::new();
    for node in NODES {
        manifest.push_str(&node_manifest(node, false));
        manifest.push_str("---\n");
    }
    manifest.push_str(&node_manifest(TAINTED, true));
    stdout_of(&cluster.kubectl_input(&[server, "create", "-f", "-"], &manifest)?)?;
    Ok(())
}

/// Waits for `kubectl rollout status` of `what` to succeed; on failure, shows the objects.
fn rollout_status(cluster: &Cluster, server: &str, what: &str) -> anyhow::Result<String> {
    let outcome = kubectl(cluster, &[server, "rollout", "status", what, "--timeout=90s"]);
    if outcome.is_err() {
        eprintln!("{}", cluster.kubectl_output(&[server, "get", what, "-o", "yaml"]));
        eprintln!(
            "{}",
            cluster.kubectl_output(&[server, "get", "pods,rs,controllerrevisions", "-o", "wide"])
        );
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_roll_out_order_complete_and_place_as_kubernetes_does() -> anyhow::Result<()> {
    eprintln!(
        "--- start a 3-master cluster, register 4 nodes (one tainted), start the stand-in kubelet"
    );
    let cluster = Cluster::start(3)?;
    let server = format!("--server={}", cluster.members[0].api_url()?);
    let s = server.as_str();
    let dialer = Dialer::ready(&cluster).await?;
    register_nodes(&cluster, s).await?;
    let mut all_nodes: Vec<&str> = NODES.to_vec();
    all_nodes.push(TAINTED);
    let masters = cluster.api_addresses()?;
    let _kubelet = FakeKubelet::start(dialer.connect(0).await?, &all_nodes, &masters).await?;

    eprintln!("--- a CronJob every minute (checked at the end: it fires while the rest runs)");
    kubectl(
        &cluster,
        &[
            s,
            "create",
            "cronjob",
            "tick",
            "--image=busybox:1.36",
            "--schedule=*/1 * * * *",
            "--",
            "date",
        ],
    )?;

    eprintln!("--- a Deployment of 20: every pod bound within the nodes' capacity, none on the tainted node");
    apply(&cluster, s, DEPLOYMENT)?;
    rollout_status(&cluster, s, "deployment/web")?;
    let placed = pods_per_node(&cluster, s, "app=web");
    assert_eq!(placed.values().sum::<usize>(), REPLICAS as usize, "{placed:?}");
    assert!(!placed.contains_key(TAINTED), "a pod landed on the tainted node: {placed:?}");
    // 4 cpu per node at 250m a pod: 16 at most on one node.
    assert!(placed.values().all(|n| *n <= 16), "{placed:?}");
    assert!(placed.len() >= 2, "pods spread over the nodes: {placed:?}");

    eprintln!("--- the Service gets an EndpointSlice and Endpoints with all 20 ready pods");
    wait_until(Duration::from_secs(30), "20 endpoints", || async {
        let slice = cluster.kubectl_output(&[s, "get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{\" \"}{end}"]);
        let endpoints = cluster.kubectl_output(&[s, "get", "endpoints", "web", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
        slice.split_whitespace().count() == 20 && endpoints.split_whitespace().count() == 20
    })
    .await?;
    let port = kubectl(
        &cluster,
        &[
            s,
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].ports[0].port}",
        ],
    )?;
    assert_eq!(port, "8080", "the named targetPort resolves to the container port");

    eprintln!("--- a new image rolls out within maxSurge and maxUnavailable, counted all along");
    let monitor = Monitor::start(dialer.connect(1).await?);
    kubectl(&cluster, &[s, "set", "image", "deployment/web", "main=busybox:1.37"])?;
    rollout_status(&cluster, s, "deployment/web")?;
    let bounds = monitor.stop();
    eprintln!(
        "rollout: at most {} pods, at least {} ready ({} samples; fewest: {})",
        bounds.most_pods, bounds.fewest_ready, bounds.samples, bounds.fewest_ready_sample
    );
    assert!(bounds.samples > 10, "the monitor sampled the rollout: {bounds:?}");
    assert!(bounds.most_pods <= REPLICAS + MAX_SURGE, "more than replicas + maxSurge: {bounds:?}");
    assert!(
        bounds.fewest_ready >= REPLICAS - MAX_UNAVAILABLE,
        "fewer than replicas - maxUnavailable ready: {bounds:?}"
    );
    let images = cluster.kubectl_output(&[
        s,
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(images.split_whitespace().all(|i| i == "busybox:1.37"), "{images}");

    eprintln!("--- rollout undo brings the first template back as revision 3");
    kubectl(&cluster, &[s, "rollout", "undo", "deployment/web"])?;
    rollout_status(&cluster, s, "deployment/web")?;
    let image = kubectl(
        &cluster,
        &[
            s,
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )?;
    assert_eq!(image, "busybox:1.36");
    let history = kubectl(&cluster, &[s, "rollout", "history", "deployment/web"])?;
    assert!(
        history.contains("2 ") && history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );

    eprintln!("--- scale to 0 and back to 20");
    kubectl(&cluster, &[s, "scale", "deployment/web", "--replicas=0"])?;
    wait_until(Duration::from_secs(30), "no pods", || async {
        pods_per_node(&cluster, s, "app=web").is_empty()
    })
    .await?;
    kubectl(&cluster, &[s, "scale", "deployment/web", "--replicas=20"])?;
    rollout_status(&cluster, s, "deployment/web")?;

    eprintln!(
        "--- a StatefulSet starts db-0, db-1, db-2 in order, each after the previous is ready"
    );
    let order: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let watcher = {
        let order = order.clone();
        let connection = dialer.connect(2).await?;
        tokio::spawn(async move {
            loop {
                if let Ok(list) = connection
                    .get_json("/api/v1/namespaces/default/pods?labelSelector=app%3Ddb")
                    .await
                {
                    let items: Vec<&Value> =
                        list["items"].as_array().into_iter().flatten().collect();
                    let ready = items.iter().filter(|p| is_ready(p)).count();
                    if let Ok(mut seen) = order.lock() {
                        for pod in &items {
                            let name =
                                pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
                            if !seen.iter().any(|(n, _)| *n == name) {
                                // How many pods were ready when this one first appeared.
                                seen.push((name, ready));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    apply(&cluster, s, STATEFUL_SET)?;
    rollout_status(&cluster, s, "statefulset/db")?;
    watcher.abort();
    let seen = order.lock().map(|o| o.clone()).unwrap_or_default();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["db-0", "db-1", "db-2"], "{seen:?}");
    assert!(
        seen.iter().enumerate().all(|(i, (_, ready))| *ready >= i),
        "each waits for the previous: {seen:?}"
    );
    let hostname = kubectl(
        &cluster,
        &[s, "get", "pod", "db-1", "-o", "jsonpath={.spec.hostname}.{.spec.subdomain}"],
    )?;
    assert_eq!(hostname, "db-1.db");

    eprintln!("--- a Job completes");
    kubectl(&cluster, &[s, "create", "job", "once", "--image=busybox:1.36", "--", "true"])?;
    kubectl(&cluster, &[s, "wait", "--for=condition=complete", "job/once", "--timeout=60s"])?;
    let succeeded =
        kubectl(&cluster, &[s, "get", "job", "once", "-o", "jsonpath={.status.succeeded}"])?;
    assert_eq!(succeeded, "1");

    eprintln!("--- a DaemonSet runs one pod on each untainted node");
    apply(&cluster, s, DAEMON_SET)?;
    rollout_status(&cluster, s, "daemonset/agent")?;
    let daemons = pods_per_node(&cluster, s, "app=agent");
    let expected: BTreeMap<String, usize> = NODES.iter().map(|n| (n.to_string(), 1)).collect();
    assert_eq!(daemons, expected);

    eprintln!(
        "--- the tainted node takes a pod that tolerates its taint, and refuses one that does not"
    );
    let pinned = |name: &str, tolerate: bool| {
        let toleration = if tolerate {
            r#","tolerations":[{"key":"dedicated","operator":"Equal","value":"gpu","effect":"NoSchedule"}]"#
        } else {
            ""
        };
        format!(
            r#"{{"spec":{{"nodeSelector":{{"kubernetes.io/hostname":"{TAINTED}"}},"containers":[{{"name":"{name}","image":"busybox:1.36"}}]{toleration}}}}}"#
        )
    };
    kubectl(
        &cluster,
        &[s, "run", "tolerant", "--image=busybox:1.36", "--overrides", &pinned("tolerant", true)],
    )?;
    kubectl(
        &cluster,
        &[
            s,
            "run",
            "intolerant",
            "--image=busybox:1.36",
            "--overrides",
            &pinned("intolerant", false),
        ],
    )?;
    kubectl(&cluster, &[s, "wait", "--for=condition=Ready", "pod/tolerant", "--timeout=30s"])?;
    wait_until(Duration::from_secs(30), "FailedScheduling for the intolerant pod", || async {
        cluster
            .kubectl_output(&[
                s,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=intolerant,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .contains("1 node(s) had untolerated taint {dedicated: gpu}")
    })
    .await?;
    let node =
        kubectl(&cluster, &[s, "get", "pod", "intolerant", "-o", "jsonpath={.spec.nodeName}"])?;
    assert_eq!(node, "");

    eprintln!("--- a claim binds to a matching volume");
    apply(&cluster, s, VOLUME)?;
    wait_until(Duration::from_secs(30), "the claim bound", || async {
        cluster.kubectl_output(&[
            s,
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.status.phase}/{.spec.volumeName}",
        ]) == "Bound/disk-1"
    })
    .await?;
    let volume = kubectl(
        &cluster,
        &[s, "get", "pv", "disk-1", "-o", "jsonpath={.status.phase}/{.spec.claimRef.name}"],
    )?;
    assert_eq!(volume, "Bound/data");

    eprintln!("--- a WaitForFirstConsumer claim waits for its pod and follows it");
    apply(&cluster, s, WFC_STORAGE)?;
    // The PersistentVolume controller has looked at the claim and chose to wait.
    wait_until(Duration::from_secs(30), "WaitForFirstConsumer for wfc-data", || async {
        cluster
            .kubectl_output(&[
                s,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=wfc-data,reason=WaitForFirstConsumer",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .contains("waiting for first consumer to be created before binding")
    })
    .await?;
    let claim = kubectl(
        &cluster,
        &[s, "get", "pvc", "wfc-data", "-o", "jsonpath={.status.phase}/{.spec.volumeName}"],
    )?;
    assert_eq!(claim, "Pending/", "no pod uses the claim yet");
    let volumes = kubectl(
        &cluster,
        &[
            s,
            "get",
            "pv",
            "wfc-small",
            "wfc-big",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.claimRef.name}{\" \"}{end}",
        ],
    )?;
    assert_eq!(volumes.trim(), "wfc-small= wfc-big=", "no volume is claimed yet");
    apply(&cluster, s, WFC_CONSUMER)?;
    wait_until(Duration::from_secs(30), "wfc-consumer bound to a node", || async {
        !cluster
            .kubectl_output(&[s, "get", "pod", "wfc-consumer", "-o", "jsonpath={.spec.nodeName}"])
            .trim()
            .is_empty()
    })
    .await?;
    let node =
        kubectl(&cluster, &[s, "get", "pod", "wfc-consumer", "-o", "jsonpath={.spec.nodeName}"])?;
    assert_eq!(node, WFC_BIG_NODE, "the only node that reaches a volume that fits");
    let claim = kubectl(
        &cluster,
        &[
            s,
            "get",
            "pvc",
            "wfc-data",
            "-o",
            "jsonpath={.status.phase}/{.spec.volumeName}/{.status.capacity.storage}/{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}/{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}/{.metadata.uid}",
        ],
    )?;
    let (claim, uid) = claim.rsplit_once('/').unwrap_or_default();
    assert_eq!(claim, "Bound/wfc-big/5Gi/yes/", "the claim is bound before its pod, pre-bound");
    let volume = kubectl(
        &cluster,
        &[
            s,
            "get",
            "pv",
            "wfc-big",
            "-o",
            "jsonpath={.status.phase}/{.spec.claimRef.namespace}/{.spec.claimRef.name}/{.spec.claimRef.uid}/{.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}",
        ],
    )?;
    assert_eq!(volume, format!("Bound/default/wfc-data/{uid}/yes"));
    let small = kubectl(
        &cluster,
        &[s, "get", "pv", "wfc-small", "-o", "jsonpath={.status.phase}/{.spec.claimRef.name}"],
    )?;
    assert_eq!(small, "Available/", "the volume that does not fit stays free");
    apply(&cluster, s, WFC_STARVED)?;
    wait_until(Duration::from_secs(30), "FailedScheduling for wfc-starved", || async {
        cluster
            .kubectl_output(&[
                s,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=wfc-starved,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .contains("3 node(s) didn't find available persistent volumes to bind")
    })
    .await?;
    let node =
        kubectl(&cluster, &[s, "get", "pod", "wfc-starved", "-o", "jsonpath={.spec.nodeName}"])?;
    assert_eq!(node, "");
    let claim = kubectl(
        &cluster,
        &[s, "get", "pvc", "wfc-none", "-o", "jsonpath={.status.phase}/{.spec.volumeName}"],
    )?;
    assert_eq!(claim, "Pending/");

    eprintln!("--- a new namespace gets its default ServiceAccount");
    kubectl(&cluster, &[s, "create", "namespace", "team"])?;
    wait_until(Duration::from_secs(30), "the default service account", || async {
        cluster
            .kubectl_output(&[s, "get", "serviceaccount", "default", "-n", "team", "-o", "name"])
            .trim()
            == "serviceaccount/default"
    })
    .await?;

    eprintln!("--- the CronJob fired on schedule and its Job completed");
    wait_until(Duration::from_secs(90), "a completed Job of the CronJob", || async {
        cluster.kubectl_output(&[s, "get", "jobs", "-o", "jsonpath={range .items[?(@.metadata.ownerReferences[0].name==\"tick\")]}{.status.succeeded}{\" \"}{end}"])
            .split_whitespace()
            .any(|n| n == "1")
    })
    .await?;
    let scheduled = kubectl(&cluster, &[s, "get", "jobs", "-o", "jsonpath={.items[?(@.metadata.ownerReferences[0].name==\"tick\")].metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}"])?;
    assert!(scheduled.contains(":00"), "scheduled on a minute boundary: {scheduled}");
    let last = kubectl(
        &cluster,
        &[s, "get", "cronjob", "tick", "-o", "jsonpath={.status.lastScheduleTime}"],
    )?;
    assert!(last.ends_with(":00Z"), "{last}");

    eprintln!("--- deletion: foreground waits for the dependents, orphan keeps them, background collects them");
    kubectl(
        &cluster,
        &[s, "delete", "statefulset", "db", "--cascade=foreground", "--timeout=60s"],
    )?;
    assert!(pods_per_node(&cluster, s, "app=db").is_empty(), "foreground deletion left pods");
    kubectl(&cluster, &[s, "delete", "daemonset", "agent", "--cascade=orphan"])?;
    let orphans = pods_per_node(&cluster, s, "app=agent");
    assert_eq!(orphans.values().sum::<usize>(), 3, "orphaned daemon pods remain");
    kubectl(&cluster, &[s, "delete", "deployment", "web"])?;
    wait_until(
        Duration::from_secs(30),
        "the Deployment's ReplicaSets and pods collected",
        || async {
            cluster
                .kubectl_output(&[s, "get", "rs,pods", "-l", "app=web", "-o", "name"])
                .trim()
                .is_empty()
        },
    )
    .await?;
    let owners: BTreeSet<String> = cluster
        .kubectl_output(&[
            s,
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences[*].kind}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(owners.is_empty(), "orphans have no owner: {owners:?}");
    Ok(())
}

/// The `spec.replicas` of each ReplicaSet of the web Deployment, by name.
async fn replica_set_sizes(connection: &Connection) -> BTreeMap<String, i64> {
    let Ok(list) = connection
        .get_json("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dweb")
        .await
    else {
        return BTreeMap::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rs| {
            let name = rs["metadata"]["name"].as_str().unwrap_or_default().to_string();
            (name, rs["spec"]["replicas"].as_i64().unwrap_or(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_the_kill_of_the_controller_lease_holder() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster, nodes, the stand-in kubelet, a Deployment of 20");
    let cluster = Cluster::start(3)?;
    let first = format!("--server={}", cluster.members[0].api_url()?);
    wait_until(Duration::from_secs(20), "a lease holder", || async {
        cluster.lease_holder(&first).is_some()
    })
    .await?;
    let holder = cluster.lease_holder(&first).ok_or_else(|| anyhow::anyhow!("no lease holder"))?;
    let victim = cluster.lease_holder_member(&holder)?;
    // Everything the test does goes through a master that survives.
    let survivor = (victim + 1) % cluster.members.len();
    let server = format!("--server={}", cluster.members[survivor].api_url()?);
    let s = server.as_str();
    let dialer = Dialer::ready(&cluster).await?;
    register_nodes(&cluster, s).await?;
    let masters = cluster.api_addresses()?;
    let _kubelet = FakeKubelet::start(dialer.connect(survivor).await?, &NODES, &masters).await?;
    apply(&cluster, s, DEPLOYMENT)?;
    rollout_status(&cluster, s, "deployment/web")?;

    eprintln!("--- start a rollout, then kill -9 the lease holder in the middle of it");
    let monitor = Monitor::start(dialer.connect(survivor).await?);
    let sizes_seen: Arc<Mutex<Vec<BTreeMap<String, i64>>>> = Arc::default();
    let sampler = {
        let sizes_seen = sizes_seen.clone();
        let connection = dialer.connect(survivor).await?;
        tokio::spawn(async move {
            loop {
                let sizes = replica_set_sizes(&connection).await;
                if let Ok(mut seen) = sizes_seen.lock() {
                    seen.push(sizes);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // minReadySeconds slows the rollout down so the kill lands in the middle of it.
    let patch = r#"{"spec":{"minReadySeconds":2,"template":{"spec":{"containers":[{"name":"main","image":"busybox:1.37"}]}}}}"#;
    kubectl(&cluster, &[s, "patch", "deployment", "web", "-p", patch])?;
    let probe = dialer.connect(survivor).await?;
    wait_until(Duration::from_secs(30), "the rollout under way", || async {
        replica_set_sizes(&probe).await.values().filter(|n| **n > 0).count() >= 2
    })
    .await?;
    let killed = Instant::now();
    cluster.signal(victim, Signal::SIGKILL)?;
    wait_until(Duration::from_secs(20), "a new lease holder", || async {
        cluster.lease_holder(s).is_some_and(|h| h != holder)
    })
    .await?;
    let takeover = killed.elapsed();
    eprintln!("takeover after {:.2} s", takeover.as_secs_f64());
    rollout_status(&cluster, s, "deployment/web")?;
    sampler.abort();
    let bounds = monitor.stop();

    eprintln!(
        "--- the rollout completed within its bounds; no ReplicaSet ever exceeded the Deployment"
    );
    eprintln!(
        "rollout across the failover: at most {} pods, at least {} ready ({} samples; fewest: {})",
        bounds.most_pods, bounds.fewest_ready, bounds.samples, bounds.fewest_ready_sample
    );
    assert!(bounds.most_pods <= REPLICAS + MAX_SURGE, "{bounds:?}");
    assert!(bounds.fewest_ready >= REPLICAS - MAX_UNAVAILABLE, "{bounds:?}");
    let seen = sizes_seen.lock().map(|s| s.clone()).unwrap_or_default();
    for sizes in &seen {
        assert!(
            sizes.values().all(|n| *n <= REPLICAS),
            "a ReplicaSet beyond the replicas: {sizes:?}"
        );
        assert!(
            sizes.values().sum::<i64>() <= REPLICAS + MAX_SURGE,
            "beyond replicas + maxSurge: {sizes:?}"
        );
    }
    let images = cluster.kubectl_output(&[
        s,
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        images.split_whitespace().filter(|i| *i == "busybox:1.37").count(),
        REPLICAS as usize,
        "{images}"
    );
    assert!(takeover < Duration::from_secs(5), "takeover took {takeover:?}");
    Ok(())
}
