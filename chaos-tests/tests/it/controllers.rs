//! Leased controllers on `flotilla up --masters 3`: the lease shows who acts; ReplicaSets keep
//! their pods, the scheduler binds them to registered nodes (and reports what fits nowhere),
//! a Deployment rolls out within maxSurge, the garbage collector follows deletions, and a
//! killed lease holder's work moves to another master.

use std::time::{Duration, Instant};

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};
use nix::sys::signal::Signal;

const REPLICA_SET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox:1.36
";

/// The names of the ReplicaSet's pods that are not being deleted, through `server`.
fn active_pods(cluster: &Cluster, server: &str) -> Vec<String> {
    let output = cluster.kubectl(&[
        server,
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[?(@.metadata.ownerReferences[0].kind==\"ReplicaSet\")]}{.metadata.name}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let text = output.ok().and_then(|o| stdout_of(&o).ok()).unwrap_or_default();
    text.lines()
        .filter(|line| line.split_whitespace().count() == 1)
        .map(|line| line.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_keep_replicas_schedule_roll_out_collect_and_fail_over() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster");
    let cluster = Cluster::start(3)?;
    let first = format!("--server={}", cluster.members[0].api_url()?);

    eprintln!("--- one master holds the controller lease");
    wait_until(Duration::from_secs(20), "a lease holder", || async {
        cluster.lease_holder(&first).is_some()
    })
    .await?;

    eprintln!("--- a ReplicaSet of 3 gets 3 pods");
    let manifest = cluster.dir.join("replicaset.yaml");
    std::fs::write(&manifest, REPLICA_SET)?;
    stdout_of(&cluster.kubectl(&[&first, "apply", "-f", &manifest.display().to_string()])?)?;
    wait_until(Duration::from_secs(30), "3 pods", || async {
        active_pods(&cluster, &first).len() == 3
    })
    .await?;
    let ready = stdout_of(&cluster.kubectl(&[
        &first,
        "get",
        "rs",
        "web",
        "-o",
        "jsonpath={.status.replicas}",
    ])?)?;
    wait_until(Duration::from_secs(10), "status.replicas 3", || async {
        cluster
            .kubectl(&[&first, "get", "rs", "web", "-o", "jsonpath={.status.replicas}"])
            .ok()
            .and_then(|o| stdout_of(&o).ok())
            .is_some_and(|replicas| replicas == "3")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e} (was {ready:?})"))?;

    eprintln!("--- nodes registered: the scheduler binds the pods; a pod too big for any node is reported");
    let nodes = cluster.dir.join("nodes.yaml");
    let node = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}}}}}\nstatus:\n  capacity: {{cpu: '4', memory: 8Gi, pods: '110'}}\n  allocatable: {{cpu: '4', memory: 8Gi, pods: '110'}}\n  conditions: [{{type: Ready, status: 'True'}}]\n"
        )
    };
    std::fs::write(&nodes, format!("{}---\n{}", node("node-a"), node("node-b")))?;
    stdout_of(&cluster.kubectl(&[&first, "create", "-f", &nodes.display().to_string()])?)?;
    let bound = || {
        cluster
            .kubectl(&[
                &first,
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName}{\" \"}{end}",
            ])
            .ok()
            .and_then(|o| stdout_of(&o).ok())
            .map(|text| text.split_whitespace().filter(|n| n.starts_with("node-")).count())
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(30), "3 pods bound to nodes", || async { bound() == 3 }).await?;
    stdout_of(&cluster.kubectl(&[&first, "run", "huge", "--image=busybox", "--overrides", r#"{"spec":{"containers":[{"name":"huge","image":"busybox","resources":{"requests":{"cpu":"100"}}}]}}"#])?)?;
    wait_until(Duration::from_secs(30), "a FailedScheduling event", || async {
        cluster
            .kubectl(&[
                &first,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=huge,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .ok()
            .and_then(|o| stdout_of(&o).ok())
            .is_some_and(|message| {
                message.starts_with("0/2 nodes are available: 2 Insufficient cpu.")
            })
    })
    .await?;

    eprintln!("--- scaled to 1, two pods go");
    stdout_of(&cluster.kubectl(&[&first, "scale", "rs", "web", "--replicas=1"])?)?;
    wait_until(Duration::from_secs(30), "1 pod", || async {
        active_pods(&cluster, &first).len() == 1
    })
    .await?;

    eprintln!("--- a Deployment gets a ReplicaSet; a new image starts a rollout within maxSurge");
    stdout_of(&cluster.kubectl(&[
        &first,
        "create",
        "deployment",
        "api",
        "--image=busybox:1.36",
        "--replicas=4",
    ])?)?;
    let replica_sets = || {
        cluster
            .kubectl(&[
                &first,
                "get",
                "rs",
                "-l",
                "app=api",
                "-o",
                "jsonpath={range .items[*]}{.spec.replicas}{\" \"}{end}",
            ])
            .ok()
            .and_then(|o| stdout_of(&o).ok())
            .map(|text| {
                text.split_whitespace().filter_map(|n| n.parse::<i64>().ok()).collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(30), "one ReplicaSet of 4", || async { replica_sets() == [4] })
        .await?;
    stdout_of(&cluster.kubectl(&[
        &first,
        "set",
        "image",
        "deployment/api",
        "busybox=busybox:1.37",
    ])?)?;
    wait_until(Duration::from_secs(30), "a second ReplicaSet", || async {
        replica_sets().len() == 2
    })
    .await?;
    // 25% of 4: at most one pod over the desired count, whatever moment is looked at.
    let total: i64 = replica_sets().iter().sum();
    assert!(total <= 5, "rollout exceeded replicas + maxSurge: {total}");
    let history =
        stdout_of(&cluster.kubectl(&[&first, "rollout", "history", "deployment/api"])?)?;
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");

    eprintln!("--- kill -9 the lease holder; another master takes over and keeps reconciling");
    let holder = cluster.lease_holder(&first).ok_or_else(|| anyhow::anyhow!("no holder"))?;
    let victim = cluster.lease_holder_member(&holder)?;
    let survivor = (victim + 1) % cluster.members.len();
    let server = format!("--server={}", cluster.members[survivor].api_url()?);
    let killed = Instant::now();
    cluster.signal(victim, Signal::SIGKILL)?;
    wait_until(Duration::from_secs(20), "a new lease holder", || async {
        cluster.lease_holder(&server).is_some_and(|h| h != holder)
    })
    .await?;
    eprintln!("takeover after {:.2} s", killed.elapsed().as_secs_f64());
    stdout_of(&cluster.kubectl(&[&server, "scale", "rs", "web", "--replicas=4"])?)?;
    wait_until(Duration::from_secs(30), "4 pods after the failover", || async {
        active_pods(&cluster, &server).len() == 4
    })
    .await?;

    eprintln!("--- deleting with --cascade=orphan keeps the pods, without their owner");
    stdout_of(&cluster.kubectl(&[&server, "delete", "rs", "web", "--cascade=orphan"])?)?;
    wait_until(Duration::from_secs(30), "4 orphaned pods", || async {
        let owners = cluster
            .kubectl(&[&server, "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences[*].kind}{\" \"}{end}"])
            .ok()
            .and_then(|o| stdout_of(&o).ok())
            .unwrap_or_default();
        owners.split_whitespace().filter(|entry| entry.ends_with('=')).count() >= 4
            && !owners.contains("=ReplicaSet")
    })
    .await?;

    eprintln!("--- deleting a Deployment (background) takes its ReplicaSets with it");
    stdout_of(&cluster.kubectl(&[&server, "delete", "deployment", "api"])?)?;
    wait_until(Duration::from_secs(30), "no ReplicaSets of the deleted Deployment", || async {
        cluster
            .kubectl(&[&server, "get", "rs", "-l", "app=api", "-o", "name"])
            .ok()
            .and_then(|o| stdout_of(&o).ok())
            .is_some_and(|names| names.trim().is_empty())
    })
    .await?;
    Ok(())
}
