//! The cluster DNS over real sockets on 127.0.0.1: queries built with hickory-proto, a fake
//! upstream resolver started by each forwarding test.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use flotilla_net::dns::{DnsConfig, DnsServer, Zone, ZoneConfig, ZoneHandle};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single exchange may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);
/// The address the fake upstream answers every A question with.
const UPSTREAM_ADDRESS: [u8; 4] = [192, 0, 2, 53];

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": { "namespace": "default", "name": name },
        "spec": spec,
    }))
    .unwrap()
}

fn slice(name: &str, service: &str, endpoints: Value, ports: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .unwrap()
}

fn empty_zone() -> ZoneHandle {
    ZoneHandle::new(Zone::new(&ZoneConfig::default()).unwrap())
}

/// A zone with a ClusterIP service `web` (port `http`) and an ExternalName service `ext`.
fn web_zone() -> ZoneHandle {
    let zone = empty_zone();
    zone.upsert_service(&service(
        "web",
        json!({
            "clusterIP": "10.96.0.10",
            "ports": [{ "name": "http", "protocol": "TCP", "port": 80 }],
        }),
    ));
    zone.upsert_service(&service(
        "ext",
        json!({ "type": "ExternalName", "externalName": "db.example.com" }),
    ));
    zone
}

/// A running server and what stops it.
struct Running {
    address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(zone: ZoneHandle, upstreams: Vec<SocketAddr>) -> Result<Self> {
        let mut config = DnsConfig::new(vec!["127.0.0.1:0".parse()?], upstreams);
        config.upstream_timeout = Duration::from_millis(300);
        let server = DnsServer::bind(config, zone).await?;
        let address = server.local_addrs()[0];
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));
        Ok(Self { address, cancel, task })
    }

    async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .context("the server did not stop after cancellation")??;
        Ok(())
    }
}

fn question(name: &str, query_type: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(name).unwrap(), query_type));
    message
}

async fn ask_udp(server: SocketAddr, query: &Message) -> Result<(Message, usize)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(&query.to_vec()?, server).await?;
    let mut buffer = vec![0u8; 65_535];
    let len = tokio::time::timeout(PATIENCE, socket.recv(&mut buffer))
        .await
        .context("no udp reply")??;
    let reply = Message::from_vec(&buffer[..len])?;
    if reply.metadata.id != query.metadata.id {
        bail!("reply id {} for query id {}", reply.metadata.id, query.metadata.id);
    }
    Ok((reply, len))
}

async fn ask_tcp(stream: &mut TcpStream, query: &Message) -> Result<Message> {
    let bytes = query.to_vec()?;
    stream.write_all(&u16::try_from(bytes.len())?.to_be_bytes()).await?;
    stream.write_all(&bytes).await?;
    let exchange = async {
        let len = stream.read_u16().await?;
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await?;
        anyhow::Ok(reply)
    };
    let reply = tokio::time::timeout(PATIENCE, exchange).await.context("no tcp reply")??;
    let reply = Message::from_vec(&reply)?;
    if reply.metadata.id != query.metadata.id {
        bail!("reply id {} for query id {}", reply.metadata.id, query.metadata.id);
    }
    Ok(reply)
}

fn rendered(records: &[Record]) -> Vec<String> {
    let mut rendered: Vec<String> = records
        .iter()
        .map(|record| format!("{} {} {}", record.name, record.record_type(), record.data))
        .collect();
    rendered.sort();
    rendered
}

#[tokio::test]
async fn a_service_resolves_over_udp_and_tcp_on_one_port() -> Result<()> {
    let server = Running::start(web_zone(), vec![]).await?;

    // --- udp
    let (reply, _) =
        ask_udp(server.address, &question("web.default.svc.cluster.local.", RecordType::A)).await?;
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(rendered(&reply.answers), ["web.default.svc.cluster.local. A 10.96.0.10"]);

    // --- tcp on the same port
    let mut stream = TcpStream::connect(server.address).await?;
    let reply =
        ask_tcp(&mut stream, &question("missing.default.svc.cluster.local.", RecordType::A))
            .await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);

    server.stop().await
}

