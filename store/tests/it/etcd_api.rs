//! The etcd v3 gRPC API of three in-process masters, through the `etcd-client` crate over TLS
//! with a client certificate: watch ids, cancellation, compaction, progress notifications and
//! requests, the `hasleader` guard, etcd's error texts, MemberList and Status.
//!
//! Clients talk to a follower unless a test says otherwise, so requests also cross the
//! forwarding path to the leader.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use etcd_client::{
    ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream,
};
use flotilla_store::etcd::EtcdOptions;
use flotilla_store::raft::MasterConfig;
use flotilla_store::KvStore;
use tokio::time::Instant;

use crate::support::{wait_until, with_cluster, Cluster, LEADER_TIMEOUT};

const NAMES: [&str; 3] = ["m1", "m2", "m3"];
/// How long one watch response may take to arrive.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The watch id etcd (3.5 and later) gives responses to progress requests.
const STREAM_WATCH_ID: i64 = -1;
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const NO_LEADER: &str = "etcdserver: no leader";

fn default_options(_: &mut MasterConfig) {}

/// Returns the next response of a watch stream, failing if none arrives in time.
async fn next_response(stream: &mut WatchStream, what: &str) -> Result<WatchResponse> {
    match tokio::time::timeout(RESPONSE_TIMEOUT, stream.message()).await {
        Err(_) => bail!("timed out after {RESPONSE_TIMEOUT:?} waiting for {what}"),
        Ok(Err(err)) => bail!("the watch stream failed while waiting for {what}: {err:?}"),
        Ok(Ok(None)) => bail!("the watch stream ended while waiting for {what}"),
        Ok(Ok(Some(response))) => Ok(response),
    }
}

/// Returns the next response, which must confirm the creation of a watch; returns its id.
async fn created(stream: &mut WatchStream, what: &str) -> Result<i64> {
    let response = next_response(stream, what).await?;
    ensure!(
        response.created() && !response.canceled() && response.events().is_empty(),
        "expected the created response of {what}, got {response:?}"
    );
    Ok(response.watch_id())
}

fn revision(response: &WatchResponse) -> i64 {
    response.header().map(|h| h.revision()).unwrap_or(0)
}

/// Returns whether a response only reports progress: no events, not a creation or a cancel.
fn is_progress(response: &WatchResponse) -> bool {
    response.events().is_empty() && !response.created() && !response.canceled()
}

/// Returns the keys of a response's events.
fn event_keys(response: &WatchResponse) -> Vec<String> {
    response
        .events()
        .iter()
        .filter_map(|e| e.kv().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()))
        .collect()
}

/// Returns the gRPC status a call failed with.
fn grpc_status<T: Debug>(
    result: Result<T, etcd_client::Error>,
    what: &str,
) -> Result<tonic::Status> {
    match result {
        Ok(value) => bail!("{what} succeeded: {value:?}"),
        Err(etcd_client::Error::GRpcStatus(status)) => Ok(status),
        Err(other) => bail!("{what} failed without a gRPC status: {other:?}"),
    }
}

/// Returns the revision in a response header.
fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    Ok(header.context("a response without a header")?.revision())
}

/// An idle watch that asked for progress notifications gets an empty response at the current
/// revision once per interval; a watch on the same stream that did not ask gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_reach_idle_watches() -> Result<()> {
    const INTERVAL: Duration = Duration::from_millis(300);
    const WITHIN: Duration = Duration::from_secs(2);
    let options = |config: &mut MasterConfig| {
        config.etcd = EtcdOptions { progress_notify_interval: INTERVAL };
    };
    with_cluster(&NAMES, options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let mut client = cluster.etcd_client(follower, ConnectOptions::new()).await?;

        eprintln!("--- one stream: watch 0 asks for progress notifications, watch 1 does not");
        let started = Instant::now();
        let notify = WatchOptions::new().with_prefix().with_progress_notify();
        let mut stream = client.watch("notified/", Some(notify)).await?;
        // Both creations are sent at once, well before the first notification is due.
        stream.watch("quiet/", Some(WatchOptions::new().with_prefix())).await?;
        ensure!(created(&mut stream, "watch 0").await? == 0, "the first watch's id");
        ensure!(created(&mut stream, "watch 1").await? == 1, "the second watch's id");

        eprintln!("--- a write outside both watches moves the current revision");
        let put = client.put("elsewhere", "v", None).await?;
        let current = header_revision(put.header())?;

        eprintln!("--- within {WITHIN:?}, watch 0 gets a notification at revision {current}");
        let deadline = Instant::now() + WITHIN;
        let mut previous = 0;
        let mut notifications = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let response = match tokio::time::timeout(left, stream.message()).await {
                Err(_) => bail!(
                    "no progress notification at revision {current} within {WITHIN:?} \
                     ({notifications} earlier ones, the last at {previous})"
                ),
                Ok(message) => message?.context("the watch stream ended")?,
            };
            ensure!(
                response.watch_id() == 0 && is_progress(&response),
                "expected only progress notifications for watch 0, got {response:?}"
            );
            if notifications == 0 {
                let elapsed = started.elapsed();
                ensure!(
                    elapsed >= INTERVAL / 2,
                    "the first progress notification came {elapsed:?} after the watch was \
                     requested, before the {INTERVAL:?} interval"
                );
            }
            notifications += 1;
            let at = revision(&response);
            ensure!(
                at >= previous && at <= current,
                "a progress notification at revision {at} after one at {previous} \
                 (current revision {current})"
            );
            previous = at;
            if at == current {
                break;
            }
        }
        let now = cluster.master(follower)?.store().current_revision();
        ensure!(now == current, "the revision moved to {now} during the test");
        Ok(())
    })
    .await
}

