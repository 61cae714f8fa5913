//! Raft snapshots of the replicated store: a master that joins after the leader purged its log
//! catches up by installing a snapshot, and a master restarted after snapshots and purges still
//! has all its data.
//!
//! Masters take a snapshot every [`SNAPSHOT_ENTRIES`] entries, but openraft keeps the last
//! `max_in_snapshot_log_to_keep` entries (1000, fixed in `raft/master.rs`) even once they are in
//! a snapshot, so a few hundred writes never purge anything by themselves. The tests therefore ask
//! openraft to purge up to the snapshot (`Trigger::purge_log`), as the policy would do on its own
//! only after more than 1000 entries.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use flotilla_store::raft::{Master, MasterConfig};
use flotilla_store::types::*;
use flotilla_store::KvStore;

use crate::support::{wait_until, with_cluster, Cluster};

const NAMES: [&str; 3] = ["m1", "m2", "m3"];
const PREFIX: &str = "snapshot/";
const KEYS: usize = 300;
/// A snapshot is taken after this many log entries.
const SNAPSHOT_ENTRIES: u64 = 20;
/// How long a snapshot, a purge, a join or a catch-up may take.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);

fn small_snapshots(config: &mut MasterConfig) {
    config.snapshot_entries = SNAPSHOT_ENTRIES;
}

/// Writes [`KEYS`] keys one put at a time; returns them as the writer's replica has them.
async fn write_keys(master: &Master) -> Result<Vec<KeyValue>> {
    for i in 0..KEYS {
        master
            .store()
            .put(PutRequest::new(format!("{PREFIX}{i:04}"), format!("value {i}")))
            .await?;
    }
    let kvs = local_keys(master).await?;
    ensure!(kvs.len() == KEYS, "the writer holds {} of {KEYS} keys", kvs.len());
    Ok(kvs)
}

/// Returns every key under [`PREFIX`] from the master's own replica (a serializable range).
async fn local_keys(master: &Master) -> Result<Vec<KeyValue>> {
    let request =
        RangeRequest { serializable: true, ..RangeRequest::new(KeyRange::prefix(PREFIX)) };
    Ok(master.store().range(request).await?.kvs)
}

/// Waits until the master has a snapshot covering most of what it applied, asks openraft to
/// purge the log up to it, and waits for the purge; returns the last purged index.
async fn purge_through_snapshot(master: &Master) -> Result<u64> {
    let consensus = master.store().consensus();
    let applied = consensus.metrics().last_applied.context("nothing applied")?.index;
    let wanted = applied.saturating_sub(5 * SNAPSHOT_ENTRIES);
    let snapshot = wait_until(
        CATCH_UP_TIMEOUT,
        &format!("a snapshot at index {wanted} or later (applied {applied})"),
        || async { Ok(consensus.metrics().snapshot.filter(|s| s.index >= wanted)) },
    )
    .await?;
    let metrics = consensus.metrics();
    eprintln!(
        "--- member {:x}: snapshot at {}, applied {applied}, purged {:?} before asking",
        consensus.id(),
        snapshot.index,
        metrics.purged.map(|p| p.index)
    );
    consensus.raft().trigger().purge_log(snapshot.index).await?;
    let purged = wait_until(
        CATCH_UP_TIMEOUT,
        &format!("the log purged up to index {}", snapshot.index),
        || async { Ok(consensus.metrics().purged.filter(|p| p.index >= snapshot.index)) },
    )
    .await?;
    Ok(purged.index)
}

/// Waits until the master's own replica holds exactly `expected` under [`PREFIX`].
async fn wait_for_keys(master: &Master, name: &str, expected: &[KeyValue]) -> Result<()> {
    wait_until(CATCH_UP_TIMEOUT, &format!("{name} to hold every key locally"), || async {
        Ok((local_keys(master).await? == expected).then_some(()))
    })
    .await
}

