//! Services: cluster IPs from the service range, never shared, freed on deletion; node ports
//! from their range.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::{item_names, Reply, TestServer};

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name },
        "spec": { "selector": { "app": name }, "ports": [{ "port": 80, "targetPort": 8080 }] },
    })
}

fn cluster_ip(reply: &Reply) -> anyhow::Result<Ipv4Addr> {
    let ip = reply.json.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    ip.parse().map_err(|_| anyhow::anyhow!("no cluster IP in {}", reply.json))
}

/// Whether `ip` is in kubeadm's default service range, 10.96.0.0/12.
fn in_service_range(ip: Ipv4Addr) -> bool {
    u32::from(ip) & 0xfff0_0000 == u32::from(Ipv4Addr::new(10, 96, 0, 0))
}

#[tokio::test]
async fn cluster_ips_are_allocated_from_the_range_and_never_shared() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    // --- twenty services get twenty distinct addresses in the range
    let mut ips = BTreeSet::new();
    for index in 0..20 {
        let created = admin.post(SERVICES, &service(&format!("svc-{index}"))).await?;
        let created = created.expect(StatusCode::CREATED)?;
        let ip = cluster_ip(&created)?;
        assert!(in_service_range(ip), "{ip} is outside 10.96.0.0/12");
        assert_eq!(created.json.pointer("/spec/clusterIPs"), Some(&json!([ip.to_string()])));
        assert!(ips.insert(ip), "{ip} was given twice");
    }

    // --- asking for an address another service holds fails and creates nothing
    let taken = *ips.first().ok_or_else(|| anyhow::anyhow!("no addresses"))?;
    let mut wanted = service("copycat");
    wanted["spec"]["clusterIP"] = json!(taken.to_string());
    let reply = admin.post(SERVICES, &wanted).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());
    let message = reply.json["message"].as_str().unwrap_or_default();
    assert!(
        message
            .ends_with(&format!("failed to allocate IP {taken}: provided IP is already allocated")),
        "{message}"
    );
    assert_eq!(admin.get(&format!("{SERVICES}/copycat")).await?.status, StatusCode::NOT_FOUND);

    // --- asking for an address outside the range is invalid
    let mut outside = service("outsider");
    outside["spec"]["clusterIP"] = json!("192.168.1.1");
    let reply = admin.post(SERVICES, &outside).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());

    // --- a service's address cannot be changed
    let path = format!("{SERVICES}/svc-0");
    let current = admin.get(&path).await?.expect(StatusCode::OK)?;
    let mut moved = current.json.clone();
    moved["spec"]["clusterIP"] = json!("10.96.0.200");
    moved["spec"]["clusterIPs"] = json!(["10.96.0.200"]);
    let reply = admin.put(&path, &moved).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());
    assert_eq!(cluster_ip(&admin.get(&path).await?)?, cluster_ip(&current)?);

    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_each_get_their_own_ip_and_node_port() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    // Node ports come from 2,768 values: 64 at once may pick one value concurrently, and the
    // create that loses picks again instead of failing.
    let creates = (0..64).map(|index| {
        let admin = admin.clone();
        async move {
            let mut body = service(&format!("race-{index}"));
            body["spec"]["type"] = json!("NodePort");
            admin.post(SERVICES, &body).await?.expect(StatusCode::CREATED)
        }
    });
    let created = futures::future::try_join_all(creates).await?;
    let ips: BTreeSet<Ipv4Addr> = created.iter().map(cluster_ip).collect::<Result<_, _>>()?;
    let ports: BTreeSet<u64> = created
        .iter()
        .filter_map(|reply| reply.json.pointer("/spec/ports/0/nodePort")?.as_u64())
        .collect();
    assert_eq!((ips.len(), ports.len()), (64, 64), "every service got its own IP and port");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn deleting_a_service_frees_its_cluster_ip() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;
    let created = admin.post(SERVICES, &service("first")).await?.expect(StatusCode::CREATED)?;
    let ip = cluster_ip(&created)?;

    admin.delete(&format!("{SERVICES}/first")).await?.expect(StatusCode::OK)?;

    let mut wanted = service("second");
    wanted["spec"]["clusterIP"] = json!(ip.to_string());
    let reply = admin.post(SERVICES, &wanted).await?.expect(StatusCode::CREATED)?;
    assert_eq!(cluster_ip(&reply)?, ip);
    let list = admin.get(SERVICES).await?.expect(StatusCode::OK)?;
    assert_eq!(item_names(&list.json), ["kubernetes", "second"], "the bootstrap Service and ours");

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn node_port_services_get_a_port_in_range() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    let mut body = service("exposed");
    body["spec"]["type"] = json!("NodePort");
    body["spec"]["ports"] = json!([
        { "name": "http", "port": 80, "targetPort": 8080 },
        { "name": "https", "port": 443, "targetPort": 8443 },
    ]);
    let reply = admin.post(SERVICES, &body).await?.expect(StatusCode::CREATED)?;
    let ports: Vec<u64> = reply.json["spec"]["ports"]
        .as_array()
        .map(|ports| ports.iter().filter_map(|p| p["nodePort"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(ports.len(), 2, "{}", reply.json);
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)), "{ports:?}");
    assert_ne!(ports[0], ports[1]);

    // --- a ClusterIP service gets no node port
    let reply = admin.post(SERVICES, &service("internal")).await?.expect(StatusCode::CREATED)?;
    assert_eq!(reply.json.pointer("/spec/ports/0/nodePort"), None);

    // --- a node port outside the range is invalid
    let mut outside = service("outside");
    outside["spec"]["type"] = json!("NodePort");
    outside["spec"]["ports"][0]["nodePort"] = json!(8080);
    let reply = admin.post(SERVICES, &outside).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_taken_node_port_is_invalid() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.admin()?;

    // --- the first service takes port 30100, the second asks for it too
    let node_port = |name: &str| {
        let mut body = service(name);
        body["spec"]["type"] = json!("NodePort");
        body["spec"]["ports"][0]["nodePort"] = json!(30100);
        body
    };
    admin.post(SERVICES, &node_port("first")).await?.expect(StatusCode::CREATED)?;
    let reply = admin.post(SERVICES, &node_port("second")).await?;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());
    assert_eq!(
        reply.json["message"],
        r#"Service "second" is invalid: spec.ports[0].nodePort: Invalid value: 30100: provided port is already allocated"#
    );
    assert_eq!(admin.get(&format!("{SERVICES}/second")).await?.status, StatusCode::NOT_FOUND);

    server.stop().await;
    Ok(())
}
