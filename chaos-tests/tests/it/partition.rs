//! A partitioned leader: three masters, each in its own network namespace; the leader's link
//! goes down. The other two elect a new leader and keep acknowledging writes; the isolated
//! member still answers serializable reads from its replica but refuses linearizable reads and
//! writes; once the link is back it catches up before answering a linearizable read.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_chaos_tests::netns::NetnsCluster;
use flotilla_chaos_tests::{stdout_of, wait_until};

/// The key whose value the majority changes while the leader is isolated.
const KEY: &str = "partition/key";
/// The key the isolated member is asked to write.
const REFUSED_KEY: &str = "partition/refused";
/// etcdctl's `--command-timeout` for requests to the isolated member: the store's own
/// request timeout is 5 s, so a refusal must come within this.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(7);

/// Writes `prefix/<n>` = n through one client until stopped; records every acknowledged write.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(mut client: etcd_client::Client, prefix: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let task = {
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (key, value) = (format!("{prefix}/{n:06}"), n.to_string());
                    let put = client.put(key.as_str(), value.as_str(), None);
                    match tokio::time::timeout(Duration::from_secs(3), put).await {
                        Ok(Ok(_)) => {
                            acknowledged.lock().expect("ack log").insert(key, value);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        };
        Writer { stop, acknowledged, task }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().expect("ack log").len()
    }

    async fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let acknowledged = self.acknowledged.lock().expect("ack log").clone();
        acknowledged
    }
}

/// Returns the value of `key` read through `client` with the given options.
async fn value_of(
    client: &mut etcd_client::Client,
    key: &str,
    options: Option<etcd_client::GetOptions>,
) -> anyhow::Result<Option<String>> {
    let response = client.get(key, options).await?;
    Ok(response.kvs().first().map(|kv| kv.value_str().unwrap_or_default().to_string()))
}

