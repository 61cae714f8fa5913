//! The nftables scripts (`nft -f -` input) that program the node ports and external addresses:
//! pure text, so what the kernel is told is tested without a kernel.
//!
//! The table (family `ip`) holds:
//! - `prerouting` (nat, dstnat): a packet whose address, protocol and port are in the
//!   `external-addresses` verdict map (external IPs and load balancer IPs, local or routed
//!   through the node), or for a local address (`fib daddr type local`) whose protocol and port
//!   are in the `node-ports` verdict map, goes to that destination's chain;
//! - one chain per destination, `node-port-<proto>-<port>` or `external-<ip>-<proto>-<port>`:
//!   mark for masquerade if wanted, then DNAT to one backend (`numgen random mod N`), or drop;
//! - with session affinity, per backend of that chain, a set of clients
//!   (`affinity-<chain>/<ip>/<port>`, entries expiring after the affinity timeout) and a chain
//!   (`<chain>/<ip>/<port>`) that refreshes the client's entry and DNATs. The destination chain
//!   first sends a client found in a backend's set to that backend's chain, and otherwise picks
//!   a backend's chain at random. A backend that leaves takes its set along, so its clients
//!   pick again;
//! - `postrouting` (nat, srcnat): masquerades marked packets, clearing the mark;
//! - `input` and `forward` (filter): reject node ports in the `no-endpoints` set and external
//!   addresses in the `external-no-endpoints` set, TCP with a reset and UDP with ICMP port
//!   unreachable. A nat chain may not reject, and an untranslated packet for a local address
//!   goes to input, one for another address to forward. A reset rather than ICMP for TCP: Linux
//!   drops an ICMP error that arrives while the connecting socket is still locked by
//!   `connect()` (a nearby client, `TcpExtLockDroppedIcmps`), and the client then learns of the
//!   refusal only from its SYN retransmission a second later; a reset is queued instead.
//!
//! NAT chains see only a connection's first packet; conntrack translates the rest and the
//! replies. A script is one transaction: the kernel applies all of it or none.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::SocketAddrV4;
use std::time::Duration;

use flotilla_ebpf::Protocol;

use super::plan::{Destination, Rule, Rules, Verdict};
use super::state::Change;

/// The packet mark bit that asks `postrouting` to masquerade, kube-proxy's (the CNI portmap
/// plugin uses 0x2000).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// How many clients one backend's affinity set holds (nft's default for sets filled by
/// packets). Once it is full, a new client is still balanced but not remembered.
const AFFINITY_CLIENTS: u32 = 65_535;
/// nftables' longest rule comment.
const COMMENT_LIMIT: usize = 128;
const NODE_PORTS_MAP: &str = "node-ports";
const NO_ENDPOINTS_SET: &str = "no-endpoints";
const EXTERNAL_MAP: &str = "external-addresses";
const EXTERNAL_NO_ENDPOINTS_SET: &str = "external-no-endpoints";

