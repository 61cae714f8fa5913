//! The nftables scripts (`nft -f -` input) that program the node ports: pure text, so what the
//! kernel is told is tested without a kernel.
//!
//! The table (family `ip`) holds:
//! - `prerouting` (nat, dstnat): a packet for a local address (`fib daddr type local`) whose
//!   protocol and port are in the `node-ports` verdict map goes to that node port's chain;
//! - one chain per node port, `node-port-<proto>-<port>`: mark for masquerade if wanted, then
//!   DNAT to one backend (`numgen random mod N`), or drop;
//! - `postrouting` (nat, srcnat): masquerades marked packets, clearing the mark;
//! - `input` (filter): rejects node ports in the `no-endpoints` set, TCP with a reset and UDP
//!   with ICMP port unreachable. A nat chain may not reject, and an untranslated packet for a
//!   local address goes to input. A reset rather than ICMP for TCP: Linux drops an ICMP error
//!   that arrives while the connecting socket is still locked by `connect()` (a nearby client,
//!   `TcpExtLockDroppedIcmps`), and the client then learns of the refusal only from its SYN
//!   retransmission a second later; a reset is queued instead.
//!
//! NAT chains see only a connection's first packet; conntrack translates the rest, replies
//! included. A script is one transaction: the kernel applies all of it or none.

use std::fmt::Write;

use flotilla_ebpf::Protocol;

use super::plan::{NodePort, Rule, Rules, Verdict};
use super::state::Change;

/// The packet mark bit that asks `postrouting` to masquerade, kube-proxy's (the CNI portmap
/// plugin uses 0x2000).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// nftables' longest rule comment.
const COMMENT_LIMIT: usize = 128;
const NODE_PORTS_MAP: &str = "node-ports";
const NO_ENDPOINTS_SET: &str = "no-endpoints";

/// A script that makes table `table` hold exactly `rules`, whatever it held before (or
/// whether it existed): it creates the table if absent, deletes it, and declares it anew, in
/// one transaction, so packets never meet a half-built table.
pub fn replace(table: &str, rules: &Rules) -> String {
    let mut script = String::new();
    let _ = writeln!(script, "table ip {table} {{}}");
    let _ = writeln!(script, "delete table ip {table}");
    let _ = writeln!(script, "table ip {table} {{");
    for (port, rule) in rules.iter().filter(|(_, rule)| has_chain(rule)) {
        let _ = writeln!(script, "\tchain {} {{", chain_name(*port));
        for statement in chain_rules(*port, rule) {
            let _ = writeln!(script, "\t\t{statement}");
        }
        let _ = writeln!(script, "\t}}");
    }
    let jumps: Vec<String> = rules
        .iter()
        .filter(|(_, rule)| has_chain(rule))
        .map(|(port, _)| map_element(*port))
        .collect();
    let _ = writeln!(script, "\tmap {NODE_PORTS_MAP} {{");
    let _ = writeln!(script, "\t\ttype inet_proto . inet_service : verdict");
    if !jumps.is_empty() {
        let _ = writeln!(script, "\t\telements = {{ {} }}", jumps.join(", "));
    }
    let _ = writeln!(script, "\t}}");
    let refused: Vec<String> =
        rules.iter().filter(|(_, rule)| !has_chain(rule)).map(|(port, _)| key(*port)).collect();
    let _ = writeln!(script, "\tset {NO_ENDPOINTS_SET} {{");
    let _ = writeln!(script, "\t\ttype inet_proto . inet_service");
    if !refused.is_empty() {
        let _ = writeln!(script, "\t\telements = {{ {} }}", refused.join(", "));
    }
    let _ = writeln!(script, "\t}}");
    let _ = write!(
        script,
        "\tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
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
         \t}}\n",
        mark = MASQUERADE_MARK,
    );
    let _ = writeln!(script, "}}");
    script
}

/// A script that applies `changes` to table `table`, touching only the chains and elements of
/// the node ports named. Each change's `from` must be what the table holds: nftables refuses
/// to delete what is absent, and then the whole script fails.
pub fn changes(table: &str, changes: &[Change]) -> String {
    let mut script = String::new();
    for change in changes {
        let (from, to) = (change.from.as_ref(), change.to.as_ref());
        let port = change.port;
        let chain = chain_name(port);
        let had_chain = from.is_some_and(has_chain);
        let refused_before = from.is_some_and(|rule| !has_chain(rule));
        match to {
            Some(rule) if has_chain(rule) => {
                if refused_before {
                    let _ = writeln!(
                        script,
                        "delete element ip {table} {NO_ENDPOINTS_SET} {{ {} }}",
                        key(port)
                    );
                }
                let _ = writeln!(script, "add chain ip {table} {chain}");
                let _ = writeln!(script, "flush chain ip {table} {chain}");
                for statement in chain_rules(port, rule) {
                    let _ = writeln!(script, "add rule ip {table} {chain} {statement}");
                }
                if !had_chain {
                    let _ = writeln!(
                        script,
                        "add element ip {table} {NODE_PORTS_MAP} {{ {} }}",
                        map_element(port)
                    );
                }
            }
            _ => {
                if had_chain {
                    let _ = writeln!(
                        script,
                        "delete element ip {table} {NODE_PORTS_MAP} {{ {} }}",
                        key(port)
                    );
                    let _ = writeln!(script, "flush chain ip {table} {chain}");
                    let _ = writeln!(script, "delete chain ip {table} {chain}");
                }
                let refused_after = to.is_some();
                if refused_after && !refused_before {
                    let _ = writeln!(
                        script,
                        "add element ip {table} {NO_ENDPOINTS_SET} {{ {} }}",
                        key(port)
                    );
                } else if refused_before && !refused_after {
                    let _ = writeln!(
                        script,
                        "delete element ip {table} {NO_ENDPOINTS_SET} {{ {} }}",
                        key(port)
                    );
                }
            }
        }
    }
    script
}

