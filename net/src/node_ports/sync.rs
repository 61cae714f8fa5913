//! Keeps a node-port table in step with the Services: the node's networking hands it each
//! Service the proxy synced, and asks it to flush after every batch of events and on a timer
//! (which retries a failed update).

use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::plan;
use super::state::{NodePorts, Update};
use super::table::NodePortTable;
use crate::proxy::ServiceKey;

/// The node ports' state and the table it is programmed into.
pub struct NodePortSync<N: NodePortTable> {
    state: NodePorts,
    table: N,
    /// The Node's name (for `externalTrafficPolicy: Local`).
    node: String,
    /// Whether the last update failed, so a failure is logged once, not at every retry.
    failing: bool,
}

impl<N: NodePortTable> NodePortSync<N> {
    pub fn new(table: N, node: &str) -> Self {
        NodePortSync { state: NodePorts::default(), table, node: node.to_owned(), failing: false }
    }

    pub fn table(&self) -> &N {
        &self.table
    }

    /// Records what Service `key` wants now: its node ports and external addresses given
    /// `slices`, none if it is gone.
    pub fn service_changed(
        &mut self,
        key: &ServiceKey,
        service: Option<&Service>,
        slices: &[&EndpointSlice],
    ) {
        let rules =
            service.map(|service| plan::rules(service, slices, &self.node)).unwrap_or_default();
        self.state.set(key, rules);
    }

    /// Ends the first listing: the next flush replaces the table.
    pub fn listed(&mut self) {
        self.state.listed();
    }

    /// Programs what changed since the last successful flush, in one transaction. A failure is
    /// logged and left for the next flush, which asks for the same changes and any later ones.
    pub async fn flush(&mut self) {
        let Some(update) = self.state.update() else { return };
        let started = Instant::now();
        match self.table.apply(&update).await {
            Ok(()) => {
                self.state.applied(&update);
                let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                match &update {
                    Update::Replace(rules) => {
                        tracing::info!(destinations = rules.len(), elapsed_ms, "node ports in sync")
                    }
                    Update::Changes(changes) => tracing::debug!(
                        changed = changes.len(),
                        elapsed_ms,
                        "programmed node ports"
                    ),
                }
                if std::mem::take(&mut self.failing) {
                    tracing::info!("programming node ports works again");
                }
            }
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::warn!(error = %err, "programming node ports (retrying)");
            }
            Err(err) => tracing::debug!(error = %err, "programming node ports"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::plan::{NodePort, Verdict};
    use super::super::table::MemoryNodePortTable;
    use super::*;

    fn service(policy: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "externalTrafficPolicy": policy,
                     "ports": [{"port": 80, "nodePort": 30080}]},
        }))
        .unwrap()
    }

    fn slice(node: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-a", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["10.244.2.5"], "nodeName": node}],
        }))
        .unwrap()
    }

    fn verdict(sync: &NodePortSync<MemoryNodePortTable>) -> Option<Verdict> {
        let port = NodePort { protocol: flotilla_ebpf::Protocol::Tcp, port: 30080 }.into();
        Some(sync.table().rules.as_ref()?.get(&port)?.verdict.clone())
    }

    #[tokio::test]
    async fn the_table_follows_the_services_once_listed() {
        let key = ("default".to_owned(), "web".to_owned());
        let mut sync = NodePortSync::new(MemoryNodePortTable::default(), "node-1");
        sync.service_changed(&key, Some(&service("Cluster")), &[]);
        sync.flush().await;
        assert!(sync.table().applied.is_empty(), "nothing before the listing");
        sync.listed();
        sync.flush().await;
        assert_eq!(verdict(&sync), Some(Verdict::Reject));
        let elsewhere = slice("node-2");
        sync.service_changed(&key, Some(&service("Local")), &[&elsewhere]);
        sync.flush().await;
        assert_eq!(verdict(&sync), Some(Verdict::Drop));
        sync.table.broken = true;
        sync.service_changed(&key, None, &[]);
        sync.flush().await;
        assert_eq!(verdict(&sync), Some(Verdict::Drop), "the failed update changed nothing");
        sync.table.broken = false;
        sync.flush().await;
        assert_eq!(verdict(&sync), None, "the retry removed the node port");
        assert_eq!(sync.table().applied.len(), 3);
        sync.flush().await;
        assert_eq!(sync.table().applied.len(), 3, "nothing left to do");
    }
}