/// A script that makes table `table` hold exactly `rules`, whatever it held before (or
/// whether it existed): it creates the table if absent, deletes it, and declares it anew, in
/// one transaction, so packets never meet a half-built table.
pub fn replace(table: &str, rules: &Rules) -> String {
    let mut script = String::new();
    let _ = writeln!(script, "table ip {table} {{}}");
    let _ = writeln!(script, "delete table ip {table}");
    let _ = writeln!(script, "table ip {table} {{");
    for (destination, rule) in rules.iter().filter(|(_, rule)| has_chain(rule)) {
        // Declared before the chains that name them.
        for backend in affinity_backends(rule) {
            let _ = writeln!(script, "\tset {} {{", affinity_set(*destination, *backend));
            for line in affinity_set_lines() {
                let _ = writeln!(script, "\t\t{line}");
            }
            let _ = writeln!(script, "\t}}");
            let _ = writeln!(script, "\tchain {} {{", endpoint_chain(*destination, *backend));
            for statement in endpoint_rules(*destination, rule, *backend) {
                let _ = writeln!(script, "\t\t{statement}");
            }
            let _ = writeln!(script, "\t}}");
        }
        let _ = writeln!(script, "\tchain {} {{", chain_name(*destination));
        for statement in chain_rules(*destination, rule) {
            let _ = writeln!(script, "\t\t{statement}");
        }
        let _ = writeln!(script, "\t}}");
    }
    let is_node_port = |destination: &Destination| matches!(destination, Destination::NodePort(_));
    for (map, key_type, node_ports) in [
        (NODE_PORTS_MAP, "inet_proto . inet_service", true),
        (EXTERNAL_MAP, "ipv4_addr . inet_proto . inet_service", false),
    ] {
        let jumps: Vec<String> = rules
            .iter()
            .filter(|(destination, rule)| {
                is_node_port(destination) == node_ports && has_chain(rule)
            })
            .map(|(destination, _)| map_element(*destination))
            .collect();
        let _ = writeln!(script, "\tmap {map} {{");
        let _ = writeln!(script, "\t\ttype {key_type} : verdict");
        if !jumps.is_empty() {
            let _ = writeln!(script, "\t\telements = {{ {} }}", jumps.join(", "));
        }
        let _ = writeln!(script, "\t}}");
    }
    for (set, key_type, node_ports) in [
        (NO_ENDPOINTS_SET, "inet_proto . inet_service", true),
        (EXTERNAL_NO_ENDPOINTS_SET, "ipv4_addr . inet_proto . inet_service", false),
    ] {
        let refused: Vec<String> = rules
            .iter()
            .filter(|(destination, rule)| {
                is_node_port(destination) == node_ports && !has_chain(rule)
            })
            .map(|(destination, _)| key(*destination))
            .collect();
        let _ = writeln!(script, "\tset {set} {{");
        let _ = writeln!(script, "\t\ttype {key_type}");
        if !refused.is_empty() {
            let _ = writeln!(script, "\t\telements = {{ {} }}", refused.join(", "));
        }
        let _ = writeln!(script, "\t}}");
    }
    let refuse_external = format!(
        "\t\tip daddr . meta l4proto . th dport @{EXTERNAL_NO_ENDPOINTS_SET} meta l4proto tcp reject with tcp reset\n\
         \t\tip daddr . meta l4proto . th dport @{EXTERNAL_NO_ENDPOINTS_SET} reject\n"
    );
    let _ = write!(
        script,
        "\tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tip daddr . meta l4proto . th dport vmap @{EXTERNAL_MAP}\n\
         \t\tfib daddr type local meta l4proto . th dport vmap @{NODE_PORTS_MAP}\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & {mark:#010x} == {mark:#010x} meta mark set meta mark ^ {mark:#010x} masquerade\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tfib daddr type local meta l4proto . th dport @{NO_ENDPOINTS_SET} meta l4proto tcp reject with tcp reset\n\
         \t\tfib daddr type local meta l4proto . th dport @{NO_ENDPOINTS_SET} reject\n\
         {refuse_external}\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         {refuse_external}\
         \t}}\n",
        mark = MASQUERADE_MARK,
    );
    let _ = writeln!(script, "}}");
    script
}

