#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{
    ContainerPort, HostAlias, PodDNSConfig, PodDNSConfigOption, PodSecurityContext,
    SecurityContext, Sysctl,
};

use super::*;
use crate::pods::testing::*;

fn node() -> NodeSettings {
    NodeSettings {
        dns: DnsSettings {
            cluster_dns: vec!["10.96.0.10".to_owned()],
            cluster_domain: "cluster.local".to_owned(),
            resolv_conf: Some(
                "# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch lan. corp.example\noptions edns0 ndots:2\n"
                    .to_owned(),
            ),
            node_ips: vec!["192.168.1.10".to_owned()],
        },
        ..NodeSettings::default()
    }
}

fn spec_of(pod: &mut Pod) -> &mut k8s_openapi::api::core::v1::PodSpec {
    pod.spec.as_mut().unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn metadata_labels_and_log_directory_identify_the_pod() {
    let pod = with(pod(), |p| {
        p.metadata.annotations = Some(map(&[("note", "hi")]));
    });
    let sandbox = config(&pod, 2, &node()).unwrap();
    let config = sandbox.config;
    let metadata = config.metadata.unwrap();
    assert_eq!(
        (
            metadata.name.as_str(),
            metadata.namespace.as_str(),
            metadata.uid.as_str(),
            metadata.attempt
        ),
        ("web", "default", UID, 2)
    );
    assert_eq!(config.hostname, "web");
    assert_eq!(config.log_directory, format!("/var/log/pods/default_web_{UID}"));
    assert_eq!(config.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(config.labels.get(POD_NAME_LABEL).map(String::as_str), Some("web"));
    assert_eq!(config.labels.get(POD_NAMESPACE_LABEL).map(String::as_str), Some("default"));
    assert_eq!(config.labels.get(POD_UID_LABEL).map(String::as_str), Some(UID));
    assert_eq!(config.annotations.get("note").map(String::as_str), Some("hi"));
    assert!(sandbox.events.is_empty());
}

#[test]
fn dns_follows_the_dns_policy() {
    let cluster_search = strings(&[
        "default.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "lan",
        "corp.example",
    ]);
    // (case, pod change, node change, servers, searches, options)
    type Case =
        (&'static str, fn(&mut Pod), fn(&mut NodeSettings), Vec<String>, Vec<String>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "ClusterFirst uses the cluster DNS",
            |_| {},
            |_| {},
            strings(&["10.96.0.10"]),
            cluster_search.clone(),
            strings(&["ndots:5"]),
        ),
        (
            "ClusterFirst on the host network falls back to the node",
            |p| spec_of(p).host_network = Some(true),
            |_| {},
            strings(&["192.168.1.1", "192.168.1.2"]),
            strings(&["lan", "corp.example"]),
            strings(&["edns0", "ndots:2"]),
        ),
        (
            "ClusterFirstWithHostNet keeps the cluster DNS",
            |p| {
                spec_of(p).host_network = Some(true);
                spec_of(p).dns_policy = Some("ClusterFirstWithHostNet".to_owned());
            },
            |_| {},
            strings(&["10.96.0.10"]),
            cluster_search.clone(),
            strings(&["ndots:5"]),
        ),
        (
            "Default uses the node's resolv.conf",
            |p| spec_of(p).dns_policy = Some("Default".to_owned()),
            |_| {},
            strings(&["192.168.1.1", "192.168.1.2"]),
            strings(&["lan", "corp.example"]),
            strings(&["edns0", "ndots:2"]),
        ),
        (
            "None uses only dnsConfig",
            |p| {
                spec_of(p).dns_policy = Some("None".to_owned());
                spec_of(p).dns_config = Some(PodDNSConfig {
                    nameservers: Some(strings(&["1.1.1.1"])),
                    searches: Some(strings(&["example.com"])),
                    options: Some(vec![PodDNSConfigOption {
                        name: Some("ndots".to_owned()),
                        value: Some("1".to_owned()),
                    }]),
                });
            },
            |_| {},
            strings(&["1.1.1.1"]),
            strings(&["example.com"]),
            strings(&["ndots:1"]),
        ),
        (
            "dnsConfig adds to ClusterFirst and overrides ndots",
            |p| {
                spec_of(p).dns_config = Some(PodDNSConfig {
                    nameservers: Some(strings(&["10.96.0.10", "1.1.1.1"])),
                    searches: None,
                    options: Some(vec![
                        PodDNSConfigOption {
                            name: Some("ndots".to_owned()),
                            value: Some("2".to_owned()),
                        },
                        PodDNSConfigOption { name: Some("single-request".to_owned()), value: None },
                    ]),
                });
            },
            |_| {},
            strings(&["10.96.0.10", "1.1.1.1"]),
            cluster_search.clone(),
            strings(&["ndots:2", "single-request"]),
        ),
        (
            "no cluster DNS falls back to the node",
            |_| {},
            |n| n.dns.cluster_dns.clear(),
            strings(&["192.168.1.1", "192.168.1.2"]),
            strings(&["lan", "corp.example"]),
            strings(&["edns0", "ndots:2"]),
        ),
        (
            "no resolv.conf points at the node itself",
            |p| spec_of(p).dns_policy = Some("Default".to_owned()),
            |n| n.dns.resolv_conf = None,
            strings(&["127.0.0.1"]),
            strings(&["."]),
            vec![],
        ),
    ];
    for (name, change_pod, change_node, servers, searches, options) in cases {
        let pod = with(pod(), change_pod);
        let node = with(node(), change_node);
        let dns = config(&pod, 0, &node).unwrap().config.dns_config.unwrap();
        assert_eq!(
            (dns.servers, dns.searches, dns.options),
            (servers, searches, options),
            "{name}"
        );
    }
}

#[test]
fn dns_warnings_are_recorded_as_events() {
    let missing = with(node(), |n| n.dns.cluster_dns.clear());
    let events = config(&pod(), 0, &missing).unwrap().events;
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].warning, events[0].reason), (true, "MissingClusterDNS"));
    assert_eq!(
        events[0].message,
        format!(
            "pod: \"web_default({UID})\". kubelet does not have ClusterDNS IP configured and \
             cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
        )
    );

    let crowded = with(pod(), |p| {
        spec_of(p).dns_config = Some(PodDNSConfig {
            nameservers: Some(strings(&["1.1.1.1", "8.8.8.8", "9.9.9.9"])),
            ..PodDNSConfig::default()
        })
    });
    let sandbox = config(&crowded, 0, &node()).unwrap();
    assert_eq!(
        sandbox.config.dns_config.unwrap().servers,
        strings(&["10.96.0.10", "1.1.1.1", "8.8.8.8"])
    );
    assert_eq!(
        sandbox.events[0].message,
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied \
         nameserver line is: 10.96.0.10 1.1.1.1 8.8.8.8"
    );
    assert_eq!(sandbox.events[0].reason, "DNSConfigForming");

    let bad = with(node(), |n| n.dns.resolv_conf = Some("nameserver\n".to_owned()));
    assert_eq!(config(&pod(), 0, &bad).unwrap_err(), SandboxError::ResolvConf);
}

