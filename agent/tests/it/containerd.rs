//! The node's containerd on the real containerd, runc, CNI plugins, iptables and cgroups: it
//! starts in a fresh layout, outlives an agent restart, restarts for a changed configuration,
//! imports the offline images, takes a pod network, and `reset` removes every trace of a
//! node's pods while keeping its images.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use flotilla_agent::containerd::{
    self, Containerd, ContainerdError, Layout, Tools, CRI_NAMESPACE, DEFAULT_IMAGES_DIR,
    DEFAULT_PAUSE_IMAGE,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

const TEST_IMAGE: &str = "flotilla.local/busybox:1";
const POD_CIDR: &str = "10.251.0.0/24";

/// A node's layout in a temporary directory, reset when dropped (however the test ended),
/// before the directory goes.
struct TestNode {
    layout: Layout,
    dir: tempfile::TempDir,
}

impl TestNode {
    fn new() -> Result<TestNode> {
        let dir = tempfile::Builder::new().prefix("flotilla-it-").tempdir()?;
        // Unique per test: bridges, networks and cgroups are machine-wide.
        static NODES: AtomicU32 = AtomicU32::new(0);
        let node = format!("it-{}-{}", std::process::id(), NODES.fetch_add(1, Ordering::Relaxed));
        let layout = Layout::new(dir.path(), &node)?;
        Ok(TestNode { layout, dir })
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let layout = self.layout.clone();
        // Dropped inside the test's runtime, which cannot be blocked on: reset on its own.
        let reset = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(containerd::reset(&layout)).map_err(anyhow::Error::from)
        });
        match reset.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cleaning up the test node failed: {err:#}"),
            Err(_) => eprintln!("cleaning up the test node panicked"),
        }
    }
}

/// The images `deploy/install.sh` builds.
fn images_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(
        std::env::var_os("FLOTILLA_IMAGES_DIR").unwrap_or_else(|| DEFAULT_IMAGES_DIR.into()),
    );
    for archive in ["pause.tar", "busybox.tar"] {
        ensure!(
            dir.join(archive).is_file(),
            "{} is missing: run deploy/install.sh (it builds the offline images)",
            dir.join(archive).display()
        );
    }
    Ok(dir)
}

fn tools() -> Result<Tools> {
    Tools::find().context("this test runs the real containerd")
}

