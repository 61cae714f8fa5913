//! Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks for with
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`.
//!
//! Columns and cells follow the real API server: the built-in printers of
//! `kubernetes/pkg/printers/internalversion/printers.go`, the default table convertor
//! (`Name`, `Created At`) for built-in kinds without a printer (Role, ClusterRole,
//! LimitRange, CustomResourceDefinition), the aggregator's APIService printer, and
//! `additionalPrinterColumns` for custom resources.
//!
//! Invariants: everything here is pure (the caller passes `now`); `cells` returns exactly
//! one cell per column of `columns` for the same kind, wide (priority 1) columns
//! included, since the server always prints wide and kubectl hides them; objects are the
//! API JSON as stored and missing fields read as Go zero values, except fields the API
//! server always defaults on write (replicas, pod phase, service type and protocol, PV
//! reclaim policy and volume modes, secret type, namespace phase, CronJob `suspend`, HPA
//! `minReplicas`), which read as their `v1` default so an object stored without
//! defaulting prints as it would on a real cluster.

mod apps;
mod autoscaling;
mod batch;
mod columns;
mod core;
mod custom;
mod format;
mod jsonpath;
mod networking;
mod other;
mod pod;
mod quantity;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde_json::{Map, Value};

pub use self::columns::Column;
pub use self::custom::{custom_cells, custom_columns, CustomColumn};
#[cfg(test)]
use self::format::human_duration;
#[cfg(test)]
use self::jsonpath::JsonPath;

use self::columns::{AGE, CREATION_DESCRIPTION, NAME};
use self::format::{age, created_at, name};

/// A kind's column list and the function printing one object's cells.
#[derive(Clone, Copy)]
pub(crate) struct Printer {
    pub(crate) columns: fn() -> Vec<Column>,
    pub(crate) cells: fn(&Value, Timestamp) -> Vec<Value>,
}

impl Printer {
    pub(crate) const fn new(
        columns: fn() -> Vec<Column>,
        cells: fn(&Value, Timestamp) -> Vec<Value>,
    ) -> Self {
        Printer { columns, cells }
    }
}

/// Kinds the API server prints with the default table convertor.
const DEFAULT_CONVERTOR: Printer = Printer { columns: default_columns, cells: default_cells };

/// Kinds nobody declared a printer for.
const UNKNOWN: Printer = Printer { columns: unknown_columns, cells: unknown_cells };

fn printer(group: &str, kind: &str) -> Printer {
    let found = match (group, kind) {
        ("", "LimitRange")
        | ("rbac.authorization.k8s.io", "Role" | "ClusterRole")
        | ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(DEFAULT_CONVERTOR),
        ("", _) | ("events.k8s.io", "Event") => self::core::printer(kind),
        ("apps", _) => apps::printer(kind),
        ("batch", _) => batch::printer(kind),
        ("autoscaling", _) => autoscaling::printer(kind),
        ("networking.k8s.io" | "discovery.k8s.io", _) => networking::printer(kind),
        ("extensions", _) => apps::printer(kind).or_else(|| networking::printer(kind)),
        _ => other::printer(group, kind),
    };
    found.unwrap_or(UNKNOWN)
}

/// Returns the columns the API server prints for `kind` in API `group` (`""` for core).
/// Kinds without a known printer get `Name` and `Age`.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    (printer(group, kind).columns)()
}

/// Returns one cell per column of [`columns`] for `obj`, with ages measured at `now`.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    (printer(group, kind).cells)(obj, now)
}

fn default_columns() -> Vec<Column> {
    vec![NAME, Column::new("Created At", "date", CREATION_DESCRIPTION)]
}

fn default_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name(obj).into(), created_at(obj).into()]
}

fn unknown_columns() -> Vec<Column> {
    vec![NAME, AGE]
}

fn unknown_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj).into(), age(obj, now).into()]
}

/// A column that can describe itself as a `TableColumnDefinition`.
pub trait TableColumn {
    fn definition(&self) -> Value;
}

impl TableColumn for Column {
    fn definition(&self) -> Value {
        self.to_json()
    }
}

impl TableColumn for CustomColumn {
    fn definition(&self) -> Value {
        self.to_json()
    }
}

/// Builds a `meta.k8s.io/v1 Table` from columns and `(cells, object)` rows. The object is
/// the full object or a `PartialObjectMetadata` (`includeObject`); `null` omits it. The
/// caller fills `metadata` (`resourceVersion`, `continue`, `remainingItemCount`).
pub fn table_json<C: TableColumn>(columns: &[C], rows: Vec<(Vec<Value>, Value)>) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, object)| {
            let mut row = Map::new();
            row.insert("cells".to_string(), Value::Array(cells));
            if !object.is_null() {
                row.insert("object".to_string(), object);
            }
            Value::Object(row)
        })
        .collect();
    // Built by moving the rows in: `json!` would copy each of them.
    let mut table = Map::new();
    table.insert("kind".to_string(), "Table".into());
    table.insert("apiVersion".to_string(), "meta.k8s.io/v1".into());
    table.insert("metadata".to_string(), Value::Object(Map::new()));
    let definitions = columns.iter().map(TableColumn::definition).collect();
    table.insert("columnDefinitions".to_string(), Value::Array(definitions));
    table.insert("rows".to_string(), Value::Array(rows));
    Value::Object(table)
}
