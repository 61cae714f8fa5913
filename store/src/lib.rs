//! Flotilla's store: a Raft-replicated key-value store with etcd v3 semantics.
//!
//! - [`mvcc`] is the deterministic core: revisions, history, transactions, leases.
//! - [`Store`] serves reads, writes, watches and leases over a [`Consensus`]: a single process
//!   ([`LocalStore`]) or Raft across masters ([`raft`]).
//! - [`etcd`] speaks the etcd v3 gRPC API over any store, so `etcdctl` works unmodified.

pub mod election;
mod error;
pub mod etcd;
mod lessor;
mod local;
pub mod mvcc;
pub mod pki;
pub mod ports;
pub mod raft;
mod shared;
mod store;
pub mod types;
mod watch;

/// Accepted connections with Nagle's algorithm off: small gRPC messages must not wait for
/// delayed ACKs (tonic applies `tcp_nodelay` only to listeners it binds itself).
pub(crate) fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream {
            // Failing to set the option only costs latency; the connection still works.
            let _ = stream.set_nodelay(true);
        }
        stream
    })
}

pub use error::{GrpcCode, StoreError};
pub use local::{LocalConsensus, LocalStore};
pub use shared::Shared;
pub use store::{Consensus, KvStore, LeaderQuery, Store};
pub use watch::{WatchBatch, Watcher};
