//! Taints that follow a node's Ready condition, as Kubernetes' node lifecycle controller sets
//! them, both effects computed by one function so they always agree:
//! - `NoSchedule` (TaintNodesByCondition): `node.kubernetes.io/not-ready` while Ready is False
//!   and `node.kubernetes.io/unreachable` while it is Unknown (or missing), so the scheduler
//!   places nothing on a node that cannot run it.
//! - `NoExecute` (doNoExecuteTaintingPass): the same keys while Ready is False or Unknown, with
//!   `timeAdded`, so the taint manager evicts the pods that do not tolerate them. A node that has
//!   no Ready condition yet gets none: it has never run anything.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// The status of the node's Ready condition (`True`, `False`, `Unknown`), if it has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// Whether `taint` is one of the taints this module sets from the Ready condition.
pub fn is_condition_taint(taint: &Taint) -> bool {
    (taint.key == NOT_READY || taint.key == UNREACHABLE)
        && (taint.effect == NO_SCHEDULE || taint.effect == NO_EXECUTE)
}

/// The taints `current` should become for a node whose Ready condition has status `ready`
/// (`None`: no Ready condition), or `None` when they are right already. Other taints are kept
/// as they are and where they are; a condition taint already present is kept (with its
/// `timeAdded`); a new `NoExecute` one is stamped with `now`.
pub fn with_condition_taints(
    ready: Option<&str>,
    current: &[Taint],
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let no_schedule = match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    let no_execute = match ready {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    };
    let wanted: Vec<(&str, &str)> = [(no_schedule, NO_SCHEDULE), (no_execute, NO_EXECUTE)]
        .into_iter()
        .filter_map(|(key, effect)| Some((key?, effect)))
        .collect();
    let is_wanted =
        |t: &Taint| wanted.iter().any(|(key, effect)| t.key == *key && t.effect == *effect);
    let mut next: Vec<Taint> =
        current.iter().filter(|t| !is_condition_taint(t) || is_wanted(t)).cloned().collect();
    for (key, effect) in wanted {
        if !next.iter().any(|t| t.key == key && t.effect == effect) {
            next.push(Taint {
                key: key.into(),
                effect: effect.into(),
                time_added: (effect == NO_EXECUTE).then_some(Time(now)),
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().unwrap()
    }

    fn node(ready: Option<&str>, taints: serde_json::Value) -> (Node, Vec<Taint>) {
        let conditions = match ready {
            Some(status) => json!([{"type": "Ready", "status": status}]),
            None => json!([]),
        };
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap();
        let taints = node.spec.clone().unwrap().taints.unwrap_or_default();
        (node, taints)
    }

    fn keys(taints: Option<Vec<Taint>>) -> Option<Vec<String>> {
        taints.map(|t| t.into_iter().map(|t| format!("{}:{}", t.key, t.effect)).collect())
    }

    #[test]
    fn condition_taints_follow_readiness() {
        let dedicated = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
        let unreachable_both = json!([
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
             "timeAdded": "2025-01-01T11:00:00Z"},
        ]);
        let cases = [
            (Some("True"), json!([]), None),
            (
                Some("False"),
                json!([]),
                Some(vec![
                    "node.kubernetes.io/not-ready:NoSchedule",
                    "node.kubernetes.io/not-ready:NoExecute",
                ]),
            ),
            (None, json!([]), Some(vec!["node.kubernetes.io/unreachable:NoSchedule"])),
            (
                Some("Unknown"),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
                Some(vec![
                    "node.kubernetes.io/unreachable:NoSchedule",
                    "node.kubernetes.io/unreachable:NoExecute",
                ]),
            ),
            (
                Some("True"),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
                Some(vec![]),
            ),
            (
                Some("False"),
                json!([
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                ]),
                None,
            ),
            (
                Some("False"),
                dedicated,
                Some(vec![
                    "dedicated:NoSchedule",
                    "node.kubernetes.io/not-ready:NoSchedule",
                    "node.kubernetes.io/not-ready:NoExecute",
                ]),
            ),
            (Some("Unknown"), unreachable_both.clone(), None),
            (
                Some("False"),
                unreachable_both.clone(),
                Some(vec![
                    "node.kubernetes.io/not-ready:NoSchedule",
                    "node.kubernetes.io/not-ready:NoExecute",
                ]),
            ),
            (Some("True"), unreachable_both, Some(vec![])),
            (Some("True"), json!([{"key": "gpu", "effect": "NoExecute"}]), None),
        ];
        for (ready, taints, expected) in cases {
            let (node, current) = node(ready, taints.clone());
            assert_eq!(ready_status(&node), ready);
            let expected = expected.map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
            assert_eq!(
                keys(with_condition_taints(ready, &current, now())),
                expected,
                "{ready:?} {taints}"
            );
        }
    }

    #[test]
    fn only_new_no_execute_taints_are_stamped() {
        let (_, current) = node(
            Some("Unknown"),
            json!([
                {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                 "timeAdded": "2025-01-01T11:00:00Z"},
            ]),
        );
        let next = with_condition_taints(Some("Unknown"), &current, now()).unwrap();
        let added = |key: &str, effect: &str| {
            next.iter()
                .find(|t| t.key == key && t.effect == effect)
                .map(|t| t.time_added.as_ref().map(|time| time.0.to_string()))
        };
        // The unreachable NoExecute taint keeps when it was added; NoSchedule has no time.
        assert_eq!(added(UNREACHABLE, NO_EXECUTE), Some(Some("2025-01-01T11:00:00Z".into())));
        assert_eq!(added(UNREACHABLE, NO_SCHEDULE), Some(None));
        assert_eq!(added("dedicated", NO_EXECUTE), Some(None));
        assert_eq!(next[0], current[0]);

        let next = with_condition_taints(Some("False"), &current, now()).unwrap();
        let not_ready = next.iter().find(|t| t.key == NOT_READY && t.effect == NO_EXECUTE);
        assert_eq!(not_ready.and_then(|t| t.time_added.clone()), Some(Time(now())));
    }
}