/// A progress request is answered on the stream (watch id -1) at a revision no lower than any
/// event already sent, and never lower than an earlier answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_requests_never_go_backwards() -> Result<()> {
    const ROUNDS: usize = 8;
    with_cluster(&NAMES, default_options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let mut client = cluster.etcd_client(follower, ConnectOptions::new()).await?;
        let mut stream = client.watch("progress/", Some(WatchOptions::new().with_prefix())).await?;
        let id = created(&mut stream, "the watch").await?;

        eprintln!("--- {ROUNDS} rounds of writes, each followed by a progress request");
        let mut last_event = 0;
        let mut last_progress = 0;
        let mut events = 0;
        for round in 0..ROUNDS {
            client.put(format!("progress/{round}"), "v", None).await?;
            client.put(format!("elsewhere/{round}"), "v", None).await?;
            stream.request_progress().await?;
            loop {
                let response = next_response(&mut stream, "the progress response").await?;
                if response.watch_id() == STREAM_WATCH_ID {
                    ensure!(is_progress(&response), "a progress response with more: {response:?}");
                    let at = revision(&response);
                    ensure!(
                        at >= last_event,
                        "round {round}: progress at revision {at} after an event at {last_event}"
                    );
                    ensure!(
                        at >= last_progress,
                        "round {round}: progress went back from {last_progress} to {at}"
                    );
                    last_progress = at;
                    break;
                }
                ensure!(
                    response.watch_id() == id && !response.events().is_empty(),
                    "round {round}: unexpected response {response:?}"
                );
                last_event = last_event.max(revision(&response));
                events += response.events().len();
            }
        }

        eprintln!("--- every write was delivered, in order with the progress answers");
        while events < ROUNDS {
            let response = next_response(&mut stream, "the remaining events").await?;
            ensure!(
                response.watch_id() == id && !response.events().is_empty(),
                "unexpected response {response:?}"
            );
            ensure!(revision(&response) >= last_progress, "an event older than the progress");
            events += response.events().len();
        }
        Ok(())
    })
    .await
}

/// Watch ids on one stream start at 0; a canceled watch gets a canceled response and no more
/// events; a watch from a compacted revision is created, then canceled with the compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ids_cancel_and_compaction() -> Result<()> {
    with_cluster(&NAMES, default_options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let mut client = cluster.etcd_client(follower, ConnectOptions::new()).await?;

        eprintln!("--- two watches on one stream get ids 0 and 1");
        let mut stream = client.watch("ids/a", None).await?;
        ensure!(created(&mut stream, "the watch on ids/a").await? == 0, "first watch id");
        stream.watch("ids/b", None).await?;
        ensure!(created(&mut stream, "the watch on ids/b").await? == 1, "second watch id");

        eprintln!("--- each watch gets its own key's events");
        client.put("ids/a", "1", None).await?;
        client.put("ids/b", "1", None).await?;
        let mut seen = Vec::new();
        for _ in 0..2 {
            let response = next_response(&mut stream, "an event").await?;
            seen.push((response.watch_id(), event_keys(&response)));
        }
        seen.sort();
        ensure!(
            seen == [(0, vec!["ids/a".to_string()]), (1, vec!["ids/b".to_string()])],
            "events by watch: {seen:?}"
        );

        eprintln!("--- cancel watch 0");
        stream.cancel(0).await?;
        let response = next_response(&mut stream, "the cancel response").await?;
        ensure!(
            response.canceled() && response.watch_id() == 0 && !response.created(),
            "expected watch 0 canceled, got {response:?}"
        );

        eprintln!("--- after the cancel, only watch 1 gets events");
        client.put("ids/a", "2", None).await?;
        let last = client.put("ids/b", "2", None).await?;
        let last = header_revision(last.header())?;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        let mut got_b = false;
        while !got_b {
            ensure!(Instant::now() < deadline, "no event for ids/b at revision {last}");
            stream.request_progress().await?;
            loop {
                let response = next_response(&mut stream, "events or progress").await?;
                if response.watch_id() == STREAM_WATCH_ID {
                    break;
                }
                ensure!(
                    response.watch_id() == 1 && event_keys(&response) == ["ids/b"],
                    "after canceling watch 0: {response:?}"
                );
                got_b = revision(&response) == last;
            }
        }

        eprintln!("--- compact at revision {last}, then watch from {}", last - 1);
        client.compact(last, None).await?;
        // A linearizable read brings the follower's replica up to the compaction.
        client.get("ids/a", None).await?;
        let from_compacted = WatchOptions::new().with_start_revision(last - 1);
        stream.watch("ids/a", Some(from_compacted)).await?;
        let id = created(&mut stream, "the watch from a compacted revision").await?;
        ensure!(id == 2, "the third watch's id is {id}");
        let response = next_response(&mut stream, "the compaction cancel").await?;
        ensure!(
            response.watch_id() == id
                && response.canceled()
                && response.compact_revision() == last
                && response.cancel_reason() == COMPACTED
                && response.events().is_empty(),
            "expected watch {id} canceled at compact revision {last} with {COMPACTED:?}, \
             got {response:?}"
        );
        Ok(())
    })
    .await
}

