//! UDP through service frontends: replies seem to come from the frontend.

use anyhow::Result;
use flotilla_ebpf::{Backends, Protocol, ServiceTable};

use crate::harness::{backends, frontend, vip, Backend, Outcome, Sandbox, ECONNREFUSED, EPERM};

#[test]
fn udp_replies_through_a_frontend_come_from_the_frontend() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let dns = Backend::udp("dns", 2)?;
    let service = frontend([10, 96, 0, 10], 53, Protocol::Udp);
    dataplane.upsert(service, &backends(&[&dns]))?;
    let mut client = sandbox.client()?;

    eprintln!("--- sendto and recvfrom on an unconnected socket");
    assert_eq!(
        client.udp(vip(service), false)?,
        Outcome::Answered { backend: "dns".into(), peer: None, from: Some(vip(service)) }
    );

    eprintln!("--- send and recv on a connected socket");
    assert_eq!(
        client.udp(vip(service), true)?,
        Outcome::Answered {
            backend: "dns".into(),
            peer: Some(vip(service)),
            from: Some(vip(service)),
        }
    );

    eprintln!("--- a TCP frontend does not catch UDP to its address and port");
    // A loopback address: untranslated, the datagram finds nobody and recv is refused.
    let tcp_only = frontend([127, 77, 0, 11], dns.address.port(), Protocol::Tcp);
    dataplane.upsert(tcp_only, &backends(&[&dns]))?;
    assert!(
        matches!(client.udp(vip(tcp_only), true)?, Outcome::Failed { errno: ECONNREFUSED, .. }),
        "UDP to a TCP frontend is not translated"
    );
    Ok(())
}

#[test]
fn a_udp_frontend_without_backends_refuses_sendto_with_eperm() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let service = frontend([10, 96, 0, 12], 53, Protocol::Udp);
    dataplane.upsert(service, &Backends::default())?;
    let mut client = sandbox.client()?;

    for connected in [false, true] {
        match client.udp(vip(service), connected)? {
            Outcome::Failed { errno, .. } => assert_eq!(errno, EPERM, "connected: {connected}"),
            answered => panic!("expected a refusal, got {answered:?}"),
        }
    }
    Ok(())
}
