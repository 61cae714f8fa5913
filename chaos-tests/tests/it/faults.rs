//! Faults on real master processes: kill -9 of the leader, a paused leader, a full restart, and
//! membership growth and shrinkage under load. Each test is bounded in time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_chaos_tests::{put_retrying, wait_until, Cluster};
use nix::sys::signal::Signal;

/// When a write first failed, and when writes succeeded again after it.
type Outage = (Instant, Option<Instant>);

/// Writes `prefix/<n>` = n in a loop until stopped; records every acknowledged write.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    /// Times at which a write failed, and the time of the next success after each failure.
    outages: Arc<Mutex<Vec<Outage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: etcd_client::Client, prefix: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let outages: Arc<Mutex<Vec<Outage>>> = Arc::default();
        let task = {
            let (stop, acknowledged, outages) =
                (stop.clone(), acknowledged.clone(), outages.clone());
            tokio::spawn(async move {
                let mut client = client;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("{prefix}/{n:06}");
                    let value = n.to_string();
                    let result = tokio::time::timeout(
                        Duration::from_secs(3),
                        client.put(key.as_str(), value.as_str(), None),
                    )
                    .await;
                    let succeeded = matches!(result, Ok(Ok(_)));
                    {
                        let mut outages = outages.lock().expect("outage log");
                        if succeeded {
                            acknowledged.lock().expect("ack log").insert(key, value);
                            if let Some(last) = outages.last_mut() {
                                if last.1.is_none() {
                                    last.1 = Some(Instant::now());
                                }
                            }
                        } else if outages.last().is_none_or(|o| o.1.is_some()) {
                            outages.push((Instant::now(), None));
                        }
                    }
                    if !succeeded {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        };
        Writer { stop, acknowledged, outages, task }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().expect("ack log").len()
    }

    async fn stop(self) -> (BTreeMap<String, String>, Vec<Outage>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let acknowledged = self.acknowledged.lock().expect("ack log").clone();
        let outages = self.outages.lock().expect("outage log").clone();
        (acknowledged, outages)
    }
}

/// Checks that every acknowledged write is readable (linearizable) with its value.
async fn assert_all_present(
    client: &mut etcd_client::Client,
    prefix: &str,
    acknowledged: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let stored = flotilla_chaos_tests::read_prefix(client, prefix).await?;
    for (key, value) in acknowledged {
        assert_eq!(stored.get(key), Some(value), "acknowledged write {key} lost");
    }
    Ok(())
}

async fn wait_for_leader(cluster: &Cluster, except: Option<usize>) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(leader) = cluster.leader().await.filter(|l| Some(*l) != except) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after 10s waiting for a leader");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster and a writer");
    let cluster = Cluster::start(3)?;
    let old_leader = wait_for_leader(&cluster, None).await?;
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != old_leader)
        .map(|i| cluster.members[i].client_url.clone())
        .collect();
    let writer = Writer::start(cluster.client(&survivors).await?, "kill");
    wait_until(Duration::from_secs(10), "100 acknowledged writes", || async {
        writer.count() >= 100
    })
    .await?;

    eprintln!("--- kill -9 the leader ({})", cluster.members[old_leader].name);
    let killed_at = Instant::now();
    cluster.signal(old_leader, Signal::SIGKILL)?;
    let before = writer.count();
    wait_until(Duration::from_secs(10), "writes to resume", || async {
        writer.count() >= before + 100
    })
    .await?;
    let (acknowledged, outages) = writer.stop().await;
    let resumed = outages
        .iter()
        .filter_map(|(_, end)| *end)
        .filter(|end| *end > killed_at)
        .min()
        .map(|end| end - killed_at);
    eprintln!(
        "writes resumed {resumed:?} after the leader was killed ({} outages seen)",
        outages.len()
    );

    eprintln!("--- every acknowledged write is present");
    let new_leader = wait_for_leader(&cluster, Some(old_leader)).await?;
    assert_ne!(new_leader, old_leader);
    let mut client = cluster.client(&survivors).await?;
    assert_all_present(&mut client, "kill/", &acknowledged).await?;

    eprintln!("--- the killed member restarts with its data and catches up");
    cluster.restart(old_leader)?;
    let mut restarted =
        cluster.client(std::slice::from_ref(&cluster.members[old_leader].client_url)).await?;
    wait_until(Duration::from_secs(20), "the restarted member to serve reads", || {
        let mut restarted = restarted.clone();
        async move {
            restarted
                .get("kill/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only()))
                .await
                .is_ok()
        }
    })
    .await?;
    assert_all_present(&mut restarted, "kill/", &acknowledged).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_serves_no_stale_read_and_expires_no_lease() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster, a lease kept alive, and a key");
    let cluster = Cluster::start(3)?;
    let old_leader = wait_for_leader(&cluster, None).await?;
    let others: Vec<String> = (0..3)
        .filter(|i| *i != old_leader)
        .map(|i| cluster.members[i].client_url.clone())
        .collect();
    let mut client = cluster.client(&others).await?;
    put_retrying(&mut client, "stale", "before", None).await?;
    let lease = client.lease_grant(3, None).await?.id();
    put_retrying(
        &mut client,
        "leased",
        "v",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await?;
    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;

    eprintln!(
        "--- SIGSTOP the leader ({}) for longer than the election timeout and the lease TTL",
        cluster.members[old_leader].name
    );
    cluster.signal(old_leader, Signal::SIGSTOP)?;
    let paused = Instant::now();
    wait_until(Duration::from_secs(10), "a new leader", || async {
        cluster.leader().await.is_some_and(|l| l != old_leader)
    })
    .await?;
    let mut written = false;
    while paused.elapsed() < Duration::from_secs(5) {
        if !written {
            written = client.put("stale", "after", None).await.is_ok();
        }
        keeper.keep_alive().await?;
        let _ = tokio::time::timeout(Duration::from_millis(500), responses.message()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(written, "the majority accepted the write");

    eprintln!("--- SIGCONT: the old leader must not serve the old value");
    cluster.signal(old_leader, Signal::SIGCONT)?;
    let mut old =
        cluster.client(std::slice::from_ref(&cluster.members[old_leader].client_url)).await?;
    match old.get("stale", None).await {
        Ok(response) => {
            let value = response
                .kvs()
                .first()
                .and_then(|kv| kv.value_str().ok())
                .unwrap_or_default()
                .to_string();
            assert_eq!(value, "after", "stale read served by the old leader");
        }
        Err(e) => eprintln!("old leader refused the read: {e}"),
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        keeper.keep_alive().await?;
        let _ = tokio::time::timeout(Duration::from_millis(300), responses.message()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ttl = client.lease_time_to_live(lease, None).await?;
    assert!(ttl.ttl() > 0, "the lease was expired although it was kept alive (ttl {})", ttl.ttl());
    let leased = client.get("leased", None).await?;
    assert_eq!(leased.kvs().len(), 1, "the leased key was deleted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_keeps_every_acknowledged_write() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster and write");
    let cluster = Cluster::start(3)?;
    wait_for_leader(&cluster, None).await?;
    let writer = Writer::start(cluster.client(&[]).await?, "restart");
    wait_until(Duration::from_secs(20), "300 acknowledged writes", || async {
        writer.count() >= 300
    })
    .await?;

    eprintln!("--- kill -9 every master while writes are in flight");
    for member in 0..3 {
        cluster.signal(member, Signal::SIGKILL)?;
    }
    let (acknowledged, _) = writer.stop().await;

    eprintln!("--- restart them all");
    for member in 0..3 {
        cluster.restart(member)?;
    }
    wait_for_leader(&cluster, None).await?;
    wait_until(Duration::from_secs(20), "every member to serve again", || async {
        let mut serving = 0;
        for member in &cluster.members {
            let connect = cluster.client(std::slice::from_ref(&member.client_url));
            serving += usize::from(flotilla_chaos_tests::status_within(connect).await.is_some());
        }
        serving == cluster.members.len()
    })
    .await?;
    let mut client = cluster.client(&[]).await?;
    assert_all_present(&mut client, "restart/", &acknowledged).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_and_shrink_back_under_load() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster and a writer");
    let cluster = Cluster::start(3)?;
    wait_for_leader(&cluster, None).await?;
    let writer = Writer::start(cluster.client(&[]).await?, "grow");
    wait_until(Duration::from_secs(10), "50 acknowledged writes", || async {
        writer.count() >= 50
    })
    .await?;

    eprintln!("--- two new masters join through master-1");
    let seed = &cluster.members[0];
    let join = seed.flag("listen-peer-urls")?;
    let mut joined = Vec::new();
    for n in [4, 5] {
        let name = format!("master-{n}");
        let dir = cluster.dir.join(&name);
        std::fs::create_dir_all(&dir)?;
        let peer = flotilla_store::ports::free_local_port()?;
        let client_port = flotilla_store::ports::free_local_port()?;
        let log = std::fs::File::create(dir.join("log"))?;
        let child = std::process::Command::new(flotilla_chaos_tests::flotilla_bin()?)
            .arg("master")
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{client_port}"))
            .arg(format!("--join={join}"))
            .arg(format!("--trusted-ca-file={}", seed.flag("trusted-ca-file")?))
            .arg(format!("--cert-file={}", seed.flag("cert-file")?))
            .arg(format!("--key-file={}", seed.flag("key-file")?))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        joined.push((name, child));
    }
    let mut client = cluster.client(&[]).await?;
    wait_until(Duration::from_secs(30), "5 voting members", || {
        let mut client = client.clone();
        async move {
            match client.member_list().await {
                Ok(list) => {
                    list.members()
                        .iter()
                        .filter(|m| !m.is_learner() && !m.name().is_empty())
                        .count()
                        == 5
                }
                Err(_) => false,
            }
        }
    })
    .await?;
    let before = writer.count();
    wait_until(Duration::from_secs(10), "writes to continue with 5 members", || async {
        writer.count() >= before + 50
    })
    .await?;

    eprintln!("--- remove the two new masters again");
    let members = client.member_list().await?;
    for (name, _) in &joined {
        let id = members
            .members()
            .iter()
            .find(|m| m.name() == name)
            .map(|m| m.id())
            .expect("joined member listed");
        client.member_remove(id).await?;
    }
    for (_, mut child) in joined {
        let _ = child.kill();
        let _ = child.wait();
    }
    let listed = client.member_list().await?;
    assert_eq!(listed.members().len(), 3);
    let before = writer.count();
    wait_until(Duration::from_secs(10), "writes to continue with 3 members", || async {
        writer.count() >= before + 50
    })
    .await?;
    let (acknowledged, _) = writer.stop().await;
    assert_all_present(&mut client, "grow/", &acknowledged).await?;
    Ok(())
}
