//! Turns one received packet into the bytes to send back: the pure decision under the zone's
//! read lock, then upstream IO when the decision asks for it.

use tracing::{debug, trace, warn};

use super::forwarder::{Forwarder, Transport};
use super::handle::ZoneHandle;
use super::response::{append_chased, decide, encode, fit, reply_to, Step};

/// The largest TCP reply.
const MAX_TCP_MESSAGE: usize = 65_535;

/// Answers packets from the shared zone and the upstream resolvers.
#[derive(Debug)]
pub(crate) struct Responder {
    zone: ZoneHandle,
    forwarder: Forwarder,
}

impl Responder {
    pub(crate) fn new(zone: ZoneHandle, forwarder: Forwarder) -> Self {
        Self { zone, forwarder }
    }

    /// Returns the reply to `packet`, or `None` when it gets none.
    pub(crate) async fn respond(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let rotation = usize::from(rand::random::<u8>());
        let decision = self.zone.read(|zone| decide(zone, packet, rotation))?;
        let limit = match transport {
            Transport::Udp => decision.udp_limit,
            Transport::Tcp => MAX_TCP_MESSAGE,
        };
        let reply = match decision.step {
            Step::Reply(reply) => reply,
            Step::Forward(request) => match self.forwarder.forward(&request, transport).await {
                Ok(response) => {
                    trace!(bytes = response.len(), "relaying upstream response");
                    return fit(response, limit)
                        .inspect_err(|error| warn!(error = %error, "cannot relay a response"))
                        .ok();
                }
                Err(error) => {
                    debug!(error = %error, "forwarding failed, answering servfail");
                    reply_to(&request, hickory_proto::op::ResponseCode::ServFail)
                }
            },
            Step::Chase { mut reply, target } => {
                match self.forwarder.lookup(target, transport).await {
                    Ok(upstream) => append_chased(&mut reply, upstream),
                    Err(error) => debug!(error = %error, "cannot resolve an external name"),
                }
                reply
            }
        };
        trace!(
            code = %reply.metadata.response_code,
            answers = reply.answers.len(),
            "answering"
        );
        encode(&reply, limit)
            .inspect_err(|error| warn!(error = %error, "cannot encode a reply"))
            .ok()
    }
}
