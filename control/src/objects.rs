//! What controllers read from the objects they manage, read the same way everywhere: an
//! object's controller reference, a pod's readiness, Kubernetes' time ordering, counts as the
//! API's `int32` fields.

use std::cmp::Ordering;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::Metadata;

/// The object's controller: its ownerReference with `controller: true`.
pub fn controller_of<K: Metadata<Ty = ObjectMeta>>(object: &K) -> Option<&OwnerReference> {
    let references = object.metadata().owner_references.as_ref()?;
    references.iter().find(|reference| reference.controller == Some(true))
}

/// When the pod's `Ready` condition turned `True`, if it is `True` (`Some(None)` when the
/// transition time is unknown).
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|condition| condition.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|time| time.0))
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Kubernetes' `afterOrZero` ordering: a missing time sorts first, then the later time.
pub fn later_or_missing_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// A count as the API's `int32` status fields hold it (saturating).
pub fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Clears a zero value, as a Go `omitempty` round trip through the API does, so a computed
/// status compares equal to the stored one.
pub fn omit_zero<T: Default + PartialEq>(field: &mut Option<T>) {
    if field.as_ref().is_some_and(|value| *value == T::default()) {
        *field = None;
    }
}

/// Clears an empty list, as a Go `omitempty` round trip through the API does.
pub fn omit_empty<T>(list: &mut Option<Vec<T>>) {
    if list.as_ref().is_some_and(Vec::is_empty) {
        *list = None;
    }
}