#[tokio::test]
async fn srv_and_more_queries_share_one_tcp_connection() -> Result<()> {
    let server = Running::start(web_zone(), vec![]).await?;
    let mut stream = TcpStream::connect(server.address).await?;

    let srv = ask_tcp(
        &mut stream,
        &question("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
    )
    .await?;
    assert_eq!(
        rendered(&srv.answers),
        ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(rendered(&srv.additionals), ["web.default.svc.cluster.local. A 10.96.0.10"]);

    let aaaa =
        ask_tcp(&mut stream, &question("web.default.svc.cluster.local.", RecordType::AAAA)).await?;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty(), "no ipv6 cluster ip: nodata");

    server.stop().await
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> Result<()> {
    let zone = empty_zone();
    zone.upsert_service(&service("big", json!({ "clusterIP": "None" })));
    let endpoints: Vec<Value> =
        (1..=100).map(|host| json!({ "addresses": [format!("10.1.0.{host}")] })).collect();
    zone.upsert_slice(&slice("big-a", "big", Value::from(endpoints), json!([])));
    let server = Running::start(zone, vec![]).await?;
    let name = "big.default.svc.cluster.local.";

    // --- udp without edns: 512 bytes at most
    let (reply, len) = ask_udp(server.address, &question(name, RecordType::A)).await?;
    assert!(reply.metadata.truncation, "TC must be set");
    assert!(len <= 512, "a {len}-byte udp reply exceeds 512 bytes");
    assert_eq!(reply.queries.len(), 1, "the question is kept");

    // --- udp with a 1232-byte edns buffer: 100 addresses still do not fit
    let mut query = question(name, RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    query.set_edns(edns);
    let (reply, len) = ask_udp(server.address, &query).await?;
    assert!(reply.metadata.truncation);
    assert!(len <= 1232);

    // --- tcp: everything
    let mut stream = TcpStream::connect(server.address).await?;
    let reply = ask_tcp(&mut stream, &question(name, RecordType::A)).await?;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 100);

    // --- a small answer over udp is not truncated
    let zone_small = question("10-1-0-7.big.default.svc.cluster.local.", RecordType::A);
    let (reply, _) = ask_udp(server.address, &zone_small).await?;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 1);

    server.stop().await
}

#[tokio::test]
async fn an_update_is_visible_to_the_next_query() -> Result<()> {
    let zone = empty_zone();
    zone.upsert_service(&service("db", json!({ "clusterIP": "None" })));
    let server = Running::start(zone.clone(), vec![]).await?;
    let name = "db-0.db.default.svc.cluster.local.";

    let (before, _) = ask_udp(server.address, &question(name, RecordType::A)).await?;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);

    // --- the endpoint becomes ready
    zone.upsert_slice(&slice(
        "db-a",
        "db",
        json!([{ "addresses": ["10.1.0.1"], "hostname": "db-0", "conditions": { "ready": true } }]),
        json!([]),
    ));
    let (after, _) = ask_udp(server.address, &question(name, RecordType::A)).await?;
    assert_eq!(rendered(&after.answers), [format!("{name} A 10.1.0.1")]);

    // --- the slice goes away
    zone.remove_slice("default", "db-a");
    let (gone, _) = ask_udp(server.address, &question(name, RecordType::A)).await?;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    server.stop().await
}

