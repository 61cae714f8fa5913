//! Server-side apply and `metadata.managedFields` tracking, as the Kubernetes 1.33 API server
//! does them (apimachinery's fieldmanager over structured-merge-diff v4.6).
//!
//! - [`apply`] merges an applied configuration (`application/apply-patch+yaml`) into the stored
//!   object: associative lists merge by key, atomic values are replaced, and the fields the
//!   manager applied before but no longer applies are removed unless another manager owns them.
//!   Changing a field another manager owns is a conflict (409) unless forced, which moves the
//!   ownership instead.
//! - [`record_update`] records who changed what on every other write (create, update, patch).
//! - [`FieldSet`] is the set of fields a manager owns, in its `fieldsV1` form.
//!
//! Invariants:
//! - Everything is pure: functions take the stored object and the request and return the new
//!   object (or an [`ApplyError`]); nothing is written on failure.
//! - The schema view (`schema.rs`) comes from the strategic merge [`PatchMeta`] plus what
//!   Kubernetes declares beyond it for built-in kinds; custom resources (`PlainMeta`) merge maps
//!   granularly and replace lists.
//! - Objects are handled in the request's version; managers that wrote in another version are
//!   compared in this one (Kubernetes converts; built-in kinds served in one version are equal).
//!
//! Left to the caller: the URL's name and namespace on creation (on update they are checked
//! against the stored object), deriving a manager name from the User-Agent, validating the
//! `fieldManager` query parameter, defaulting the merged object, and resetting fields the
//! resource's strategy owns (status on the main resource) before calling [`record_update`].

mod error;
mod fieldset;
mod kube_schema;
mod last_applied;
mod managed;
mod path;
mod schema;
mod typed;
mod updater;

#[cfg(test)]
mod tests;

use serde_json::{json, Value};

pub use self::error::{ApplyError, ApplyErrorStatus, Conflict};
pub use self::fieldset::{FieldSet, FieldsV1Error};
pub use self::last_applied::LAST_APPLIED_ANNOTATION;
use self::last_applied::{allowed_conflicts, update_annotation, KUBECTL_MANAGER};
pub use self::managed::Operation;
use self::managed::{is_reset, Managed, ManagerKey};
pub use self::path::{Path, PathDisplay, PathElement};
use self::schema::{group_version, Shape};
use self::typed::{drop_nulls, to_field_set, validate};
use self::updater::{Conflicts, Updater, VersionedSet};
use crate::patch::{go_json_type, PatchMeta};

/// The most update managers an object keeps before the oldest are folded together.
const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager that owns what an object held before its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

impl FieldSet {
    /// Returns the fields `object` sets, by the schema `meta` describes: its leaves, every
    /// associative list item, and members that are `null` or `{}`.
    pub fn of(object: &Value, meta: &dyn PatchMeta) -> FieldSet {
        to_field_set(object, &Shape::root(meta, object))
    }
}

/// Applies the configuration `applied` for `manager` to the stored object `live` (`None` when
/// the apply creates the object) and returns the object to store, with `metadata.managedFields`
/// updated. `now` is the RFC 3339 time (UTC, whole seconds) recorded for changed entries.
///
/// `meta` describes the object's schema. With `force`, fields other managers own move to
/// `manager` instead of conflicting.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    meta: &dyn PatchMeta,
    now: &str,
) -> Result<Value, ApplyError> {
    let mut manager_errors = Vec::new();
    if manager.is_empty() {
        manager_errors.push("fieldManager: Required value: is required for apply patch".to_owned());
    }
    manager_errors.extend(validate_field_manager(manager));
    if !manager_errors.is_empty() {
        return Err(ApplyError::InvalidFieldManager(manager_errors));
    }
    if !applied.is_object() {
        return Err(ApplyError::NotAnObject { found: go_json_type(applied) });
    }
    let managed = match live {
        Some(live) => Managed::decode(live.pointer("/metadata/managedFields"))
            .map_err(ApplyError::InvalidManagedFields)?,
        None => Managed::default(),
    };
    check_kind(live, applied)?;
    let live_object = live.map(without_managed_fields).unwrap_or_else(|| json!({}));
    let shape = Shape::root(meta, applied);
    let request = ApplyRequest { live: &live_object, applied, manager, shape: &shape, now };
    let outcome = match request.run(managed.clone(), force) {
        Err(RunError::Conflicts(conflicts)) if manager == KUBECTL_MANAGER => {
            // Conflicts on fields kubectl's client-side apply provably set are no conflicts.
            let version = str_at(applied, "apiVersion");
            match allowed_conflicts(&live_object, version, &shape) {
                Some(allowed) => {
                    let remaining: Conflicts =
                        conflicts.iter().filter(|(_, path)| !allowed.has(path)).cloned().collect();
                    if remaining.is_empty() {
                        request.run(managed, true)
                    } else {
                        Err(RunError::Conflicts(remaining))
                    }
                }
                None => Err(RunError::Conflicts(conflicts)),
            }
        }
        other => other,
    };
    let (mut object, managed) = outcome.map_err(RunError::into_apply_error)?;
    if manager == KUBECTL_MANAGER {
        update_annotation(&mut object, applied);
    }
    drop_nulls(&mut object);
    set_managed_fields(&mut object, &managed);
    check_identity(live, &mut object)?;
    Ok(object)
}

