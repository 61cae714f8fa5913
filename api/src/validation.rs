//! Kubernetes name, label and object-metadata validation.
//!
//! Owns the rules of apimachinery 1.33 (`util/validation`, `util/validation/field`,
//! `api/validation`) and reproduces their user-visible messages byte for byte, because kubectl
//! and client libraries show them verbatim. Everything here is pure: values in, messages out.
//!
//! Invariants:
//! - `is_*` functions return one message per broken rule, in Kubernetes' order; empty means valid.
//! - A [`FieldError`] renders exactly like Go's `field.Error.Error()`; [`FieldError::body`] is the
//!   `StatusCause.message` and [`FieldError::reason`] the `StatusCause.reason`.
//! - Object maps are walked in sorted key order (Go walks maps randomly; sorting keeps messages
//!   deterministic and is one of the orders Kubernetes can produce).

mod field_error;
mod meta;
mod names;

pub use field_error::{
    aggregate_message, go_float, go_quote, go_value, invalid_status_message, CauseKind, FieldError,
};
pub use meta::{
    validate_annotations, validate_builtin_finalizers, validate_finalizers, validate_labels,
    validate_object_meta, validate_owner_references, TOTAL_ANNOTATION_SIZE_LIMIT,
};
pub use names::{
    empty_error, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, is_valid_path_segment_name, is_valid_path_segment_prefix, max_len_error,
    regex_error, validate_generate_name, validate_name, NameRule, DNS1035_LABEL_MAX_LENGTH,
    DNS1123_LABEL_MAX_LENGTH, DNS1123_SUBDOMAIN_MAX_LENGTH, LABEL_VALUE_MAX_LENGTH,
};
