//! Hollow nodes for scale tests (Kubernetes' kubemark): many simulated nodes in one process,
//! each a whole agent above the container runtime ([`Kubelet`]) over its own
//! [`HollowRuntime`], so the masters see a thousand ordinary nodes: each registers its Node
//! and Lease, reports its status, runs the pods bound to it through the pod workers, serves its
//! own API on loopback and is a member of the gossip, with its own identity.
//!
//! What a hollow node leaves out is what needs a machine of its own: containerd, the eBPF
//! service dataplane, node ports and the node-local DNS. Its machine is simulated
//! ([`Machine::simulated`]), so its status changes only when its runtime's does.
//!
//! Each node authenticates with its own client certificate (CN `system:node:<name>`, O
//! `system:nodes`), issued at start from the cluster CA: the API authorizes what a node asks by
//! that name (a service account token only for a pod bound to it), so nodes cannot share
//! one identity. The kube client speaks HTTP/1.1, so each node keeps its own connections: its
//! pods' watch, its Node's watch and one for requests. What is the same for every node is
//! shared: one forwarder per master (node `n` prefers master `n mod masters`, which spreads
//! the connections) and one cache of the Services.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use flotilla_net::gossip::{Gossip, GossipConfig, Role, Timing};
use flotilla_store::pki::{Authority, CertFiles, TlsFiles};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::containerd::cgroup_parent;
use crate::cri::HollowRuntime;
use crate::kubelet::{self, node_context, Kubelet, PodPaths};
use crate::machine::{Machine, MachineSource, SimulatedSize};
use crate::masters::{self, Masters};
use crate::upstream::Upstream;
use crate::{server, AgentError};

/// Every hollow node's address: they all live on this machine's loopback.
const ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The gossip timing of hollow nodes, slower than agents' ([`Timing::default`]): a thousand
/// members in one process answer late whenever the process is busy (a start, a burst of pods),
/// and with the agents' timing (an answer within 150 ms) they would suspect each other falsely;
/// every false suspicion is a rumour the thousand then pass around, which keeps the process
/// busy. Each member also probes less often. The masters keep their own timing for what they
/// probe, so a hollow node that stops is still found dead within seconds.
pub const HOLLOW_GOSSIP_TIMING: Timing = Timing {
    probe_period: Duration::from_secs(1),
    probe_rtt: Duration::from_millis(500),
    suspicion: Duration::from_secs(3),
};
/// How often the process checks that its tasks run on time, and how late is too late (half
/// the hollow nodes' probe round trip: members answering later are suspected).
const LAG_CHECK_EVERY: Duration = Duration::from_millis(100);
const LAG_WARNING: Duration = Duration::from_millis(250);
/// How often starting nodes are logged.
const PROGRESS_EVERY: usize = 100;
/// How long the nodes' work gets to finish at shutdown: requests in flight to masters that stop
/// at the same time may never be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a process of hollow nodes is set up.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// How many nodes: `<prefix>1` to `<prefix><count>`.
    pub count: usize,
    pub prefix: String,
    /// Every master's API, e.g. `https://127.0.0.1:6443`.
    pub api_urls: Vec<String>,
    /// The cluster CA's certificate and key, from which each node's certificate is issued.
    pub ca_file: PathBuf,
    pub ca_key_file: PathBuf,
    /// Where the nodes' certificates (`pki/`) and pod directories (`<node>/`) go.
    pub data_dir: PathBuf,
    /// How often each node looks at its (simulated) machine again.
    pub status_interval: Duration,
    /// The DNS server address and domain pods are given.
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// The simulated machine of every node.
    pub size: SimulatedSize,
    /// How many nodes start per second at most: a thousand kubelets starting in the same
    /// second is a storm of registrations and TLS handshakes, not what a scale test measures.
    pub start_rate: u32,
}

impl HollowConfig {
    /// The name of the `index`-th node (from 1).
    pub fn node_name(&self, index: usize) -> String {
        format!("{}{index}", self.prefix)
    }