/// The longest field manager name Kubernetes accepts, in bytes.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Returns what is wrong with a `fieldManager` query parameter, as Kubernetes words it (`field:
/// detail` lines): too long, or holding characters that are not printable. Empty is fine here;
/// only applies require a manager.
///
/// Printable follows Go's `unicode.IsPrint` except for format characters (such as U+200B),
/// which the standard library cannot tell apart and which pass.
pub fn validate_field_manager(manager: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errors.push(format!(
            "fieldManager: Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"
        ));
    }
    for (position, c) in manager.char_indices() {
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            errors.push(format!(
                "fieldManager: Invalid value: {}: invalid character U+{:04X} (at position \
                 {position})",
                path::go_quote(manager),
                u32::from(c)
            ));
        }
    }
    errors
}

/// Records a create (`old` is `None`), update or non-apply patch by `manager` in
/// `new`'s `metadata.managedFields`: the fields the write sets (on create) or changes become
/// `manager`'s, and other managers lose them. `api_version` is the request's group version and
/// `subresource` the subresource written through, if any; `now` is the RFC 3339 time (UTC,
/// whole seconds) of the change.
///
/// `managedFields` the client sent are kept when they are valid and not empty (a write through a
/// subresource never sets them); `[]` or `[{}]` resets them. Objects that exist without managed
/// fields stay untracked, and an object that does not fit its schema loses its managed fields,
/// as in Kubernetes.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    meta: &dyn PatchMeta,
    now: &str,
) {
    let subresource = subresource.unwrap_or_default();
    let stored = || {
        old.and_then(|old| Managed::decode(old.pointer("/metadata/managedFields")).ok())
            .unwrap_or_default()
    };
    let sent = new.pointer("/metadata/managedFields");
    let mut managed = if !subresource.is_empty() {
        stored()
    } else if is_reset(sent) {
        Managed::default()
    } else {
        match Managed::decode(sent) {
            Ok(managed) if !managed.sets.is_empty() => managed,
            _ => stored(),
        }
    };
    if let Some(Value::Object(metadata)) = new.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    let old_object = old.map(without_managed_fields).unwrap_or_else(|| json!({}));
    if managed.sets.is_empty() && !str_at(&old_object["metadata"], "uid").is_empty() {
        return;
    }
    let shape = Shape::root(meta, new);
    if validate(new, &shape, true).is_err() || validate(&old_object, &shape, true).is_err() {
        return;
    }
    let write = Write { shape: &shape, api_version, subresource, now };
    write.record(&old_object, new, &mut managed, manager);
    set_managed_fields(new, &managed);
}

/// One non-apply write's ownership change.
struct Write<'r, 'a> {
    shape: &'r Shape<'a>,
    api_version: &'r str,
    subresource: &'r str,
    now: &'r str,
}

impl Write<'_, '_> {
    /// Gives `manager` the fields changed from `old` to `new`, merged into its earlier entry of
    /// the same version and subresource, and caps the number of update entries.
    fn record(&self, old: &Value, new: &Value, managed: &mut Managed, manager: &str) {
        let key = ManagerKey::new(manager, Operation::Update, self.api_version, self.subresource);
        let current = ManagerKey::internal("current-operation");
        let updater = Updater { shape: self.shape };
        updater.update_managers(old, new, self.api_version, &mut managed.sets, &current);
        managed.strip_meta(&current);
        if let Some(changed) = managed.sets.remove(&current) {
            let set = match managed.sets.get(&key) {
                Some(previous) => changed.set.union(&previous.set),
                None => changed.set,
            };
            let owned = VersionedSet { set, api_version: changed.api_version, applied: false };
            managed.sets.insert(key.clone(), owned);
            managed.times.insert(key, self.now.to_owned());
        }
        managed.cap_update_managers(MAX_UPDATE_MANAGERS);
    }
}

/// One apply, run again with `force` when kubectl's last applied configuration excuses its
/// conflicts.
struct ApplyRequest<'r, 'a> {
    live: &'r Value,
    applied: &'r Value,
    manager: &'r str,
    shape: &'r Shape<'a>,
    now: &'r str,
}

enum RunError {
    Conflicts(Conflicts),
    Failed(ApplyError),
}

