//! The eBPF dataplane against the running kernel: every test attaches to its own child cgroup
//! and pins under its own directory, and sends traffic from a client process inside that
//! cgroup to backends on loopback. Needs root, bpffs support, cgroup v2 at
//! `/sys/fs/cgroup/unified`, python3 and bpftool.

mod harness;
mod lifecycle;
mod tcp;
mod udp;
