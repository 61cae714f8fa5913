//! The KV conformance suite: etcd v3 semantics checked through the [`KvStore`] trait only, so the
//! same checks run against the in-memory, sled and replicated stores.
//!
//! Every check writes under its own key prefix (`suite/<check>/`), so checks can share one store.
//! Checks that compare against the store's head revision read it with a linearizable range
//! ([`head`]), which also brings a follower replica up to date before it answers local-only
//! questions (watch start, lease ids).

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use flotilla_store::types::*;
use flotilla_store::{KvStore, StoreError, WatchBatch};
use tokio::time::Instant;

use crate::support::{next_batch, wait_until};

/// A lease id no check grants.
const UNKNOWN_LEASE: i64 = 0x7ead_beef_0bad_f00d;

/// Runs every check of the suite against `store`.
pub async fn run_all<S: KvStore>(store: &S) -> Result<()> {
    macro_rules! check {
        ($name:ident) => {{
            let name = stringify!($name);
            eprintln!("--- kv suite: {name}");
            $name(store, &format!("suite/{name}/"))
                .await
                .with_context(|| format!("kv suite check {name}"))?;
        }};
    }
    check!(revisions);
    check!(key_metadata);
    check!(range_queries);
    check!(put_options);
    check!(delete_options);
    check!(txn_compares);
    check!(txn_nested_and_own_writes);
    check!(txn_refusals);
    check!(watch_history_then_live);
    check!(watch_long_history);
    check!(watch_prefix);
    check!(watch_prev_kv);
    check!(watch_filters);
    check!(compaction);
    check!(leases);
    check!(lease_expiry);
    Ok(())
}

// ---- helpers -------------------------------------------------------------------------------

fn key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}{name}").into_bytes()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns the keys of `kvs` with `prefix` stripped, for readable assertions.
fn names(prefix: &str, kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| {
            let key = text(&kv.key);
            key.strip_prefix(prefix).map(str::to_owned).unwrap_or(key)
        })
        .collect()
}

fn put_op(key: Vec<u8>, value: &str) -> TxnOp {
    TxnOp::Put(PutRequest::new(key, value))
}

fn range_op(key: Vec<u8>) -> TxnOp {
    TxnOp::Range(RangeRequest::new(KeyRange::single(key)))
}

fn compare(key: Vec<u8>, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { range: KeyRange::single(key), result, target }
}

async fn put<S: KvStore>(store: &S, key: &[u8], value: &str) -> Result<PutResponse> {
    store.put(PutRequest::new(key, value)).await.with_context(|| format!("put {}", text(key)))
}

async fn put_with_lease<S: KvStore>(
    store: &S,
    key: &[u8],
    value: &str,
    lease: i64,
) -> Result<PutResponse> {
    let req = PutRequest { lease, ..PutRequest::new(key, value) };
    store.put(req).await.with_context(|| format!("put {} with lease {lease:x}", text(key)))
}

async fn delete<S: KvStore>(store: &S, range: KeyRange, prev_kv: bool) -> Result<DeleteResponse> {
    let what = format!("delete {range:?}");
    store.delete(DeleteRequest { range, prev_kv }).await.context(what)
}

async fn range<S: KvStore>(store: &S, req: RangeRequest) -> Result<RangeResponse> {
    let what = format!("range {req:?}");
    store.range(req).await.context(what)
}

/// Returns the key's newest version (linearizable).
async fn get<S: KvStore>(store: &S, key: &[u8]) -> Result<Option<KeyValue>> {
    let resp = range(store, RangeRequest::new(KeyRange::single(key))).await?;
    ensure!(resp.kvs.len() <= 1, "a single-key range returned {} keys", resp.kvs.len());
    Ok(resp.kvs.into_iter().next())
}

/// Returns the key as of `revision`, or the store's error.
async fn get_at<S: KvStore>(
    store: &S,
    key: &[u8],
    revision: i64,
) -> Result<Option<KeyValue>, StoreError> {
    let req = RangeRequest { revision, ..RangeRequest::new(KeyRange::single(key)) };
    Ok(store.range(req).await?.kvs.into_iter().next())
}

async fn value<S: KvStore>(store: &S, key: &[u8]) -> Result<Option<String>> {
    Ok(get(store, key).await?.map(|kv| text(&kv.value)))
}

/// Returns the store's current revision through a linearizable read.
pub async fn head<S: KvStore>(store: &S) -> Result<i64> {
    Ok(range(store, RangeRequest::new(KeyRange::single("suite/head"))).await?.revision)
}

fn expect_err<T: Debug>(result: Result<T, StoreError>, want: StoreError, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {want:?}, got Ok({value:?})"),
        Err(err) => assert_eq!(err, want, "{what}"),
    }
}

fn prefix_watch(prefix: &str, start_revision: i64) -> WatchRequest {
    WatchRequest { range: KeyRange::prefix(prefix), start_revision, ..Default::default() }
}

fn single_event(batch: &WatchBatch, what: &str) -> Event {
    assert_eq!(batch.events.len(), 1, "{what}: expected one event, got {batch:?}");
    batch.events[0].clone()
}

// ---- revisions and key metadata ------------------------------------------------------------

