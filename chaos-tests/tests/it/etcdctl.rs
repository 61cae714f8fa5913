//! The real etcdctl (3.4, Debian's etcd-client) against a 3-master `flotilla up`.

use std::time::Duration;

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_drives_a_three_master_cluster() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster");
    let cluster = Cluster::start(3)?;

    eprintln!("--- put, get, delete");
    assert_eq!(stdout_of(&cluster.etcdctl(&["put", "greeting", "hello"])?)?, "OK\n");
    assert_eq!(stdout_of(&cluster.etcdctl(&["get", "greeting"])?)?, "greeting\nhello\n");
    assert_eq!(
        stdout_of(&cluster.etcdctl(&["put", "greeting", "again", "--prev-kv"])?)?,
        "OK\ngreeting\nhello\n"
    );
    let json = stdout_of(&cluster.etcdctl(&["get", "greeting", "-w", "json"])?)?;
    assert!(json.contains("\"version\":2"), "second write is version 2: {json}");
    for key in ["p/a", "p/b", "p/c"] {
        stdout_of(&cluster.etcdctl(&["put", key, "v"])?)?;
    }
    assert_eq!(
        stdout_of(&cluster.etcdctl(&["get", "p/", "--prefix", "--keys-only", "--limit", "2"])?)?,
        "p/a\n\np/b\n\n"
    );
    assert_eq!(stdout_of(&cluster.etcdctl(&["del", "p/", "--prefix"])?)?, "3\n");
    assert_eq!(stdout_of(&cluster.etcdctl(&["get", "p/", "--prefix"])?)?, "");

    eprintln!("--- txn with a compare");
    let txn =
        "value(\"greeting\") = \"again\"\n\nput greeting txn-won\n\nput greeting txn-lost\n\n";
    let out = stdout_of(&cluster.etcdctl_input(&["txn"], Some(txn))?)?;
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(
        stdout_of(&cluster.etcdctl(&["get", "greeting", "--print-value-only"])?)?,
        "txn-won\n"
    );

    eprintln!("--- watch sees a change made through another command");
    let mut watch = cluster.etcdctl_watch_once()?;
    stdout_of(&cluster.etcdctl(&["put", "watched", "1"])?)?;
    let stdout = watch.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
            .take(3)
            .map_while(Result::ok)
            .collect();
        let _ = sender.send(lines);
    });
    let lines = receiver.recv_timeout(Duration::from_secs(20));
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(lines?, ["PUT", "watched", "1"]);

    eprintln!("--- leases: grant, attach, time-to-live, revoke deletes the key");
    let granted = stdout_of(&cluster.etcdctl(&["lease", "grant", "30"])?)?;
    let id = granted.split_whitespace().nth(1).expect("lease id").to_string();
    stdout_of(&cluster.etcdctl(&["put", "leased", "v", "--lease", &id])?)?;
    let ttl = stdout_of(&cluster.etcdctl(&["lease", "timetolive", &id, "--keys"])?)?;
    assert!(
        ttl.contains("granted with TTL(30s)") && ttl.contains("attached keys([leased])"),
        "{ttl}"
    );
    assert!(stdout_of(&cluster.etcdctl(&["lease", "list"])?)?.contains(&id));
    stdout_of(&cluster.etcdctl(&["lease", "revoke", &id])?)?;
    assert_eq!(stdout_of(&cluster.etcdctl(&["get", "leased"])?)?, "");
    let missing = cluster.etcdctl(&["lease", "revoke", &id])?;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("etcdserver: requested lease not found")
    );

    eprintln!("--- compaction and etcd's error strings");
    stdout_of(&cluster.etcdctl(&["compact", "3"])?)?;
    let old = cluster.etcdctl(&["get", "greeting", "--rev", "2"])?;
    assert!(String::from_utf8_lossy(&old.stderr)
        .contains("etcdserver: mvcc: required revision has been compacted"));
    let future = cluster.etcdctl(&["get", "greeting", "--rev", "100000"])?;
    assert!(String::from_utf8_lossy(&future.stderr)
        .contains("etcdserver: mvcc: required revision is a future revision"));
    let big = "x".repeat(1_700_000);
    let too_large = cluster.etcdctl_input(&["put", "big"], Some(&big))?;
    assert!(String::from_utf8_lossy(&too_large.stderr).contains("etcdserver: request is too large"));

    eprintln!("--- member list and endpoint status");
    let members = stdout_of(&cluster.etcdctl(&["member", "list"])?)?;
    assert_eq!(members.lines().count(), 3, "{members}");
    for member in &cluster.members {
        assert!(members.contains(&format!("started, {}, ", member.name)), "{members}");
        assert!(members.contains(&member.client_url), "{members}");
    }
    eprintln!("--- member add announces an unstarted learner; promote refuses it; remove");
    let added = stdout_of(&cluster.etcdctl(&[
        "member",
        "add",
        "extra",
        "--learner",
        "--peer-urls=https://127.0.0.1:9",
    ])?)?;
    assert!(added.contains("added to cluster"), "{added}");
    let id = added
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no member id in {added}"))?
        .to_string();
    let listed = stdout_of(&cluster.etcdctl(&["member", "list"])?)?;
    assert!(
        listed.contains(&format!("{id}, unstarted, , https://127.0.0.1:9, , true")),
        "{listed}"
    );
    let promote = cluster.etcdctl(&["member", "promote", &id])?;
    assert!(
        String::from_utf8_lossy(&promote.stderr)
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );
    let removed = stdout_of(&cluster.etcdctl(&["member", "remove", &id])?)?;
    // etcdctl pads the id to 16 columns here ("%16x"), unlike in its `member add` output.
    assert!(
        removed.starts_with("Member ") && removed.contains(&format!("{id} removed")),
        "{removed}"
    );
    assert_eq!(stdout_of(&cluster.etcdctl(&["member", "list"])?)?.lines().count(), 3);

    let status = stdout_of(&cluster.etcdctl(&["endpoint", "status"])?)?;
    assert_eq!(
        status.lines().filter(|l| l.contains(", true, false,")).count(),
        1,
        "one leader: {status}"
    );
    let health = cluster.etcdctl(&["endpoint", "health"])?;
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));

    eprintln!("--- every member serves the same data");
    for member in &cluster.members {
        let out = stdout_of(
            &cluster.etcdctl_on(&member.client_url, &["get", "watched", "--print-value-only"])?,
        )?;
        assert_eq!(out, "1\n", "{}", member.name);
    }
    let mut client = cluster.client(&[]).await?;
    wait_until(Duration::from_secs(5), "the cluster to answer a serializable read", || {
        let mut client = client.clone();
        async move {
            let options = etcd_client::GetOptions::new().with_serializable();
            client.get("watched", Some(options)).await.map(|r| r.kvs().len() == 1).unwrap_or(false)
        }
    })
    .await?;
    client.put("done", "yes", None).await?;
    Ok(())
}

trait WatchOnce {
    fn etcdctl_watch_once(&self) -> anyhow::Result<std::process::Child>;
}

impl WatchOnce for Cluster {
    /// Starts `etcdctl watch watched` and returns once the watch is established, so a later put
    /// is certain to be seen: the revision to start from is pinned explicitly.
    fn etcdctl_watch_once(&self) -> anyhow::Result<std::process::Child> {
        let json = stdout_of(&self.etcdctl(&["get", "nothing", "-w", "json"])?)?;
        let revision: i64 = json
            .split("\"revision\":")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no revision in {json}"))?;
        let child = std::process::Command::new("etcdctl")
            .args(["watch", "watched", "--rev", &(revision + 1).to_string()])
            .envs(self.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(child)
    }
}
