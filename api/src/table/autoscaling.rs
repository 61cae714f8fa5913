//! The HorizontalPodAutoscaler printer, with `formatHPAMetrics` for the TARGETS column.
//!
//! Objects may be stored as `autoscaling/v2` (`spec.metrics`) or `autoscaling/v1`
//! (`spec.targetCPUUtilizationPercentage`); v1 objects are read as the single CPU
//! utilisation metric the API server converts them to.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::table::columns::{text, Column, AGE, NAME};
use crate::table::format::{age, at, int_at, list_at, name, opt_int_at, str_at};
use crate::table::quantity::canonical;
use crate::table::Printer;

/// Returns the printer of an `autoscaling` kind, if it has one.
pub(crate) fn printer(kind: &str) -> Option<Printer> {
    (kind == "HorizontalPodAutoscaler").then_some(Printer { columns, cells })
}

fn columns() -> Vec<Column> {
    vec![
        NAME,
        text("Reference", "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
        text("Targets", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used)."),
        text("MinPods", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
        text("MaxPods", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
        text("Replicas", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
        AGE,
    ]
}

fn cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, &["spec", "scaleTargetRef", "kind"]),
        str_at(hpa, &["spec", "scaleTargetRef", "name"])
    );
    // The API server defaults `minReplicas` to 1.
    let min_pods = opt_int_at(hpa, &["spec", "minReplicas"]).unwrap_or(1).to_string();
    let (specs, statuses) = metrics(hpa);
    vec![
        name(hpa).into(),
        reference.into(),
        format_metrics(&specs, &statuses).into(),
        min_pods.into(),
        int_at(hpa, &["spec", "maxReplicas"]).into(),
        int_at(hpa, &["status", "currentReplicas"]).into(),
        age(hpa, now).into(),
    ]
}

/// Returns the v2 metric specs and current statuses, converting the v1 shape.
fn metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    let specs = list_at(hpa, &["spec", "metrics"]);
    if !specs.is_empty() {
        return (specs.to_vec(), list_at(hpa, &["status", "currentMetrics"]).to_vec());
    }
    let Some(target) = opt_int_at(hpa, &["spec", "targetCPUUtilizationPercentage"]) else {
        return (Vec::new(), Vec::new());
    };
    let spec = json!({"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": target}}});
    let statuses = match opt_int_at(hpa, &["status", "currentCPUUtilizationPercentage"]) {
        Some(current) => vec![json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": current}}})],
        None => Vec::new(),
    };
    (vec![spec], statuses)
}

/// Returns a quantity's canonical string, or Go's `<nil>` for an unset `*Quantity`.
fn quantity(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => canonical(text),
        Some(Value::Number(number)) => canonical(&number.to_string()),
        _ => "<nil>".to_string(),
    }
}

/// Returns `formatHPAMetrics`: up to two `current/target` entries, then `+ N more...`.
pub(crate) fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| format_metric(spec, statuses.get(index).unwrap_or(&Value::Null)))
        .collect();
    let shown = list[..list.len().min(MAX)].join(", ");
    if list.len() > MAX {
        format!("{shown} + {} more...", list.len() - MAX)
    } else {
        shown
    }
}

fn format_metric(spec: &Value, status: &Value) -> String {
    let unknown = || "<unknown>".to_string();
    match str_at(spec, &["type"]) {
        kind @ ("External" | "Object") => {
            let field = if kind == "External" { "external" } else { "object" };
            let target = at(spec, &[field, "target"]).unwrap_or(&Value::Null);
            let current = at(status, &[field]);
            if let Some(average) = at(target, &["averageValue"]) {
                let current = current
                    .and_then(|c| at(c, &["current", "averageValue"]))
                    .map_or_else(unknown, |value| quantity(Some(value)));
                format!("{current}/{} (avg)", quantity(Some(average)))
            } else {
                let current =
                    current.map_or_else(unknown, |c| quantity(at(c, &["current", "value"])));
                format!("{current}/{}", quantity(at(target, &["value"])))
            }
        }
        "Pods" => {
            let current = at(status, &["pods"])
                .map_or_else(unknown, |c| quantity(at(c, &["current", "averageValue"])));
            format!("{current}/{}", quantity(at(spec, &["pods", "target", "averageValue"])))
        }
        kind @ ("Resource" | "ContainerResource") => {
            let field = if kind == "Resource" { "resource" } else { "containerResource" };
            let resource = str_at(spec, &[field, "name"]);
            let target = at(spec, &[field, "target"]).unwrap_or(&Value::Null);
            let current = at(status, &[field]);
            if let Some(average) = at(target, &["averageValue"]) {
                let current =
                    current.map_or_else(unknown, |c| quantity(at(c, &["current", "averageValue"])));
                format!("{resource}: {current}/{}", quantity(Some(average)))
            } else {
                let current = current
                    .and_then(|c| opt_int_at(c, &["current", "averageUtilization"]))
                    .map_or_else(unknown, |percent| format!("{percent}%"));
                let target = opt_int_at(target, &["averageUtilization"])
                    .map_or_else(|| "<auto>".to_string(), |percent| format!("{percent}%"));
                format!("{resource}: {current}/{target}")
            }
        }
        _ => "<unknown type>".to_string(),
    }
}