/// The revision grows by one per write transaction and never for reads or no-op writes.
pub async fn revisions<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let r0 = head(store).await?;
    let put_a = put(store, &key(p, "a"), "1").await?;
    assert_eq!(put_a.revision, r0 + 1, "a put is one write transaction");

    get(store, &key(p, "a")).await?;
    assert_eq!(head(store).await?, r0 + 1, "a read does not change the revision");

    let noop = delete(store, KeyRange::single(key(p, "missing")), false).await?;
    assert_eq!(noop.deleted, 0);
    assert_eq!(noop.revision, r0 + 1, "a delete of nothing reports the current revision");
    assert_eq!(head(store).await?, r0 + 1, "a delete of nothing does not change the revision");

    let txn = store
        .txn(TxnRequest {
            success: vec![put_op(key(p, "b"), "1"), put_op(key(p, "c"), "1")],
            ..Default::default()
        })
        .await?;
    assert!(txn.succeeded);
    assert_eq!(txn.revision, r0 + 2, "a transaction with two puts is one revision");
    for name in ["b", "c"] {
        let kv = get(store, &key(p, name)).await?.context("key written by the txn")?;
        assert_eq!(kv.mod_revision, r0 + 2, "key {name} carries the txn's revision");
    }

    // The taken branch only reads, so nothing is written even though the other branch writes.
    let txn = store
        .txn(TxnRequest {
            compare: vec![compare(key(p, "a"), CompareResult::Equal, CompareTarget::Version(99))],
            success: vec![put_op(key(p, "d"), "1")],
            failure: vec![range_op(key(p, "a"))],
        })
        .await?;
    assert!(!txn.succeeded);
    assert_eq!(txn.revision, r0 + 2);
    assert_eq!(head(store).await?, r0 + 2, "a txn whose taken branch only reads writes nothing");
    assert_eq!(get(store, &key(p, "d")).await?, None);

    let del = delete(store, KeyRange::single(key(p, "a")), false).await?;
    assert_eq!((del.deleted, del.revision), (1, r0 + 3), "a delete of one key is one revision");
    let del = delete(store, KeyRange::prefix(p), false).await?;
    assert_eq!((del.deleted, del.revision), (2, r0 + 4), "a delete of two keys is one revision");
    assert_eq!(head(store).await?, r0 + 4);
    Ok(())
}

/// create_revision, mod_revision and version follow etcd; old revisions stay readable.
pub async fn key_metadata<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let k = key(p, "k");
    let r1 = put(store, &k, "v1").await?.revision;
    let kv = get(store, &k).await?.context("key after first put")?;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, text(&kv.value)),
        (r1, r1, 1, "v1".into()),
        "a new key"
    );

    let r2 = put(store, &k, "v2").await?.revision;
    let kv = get(store, &k).await?.context("key after second put")?;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, text(&kv.value)),
        (r1, r2, 2, "v2".into()),
        "an updated key keeps its create revision"
    );

    let old = get_at(store, &k, r1).await?.context("key at its first revision")?;
    assert_eq!((text(&old.value), old.version, old.mod_revision), ("v1".into(), 1, r1));
    let at_r2 = get_at(store, &k, r2).await?.context("key at its second revision")?;
    assert_eq!(text(&at_r2.value), "v2");
    assert_eq!(
        get_at(store, &k, r1 - 1).await?,
        None,
        "the key did not exist before it was created"
    );

    let r3 = delete(store, KeyRange::single(k.clone()), false).await?.revision;
    assert_eq!(get(store, &k).await?, None);
    assert_eq!(get_at(store, &k, r3).await?, None, "deleted at its delete revision");
    let before_delete = get_at(store, &k, r3 - 1).await?.context("key before its delete")?;
    assert_eq!(text(&before_delete.value), "v2", "history before a delete stays readable");

    let r4 = put(store, &k, "v3").await?.revision;
    let kv = get(store, &k).await?.context("recreated key")?;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r4, r4, 1),
        "a recreated key starts a new life"
    );
    Ok(())
}

// ---- range ---------------------------------------------------------------------------------

