//! Encoding replies (pure): the common answer — addresses of the name asked — written
//! directly, every other reply by hickory-proto's general encoder.
//!
//! Invariants: both ways give the same bytes for the same reply (the tests compare them), so
//! the direct way is only a shortcut: it writes the question once and points every answer's
//! owner at it, as the general encoder's name compression does, without its per-name
//! bookkeeping. An encoded reply never exceeds the limit it is given: a longer one is sent as
//! header and question with TC set, and the client asks again over TCP.

use hickory_proto::op::{Header, HeaderCounts, Message, Query};
use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::ProtoError;

use super::error::DnsError;

/// The name compression pointer to the question's name, which starts right after the header.
const QUESTION_NAME_POINTER: u16 = 0xC000 | 12;
/// The most answers written directly. The general encoder stops compressing names after 120
/// in one message, so longer answers go its way to keep the bytes the same.
const MAX_DIRECT_ANSWERS: usize = 64;

/// Encodes a reply, truncated to header and question with TC set when longer than `limit`.
pub(crate) fn encode(reply: &Message, limit: usize) -> Result<Vec<u8>, DnsError> {
    if let Some(bytes) = encode_addresses(reply, limit) {
        return Ok(bytes);
    }
    let bytes = to_bytes(reply)?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    to_bytes(&reply.truncate())
}

/// Fits an upstream reply (raw bytes) into `limit`, truncating it when it is longer.
pub(crate) fn fit(bytes: Vec<u8>, limit: usize) -> Result<Vec<u8>, DnsError> {
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    let reply = Message::from_vec(&bytes)
        .map_err(|error| DnsError::Encode { reason: error.to_string() })?;
    to_bytes(&reply.truncate())
}

fn to_bytes(message: &Message) -> Result<Vec<u8>, DnsError> {
    message.to_vec().map_err(|error| DnsError::Encode { reason: error.to_string() })
}

/// Writes a reply holding one question and, as answers, only A and AAAA records owned by
/// exactly the question's name (same bytes, same case), with nothing else but an OPT record
/// without options. Returns `None` for any other reply, or one longer than `limit`.
fn encode_addresses(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let [query] = reply.queries.as_slice() else {
        return None;
    };
    let simple = reply.authorities.is_empty()
        && reply.additionals.is_empty()
        && reply.signature.is_none()
        && reply.answers.len() <= MAX_DIRECT_ANSWERS
        && reply.edns.as_ref().is_none_or(|edns| edns.options().options.is_empty())
        && reply.answers.iter().all(|record| {
            matches!(record.data, RData::A(_) | RData::AAAA(_))
                && record.name.iter().eq(query.name().iter())
        });
    if !simple {
        return None;
    }
    let header = Header {
        metadata: reply.metadata,
        counts: HeaderCounts {
            queries: 1,
            answers: u16::try_from(reply.answers.len()).ok()?,
            authorities: 0,
            additionals: u16::from(reply.edns.is_some()),
        },
    };
    let mut bytes = Vec::with_capacity(512);
    write_addresses(reply, query, header, &mut BinEncoder::new(&mut bytes)).ok()?;
    (bytes.len() <= limit).then_some(bytes)
}

fn write_addresses(
    reply: &Message,
    query: &Query,
    header: Header,
    encoder: &mut BinEncoder<'_>,
) -> Result<(), ProtoError> {
    header.emit(encoder)?;
    for label in query.name().iter() {
        encoder.emit_character_data(label)?;
    }
    encoder.emit(0)?;
    query.query_type().emit(encoder)?;
    query.query_class().emit(encoder)?;
    for record in &reply.answers {
        encoder.emit_u16(QUESTION_NAME_POINTER)?;
        record.record_type().emit(encoder)?;
        record.dns_class.emit(encoder)?;
        encoder.emit_u32(record.ttl)?;
        match &record.data {
            RData::A(address) => {
                encoder.emit_u16(4)?;
                encoder.emit_vec(&address.0.octets())?;
            }
            RData::AAAA(address) => {
                encoder.emit_u16(16)?;
                encoder.emit_vec(&address.0.octets())?;
            }
            _ => return Err(ProtoError::Message("not an address record")),
        }
    }
    if let Some(edns) = &reply.edns {
        let mut edns = edns.clone();
        edns.set_rcode_high(reply.metadata.response_code.high());
        edns.emit(encoder)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use hickory_proto::op::{Edns, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, SOA};
    use hickory_proto::rr::{Name, Record, RecordType};

    use super::*;

    fn reply(name: &str, answers: &[&str], edns: bool) -> Message {
        let name = Name::from_ascii(name).unwrap();
        let mut reply = Message::response(0x1234, OpCode::Query);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = true;
        reply.metadata.recursion_available = true;
        reply.add_query(Query::query(name.clone(), RecordType::A));
        for answer in answers {
            let data = match answer.parse().unwrap() {
                std::net::IpAddr::V4(v4) => RData::A(A(v4)),
                std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            reply.add_answer(Record::from_rdata(name.to_lowercase(), 5, data));
        }
        if edns {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            reply.set_edns(edns);
        }
        reply
    }

    #[test]
    fn address_answers_are_written_as_the_general_encoder_writes_them() {
        let name = "web.default.svc.cluster.local.";
        let cases = [
            ("one address", reply(name, &["10.96.0.10"], false)),
            ("with edns", reply(name, &["10.96.0.10"], true)),
            ("dual stack", reply(name, &["10.96.0.11", "fd00::11"], true)),
            ("no answer", reply(name, &[], false)),
            ("many", reply(name, &["10.1.0.1"; 40], false)),
        ];
        for (case, reply) in cases {
            let direct = encode_addresses(&reply, 65_535);
            assert_eq!(direct, Some(reply.to_vec().unwrap()), "{case}");
        }
        let mut checking_disabled = reply(name, &["10.96.0.10"], true);
        checking_disabled.metadata.checking_disabled = true;
        checking_disabled.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(
            encode_addresses(&checking_disabled, 512),
            Some(checking_disabled.to_vec().unwrap())
        );
    }

    #[test]
    fn other_replies_take_the_general_encoder() {
        let name = "web.default.svc.cluster.local.";
        // A question asked in capitals: the answers' lowercase owner differs from it.
        let capitals = reply("Web.Default.svc.cluster.local.", &["10.96.0.10"], false);
        let mut soa = reply(name, &[], false);
        let origin = Name::from_ascii("cluster.local.").unwrap();
        soa.add_authority(Record::from_rdata(
            origin.clone(),
            5,
            RData::SOA(SOA::new(origin.clone(), origin, 1, 2, 3, 4, 5)),
        ));
        for (case, reply) in [
            ("capitals", capitals),
            ("soa", soa),
            ("too many", reply(name, &["10.1.0.1"; MAX_DIRECT_ANSWERS + 1], false)),
        ] {
            assert_eq!(encode_addresses(&reply, 65_535), None, "{case}");
            assert_eq!(encode(&reply, 65_535).unwrap(), reply.to_vec().unwrap(), "{case}");
        }
    }

    #[test]
    fn a_reply_over_the_limit_is_truncated() {
        let long = reply("big.default.svc.cluster.local.", &["10.1.0.1"; 40], true);
        assert_eq!(encode_addresses(&long, 512), None);
        let bytes = encode(&long, 512).unwrap();
        assert!(bytes.len() <= 512);
        let decoded = Message::from_vec(&bytes).unwrap();
        assert!(decoded.metadata.truncation);
        assert!(decoded.answers.is_empty());
        assert_eq!(decoded.queries.len(), 1);
    }
}