async fn command(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program).args(args).output().await.context(program.to_string())?;
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn ctr(socket: &Path, args: &[&str]) -> Result<String> {
    let socket = socket.to_str().context("socket path")?;
    let mut all = vec!["--address", socket, "--namespace", CRI_NAMESPACE];
    all.extend_from_slice(args);
    command("ctr", &all).await
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Polls `condition` every 50 ms for at most `timeout`.
async fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The directories of `cgroup` in every mounted hierarchy (v1 controllers, v2).
fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split_once(" - "))
        .filter(|(_, after)| after.starts_with("cgroup ") || after.starts_with("cgroup2 "))
        .filter_map(|(before, _)| before.split(' ').nth(4))
        .map(|mount_point| Path::new(mount_point).join(cgroup.trim_start_matches('/')))
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_containerd_starts_is_reused_imports_images_and_resets() -> Result<()> {
    let images = images_dir()?;
    let tools = tools()?;
    let node = TestNode::new()?;
    let layout = &node.layout;

    eprintln!("--- start containerd in a fresh layout");
    let containerd = Containerd::start(layout, &tools, DEFAULT_PAUSE_IMAGE).await?;
    let first_pid = containerd.pid();
    assert_eq!(containerd.socket(), layout.socket());
    assert_eq!(std::fs::read_to_string(layout.pid_file())?.trim(), first_pid.to_string());
    let group = nix::unistd::getpgid(Some(Pid::from_raw(first_pid as i32)))?;
    assert_eq!(group.as_raw() as u32, first_pid, "in its own process group, away from Ctrl-C");
    let version =
        command("ctr", &["--address", layout.socket().to_str().context("utf-8")?, "version"])
            .await?;
    assert!(version.contains("Server:"), "{version}");

    eprintln!("--- import the offline images: a directory, again, one file, none, a broken one");
    let imported = containerd.import(&images).await?;
    for image in [DEFAULT_PAUSE_IMAGE, TEST_IMAGE] {
        assert!(imported.iter().any(|name| name == image), "{image} not in {imported:?}");
    }
    let listed = ctr(&layout.socket(), &["images", "ls", "-q"]).await?;
    for image in [DEFAULT_PAUSE_IMAGE, TEST_IMAGE] {
        assert!(listed.lines().any(|line| line == image), "{image} not listed:\n{listed}");
    }
    assert_eq!(containerd.import(&images).await?, imported, "importing again changes nothing");
    let single = containerd.import(&images.join("pause.tar")).await?;
    assert_eq!(single, [DEFAULT_PAUSE_IMAGE], "one archive given by its path");
    let missing = node.dir.path().join("no-images");
    assert!(containerd.import(&missing).await?.is_empty(), "a missing directory imports nothing");
    let bad = node.dir.path().join("bad-images");
    std::fs::create_dir_all(&bad)?;
    std::fs::write(bad.join("broken.tar"), b"not a tar archive")?;
    let error = containerd.import(&bad).await.expect_err("a broken archive");
    assert!(
        matches!(&error, ContainerdError::Import { file, .. } if file.ends_with("broken.tar")),
        "{error}"
    );

    eprintln!("--- write the pod network, once");
    assert!(containerd::write_cni(layout, POD_CIDR).await?, "written");
    assert!(!containerd::write_cni(layout, POD_CIDR).await?, "unchanged, not written again");
    let conflist: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout.cni_conflist())?)?;
    assert_eq!(conflist["plugins"][0]["bridge"], layout.bridge());
    assert_eq!(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], POD_CIDR);
    assert!(containerd::write_cni(layout, "10.251.0.1/24").await.is_err(), "host bits set");

    eprintln!("--- a container in a pod cgroup of the node, as the agent will run them");
    let pod_cgroup = format!("{}/podit", layout.cgroup_parent());
    let container_cgroup = format!("{pod_cgroup}/c1");
    ctr(
        &layout.socket(),
        &["run", "-d", "--cgroup", &container_cgroup, TEST_IMAGE, "it-c1", "sleep", "3600"],
    )
    .await?;
    let tasks = ctr(&layout.socket(), &["tasks", "ls"]).await?;
    let task_pid: u32 = tasks
        .lines()
        .find(|line| line.starts_with("it-c1 "))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|pid| pid.parse().ok())
        .with_context(|| format!("it-c1 in\n{tasks}"))?;
    assert!(cgroup_dirs(&container_cgroup).iter().any(|dir| dir.exists()), "runc made the cgroup");

    eprintln!("--- an agent restart reuses the running containerd; the container keeps running");
    drop(containerd);
    let containerd = Containerd::start(layout, &tools, DEFAULT_PAUSE_IMAGE).await?;
    assert_eq!(containerd.pid(), first_pid, "the same process");
    assert!(alive(task_pid));

    eprintln!("--- a changed configuration restarts containerd; the container keeps running");
    let containerd = Containerd::start(layout, &tools, TEST_IMAGE).await?;
    let second_pid = containerd.pid();
    assert_ne!(second_pid, first_pid);
    assert!(!alive(first_pid), "the old containerd stopped");
    assert!(std::fs::read_to_string(layout.config())?
        .contains(&format!("sandbox_image = \"{TEST_IMAGE}\"")));
    assert!(alive(task_pid));

    eprintln!(
        "--- containerd killed behind the agent's back: the agent learns it and starts another"
    );
    let mut containerd = containerd;
    kill(Pid::from_raw(second_pid as i32), Signal::SIGKILL)?;
    let status = tokio::time::timeout(Duration::from_secs(10), containerd.exited())
        .await
        .context("containerd's exit is reported")?;
    assert_eq!(status.and_then(|status| status.signal()), Some(Signal::SIGKILL as i32));
    let containerd = Containerd::start(layout, &tools, TEST_IMAGE).await?;
    let second_pid = containerd.pid();
    assert!(alive(task_pid));

    eprintln!("--- stop: containerd exits, the container keeps running under its shim");
    containerd.stop().await;
    assert!(!alive(second_pid));
    assert!(tokio::net::UnixStream::connect(layout.socket()).await.is_err(), "nothing answers");
    assert!(alive(task_pid));

    eprintln!(
        "--- leave what skipping CNI DEL leaves: a lease, nat rules, the bridge, a netns mount"
    );
    let lease_dir = layout.cni_data_dir().join("networks").join(layout.network());
    std::fs::create_dir_all(&lease_dir)?;
    std::fs::write(lease_dir.join("10.251.0.2"), "it-sandbox\neth0")?;
    let chain = format!("CNI-it{:x}", std::process::id());
    let comment = format!("name: \"{}\" id: \"it-sandbox\"", layout.network());
    let nat_rule = |rule: &str, target: &str| {
        let mut args: Vec<String> = rule.split(' ').map(String::from).collect();
        args.extend(["-m", "comment", "--comment", &comment, "-j", target].map(String::from));
        args
    };
    for args in [
        vec!["-w".to_string(), "-t".into(), "nat".into(), "-N".into(), chain.clone()],
        nat_rule(&format!("-w -t nat -A {chain}"), "MASQUERADE"),
        nat_rule("-w -t nat -A POSTROUTING -s 10.251.0.2/32", &chain),
    ] {
        command("iptables", &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    }
    command("ip", &["link", "add", layout.bridge(), "type", "bridge"]).await?;
    let netns = layout.state().join("netns/cni-it");
    std::fs::create_dir_all(&netns)?;
    command("mount", &["-t", "tmpfs", "tmpfs", netns.to_str().context("utf-8")?]).await?;

    eprintln!("--- and a process in a pod cgroup that containerd does not know");
    let stray_cgroup = format!("{}/podstray", layout.cgroup_parent());
    let mut stray = Command::new("sleep").arg("3600").kill_on_drop(true).spawn()?;
    let stray_pid = stray.id().context("the stray process's pid")?;
    for dir in cgroup_dirs(&stray_cgroup) {
        std::fs::create_dir_all(&dir)?;
        // A new v1 cpuset cgroup has no CPUs or memory nodes to run on until given its parent's.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Some(parent) = dir.parent().filter(|parent| parent.join(file).exists()) {
                std::fs::write(dir.join(file), std::fs::read_to_string(parent.join(file))?)?;
            }
        }
        std::fs::write(dir.join("cgroup.procs"), stray_pid.to_string())
            .with_context(|| format!("moving {stray_pid} into {}", dir.display()))?;
    }

    eprintln!(
        "--- reset with containerd stopped: it starts it to delete its containers, then cleans"
    );
    containerd::reset(layout).await?;
    wait_until(Duration::from_secs(10), "the container's process to exit", || !alive(task_pid))
        .await?;
    assert!(stray.try_wait()?.is_some(), "the stray process was killed");
    assert!(
        process_ids_named("containerd").iter().all(|&pid| !is_of(pid, layout)),
        "containerd stopped"
    );
    for dir in cgroup_dirs(&layout.cgroup_parent()) {
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert!(!lease_dir.exists(), "leases left");
    let nat = command("iptables-save", &["-t", "nat"]).await?;
    assert!(!nat.contains(&chain) && !nat.contains(layout.network()), "nat rules left:\n{nat}");
    assert!(!Path::new("/sys/class/net").join(layout.bridge()).exists(), "bridge left");
    assert_eq!(mounts_under(layout.base()), Vec::<String>::new(), "mounts left");
    assert!(!layout.state().exists(), "state left");

    eprintln!("--- reset again: nothing left to do");
    containerd::reset(layout).await?;

    eprintln!("--- start after reset: the images are kept, no container is");
    let containerd = Containerd::start(layout, &tools, DEFAULT_PAUSE_IMAGE).await?;
    let pid = containerd.pid();
    let listed = ctr(&layout.socket(), &["images", "ls", "-q"]).await?;
    assert!(listed.lines().any(|line| line == TEST_IMAGE), "{listed}");
    assert_eq!(ctr(&layout.socket(), &["containers", "ls", "-q"]).await?.trim(), "");

    eprintln!("--- reset with containerd running stops it");
    drop(containerd);
    containerd::reset(layout).await?;
    assert!(!alive(pid));
    Ok(())
}