pub async fn range_queries<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let base = format!("{p}keys/");
    // Written out of key order, so sorting by modification differs from sorting by key.
    let mut revs = HashMap::new();
    for name in ["c", "a", "e", "b", "d"] {
        let rev = put(store, &key(&base, name), &format!("value-{name}")).await?.revision;
        revs.insert(name, rev);
    }
    // Neighbours just outside the prefix on both sides.
    put(store, &key(p, "keyr"), "before").await?;
    put(store, &key(p, "keys0"), "after").await?;

    let prefixed = |f: fn(&mut RangeRequest)| {
        let mut req = RangeRequest::new(KeyRange::prefix(base.clone()));
        f(&mut req);
        req
    };

    let all = range(store, prefixed(|_| {})).await?;
    assert_eq!(names(&base, &all.kvs), ["a", "b", "c", "d", "e"], "prefix range in key order");
    assert_eq!((all.count, all.more), (5, false));
    let values: Vec<String> = all.kvs.iter().map(|kv| text(&kv.value)).collect();
    assert_eq!(values, ["value-a", "value-b", "value-c", "value-d", "value-e"]);

    for (limit, want, more) in [
        (2, &["a", "b"][..], true),
        (4, &["a", "b", "c", "d"][..], true),
        (5, &["a", "b", "c", "d", "e"][..], false),
        (9, &["a", "b", "c", "d", "e"][..], false),
    ] {
        let mut req = prefixed(|_| {});
        req.limit = limit;
        let resp = range(store, req).await?;
        assert_eq!(names(&base, &resp.kvs), want, "limit {limit}");
        assert_eq!(resp.more, more, "more with limit {limit}");
        assert_eq!(resp.count, 5, "count ignores the limit {limit}");
    }

    let from = range(store, RangeRequest::new(KeyRange::from_key(key(&base, "c")))).await?;
    ensure!(from.kvs.len() >= 4, "from-key range returned {:?}", names(p, &from.kvs));
    assert_eq!(
        names(p, &from.kvs[..4]),
        ["keys/c", "keys/d", "keys/e", "keys0"],
        "a from-key range runs past the prefix to the end of the keyspace"
    );
    assert!(from.kvs.windows(2).all(|w| w[0].key < w[1].key), "from-key range in key order");
    let from_limited = range(
        store,
        RangeRequest { limit: 3, ..RangeRequest::new(KeyRange::from_key(key(&base, "c"))) },
    )
    .await?;
    assert_eq!(names(&base, &from_limited.kvs), ["c", "d", "e"]);
    assert!(from_limited.more, "more keys follow a limited from-key range");

    let between = range(
        store,
        RangeRequest::new(KeyRange { key: key(&base, "b"), range_end: key(&base, "d") }),
    )
    .await?;
    assert_eq!(names(&base, &between.kvs), ["b", "c"], "[b, d) excludes its end");

    let keys_only = range(store, prefixed(|r| r.keys_only = true)).await?;
    assert_eq!(names(&base, &keys_only.kvs), ["a", "b", "c", "d", "e"]);
    for kv in &keys_only.kvs {
        assert!(kv.value.is_empty(), "keys_only returned a value for {}", text(&kv.key));
        let name = text(&kv.key[base.len()..]);
        assert_eq!(kv.mod_revision, revs[name.as_str()], "keys_only keeps metadata of {name}");
    }

    let count_only = range(store, prefixed(|r| r.count_only = true)).await?;
    assert!(count_only.kvs.is_empty(), "count_only returned keys");
    assert_eq!(count_only.count, 5);

    let descend = range(store, prefixed(|r| r.sort_order = SortOrder::Descend)).await?;
    assert_eq!(names(&base, &descend.kvs), ["e", "d", "c", "b", "a"], "descending by key");
    let descend_limited = range(
        store,
        prefixed(|r| {
            r.sort_order = SortOrder::Descend;
            r.limit = 2;
        }),
    )
    .await?;
    assert_eq!(names(&base, &descend_limited.kvs), ["e", "d"], "limit applies after sorting");
    assert_eq!((descend_limited.more, descend_limited.count), (true, 5));

    let by_mod = range(
        store,
        prefixed(|r| {
            r.sort_order = SortOrder::Ascend;
            r.sort_target = SortTarget::Mod;
        }),
    )
    .await?;
    assert_eq!(names(&base, &by_mod.kvs), ["c", "a", "e", "b", "d"], "ascending by mod revision");
    let by_mod_desc = range(
        store,
        prefixed(|r| {
            r.sort_order = SortOrder::Descend;
            r.sort_target = SortTarget::Mod;
        }),
    )
    .await?;
    assert_eq!(names(&base, &by_mod_desc.kvs), ["d", "b", "e", "a", "c"], "descending by mod");
    let by_mod_no_order = range(store, prefixed(|r| r.sort_target = SortTarget::Mod)).await?;
    assert_eq!(
        names(&base, &by_mod_no_order.kvs),
        ["c", "a", "e", "b", "d"],
        "a sort target without an order sorts ascending (etcd)"
    );

    let mut min_mod = prefixed(|_| {});
    min_mod.min_mod_revision = revs["e"];
    let resp = range(store, min_mod).await?;
    assert_eq!(names(&base, &resp.kvs), ["b", "d", "e"], "min_mod_revision");
    assert_eq!(resp.count, 5, "count ignores the revision filters (etcd)");

    let mut max_mod = prefixed(|_| {});
    max_mod.max_mod_revision = revs["a"];
    let resp = range(store, max_mod).await?;
    assert_eq!(names(&base, &resp.kvs), ["a", "c"], "max_mod_revision");

    let mut window = prefixed(|_| {});
    window.min_mod_revision = revs["a"];
    window.max_mod_revision = revs["b"];
    let resp = range(store, window).await?;
    assert_eq!(names(&base, &resp.kvs), ["a", "b", "e"], "min and max mod revision together");

    let missing = range(store, RangeRequest::new(KeyRange::single(key(&base, "zz")))).await?;
    assert!(missing.kvs.is_empty() && missing.count == 0, "a missing key: {missing:?}");
    let backwards = range(
        store,
        RangeRequest::new(KeyRange { key: key(&base, "d"), range_end: key(&base, "b") }),
    )
    .await?;
    assert!(backwards.kvs.is_empty(), "an interval ending before it starts holds nothing");

    expect_err(
        store.range(RangeRequest::new(KeyRange::single(""))).await,
        StoreError::EmptyKey,
        "range of an empty key",
    );
    Ok(())
}

// ---- put and delete ------------------------------------------------------------------------

pub async fn put_options<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let k = key(p, "k");
    let first = store.put(PutRequest { prev_kv: true, ..PutRequest::new(k.clone(), "v1") }).await?;
    assert_eq!(first.prev_kv, None, "a new key has no previous value");

    let second =
        store.put(PutRequest { prev_kv: true, ..PutRequest::new(k.clone(), "v2") }).await?;
    let prev = second.prev_kv.context("prev_kv of an overwrite")?;
    assert_eq!(
        (text(&prev.value), prev.version, prev.mod_revision, prev.create_revision),
        ("v1".into(), 1, first.revision, first.revision),
        "prev_kv is the overwritten version"
    );
    let plain = put(store, &k, "v3").await?;
    assert_eq!(plain.prev_kv, None, "no prev_kv unless asked");

    let kept = store
        .put(PutRequest { ignore_value: true, ..PutRequest::new(k.clone(), Vec::new()) })
        .await?;
    let kv = get(store, &k).await?.context("key after ignore_value")?;
    assert_eq!(
        (text(&kv.value), kv.version, kv.mod_revision),
        ("v3".into(), 4, kept.revision),
        "ignore_value keeps the value and still writes a version"
    );

    let before = head(store).await?;
    expect_err(
        store
            .put(PutRequest {
                ignore_value: true,
                ..PutRequest::new(key(p, "missing"), Vec::new())
            })
            .await,
        StoreError::KeyNotFound,
        "ignore_value on a missing key",
    );
    expect_err(
        store.put(PutRequest { ignore_value: true, ..PutRequest::new(k.clone(), "x") }).await,
        StoreError::ValueProvided,
        "ignore_value with a value",
    );
    expect_err(
        store.put(PutRequest::new("", "v")).await,
        StoreError::EmptyKey,
        "put of an empty key",
    );
    assert_eq!(get(store, &key(p, "missing")).await?, None);
    assert_eq!(head(store).await?, before, "refused puts write nothing");
    Ok(())
}

