//! The pure resolver: one question against the zone gives an answer, or "forward this".
//!
//! Follows the Kubernetes DNS-based service discovery specification:
//! - `<svc>.<ns>.svc.<domain>`: the cluster IPs (A/AAAA) of a ClusterIP, NodePort or
//!   LoadBalancer Service; the published endpoint addresses of a headless Service (NXDOMAIN when
//!   it has none); a CNAME to `spec.externalName` for an ExternalName Service.
//! - `<endpoint>.<svc>.<ns>.svc.<domain>`: the addresses of a headless Service's published
//!   endpoint, named by its `hostname` or, without one, by its dashed address.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV: one record per named port (ClusterIP) or per
//!   published endpoint and port (headless), with the targets' addresses as additional records.
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A `a.b.c.d` for any dashed IPv4 address.
//! - `dns-version.<domain>` TXT: the schema version.
//! - PTR of a cluster IP or a published headless endpoint address: the Service or endpoint
//!   name. Other reverse names are forwarded, as is every name outside the cluster domain.
//!
//! Invariants: every answer for a name inside the cluster domain is authoritative; a name that
//! does not exist is NXDOMAIN and a name that exists without the asked type is NOERROR with no
//! answer (NODATA), both with the zone's SOA in the authority section. An endpoint is published
//! when it is ready (unset counts as ready) or its Service sets `publishNotReadyAddresses`.
//! Names compare case-insensitively. Nothing here does IO.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::names::{child_name, is_reverse_name, parse_dashed_ipv4, parse_reverse_name};
use super::objects::{EndpointEntry, ServiceEntry, ServiceShape, SliceEntry};
use super::zone::{AddressOwner, Zone};

/// The version of the Kubernetes DNS schema served under `dns-version.<domain>`.
pub const SCHEMA_VERSION: &str = "1.0.1";

/// How many CNAMEs inside the zone are followed for one question.
const MAX_ALIAS_CHAIN: usize = 8;
/// The most labels below the cluster domain that a name of the zone has
/// (`_<port>._<proto>.<svc>.<ns>.svc`).
const MAX_DEPTH: usize = 5;

/// What the resolver decided for one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The zone answers.
    Answer(Answer),
    /// The name is not the zone's: ask an upstream resolver.
    Forward,
}

/// The zone's answer to one question, before it becomes a DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub response_code: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// Set when the answer ends with a CNAME to a name outside the cluster domain, which the
    /// server may resolve upstream and append (an ExternalName Service).
    pub external_target: Option<Name>,
}

impl Answer {
    fn new(response_code: ResponseCode, authoritative: bool) -> Self {
        Self {
            response_code,
            authoritative,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            external_target: None,
        }
    }
}

/// What the zone holds at one name.
enum Node {
    /// The name does not exist.
    Missing,
    /// The name exists with these records (possibly none: an empty non-terminal).
    Records { answers: Vec<Record>, additionals: Vec<Record> },
    /// The name is an alias.
    Alias(Name),
}

impl Node {
    fn empty() -> Self {
        Self::Records { answers: Vec::new(), additionals: Vec::new() }
    }

    fn records(answers: Vec<Record>) -> Self {
        Self::Records { answers, additionals: Vec::new() }
    }

    /// Returns `Missing` when there are no records: a name that exists only through records.
    fn records_or_missing(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        if answers.is_empty() {
            Self::Missing
        } else {
            Self::Records { answers, additionals }
        }
    }
}

/// Answers one question from the zone, or says it must be forwarded.
pub fn resolve(zone: &Zone, query: &Query) -> Resolution {
    let name = query.name().to_lowercase();
    if zone.origin().zone_of(&name) {
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return Resolution::Answer(Answer::new(ResponseCode::Refused, false));
        }
        return Resolution::Answer(answer_in_zone(zone, name, query.query_type()));
    }
    if query.query_type() == RecordType::PTR && is_reverse_name(&name) {
        if let Some(address) = parse_reverse_name(&name) {
            let targets = ptr_targets(zone, address);
            if !targets.is_empty() {
                let mut answer = Answer::new(ResponseCode::NoError, true);
                answer.answers = targets
                    .into_iter()
                    .map(|target| {
                        Record::from_rdata(name.clone(), zone.ttl(), RData::PTR(PTR(target)))
                    })
                    .collect();
                return Resolution::Answer(answer);
            }
        }
    }
    Resolution::Forward
}

