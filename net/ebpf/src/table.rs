//! What the service dataplane holds: for every (virtual IP, port, protocol) the backends new
//! connections go to, and the contract every implementation of [`ServiceTable`] keeps.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// A transport protocol a service frontend answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One service frontend: a virtual IP, a port and a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

/// Where new connections to a frontend go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backends {
    /// The addresses new connections are spread over; empty refuses connections at `connect()`.
    pub addresses: Vec<SocketAddrV4>,
    /// `sessionAffinity: ClientIP`: a client keeps its backend for this long after its last
    /// connection.
    pub affinity: Option<Duration>,
}

/// The dataplane's service table.
///
/// Every change is applied before the call returns and is visible to the next `connect()`
/// or `sendmsg()` on the machine; a frontend is never seen with a mix of its old and new
/// backends.
pub trait ServiceTable: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates or replaces the backends of `frontend`.
    fn upsert(&mut self, frontend: Frontend, backends: &Backends) -> Result<(), Self::Error>;

    /// Removes `frontend`; removing an absent frontend is not an error.
    fn remove(&mut self, frontend: Frontend) -> Result<(), Self::Error>;

    /// Everything the table holds now (after a restart, what an earlier agent programmed).
    fn list(&self) -> Result<BTreeMap<Frontend, Backends>, Self::Error>;
}

/// A service table in memory, for tests and simulated nodes.
#[derive(Debug, Default, Clone)]
pub struct MemoryTable {
    pub entries: BTreeMap<Frontend, Backends>,
}

impl ServiceTable for MemoryTable {
    type Error = std::convert::Infallible;

    fn upsert(&mut self, frontend: Frontend, backends: &Backends) -> Result<(), Self::Error> {
        self.entries.insert(frontend, backends.clone());
        Ok(())
    }

    fn remove(&mut self, frontend: Frontend) -> Result<(), Self::Error> {
        self.entries.remove(&frontend);
        Ok(())
    }

    fn list(&self) -> Result<BTreeMap<Frontend, Backends>, Self::Error> {
        Ok(self.entries.clone())
    }
}
