use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};

use super::location::{self, Backend, Candidate, ProxyId, Scheme, Transport};
use super::rewrite::{self, Forwarded, Redirect};
use super::{decode_segment, verb};
use crate::error::ApiError;

fn id(text: &str) -> ProxyId {
    ProxyId::parse(text).unwrap()
}

fn backend(address: &str, host: &str, transport: Transport) -> Backend {
    Backend { address: address.parse().unwrap(), host: host.into(), transport }
}

fn message(result: Result<Backend, ApiError>) -> (u16, String) {
    let err = result.unwrap_err();
    (err.code_and_reason().0, err.to_string())
}

#[test]
fn ids_split_like_kubernetes() {
    let cases = [
        ("web", Some((Scheme::Http, "web", ""))),
        ("web:8080", Some((Scheme::Http, "web", "8080"))),
        ("web:http", Some((Scheme::Http, "web", "http"))),
        ("https:web:8443", Some((Scheme::Https, "web", "8443"))),
        ("http:web:", Some((Scheme::Http, "web", ""))),
        (":web:80", Some((Scheme::Http, "web", "80"))),
        ("ftp:web:21", None),
        (":8080", None),
        ("a:b:c:d", None),
        ("", None),
    ];
    for (text, expected) in cases {
        let parsed = ProxyId::parse(text).map(|id| (id.scheme, id.name, id.port));
        let expected = expected.map(|(s, n, p)| (s, n.to_string(), p.to_string()));
        assert_eq!(parsed, expected, "{text:?}");
    }
}

#[test]
fn escaped_ids_are_decoded() {
    assert_eq!(decode_segment("web-0%3A8080"), "web-0:8080");
    assert_eq!(decode_segment("https%3aweb%3A1"), "https:web:1");
    assert_eq!(decode_segment("100%"), "100%");
    assert_eq!(decode_segment("a%zzb"), "a%zzb");
    assert_eq!(decode_segment("a%+1b"), "a%+1b");
}

#[test]
fn verbs_follow_the_method_only() {
    let cases = [
        (Method::GET, Some("get")),
        (Method::HEAD, Some("get")),
        (Method::POST, Some("create")),
        (Method::PUT, Some("update")),
        (Method::PATCH, Some("patch")),
        (Method::DELETE, Some("delete")),
        (Method::OPTIONS, Some("")),
        (Method::TRACE, None),
        (Method::CONNECT, None),
    ];
    for (method, expected) in cases {
        assert_eq!(verb(&method), expected, "{method}");
    }
}

fn pod(ip: Option<&str>) -> Value {
    let mut pod = json!({
        "metadata": { "name": "web-0" },
        "spec": {
            "initContainers": [{ "name": "sidecar", "ports": [{ "name": "admin", "containerPort": 9901 }] }],
            "containers": [
                { "name": "setup" },
                { "name": "app", "ports": [
                    { "name": "http", "containerPort": 8080 },
                    { "name": "metrics", "containerPort": 9090 },
                ] },
            ],
        },
        "status": {},
    });
    if let Some(ip) = ip {
        pod["status"]["podIP"] = json!(ip);
    }
    pod
}

#[test]
fn pods_are_reached_at_their_ip_and_port() {
    let pod = pod(Some("10.244.1.7"));
    let cases = [
        // The first port of the first container that has ports.
        ("web-0", backend("10.244.1.7:8080", "10.244.1.7:8080", Transport::Plain)),
        ("web-0:9090", backend("10.244.1.7:9090", "10.244.1.7:9090", Transport::Plain)),
        ("web-0:metrics", backend("10.244.1.7:9090", "10.244.1.7:9090", Transport::Plain)),
        ("web-0:admin", backend("10.244.1.7:9901", "10.244.1.7:9901", Transport::Plain)),
        ("https:web-0:8443", backend("10.244.1.7:8443", "10.244.1.7:8443", Transport::InsecureTls)),
    ];
    for (text, expected) in cases {
        assert_eq!(location::pod_backend(&pod, &id(text), true).unwrap(), expected, "{text}");
    }
}

