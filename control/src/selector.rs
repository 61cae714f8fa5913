//! Label selectors as controllers use them on pods and other children: `matchLabels` and
//! `matchExpressions` parsed once, then matched against label maps. An empty selector is an
//! error here, because a controller selecting every pod in its namespace is never intended.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Why a selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector: {reason}")]
pub struct SelectorError {
    pub reason: String,
}

/// A parsed label selector.
#[derive(Debug)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug)]
enum Requirement {
    In { key: String, values: BTreeSet<String> },
    NotIn { key: String, values: BTreeSet<String> },
    Exists { key: String },
    DoesNotExist { key: String },
}

impl Selector {
    /// Parses `matchLabels` and `matchExpressions`, rejecting an empty selector.
    pub fn parse(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let parsed = Selector::parse_allowing_empty(selector)?;
        if parsed.requirements.is_empty() {
            return Err(SelectorError { reason: "empty selector would match every pod".into() });
        }
        Ok(parsed)
    }

    /// Whether `selector` has no requirement at all (it selects everything).
    pub fn selects_everything(selector: &LabelSelector) -> bool {
        selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
    }

    /// Parses a selector where an empty one selects everything (a claim's volume selector).
    pub fn parse_allowing_empty(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let invalid = |reason: String| SelectorError { reason };
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| Requirement::In {
                key: key.clone(),
                values: BTreeSet::from([value.clone()]),
            })
            .collect();
        for expression in selector.match_expressions.iter().flatten() {
            let key = expression.key.clone();
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(invalid(format!("{} on {key} needs values", expression.operator)))
                }
                "In" => Requirement::In { key, values },
                "NotIn" => Requirement::NotIn { key, values },
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(invalid(format!(
                        "{} on {key} takes no values",
                        expression.operator
                    )))
                }
                "Exists" => Requirement::Exists { key },
                "DoesNotExist" => Requirement::DoesNotExist { key },
                other => return Err(invalid(format!("unknown operator {other:?} on {key}"))),
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |key: &str| labels.and_then(|labels| labels.get(key));
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::In { key, values } => get(key).is_some_and(|value| values.contains(value)),
            Requirement::NotIn { key, values } => {
                !get(key).is_some_and(|value| values.contains(value))
            }
            Requirement::Exists { key } => get(key).is_some(),
            Requirement::DoesNotExist { key } => get(key).is_none(),
        })
    }
}
