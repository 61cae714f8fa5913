//! Resource quantities of pod specs as integers, read with the control plane's parser
//! (`resource.Quantity.MilliValue()` and `Value()`: rounded up, never down).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use flotilla_control::quantity::parse_milli;

/// Milli-value of an optional quantity (0 when absent or unparsable), clamped to `i64`.
pub fn milli(quantity: Option<&Quantity>) -> i64 {
    quantity.map_or(0, |q| flotilla_control::quantity::milli(&q.0))
}

/// Whole-unit value rounded up (`Quantity.Value()`), 0 when absent or unparsable.
pub fn value(quantity: Option<&Quantity>) -> i64 {
    quantity.map_or(0, |q| flotilla_control::quantity::value(&q.0))
}
