//! The byte layout of the pinned maps, mirroring `bpf/lb.h` struct for struct.
//!
//! Invariants: every struct here has the size and field offsets of its C twin; addresses and
//! ports are kept as network-order byte arrays (what the kernel hands the programs in
//! `user_ip4` and the low 16 bits of `user_port`), so no value depends on the host's
//! endianness; set ids and slots are host-order integers; padding is always zero.

use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};

use aya::Pod;

use crate::table::{Frontend, Protocol};

/// The map of service frontends to the backend set they use.
pub(crate) const SERVICES: &str = "services";
/// The map of (set id, slot) to backend address.
pub(crate) const BACKENDS: &str = "backends";
/// The map of (set id, backend address) for services with session affinity.
pub(crate) const MEMBERS: &str = "members";
/// The LRU map of (network namespace, frontend) to the backend a client keeps.
pub(crate) const AFFINITY: &str = "affinity";
/// The LRU map of (socket, backend) to the frontend the socket asked for.
pub(crate) const REVERSE: &str = "reverse";

/// Capacities, as in `lb.h`.
pub(crate) const MAX_SERVICES: u32 = 65_536;
pub(crate) const MAX_BACKEND_SLOTS: u32 = 524_288;
pub(crate) const MAX_AFFINITY: u32 = 65_536;
pub(crate) const MAX_REVERSE: u32 = 131_072;

/// `service_value.flags`: the service has session affinity.
pub(crate) const FLAG_AFFINITY: u8 = 1;

/// IP protocol numbers, as in `ctx->protocol`.
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Sizes of the maps' keys and values that the loader does not otherwise name.
pub(crate) const AFFINITY_KEY_SIZE: u32 = 16;
pub(crate) const AFFINITY_VALUE_SIZE: u32 = 16;
pub(crate) const REVERSE_KEY_SIZE: u32 = 16;
pub(crate) const REVERSE_VALUE_SIZE: u32 = 8;

/// `struct frontend_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FrontendKey {
    pub ip: [u8; 4],
    pub port: [u8; 2],
    pub protocol: u8,
    pub pad: u8,
}

/// `struct service_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceValue {
    pub set_id: u32,
    pub count: u16,
    pub flags: u8,
    pub pad: u8,
    pub affinity_ms: u32,
    pub pad2: u32,
}

/// `struct backend_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BackendKey {
    pub set_id: u32,
    pub slot: u32,
}

/// `struct backend_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackendValue {
    pub ip: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

/// `struct member_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MemberKey {
    pub set_id: u32,
    pub ip: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

const _: () = assert!(size_of::<FrontendKey>() == 8);
const _: () = assert!(size_of::<ServiceValue>() == 16);
const _: () = assert!(size_of::<BackendKey>() == 8);
const _: () = assert!(size_of::<BackendValue>() == 8);
const _: () = assert!(size_of::<MemberKey>() == 12);

// SAFETY: each type is `repr(C)`, `Copy`, made only of integers and integer arrays, has no
// implicit padding (the sizes are asserted above) and every bit pattern is a valid value.
unsafe impl Pod for FrontendKey {}
// SAFETY: as for `FrontendKey`.
unsafe impl Pod for ServiceValue {}
// SAFETY: as for `FrontendKey`.
unsafe impl Pod for BackendKey {}
// SAFETY: as for `FrontendKey`.
unsafe impl Pod for BackendValue {}
// SAFETY: as for `FrontendKey`.
unsafe impl Pod for MemberKey {}

impl Protocol {
    /// The IP protocol number the kernel reports for sockets of this protocol.
    pub(crate) const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        }
    }

    pub(crate) const fn from_number(number: u8) -> Option<Protocol> {
        match number {
            IPPROTO_TCP => Some(Protocol::Tcp),
            IPPROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl FrontendKey {
    pub(crate) fn new(frontend: Frontend) -> FrontendKey {
        FrontendKey {
            ip: frontend.ip.octets(),
            port: frontend.port.to_be_bytes(),
            protocol: frontend.protocol.number(),
            pad: 0,
        }
    }

    /// Returns the frontend, or the protocol number when it is neither TCP nor UDP.
    pub(crate) fn frontend(&self) -> Result<Frontend, u8> {
        let protocol = Protocol::from_number(self.protocol).ok_or(self.protocol)?;
        Ok(Frontend { ip: Ipv4Addr::from(self.ip), port: u16::from_be_bytes(self.port), protocol })
    }
}

impl ServiceValue {
    pub(crate) fn new(set_id: u32, count: u16, affinity_ms: Option<u32>) -> ServiceValue {
        ServiceValue {
            set_id,
            count,
            flags: if affinity_ms.is_some() { FLAG_AFFINITY } else { 0 },
            pad: 0,
            affinity_ms: affinity_ms.unwrap_or(0),
            pad2: 0,
        }
    }

    /// The session affinity timeout in milliseconds, when the service has affinity.
    pub(crate) fn affinity_ms(&self) -> Option<u32> {
        (self.flags & FLAG_AFFINITY != 0).then_some(self.affinity_ms)
    }
}

impl BackendValue {
    pub(crate) fn new(address: SocketAddrV4) -> BackendValue {
        BackendValue { ip: address.ip().octets(), port: address.port().to_be_bytes(), pad: [0; 2] }
    }

    pub(crate) fn address(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip), u16::from_be_bytes(self.port))
    }
}