/// etcd's exact error texts and codes, which clients match on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_etcd_error_texts() -> Result<()> {
    with_cluster(&NAMES, default_options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let mut client = cluster.etcd_client(follower, ConnectOptions::new()).await?;
        let puts = |n: usize| -> Vec<TxnOp> {
            (0..n).map(|i| TxnOp::put(format!("txn/{i:03}"), "v", None)).collect()
        };

        eprintln!("--- a lease shorter than etcd's minimum gets the minimum, 2 s");
        let short = client.lease_grant(1, None).await.context("grant a 1 s lease")?;
        ensure!(short.ttl() == 2, "a 1 s lease was granted {} s", short.ttl());

        eprintln!("--- a txn of 128 operations is accepted");
        client.txn(Txn::new().and_then(puts(128))).await.context("a txn of 128 puts")?;

        let too_many = client.txn(Txn::new().and_then(puts(129))).await;
        let duplicate = client
            .txn(
                Txn::new()
                    .and_then([TxnOp::put("txn/dup", "1", None), TxnOp::put("txn/dup", "2", None)]),
            )
            .await;
        let unknown_lease =
            client.put("txn/leased", "v", Some(PutOptions::new().with_lease(0x7ead_beef))).await;
        let cases = [
            (
                "a txn of 129 operations",
                grpc_status(too_many, "a txn of 129 operations"),
                tonic::Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                "a txn putting one key twice",
                grpc_status(duplicate, "a txn putting one key twice"),
                tonic::Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                "a put with a lease nobody granted",
                grpc_status(unknown_lease, "a put with a lease nobody granted"),
                tonic::Code::NotFound,
                "etcdserver: requested lease not found",
            ),
        ];
        for (what, status, code, message) in cases {
            eprintln!("--- {what} is refused");
            let status = status?;
            ensure!(
                (status.code(), status.message()) == (code, message),
                "{what}: got {:?} {:?}, expected {code:?} {message:?}",
                status.code(),
                status.message()
            );
        }
        Ok(())
    })
    .await
}

/// MemberList names every started member with its URLs; Status reports the leader and the
/// etcd version whose API the store implements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_and_status() -> Result<()> {
    with_cluster(&NAMES, default_options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let leader = cluster.wait_for_leader().await?;
        let mut client = cluster.etcd_client(follower, ConnectOptions::new()).await?;
        let mut expected = Vec::new();
        for index in cluster.running() {
            let config = &cluster.configs[index];
            expected.push((
                cluster.master(index)?.store().consensus().id(),
                config.name.clone(),
                vec![config.advertise_peer_url.clone()],
                vec![config.advertise_client_url.clone()],
                false,
            ));
        }
        expected.sort();

        eprintln!("--- MemberList lists the three members, started, with their URLs");
        wait_until(LEADER_TIMEOUT, "MemberList to list every started member", || async {
            let mut client = client.clone();
            let response = client.member_list().await?;
            let mut listed: Vec<_> = response
                .members()
                .iter()
                .map(|m| {
                    (
                        m.id(),
                        m.name().to_string(),
                        m.peer_urls().to_vec(),
                        m.client_urls().to_vec(),
                        m.is_learner(),
                    )
                })
                .collect();
            listed.sort();
            if listed != expected {
                eprintln!("    not yet: {listed:?}");
            }
            Ok((listed == expected).then_some(()))
        })
        .await?;

        eprintln!("--- Status names the leader and version 3.5.0");
        let status = client.status().await?;
        let leader_id = cluster.master(leader)?.store().consensus().id();
        let follower_id = cluster.master(follower)?.store().consensus().id();
        ensure!(status.version() == "3.5.0", "Status version {:?}", status.version());
        ensure!(status.leader() == leader_id, "Status leader {:x}", status.leader());
        let member = status.header().context("a Status header")?.member_id();
        ensure!(member == follower_id, "Status answered by member {member:x}");
        ensure!(!status.is_learner(), "a voter reported as a learner");
        Ok(())
    })
    .await
}

