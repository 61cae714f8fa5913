//! The dataplane across agent restarts, and reset.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use flotilla_ebpf::{Backends, Dataplane, EbpfError, Protocol, ServiceTable};

use crate::harness::{
    backends, frontend, tcp_backends_seen, vip, Backend, Outcome, Sandbox, ECONNREFUSED,
};

/// One program per hook, as bpftool names the attach types.
const HOOKS: [&str; 4] = [
    "cgroup_inet4_connect",
    "cgroup_inet4_getpeername",
    "cgroup_udp4_recvmsg",
    "cgroup_udp4_sendmsg",
];

fn hooks() -> Vec<String> {
    HOOKS.iter().map(|hook| hook.to_string()).collect()
}

#[test]
fn translation_keeps_working_across_agent_restarts_and_list_reads_back_the_maps() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let (a, b, c) = (Backend::tcp("a", 2)?, Backend::tcp("b", 3)?, Backend::tcp("c", 4)?);
    let dns = Backend::udp("dns", 2)?;
    let web = frontend([10, 96, 1, 1], 80, Protocol::Tcp);
    let sticky = frontend([10, 96, 1, 2], 443, Protocol::Tcp);
    let resolver = frontend([10, 96, 1, 10], 53, Protocol::Udp);
    let empty = frontend([10, 96, 1, 3], 80, Protocol::Tcp);
    let mut programmed = BTreeMap::from([
        (web, backends(&[&a, &b])),
        (sticky, Backends { affinity: Some(Duration::from_secs(10_800)), ..backends(&[&c, &a]) }),
        (resolver, backends(&[&dns])),
        (empty, Backends::default()),
    ]);
    for (frontend, backends) in &programmed {
        dataplane.upsert(*frontend, backends)?;
    }
    assert_eq!(dataplane.list()?, programmed);
    assert_eq!(sandbox.attached()?, hooks());
    let mut client = sandbox.client()?;

    eprintln!("--- connect continuously while the agent stops, and while two agents start");
    let stop_file =
        std::env::temp_dir().join(format!("{}.stop", sandbox.cgroup.display()).replace('/', "_"));
    let hammer = client.hammer(vip(web), &stop_file)?;
    drop(dataplane);
    let reopened = sandbox.open()?;
    drop(reopened);
    let mut dataplane = sandbox.open()?;
    let result = hammer.finish()?;
    eprintln!("{} connections during the restarts", result.connections);
    ensure!(
        result.failures == 0,
        "{} of {} connections failed during restarts, last errors: {}",
        result.failures,
        result.connections,
        result.errors
    );
    ensure!(result.connections > 0);

    eprintln!("--- the new agent reads back what the old one programmed");
    assert_eq!(dataplane.list()?, programmed);
    assert_eq!(sandbox.attached()?, hooks(), "the old programs were detached");
    assert_eq!(client.udp(vip(resolver), false)?.backend()?, "dns");

    eprintln!("--- and changes it without disturbing the sets already there");
    let replaced = backends(&[&b, &c]);
    dataplane.upsert(web, &replaced)?;
    programmed.insert(web, replaced);
    let seen: Vec<String> = tcp_backends_seen(&mut client, vip(web), 30)?;
    assert!(seen.iter().all(|name| name == "b" || name == "c"), "{seen:?}");
    let sticky_seen = tcp_backends_seen(&mut client, vip(sticky), 5)?;
    assert!(sticky_seen.iter().all(|name| *name == sticky_seen[0]), "{sticky_seen:?}");
    assert_eq!(dataplane.list()?, programmed);
    drop(dataplane);
    assert_eq!(sandbox.open()?.list()?, programmed);
    Ok(())
}

#[test]
fn reset_leaves_nothing_pinned_or_attached() -> Result<()> {
    let sandbox = Sandbox::new()?;
    let mut dataplane = sandbox.open()?;
    let web = Backend::tcp("web", 2)?;
    let service = frontend([127, 77, 0, 2], web.address.port(), Protocol::Tcp);
    dataplane.upsert(service, &backends(&[&web]))?;
    let mut client = sandbox.client()?;
    assert_eq!(client.tcp(vip(service))?.backend()?, "web");
    assert!(sandbox.pin_dir.join("services").exists());

    eprintln!("--- reset while the dataplane is still open");
    flotilla_ebpf::reset(&sandbox.pin_dir)?;
    assert!(!sandbox.pin_dir.exists(), "the pin directory is gone");
    assert_eq!(sandbox.attached()?, Vec::<String>::new(), "no program is attached");
    assert!(
        matches!(client.tcp(vip(service))?, Outcome::Failed { errno: ECONNREFUSED, .. }),
        "connections to the frontend's address are no longer translated"
    );

    eprintln!("--- reset again: nothing left to do");
    drop(dataplane);
    flotilla_ebpf::reset(&sandbox.pin_dir)?;

    eprintln!("--- a new dataplane starts empty");
    let dataplane = sandbox.open()?;
    assert!(dataplane.list()?.is_empty());
    Ok(())
}

#[test]
fn maps_pinned_by_an_incompatible_build_are_refused() -> Result<()> {
    let sandbox = Sandbox::new()?;
    // Opening once mounts bpffs where it is not mounted yet; reset then empties the directory.
    drop(sandbox.open()?);
    flotilla_ebpf::reset(&sandbox.pin_dir)?;
    std::fs::create_dir_all(&sandbox.pin_dir)?;
    let status = Command::new("bpftool")
        .args(["map", "create"])
        .arg(sandbox.pin_dir.join("services"))
        .args(["type", "hash", "key", "8", "value", "8", "entries", "16", "name", "services"])
        .status()?;
    ensure!(status.success(), "bpftool map create failed");

    match Dataplane::open(&sandbox.config()) {
        Err(EbpfError::IncompatibleMap { path, .. }) => {
            assert_eq!(path, sandbox.pin_dir.join("services"))
        }
        other => panic!("expected an incompatible map, got {other:?}"),
    }
    assert_eq!(sandbox.attached()?, Vec::<String>::new(), "nothing was attached");
    Ok(())
}
