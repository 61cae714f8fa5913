//! Integration tests of the API server: a real HTTPS server over an in-process store, driven
//! the way kubectl and controllers drive it.

mod auth;
mod bad_input;
mod crud;
mod discovery;
mod finalizers;
mod list;
mod patch;
mod proxy;
mod service_accounts;
mod services;
mod support;
mod watch;
