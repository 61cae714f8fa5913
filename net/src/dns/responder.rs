//! Turns one received packet into the bytes to send back, in two stages: [`Responder::answer`]
//! makes the pure decision under the zone's read lock and, when the zone answers, encodes the
//! reply at once (no IO, no waiting); only when the decision needs an upstream resolver does
//! [`Responder::finish`] do the IO. The server calls the first in its receive loops and runs
//! the second in a task of its own, so that a slow upstream never holds up a zone answer.

use tracing::{debug, trace, warn};

use super::encode::{encode, fit};
use super::forwarder::{Forwarder, Transport};
use super::handle::ZoneHandle;
use super::response::{append_chased, decide, reply_to, Decision, Step};

/// The largest TCP reply.
const MAX_TCP_MESSAGE: usize = 65_535;

/// What answering a packet from the zone alone gave.
#[derive(Debug)]
pub(crate) enum Answered {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Send nothing: the packet was a response, or too short to carry an id.
    Silent,
    /// The answer needs the upstream resolvers: [`Responder::finish`] it (boxed: it holds
    /// whole messages, and most packets never need it).
    Upstream(Box<Upstream>),
}

/// An answer waiting for the upstream resolvers.
#[derive(Debug)]
pub(crate) struct Upstream {
    step: Step,
    limit: usize,
    transport: Transport,
}

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

    /// Answers `packet` from the zone when it can, without IO and without waiting.
    pub(crate) fn answer(&self, packet: &[u8], transport: Transport) -> Answered {
        let rotation = usize::from(rand::random::<u8>());
        let Some(Decision { step, udp_limit }) =
            self.zone.read(|zone| decide(zone, packet, rotation))
        else {
            return Answered::Silent;
        };
        let limit = match transport {
            Transport::Udp => udp_limit,
            Transport::Tcp => MAX_TCP_MESSAGE,
        };
        match step {
            Step::Reply(reply) => encoded(&reply, limit).map_or(Answered::Silent, Answered::Reply),
            step => Answered::Upstream(Box::new(Upstream { step, limit, transport })),
        }
    }

    /// Finishes an answer with the upstream resolvers; returns the reply, or `None` when there
    /// is none to send.
    pub(crate) async fn finish(&self, upstream: Box<Upstream>) -> Option<Vec<u8>> {
        let Upstream { step, limit, transport } = *upstream;
        let reply = match step {
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
        encoded(&reply, limit)
    }
}

fn encoded(reply: &hickory_proto::op::Message, limit: usize) -> Option<Vec<u8>> {
    trace!(code = %reply.metadata.response_code, answers = reply.answers.len(), "answering");
    encode(reply, limit).inspect_err(|error| warn!(error = %error, "cannot encode a reply")).ok()
}
