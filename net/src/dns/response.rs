//! Pure message handling around the resolver: decoding a query, deciding whether the zone
//! answers it or an upstream must, and building the reply (encoded by [`super::encode`]).
//!
//! Invariants: a reply carries the query's id, opcode, question and RD bit, and sets RA (names
//! outside the zone are forwarded); a message that is itself a response is never answered (no
//! reply loops); every decision carries the largest UDP reply its client can receive, which the
//! encoded reply never exceeds.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;

use super::resolver::{resolve, Answer, Resolution};
use super::zone::Zone;

/// The largest UDP reply sent and the EDNS payload size advertised (the 2020 DNS flag day
/// value, which avoids IP fragmentation).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;
/// The UDP payload every client can receive.
const MIN_UDP_PAYLOAD: u16 = 512;
/// The size of a DNS header.
const HEADER_LEN: usize = 12;

/// What to do with one query.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this reply.
    Reply(Message),
    /// Ask an upstream resolver this (decoded) query and relay its answer.
    Forward(Message),
    /// Resolve `target` upstream, append its answers to `reply` and send it.
    Chase { reply: Message, target: Query },
}

/// The decision for one query, with the largest UDP reply its client accepts.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) step: Step,
    pub(crate) udp_limit: usize,
}

/// Decides how to answer one packet; `None` means it gets no reply (a response, or bytes too
/// short to carry an id). `rotation` rotates multi-address answers so that clients taking the
/// first address spread over the endpoints.
pub(crate) fn decide(zone: &Zone, packet: &[u8], rotation: usize) -> Option<Decision> {
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => return format_error(packet),
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let udp_limit = usize::from(request.max_payload().clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD));
    let decision = |step| Some(Decision { step, udp_limit });
    if request.metadata.op_code != OpCode::Query {
        return decision(Step::Reply(reply_to(&request, ResponseCode::NotImp)));
    }
    let [query] = request.queries.as_slice() else {
        return decision(Step::Reply(reply_to(&request, ResponseCode::FormErr)));
    };
    match resolve(zone, query) {
        Resolution::Forward => decision(Step::Forward(request)),
        Resolution::Answer(answer) => {
            let query_type = query.query_type();
            let external_target = answer.external_target.clone();
            let mut reply = reply_with(&request, answer);
            rotate_addresses(&mut reply, rotation);
            match external_target {
                Some(target) if !matches!(query_type, RecordType::CNAME | RecordType::ANY) => {
                    decision(Step::Chase { reply, target: Query::query(target, query_type) })
                }
                _ => decision(Step::Reply(reply)),
            }
        }
    }
}

/// Returns an empty reply to `request` with the given code.
pub(crate) fn reply_to(request: &Message, response_code: ResponseCode) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.response_code = response_code;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = request.metadata.checking_disabled;
    reply.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// Appends the upstream answers for a CNAME's target to the reply that holds the CNAME; the
/// code of the reply becomes the target's (RFC 6604).
pub(crate) fn append_chased(reply: &mut Message, upstream: Message) {
    if matches!(upstream.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) {
        reply.metadata.response_code = upstream.metadata.response_code;
        reply.answers.extend(upstream.answers);
    }
}

fn reply_with(request: &Message, answer: Answer) -> Message {
    let mut reply = reply_to(request, answer.response_code);
    reply.metadata.authoritative = answer.authoritative;
    reply.answers = answer.answers;
    reply.authorities = answer.authorities;
    reply.additionals = answer.additionals;
    reply
}

/// Answers a query that could not be decoded with FORMERR, when its header says it is a query.
fn format_error(packet: &[u8]) -> Option<Decision> {
    if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let mut reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
    reply.metadata.recursion_available = true;
    Some(Decision { step: Step::Reply(reply), udp_limit: usize::from(MIN_UDP_PAYLOAD) })
}

/// Rotates the answer when it is only addresses of one name.
fn rotate_addresses(reply: &mut Message, rotation: usize) {
    let answers = &mut reply.answers;
    let Some(first) = answers.first() else {
        return;
    };
    let only_addresses = answers.iter().all(|record| {
        matches!(record.record_type(), RecordType::A | RecordType::AAAA)
            && record.name == first.name
    });
    if only_addresses && answers.len() > 1 {
        let len = answers.len();
        answers.rotate_left(rotation % len);
    }
}
