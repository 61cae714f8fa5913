//! Three masters in this process over real TLS: the KV suite against a follower (its writes are
//! forwarded to the leader), then reads and watches across members.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use flotilla_store::raft::{Master, RaftConsensus};
use flotilla_store::types::*;
use flotilla_store::{KvStore, Store};

use crate::kv_suite;
use crate::support::{cluster_configs, next_batch, wait_for_leader};

const NAMES: [&str; 3] = ["m1", "m2", "m3"];

/// Starts three masters, runs `body` on them, and shuts them all down whatever its outcome.
async fn with_three_masters<F>(body: F) -> Result<()>
where
    F: AsyncFnOnce(&[Master]) -> Result<()>,
{
    let dir = tempfile::tempdir()?;
    eprintln!("--- start three masters");
    let mut masters = Vec::new();
    for config in cluster_configs(dir.path(), &NAMES)? {
        let name = config.name.clone();
        masters.push(Master::start(config).await.with_context(|| format!("starting {name}"))?);
    }
    let outcome = body(&masters).await;
    eprintln!("--- shut every master down");
    for master in masters {
        tokio::time::timeout(Duration::from_secs(10), master.shutdown())
            .await
            .context("a master did not shut down within 10 s")?;
    }
    outcome
}

/// Waits for a leader and returns a master that does not lead.
async fn a_follower(masters: &[Master]) -> Result<&Master> {
    eprintln!("--- wait for a leader");
    let leader = wait_for_leader(masters).await?;
    let follower = masters
        .iter()
        .find(|m| m.store().consensus().id() != leader)
        .context("a follower among three masters")?;
    eprintln!("--- leader is {leader:x}, follower {:x}", follower.store().consensus().id());
    Ok(follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_replicate() -> Result<()> {
    with_three_masters(exercise).await
}

async fn exercise(masters: &[Master]) -> Result<()> {
    let follower = a_follower(masters).await?;
    eprintln!("--- run the kv suite on the follower");
    kv_suite::run_all(follower.store()).await?;

    eprintln!("--- a write on one master is visible on the others");
    let [a, b, c] = [masters[0].store(), masters[1].store(), masters[2].store()];
    let mut watcher_on_c = c.watch(WatchRequest {
        range: KeyRange::prefix("replicated/"),
        start_revision: kv_suite::head(c).await? + 1,
        ..Default::default()
    })?;
    let put = a.put(PutRequest::new("replicated/key", "from-a")).await?;
    for (name, store) in [("b", b), ("c", c)] {
        let kv = read(store, "replicated/key")
            .await?
            .with_context(|| format!("the key read on {name}"))?;
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision),
            (&b"from-a"[..], put.revision),
            "read on {name}"
        );
    }

    eprintln!("--- a watch on one master sees a put made on another");
    let batch = next_batch(&mut watcher_on_c, "the put made on a, seen on c").await?;
    assert_eq!(batch.revision, put.revision);
    ensure!(
        batch.events.len() == 1 && batch.events[0].kv.value == b"from-a",
        "unexpected events on c: {batch:?}"
    );
    Ok(())
}

/// A linearizable read of one key.
async fn read(store: &Store<RaftConsensus>, key: &str) -> Result<Option<KeyValue>> {
    Ok(store.range(RangeRequest::new(KeyRange::single(key))).await?.kvs.into_iter().next())
}

/// A master stopped cleanly starts again from its data directory with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarts_from_its_data_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = cluster_configs(dir.path(), &["solo"])?.remove(0);

    eprintln!("--- start a one-member cluster and write");
    let master = Master::start(config.clone()).await.context("first start")?;
    wait_for_leader(std::slice::from_ref(&master)).await?;
    let put = master.store().put(PutRequest::new("restart/key", "kept")).await?;
    eprintln!("--- stop it");
    tokio::time::timeout(Duration::from_secs(10), master.shutdown())
        .await
        .context("the master did not shut down within 10 s")?;

    eprintln!("--- start it again on the same data directory");
    let master = Master::start(config).await.context("restarting a cleanly stopped master")?;
    let outcome = async {
        wait_for_leader(std::slice::from_ref(&master)).await?;
        let kv = read(master.store(), "restart/key").await?.context("the key after the restart")?;
        assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"kept"[..], put.revision));
        anyhow::Ok(())
    }
    .await;
    tokio::time::timeout(Duration::from_secs(10), master.shutdown())
        .await
        .context("the restarted master did not shut down within 10 s")?;
    outcome
}