#[test]
fn a_pod_without_ports_is_reached_on_the_schemes_port() {
    let mut pod = pod(Some("fd00::7"));
    pod["spec"]["containers"] = json!([{ "name": "app" }]);
    assert_eq!(
        location::pod_backend(&pod, &id("web-0"), true).unwrap(),
        backend("[fd00::7]:80", "[fd00::7]", Transport::Plain)
    );
    assert_eq!(
        location::pod_backend(&pod, &id("https:web-0:"), true).unwrap(),
        backend("[fd00::7]:443", "[fd00::7]", Transport::InsecureTls)
    );
}

#[test]
fn pod_ips_prefer_the_list() {
    let mut pod = pod(Some("10.0.0.1"));
    pod["status"]["podIPs"] = json!([{ "ip": "10.0.0.2" }, { "ip": "fd00::2" }]);
    let ips: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
    assert_eq!(location::pod_ips(&pod), ips);
    assert_eq!(location::pod_backend(&pod, &id("web-0:1"), true).unwrap().address.ip(), ips[0]);
}

#[test]
fn pods_without_a_usable_address_or_port_are_refused() {
    let cases = [
        (pod(None), "web-0", (400, "address not allowed")),
        (pod(Some("")), "web-0", (400, "address not allowed")),
        (pod(Some("169.254.169.254")), "web-0", (400, "address not allowed")),
        (pod(Some("0.0.0.0")), "web-0", (400, "address not allowed")),
        (pod(Some("224.0.0.1")), "web-0", (400, "address not allowed")),
        (pod(Some("fe80::1")), "web-0", (400, "address not allowed")),
        (
            pod(Some("10.0.0.1")),
            "web-0:grpc",
            (400, r#"pod "web-0" has no container port named "grpc""#),
        ),
        (pod(Some("10.0.0.1")), "web-0:70000", (400, r#"invalid port "70000" for pod "web-0""#)),
        (pod(Some("10.0.0.1")), "web-0:0", (400, r#"invalid port "0" for pod "web-0""#)),
    ];
    for (pod, text, (code, expected)) in cases {
        let (got_code, got) = message(location::pod_backend(&pod, &id(text), true));
        assert_eq!((got_code, got.as_str()), (code, expected), "{text} {}", pod["status"]);
    }
}

#[test]
fn private_addresses_may_be_proxied_and_loopback_only_when_allowed() {
    for ip in ["10.1.2.3", "192.168.1.1", "8.8.8.8", "fd00::1"] {
        assert!(location::proxyable(ip.parse().unwrap(), false), "{ip}");
    }
    for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert!(!location::proxyable(ip.parse().unwrap(), false), "{ip}");
        assert!(location::proxyable(ip.parse().unwrap(), true), "{ip}");
    }
    let pod = json!({"spec": {"containers": []}, "status": {"podIP": "127.0.0.1"}});
    assert_eq!(
        message(location::pod_backend(&pod, &id("p"), false)),
        (400, "address not allowed".to_string())
    );
    for ip in [
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "169.254.0.1",
        "ff02::1",
        "fe80::1",
        "::ffff:169.254.169.254",
    ] {
        assert!(!location::proxyable(ip.parse().unwrap(), true), "{ip}");
    }
}

fn service() -> Value {
    json!({
        "metadata": { "name": "web" },
        "spec": { "ports": [
            { "name": "http", "port": 80, "targetPort": "http" },
            { "name": "metrics", "port": 9090, "targetPort": 9090 },
        ] },
    })
}

#[test]
fn service_port_numbers_stand_for_their_names() {
    let service = service();
    let port = |text: &str| location::service_port_name(&service, &id(text));
    assert_eq!(port("web:80").unwrap(), "http");
    assert_eq!(port("web:9090").unwrap(), "metrics");
    assert_eq!(port("web:http").unwrap(), "http");
    assert_eq!(port("web").unwrap(), "");
    let unnamed = json!({ "spec": { "ports": [{ "port": 53 }] } });
    assert_eq!(location::service_port_name(&unnamed, &id("dns:53")).unwrap(), "");
    let err = port("web:81").unwrap_err();
    assert_eq!(err.code_and_reason(), (503, "ServiceUnavailable"));
    assert_eq!(err.to_string(), r#"no service port 81 found for service "web""#);
}

fn endpoint(ip: &str, ready: Option<bool>, pod: &str) -> Value {
    let mut endpoint = json!({
        "addresses": [ip],
        "conditions": {},
        "targetRef": { "kind": "Pod", "namespace": "default", "name": pod },
    });
    if let Some(ready) = ready {
        endpoint["conditions"]["ready"] = json!(ready);
    }
    endpoint
}

fn slice(address_type: &str, ports: Value, endpoints: Vec<Value>) -> Value {
    json!({ "addressType": address_type, "ports": ports, "endpoints": endpoints })
}

fn candidate(address: &str, pod: &str) -> Candidate {
    Candidate { address: address.parse().unwrap(), pod: Some(("default".into(), pod.into())) }
}

#[test]
fn service_candidates_are_ready_endpoints_of_the_named_port() {
    let http = json!([{ "name": "http", "port": 8080 }, { "name": "metrics", "port": 9090 }]);
    let slices = vec![
        slice(
            "IPv4",
            http.clone(),
            vec![
                endpoint("10.0.0.1", Some(true), "a"),
                endpoint("10.0.0.2", Some(false), "b"),
                endpoint("10.0.0.3", None, "c"),
            ],
        ),
        slice("FQDN", http.clone(), vec![endpoint("example.com", Some(true), "d")]),
        slice("IPv6", http, vec![endpoint("fd00::4", Some(true), "e")]),
        slice("IPv4", json!([{ "port": 53 }]), vec![endpoint("10.0.0.5", Some(true), "f")]),
    ];
    let first = |_: usize| 0;
    let found = location::service_candidates(&slices, "http", &mut first.clone());
    assert_eq!(
        found,
        vec![
            candidate("10.0.0.1:8080", "a"),
            candidate("10.0.0.3:8080", "c"),
            candidate("[fd00::4]:8080", "e"),
        ]
    );
    let found = location::service_candidates(&slices, "", &mut first.clone());
    assert_eq!(found, vec![candidate("10.0.0.5:53", "f")]);
    assert!(location::service_candidates(&slices, "grpc", &mut first.clone()).is_empty());

    // --- the starts are chosen at random: slice 2 first, then in slice 0 its second ready
    // endpoint
    let mut starts = [2, 0, 1].into_iter();
    let mut pick = |count: usize| starts.next().unwrap_or(0) % count;
    let found = location::service_candidates(&slices, "http", &mut pick);
    assert_eq!(found[0], candidate("[fd00::4]:8080", "e"));
    assert_eq!(&found[1..], &[candidate("10.0.0.3:8080", "c"), candidate("10.0.0.1:8080", "a")]);
    assert_eq!(
        found[0].backend(Scheme::Https),
        backend("[fd00::4]:8080", "[fd00::4]:8080", Transport::InsecureTls)
    );
}

#[test]
fn slices_without_endpoints_mean_no_endpoints() {
    assert!(location::no_endpoints(&[]));
    assert!(location::no_endpoints(&[slice("IPv4", json!([]), vec![])]));
    let not_ready = slice("IPv4", json!([]), vec![endpoint("10.0.0.1", Some(false), "a")]);
    assert!(!location::no_endpoints(&[not_ready]));
}

fn node(ip: &str, port: Option<u16>) -> Value {
    let mut node = json!({
        "metadata": { "name": "n1" },
        "status": { "addresses": [
            { "type": "Hostname", "address": "n1" },
            { "type": "InternalIP", "address": ip },
        ] },
    });
    if let Some(port) = port {
        node["status"]["daemonEndpoints"] = json!({ "kubeletEndpoint": { "Port": port } });
    }
    node
}

#[test]
fn nodes_are_reached_through_their_agent_unless_another_port_is_named() {
    let node = node("127.0.0.1", Some(10350));
    let cases = [
        ("n1", backend("127.0.0.1:10350", "127.0.0.1:10350", Transport::Agent)),
        ("n1:10350", backend("127.0.0.1:10350", "127.0.0.1:10350", Transport::Agent)),
        ("http:n1:10350", backend("127.0.0.1:10350", "127.0.0.1:10350", Transport::Agent)),
        ("n1:9100", backend("127.0.0.1:9100", "127.0.0.1:9100", Transport::Plain)),
        ("https:n1:9100", backend("127.0.0.1:9100", "127.0.0.1:9100", Transport::InsecureTls)),
    ];
    for (text, expected) in cases {
        assert_eq!(location::node_backend(&node, &id(text), true).unwrap(), expected, "{text}");
    }
    let defaulted = location::node_backend(&self::node("10.0.0.9", None), &id("n1"), true).unwrap();
    assert_eq!(defaulted.address, "10.0.0.9:10250".parse::<SocketAddr>().unwrap());

    let link_local = self::node("169.254.3.4", Some(10250));
    assert!(location::node_backend(&link_local, &id("n1"), true).is_ok());
    assert_eq!(
        message(location::node_backend(&link_local, &id("n1:22"), true)),
        (400, "address not allowed".into())
    );
    assert_eq!(
        message(location::node_backend(&node, &id("n1:ssh"), true)),
        (400, r#"invalid port "ssh" for node "n1""#.into())
    );
    let nowhere = json!({ "status": {} });
    assert_eq!(message(location::node_backend(&nowhere, &id("n1"), true)).0, 503);
}

#[test]
fn paths_split_after_the_proxy_segment() {
    let cases = [
        (
            "/api/v1/namespaces/default/pods/web/proxy/healthz",
            6,
            Some(("/api/v1/namespaces/default/pods/web/proxy", "/healthz")),
        ),
        (
            "/api/v1/namespaces/default/pods/web/proxy/",
            6,
            Some(("/api/v1/namespaces/default/pods/web/proxy", "/")),
        ),
        (
            "/api/v1/namespaces/default/pods/web/proxy",
            6,
            Some(("/api/v1/namespaces/default/pods/web/proxy", "")),
        ),
        ("/api/v1/nodes/n1/proxy/a/b/", 4, Some(("/api/v1/nodes/n1/proxy", "/a/b/"))),
        ("//api/v1//nodes/n1/proxy//x", 4, Some(("//api/v1//nodes/n1/proxy", "//x"))),
        ("/api/v1/nodes/n1", 4, None),
    ];
    for (path, index, expected) in cases {
        assert_eq!(rewrite::split_after_segment(path, index), expected, "{path}");
    }
}

#[test]
fn backend_paths_are_cleaned_and_keep_their_trailing_slash() {
    let cases = [
        ("", ""),
        ("/", "/"),
        ("/healthz", "/healthz"),
        ("/static/", "/static/"),
        ("//a//b", "/a/b"),
        ("/a/./b/../c/", "/a/c/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/a%20b/c%2Fd", "/a%20b/c%2Fd"),
    ];
    for (rest, expected) in cases {
        assert_eq!(rewrite::backend_path(rest), expected, "{rest:?}");
    }
    let prefix = "/api/v1/namespaces/default/pods/web/proxy";
    assert_eq!(rewrite::forwarded_uri(prefix, "/"), format!("{prefix}/"));
    assert_eq!(rewrite::forwarded_uri(prefix, "/healthz"), format!("{prefix}/healthz"));
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn requests_lose_credentials_and_hop_by_hop_headers() {
    let client = headers(&[
        ("authorization", "Bearer secret"),
        ("impersonate-user", "alice"),
        ("impersonate-group", "admins"),
        ("impersonate-extra-scopes", "all"),
        ("connection", "keep-alive, x-private"),
        ("x-private", "hop"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("content-length", "5"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic xyz"),
        ("host", "ignored"),
        ("x-forwarded-for", "192.0.2.1"),
        ("accept", "text/html"),
        ("cookie", "session=1"),
        ("content-type", "text/plain"),
    ]);
    let host = HeaderValue::from_static("127.0.0.1:6443");
    let forwarded = Forwarded {
        host: Some(&host),
        client_ip: Some("10.1.1.1".parse().unwrap()),
        uri: "/api/v1/namespaces/default/pods/web/proxy/x",
    };
    let sent = rewrite::request_headers(&client, &forwarded);
    let mut names: Vec<&str> = sent.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["accept", "content-type", "cookie", "host", "x-forwarded-for", "x-forwarded-uri"]
    );
    assert_eq!(sent["host"], "127.0.0.1:6443");
    assert_eq!(sent["x-forwarded-for"], "192.0.2.1, 10.1.1.1");
    assert_eq!(sent["x-forwarded-uri"], "/api/v1/namespaces/default/pods/web/proxy/x");
}

#[test]
fn upgrades_keep_their_upgrade_headers() {
    let client = headers(&[
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "abc"),
        ("authorization", "Bearer secret"),
    ]);
    assert!(rewrite::is_upgrade(&client));
    let forwarded = Forwarded { host: None, client_ip: None, uri: "/x" };
    let sent = rewrite::request_headers(&client, &forwarded);
    assert_eq!(sent["connection"], "Upgrade");
    assert_eq!(sent["upgrade"], "websocket");
    assert_eq!(sent["sec-websocket-key"], "abc");
    assert!(sent.get("authorization").is_none());
    assert!(!rewrite::is_upgrade(&headers(&[("connection", "keep-alive")])));
}

const PREFIX: &str = "/api/v1/namespaces/default/pods/web:8080/proxy";

fn redirect() -> Redirect<'static> {
    Redirect { backend_host: "10.0.0.5:8080", request_host: "localhost:8001", prefix: PREFIX }
}

#[test]
fn redirects_come_back_through_the_proxy() {
    let cases = [
        ("/login", format!("{PREFIX}/login")),
        ("/login?next=%2F#top", format!("{PREFIX}/login?next=%2F#top")),
        ("/static/", format!("{PREFIX}/static/")),
        ("/", format!("{PREFIX}/")),
        ("http://10.0.0.5:8080/login", format!("{PREFIX}/login")),
        ("https://user@10.0.0.5:8080/a", format!("{PREFIX}/a")),
        ("http://localhost:8001/login", format!("http://localhost:8001{PREFIX}/login")),
        (&format!("{PREFIX}/already"), format!("{PREFIX}/already")),
        ("//10.0.0.5:8080/x", format!("{PREFIX}/x")),
        // Other hosts and relative paths are left alone.
        ("https://example.com/login", "https://example.com/login".into()),
        ("login", "login".into()),
        ("../up", "../up".into()),
        ("mailto:someone@example.com", "mailto:someone@example.com".into()),
        ("http://10.0.0.5:8080", "http://10.0.0.5:8080".into()),
    ];
    for (location, expected) in cases {
        assert_eq!(rewrite::rewrite_location(location, &redirect()), expected, "{location}");
    }
}

#[test]
fn responses_lose_hop_by_hop_and_cors_headers() {
    let backend = headers(&[
        ("connection", "close"),
        ("transfer-encoding", "chunked"),
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("content-type", "text/html"),
        ("content-length", "12"),
        ("set-cookie", "a=1"),
        ("location", "/next"),
    ]);
    let relayed = rewrite::response_headers(&backend, &redirect(), false);
    let mut names: Vec<&str> = relayed.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "content-type", "location", "set-cookie"]);
    assert_eq!(relayed["location"], format!("{PREFIX}/next").as_str());

    let switching = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    let relayed = rewrite::response_headers(&switching, &redirect(), true);
    assert_eq!(relayed["upgrade"], "websocket");
    assert_eq!(relayed["connection"], "Upgrade");
}
