//! The agent's container runtime layer: the [`Runtime`] trait (what the agent asks of a runtime),
//! [`CriRuntime`] (that trait over containerd's CRI v1 socket), [`HollowRuntime`] (that trait in
//! memory, for hollow nodes) and [`CriError`].
//!
//! Invariant: a `Runtime` call never retries by itself; the caller's sync loop owns retries and
//! backoff, guided by [`CriError::is_retryable`].

mod client;
mod error;
mod hollow;
mod runtime;

pub use client::{CriRuntime, CriRuntimeConfig};
pub use error::CriError;
pub use hollow::HollowRuntime;
pub use runtime::{ExecOutput, Runtime, RuntimeVersion, StreamRequest};