/// A master that joins after the leader purged the entries of most writes cannot get them from
/// the log: it must install the leader's snapshot, and then holds every key at the leader's
/// revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_master_catches_up_from_a_snapshot() -> Result<()> {
    with_cluster(&NAMES, small_snapshots, async |cluster: &mut Cluster| {
        let leader_index = cluster.wait_for_leader().await?;
        eprintln!("--- write {KEYS} keys on the leader");
        let expected = write_keys(cluster.master(leader_index)?).await?;

        eprintln!("--- the leader snapshots, then purges its log up to the snapshot");
        let purged = purge_through_snapshot(cluster.master(leader_index)?).await?;
        let first_write = expected.iter().map(|kv| kv.mod_revision).min().unwrap_or(0);
        eprintln!(
            "--- leader log purged through index {purged} (first write at revision {first_write})"
        );

        eprintln!("--- start m4, joining through m1");
        let contact = cluster.configs[0].advertise_peer_url.clone();
        let config = cluster.pki.joining_config("m4", &contact)?;
        let joiner_index = cluster.add_member(config).await?;
        let joiner = cluster.master(joiner_index)?;
        let joiner_id = joiner.store().consensus().id();

        eprintln!("--- wait until every member lists m4 as a voter");
        wait_until(CATCH_UP_TIMEOUT, "every member to list m4 as a voter", || async {
            let voter_everywhere = cluster.running().into_iter().all(|i| {
                cluster.master(i).is_ok_and(|m| {
                    m.store()
                        .consensus()
                        .members()
                        .iter()
                        .any(|member| member.id == joiner_id && !member.is_learner)
                })
            });
            Ok(voter_everywhere.then_some(()))
        })
        .await?;

        eprintln!("--- m4 holds every key at the leader's revisions");
        wait_for_keys(joiner, "m4", &expected).await?;

        eprintln!("--- m4 got the purged entries through a snapshot");
        let installed = joiner.store().consensus().metrics().snapshot;
        ensure!(
            installed.is_some_and(|s| s.index >= purged),
            "m4 holds writes the leader had purged (through index {purged}), \
             but its snapshot is {installed:?}"
        );

        eprintln!("--- a write after the join reaches m4");
        let put = cluster
            .master(leader_index)?
            .store()
            .put(PutRequest::new(format!("{PREFIX}after-join"), "v"))
            .await?;
        let read = joiner
            .store()
            .range(RangeRequest::new(KeyRange::single(format!("{PREFIX}after-join"))))
            .await?;
        ensure!(
            read.kvs.first().map(|kv| kv.mod_revision) == Some(put.revision),
            "a linearizable read on m4 after the join: {read:?}"
        );
        Ok(())
    })
    .await
}

/// Every member snapshots and purges its log, the whole cluster stops, and one member started
/// alone (so nothing can be replicated to it) serves every key from its own data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_after_snapshots_keeps_its_data() -> Result<()> {
    with_cluster(&NAMES, small_snapshots, async |cluster: &mut Cluster| {
        let leader_index = cluster.wait_for_leader().await?;
        eprintln!("--- write {KEYS} keys on the leader");
        let expected = write_keys(cluster.master(leader_index)?).await?;

        eprintln!("--- every member holds every key, snapshots, and purges its log");
        for index in cluster.running() {
            let master = cluster.master(index)?;
            let name = &cluster.configs[index].name;
            wait_for_keys(master, name, &expected).await?;
            purge_through_snapshot(master).await?;
        }

        eprintln!("--- stop every member");
        for index in cluster.running() {
            cluster.stop_member(index).await?;
        }

        eprintln!("--- start m1 alone: it serves every key from its data directory");
        let restarted = cluster.start_member(0).await?;
        let kvs = local_keys(restarted).await?;
        ensure!(
            kvs == expected,
            "m1 restarted alone holds {} keys (expected {KEYS}); first difference: {:?}",
            kvs.len(),
            kvs.iter().zip(&expected).find(|(got, want)| got != want)
        );
        let revision = restarted.store().current_revision();
        let last_write = expected.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
        ensure!(
            revision == last_write,
            "m1's revision after the restart is {revision}, expected {last_write}"
        );
        let consensus = restarted.store().consensus();
        wait_until(CATCH_UP_TIMEOUT, "m1 to report its snapshot and purged log", || async {
            let metrics = consensus.metrics();
            Ok((metrics.snapshot.is_some() && metrics.purged.is_some()).then_some(()))
        })
        .await?;

        eprintln!("--- start the others: the cluster elects a leader and takes writes");
        cluster.start_member(1).await?;
        cluster.start_member(2).await?;
        cluster.wait_for_leader().await?;
        let key = format!("{PREFIX}after-restart");
        let put = cluster.master(0)?.store().put(PutRequest::new(key.clone(), "v")).await?;
        ensure!(
            put.revision == last_write + 1,
            "the first write after the restart got revision {}",
            put.revision
        );
        for index in cluster.running() {
            let read = cluster
                .master(index)?
                .store()
                .range(RangeRequest::new(KeyRange::single(key.clone())))
                .await?;
            ensure!(
                read.kvs.first().map(|kv| kv.mod_revision) == Some(put.revision),
                "a linearizable read on {} after the restart: {read:?}",
                cluster.configs[index].name
            );
        }
        Ok(())
    })
    .await
}