pub async fn delete_options<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let dir = format!("{p}dir/");
    for name in ["a", "b", "c"] {
        put(store, &key(&dir, name), &format!("value-{name}")).await?;
    }
    put(store, &key(p, "dirx"), "outside").await?;
    let before = head(store).await?;

    let del = delete(store, KeyRange::prefix(dir.clone()), true).await?;
    assert_eq!(del.deleted, 3);
    assert_eq!(del.revision, before + 1, "a prefix delete is one revision");
    assert_eq!(names(&dir, &del.prev_kvs), ["a", "b", "c"], "prev_kvs in key order");
    let values: Vec<String> = del.prev_kvs.iter().map(|kv| text(&kv.value)).collect();
    assert_eq!(values, ["value-a", "value-b", "value-c"]);

    let after = range(store, RangeRequest::new(KeyRange::prefix(dir.clone()))).await?;
    assert!(after.kvs.is_empty(), "prefix delete left {:?}", names(&dir, &after.kvs));
    let at_before = range(
        store,
        RangeRequest { revision: before, ..RangeRequest::new(KeyRange::prefix(dir.clone())) },
    )
    .await?;
    assert_eq!(at_before.kvs.len(), 3, "the deleted keys remain in history");
    assert_eq!(value(store, &key(p, "dirx")).await?.as_deref(), Some("outside"));

    let single = delete(store, KeyRange::single(key(p, "dirx")), true).await?;
    assert_eq!(single.deleted, 1);
    assert_eq!(names(p, &single.prev_kvs), ["dirx"]);
    assert_eq!(text(&single.prev_kvs[0].value), "outside");

    put(store, &key(p, "quiet"), "v").await?;
    let quiet = delete(store, KeyRange::single(key(p, "quiet")), false).await?;
    assert_eq!(quiet.deleted, 1);
    assert!(quiet.prev_kvs.is_empty(), "no prev_kvs unless asked");
    Ok(())
}

// ---- transactions --------------------------------------------------------------------------

pub async fn txn_compares<S: KvStore>(store: &S, p: &str) -> Result<()> {
    use CompareResult::*;
    use CompareTarget::*;

    let k = key(p, "k");
    let create = put(store, &k, "v1").await?.revision;
    let modified = put(store, &k, "v2").await?.revision;
    let missing = key(p, "missing");
    let lease = store.lease_grant(0, 60).await?.id;
    let leased = key(p, "leased");
    put_with_lease(store, &leased, "v", lease).await?;

    let v = |s: &str| Value(s.as_bytes().to_vec());
    let (plain_key, leased_key, missing_key) =
        (k.as_slice(), leased.as_slice(), missing.as_slice());
    let cases: Vec<(&str, &[u8], CompareResult, CompareTarget, bool)> = vec![
        ("version =", plain_key, Equal, Version(2), true),
        ("version = wrong", plain_key, Equal, Version(1), false),
        ("version !=", plain_key, NotEqual, Version(1), true),
        ("version != same", plain_key, NotEqual, Version(2), false),
        ("version <", plain_key, Less, Version(3), true),
        ("version < equal", plain_key, Less, Version(2), false),
        ("version >", plain_key, Greater, Version(1), true),
        ("version > equal", plain_key, Greater, Version(2), false),
        ("create =", plain_key, Equal, Create(create), true),
        ("create <", plain_key, Less, Create(create + 1), true),
        ("create >", plain_key, Greater, Create(create), false),
        ("create !=", plain_key, NotEqual, Create(create + 1), true),
        ("mod =", plain_key, Equal, Mod(modified), true),
        ("mod = create", plain_key, Equal, Mod(create), false),
        ("mod >", plain_key, Greater, Mod(modified - 1), true),
        ("mod !=", plain_key, NotEqual, Mod(modified), false),
        ("mod <", plain_key, Less, Mod(modified + 1), true),
        ("value =", plain_key, Equal, v("v2"), true),
        ("value = old", plain_key, Equal, v("v1"), false),
        ("value >", plain_key, Greater, v("v1"), true),
        ("value <", plain_key, Less, v("v3"), true),
        ("value !=", plain_key, NotEqual, v("v2"), false),
        ("lease =", leased_key, Equal, Lease(lease), true),
        ("lease = none", leased_key, Equal, Lease(0), false),
        ("lease >", leased_key, Greater, Lease(0), true),
        ("lease !=", leased_key, NotEqual, Lease(0), true),
        ("lease <", leased_key, Less, Lease(0), false),
        ("lease of an unleased key", plain_key, Equal, Lease(0), true),
        ("missing version = 0", missing_key, Equal, Version(0), true),
        ("missing create = 0", missing_key, Equal, Create(0), true),
        ("missing mod > 0", missing_key, Greater, Mod(0), false),
        ("missing value = empty", missing_key, Equal, v(""), false),
        ("missing value != x", missing_key, NotEqual, v("x"), false),
    ];
    for (name, target_key, result, target, want) in cases {
        let resp = store
            .txn(TxnRequest {
                compare: vec![compare(target_key.to_vec(), result, target)],
                success: vec![range_op(target_key.to_vec())],
                failure: vec![],
            })
            .await
            .with_context(|| format!("compare case {name}"))?;
        assert_eq!(resp.succeeded, want, "compare case {name}");
        assert_eq!(resp.responses.len(), usize::from(want), "compare case {name}: branch ops");
    }

    // Over a range, every key must satisfy the comparison. Each transaction below carries a
    // linearizable read: one with no operations at all counts as serializable (as in etcd) and
    // may be answered from a lagging replica.
    let multi = format!("{p}multi/");
    put(store, &key(&multi, "x"), "1").await?;
    put(store, &key(&multi, "y"), "1").await?;
    put(store, &key(&multi, "y"), "2").await?;
    for (name, result, version, want) in [
        ("all versions > 0", Greater, 0, true),
        ("all versions = 1", Equal, 1, false),
        ("all versions < 3", Less, 3, true),
    ] {
        let resp = store
            .txn(TxnRequest {
                compare: vec![Compare {
                    range: KeyRange::prefix(multi.clone()),
                    result,
                    target: Version(version),
                }],
                success: vec![range_op(key(&multi, "x"))],
                failure: vec![],
            })
            .await?;
        assert_eq!(resp.succeeded, want, "range compare {name}");
    }

    // Several comparisons must all hold.
    let resp = store
        .txn(TxnRequest {
            compare: vec![
                compare(k.clone(), Equal, Version(2)),
                compare(k.clone(), Equal, v("nope")),
            ],
            success: vec![],
            failure: vec![range_op(k.clone())],
        })
        .await?;
    assert!(!resp.succeeded, "one false comparison fails the transaction");

    // Both branches write.
    let before = head(store).await?;
    let branches = |target: CompareTarget| TxnRequest {
        compare: vec![compare(k.clone(), Equal, target)],
        success: vec![put_op(key(p, "then"), "yes")],
        failure: vec![put_op(key(p, "else"), "no")],
    };
    let then = store.txn(branches(Mod(modified))).await?;
    assert!(then.succeeded);
    assert_eq!(then.revision, before + 1);
    assert!(
        matches!(then.responses.as_slice(), [TxnOpResponse::Put(r)] if r.revision == before + 1)
    );
    assert_eq!(value(store, &key(p, "then")).await?.as_deref(), Some("yes"));
    assert_eq!(value(store, &key(p, "else")).await?, None, "the failure branch did not run");

    let otherwise = store.txn(branches(Mod(create))).await?;
    assert!(!otherwise.succeeded);
    assert_eq!(otherwise.revision, before + 2);
    assert_eq!(value(store, &key(p, "else")).await?.as_deref(), Some("no"));
    let then_kv = get(store, &key(p, "then")).await?.context("then key")?;
    assert_eq!(then_kv.version, 1, "the success branch did not run again");

    store.lease_revoke(lease).await?;
    Ok(())
}

