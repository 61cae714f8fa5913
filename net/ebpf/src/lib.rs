//! Flotilla's service dataplane: an eBPF socket load balancer.
//!
//! Four cgroup sock_addr programs (`bpf/lb.c`, compiled by clang at build time) run on the
//! cgroup v2 directory of [`DataplaneConfig::cgroup`]:
//! - `connect4` (TCP, connected UDP) and `sendmsg4` (unconnected UDP) rewrite a destination
//!   that is a service frontend to one of its backends, picked at random or, with session
//!   affinity, the backend the client's network namespace used last (while within the timeout
//!   and still a backend). A frontend with no backends refuses the call: the application gets
//!   `EPERM` at once instead of a connection that hangs. Other destinations are untouched.
//! - `recvmsg4` (UDP replies) and `getpeername4` show the frontend in place of the backend, so
//!   applications only ever see the virtual IP.
//!
//! # Maps (pinned by name in [`DataplaneConfig::pin_dir`])
//! - `services`: frontend (ip, port, protocol) → (set id, count, affinity flag and timeout).
//! - `backends`: (set id, slot) → backend (ip, port), slots `0..count` of each set.
//! - `members`: (set id, backend) → present, only for sets of services with affinity.
//! - `affinity` (LRU): (netns cookie, frontend) → (backend, last used).
//! - `reverse` (LRU): (socket cookie, backend) → frontend, written on every translation.
//!
//! Addresses and ports are in network byte order, as the kernel hands them to the programs.
//!
//! # Consistency
//! A frontend is never seen with a mix of its old and new backends: a set's slots are written
//! before the service entry names them and deleted only after it stops naming them, and the
//! entry itself changes in one map write (the `plan` module decides the writes). Appending or
//! truncating backends changes only the slots involved; an unchanged frontend costs nothing;
//! any other change writes the new list under a fresh set id, flips the entry, then deletes
//! the old set. A program that loses that race (its slot vanished) reads the entry again, and
//! refuses the call after four tries rather than leave it untranslated. An update costs
//! O(backends of the frontend it changes), never a scan of the table.
//!
//! # Pinning and restarts
//! `pin_dir` holds the five maps and one bpf link per program (`link_connect4`, …). Links keep
//! the programs attached after the agent exits, so traffic keeps flowing while it restarts.
//! [`Dataplane::open`] reuses pinned maps with their contents (after checking their shape),
//! reads back what they hold (so [`ServiceTable::list`] lets a new agent diff against it),
//! continues set ids after the highest found, deletes entries no service references (left by
//! an interrupted update), then attaches fresh programs and replaces each old link only after
//! its successor is attached. [`reset`] detaches the links and removes the directory.
#![allow(unsafe_code)]

mod dataplane;
mod error;
mod layout;
mod links;
mod maps;
mod plan;
mod set_ids;
mod sys;
mod table;

pub use dataplane::{reset, Dataplane, DataplaneConfig, DEFAULT_CGROUP, MAX_AFFINITY_MILLIS};
pub use error::EbpfError;
pub use table::{Backends, Frontend, MemoryTable, Protocol, ServiceTable};
