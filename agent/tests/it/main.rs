//! Integration tests of the agent on this machine's real programs, in one binary to keep link
//! time down.
//!
//! - [`containerd`]: the node's own containerd started, reused, restarted, fed images and reset.
//!   Needs root and what `deploy/install.sh` installs and builds; fails (never skips) without.

mod containerd;