pub async fn txn_nested_and_own_writes<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let (a, b, c) = (key(p, "a"), key(p, "b"), key(p, "c"));
    put(store, &b, "old-b").await?;
    let before = head(store).await?;

    let resp = store
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                put_op(a.clone(), "1"),
                range_op(a.clone()),
                TxnOp::Delete(DeleteRequest { range: KeyRange::single(b.clone()), prev_kv: true }),
                range_op(b.clone()),
                TxnOp::Txn(TxnRequest {
                    // Evaluated against the state before the transaction (etcd's compareToPath):
                    // `a` did not exist yet.
                    compare: vec![compare(
                        a.clone(),
                        CompareResult::Equal,
                        CompareTarget::Version(0),
                    )],
                    success: vec![put_op(c.clone(), "nested-success")],
                    failure: vec![put_op(c.clone(), "nested-failure")],
                }),
            ],
            failure: vec![],
        })
        .await?;
    let rev = before + 1;
    assert!(resp.succeeded);
    assert_eq!(resp.revision, rev, "the whole transaction, nested one included, is one revision");
    let [TxnOpResponse::Put(_), TxnOpResponse::Range(read_a), TxnOpResponse::Delete(deleted_b), TxnOpResponse::Range(read_b), TxnOpResponse::Txn(nested)] =
        resp.responses.as_slice()
    else {
        panic!("unexpected response shape: {:?}", resp.responses);
    };
    assert_eq!(names(p, &read_a.kvs), ["a"], "a read sees the transaction's own put");
    assert_eq!((text(&read_a.kvs[0].value), read_a.kvs[0].mod_revision), ("1".into(), rev));
    assert_eq!(deleted_b.deleted, 1);
    assert_eq!(text(&deleted_b.prev_kvs[0].value), "old-b");
    assert!(read_b.kvs.is_empty(), "a read sees the transaction's own delete: {read_b:?}");
    assert!(nested.succeeded, "nested comparisons see the state before the transaction");
    assert_eq!(nested.revision, rev);
    assert!(matches!(nested.responses.as_slice(), [TxnOpResponse::Put(r)] if r.revision == rev));

    assert_eq!(value(store, &c).await?.as_deref(), Some("nested-success"));
    assert_eq!(get(store, &c).await?.context("c")?.mod_revision, rev);
    assert_eq!(get(store, &b).await?, None);
    assert_eq!(head(store).await?, rev);

    // A nested transaction in the failure branch.
    let resp = store
        .txn(TxnRequest {
            compare: vec![compare(a.clone(), CompareResult::Equal, CompareTarget::Version(0))],
            success: vec![put_op(key(p, "wrong"), "x")],
            failure: vec![TxnOp::Txn(TxnRequest {
                compare: vec![compare(a.clone(), CompareResult::Equal, CompareTarget::Version(1))],
                success: vec![put_op(key(p, "right"), "x")],
                failure: vec![],
            })],
        })
        .await?;
    assert!(!resp.succeeded);
    assert!(matches!(resp.responses.as_slice(), [TxnOpResponse::Txn(n)] if n.succeeded));
    assert_eq!(value(store, &key(p, "right")).await?.as_deref(), Some("x"));
    assert_eq!(value(store, &key(p, "wrong")).await?, None);
    Ok(())
}

pub async fn txn_refusals<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let before = head(store).await?;
    let many = |n: usize| TxnRequest {
        success: (0..n).map(|i| put_op(key(p, &format!("many/{i:03}")), "v")).collect(),
        ..Default::default()
    };
    expect_err(store.txn(many(MAX_TXN_OPS + 1)).await, StoreError::TooManyOps, "129 operations");
    expect_err(
        store
            .txn(TxnRequest {
                success: vec![put_op(key(p, "dup"), "1"), put_op(key(p, "dup"), "2")],
                ..Default::default()
            })
            .await,
        StoreError::DuplicateKey,
        "the same key put twice",
    );
    expect_err(
        store
            .txn(TxnRequest {
                success: vec![
                    put_op(key(p, "del/x"), "1"),
                    TxnOp::Delete(DeleteRequest {
                        range: KeyRange::prefix(key(p, "del/")),
                        prev_kv: false,
                    }),
                ],
                ..Default::default()
            })
            .await,
        StoreError::DuplicateKey,
        "a key put and deleted in one transaction",
    );
    // Passes validation but fails when applied: the first put must not be left behind.
    expect_err(
        store
            .txn(TxnRequest {
                success: vec![
                    put_op(key(p, "first"), "1"),
                    TxnOp::Put(PutRequest {
                        lease: UNKNOWN_LEASE,
                        ..PutRequest::new(key(p, "second"), "2")
                    }),
                ],
                ..Default::default()
            })
            .await,
        StoreError::LeaseNotFound,
        "a put with an unknown lease inside a transaction",
    );

    let big = vec![b'x'; 16 * 1024 * 1024 / 10];
    expect_err(
        store.put(PutRequest::new(key(p, "big"), big.clone())).await,
        StoreError::RequestTooLarge,
        "a 1.6 MiB put",
    );
    expect_err(
        store
            .txn(TxnRequest {
                success: vec![TxnOp::Put(PutRequest::new(key(p, "big"), big))],
                ..Default::default()
            })
            .await,
        StoreError::RequestTooLarge,
        "a transaction carrying a 1.6 MiB value",
    );

    assert_eq!(head(store).await?, before, "refused requests change nothing");
    let left = range(store, RangeRequest::new(KeyRange::prefix(p))).await?;
    assert!(left.kvs.is_empty(), "refused requests wrote {:?}", names(p, &left.kvs));

    // The limits themselves are allowed.
    let exactly = store.txn(many(MAX_TXN_OPS)).await.context("a txn of exactly 128 operations")?;
    assert_eq!(exactly.revision, before + 1);
    let written = range(
        store,
        RangeRequest { count_only: true, ..RangeRequest::new(KeyRange::prefix(key(p, "many/"))) },
    )
    .await?;
    assert_eq!(written.count, MAX_TXN_OPS as i64);
    // The size limit itself is checked on a local store (`local::requests_up_to_the_size_limit`):
    // replicating a value near it is a matter of Raft timing, not of etcd semantics.
    Ok(())
}