/// A fake upstream resolver on 127.0.0.1 (UDP and TCP on one port) that answers every A
/// question with 192.0.2.53 and every other question with NODATA.
struct FakeUpstream {
    address: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    async fn start() -> Result<Self> {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            if let Ok(tcp) = TcpListener::bind(udp.local_addr()?).await {
                break (udp, tcp);
            }
        };
        let address = udp.local_addr()?;
        let cancel = CancellationToken::new();
        let udp_cancel = cancel.clone();
        let udp_task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let received = tokio::select! {
                    _ = udp_cancel.cancelled() => return,
                    received = udp.recv_from(&mut buffer) => received,
                };
                let Ok((len, peer)) = received else { return };
                let reply = Self::answer(&buffer[..len]);
                let _ = udp.send_to(&reply, peer).await;
            }
        });
        let tcp_cancel = cancel.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tcp_cancel.cancelled() => return,
                    accepted = tcp.accept() => accepted,
                };
                let Ok((mut stream, _)) = accepted else { return };
                let Ok(len) = stream.read_u16().await else { continue };
                let mut query = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut query).await.is_err() {
                    continue;
                }
                let reply = Self::answer(&query);
                let _ = stream.write_all(&(reply.len() as u16).to_be_bytes()).await;
                let _ = stream.write_all(&reply).await;
            }
        });
        Ok(Self { address, cancel, tasks: vec![udp_task, tcp_task] })
    }

    fn answer(query: &[u8]) -> Vec<u8> {
        let query = Message::from_vec(query).unwrap();
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.recursion_available = true;
        reply.add_queries(query.queries.iter().cloned());
        for question in &query.queries {
            if question.query_type() == RecordType::A {
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    300,
                    RData::A(A(UPSTREAM_ADDRESS.into())),
                ));
            }
        }
        reply.to_vec().unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn names_outside_the_cluster_are_forwarded_upstream() -> Result<()> {
    let upstream = FakeUpstream::start().await?;
    let server = Running::start(web_zone(), vec![upstream.address]).await?;

    // --- udp: the upstream's answer, with the client's id (checked by ask_udp)
    let (reply, _) = ask_udp(server.address, &question("www.example.com.", RecordType::A)).await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rendered(&reply.answers), ["www.example.com. A 192.0.2.53"]);
    assert!(!reply.metadata.authoritative);

    // --- tcp
    let mut stream = TcpStream::connect(server.address).await?;
    let reply = ask_tcp(&mut stream, &question("www.example.org.", RecordType::A)).await?;
    assert_eq!(rendered(&reply.answers), ["www.example.org. A 192.0.2.53"]);

    // --- reverse names the zone does not hold
    let (reply, _) =
        ask_udp(server.address, &question("8.8.8.8.in-addr.arpa.", RecordType::PTR)).await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.metadata.authoritative, "answered upstream");

    // --- an ExternalName's target is resolved upstream
    let (reply, _) =
        ask_udp(server.address, &question("ext.default.svc.cluster.local.", RecordType::A)).await?;
    assert_eq!(
        rendered(&reply.answers),
        ["db.example.com. A 192.0.2.53", "ext.default.svc.cluster.local. CNAME db.example.com.",]
    );

    server.stop().await?;
    upstream.stop().await;
    Ok(())
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() -> Result<()> {
    // --- one upstream that never answers, one whose port is closed
    let silent = UdpSocket::bind("127.0.0.1:0").await?;
    let closed = UdpSocket::bind("127.0.0.1:0").await?.local_addr()?;
    let server = Running::start(web_zone(), vec![silent.local_addr()?, closed]).await?;

    let (reply, _) = ask_udp(server.address, &question("www.example.com.", RecordType::A)).await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

    let mut stream = TcpStream::connect(server.address).await?;
    let reply = ask_tcp(&mut stream, &question("www.example.com.", RecordType::A)).await?;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

    // --- the zone still answers while upstreams are down
    let (reply, _) =
        ask_udp(server.address, &question("web.default.svc.cluster.local.", RecordType::A)).await?;
    assert_eq!(reply.answers.len(), 1);

    server.stop().await
}

