//! Who a gossip member is, how members are written on the wire, and what the membership
//! looks like to the rest of Flotilla.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Buf, BufMut};
use foca::{Header, Member, State};
use serde::{Deserialize, Serialize};

/// What part a member plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Master,
    Agent,
}

/// A member's identity: one start of one master or agent process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The master's or the node's name.
    pub name: String,
    pub role: Role,
    /// Where the member receives gossip datagrams.
    pub addr: SocketAddr,
    /// Which start of the process this is; a later start has a larger one, so a restarted
    /// member replaces its old identity at the same address at once.
    pub generation: u64,
}

impl foca::Identity for Peer {
    type Addr = SocketAddr;

    /// A member wrongly declared down (paused, cut off for a moment) comes back at once
    /// under its next generation instead of waiting to be forgotten.
    fn renew(&self) -> Option<Self> {
        Some(Peer { generation: self.generation + 1, ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// What the membership says about one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberState {
    pub role: Role,
    pub generation: u64,
    /// Where the member receives gossip datagrams: for a master, its API server's advertised
    /// address and port (it gossips beside the API).
    pub addr: SocketAddr,
    /// False once the members agree it is down (it stopped answering probes, directly and
    /// through others, for the suspicion time).
    pub alive: bool,
}

/// Member name → its latest identity's state.
pub type Members = BTreeMap<String, MemberState>;

/// The view of `members`: for each name, its latest generation (a restarted member may still
/// be listed under its old address until that one is forgotten). `own` is left out.
pub fn view<'a>(members: impl Iterator<Item = &'a Member<Peer>>, own: &Peer) -> Members {
    let mut view = Members::new();
    for member in members {
        let peer = member.id();
        if peer.name == own.name && peer.role == own.role {
            continue;
        }
        let state = MemberState {
            role: peer.role,
            generation: peer.generation,
            addr: peer.addr,
            alive: member.state() != State::Down,
        };
        view.entry(peer.name.clone())
            .and_modify(|known| {
                if state.generation > known.generation {
                    *known = state;
                }
            })
            .or_insert(state);
    }
    view
}

/// Gossip datagrams in bincode.
#[derive(Debug, Default)]
pub struct BincodeCodec;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Bincode(#[from] bincode::Error),
    #[error("no room left in the datagram")]
    Full,
}

impl BincodeCodec {
    /// Writes `value` whole or not at all, as foca asks of member encoding.
    fn put<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
        let bytes = bincode::serialize(value)?;
        if buf.remaining_mut() < bytes.len() {
            return Err(CodecError::Full);
        }
        buf.put_slice(&bytes);
        Ok(())
    }
}

impl foca::Codec<Peer> for BincodeCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<Peer>, buf: impl BufMut) -> Result<(), CodecError> {
        Self::put(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<Peer>, CodecError> {
        Ok(bincode::deserialize_from(buf.reader())?)
    }

    fn encode_member(&mut self, member: &Member<Peer>, buf: impl BufMut) -> Result<(), CodecError> {
        Self::put(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<Peer>, CodecError> {
        Ok(bincode::deserialize_from(buf.reader())?)
    }
}

#[cfg(test)]
mod tests {
    use foca::{Codec, Identity, Incarnation};

    use super::*;

    fn peer(name: &str, port: u16, generation: u64) -> Peer {
        Peer {
            name: name.into(),
            role: Role::Agent,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            generation,
        }
    }

    #[test]
    fn a_later_start_wins_the_address_and_renewing_moves_on() {
        let old = peer("node-1", 7946, 5);
        let new = peer("node-1", 7946, 9);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        assert_eq!(old.renew().map(|p| p.generation), Some(6));
        assert_eq!(old.addr(), new.addr());
    }

    #[test]
    fn the_view_keeps_each_names_latest_start_and_leaves_out_itself() {
        let own = Peer { role: Role::Master, ..peer("master-1", 6443, 1) };
        let members = [
            Member::new(peer("node-1", 7946, 5), Incarnation::default(), State::Down),
            Member::new(peer("node-1", 7947, 9), Incarnation::default(), State::Alive),
            Member::new(peer("node-2", 7948, 3), Incarnation::default(), State::Suspect),
            Member::new(peer("node-3", 7949, 3), Incarnation::default(), State::Down),
            Member::new(own.clone(), Incarnation::default(), State::Alive),
        ];
        let view = view(members.iter(), &own);
        let summary: Vec<(&str, u64, u16, bool)> = view
            .iter()
            .map(|(name, s)| (name.as_str(), s.generation, s.addr.port(), s.alive))
            .collect();
        assert_eq!(
            summary,
            [("node-1", 9, 7947, true), ("node-2", 3, 7948, true), ("node-3", 3, 7949, false)]
        );
    }

    #[test]
    fn members_round_trip_and_never_half_fill_a_datagram() {
        let mut codec = BincodeCodec;
        let member = Member::new(peer("node-1", 7946, 5), 3, State::Suspect);
        let mut bytes = Vec::new();
        codec.encode_member(&member, &mut bytes).unwrap();
        let mut read = bytes.as_slice();
        assert_eq!(codec.decode_member(&mut read).unwrap(), member);
        assert!(read.is_empty(), "exactly one member was read");

        let mut room = [0u8; 8];
        let mut small = &mut room[..];
        assert!(matches!(codec.encode_member(&member, &mut small), Err(CodecError::Full)));
        assert_eq!(room, [0u8; 8], "nothing written");
    }
}
