//! The Pod printer: READY, STATUS and RESTARTS computed exactly like `printPod` in
//! `kubernetes/pkg/printers/internalversion/printers.go`.
//!
//! STATUS walks init containers first (stopping at the first one not done), then, once
//! initialised, the app containers from last to first so the first container's state wins.
//! Restartable init containers (sidecars) count towards READY and RESTARTS.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{text, Column, AGE, NAME};
use crate::table::format::{
    age, at, bool_at, int_at, is_deleting, list_at, name, opt_bool_at, or, parse_time, since,
    str_at,
};

pub(crate) fn columns() -> Vec<Column> {
    vec![
        NAME,
        text("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        text("Status", "The aggregate status of the containers in this pod."),
        text(
            "Restarts",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        text("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
        text("Node", "NodeName indicates in which node this pod is scheduled.").wide(),
        text("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.").wide(),
        text("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.").wide(),
    ]
}

pub(crate) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = summarize(pod);
    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, since(Some(last), now))
        }
        _ => summary.restarts.to_string(),
    };
    vec![
        name(pod).into(),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.reason.into(),
        restarts.into(),
        age(pod, now).into(),
        or(pod_ip(pod), "<none>").into(),
        or(str_at(pod, &["spec", "nodeName"]), "<none>").into(),
        or(str_at(pod, &["status", "nominatedNodeName"]), "<none>").into(),
        readiness_gates(pod).into(),
    ]
}

/// The READY, STATUS and RESTARTS facts of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodSummary {
    pub ready: usize,
    pub total: usize,
    pub reason: String,
    pub restarts: i64,
    pub last_restart: Option<Timestamp>,
}

/// Computes READY, STATUS and RESTARTS.
pub(crate) fn summarize(pod: &Value) -> PodSummary {
    let status = at(pod, &["status"]).unwrap_or(&Value::Null);
    // The API server sets `Pending` on create, so an unset phase reads as Pending.
    let phase = or(str_at(status, &["phase"]), "Pending");
    let mut reason = or(str_at(status, &["reason"]), phase).to_string();
    let conditions = list_at(status, &["conditions"]);
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = list_at(pod, &["spec", "initContainers"]);
    let is_sidecar = |container_name: &str| {
        init_specs.iter().any(|spec| {
            str_at(spec, &["name"]) == container_name
                && str_at(spec, &["restartPolicy"]) == "Always"
        })
    };
    let total = list_at(pod, &["spec", "containers"]).len()
        + init_specs.iter().filter(|spec| str_at(spec, &["restartPolicy"]) == "Always").count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart = None;
    let mut sidecar_restarts = 0;
    let mut sidecar_last_restart = None;

    let mut initializing = false;
    for (index, container) in list_at(status, &["initContainerStatuses"]).iter().enumerate() {
        let sidecar = is_sidecar(str_at(container, &["name"]));
        let count = int_at(container, &["restartCount"]);
        let finished = last_termination(container);
        restarts += count;
        later(&mut last_restart, finished);
        if sidecar {
            sidecar_restarts += count;
            later(&mut sidecar_last_restart, finished);
        }
        let terminated = at(container, &["state", "terminated"]);
        let waiting_reason = str_at(container, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && opt_bool_at(container, &["started"]) == Some(true) {
            if bool_at(container, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match str_at(terminated, &["reason"]) {
                "" => match int_at(terminated, &["signal"]) {
                    0 => format!("Init:ExitCode:{}", int_at(terminated, &["exitCode"])),
                    signal => format!("Init:Signal:{signal}"),
                },
                why => format!("Init:{why}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for container in list_at(status, &["containerStatuses"]).iter().rev() {
            restarts += int_at(container, &["restartCount"]);
            later(&mut last_restart, last_termination(container));
            let waiting_reason = str_at(container, &["state", "waiting", "reason"]);
            let terminated = at(container, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = match str_at(terminated, &["reason"]) {
                    "" => match int_at(terminated, &["signal"]) {
                        0 => format!("ExitCode:{}", int_at(terminated, &["exitCode"])),
                        signal => format!("Signal:{signal}"),
                    },
                    why => why.to_string(),
                };
            } else if bool_at(container, &["ready"])
                && at(container, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if is_deleting(pod) {
        if str_at(status, &["reason"]) == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_string();
        }
    }
    PodSummary { ready, total, reason, restarts, last_restart }
}

fn last_termination(container: &Value) -> Option<Timestamp> {
    parse_time(str_at(container, &["lastState", "terminated", "finishedAt"]))
}

fn later(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(candidate) = candidate {
        if latest.is_none_or(|current| current < candidate) {
            *latest = Some(candidate);
        }
    }
}

/// Returns true when the first condition of `kind` has status True.
fn condition_true(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == kind)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

fn pod_ip(pod: &Value) -> &str {
    let first = list_at(pod, &["status", "podIPs"]).first().map(|ip| str_at(ip, &["ip"]));
    match first {
        Some(ip) if !ip.is_empty() => ip,
        _ => str_at(pod, &["status", "podIP"]),
    }
}

fn readiness_gates(pod: &Value) -> String {
    let gates = list_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list_at(pod, &["status", "conditions"]);
    let satisfied = gates
        .iter()
        .filter(|gate| condition_true(conditions, str_at(gate, &["conditionType"])))
        .count();
    format!("{satisfied}/{}", gates.len())
}
