//! Multi-version concurrency control: the deterministic core of the store.

mod backend;
mod engine;
mod record;
mod txn;

pub use backend::{Backend, MemBackend, ScanItem, SledBackend, WriteBatch};
pub use engine::{BackendEntry, Mvcc, RevisionEvents};
pub use txn::validate as validate_txn;