/// A watch stream opened with `hasleader` metadata (etcd-client's `with_require_leader`) works
/// while there is a leader, ends with "etcdserver: no leader" once its member loses the
/// leader, and cannot be opened without a leader; a stream without it stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_that_require_a_leader() -> Result<()> {
    const STREAM_END_TIMEOUT: Duration = Duration::from_secs(10);
    with_cluster(&NAMES, default_options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let require_leader = ConnectOptions::new().with_require_leader(true);
        let mut guarded = cluster.etcd_client(follower, require_leader).await?;
        let mut plain = cluster.etcd_client(follower, ConnectOptions::new()).await?;

        eprintln!("--- with a leader, a watch that requires one gets its events");
        let mut guarded_stream = guarded.watch("hasleader/key", None).await?;
        created(&mut guarded_stream, "the watch requiring a leader").await?;
        let mut plain_stream = plain.watch("hasleader/key", None).await?;
        created(&mut plain_stream, "the plain watch").await?;
        plain.put("hasleader/key", "v", None).await?;
        for (name, stream) in [("guarded", &mut guarded_stream), ("plain", &mut plain_stream)] {
            let response = next_response(stream, "the put event").await?;
            ensure!(event_keys(&response) == ["hasleader/key"], "{name} watch got {response:?}");
        }

        eprintln!("--- stop the two other members: the follower loses its leader");
        for index in cluster.running() {
            if index != follower {
                cluster.stop_member(index).await?;
            }
        }
        let consensus = cluster.master(follower)?.store().consensus();
        wait_until(LEADER_TIMEOUT, "the follower to have no leader", || async {
            Ok(consensus.leader_id().is_none().then_some(()))
        })
        .await?;

        eprintln!("--- the stream that requires a leader ends with {NO_LEADER:?}");
        let ended = tokio::time::timeout(STREAM_END_TIMEOUT, guarded_stream.message())
            .await
            .with_context(|| format!("the stream stayed open {STREAM_END_TIMEOUT:?}"))?;
        let status = grpc_status(ended, "the watch stream requiring a leader")?;
        ensure!(
            (status.code(), status.message()) == (tonic::Code::Unavailable, NO_LEADER),
            "the stream ended with {status:?}"
        );

        eprintln!("--- a new watch that requires a leader is refused");
        let opened = guarded.watch("hasleader/key", None).await;
        let status = grpc_status(opened, "opening a watch requiring a leader")?;
        ensure!(
            (status.code(), status.message()) == (tonic::Code::Unavailable, NO_LEADER),
            "opening the stream failed with {status:?}"
        );

        eprintln!("--- the stream that did not ask for a leader still answers");
        plain_stream.request_progress().await?;
        let response = next_response(&mut plain_stream, "a progress response").await?;
        ensure!(
            response.watch_id() == STREAM_WATCH_ID && is_progress(&response),
            "expected a progress response, got {response:?}"
        );
        Ok(())
    })
    .await
}

/// etcd answers a write only once the member that took it has applied it, so a serializable
/// read on that member right after sees the write (read-your-writes on one member).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_its_own_acknowledged_writes() -> Result<()> {
    const ROUNDS: usize = 50;
    with_cluster(&NAMES, default_options, async |cluster: &mut Cluster| {
        let follower = cluster.a_follower().await?;
        let mut client = cluster.etcd_client(follower, ConnectOptions::new()).await?;
        eprintln!("--- {ROUNDS} puts on a follower, each read back serializably on it");
        let mut stale = Vec::new();
        for round in 0..ROUNDS {
            let key = format!("ryw/{round}");
            let put = client.put(key.clone(), "v", None).await?;
            let written = header_revision(put.header())?;
            let read = client.get(key, Some(GetOptions::new().with_serializable())).await?;
            let seen = read.kvs().first().map(|kv| kv.mod_revision());
            if seen != Some(written) {
                stale.push(format!(
                    "round {round}: put at revision {written}, then read {seen:?} \
                     (header revision {})",
                    header_revision(read.header())?
                ));
            }
        }
        ensure!(
            stale.is_empty(),
            "{} of {ROUNDS} serializable reads on the follower missed its own acknowledged put:\n{}",
            stale.len(),
            stale.join("\n")
        );
        Ok(())
    })
    .await
}