/// etcd answers LeaseTimeToLive on the leader after it has applied everything, so the answer
/// reflects every acknowledged grant and put, whichever member is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_time_to_live_on_a_follower_reflects_acknowledged_writes() -> Result<()> {
    const ROUNDS: usize = 50;
    with_three_masters(async |masters: &[Master]| {
        let follower = a_follower(masters).await?.store();
        eprintln!("--- grant, attach and ask time_to_live on the follower, {ROUNDS} times");
        let mut stale = Vec::new();
        for round in 0..ROUNDS {
            let id = follower.lease_grant(0, 60).await?.id;
            let granted = follower.lease_time_to_live(id, true).await?;
            if granted.granted_ttl != 60 {
                stale.push(format!(
                    "round {round}: granted_ttl {} right after the grant",
                    granted.granted_ttl
                ));
            }
            let key = format!("ttl-probe/{round}");
            follower.put(PutRequest { lease: id, ..PutRequest::new(key.clone(), "v") }).await?;
            let attached = follower.lease_time_to_live(id, true).await?;
            if attached.keys != [key.clone().into_bytes()] {
                stale.push(format!(
                    "round {round}: keys {:?} right after putting {key}",
                    attached.keys
                ));
            }
            follower.lease_revoke(id).await?;
        }
        ensure!(
            stale.is_empty(),
            "{} of {} time_to_live answers on a follower missed acknowledged writes:\n{}",
            stale.len(),
            2 * ROUNDS,
            stale.join("\n")
        );
        Ok(())
    })
    .await
}

/// etcd answers "request timed out" when a write cannot reach a quorum; it never leaves the
/// client waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_quorum_fails_in_bounded_time() -> Result<()> {
    /// REQUEST_TIMEOUT (5 s) plus a margin.
    const BOUND: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir()?;
    eprintln!("--- start three masters");
    let mut masters = Vec::new();
    for config in cluster_configs(dir.path(), &NAMES)? {
        masters.push(Master::start(config).await?);
    }
    let leader_id = wait_for_leader(&masters).await?;
    let (leaders, followers): (Vec<Master>, Vec<Master>) =
        masters.into_iter().partition(|m| m.store().consensus().id() == leader_id);
    let leader = leaders.into_iter().next().context("the leader among the masters")?;
    leader
        .store()
        .put(PutRequest::new("quorum/before", "v"))
        .await
        .context("a write with quorum")?;

    eprintln!("--- stop both followers");
    for follower in followers {
        tokio::time::timeout(Duration::from_secs(10), follower.shutdown())
            .await
            .context("a follower did not shut down within 10 s")?;
    }

    eprintln!("--- a linearizable read on the leader fails in bounded time");
    let read = tokio::time::timeout(BOUND, read(leader.store(), "quorum/before")).await;
    eprintln!("--- a write on the leader fails in bounded time");
    let write =
        tokio::time::timeout(BOUND, leader.store().put(PutRequest::new("quorum/after", "v"))).await;

    tokio::time::timeout(Duration::from_secs(10), leader.shutdown())
        .await
        .context("the leader did not shut down within 10 s")?;
    match read {
        Err(_) => panic!("a linearizable read without quorum did not return within {BOUND:?}"),
        Ok(result) => {
            ensure!(result.is_err(), "a linearizable read without quorum succeeded: {result:?}")
        }
    }
    match write {
        Err(_) => panic!(
            "a put on a leader that lost its quorum did not return within {BOUND:?} \
             (etcd answers `request timed out`)"
        ),
        Ok(result) => ensure!(result.is_err(), "a put without quorum succeeded: {result:?}"),
    }
    Ok(())
}