fn answer_in_zone(zone: &Zone, name: Name, query_type: RecordType) -> Answer {
    let mut answer = Answer::new(ResponseCode::NoError, true);
    let mut current = name;
    for _ in 0..MAX_ALIAS_CHAIN {
        match node(zone, &current) {
            Node::Missing => {
                answer.response_code = ResponseCode::NXDomain;
                answer.authorities.push(soa_record(zone));
                return answer;
            }
            Node::Alias(target) => {
                answer.answers.push(Record::from_rdata(
                    current,
                    zone.ttl(),
                    RData::CNAME(CNAME(target.clone())),
                ));
                if matches!(query_type, RecordType::CNAME | RecordType::ANY) {
                    return answer;
                }
                if !zone.origin().zone_of(&target) {
                    answer.external_target = Some(target);
                    return answer;
                }
                current = target.to_lowercase();
            }
            Node::Records { answers, additionals } => {
                let before = answer.answers.len();
                answer.answers.extend(answers.into_iter().filter(|record| {
                    query_type == RecordType::ANY || record.record_type() == query_type
                }));
                if answer.answers.len() == before {
                    answer.authorities.push(soa_record(zone));
                } else if matches!(query_type, RecordType::SRV | RecordType::ANY) {
                    answer.additionals = additionals;
                }
                return answer;
            }
        }
    }
    answer.response_code = ResponseCode::ServFail;
    answer
}

/// Returns what the zone holds at `name`, which lies inside the cluster domain.
fn node(zone: &Zone, name: &Name) -> Node {
    let depth = name.iter().count() - zone.origin().iter().count();
    if depth > MAX_DEPTH {
        return Node::Missing;
    }
    // The labels below the origin, outermost first, borrowed unless a label is not UTF-8.
    let mut owned: [Cow<'_, str>; MAX_DEPTH] = Default::default();
    for (slot, label) in owned[..depth].iter_mut().rev().zip(name.iter()) {
        *slot = String::from_utf8_lossy(label);
    }
    let labels: [&str; MAX_DEPTH] = owned.each_ref().map(|label| label.as_ref());
    match &labels[..depth] {
        [] => Node::records(vec![soa_record(zone)]),
        ["dns-version"] => Node::records(vec![Record::from_rdata(
            name.clone(),
            zone.ttl(),
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()])),
        )]),
        ["svc"] | ["pod"] | ["pod", _] => Node::empty(),
        ["svc", namespace] if zone.has_namespace(namespace) => Node::empty(),
        ["svc", namespace, service, rest @ ..] => match zone.service(namespace, service) {
            Some(entry) => {
                let service = ServiceRef { zone, namespace, name: service, entry };
                match rest {
                    [] => service.node(name),
                    [protocol] if protocol.starts_with('_') => service.protocol_node(protocol),
                    [endpoint] => service.endpoint_node(name, endpoint),
                    [protocol, port] if protocol.starts_with('_') && port.starts_with('_') => {
                        service.srv_node(name, &protocol[1..], &port[1..])
                    }
                    _ => Node::Missing,
                }
            }
            None => Node::Missing,
        },
        ["pod", _, address] => match parse_dashed_ipv4(address) {
            Some(address) => {
                Node::records(vec![address_record(name.clone(), address.into(), zone.ttl())])
            }
            None => Node::Missing,
        },
        _ => Node::Missing,
    }
}

/// One Service of the zone, with what is needed to name its records.
struct ServiceRef<'a> {
    zone: &'a Zone,
    namespace: &'a str,
    name: &'a str,
    entry: &'a ServiceEntry,
}

impl<'a> ServiceRef<'a> {
    fn node(&self, name: &Name) -> Node {
        let ttl = self.zone.ttl();
        match &self.entry.shape {
            ServiceShape::ClusterIp(addresses) => Node::records(
                addresses
                    .iter()
                    .map(|address| address_record(name.clone(), *address, ttl))
                    .collect(),
            ),
            ServiceShape::ExternalName(Some(target)) => Node::Alias(target.clone()),
            ServiceShape::ExternalName(None) => Node::empty(),
            ServiceShape::Headless => {
                let addresses: BTreeSet<IpAddr> = self
                    .published()
                    .flat_map(|(_, endpoint)| endpoint.addresses.iter().copied())
                    .collect();
                Node::records_or_missing(
                    addresses
                        .into_iter()
                        .map(|address| address_record(name.clone(), address, ttl))
                        .collect(),
                    Vec::new(),
                )
            }
        }
    }

    /// `_<proto>.<svc>…`: exists (without records) when an SRV name lies beneath it.
    fn protocol_node(&self, protocol: &str) -> Node {
        let protocol = &protocol[1..];
        let has_port = match &self.entry.shape {
            ServiceShape::ClusterIp(_) => {
                self.entry.ports.iter().any(|port| port.protocol == protocol)
            }
            ServiceShape::Headless => {
                self.published().next().is_some()
                    && self
                        .zone
                        .slices_of(self.namespace, self.name)
                        .flat_map(|slice| &slice.ports)
                        .any(|port| port.protocol == protocol)
            }
            ServiceShape::ExternalName(_) => false,
        };
        if has_port {
            Node::empty()
        } else {
            Node::Missing
        }
    }

    /// `<hostname or dashed address>.<svc>…` of a headless Service.
    fn endpoint_node(&self, name: &Name, label: &str) -> Node {
        if self.entry.shape != ServiceShape::Headless {
            return Node::Missing;
        }
        let addresses: BTreeSet<IpAddr> = self
            .published()
            .flat_map(|(_, endpoint)| {
                endpoint
                    .addresses
                    .iter()
                    .copied()
                    .filter(move |address| endpoint.label(*address) == label)
            })
            .collect();
        Node::records_or_missing(
            addresses
                .into_iter()
                .map(|address| address_record(name.clone(), address, self.zone.ttl()))
                .collect(),
            Vec::new(),
        )
    }

