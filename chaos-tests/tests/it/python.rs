//! The official Python `kubernetes` client (from PyPI) against a 3-master `flotilla up`.

use std::process::Command;

use flotilla_chaos_tests::{stdout_of, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_creates_lists_watches_patches_and_deletes() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster");
    let cluster = Cluster::start(3)?;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kubernetes_client.py");
    eprintln!("--- run {}", script.display());
    let output = Command::new("python3")
        .arg(&script)
        .arg(cluster.kubeconfig())
        .arg(cluster.dir.join("etcd.env"))
        .output()?;
    let stdout = stdout_of(&output)?;
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    Ok(())
}
