//! What a node does besides running containers, checked on the running cluster: lifecycle
//! hooks, images loaded with `flotilla image import`, the node's Lease, and in-cluster API
//! clients reaching the masters through the `kubernetes` Service with their service-account
//! token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_chaos_tests::{flotilla_bin, stdout_of, wait_until, Cluster};

use super::{get, IMAGE};

/// A container whose hooks and TERM handler append to a file on the host, and one whose
/// postStart hook fails.
fn hooked_pods(dir: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: app
    image: {IMAGE}
    command: ["sh", "-c", "trap 'echo TERM >> /out/log; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo postStart >> /out/log"]}}}}
      preStop: {{exec: {{command: ["sh", "-c", "echo preStop >> /out/log"]}}}}
  volumes: [{{name: out, hostPath: {{path: {dir}, type: DirectoryOrCreate}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: badhook}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    command: ["sleep", "3600"]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "exit 3"]}}}}
"#
    )
}

/// postStart runs before the container counts as started; preStop runs before TERM on
/// deletion; a failing postStart is reported and the container killed.
pub async fn hooks_run_around_the_container(
    cluster: &Cluster,
    s: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let manifest = hooked_pods(&dir.display().to_string());
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], &manifest)?)?;
    stdout_of(&cluster.kubectl(&[
        s,
        "wait",
        "--for=condition=Ready",
        "pod/hooks",
        "--timeout=60s",
    ])?)?;
    let log = dir.join("log");
    assert_eq!(std::fs::read_to_string(&log)?, "postStart\n");
    stdout_of(&cluster.kubectl(&[s, "delete", "pod", "hooks", "--timeout=30s"])?)?;
    assert_eq!(std::fs::read_to_string(&log)?, "postStart\npreStop\nTERM\n");
    wait_until(Duration::from_secs(30), "a FailedPostStartHook event", || async {
        let events = get(
            cluster,
            s,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=badhook,reason=FailedPostStartHook",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        events.contains("Exec lifecycle hook ([sh -c exit 3]) for Container \"app\"")
    })
    .await?;
    stdout_of(&cluster.kubectl(&[s, "delete", "pod", "badhook", "--wait=false"])?)?;
    Ok(())
}

/// An archive built here, loaded into every agent by `flotilla image import --dir`, runs as a
/// pod without any pull.
pub async fn imported_images_run(cluster: &Cluster, s: &str) -> anyhow::Result<()> {
    let work = cluster.dir.join("imported-image");
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let builder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build_oci.py");
    let archive = work.join("imported.tar");
    let built = Command::new("python3")
        .arg(&builder)
        .args(["--rootfs", &rootfs.display().to_string()])
        .args(["--name", "flotilla.local/imported:1", "--out", &archive.display().to_string()])
        .args(["--cmd", r#"["sh", "-c", "echo imported image runs; sleep 3600"]"#])
        .output()?;
    stdout_of(&built)?;
    let imported = Command::new(flotilla_bin()?)
        .args(["image", "import", "--dir", &cluster.dir.display().to_string()])
        .arg(&archive)
        .output()?;
    let said = stdout_of(&imported)?;
    assert_eq!(
        said,
        "agent-1: imported flotilla.local/imported:1\nagent-2: imported flotilla.local/imported:1\n"
    );
    let run = [
        s,
        "run",
        "imported",
        "--image=flotilla.local/imported:1",
        "--image-pull-policy=Never",
        "--restart=Never",
    ];
    stdout_of(&cluster.kubectl(&run)?)?;
    wait_until(Duration::from_secs(30), "the imported image's output", || async {
        get(cluster, s, &["logs", "imported"]).trim() == "imported image runs"
    })
    .await?;
    stdout_of(&cluster.kubectl(&[s, "delete", "pod", "imported", "--wait=false"])?)?;
    Ok(())
}

/// Every agent holds its node's Lease, as `kubectl describe node` shows it.
pub fn nodes_hold_their_leases(cluster: &Cluster, s: &str) {
    for node in ["agent-1", "agent-2"] {
        let holder = get(
            cluster,
            s,
            &[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                node,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        assert_eq!(holder, node);
        let described = get(cluster, s, &["describe", "node", node]);
        assert!(described.contains(&format!("HolderIdentity:  {node}")), "{described}");
    }
}

/// A pod running the host's Python Kubernetes client with `load_incluster_config()`: the
/// client verifies the masters with the mounted CA through the `kubernetes` Service and is
/// known by its service account, which RBAC gives no right to list pods.
fn in_cluster_client_pod() -> anyhow::Result<String> {
    let probe = Command::new("python3")
        .args(["-c", "import sys, os, kubernetes; print(sys.executable); print(sys.prefix); print(os.path.dirname(os.path.dirname(kubernetes.__file__)))"])
        .output()?;
    let lines: Vec<String> = stdout_of(&probe)?.lines().map(str::to_owned).collect();
    let [python, prefix, packages] = lines.as_slice() else {
        anyhow::bail!("python3 did not say where it is: {lines:?}");
    };
    // The host's /usr (and so its libc) replaces the image's; the Python installation and
    // its packages are mounted where they are on the host.
    let mut mounts = vec![
        ("usr", "/usr", "/usr"),
        ("lib", "/usr/lib", "/lib"),
        ("lib64", "/usr/lib64", "/lib64"),
    ];
    for (name, dir) in [("prefix", prefix), ("packages", packages)] {
        if !dir.starts_with("/usr/") && dir != "/usr" {
            mounts.push((name, dir.as_str(), dir.as_str()));
        }
    }
    let script = "from kubernetes import client, config\\nconfig.load_incluster_config()\\ntry:\\n  client.CoreV1Api().list_namespaced_pod('default')\\nexcept client.ApiException as e:\\n  print(e.status, e.reason)\\n  print(e.body)";
    let mut manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: incluster}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: client\n    image: {IMAGE}\n    command: [\"{python}\", \"-c\", \"{script}\"]\n    env: [{{name: PYTHONPATH, value: \"{packages}\"}}]\n    volumeMounts:\n"
    );
    for (name, _, at) in &mounts {
        manifest
            .push_str(&format!("    - {{name: {name}, mountPath: \"{at}\", readOnly: true}}\n"));
    }
    manifest.push_str("  volumes:\n");
    for (name, host, _) in &mounts {
        manifest.push_str(&format!("  - {{name: {name}, hostPath: {{path: \"{host}\"}}}}\n"));
    }
    Ok(manifest)
}

pub async fn in_cluster_clients_reach_the_api(cluster: &Cluster, s: &str) -> anyhow::Result<()> {
    let manifest = in_cluster_client_pod()?;
    stdout_of(&cluster.kubectl_input(&[s, "apply", "-f", "-"], &manifest)?)?;
    wait_until(Duration::from_secs(60), "the in-cluster client to finish", || async {
        let phase = get(cluster, s, &["get", "pod", "incluster", "-o", "jsonpath={.status.phase}"]);
        phase == "Succeeded" || phase == "Failed"
    })
    .await?;
    let said = get(cluster, s, &["logs", "incluster"]);
    assert!(said.starts_with("403 Forbidden"), "{said}");
    assert!(
        said.contains(
            r#"User \"system:serviceaccount:default:default\" cannot list resource \"pods\""#
        ) || said.contains(
            r#"User "system:serviceaccount:default:default" cannot list resource "pods""#
        ),
        "{said}"
    );
    stdout_of(&cluster.kubectl(&[s, "delete", "pod", "incluster", "--wait=false"])?)?;
    Ok(())
}
