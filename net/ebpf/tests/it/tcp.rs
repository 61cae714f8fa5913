//! TCP through service frontends: translation, spreading, refusal, affinity, updates, removal.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use flotilla_ebpf::{Backends, Protocol, ServiceTable};

use crate::harness::{
    backends, frontend, tcp_backends_seen, vip, Backend, Outcome, Sandbox, ECONNREFUSED, EPERM,
};

#[test]
fn tcp_to_a_frontend_reaches_a_backend_and_the_application_sees_the_frontend() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let web = Backend::tcp("web", 2)?;
    let service = frontend([10, 96, 0, 1], 80, Protocol::Tcp);
    dataplane.upsert(service, &backends(&[&web]))?;
    let mut client = sandbox.client()?;

    eprintln!("--- connect to the frontend");
    let outcome = client.tcp(vip(service))?;
    assert_eq!(
        outcome,
        Outcome::Answered { backend: "web".into(), peer: Some(vip(service)), from: None },
        "the backend answers and getpeername shows the frontend"
    );

    eprintln!("--- other destinations are untouched");
    let outcome = client.tcp(web.address)?;
    assert_eq!(
        outcome,
        Outcome::Answered { backend: "web".into(), peer: Some(web.address), from: None }
    );
    Ok(())
}

#[test]
fn connections_spread_over_all_backends() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let pool = [Backend::tcp("a", 2)?, Backend::tcp("b", 3)?, Backend::tcp("c", 4)?];
    let service = frontend([10, 96, 0, 2], 8080, Protocol::Tcp);
    dataplane.upsert(service, &backends(&pool.iter().collect::<Vec<_>>()))?;
    let mut client = sandbox.client()?;

    let seen: BTreeSet<String> =
        tcp_backends_seen(&mut client, vip(service), 60)?.into_iter().collect();
    // A backend missing from 60 uniform picks out of 3 has probability 3 * (2/3)^60 < 1e-10.
    assert_eq!(seen, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
    Ok(())
}

#[test]
fn a_frontend_without_backends_refuses_connect_with_eperm_at_once() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let service = frontend([10, 96, 0, 3], 443, Protocol::Tcp);
    dataplane.upsert(service, &Backends::default())?;
    let mut client = sandbox.client()?;

    match client.tcp(vip(service))? {
        Outcome::Failed { errno, elapsed, .. } => {
            assert_eq!(errno, EPERM, "connect fails with EPERM");
            assert!(elapsed < Duration::from_secs(1), "refused at once, took {elapsed:?}");
        }
        answered => panic!("expected a refusal, got {answered:?}"),
    }
    Ok(())
}

#[test]
fn client_ip_affinity_keeps_a_backend_while_it_is_current_and_recent() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let pool = [Backend::tcp("a", 2)?, Backend::tcp("b", 3)?, Backend::tcp("c", 4)?];
    let service = frontend([10, 96, 0, 4], 80, Protocol::Tcp);
    let mut sticky = backends(&pool.iter().collect::<Vec<_>>());
    sticky.affinity = Some(Duration::from_secs(60));
    dataplane.upsert(service, &sticky)?;
    let mut client = sandbox.client()?;

    eprintln!("--- every connection goes to the first one's backend");
    let seen = tcp_backends_seen(&mut client, vip(service), 20)?;
    let first = seen[0].clone();
    assert!(seen.iter().all(|backend| *backend == first), "{seen:?}");

    eprintln!("--- the backend stays while it remains in the set, even when the set changes");
    let extra = Backend::tcp("d", 5)?;
    let mut grown = sticky.clone();
    grown.addresses.reverse();
    grown.addresses.push(extra.address);
    dataplane.upsert(service, &grown)?;
    let seen = tcp_backends_seen(&mut client, vip(service), 10)?;
    assert!(seen.iter().all(|backend| *backend == first), "{seen:?}");

    eprintln!("--- once the backend leaves the set, the client moves to another and stays");
    let remaining: Vec<&Backend> =
        pool.iter().chain([&extra]).filter(|backend| backend.name != first).collect();
    let mut shrunk = backends(&remaining);
    shrunk.affinity = sticky.affinity;
    dataplane.upsert(service, &shrunk)?;
    let seen = tcp_backends_seen(&mut client, vip(service), 10)?;
    assert!(seen[0] != first, "{seen:?}");
    assert!(seen.iter().all(|backend| *backend == seen[0]), "{seen:?}");
    Ok(())
}