/// Describes an etcdctl run for the log and for assertion messages: its status, its output, the
/// distinct errors its client retried on, and its last line on stderr.
fn describe(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut retried_on: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.split("desc = ").nth(1))
        .map(|rest| rest.trim_end_matches(['"', '}']))
        .collect();
    let retries = retried_on.len();
    retried_on.sort_unstable();
    retried_on.dedup();
    format!(
        "{}, stdout {:?}, {retries} failed attempts ({}), last stderr line {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        retried_on.join("; "),
        stderr.lines().last().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_refuses_linearizable_requests_and_catches_up() -> anyhow::Result<()> {
    eprintln!("--- start 3 masters, each in its own network namespace");
    let started = Instant::now();
    let cluster = &NetnsCluster::start(3).await?;
    let all = [0, 1, 2];
    let leader = &Cell::new(None);
    wait_until(Duration::from_secs(10), "a leader", || async move {
        leader.set(cluster.leader_among(&all).await);
        leader.get().is_some()
    })
    .await?;
    let old_leader = leader.get().expect("waited for a leader");
    let majority: Vec<usize> = all.into_iter().filter(|i| *i != old_leader).collect();
    let mut client = cluster.client(&[]).await?;
    flotilla_chaos_tests::put_retrying(&mut client, KEY, "before", None).await?;
    let on_leader = cluster.client(&[old_leader]).await?;
    wait_until(Duration::from_secs(5), "the leader to have applied `before`", || {
        let mut on_leader = on_leader.clone();
        async move {
            let options = etcd_client::GetOptions::new().with_serializable();
            value_of(&mut on_leader, KEY, Some(options)).await.ok().flatten().as_deref()
                == Some("before")
        }
    })
    .await?;
    let writer = Writer::start(cluster.client(&majority).await?, "partition/w");
    wait_until(Duration::from_secs(10), "20 acknowledged writes", || async {
        writer.count() >= 20
    })
    .await?;

    let isolated = &cluster.members[old_leader];
    eprintln!("--- cut the leader ({}, {}) off the network", isolated.name, isolated.address);
    cluster.isolate(old_leader)?;
    let cut_at = Instant::now();

    eprintln!("--- the other two elect a new leader and keep acknowledging writes");
    let new_leader = &Cell::new(None);
    let majority = &majority;
    wait_until(Duration::from_secs(10), "a new leader among the other two", || async move {
        new_leader.set(cluster.leader_among(majority).await);
        new_leader.get().is_some()
    })
    .await?;
    let new_leader = new_leader.get().expect("waited for a new leader");
    eprintln!("{} leads after {:?}", cluster.members[new_leader].name, cut_at.elapsed());
    let written_before = writer.count();
    wait_until(Duration::from_secs(10), "50 writes acknowledged by the majority", || async {
        writer.count() >= written_before + 50
    })
    .await?;
    let mut on_majority = cluster.client(majority).await?;
    flotilla_chaos_tests::put_retrying(&mut on_majority, KEY, "after", None).await?;

    eprintln!("--- the isolated member answers a serializable read from its own replica");
    let serializable = cluster
        .etcdctl_in(
            old_leader,
            &["get", KEY, "--consistency=s", "--print-value-only"],
            REFUSAL_TIMEOUT,
        )
        .await?;
    assert_eq!(
        stdout_of(&serializable)?,
        "before\n",
        "serializable read on the isolated member: {}",
        describe(&serializable)
    );

    let status = cluster.etcdctl_in(old_leader, &["endpoint", "status"], REFUSAL_TIMEOUT).await?;
    eprintln!(
        "the isolated member's own status (endpoint, id, version, size, is leader, is learner, \
         term, index, applied, errors): {}",
        String::from_utf8_lossy(&status.stdout).trim()
    );

    eprintln!("--- the isolated member refuses a linearizable read and a write");
    let written_before = writer.count();
    let asked_at = Instant::now();
    let (read, write) = tokio::join!(
        cluster.etcdctl_in(old_leader, &["get", KEY, "--print-value-only"], REFUSAL_TIMEOUT),
        cluster.etcdctl_in(old_leader, &["put", REFUSED_KEY, "isolated"], REFUSAL_TIMEOUT),
    );
    let (read, write) = (read?, write?);
    eprintln!("linearizable read: {}", describe(&read));
    eprintln!("write: {}", describe(&write));
    eprintln!("both answered within {:?}", asked_at.elapsed());
    assert!(
        !read.status.success(),
        "the isolated member served a linearizable read: {}",
        describe(&read)
    );
    assert!(
        !write.status.success(),
        "the isolated member acknowledged a write: {}",
        describe(&write)
    );
    for (what, output) in [("read", &read), ("write", &write)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("etcdserver: ") || stderr.contains("context deadline exceeded"),
            "the refused {what} fails with an etcd error or a client timeout: {}",
            describe(output)
        );
    }
    assert!(
        writer.count() > written_before,
        "the majority kept acknowledging writes while the isolated member was asked"
    );

    eprintln!("--- heal the partition");
    cluster.heal(old_leader)?;
    let healed_at = Instant::now();
    let acknowledged = writer.stop().await;
    flotilla_chaos_tests::put_retrying(&mut on_majority, KEY, "final", None).await?;

    eprintln!("--- the rejoined member's first linearizable answer is the majority's latest value");
    let mut rejoined = cluster.client(&[old_leader]).await?;
    let first_answer = &RefCell::new(None);
    wait_until(
        Duration::from_secs(15),
        "a linearizable read answered by the rejoined member",
        || {
            let mut rejoined = rejoined.clone();
            async move {
                match value_of(&mut rejoined, KEY, None).await {
                    Ok(value) => {
                        *first_answer.borrow_mut() = Some(value);
                        true
                    }
                    Err(_) => false,
                }
            }
        },
    )
    .await?;
    eprintln!("answered {:?} after the heal", healed_at.elapsed());
    assert_eq!(
        first_answer.take().flatten().as_deref(),
        Some("final"),
        "stale linearizable read on the rejoined member"
    );
    let stored = flotilla_chaos_tests::read_prefix(&mut rejoined, "partition/w/").await?;
    for (key, value) in &acknowledged {
        assert_eq!(
            stored.get(key),
            Some(value),
            "acknowledged write {key} missing on the rejoined member"
        );
    }
    eprintln!("{} acknowledged writes present on the rejoined member", acknowledged.len());
    // A timed-out write has an unknown outcome, so either is allowed; the log says which.
    let refused = value_of(&mut rejoined, REFUSED_KEY, None).await?;
    eprintln!(
        "the write refused by the isolated member is {}",
        match refused {
            Some(_) => "present after the heal",
            None => "absent after the heal",
        }
    );

    eprintln!("--- every member reports the same leader");
    wait_until(Duration::from_secs(10), "all members to agree on one leader", || async {
        let leaders = cluster.reported_leaders().await;
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
    })
    .await?;
    eprintln!("done in {:?}", started.elapsed());
    Ok(())
}