impl MemberKey {
    pub(crate) fn new(set_id: u32, address: SocketAddrV4) -> MemberKey {
        MemberKey {
            set_id,
            ip: address.ip().octets(),
            port: address.port().to_be_bytes(),
            pad: [0; 2],
        }
    }

    pub(crate) fn address(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip), u16::from_be_bytes(self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend(ip: [u8; 4], port: u16, protocol: Protocol) -> Frontend {
        Frontend { ip: Ipv4Addr::from(ip), port, protocol }
    }

    #[test]
    fn frontend_keys_hold_addresses_and_ports_in_network_order() {
        let key = FrontendKey::new(frontend([10, 96, 0, 1], 8080, Protocol::Tcp));
        assert_eq!(key.ip, [10, 96, 0, 1]);
        assert_eq!(key.port, [0x1f, 0x90]);
        assert_eq!(key.protocol, 6);
        assert_eq!(key.pad, 0);

        let udp = FrontendKey::new(frontend([10, 96, 0, 10], 53, Protocol::Udp));
        assert_eq!(udp.port, [0, 53]);
        assert_eq!(udp.protocol, 17);
    }

    #[test]
    fn ports_match_the_kernels_user_port_field() {
        // The kernel stores the port as a network-order u16 in the low half of the u32
        // `user_port`; the programs cast between the two. Reading the key's bytes as that u32
        // must give what `htons(port)` zero-extended gives on this host.
        for port in [1u16, 53, 80, 443, 8080, 0x1234, 65535] {
            let key = FrontendKey::new(frontend([127, 0, 0, 1], port, Protocol::Tcp));
            let user_port = u32::from_ne_bytes([key.port[0], key.port[1], 0, 0]);
            assert_eq!(user_port, u32::from(port.to_be()), "port {port}");
        }
    }

    #[test]
    fn addresses_match_the_kernels_user_ip4_field() {
        let value = BackendValue::new("192.168.1.20:80".parse().expect("address"));
        let user_ip4 = u32::from_ne_bytes(value.ip);
        assert_eq!(user_ip4, u32::from(Ipv4Addr::new(192, 168, 1, 20)).to_be());
    }

    #[test]
    fn keys_and_values_round_trip() {
        for original in [
            frontend([10, 0, 0, 1], 80, Protocol::Tcp),
            frontend([255, 255, 255, 255], 65535, Protocol::Udp),
            frontend([0, 0, 0, 0], 1, Protocol::Tcp),
        ] {
            assert_eq!(FrontendKey::new(original).frontend(), Ok(original));
        }
        let address: SocketAddrV4 = "10.1.2.3:65000".parse().expect("address");
        assert_eq!(BackendValue::new(address).address(), address);
        assert_eq!(MemberKey::new(7, address).address(), address);
        assert_eq!(MemberKey::new(7, address).set_id, 7);
    }

    #[test]
    fn unknown_protocol_numbers_are_reported() {
        let mut key = FrontendKey::new(frontend([10, 0, 0, 1], 80, Protocol::Tcp));
        key.protocol = 132;
        assert_eq!(key.frontend(), Err(132));
    }

    #[test]
    fn service_values_carry_affinity_only_with_the_flag() {
        let plain = ServiceValue::new(3, 2, None);
        assert_eq!((plain.flags, plain.affinity_ms, plain.affinity_ms()), (0, 0, None));
        let sticky = ServiceValue::new(3, 2, Some(10_800_000));
        assert_eq!(sticky.flags, FLAG_AFFINITY);
        assert_eq!(sticky.affinity_ms(), Some(10_800_000));
    }
}
