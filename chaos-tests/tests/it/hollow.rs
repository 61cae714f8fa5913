//! Hollow nodes on `flotilla up --masters 1 --hollow-nodes 3`: the simulated nodes register
//! with their own runtime name and become Ready once they have pod CIDRs; a pod scheduled to
//! one of them goes Running and READY 1/1 (its exec readiness probe passing through the
//! in-memory runtime) with an address of its node's pod CIDR, and is removed when deleted.

use std::time::Duration;

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};

/// A pod for `hollow-2` with an exec readiness probe, which the hollow runtime answers.
const POD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  nodeSelector: {kubernetes.io/hostname: hollow-2}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: flotilla.local/busybox:1
    command: [sleep, '3600']
    readinessProbe: {exec: {command: ['true']}, periodSeconds: 1}
";

/// `kubectl get <what> -o jsonpath=<path>` through `server`; empty when it fails.
fn get(cluster: &Cluster, server: &str, what: &[&str], path: &str) -> String {
    let mut args = vec![server, "get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &path]);
    cluster.kubectl_output(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_and_run_pods() -> anyhow::Result<()> {
    eprintln!("--- start a master with three hollow nodes");
    let cluster = Cluster::start_with_hollow_nodes(1, 3)?;
    let server = format!("--server={}", cluster.members[0].api_url()?);

    eprintln!("--- the three nodes become Ready, each with its own pod CIDR");
    cluster.wait_for_ready_nodes(&server, 3).await?;
    let runtimes =
        get(&cluster, &server, &["nodes"], "{.items[*].status.nodeInfo.containerRuntimeVersion}");
    let runtimes: Vec<&str> = runtimes.split_whitespace().collect();
    assert_eq!(runtimes.len(), 3, "{runtimes:?}");
    assert!(runtimes.iter().all(|r| r.starts_with("hollow://")), "{runtimes:?}");
    let cidr = get(&cluster, &server, &["node", "hollow-2"], "{.spec.podCIDR}");
    let (network, _) = cidr.rsplit_once('.').ok_or_else(|| anyhow::anyhow!("pod CIDR {cidr:?}"))?;
    let network = network.to_string();

    eprintln!("--- a pod on hollow-2 goes Running and READY 1/1 with an address of its CIDR");
    let manifest = cluster.dir.join("pod.yaml");
    std::fs::write(&manifest, POD)?;
    stdout_of(&cluster.kubectl(&[&server, "apply", "-f", &manifest.display().to_string()])?)?;
    let pod = ["pod", "probe"];
    wait_until(Duration::from_secs(20), "the pod Running and ready", || async {
        let state = get(
            &cluster,
            &server,
            &pod,
            "{.status.phase} {.status.containerStatuses[0].ready} {.spec.nodeName}",
        );
        state == "Running true hollow-2"
    })
    .await?;
    let ip = get(&cluster, &server, &pod, "{.status.podIP}");
    assert!(ip.starts_with(&format!("{network}.")), "pod IP {ip} is outside {cidr}");
    let ready = get(&cluster, &server, &pod, "{.status.conditions[?(@.type==\"Ready\")].status}");
    assert_eq!(ready, "True");

    eprintln!("--- deleted, the pod is gone within its grace period");
    stdout_of(&cluster.kubectl(&[&server, "delete", "pod", "probe", "--wait=false"])?)?;
    wait_until(Duration::from_secs(10), "the pod removed", || async {
        let found = cluster.kubectl(&[&server, "get", "pod", "probe", "-o", "name"]);
        found.is_ok_and(|output| !output.status.success())
    })
    .await?;
    Ok(())
}