// ---- watches -------------------------------------------------------------------------------

pub async fn watch_history_then_live<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let (a, b) = (key(p, "a"), key(p, "b"));
    let ra = put(store, &a, "1").await?.revision;
    let rb = put(store, &b, "1").await?.revision;
    let rd = delete(store, KeyRange::single(a.clone()), false).await?.revision;
    let rt = store
        .txn(TxnRequest {
            success: vec![
                put_op(key(p, "x"), "1"),
                put_op(key(p, "y"), "1"),
                TxnOp::Delete(DeleteRequest { range: KeyRange::single(b.clone()), prev_kv: false }),
            ],
            ..Default::default()
        })
        .await?
        .revision;

    let mut watcher = store.watch(prefix_watch(p, ra))?;
    let batch = next_batch(&mut watcher, "replayed put of a").await?;
    assert_eq!(batch.revision, ra);
    let event = single_event(&batch, "put of a");
    assert_eq!(event.kind, EventKind::Put);
    assert_eq!(
        (
            event.kv.key.clone(),
            text(&event.kv.value),
            event.kv.version,
            event.kv.create_revision,
            event.kv.mod_revision
        ),
        (a.clone(), "1".into(), 1, ra, ra)
    );
    let batch = next_batch(&mut watcher, "replayed put of b").await?;
    assert_eq!((batch.revision, single_event(&batch, "put of b").kv.key), (rb, b.clone()));
    let batch = next_batch(&mut watcher, "replayed delete of a").await?;
    let event = single_event(&batch, "delete of a");
    assert_eq!((batch.revision, event.kind, event.kv.key), (rd, EventKind::Delete, a.clone()));
    assert_eq!(event.kv.mod_revision, rd, "a delete event carries the delete's revision");
    let batch = next_batch(&mut watcher, "replayed transaction").await?;
    assert_eq!(batch.revision, rt);
    let kinds: Vec<(String, EventKind)> =
        batch.events.iter().map(|e| (text(&e.kv.key[p.len()..]), e.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("x".into(), EventKind::Put),
            ("y".into(), EventKind::Put),
            ("b".into(), EventKind::Delete)
        ],
        "one batch per revision, events in operation order"
    );

    eprintln!("--- kv suite: watch_history_then_live: live events after the replay");
    let rc = put(store, &key(p, "c"), "live").await?.revision;
    let batch = next_batch(&mut watcher, "live put of c").await?;
    assert_eq!(batch.revision, rc);
    assert_eq!(text(&single_event(&batch, "live put").kv.value), "live");

    // start_revision 0 means "changes after now".
    head(store).await?;
    let mut from_now = store.watch(prefix_watch(p, 0))?;
    let rn = put(store, &key(p, "now"), "1").await?.revision;
    let batch = next_batch(&mut from_now, "first event of a watch from now").await?;
    assert_eq!(batch.revision, rn, "a watch from now replays no history");
    Ok(())
}

/// More revisions than a watcher reads from history at once are replayed in order.
pub async fn watch_long_history<S: KvStore>(store: &S, p: &str) -> Result<()> {
    const WRITES: i64 = 300;
    let first = put(store, &key(p, "k"), "0").await?.revision;
    for i in 1..WRITES {
        // Unrelated revisions in between must not break the replay.
        if i % 50 == 0 {
            put(store, b"suite/watch_long_history_other", "x").await?;
        }
        put(store, &key(p, "k"), &i.to_string()).await?;
    }
    let mut watcher = store.watch(prefix_watch(p, first))?;
    let mut previous = first - 1;
    for i in 0..WRITES {
        let batch = match next_batch(&mut watcher, &format!("replayed write {i}")).await {
            Ok(batch) => batch,
            Err(err) => {
                let progress = watcher.progress();
                let local = store.current_revision();
                let head = head(store).await?;
                return Err(err.context(format!(
                    "watch from {first}: delivered up to {previous}, watcher progress {progress}, \
                     replica revision {local} (head {head})"
                )));
            }
        };
        assert!(
            batch.revision > previous,
            "revisions out of order: {} after {previous}",
            batch.revision
        );
        previous = batch.revision;
        let event = single_event(&batch, "replayed write");
        assert_eq!(text(&event.kv.value), i.to_string(), "replayed write {i}");
        assert_eq!(event.kv.version, i + 1);
    }
    let live = put(store, &key(p, "k"), "live").await?.revision;
    let batch = next_batch(&mut watcher, "live write after a long replay").await?;
    assert_eq!(batch.revision, live);
    Ok(())
}

pub async fn watch_prefix<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let inside = format!("{p}in/");
    let start = head(store).await? + 1;
    let mut watcher = store.watch(prefix_watch(&inside, start))?;
    put(store, &key(p, "out/x"), "1").await?;
    let ra = put(store, &key(&inside, "a"), "1").await?.revision;
    put(store, &key(p, "inx"), "1").await?; // shares the text but lies past the prefix
    put(store, &key(p, "in"), "1").await?; // the prefix without its slash
    let rb = put(store, &key(&inside, "b"), "1").await?.revision;

    for (want, rev) in [("a", ra), ("b", rb)] {
        let batch = next_batch(&mut watcher, &format!("prefixed put of {want}")).await?;
        assert_eq!(batch.revision, rev, "only keys under the prefix are delivered");
        assert_eq!(
            names(&inside, &batch.events.iter().map(|e| e.kv.clone()).collect::<Vec<_>>()),
            [want]
        );
    }

    // A single-key watch.
    let single = key(p, "single");
    let mut one = store.watch(WatchRequest {
        range: KeyRange::single(single.clone()),
        start_revision: head(store).await? + 1,
        ..Default::default()
    })?;
    put(store, &key(p, "single2"), "1").await?;
    let rs = put(store, &single, "1").await?.revision;
    let batch = next_batch(&mut one, "single-key watch").await?;
    assert_eq!((batch.revision, single_event(&batch, "single key").kv.key), (rs, single));
    Ok(())
}

