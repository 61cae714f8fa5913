//! The Kubernetes REST API served from a Flotilla store replica.
//!
//! Every master runs one [`ApiServer`] over its own replica: reads and watches are served
//! locally (after a read barrier where Kubernetes promises consistency), writes are
//! compare-and-swap transactions that the store forwards to the Raft leader. Objects are
//! JSON under `/registry/<group>/<resource>/[<namespace>/]<name>`; an object's
//! resourceVersion is its key's modification revision.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod allocate;
pub mod apply;
pub mod auth;
mod bootstrap;
mod defaults;
mod discovery;
mod endpoints;
pub mod error;
mod handler;
pub mod meta;
mod metrics;
pub mod negotiate;
mod node_proxy;
pub mod openapi;
pub mod patch;
mod protobuf;
mod proxy;
pub mod rbac;
pub mod registry;
mod render;
pub mod request;
pub mod resources;
mod reviews;
pub mod selector;
mod server;
pub mod serviceaccount;
pub mod storage;
mod strategy;
mod subresources;
mod table;
pub mod validation;
mod workers;

pub use bootstrap::SYSTEM_NAMESPACES;
pub use handler::KUBERNETES_MINOR;
pub use server::{ApiConfig, ApiServer, ApiServerError};

/// The largest object the store accepts (its request limit, less room for the transaction).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;
