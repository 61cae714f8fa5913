//! Taints that follow a node's conditions, as the node lifecycle controller's
//! TaintNodesByCondition sets them: `node.kubernetes.io/not-ready:NoSchedule` while Ready is
//! False and `node.kubernetes.io/unreachable:NoSchedule` while it is Unknown (or missing), so
//! the scheduler places nothing on a node that cannot run it.

use k8s_openapi::api::core::v1::{Node, Taint};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The taints `current` should become for `node`'s Ready condition, or `None` when they are
/// right already. Taints other than the condition taints' NoSchedule ones are kept as they are.
pub fn with_condition_taints(node: &Node, current: &[Taint]) -> Option<Vec<Taint>> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let wanted = match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    let is_condition_taint =
        |t: &Taint| t.effect == "NoSchedule" && (t.key == NOT_READY || t.key == UNREACHABLE);
    let mut next: Vec<Taint> = current.iter().filter(|t| !is_condition_taint(t)).cloned().collect();
    if let Some(key) = wanted {
        next.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Taint::default() });
    }
    let same = next.len() == current.len() && next.iter().all(|t| current.contains(t));
    (!same).then_some(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
        let cases = [
            (Some("True"), json!([]), None),
            (Some("False"), json!([]), Some(vec!["node.kubernetes.io/not-ready:NoSchedule"])),
            (None, json!([]), Some(vec!["node.kubernetes.io/unreachable:NoSchedule"])),
            (
                Some("Unknown"),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
                Some(vec!["node.kubernetes.io/unreachable:NoSchedule"]),
            ),
            (
                Some("True"),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
                Some(vec![]),
            ),
            (
                Some("False"),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
                None,
            ),
            (
                Some("False"),
                dedicated,
                Some(vec!["dedicated:NoSchedule", "node.kubernetes.io/not-ready:NoSchedule"]),
            ),
        ];
        for (ready, taints, expected) in cases {
            let (node, current) = node(ready, taints.clone());
            let expected = expected.map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>());
            assert_eq!(
                keys(with_condition_taints(&node, &current)),
                expected,
                "{ready:?} {taints}"
            );
        }
    }
}