/// A script that applies `changes` to table `table`, touching only the chains, sets and
/// elements of the destinations named. Within one, affinity sets are created and deleted only
/// for the backends that come and go (the others keep their clients), and endpoint chains are
/// written only for the backends that come, unless the timeout or the Service's name changed.
/// Each change's `from` must be what the table holds: nftables refuses to delete what is
/// absent, and then the whole script fails.
pub fn changes(table: &str, changes: &[Change]) -> String {
    let mut script = String::new();
    for change in changes {
        let (from, to) = (change.from.as_ref(), change.to.as_ref());
        let destination = change.destination;
        let chain = chain_name(destination);
        let had_chain = from.is_some_and(has_chain);
        let refused_before = from.is_some_and(|rule| !has_chain(rule));
        let remembered: BTreeSet<SocketAddrV4> =
            from.map(affinity_backends).unwrap_or_default().iter().copied().collect();
        let map = map_of(destination);
        let refusals = refusal_set_of(destination);
        let element = key(destination);
        match to {
            Some(rule) if has_chain(rule) => {
                if refused_before {
                    let _ =
                        writeln!(script, "delete element ip {table} {refusals} {{ {element} }}");
                }
                // Endpoint chains say the timeout and the Service's name: rewritten when those
                // change, otherwise only the new ones are written.
                let same_endpoints = from.is_some_and(|from| {
                    affinity(from) == affinity(rule) && from.service == rule.service
                });
                for backend in affinity_backends(rule) {
                    let is_new = !remembered.contains(backend);
                    if is_new {
                        let _ = writeln!(
                            script,
                            "add set ip {table} {} {{ {}; }}",
                            affinity_set(destination, *backend),
                            affinity_set_lines().join("; ")
                        );
                    }
                    if is_new || !same_endpoints {
                        let endpoint = endpoint_chain(destination, *backend);
                        let _ = writeln!(script, "add chain ip {table} {endpoint}");
                        let _ = writeln!(script, "flush chain ip {table} {endpoint}");
                        for statement in endpoint_rules(destination, rule, *backend) {
                            let _ = writeln!(script, "add rule ip {table} {endpoint} {statement}");
                        }
                    }
                }
                let _ = writeln!(script, "add chain ip {table} {chain}");
                let _ = writeln!(script, "flush chain ip {table} {chain}");
                for statement in chain_rules(destination, rule) {
                    let _ = writeln!(script, "add rule ip {table} {chain} {statement}");
                }
                let kept: BTreeSet<SocketAddrV4> =
                    affinity_backends(rule).iter().copied().collect();
                for backend in remembered.difference(&kept) {
                    forget_backend(&mut script, table, destination, *backend);
                }
                if !had_chain {
                    let _ = writeln!(
                        script,
                        "add element ip {table} {map} {{ {} }}",
                        map_element(destination)
                    );
                }
            }
            _ => {
                if had_chain {
                    let _ = writeln!(script, "delete element ip {table} {map} {{ {element} }}");
                    let _ = writeln!(script, "flush chain ip {table} {chain}");
                    let _ = writeln!(script, "delete chain ip {table} {chain}");
                    for backend in &remembered {
                        forget_backend(&mut script, table, destination, *backend);
                    }
                }
                let refused_after = to.is_some();
                if refused_after && !refused_before {
                    let _ = writeln!(script, "add element ip {table} {refusals} {{ {element} }}");
                } else if refused_before && !refused_after {
                    let _ =
                        writeln!(script, "delete element ip {table} {refusals} {{ {element} }}");
                }
            }
        }
    }
    script
}

/// Removes a backend's endpoint chain and affinity set, once nothing names them.
fn forget_backend(
    script: &mut String,
    table: &str,
    destination: Destination,
    backend: SocketAddrV4,
) {
    let endpoint = endpoint_chain(destination, backend);
    let _ = writeln!(script, "flush chain ip {table} {endpoint}");
    let _ = writeln!(script, "delete chain ip {table} {endpoint}");
    let _ = writeln!(script, "delete set ip {table} {}", affinity_set(destination, backend));
}

/// A script that deletes table `table` if it exists (and succeeds if it does not).
pub fn delete(table: &str) -> String {
    format!("table ip {table} {{}}\ndelete table ip {table}\n")
}

/// The declaration of a backend's affinity set: client addresses, added by packets, each
/// expiring after the timeout its `update` gives (so a new timeout needs no new set).
fn affinity_set_lines() -> [String; 3] {
    [
        "type ipv4_addr".to_owned(),
        "flags dynamic,timeout".to_owned(),
        format!("size {AFFINITY_CLIENTS}"),
    ]
}