impl RunError {
    fn into_apply_error(self) -> ApplyError {
        match self {
            RunError::Failed(error) => error,
            RunError::Conflicts(conflicts) => ApplyError::Conflicts(
                conflicts
                    .into_iter()
                    .map(|(owner, path)| Conflict {
                        manager: owner.manager,
                        operation: owner.operation,
                        api_version: owner.api_version,
                        subresource: owner.subresource,
                        field: PathDisplay(&path).to_string(),
                    })
                    .collect(),
            ),
        }
    }
}

impl ApplyRequest<'_, '_> {
    fn run(&self, mut managed: Managed, force: bool) -> Result<(Value, Managed), RunError> {
        let version = str_at(self.applied, "apiVersion");
        if let Err(errors) = validate(self.live, self.shape, true) {
            let object = describe(self.live, self.applied);
            let errors = errors.to_string();
            return Err(RunError::Failed(ApplyError::InvalidLiveObject { object, errors }));
        }
        if managed.sets.is_empty() {
            let write =
                Write { shape: self.shape, api_version: version, subresource: "", now: self.now };
            write.record(&json!({}), self.live, &mut managed, BEFORE_FIRST_APPLY);
        }
        if self.applied.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
            return Err(RunError::Failed(ApplyError::ManagedFieldsSet));
        }
        if let Err(errors) = validate(self.applied, self.shape, false) {
            let object = describe(self.applied, self.applied);
            let errors = errors.to_string();
            return Err(RunError::Failed(ApplyError::InvalidConfiguration { object, errors }));
        }
        let key = ManagerKey::new(self.manager, Operation::Apply, "", "");
        let updater = Updater { shape: self.shape };
        let changed = updater
            .apply(self.live, self.applied, version, &mut managed.sets, &key, force)
            .map_err(RunError::Conflicts)?;
        let object = match changed {
            Some(object) => {
                managed.times.insert(key.clone(), self.now.to_owned());
                object
            }
            None => self.live.clone(),
        };
        managed.strip_meta(&key);
        Ok((object, managed))
    }
}

/// Checks that the configuration names the stored object's group, version and kind.
fn check_kind(live: Option<&Value>, applied: &Value) -> Result<(), ApplyError> {
    let (api_version, kind) = (str_at(applied, "apiVersion"), str_at(applied, "kind"));
    let matches = match live {
        Some(live) => str_at(live, "apiVersion") == api_version && str_at(live, "kind") == kind,
        None => !api_version.is_empty() && !kind.is_empty(),
    };
    if matches {
        return Ok(());
    }
    let (group, version) = group_version(api_version);
    Err(ApplyError::InvalidObjectType {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
    })
}

/// Checks what Kubernetes' patch handler checks of the result: an apply that creates may not
/// name a uid, and an apply to a stored object keeps its name and namespace.
fn check_identity(live: Option<&Value>, object: &mut Value) -> Result<(), ApplyError> {
    let Some(live) = live else {
        let uid = str_at(&object["metadata"], "uid");
        if !uid.is_empty() {
            return Err(ApplyError::UidMismatch { uid: uid.to_owned() });
        }
        return Ok(());
    };
    let expected_namespace = str_at(&live["metadata"], "namespace");
    let namespace = str_at(&object["metadata"], "namespace").to_owned();
    if namespace != expected_namespace {
        if !namespace.is_empty() && !expected_namespace.is_empty() {
            return Err(ApplyError::NamespaceMismatch);
        }
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            match expected_namespace {
                "" => metadata.remove("namespace"),
                namespace => metadata.insert("namespace".into(), json!(namespace)),
            };
        }
    }
    let (name, url) = (str_at(&object["metadata"], "name"), str_at(&live["metadata"], "name"));
    if name != url {
        return Err(ApplyError::NameMismatch { object: name.to_owned(), url: url.to_owned() });
    }
    Ok(())
}

/// Names an object in Kubernetes' error messages: `default/web; apps/v1, Kind=Deployment`.
fn describe(object: &Value, typed_as: &Value) -> String {
    let metadata = &object["metadata"];
    let (group, version) = group_version(str_at(typed_as, "apiVersion"));
    format!(
        "{}/{}; {group}/{version}, Kind={}",
        str_at(metadata, "namespace"),
        str_at(metadata, "name"),
        str_at(typed_as, "kind")
    )
}

fn set_managed_fields(object: &mut Value, managed: &Managed) {
    let Value::Object(root) = object else {
        return;
    };
    match managed.encode() {
        Some(entries) => {
            if let Value::Object(metadata) = root.entry("metadata").or_insert_with(|| json!({})) {
                metadata.insert("managedFields".into(), entries);
            }
        }
        None => {
            if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
                metadata.remove("managedFields");
            }
        }
    }
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    object
}

fn str_at<'v>(value: &'v Value, member: &str) -> &'v str {
    value.get(member).and_then(Value::as_str).unwrap_or_default()
}