pub async fn watch_prev_kv<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let k = key(p, "k");
    let start = head(store).await? + 1;
    let mut watcher = store.watch(WatchRequest { prev_kv: true, ..prefix_watch(p, start) })?;
    let mut plain = store.watch(prefix_watch(p, start))?;
    let r1 = put(store, &k, "v1").await?.revision;
    let r2 = put(store, &k, "v2").await?.revision;
    let r3 = delete(store, KeyRange::single(k.clone()), false).await?.revision;

    let e1 = single_event(&next_batch(&mut watcher, "put v1").await?, "put v1");
    assert_eq!(e1.prev_kv, None, "a created key has no previous value");
    let e2 = single_event(&next_batch(&mut watcher, "put v2").await?, "put v2");
    let prev = e2.prev_kv.context("prev_kv of an overwrite")?;
    assert_eq!((text(&prev.value), prev.mod_revision, prev.version), ("v1".into(), r1, 1));
    assert_eq!(e2.kv.mod_revision, r2);
    let e3 = single_event(&next_batch(&mut watcher, "delete").await?, "delete");
    assert_eq!(e3.kind, EventKind::Delete);
    let prev = e3.prev_kv.context("prev_kv of a delete")?;
    assert_eq!((text(&prev.value), prev.mod_revision), ("v2".into(), r2));
    assert_eq!(e3.kv.mod_revision, r3);

    let plain_event =
        single_event(&next_batch(&mut plain, "put v1 without prev_kv").await?, "plain");
    assert_eq!(plain_event.prev_kv, None, "no prev_kv unless asked");
    let plain_event =
        single_event(&next_batch(&mut plain, "put v2 without prev_kv").await?, "plain");
    assert_eq!(plain_event.prev_kv, None, "no prev_kv unless asked");
    Ok(())
}

pub async fn watch_filters<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let start = head(store).await? + 1;
    let mut no_put = store.watch(WatchRequest { no_put: true, ..prefix_watch(p, start) })?;
    let mut no_delete = store.watch(WatchRequest { no_delete: true, ..prefix_watch(p, start) })?;
    let ra = put(store, &key(p, "a"), "1").await?.revision;
    let rb = put(store, &key(p, "b"), "1").await?.revision;
    let rda = delete(store, KeyRange::single(key(p, "a")), false).await?.revision;
    let rc = put(store, &key(p, "c"), "1").await?.revision;
    let rdb = delete(store, KeyRange::single(key(p, "b")), false).await?.revision;

    for (rev, name) in [(rda, "a"), (rdb, "b")] {
        let batch = next_batch(&mut no_put, &format!("delete of {name} without puts")).await?;
        let event = single_event(&batch, "no_put");
        assert_eq!(
            (batch.revision, event.kind),
            (rev, EventKind::Delete),
            "no_put delivers only deletes"
        );
    }
    for (rev, name) in [(ra, "a"), (rb, "b"), (rc, "c")] {
        let batch = next_batch(&mut no_delete, &format!("put of {name} without deletes")).await?;
        let event = single_event(&batch, "no_delete");
        assert_eq!(
            (batch.revision, event.kind),
            (rev, EventKind::Put),
            "no_delete delivers only puts"
        );
    }
    Ok(())
}

// ---- compaction ----------------------------------------------------------------------------

pub async fn compaction<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let k = key(p, "k");
    let r1 = put(store, &k, "v1").await?.revision;
    let r2 = put(store, &k, "v2").await?.revision;
    let r3 = put(store, &k, "v3").await?.revision;
    let gone = key(p, "gone");
    let r4 = put(store, &gone, "x").await?.revision;
    let r5 = delete(store, KeyRange::single(gone.clone()), false).await?.revision;

    let current = store.compact(r2).await.context("compact")?;
    assert_eq!(current, r5, "compact answers the current revision");
    let now = head(store).await?;
    assert_eq!(now, r5, "compaction is not a new revision");

    let compacted = StoreError::Compacted { compact_revision: r2 };
    expect_err(get_at(store, &k, r1).await, compacted.clone(), "range before the compaction point");
    let at_point = get_at(store, &k, r2).await?.context("key at the compaction point")?;
    assert_eq!(text(&at_point.value), "v2", "the compaction point itself stays readable");
    assert_eq!(text(&get_at(store, &k, r3).await?.context("key after compaction")?.value), "v3");
    assert_eq!(text(&get_at(store, &gone, r4).await?.context("later history")?.value), "x");
    expect_err(
        get_at(store, &k, now + 1000).await,
        StoreError::FutureRevision,
        "range in the future",
    );

    expect_err(store.compact(r2).await, compacted.clone(), "compacting at the same revision again");
    expect_err(store.compact(r1).await, compacted.clone(), "compacting below the compaction point");
    expect_err(
        store.compact(now + 1000).await,
        StoreError::FutureRevision,
        "compacting the future",
    );

    let refused = store.watch(prefix_watch(p, r1)).map(|_| ());
    expect_err(refused, compacted.clone(), "a watch from a compacted revision");
    let refused = store.watch(prefix_watch(p, 1)).map(|_| ());
    expect_err(refused, compacted, "a watch from revision 1");

    let mut watcher = store.watch(prefix_watch(p, r2))?;
    let mut seen = Vec::new();
    for i in 0..4 {
        let batch =
            next_batch(&mut watcher, &format!("event {i} after the compaction point")).await?;
        let event = single_event(&batch, "replay after compaction");
        seen.push((batch.revision, event.kind, text(&event.kv.value)));
    }
    assert_eq!(
        seen,
        [
            (r2, EventKind::Put, "v2".into()),
            (r3, EventKind::Put, "v3".into()),
            (r4, EventKind::Put, "x".into()),
            (r5, EventKind::Delete, String::new()),
        ],
        "a watch from the compaction point replays what is left"
    );
    Ok(())
}