#[test]
fn hostname_comes_from_spec_or_name() {
    let long_name = format!("{}-x", "a".repeat(62));
    // (case, change, hostname or error)
    type Case = (&'static str, Box<dyn FnOnce(&mut Pod)>, Result<&'static str, &'static str>);
    let cases: Vec<Case> = vec![
        ("pod name", Box::new(|_| {}), Ok("web")),
        ("spec.hostname", Box::new(|p| spec_of(p).hostname = Some("db-0".to_owned())), Ok("db-0")),
        (
            "subdomain alone keeps the short name",
            Box::new(|p| {
                spec_of(p).hostname = Some("db-0".to_owned());
                spec_of(p).subdomain = Some("db".to_owned());
            }),
            Ok("db-0"),
        ),
        (
            "setHostnameAsFQDN uses the FQDN",
            Box::new(|p| {
                spec_of(p).hostname = Some("db-0".to_owned());
                spec_of(p).subdomain = Some("db".to_owned());
                spec_of(p).set_hostname_as_fqdn = Some(true);
            }),
            Ok("db-0.db.default.svc.cluster.local"),
        ),
        (
            "long pod names are cut to 63 characters without a trailing dash",
            Box::new(move |p| p.metadata.name = Some(long_name)),
            Ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ),
        (
            "too long FQDN is refused",
            Box::new(|p| {
                spec_of(p).hostname = Some("h".repeat(40));
                spec_of(p).subdomain = Some("db".to_owned());
                spec_of(p).set_hostname_as_fqdn = Some(true);
            }),
            Err("failed to construct FQDN from pod hostname and cluster domain, FQDN hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh.db.default.svc.cluster.local is too long (64 characters is the max, 69 characters requested)"),
        ),
        (
            "host network leaves the node's hostname",
            Box::new(|p| spec_of(p).host_network = Some(true)),
            Ok(""),
        ),
    ];
    for (name, change, expected) in cases {
        let pod = with(pod(), change);
        let got = config(&pod, 0, &node()).map(|s| s.config.hostname).map_err(|e| e.to_string());
        assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "{name}");
    }
}