    /// Checks what the API would refuse only later, node by node.
    fn validate(&self) -> Result<(), AgentError> {
        let invalid = |reason: String| AgentError::Hollow(reason);
        if self.count == 0 {
            return Err(invalid("at least one node is needed".into()));
        }
        if self.start_rate == 0 {
            return Err(invalid("the start rate must be at least one node per second".into()));
        }
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        let starts_well = self.prefix.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !starts_well || !self.prefix.chars().all(valid) {
            return Err(invalid(format!(
                "prefix {:?} does not start a node name (lowercase letters, digits, '-' and '.', \
                 starting with a letter or digit)",
                self.prefix
            )));
        }
        if self.node_name(self.count).len() > 253 {
            return Err(invalid(format!("prefix {:?} makes node names too long", self.prefix)));
        }
        Ok(())
    }
}

/// A running process of hollow nodes.
pub struct HollowNodes {
    stop: CancellationToken,
    tasks: TaskTracker,
    gossips: Vec<Gossip>,
}

/// What every node of the process shares.
struct Shared {
    masters: Masters,
    authority: Authority,
    pki_dir: PathBuf,
    /// One forwarder per master, each preferring a different one.
    forwarders: Vec<SocketAddr>,
    /// The Services cache, made with the first node's client.
    services: Option<Store<Service>>,
}

impl HollowNodes {
    /// Starts every node, one after another; on an error, stops those already started.
    pub async fn start(config: HollowConfig) -> Result<HollowNodes, AgentError> {
        config.validate()?;
        let mut nodes = HollowNodes {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            gossips: Vec::with_capacity(config.count),
        };
        nodes.tasks.spawn(watch_lag(nodes.stop.clone()));
        match nodes.start_all(&config).await {
            Ok(()) => Ok(nodes),
            Err(err) => {
                nodes.shutdown().await;
                Err(err)
            }
        }
    }

    async fn start_all(&mut self, config: &HollowConfig) -> Result<(), AgentError> {
        let pki_dir = config.data_dir.join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(|err| AgentError::DataDir {
            path: pki_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        let ca = CertFiles { cert: config.ca_file.clone(), key: config.ca_key_file.clone() };
        let masters = Masters::resolve(&config.api_urls).await?;
        let mut forwarders = Vec::new();
        for first in 0..masters.addresses.len() {
            let upstream = Upstream::start(masters.rotated(first), self.stop.clone())
                .await
                .map_err(AgentError::Upstream)?;
            forwarders.push(upstream.local);
        }
        let mut shared = Shared {
            masters,
            authority: Authority::load(&ca)?,
            pki_dir,
            forwarders,
            services: None,
        };
        let mut pace = tokio::time::interval(Duration::from_secs(1) / config.start_rate);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for index in 1..=config.count {
            pace.tick().await;
            self.start_node(config, index, &mut shared).await?;
            if index % PROGRESS_EVERY == 0 || index == config.count {
                tracing::info!(started = index, of = config.count, "starting hollow nodes");
            }
        }
        Ok(())
    }

    /// Starts node `index`: its certificate, gossip member, client, API and kubelet.
    async fn start_node(
        &mut self,
        config: &HollowConfig,
        index: usize,
        shared: &mut Shared,
    ) -> Result<(), AgentError> {
        let name = config.node_name(index);
        let cert = shared.authority.issue_agent(&name, &[&ADDRESS.to_string()], &shared.pki_dir)?;
        let files = TlsFiles { ca: &config.ca_file, cert: &cert.cert, key: &cert.key };
        let loopback = SocketAddr::new(IpAddr::V4(ADDRESS), 0);
        let gossip = Gossip::start(GossipConfig {
            name: name.clone(),
            role: Role::Agent,
            bind: loopback,
            advertise: loopback,
            seeds: shared.masters.addresses.clone(),
            timing: HOLLOW_GOSSIP_TIMING,
        })
        .await?;
        self.gossips.push(gossip);
        let forwarder = shared.forwarders[index % shared.forwarders.len()];
        let client = masters::client(files, forwarder, &shared.masters.server_name).await?;
        let services = shared
            .services
            .get_or_insert_with(|| {
                kubelet::services(client.clone(), &self.tasks, self.stop.clone())
            })
            .clone();
        let (pod_cidr_tx, pod_cidr) = watch::channel(None);
        let runtime = HollowRuntime::new(pod_cidr);
        let server =
            server::start(loopback, files, runtime.clone(), &self.tasks, self.stop.clone()).await?;
        let machine = Machine::simulated(&name, config.size);
        let node_dir = config.data_dir.join(&name);
        let paths = PodPaths {
            pods_dir: node_dir.join("pods"),
            log_root: node_dir.join("logs"),
            cgroup_root: cgroup_parent(&name),
        };
        let address = ADDRESS.to_string();
        let node =
            node_context(&address, config.cluster_dns, &config.cluster_domain, paths, &machine);
        let kubelet = Kubelet {
            name,
            address,
            server_port: server.port(),
            status_interval: config.status_interval,
            client,
            runtime,
            machine: MachineSource::Simulated(machine),
            node,
            services,
            cni: None,
            pod_cidr: pod_cidr_tx,
        };
        kubelet.spawn(&self.tasks, self.stop.clone()).await
    }

    /// How many nodes run.
    pub fn len(&self) -> usize {
        self.gossips.len()
    }

    /// Whether no node runs.
    pub fn is_empty(&self) -> bool {
        self.gossips.is_empty()
    }

    /// Stops every node's work and waits for it (at most [`SHUTDOWN_GRACE`]); meanwhile the
    /// nodes leave the gossip membership, so the masters mark them unreachable at once.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        let leave = futures::future::join_all(self.gossips.into_iter().map(Gossip::shutdown));
        let (_, drained) =
            tokio::join!(leave, tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()));
        if drained.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "hollow nodes' work did not finish in time");
        }
    }
}

