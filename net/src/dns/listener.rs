//! Binding the server's UDP and TCP sockets (IO).
//!
//! Invariants: every IPv4 socket gets `IP_FREEBIND` (and every IPv6 socket `IPV6_FREEBIND`)
//! before `bind`, so the server can listen on an address that is assigned only later (the pod
//! bridge's gateway appears when the first pod is networked). UDP and TCP of one listen
//! address share one port, also when port 0 asks for any free one.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use super::error::DnsError;

/// How many times port 0 is retried when the UDP port it picked is taken for TCP.
const FREE_PORT_ATTEMPTS: usize = 16;
/// The TCP accept backlog.
const BACKLOG: i32 = 1024;

/// The UDP socket and the TCP listener for one listen address.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) address: SocketAddr,
    pub(crate) udp: UdpSocket,
    pub(crate) tcp: TcpListener,
}

impl Listener {
    /// Binds UDP and TCP on `requested`. Must run inside a tokio runtime.
    pub(crate) fn bind(requested: SocketAddr) -> Result<Self, DnsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let udp = bind_socket(requested, Type::DGRAM, Protocol::UDP)
                .map_err(|source| DnsError::Bind { address: requested, protocol: "udp", source })?;
            let address = local_address(&udp, requested, "udp")?;
            match bind_socket(address, Type::STREAM, Protocol::TCP) {
                Ok(tcp) => {
                    let udp = UdpSocket::from_std(udp.into()).map_err(|source| DnsError::Bind {
                        address,
                        protocol: "udp",
                        source,
                    })?;
                    let tcp = TcpListener::from_std(tcp.into())
                        .map_err(|source| DnsError::Bind { address, protocol: "tcp", source })?;
                    return Ok(Self { address, udp, tcp });
                }
                Err(error)
                    if error.kind() == io::ErrorKind::AddrInUse
                        && requested.port() == 0
                        && attempt < FREE_PORT_ATTEMPTS =>
                {
                    continue;
                }
                Err(source) => return Err(DnsError::Bind { address, protocol: "tcp", source }),
            }
        }
    }
}

fn bind_socket(address: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    if address.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)?;
    }
    if kind == Type::STREAM {
        // Lets a restarted server bind again while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    if kind == Type::STREAM {
        socket.listen(BACKLOG)?;
    }
    Ok(socket)
}

fn local_address(
    socket: &Socket,
    requested: SocketAddr,
    protocol: &'static str,
) -> Result<SocketAddr, DnsError> {
    let bind_error = |source| DnsError::Bind { address: requested, protocol, source };
    socket
        .local_addr()
        .map_err(bind_error)?
        .as_socket()
        .ok_or_else(|| bind_error(io::Error::other("the socket has no inet address")))
}
