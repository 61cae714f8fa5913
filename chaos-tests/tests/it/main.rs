//! End-to-end and fault tests on real flotilla processes.

mod agents;
mod controllers;
mod etcdctl;
mod faults;
mod hollow;
mod kubectl;
mod nodeports;
mod partition;
mod python;
mod services;
mod workloads;
