//! A stand-in for the node agents in control-plane tests: it plays the kubelet's part in the
//! API for pods bound to the Node objects a test registered, with no containers at all.
//!
//! Each of its nodes is a gossip member, as an agent is, so the masters hold the nodes alive.
//! Every `PERIOD` it lists pods and, for each pod bound to one of its nodes: a pending pod is
//! reported `Running` and `Ready` (with a pod IP), or `Succeeded` when its restartPolicy is not
//! `Always` and it has run for `RUN_TIME`; a pod being deleted is confirmed gone (deleted with
//! grace period 0 and its uid as precondition), as an agent does once the containers stopped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flotilla_net::gossip::{Gossip, GossipConfig, Role, Timing};
use hyper::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::bench::{describe, Connection, JSON, MERGE_PATCH};

const PERIOD: Duration = Duration::from_millis(100);
/// How long a pod that runs to completion runs.
const RUN_TIME: Duration = Duration::from_secs(1);

/// The running stand-in; dropping it stops it (its nodes then fall silent, as dead agents).
pub struct FakeKubelet {
    task: JoinHandle<()>,
    _members: Vec<Gossip>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    /// Starts playing the kubelet of `nodes` over `connection`, gossiping with `masters` (their
    /// API addresses).
    pub async fn start(
        connection: Connection,
        nodes: &[&str],
        masters: &[SocketAddr],
    ) -> anyhow::Result<FakeKubelet> {
        let mut members = Vec::new();
        for node in nodes {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let config = GossipConfig {
                name: (*node).to_owned(),
                role: Role::Agent,
                bind: loopback,
                advertise: loopback,
                seeds: masters.to_vec(),
                timing: Timing::default(),
            };
            members.push(Gossip::start(config).await?);
        }
        let nodes: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
        let task = tokio::spawn(async move {
            loop {
                if let Err(err) = round(&connection, &nodes).await {
                    eprintln!("fake kubelet: {err:#}");
                }
                tokio::time::sleep(PERIOD).await;
            }
        });
        Ok(FakeKubelet { task, _members: members })
    }
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

/// The pod's address: 10.244.<n>.<m> from its uid, stable across rounds.
fn pod_ip(uid: &str) -> String {
    let hash = uid.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", (hash >> 8) % 250 + 1, hash % 250 + 2)
}

fn seconds_since(timestamp: &str) -> Option<u64> {
    let then: jiff::Timestamp = timestamp.parse().ok()?;
    u64::try_from(jiff::Timestamp::now().as_second() - then.as_second()).ok()
}

fn container_statuses(pod: &Value, state: Value, ready: bool) -> Value {
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    Value::Array(
        containers
            .iter()
            .map(|c| {
                json!({
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": ready,
                    "started": ready,
                    "restartCount": 0,
                    "state": state,
                })
            })
            .collect(),
    )
}

async fn round(connection: &Connection, nodes: &BTreeSet<String>) -> anyhow::Result<()> {
    let pods = connection.get_json("/api/v1/pods").await?;
    for pod in pods["items"].as_array().into_iter().flatten() {
        let Some(node) = pod["spec"]["nodeName"].as_str() else { continue };
        if !nodes.contains(node) {
            continue;
        }
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        if pod["metadata"]["deletionTimestamp"].is_string() {
            let body = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
            let _ = connection
                .call(Method::DELETE, &path, &[JSON], Bytes::from(body.to_string()))
                .await;
            continue;
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let runs_once = pod["spec"]["restartPolicy"].as_str().is_some_and(|p| p != "Always");
        let status = match phase {
            "Pending" => {
                let started = now();
                json!({"status": {
                    "phase": "Running",
                    "hostIP": "10.0.0.1",
                    "podIP": pod_ip(uid),
                    "podIPs": [{"ip": pod_ip(uid)}],
                    "startTime": started,
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                        {"type": "Ready", "status": "True", "lastTransitionTime": started},
                    ],
                    "containerStatuses": container_statuses(pod, json!({"running": {"startedAt": started}}), true),
                }})
            }
            "Running" if runs_once => {
                let started = pod["status"]["startTime"].as_str().unwrap_or_default();
                if seconds_since(started).is_none_or(|s| s < RUN_TIME.as_secs()) {
                    continue;
                }
                let finished = now();
                let terminated = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": finished}});
                json!({"status": {
                    "phase": "Succeeded",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                        {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
                        {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
                    ],
                    "containerStatuses": container_statuses(pod, terminated, false),
                }})
            }
            _ => continue,
        };
        let body = Bytes::from(status.to_string());
        connection
            .call(Method::PATCH, &format!("{path}/status"), &[MERGE_PATCH], body)
            .await
            .map_err(describe)
            .ok();
    }
    Ok(())
}