#[tokio::test]
async fn a_slow_upstream_does_not_hold_up_other_queries() -> Result<()> {
    let silent = UdpSocket::bind("127.0.0.1:0").await?;
    let zone = web_zone();
    let mut config = DnsConfig::new(vec!["127.0.0.1:0".parse()?], vec![silent.local_addr()?]);
    config.upstream_timeout = Duration::from_secs(30);
    let server = DnsServer::bind(config, zone).await?;
    let address = server.local_addrs()[0];
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));

    // --- a query that waits on the silent upstream
    let waiting = UdpSocket::bind("127.0.0.1:0").await?;
    let forwarded = question("www.example.com.", RecordType::A);
    waiting.send_to(&forwarded.to_vec()?, address).await?;
    let mut buffer = vec![0u8; 512];
    tokio::time::timeout(PATIENCE, silent.recv_from(&mut buffer))
        .await
        .context("the query never reached the upstream")??;

    // --- meanwhile the zone answers
    let (reply, _) =
        ask_udp(address, &question("web.default.svc.cluster.local.", RecordType::A)).await?;
    assert_eq!(reply.answers.len(), 1);
    assert!(
        waiting.try_recv(&mut buffer).is_err(),
        "the forwarded query cannot have been answered yet"
    );

    // --- cancellation does not wait for the upstream timeout
    cancel.cancel();
    tokio::time::timeout(PATIENCE, task)
        .await
        .context("a pending forward kept the server alive")??;
    Ok(())
}

#[tokio::test]
async fn an_undecodable_query_gets_formerr() -> Result<()> {
    let server = Running::start(web_zone(), vec![]).await?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    // A header announcing one question, followed by a truncated name.
    let packet = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'a'];
    socket.send_to(&packet, server.address).await?;
    let mut buffer = vec![0u8; 512];
    let len = tokio::time::timeout(PATIENCE, socket.recv(&mut buffer)).await??;
    let reply = Message::from_vec(&buffer[..len])?;
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    server.stop().await
}

#[tokio::test]
async fn cancellation_stops_the_server_and_frees_the_port() -> Result<()> {
    let server = Running::start(web_zone(), vec![]).await?;
    let address = server.address;
    // An idle client connection must not keep the server alive.
    let _idle = TcpStream::connect(address).await?;
    let (reply, _) =
        ask_udp(address, &question("web.default.svc.cluster.local.", RecordType::A)).await?;
    assert_eq!(reply.answers.len(), 1);

    server.stop().await?;

    UdpSocket::bind(address).await.context("the udp port is still taken")?;
    TcpListener::bind(address).await.context("the tcp port is still taken")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_loops_on_every_worker_answer_and_stop_together() -> Result<()> {
    let upstream = FakeUpstream::start().await?;
    let server = Running::start(web_zone(), vec![upstream.address]).await?;
    let address = server.address;

    // --- many clients at once, zone and forwarded names mixed
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..32 {
        clients.spawn(async move {
            let (name, expected) = if client % 4 == 0 {
                ("www.example.com.", "www.example.com. A 192.0.2.53")
            } else {
                ("web.default.svc.cluster.local.", "web.default.svc.cluster.local. A 10.96.0.10")
            };
            for _ in 0..10 {
                let (reply, _) = ask_udp(address, &question(name, RecordType::A)).await?;
                assert_eq!(rendered(&reply.answers), [expected]);
            }
            anyhow::Ok(())
        });
    }
    while let Some(client) = clients.join_next().await {
        client??;
    }

    // --- every loop lets go of the shared socket
    server.stop().await?;
    UdpSocket::bind(address).await.context("the udp port is still taken")?;
    TcpListener::bind(address).await.context("the tcp port is still taken")?;
    upstream.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_ipv4_address_not_assigned_yet_can_be_bound() -> Result<()> {
    // 192.0.2.0/24 is reserved for documentation and on no interface here.
    let config = DnsConfig::new(vec!["192.0.2.77:0".parse()?], vec![]);
    let server = DnsServer::bind(config, empty_zone()).await?;
    assert_eq!(server.local_addrs()[0].ip().to_string(), "192.0.2.77");
    let cancel = CancellationToken::new();
    cancel.cancel();
    server.run(cancel).await;
    Ok(())
}