    /// `_<port>._<proto>.<svc>…` SRV records.
    fn srv_node(&self, name: &Name, protocol: &str, port_name: &str) -> Node {
        let ttl = self.zone.ttl();
        let Some(service_name) = self.service_name() else {
            return Node::Missing;
        };
        match &self.entry.shape {
            ServiceShape::ClusterIp(addresses) => {
                let answers = self
                    .entry
                    .ports
                    .iter()
                    .filter(|port| port.matches(port_name, protocol))
                    .map(|port| srv_record(name.clone(), port.port, service_name.clone(), ttl))
                    .collect();
                let additionals = addresses
                    .iter()
                    .map(|address| address_record(service_name.clone(), *address, ttl))
                    .collect();
                Node::records_or_missing(answers, additionals)
            }
            ServiceShape::Headless => {
                let mut targets: BTreeSet<(u16, String)> = BTreeSet::new();
                let mut glue: BTreeSet<(String, IpAddr)> = BTreeSet::new();
                for (slice, endpoint) in self.published() {
                    for port in slice.ports.iter().filter(|port| port.matches(port_name, protocol))
                    {
                        for address in &endpoint.addresses {
                            let label = endpoint.label(*address);
                            targets.insert((port.port, label.clone()));
                            glue.insert((label, *address));
                        }
                    }
                }
                let answers = targets
                    .into_iter()
                    .filter_map(|(port, label)| {
                        let target = child_name(&[&label], &service_name)?;
                        Some(srv_record(name.clone(), port, target, ttl))
                    })
                    .collect();
                let additionals = glue
                    .into_iter()
                    .filter_map(|(label, address)| {
                        let target = child_name(&[&label], &service_name)?;
                        Some(address_record(target, address, ttl))
                    })
                    .collect();
                Node::records_or_missing(answers, additionals)
            }
            ServiceShape::ExternalName(_) => Node::Missing,
        }
    }

    /// Returns the published endpoints of every slice of the Service.
    fn published(&self) -> impl Iterator<Item = (&'a SliceEntry, &'a EndpointEntry)> + 'a {
        let publish_not_ready = self.entry.publish_not_ready;
        self.zone
            .slices_of(self.namespace, self.name)
            .flat_map(|slice| slice.endpoints.iter().map(move |endpoint| (slice, endpoint)))
            .filter(move |(_, endpoint)| endpoint.is_published(publish_not_ready))
    }

    fn service_name(&self) -> Option<Name> {
        child_name(&[self.name, self.namespace, "svc"], self.zone.origin())
    }
}

/// Returns the names a reverse lookup of `address` gives: the Services whose cluster IP it is
/// and the published endpoints of headless Services that hold it.
fn ptr_targets(zone: &Zone, address: IpAddr) -> BTreeSet<Name> {
    let mut targets = BTreeSet::new();
    for owner in zone.owners_of(address) {
        match owner {
            AddressOwner::Service(key) => {
                let Some(service) = zone.service(&key.namespace, &key.name) else {
                    continue;
                };
                if service.cluster_ips().contains(&address) {
                    targets.extend(child_name(&[&key.name, &key.namespace, "svc"], zone.origin()));
                }
            }
            AddressOwner::Slice(key) => {
                let Some(slice) = zone.slice(key) else {
                    continue;
                };
                let Some(service_name) = &slice.service else {
                    continue;
                };
                let Some(service) = zone.service(&key.namespace, service_name) else {
                    continue;
                };
                if service.shape != ServiceShape::Headless {
                    continue;
                }
                for endpoint in &slice.endpoints {
                    if endpoint.is_published(service.publish_not_ready)
                        && endpoint.addresses.contains(&address)
                    {
                        targets.extend(child_name(
                            &[&endpoint.label(address), service_name, &key.namespace, "svc"],
                            zone.origin(),
                        ));
                    }
                }
            }
        }
    }
    targets
}

/// Returns the zone's SOA record, sent with every negative answer.
fn soa_record(zone: &Zone) -> Record {
    let origin = zone.origin();
    let server = child_name(&["ns", "dns"], origin).unwrap_or_else(|| origin.clone());
    let mailbox = child_name(&["hostmaster"], origin).unwrap_or_else(|| origin.clone());
    let soa = SOA::new(server, mailbox, zone.serial(), 7200, 1800, 86400, zone.ttl());
    Record::from_rdata(origin.clone(), zone.ttl(), RData::SOA(soa))
}

fn address_record(name: Name, address: IpAddr, ttl: u32) -> Record {
    let data = match address {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

fn srv_record(name: Name, port: u16, target: Name, ttl: u32) -> Record {
    Record::from_rdata(name, ttl, RData::SRV(SRV::new(0, 100, port, target)))
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