/// A script that deletes table `table` if it exists (and succeeds if it does not).
pub fn delete(table: &str) -> String {
    format!("table ip {table} {{}}\ndelete table ip {table}\n")
}

/// Whether a rule needs a chain: everything but a refusal, which lives in the set.
fn has_chain(rule: &Rule) -> bool {
    !matches!(rule.verdict, Verdict::Reject)
}

/// `node-port-tcp-30080`.
pub fn chain_name(port: NodePort) -> String {
    format!("node-port-{}-{}", protocol_name(port.protocol), port.port)
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The map and set key: `tcp . 30080`.
fn key(port: NodePort) -> String {
    format!("{} . {}", protocol_name(port.protocol), port.port)
}

fn map_element(port: NodePort) -> String {
    format!("{} : goto {}", key(port), chain_name(port))
}

/// The statements of a node port's chain.
fn chain_rules(port: NodePort, rule: &Rule) -> Vec<String> {
    let comment = comment(&rule.service);
    match &rule.verdict {
        Verdict::Forward { backends, masquerade } => {
            let mut statements = Vec::new();
            if *masquerade {
                statements.push(format!("meta mark set meta mark | {MASQUERADE_MARK:#010x}"));
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
            let protocol = protocol_name(port.protocol);
            statements
                .push(format!("meta l4proto {protocol} dnat ip to {target} comment {comment}"));
            statements
        }
        Verdict::Drop => vec![format!("drop comment {comment}")],
        Verdict::Reject => Vec::new(),
    }
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
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    const TABLE: &str = "flotilla-c2207879c3";

    fn port(protocol: Protocol, number: u16) -> NodePort {
        NodePort { protocol, port: number }
    }

    fn rule(verdict: Verdict) -> Rule {
        Rule { service: "default/web:http".to_owned(), verdict }
    }

    fn forward(lasts: &[u8], masquerade: bool) -> Rule {
        let backends =
            lasts.iter().map(|l| SocketAddrV4::new(Ipv4Addr::new(10, 244, 1, *l), 8080)).collect();
        rule(Verdict::Forward { backends, masquerade })
    }

    #[test]
    fn the_whole_table_replaces_whatever_was_there() {
        let rules = Rules::from([
            (port(Protocol::Tcp, 30080), forward(&[2, 3], true)),
            (port(Protocol::Udp, 30053), forward(&[2], false)),
            (port(Protocol::Tcp, 30081), rule(Verdict::Drop)),
            (port(Protocol::Tcp, 30082), rule(Verdict::Reject)),
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
	chain node-port-udp-30053 {
		meta l4proto udp dnat ip to 10.244.1.2:8080 comment \"default/web:http\"
	}
	map node-ports {
		type inet_proto . inet_service : verdict
		elements = { tcp . 30080 : goto node-port-tcp-30080, tcp . 30081 : goto node-port-tcp-30081, udp . 30053 : goto node-port-udp-30053 }
	}
	set no-endpoints {
		type inet_proto . inet_service
		elements = { tcp . 30082 }
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
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
                format!("add chain {t} {c}\nflush chain {t} {c}\nadd rule {t} {c} drop comment \"default/web:http\"\n"),
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
            ("a refused node port goes", Some(rule(Verdict::Reject)), None, format!("delete element {t} no-endpoints {{ tcp . 30080 }}\n")),
            (
                "a forwarded node port goes",
                Some(rule(Verdict::Drop)),
                None,
                format!("delete element {t} node-ports {{ tcp . 30080 }}\nflush chain {t} {c}\ndelete chain {t} {c}\n"),
            ),
            ("a refused node port comes", None, Some(rule(Verdict::Reject)), format!("add element {t} no-endpoints {{ tcp . 30080 }}\n")),
            ("still refused (a renamed port)", Some(rule(Verdict::Reject)), Some(rule(Verdict::Reject)), String::new()),
        ];
        for (case, from, to, expected) in cases {
            let script = changes(TABLE, &[Change { port: p, from, to }]);
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
