//! Matching pods' placement rules against nodes: node selector terms (label expressions and
//! `metadata.name` fields) and taint tolerations, with Kubernetes' semantics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

/// The only field a node selector term may match on.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether `toleration` tolerates `taint` (Kubernetes' `Toleration.ToleratesTaint`): an empty
/// effect tolerates every effect, an empty key with `Exists` every key.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    let key = toleration.key.as_deref().unwrap_or_default();
    if (!effect.is_empty() && effect != taint.effect) || (!key.is_empty() && key != taint.key) {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether a node with `labels` named `name` satisfies `term`: every label expression and
/// every field requirement must hold. An empty term, or one that does not parse (for example
/// `In` without values), matches nothing, as `NodeSelectorRequirementsAsSelector` fails.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| field_matches(r, name))
}

/// Whether a label `value` (absent when `None`) satisfies `requirement`.
pub fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let compare = |greater: bool| {
        let ([bound], Some(value)) = (values, value) else { return false };
        match (value.parse::<i64>(), bound.parse::<i64>()) {
            (Ok(value), Ok(bound)) => (greater && value > bound) || (!greater && value < bound),
            _ => false,
        }
    };
    match requirement.operator.as_str() {
        "In" => !values.is_empty() && value.is_some_and(|value| values.contains(value)),
        "NotIn" => !values.is_empty() && value.is_none_or(|value| !values.contains(value)),
        "Exists" => values.is_empty() && value.is_some(),
        "DoesNotExist" => values.is_empty() && value.is_none(),
        "Gt" => compare(true),
        "Lt" => compare(false),
        _ => false,
    }
}

/// Field requirements support only `metadata.name`, `In` or `NotIn`, with exactly one value.
fn field_matches(requirement: &NodeSelectorRequirement, node_name: &str) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let [value] = values else { return false };
    requirement.key == NODE_NAME_FIELD
        && match requirement.operator.as_str() {
            "In" => value == node_name,
            "NotIn" => value != node_name,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSelectorTerm, Taint, Toleration};
    use serde_json::json;

    use super::{term_matches, tolerates};

    #[test]
    fn tolerations() {
        let taint = |key: &str, value: &str, effect: &str| Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Taint::default()
        };
        let toleration =
            |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let gpu = taint("gpu", "yes", "NoSchedule");
        let cases = [
            (json!({"key": "gpu", "value": "yes", "effect": "NoSchedule"}), true),
            (json!({"key": "gpu", "value": "no"}), false),
            (json!({"key": "gpu", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}), false),
            // As upstream: an empty key with `Equal` compares values (validation rejects it).
            (json!({"value": "yes"}), true),
        ];
        for (t, expected) in cases {
            assert_eq!(tolerates(&toleration(t.clone()), &gpu), expected, "{t}");
        }
    }

    #[test]
    fn terms() {
        let labels = [("zone".to_string(), "a".to_string()), ("cores".into(), "8".into())].into();
        let term =
            |v: serde_json::Value| -> NodeSelectorTerm { serde_json::from_value(v).unwrap() };
        let cases = [
            (json!({}), false),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}),
                true,
            ),
            (json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": []}]}), false),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
                false,
            ),
            (json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}), true),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                true,
            ),
            (
                json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
                false,
            ),
            (
                json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}),
                false,
            ),
        ];
        for (t, expected) in cases {
            assert_eq!(term_matches(&term(t.clone()), &labels, "n1"), expected, "{t}");
        }
    }
}
