//! Label and field selectors, as the API server applies them to `list` and `watch` and as
//! controllers and the scheduler apply `metav1.LabelSelector` objects.
//!
//! Owns parsing (with Kubernetes 1.33's exact error messages), matching against JSON objects,
//! the canonical string forms, and which fields each built-in resource can be selected on.
//! Pure: no IO, no global state.
//!
//! The API server answers a [`SelectorError`] or [`FieldSelectorError`] from a `labelSelector`
//! or `fieldSelector` query parameter with 400 BadRequest and the error's `Display` as the
//! Status message, as Kubernetes does (kubectl prefixes it with its own "Unable to find ...").

mod field;
mod label;
mod parser;

pub use field::{
    escape_value, field_value, unescape_value, FieldOperator, FieldRequirement, FieldSelector,
    FieldSelectorError,
};
pub use label::{LabelSelector, Operator, Requirement, SelectorError};
