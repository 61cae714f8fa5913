//! Ownership bookkeeping of structured-merge-diff's `merge.Updater`: given the sets each
//! manager owns, an update or an apply computes the new object and the new sets.
//!
//! - Every write takes the fields it adds or changes away from the other managers (an apply
//!   refuses to, listing them as conflicts, unless forced) and removes the fields it deletes
//!   from every set.
//! - An update gives its manager the fields it added or changed.
//! - An apply gives its manager exactly the fields of its configuration, and removes from the
//!   object the fields it applied last time, no longer applies, and nobody else owns.
//!
//! Kubernetes converts the object to each manager's `apiVersion` before comparing; this module
//! compares every manager's set against the object in the request's version, which is the same
//! for kinds served in one version.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::managed::ManagerKey;
use super::path::{values_equal, Path};
use super::schema::Shape;
use super::typed::{compare, merge, remove_fields, to_field_set, Comparison};

/// The fields one manager owns, at the `apiVersion` it wrote them in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VersionedSet {
    pub set: FieldSet,
    pub api_version: String,
    /// Whether the manager's last write was an apply.
    pub applied: bool,
}

/// Every manager's fields.
pub(crate) type ManagedSets = BTreeMap<ManagerKey, VersionedSet>;

/// Fields another manager owns that a write would change, in manager then path order.
pub(crate) type Conflicts = Vec<(ManagerKey, Path)>;

/// Runs updates and applies of objects of one shape.
pub(crate) struct Updater<'s, 'a> {
    pub shape: &'s Shape<'a>,
}

impl Updater<'_, '_> {
    /// Moves ownership for a write from `old` to `new` by `workflow`: other managers lose the
    /// fields the write adds or changes (unless that is a conflict and `force` is false), every
    /// manager but `workflow` loses the fields it removes, and emptied sets are dropped.
    fn update(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut ManagedSets,
        workflow: &ManagerKey,
        force: bool,
    ) -> Result<Comparison, Conflicts> {
        let comparison = compare(old, new, self.shape);
        let changed = comparison.modified.union(&comparison.added);
        let mut conflicts: BTreeMap<ManagerKey, FieldSet> = BTreeMap::new();
        for (manager, owned) in managers.iter() {
            if manager == workflow {
                continue;
            }
            let conflict = owned.set.intersection(&changed);
            if !conflict.is_empty() {
                conflicts.insert(manager.clone(), conflict);
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts
                .into_iter()
                .flat_map(|(manager, set)| {
                    set.paths().into_iter().map(move |path| (manager.clone(), path))
                })
                .collect());
        }
        for (manager, owned) in managers.iter_mut() {
            if let Some(conflict) = conflicts.get(manager) {
                owned.set = owned.set.difference(conflict);
            }
            if manager != workflow && !comparison.removed.is_empty() {
                owned.set = owned.set.difference(&comparison.removed);
            }
        }
        managers.retain(|_, owned| !owned.set.is_empty());
        Ok(comparison)
    }

    /// Records a create, update or non-apply patch from `live` to `new` by `manager`.
    pub fn update_managers(
        &self,
        live: &Value,
        new: &Value,
        version: &str,
        managers: &mut ManagedSets,
        manager: &ManagerKey,
    ) {
        // Forced updates report no conflicts.
        let Ok(comparison) = self.update(live, new, managers, manager, true) else {
            return;
        };
        let previous = managers.remove(manager).map(|owned| owned.set).unwrap_or_default();
        let set = previous
            .difference(&comparison.removed)
            .union(&comparison.modified)
            .union(&comparison.added);
        if !set.is_empty() {
            let owned = VersionedSet { set, api_version: version.to_owned(), applied: false };
            managers.insert(manager.clone(), owned);
        }
    }

    /// Applies `config` to `live` for `manager`. Returns the new object (`None` if the apply
    /// changes nothing), or the conflicts when `force` is false and other managers own fields
    /// the apply would change.
    pub fn apply(
        &self,
        live: &Value,
        config: &Value,
        version: &str,
        managers: &mut ManagedSets,
        manager: &ManagerKey,
        force: bool,
    ) -> Result<Option<Value>, Conflicts> {
        let merged = merge(Some(live), Some(config), self.shape).unwrap_or(Value::Null);
        let last = managers.get(manager).map(|owned| owned.set.clone());
        let set = to_field_set(config, self.shape);
        let owned = VersionedSet { set, api_version: version.to_owned(), applied: true };
        let mut candidate = managers.clone();
        candidate.insert(manager.clone(), owned);
        let merged = match last {
            Some(last) if !last.is_empty() => self.prune(&merged, &candidate, &last),
            _ => merged,
        };
        self.update(live, &merged, &mut candidate, manager, force)?;
        *managers = candidate;
        Ok((!values_equal(live, &merged)).then_some(merged))
    }

    /// Removes from `merged` the fields the applier owned last time (`last`) and no longer
    /// applies, unless another manager owns them.
    fn prune(&self, merged: &Value, managers: &ManagedSets, last: &FieldSet) -> Value {
        let named_last = last.with_named_fields_as_members();
        let pruned = self.remove(merged, &named_last);
        // Add back what any manager (the applier's new configuration included) owns.
        let owned = managers
            .values()
            .fold(FieldSet::new(), |all, owned| all.union(&owned.set))
            .with_named_fields_as_members();
        let merged_set = self.named_field_set(merged);
        let pruned_set = self.named_field_set(&pruned);
        let pruned = self.remove(merged, &merged_set.difference(&pruned_set.union(&owned)));
        // Add back what the applier did not own last time (owned by nobody or by updaters).
        let pruned_set = self.named_field_set(&pruned);
        self.remove(merged, &merged_set.difference(&pruned_set).intersection(&named_last))
    }

    fn named_field_set(&self, value: &Value) -> FieldSet {
        to_field_set(value, self.shape).with_named_fields_as_members()
    }

    fn remove(&self, value: &Value, fields: &FieldSet) -> Value {
        remove_fields(value, fields, self.shape).unwrap_or_else(|| Value::Object(Map::new()))
    }
}