/// Warns, at most every ten seconds, when the process's tasks run late: a thousand nodes on
/// too few CPUs answer gossip probes late, and the masters then find them dead.
async fn watch_lag(stop: CancellationToken) {
    let mut worst = Duration::ZERO;
    let mut since = tokio::time::Instant::now();
    loop {
        let due = tokio::time::Instant::now() + LAG_CHECK_EVERY;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        worst = worst.max(tokio::time::Instant::now().saturating_duration_since(due));
        if since.elapsed() >= Duration::from_secs(10) {
            if worst >= LAG_WARNING {
                tracing::warn!(late = ?worst, "hollow nodes run late: the process needs more CPU");
            } else {
                tracing::debug!(late = ?worst, "hollow nodes run on time");
            }
            worst = Duration::ZERO;
            since = tokio::time::Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: usize, prefix: &str) -> HollowConfig {
        HollowConfig {
            count,
            prefix: prefix.into(),
            api_urls: vec!["https://127.0.0.1:6443".into()],
            ca_file: PathBuf::from("ca.crt"),
            ca_key_file: PathBuf::from("ca.key"),
            data_dir: PathBuf::from("/tmp/hollow"),
            status_interval: Duration::from_secs(10),
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
            size: SimulatedSize::default(),
            start_rate: 50,
        }
    }

    #[test]
    fn node_names_are_the_prefix_and_a_number_from_one() {
        assert_eq!(config(3, "hollow-").node_name(1), "hollow-1");
        let cases = [
            (3, "hollow-", true),
            (1, "scale.test-", true),
            (0, "hollow-", false),
            (3, "Hollow-", false),
            (3, "-hollow", false),
            (3, "", false),
            (3, "hollow_", false),
        ];
        for (count, prefix, valid) in cases {
            assert_eq!(config(count, prefix).validate().is_ok(), valid, "{count} {prefix:?}");
        }
        assert!(config(1, &"a".repeat(253)).validate().is_err());
        let standing_still = HollowConfig { start_rate: 0, ..config(1, "hollow-") };
        assert!(standing_still.validate().is_err());
    }
}