/// Whether a rule needs a chain: everything but a refusal, which lives in a set.
fn has_chain(rule: &Rule) -> bool {
    !matches!(rule.verdict, Verdict::Reject)
}

/// The session affinity timeout of a forwarding rule.
fn affinity(rule: &Rule) -> Option<Duration> {
    match &rule.verdict {
        Verdict::Forward { affinity, .. } => *affinity,
        Verdict::Drop | Verdict::Reject => None,
    }
}

/// The backends that have an affinity set and an endpoint chain: all of a rule's with
/// affinity, none otherwise.
fn affinity_backends(rule: &Rule) -> &[SocketAddrV4] {
    match &rule.verdict {
        Verdict::Forward { backends, affinity: Some(_), .. } => backends,
        _ => &[],
    }
}

/// `node-port-tcp-30080`, `external-192.0.2.7-tcp-80`.
pub fn chain_name(destination: Destination) -> String {
    match destination {
        Destination::NodePort(port) => {
            format!("node-port-{}-{}", protocol_name(port.protocol), port.port)
        }
        Destination::External(address) => {
            format!("external-{}-{}-{}", address.ip, protocol_name(address.protocol), address.port)
        }
    }
}

/// `node-port-tcp-30080/10.244.1.2/8080`: the chain that sends a destination's connection to
/// one backend and remembers the client.
pub fn endpoint_chain(destination: Destination, backend: SocketAddrV4) -> String {
    format!("{}/{}/{}", chain_name(destination), backend.ip(), backend.port())
}

/// `affinity-node-port-tcp-30080/10.244.1.2/8080`: the clients a backend keeps.
pub fn affinity_set(destination: Destination, backend: SocketAddrV4) -> String {
    format!("affinity-{}", endpoint_chain(destination, backend))
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The verdict map a destination's chain is entered from.
fn map_of(destination: Destination) -> &'static str {
    match destination {
        Destination::NodePort(_) => NODE_PORTS_MAP,
        Destination::External(_) => EXTERNAL_MAP,
    }
}

/// The set a destination without endpoints is refused from.
fn refusal_set_of(destination: Destination) -> &'static str {
    match destination {
        Destination::NodePort(_) => NO_ENDPOINTS_SET,
        Destination::External(_) => EXTERNAL_NO_ENDPOINTS_SET,
    }
}

/// The map and set key: `tcp . 30080`, `192.0.2.7 . tcp . 80`.
fn key(destination: Destination) -> String {
    match destination {
        Destination::NodePort(port) => format!("{} . {}", protocol_name(port.protocol), port.port),
        Destination::External(address) => {
            format!("{} . {} . {}", address.ip, protocol_name(address.protocol), address.port)
        }
    }
}

fn map_element(destination: Destination) -> String {
    format!("{} : goto {}", key(destination), chain_name(destination))
}

/// The statements of a destination's chain.
fn chain_rules(destination: Destination, rule: &Rule) -> Vec<String> {
    let comment = comment(&rule.service);
    match &rule.verdict {
        Verdict::Forward { backends, masquerade, affinity } => {
            let mut statements = Vec::new();
            if *masquerade {
                statements.push(format!("meta mark set meta mark | {MASQUERADE_MARK:#010x}"));
            }
            if affinity.is_some() {
                let endpoint = |backend: &SocketAddrV4| endpoint_chain(destination, *backend);
                for backend in backends {
                    statements.push(format!(
                        "ip saddr @{} goto {}",
                        affinity_set(destination, *backend),
                        endpoint(backend)
                    ));
                }
                statements.push(match backends.as_slice() {
                    [only] => format!("goto {}", endpoint(only)),
                    many => {
                        let slots: Vec<String> = many
                            .iter()
                            .enumerate()
                            .map(|(slot, backend)| format!("{slot} : goto {}", endpoint(backend)))
                            .collect();
                        format!("numgen random mod {} vmap {{ {} }}", many.len(), slots.join(", "))
                    }
                });
                return statements;
            }
            let target = match backends.as_slice() {
                [only] => only.to_string(),
                many => {
                    let slots: Vec<String> = many
                        .iter()
                        .enumerate()
                        .map(|(slot, backend)| {
                            format!("{slot} : {} . {}", backend.ip(), backend.port())
                        })
                        .collect();
                    format!("numgen random mod {} map {{ {} }}", many.len(), slots.join(", "))
                }
            };
            let protocol = protocol_name(destination.protocol());
            statements
                .push(format!("meta l4proto {protocol} dnat ip to {target} comment {comment}"));
            statements
        }
        Verdict::Drop => vec![format!("drop comment {comment}")],
        Verdict::Reject => Vec::new(),
    }
}