// ---- leases --------------------------------------------------------------------------------

pub async fn leases<S: KvStore>(store: &S, p: &str) -> Result<()> {
    let before = head(store).await?;
    let short = store.lease_grant(0, 1).await.context("grant a 1 s lease")?;
    assert!(short.id > 0, "the server picks a positive id, got {}", short.id);
    assert_eq!(
        short.ttl, 1,
        "the store grants the TTL asked for (etcd's minimum is the etcd service's)"
    );
    assert_eq!(short.revision, before, "granting a lease writes no revision");
    store.lease_revoke(short.id).await?;

    let granted = store.lease_grant(0, 60).await?;
    let id = granted.id;
    assert!(id > 0 && id != short.id);
    assert_eq!(granted.ttl, 60);
    expect_err(store.lease_grant(id, 60).await, StoreError::LeaseExists, "granting an existing id");
    expect_err(
        store.lease_grant(0, MAX_LEASE_TTL + 1).await,
        StoreError::LeaseTtlTooLarge,
        "a TTL over the maximum",
    );

    let (k1, k2, k3) = (key(p, "k1"), key(p, "k2"), key(p, "k3"));
    put_with_lease(store, &k1, "1", id).await?;
    put_with_lease(store, &k2, "2", id).await?;
    put_with_lease(store, &k3, "3", id).await?;
    put(store, &k3, "detached").await?; // a put without the lease detaches the key
    assert_eq!(get(store, &k1).await?.context("leased key")?.lease, id);
    assert_eq!(get(store, &k3).await?.context("detached key")?.lease, 0);

    let ttl = store.lease_time_to_live(id, true).await?;
    assert_eq!(ttl.id, id);
    assert_eq!(ttl.granted_ttl, 60);
    assert!(ttl.ttl > 0 && ttl.ttl <= 60, "remaining TTL {} within the granted 60 s", ttl.ttl);
    assert_eq!(ttl.keys, [k1.clone(), k2.clone()], "time_to_live lists the attached keys");
    let without_keys = store.lease_time_to_live(id, false).await?;
    assert!(without_keys.keys.is_empty(), "keys only when asked");

    head(store).await?;
    assert!(store.lease_ids().contains(&id), "lease_ids lists a granted lease");
    assert!(!store.lease_ids().contains(&short.id), "lease_ids omits a revoked lease");
    assert_eq!(store.lease_keep_alive(id).await?, 60, "keep-alive answers the TTL");

    expect_err(
        store.lease_keep_alive(UNKNOWN_LEASE).await,
        StoreError::LeaseNotFound,
        "keep-alive of an unknown lease",
    );
    assert_eq!(
        store.lease_time_to_live(UNKNOWN_LEASE, true).await?.ttl,
        -1,
        "TTL of an unknown lease"
    );
    let before_unknown = head(store).await?;
    expect_err(
        store
            .put(PutRequest { lease: UNKNOWN_LEASE, ..PutRequest::new(key(p, "orphan"), "v") })
            .await,
        StoreError::LeaseNotFound,
        "put with an unknown lease",
    );
    assert_eq!(get(store, &key(p, "orphan")).await?, None);
    assert_eq!(head(store).await?, before_unknown, "a refused put writes nothing");

    eprintln!("--- kv suite: leases: revoke deletes the attached keys");
    let start = head(store).await? + 1;
    let mut watcher = store.watch(prefix_watch(p, start))?;
    let revoked = store.lease_revoke(id).await?;
    assert_eq!(revoked, start, "revoking deletes every attached key in one revision");
    let batch = next_batch(&mut watcher, "deletes of the revoked lease's keys").await?;
    assert_eq!(batch.revision, revoked);
    let deleted: Vec<(Vec<u8>, EventKind)> =
        batch.events.iter().map(|e| (e.kv.key.clone(), e.kind)).collect();
    assert_eq!(deleted, [(k1.clone(), EventKind::Delete), (k2.clone(), EventKind::Delete)]);
    let left = range(store, RangeRequest::new(KeyRange::prefix(p))).await?;
    assert_eq!(names(p, &left.kvs), ["k3"], "only the detached key survives the revoke");
    assert_eq!(store.lease_time_to_live(id, true).await?.ttl, -1, "a revoked lease is gone");
    expect_err(
        store.lease_keep_alive(id).await,
        StoreError::LeaseNotFound,
        "keep-alive of a revoked lease",
    );
    expect_err(store.lease_revoke(id).await, StoreError::LeaseNotFound, "revoking twice");
    Ok(())
}

/// A lease that is not kept alive expires after its TTL, and its keys with it.
pub async fn lease_expiry<S: KvStore>(store: &S, p: &str) -> Result<()> {
    const EXPIRY_DEADLINE: Duration = Duration::from_secs(4);
    let started = Instant::now();
    let grant = store.lease_grant(0, 2).await?;
    let k = key(p, "k");
    let rev = put_with_lease(store, &k, "v", grant.id).await?.revision;
    let mut watcher = store.watch(WatchRequest {
        range: KeyRange::single(k.clone()),
        start_revision: rev + 1,
        ..Default::default()
    })?;

    let k_ref = &k;
    let remaining = EXPIRY_DEADLINE.saturating_sub(started.elapsed());
    wait_until(remaining, "the 2 s lease to expire and delete its key", move || async move {
        Ok(get(store, k_ref).await?.is_none().then_some(()))
    })
    .await?;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1900), "a 2 s lease expired after only {elapsed:?}");
    eprintln!("--- kv suite: lease_expiry: expired after {elapsed:?}");

    let batch = next_batch(&mut watcher, "delete of the expired lease's key").await?;
    assert_eq!(single_event(&batch, "expiry").kind, EventKind::Delete);
    assert_eq!(
        store.lease_time_to_live(grant.id, false).await?.ttl,
        -1,
        "an expired lease is gone"
    );
    head(store).await?;
    assert!(!store.lease_ids().contains(&grant.id), "lease_ids omits an expired lease");
    Ok(())
}