#[test]
fn every_declared_port_is_mapped_once() {
    let port = |name: Option<&str>, container_port: i32, host_port: Option<i32>, protocol: &str| {
        ContainerPort {
            name: name.map(str::to_owned),
            container_port,
            host_port,
            protocol: Some(protocol.to_owned()),
            host_ip: None,
        }
    };
    let pod = pod_with(vec![
        Container {
            ports: Some(vec![
                port(Some("http"), 80, Some(8080), "TCP"),
                port(Some("http"), 81, Some(8081), "TCP"),
                port(None, 53, Some(5353), "UDP"),
                port(None, 53, Some(5353), "UDP"),
            ]),
            ..container("app")
        },
        Container { ports: Some(vec![port(None, 9090, None, "TCP")]), ..container("metrics") },
    ]);
    let mappings: Vec<(i32, i32, i32)> = config(&pod, 0, &node())
        .unwrap()
        .config
        .port_mappings
        .into_iter()
        .map(|m| (m.container_port, m.host_port, m.protocol))
        .collect();
    assert_eq!(
        mappings,
        [
            (80, 8080, Protocol::Tcp as i32),
            (53, 5353, Protocol::Udp as i32),
            (9090, 0, Protocol::Tcp as i32)
        ]
    );
}

#[test]
fn linux_config_carries_namespaces_cgroup_and_security() {
    // (case, change, network, pid, ipc)
    use NamespaceMode::{Container as C, Node as N, Pod as P};
    // (case, change, (network, pid, ipc))
    type Case = (&'static str, fn(&mut Pod), (NamespaceMode, NamespaceMode, NamespaceMode));
    let cases: Vec<Case> = vec![
        ("isolated", |_| {}, (P, C, P)),
        ("host network", |p| spec_of(p).host_network = Some(true), (N, C, P)),
        ("host PID", |p| spec_of(p).host_pid = Some(true), (P, N, P)),
        ("host IPC", |p| spec_of(p).host_ipc = Some(true), (P, C, N)),
        (
            "shared process namespace",
            |p| spec_of(p).share_process_namespace = Some(true),
            (P, P, P),
        ),
    ];
    for (name, change, (network, pid, ipc)) in cases {
        let linux = config(&with(pod(), change), 0, &node()).unwrap().config.linux.unwrap();
        let namespaces = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(
            (namespaces.network, namespaces.pid, namespaces.ipc),
            (network as i32, pid as i32, ipc as i32),
            "{name}"
        );
    }

    let secured = with(pod(), |p| {
        spec_of(p).security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![3000]),
            sysctls: Some(vec![Sysctl {
                name: "net.core.somaxconn".to_owned(),
                value: "1024".to_owned(),
            }]),
            ..PodSecurityContext::default()
        });
        spec_of(p).containers[0].security_context =
            Some(SecurityContext { privileged: Some(true), ..SecurityContext::default() });
    });
    let linux = config(&secured, 0, &node()).unwrap().config.linux.unwrap();
    assert_eq!(
        linux.cgroup_parent,
        format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            UID.replace('-', "_")
        )
    );
    assert_eq!(linux.sysctls.get("net.core.somaxconn").map(String::as_str), Some("1024"));
    let security = linux.security_context.unwrap();
    assert!(security.privileged);
    assert_eq!(security.run_as_user.unwrap().value, 1000);
    assert_eq!(security.supplemental_groups, [2000, 3000]);
    assert_eq!(
        security.seccomp.unwrap().profile_type,
        security_profile::ProfileType::RuntimeDefault as i32
    );
}

#[test]
fn sandbox_resources_cover_sidecars_and_the_largest_init_container() {
    let limited = |name: &str, cpu: &str, memory: &str| Container {
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
            ..Default::default()
        }),
        ..container(name)
    };
    let pod = with(pod_with(vec![limited("app", "500m", "256Mi")]), |p| {
        spec_of(p).init_containers = Some(vec![
            Container {
                restart_policy: Some("Always".to_owned()),
                ..limited("proxy", "100m", "64Mi")
            },
            limited("migrate", "2", "1Gi"),
        ]);
    });
    let resources = config(&pod, 0, &node()).unwrap().config.linux.unwrap().resources.unwrap();
    // The migration plus the proxy beside it outweigh app plus proxy.
    assert_eq!(resources.cpu_quota, 210_000);
    assert_eq!(resources.cpu_shares, 2150);
    assert_eq!(resources.memory_limit_in_bytes, (1 << 30) + (64 << 20));
}

#[test]
fn hosts_file_lists_the_pod_and_its_aliases() {
    let stateful = with(pod(), |p| {
        spec_of(p).hostname = Some("db-0".to_owned());
        spec_of(p).subdomain = Some("db".to_owned());
        spec_of(p).host_aliases = Some(vec![HostAlias {
            ip: "10.1.2.3".to_owned(),
            hostnames: Some(strings(&["foo.local", "bar.local"])),
        }]);
    });
    let hosts = hosts_file(&stateful, &strings(&["10.244.1.7"]), "cluster.local", "").unwrap();
    assert_eq!(
        hosts,
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n\
         10.244.1.7\tdb-0.db.default.svc.cluster.local\tdb-0\n\
         \n\
         # Entries added by HostAliases.\n\
         10.1.2.3\tfoo.local\tbar.local\n"
    );
    let host_network = with(pod(), |p| spec_of(p).host_network = Some(true));
    let hosts = hosts_file(&host_network, &[], "cluster.local", "127.0.0.1 localhost\n").unwrap();
    assert_eq!(hosts, "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n");
}