#[test]
fn client_ip_affinity_expires_after_its_timeout() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let pool = [Backend::tcp("a", 2)?, Backend::tcp("b", 3)?, Backend::tcp("c", 4)?];
    let service = frontend([10, 96, 0, 5], 80, Protocol::Tcp);
    let mut sticky = backends(&pool.iter().collect::<Vec<_>>());
    let timeout = Duration::from_millis(100);
    sticky.affinity = Some(timeout);
    dataplane.upsert(service, &sticky)?;
    let mut client = sandbox.client()?;

    let first = client.tcp(vip(service))?.backend()?.to_owned();
    // The behaviour under test is the passing of time itself: idle past the timeout, and a
    // new pick happens (a different backend 2 times in 3); 12 idle periods all picking the
    // same backend has probability (1/3)^12.
    let mut moved = false;
    for _ in 0..12 {
        std::thread::sleep(timeout + Duration::from_millis(50));
        if client.tcp(vip(service))?.backend()? != first {
            moved = true;
            break;
        }
    }
    assert!(moved, "the client kept backend {first} after the affinity timeout");
    Ok(())
}

#[test]
fn replacing_backends_sends_new_connections_only_to_the_new_set() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let (a, b, c, d) = (
        Backend::tcp("a", 2)?,
        Backend::tcp("b", 3)?,
        Backend::tcp("c", 4)?,
        Backend::tcp("d", 5)?,
    );
    let service = frontend([10, 96, 0, 6], 80, Protocol::Tcp);
    let mut client = sandbox.client()?;
    let seen = |client: &mut _| -> Result<BTreeSet<String>> {
        Ok(tcp_backends_seen(client, vip(service), 40)?.into_iter().collect())
    };
    let names = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<BTreeSet<_>>();

    dataplane.upsert(service, &backends(&[&a, &b]))?;
    assert_eq!(seen(&mut client)?, names(&["a", "b"]));

    eprintln!("--- replace the whole set");
    dataplane.upsert(service, &backends(&[&c, &d]))?;
    assert_eq!(seen(&mut client)?, names(&["c", "d"]));

    eprintln!("--- append a backend");
    dataplane.upsert(service, &backends(&[&c, &d, &a]))?;
    assert_eq!(seen(&mut client)?, names(&["a", "c", "d"]));

    eprintln!("--- drop backends from the end");
    dataplane.upsert(service, &backends(&[&c]))?;
    assert_eq!(seen(&mut client)?, names(&["c"]));

    eprintln!("--- lose every backend");
    dataplane.upsert(service, &Backends::default())?;
    assert!(matches!(client.tcp(vip(service))?, Outcome::Failed { errno: EPERM, .. }));

    eprintln!("--- and get them back");
    dataplane.upsert(service, &backends(&[&b, &d]))?;
    assert_eq!(seen(&mut client)?, names(&["b", "d"]));
    Ok(())
}

#[test]
fn removing_a_frontend_stops_translation() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let web = Backend::tcp("web", 2)?;
    // A loopback frontend: without translation nothing listens there and connect is refused.
    let service = frontend([127, 77, 0, 1], web.address.port(), Protocol::Tcp);
    dataplane.upsert(service, &backends(&[&web]))?;
    let mut client = sandbox.client()?;
    assert_eq!(client.tcp(vip(service))?.backend()?, "web");

    dataplane.remove(service)?;
    assert!(
        matches!(client.tcp(vip(service))?, Outcome::Failed { errno: ECONNREFUSED, .. }),
        "the frontend's address is connected to as is"
    );
    assert!(dataplane.list()?.is_empty());
    dataplane.remove(service)?;
    Ok(())
}
