//! Integration tests of the store, in one binary to keep link time down.
//!
//! - [`kv_suite`]: etcd v3 semantics through the `KvStore` trait, run against every store.
//! - [`local`]: the single-process store on memory and sled, restart and shutdown.
//! - [`raft_storage`]: openraft's storage suite on the sled log and state machine.
//! - [`replicated`]: three in-process masters over TLS.
//! - [`snapshots`]: catching up from a Raft snapshot, and restarting after log purges.
//! - [`etcd_api`]: the etcd v3 gRPC API of in-process masters, through `etcd-client`.
//! - [`support`]: bounded waits and the in-process cluster harness.

mod etcd_api;
mod kv_suite;
mod local;
mod raft_storage;
mod replicated;
mod snapshots;
mod support;
