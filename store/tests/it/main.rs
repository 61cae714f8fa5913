//! Integration tests of the store, in one binary to keep link time down.
//!
//! - [`kv_suite`]: etcd v3 semantics through the `KvStore` trait, run against every store.
//! - [`local`]: the single-process store on memory and sled, restart and shutdown.
//! - [`raft_storage`]: openraft's storage suite on the sled log and state machine.
//! - [`replicated`]: three in-process masters over TLS.

mod kv_suite;
mod local;
mod raft_storage;
mod replicated;
mod support;