/// Pids of the processes whose command is `name`.
fn process_ids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// Whether process `pid` runs with `layout`'s configuration.
fn is_of(pid: u32, layout: &Layout) -> bool {
    let config = layout.config();
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline.split(|&b| b == 0).any(|arg| arg == config.as_os_str().as_encoded_bytes())
    })
}

/// A `containerd` that only writes a line and exits.
fn failing_containerd(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let script = bin.join("containerd");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'level=fatal msg=\"bad configuration\"' >&2\nexit 3\n",
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

#[tokio::test]
async fn a_containerd_that_exits_at_start_fails_with_its_log() -> Result<()> {
    let node = TestNode::new()?;
    let tools = Tools { containerd: failing_containerd(node.dir.path())?, ..tools()? };
    let error = Containerd::start(&node.layout, &tools, DEFAULT_PAUSE_IMAGE)
        .await
        .expect_err("containerd exits");
    assert!(matches!(error, ContainerdError::Exited { .. }), "{error}");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(
        message.contains("exit status: 3") && message.contains("bad configuration"),
        "{message}"
    );
    assert!(!node.layout.pid_file().exists(), "no pid file for the next start to trust");
    Ok(())
}

#[tokio::test]
async fn a_socket_served_by_another_process_is_not_taken_over() -> Result<()> {
    let node = TestNode::new()?;
    std::fs::create_dir_all(node.layout.state())?;
    let _listener = tokio::net::UnixListener::bind(node.layout.socket())?;
    let error = Containerd::start(&node.layout, &tools()?, DEFAULT_PAUSE_IMAGE)
        .await
        .expect_err("the socket is taken");
    assert!(matches!(error, ContainerdError::SocketInUse { .. }), "{error}");
    Ok(())
}
