//! Gossip members on 127.0.0.1: joining through a seed, a crashed member declared down within
//! the detection budget while the live ones never are, a graceful leave, a restart coming
//! back under a new generation, and a restart waiting for its predecessor's port.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_net::gossip::{Gossip, GossipConfig, Members, Role, Timing};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the issue allows from a node's death to its NotReady, of which gossip takes part.
const DETECTION_BUDGET: Duration = Duration::from_millis(2500);

async fn member(name: &str, role: Role, seeds: &[SocketAddr]) -> Gossip {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    Gossip::start(GossipConfig {
        name: name.into(),
        role,
        bind: loopback,
        advertise: loopback,
        seeds: seeds.to_vec(),
        timing: Timing::default(),
    })
    .await
    .unwrap()
}

/// Waits up to `limit` for `members` to satisfy `check`; returns how long it took.
async fn until(
    members: &mut watch::Receiver<Members>,
    limit: Duration,
    what: &str,
    check: impl Fn(&Members) -> bool,
) -> Duration {
    let started = Instant::now();
    let waited = tokio::time::timeout(limit, members.wait_for(|m| check(m))).await.is_ok();
    assert!(waited, "{what} within {limit:?}; membership: {:?}", members.borrow());
    started.elapsed()
}

fn alive(members: &Members, name: &str) -> bool {
    members.get(name).is_some_and(|m| m.alive)
}

#[tokio::test]
async fn members_join_through_a_seed_and_a_crashed_one_is_found_dead_in_time() {
    let master = member("master-1", Role::Master, &[]).await;
    let seed = [master.advertise()];
    let (a, b, c) = (
        member("node-a", Role::Agent, &seed).await,
        member("node-b", Role::Agent, &seed).await,
        member("node-c", Role::Agent, &seed).await,
    );
    let mut seen = master.members();
    until(&mut seen, Duration::from_secs(5), "the master sees the three agents", |m| {
        ["node-a", "node-b", "node-c"].iter().all(|n| alive(m, n))
    })
    .await;
    let mut seen_by_a = a.members();
    until(&mut seen_by_a, Duration::from_secs(5), "an agent learns of the others", |m| {
        alive(m, "node-b") && alive(m, "node-c") && alive(m, "master-1")
    })
    .await;
    assert_eq!(seen.borrow()["node-a"].role, Role::Agent);

    // --- steady state: nobody is suspected long enough to be declared down
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = seen.borrow().clone();
    assert!(now.values().all(|m| m.alive), "a false alarm: {now:?}");

    // --- node-c crashes (no goodbye)
    let generation = now["node-c"].generation;
    drop(c);
    let took = until(&mut seen, DETECTION_BUDGET, "node-c declared down", |m| {
        m.get("node-c").is_some_and(|c| !c.alive)
    })
    .await;
    eprintln!("a crashed member was declared down after {took:?}");
    assert!(alive(&seen.borrow(), "node-a") && alive(&seen.borrow(), "node-b"));

    // --- it restarts at another port: up again under a later generation
    let c = member("node-c", Role::Agent, &seed).await;
    until(&mut seen, Duration::from_secs(5), "node-c back", |m| {
        m.get("node-c").is_some_and(|c| c.alive && c.generation > generation)
    })
    .await;

    // --- node-b leaves: its goodbye spreads, no probe has to fail
    b.shutdown().await;
    let took = until(&mut seen, DETECTION_BUDGET, "node-b gone", |m| {
        m.get("node-b").is_some_and(|b| !b.alive)
    })
    .await;
    eprintln!("a member that left was down after {took:?}");
    drop((a, c, master));
}

#[tokio::test]
async fn a_restarted_member_waits_for_its_port_to_be_released() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let started = Instant::now();
    let member = Gossip::start(GossipConfig {
        name: "node-a".into(),
        role: Role::Agent,
        bind: port,
        advertise: port,
        seeds: Vec::new(),
        timing: Timing::default(),
    })
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the port");
    assert_eq!(member.advertise(), port);
    release.await.unwrap();
}