/// The statements of a backend's endpoint chain: remember the client (refreshing its timeout),
/// then translate. Two rules, so a full set still lets the connection through.
fn endpoint_rules(destination: Destination, rule: &Rule, backend: SocketAddrV4) -> Vec<String> {
    let timeout = affinity(rule).unwrap_or_default().as_secs();
    let protocol = protocol_name(destination.protocol());
    vec![
        format!("update @{} {{ ip saddr timeout {timeout}s }}", affinity_set(destination, backend)),
        format!("meta l4proto {protocol} dnat ip to {backend} comment {}", comment(&rule.service)),
    ]
}

/// A quoted rule comment: the characters Kubernetes names use, at most 128 bytes.
fn comment(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-./:_".contains(c) { c } else { '_' })
        .take(COMMENT_LIMIT)
        .collect();
    format!("\"{safe}\"")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::plan::{ExternalAddress, NodePort};
    use super::*;

    const TABLE: &str = "flotilla-c2207879c3";

    fn port(protocol: Protocol, number: u16) -> Destination {
        NodePort { protocol, port: number }.into()
    }

    fn external(number: u16) -> Destination {
        ExternalAddress { ip: Ipv4Addr::new(192, 0, 2, 7), protocol: Protocol::Tcp, port: number }
            .into()
    }

    fn rule(verdict: Verdict) -> Rule {
        Rule { service: "default/web:http".to_owned(), verdict }
    }

    fn backends(lasts: &[u8]) -> Vec<SocketAddrV4> {
        lasts.iter().map(|l| SocketAddrV4::new(Ipv4Addr::new(10, 244, 1, *l), 8080)).collect()
    }

    fn forward(lasts: &[u8], masquerade: bool) -> Rule {
        rule(Verdict::Forward { backends: backends(lasts), masquerade, affinity: None })
    }

    /// A forwarding rule with session affinity for `seconds`.
    fn sticky(lasts: &[u8], seconds: u64) -> Rule {
        let affinity = Some(Duration::from_secs(seconds));
        rule(Verdict::Forward { backends: backends(lasts), masquerade: true, affinity })
    }

    #[test]
    fn the_whole_table_replaces_whatever_was_there() {
        let rules = Rules::from([
            (port(Protocol::Tcp, 30080), forward(&[2, 3], true)),
            (port(Protocol::Udp, 30053), forward(&[2], false)),
            (port(Protocol::Tcp, 30081), rule(Verdict::Drop)),
            (port(Protocol::Tcp, 30082), rule(Verdict::Reject)),
            (port(Protocol::Tcp, 30083), sticky(&[2, 3], 60)),
            (external(80), forward(&[2], true)),
            (external(81), rule(Verdict::Reject)),
        ]);
        let expected = "\
table ip flotilla-c2207879c3 {}
delete table ip flotilla-c2207879c3
table ip flotilla-c2207879c3 {
	chain node-port-tcp-30080 {
		meta mark set meta mark | 0x00004000
		meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.1.3 . 8080 } comment \"default/web:http\"
	}
	chain node-port-tcp-30081 {
		drop comment \"default/web:http\"
	}
	set affinity-node-port-tcp-30083/10.244.1.2/8080 {
		type ipv4_addr
		flags dynamic,timeout
		size 65535
	}
	chain node-port-tcp-30083/10.244.1.2/8080 {
		update @affinity-node-port-tcp-30083/10.244.1.2/8080 { ip saddr timeout 60s }
		meta l4proto tcp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"
	}
	set affinity-node-port-tcp-30083/10.244.1.3/8080 {
		type ipv4_addr
		flags dynamic,timeout
		size 65535
	}
	chain node-port-tcp-30083/10.244.1.3/8080 {
		update @affinity-node-port-tcp-30083/10.244.1.3/8080 { ip saddr timeout 60s }
		meta l4proto tcp dnat ip to 10.244.1.3:8080 comment \"default/web:http\"
	}
	chain node-port-tcp-30083 {
		meta mark set meta mark | 0x00004000
		ip saddr @affinity-node-port-tcp-30083/10.244.1.2/8080 goto node-port-tcp-30083/10.244.1.2/8080
		ip saddr @affinity-node-port-tcp-30083/10.244.1.3/8080 goto node-port-tcp-30083/10.244.1.3/8080
		numgen random mod 2 vmap { 0 : goto node-port-tcp-30083/10.244.1.2/8080, 1 : goto node-port-tcp-30083/10.244.1.3/8080 }
	}
	chain node-port-udp-30053 {
		meta l4proto udp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"
	}
	chain external-192.0.2.7-tcp-80 {
		meta mark set meta mark | 0x00004000
		meta l4proto tcp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"
	}
	map node-ports {
		type inet_proto . inet_service : verdict
		elements = { tcp . 30080 : goto node-port-tcp-30080, tcp . 30081 : goto node-port-tcp-30081, tcp . 30083 : goto node-port-tcp-30083, udp . 30053 : goto node-port-udp-30053 }
	}
	map external-addresses {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 192.0.2.7 . tcp . 80 : goto external-192.0.2.7-tcp-80 }
	}
	set no-endpoints {
		type inet_proto . inet_service
		elements = { tcp . 30082 }
	}
	set external-no-endpoints {
		type ipv4_addr . inet_proto . inet_service
		elements = { 192.0.2.7 . tcp . 81 }
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr . meta l4proto . th dport vmap @external-addresses
		fib daddr type local meta l4proto . th dport vmap @node-ports
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 meta mark set meta mark ^ 0x00004000 masquerade
	}
	chain input {
		type filter hook input priority filter; policy accept;
		fib daddr type local meta l4proto . th dport @no-endpoints meta l4proto tcp reject with tcp reset
		fib daddr type local meta l4proto . th dport @no-endpoints reject
		ip daddr . meta l4proto . th dport @external-no-endpoints meta l4proto tcp reject with tcp reset
		ip daddr . meta l4proto . th dport @external-no-endpoints reject
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr . meta l4proto . th dport @external-no-endpoints meta l4proto tcp reject with tcp reset
		ip daddr . meta l4proto . th dport @external-no-endpoints reject
	}
}
";
        assert_eq!(replace(TABLE, &rules), expected);
        let empty = replace(TABLE, &Rules::new());
        assert!(!empty.contains("elements"), "an empty map or set lists no elements: {empty}");
    }

    #[test]
    fn changes_touch_only_their_node_port() {
        let p = port(Protocol::Tcp, 30080);
        let t = "ip flotilla-c2207879c3";
        let c = "node-port-tcp-30080";
        let cases = [
            // (case, from, to, expected script)
            (
                "a new node port",
                None,
                Some(forward(&[2], false)),
                format!(
                    "add chain {t} {c}\nflush chain {t} {c}\n\
                     add rule {t} {c} meta l4proto tcp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"\n\
                     add element {t} node-ports {{ tcp . 30080 : goto {c} }}\n"
                ),
            ),
            (
                "new backends: the chain is rewritten, the map left alone",
                Some(forward(&[2], false)),
                Some(rule(Verdict::Drop)),
                format!(
                    "add chain {t} {c}\nflush chain {t} {c}\nadd rule {t} {c} drop comment \"default/web:http\"\n"
                ),
            ),
            (
                "the last endpoint left: refused",
                Some(forward(&[2], true)),
                Some(rule(Verdict::Reject)),
                format!(
                    "delete element {t} node-ports {{ tcp . 30080 }}\nflush chain {t} {c}\ndelete chain {t} {c}\n\
                     add element {t} no-endpoints {{ tcp . 30080 }}\n"
                ),
            ),
            (
                "an endpoint came: forwarded again",
                Some(rule(Verdict::Reject)),
                Some(forward(&[2], true)),
                format!(
                    "delete element {t} no-endpoints {{ tcp . 30080 }}\nadd chain {t} {c}\nflush chain {t} {c}\n\
                     add rule {t} {c} meta mark set meta mark | 0x00004000\n\
                     add rule {t} {c} meta l4proto tcp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"\n\
                     add element {t} node-ports {{ tcp . 30080 : goto {c} }}\n"
                ),
            ),
            (
                "a refused node port goes",
                Some(rule(Verdict::Reject)),
                None,
                format!("delete element {t} no-endpoints {{ tcp . 30080 }}\n"),
            ),
            (
                "a forwarded node port goes",
                Some(rule(Verdict::Drop)),
                None,
                format!(
                    "delete element {t} node-ports {{ tcp . 30080 }}\nflush chain {t} {c}\ndelete chain {t} {c}\n"
                ),
            ),
            (
                "a refused node port comes",
                None,
                Some(rule(Verdict::Reject)),
                format!("add element {t} no-endpoints {{ tcp . 30080 }}\n"),
            ),
            (
                "still refused (a renamed port)",
                Some(rule(Verdict::Reject)),
                Some(rule(Verdict::Reject)),
                String::new(),
            ),
        ];
        for (case, from, to, expected) in cases {
            let script = changes(TABLE, &[Change { destination: p, from, to }]);
            assert_eq!(script, expected, "{case}");
        }
    }

    #[test]
    fn affinity_sets_come_and_go_with_their_backends_only() {
        let p = port(Protocol::Tcp, 30080);
        let t = "ip flotilla-c2207879c3";
        let c = "node-port-tcp-30080";
        let set = "{ type ipv4_addr; flags dynamic,timeout; size 65535; }";
        let endpoint = |last: u8, seconds: u64| {
            let e = format!("{c}/10.244.1.{last}/8080");
            format!(
                "add chain {t} {e}\nflush chain {t} {e}\n\
                 add rule {t} {e} update @affinity-{e} {{ ip saddr timeout {seconds}s }}\n\
                 add rule {t} {e} meta l4proto tcp dnat ip to 10.244.1.{last}:8080 comment \"default/web:http\"\n"
            )
        };
        let new_set = |last: u8| format!("add set {t} affinity-{c}/10.244.1.{last}/8080 {set}\n");
        let forget = |last: u8| {
            let e = format!("{c}/10.244.1.{last}/8080");
            format!("flush chain {t} {e}\ndelete chain {t} {e}\ndelete set {t} affinity-{e}\n")
        };
        let chain = |lasts: &[u8]| {
            let mut script = format!(
                "add chain {t} {c}\nflush chain {t} {c}\nadd rule {t} {c} meta mark set meta mark | 0x00004000\n"
            );
            for last in lasts {
                let e = format!("{c}/10.244.1.{last}/8080");
                script += &format!("add rule {t} {c} ip saddr @affinity-{e} goto {e}\n");
            }
            let slots: Vec<String> = lasts
                .iter()
                .enumerate()
                .map(|(slot, last)| format!("{slot} : goto {c}/10.244.1.{last}/8080"))
                .collect();
            script += &format!(
                "add rule {t} {c} numgen random mod {} vmap {{ {} }}\n",
                lasts.len(),
                slots.join(", ")
            );
            script
        };
        let cases = [
            // (case, from, to, expected script)
            (
                "a new node port: a set and an endpoint chain per backend, then its chain",
                None,
                Some(sticky(&[2, 3], 60)),
                format!(
                    "{}{}{}{}{}add element {t} node-ports {{ tcp . 30080 : goto {c} }}\n",
                    new_set(2),
                    endpoint(2, 60),
                    new_set(3),
                    endpoint(3, 60),
                    chain(&[2, 3])
                ),
            ),
            (
                "a backend leaves and one comes: the one that stays keeps its set and chain",
                Some(sticky(&[2, 3], 60)),
                Some(sticky(&[3, 4], 60)),
                format!("{}{}{}{}", new_set(4), endpoint(4, 60), chain(&[3, 4]), forget(2)),
            ),
            (
                "a new timeout: endpoint chains rewritten, sets (and their clients) kept",
                Some(sticky(&[2, 3], 60)),
                Some(sticky(&[2, 3], 120)),
                format!("{}{}{}", endpoint(2, 120), endpoint(3, 120), chain(&[2, 3])),
            ),
            (
                "affinity off: the sets go",
                Some(sticky(&[2], 60)),
                Some(forward(&[2], true)),
                format!(
                    "add chain {t} {c}\nflush chain {t} {c}\n\
                     add rule {t} {c} meta mark set meta mark | 0x00004000\n\
                     add rule {t} {c} meta l4proto tcp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"\n{}",
                    forget(2)
                ),
            ),
            (
                "the last endpoint left: refused, the sets gone",
                Some(sticky(&[2, 3], 60)),
                Some(rule(Verdict::Reject)),
                format!(
                    "delete element {t} node-ports {{ tcp . 30080 }}\nflush chain {t} {c}\ndelete chain {t} {c}\n\
                     {}{}add element {t} no-endpoints {{ tcp . 30080 }}\n",
                    forget(2),
                    forget(3)
                ),
            ),
        ];
        for (case, from, to, expected) in cases {
            let script = changes(TABLE, &[Change { destination: p, from, to }]);
            assert_eq!(script, expected, "{case}");
        }
    }

    #[test]
    fn an_external_address_has_its_own_map_and_refusal_set() {
        let t = "ip flotilla-c2207879c3";
        let c = "external-192.0.2.7-tcp-80";
        let cases = [
            // (case, from, to, expected script)
            (
                "forwarded",
                None,
                Some(forward(&[2], false)),
                format!(
                    "add chain {t} {c}\nflush chain {t} {c}\n\
                     add rule {t} {c} meta l4proto tcp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"\n\
                     add element {t} external-addresses {{ 192.0.2.7 . tcp . 80 : goto {c} }}\n"
                ),
            ),
            (
                "refused",
                Some(forward(&[2], false)),
                Some(rule(Verdict::Reject)),
                format!(
                    "delete element {t} external-addresses {{ 192.0.2.7 . tcp . 80 }}\n\
                     flush chain {t} {c}\ndelete chain {t} {c}\n\
                     add element {t} external-no-endpoints {{ 192.0.2.7 . tcp . 80 }}\n"
                ),
            ),
        ];
        for (case, from, to, expected) in cases {
            let script = changes(TABLE, &[Change { destination: external(80), from, to }]);
            assert_eq!(script, expected, "{case}");
        }
    }

    #[test]
    fn comments_keep_to_what_nftables_accepts() {
        assert_eq!(comment("default/web:http"), "\"default/web:http\"");
        assert_eq!(comment("a\"b c;"), "\"a_b_c_\"");
        assert_eq!(comment(&"x".repeat(300)).len(), COMMENT_LIMIT + 2);
    }

    #[test]
    fn deleting_succeeds_whether_or_not_the_table_exists() {
        assert_eq!(delete(TABLE), format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"));
    }
}
