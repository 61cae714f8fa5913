//! End-to-end and fault tests on real flotilla processes.

mod agents;
mod controllers;
mod etcdctl;
mod faults;
mod kubectl;
mod partition;
mod python;
mod services;
mod workloads;
