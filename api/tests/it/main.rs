//! Integration tests of the API server: a real HTTPS server over an in-process store.
