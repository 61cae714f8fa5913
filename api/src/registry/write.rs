//! Create, update and patch: the object is prepared, validated and written with one
//! compare-and-swap transaction, so a write either lands whole or not at all.

use std::sync::Arc;

use flotilla_store::KvStore;
use serde_json::Value;

use super::delete::held_by_finalizers;
use super::{check_type, Registry, Target};
use crate::apply;
use crate::error::ApiError;
use crate::meta;
use crate::patch::{self, PatchMeta, PatchType, PlainMeta};
use crate::resources::ResourceType;
use crate::storage::{self, SideWrite, Stored, Written as StoreWritten};
use crate::strategy;

/// How strictly unknown and duplicate fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    Warn,
    #[default]
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<FieldValidation, ApiError> {
        match value {
            None | Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => {
                Err(ApiError::BadRequest(format!("fieldValidation parameter unsupported: {other}")))
            }
        }
    }
}

/// Options every write takes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything, persist nothing.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    /// Server-side apply: take over conflicting fields.
    pub force: bool,
    /// Who writes: RBAC objects may not grant more than their writer holds. None for the
    /// server's own writes.
    pub user: Option<crate::auth::User>,
}

impl WriteOptions {
    /// The field manager a write is recorded under; None for the server's own writes, which
    /// are not tracked.
    fn manager(&self) -> Option<&str> {
        self.field_manager.as_deref().filter(|_| self.user.is_some())
    }
}

/// Which part of an object an update replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object, except its status where the type has a status subresource.
    Main,
    /// Only the status.
    Status,
    /// Only a namespace's `spec.finalizers`.
    Finalize,
    /// The object changed through its scale subresource.
    Scale,
    /// The whole object as the server itself prepared it (binding a pod, say).
    System,
}

/// The outcome of a write.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    /// A new object was created (201) rather than an existing one changed (200).
    pub created: bool,
    /// Warnings for the client (`Warning` headers).
    pub warnings: Vec<String>,
}

/// How many times a generated name or an unconditional patch is retried on a conflict.
const RETRIES: usize = 8;

impl<S: KvStore> Registry<S> {
    /// Creates an object in `namespace` (ignored for cluster-scoped types).
    pub async fn create(
        &self,
        resource: &Arc<ResourceType>,
        namespace: Option<&str>,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        check_type(resource, &mut object)?;
        let namespace = object_namespace(resource, namespace, &object)?;
        let metadata = meta::metadata_mut(&mut object);
        if metadata.get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::BadRequest(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        metadata.remove("resourceVersion");
        match &namespace {
            Some(namespace) => metadata.insert("namespace".into(), namespace.clone().into()),
            None => metadata.remove("namespace"),
        };
        metadata.insert("uid".into(), meta::new_uid().into());
        metadata.insert("creationTimestamp".into(), meta::now_rfc3339().into());
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            metadata.remove(field);
        }
        if resource.generation {
            metadata.insert("generation".into(), 1.into());
        } else {
            metadata.remove("generation");
        }
        let generate = metadata
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            .then(|| metadata.get("generateName").and_then(Value::as_str).map(str::to_string))
            .flatten()
            .filter(|prefix| !prefix.is_empty());
        if let Some(prefix) = &generate {
            metadata.insert("name".into(), format!("{prefix}{}", meta::name_suffix()).into());
        }
        strategy::prepare_create(resource, &mut object);
        if let Some(manager) = options.manager() {
            let meta = self.merge_meta(resource);
            let api_version = resource.api_version();
            let now = meta::now_rfc3339();
            apply::record_update(None, &mut object, manager, &api_version, None, &*meta, &now);
        }
        // Mutating admission comes after the manager's fields are recorded: what it adds
        // belongs to no manager, as in Kubernetes, so applying the same pod again is no change.
        if resource.group.is_empty() && resource.kind == "Pod" {
            self.admit_new_pod(&mut object).await?;
        }
        let warnings = self.admit(resource, &mut object, None, options).await?;
        if let Some(namespace) = &namespace {
            self.ensure_namespace_accepts(namespace).await?;
        }
        // What the client asked for, before cluster IPs and node ports were picked: a pick that
        // another create took meanwhile is picked again, as kube-apiserver's allocators retry.
        let requested = object.clone();
        let mut side = self.allocations(resource, None, &mut object).await?;
        if options.dry_run {
            return Ok(Written { object, created: true, warnings });
        }
        let mut raced = false;
        for _ in 0..RETRIES {
            let target = Target {
                resource: resource.clone(),
                namespace: namespace.clone(),
                name: meta::name(&object).to_string(),
            };
            match self.objects.create(&target.key(), &object, &side).await? {
                StoreWritten::Done(revision) => {
                    storage::set_resource_version(&mut object, revision);
                    return Ok(Written { object, created: true, warnings });
                }
                StoreWritten::Conflict(Some(_)) if generate.is_some() => {
                    let prefix = generate.as_deref().unwrap_or_default();
                    meta::metadata_mut(&mut object)
                        .insert("name".into(), format!("{prefix}{}", meta::name_suffix()).into());
                }
                StoreWritten::Conflict(Some(_)) => {
                    return Err(ApiError::AlreadyExists {
                        resource: resource.group_resource(),
                        name: target.name,
                    })
                }
                // The object's key was free, so a side write's key was taken: pick again (a
                // value the client chose itself is then refused as taken).
                StoreWritten::Conflict(None) => {
                    let name = meta::name(&object).to_string();
                    object = requested.clone();
                    meta::metadata_mut(&mut object).insert("name".into(), name.into());
                    side = self.allocations(resource, None, &mut object).await?;
                    raced = true;
                }
            }
        }
        if raced {
            return Err(ApiError::Conflict {
                resource: resource.group_resource(),
                name: meta::name(&object).to_string(),
                message: format!("allocated values were taken concurrently {RETRIES} times; retry"),
            });
        }
        Err(ApiError::AlreadyExists {
            resource: resource.group_resource(),
            name: meta::name(&object).to_string(),
        })
    }

    /// Replaces an object (PUT), honouring the resourceVersion in the body.
    pub async fn update(
        &self,
        target: &Target,
        mut object: Value,
        part: Part,
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        check_type(&target.resource, &mut object)?;
        check_identity(target, &object)?;
        let expected = meta::str_field(&object, &["metadata", "resourceVersion"])
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        for attempt in 0..RETRIES {
            let mut current = self.current(target, attempt).await?;
            if let Some(expected) = &expected {
                if *expected != current.revision.to_string() && attempt == 0 {
                    // This replica may lag the client: ask the leader before refusing.
                    current = self.get(target, false).await?;
                }
                if *expected != current.revision.to_string() {
                    return Err(target.conflict());
                }
            }
            match self.replace(target, current, object.clone(), part, options).await {
                Err(ApiError::Conflict { .. }) if expected.is_none() => continue,
                other => return other,
            }
        }
        Err(target.conflict())
    }

    /// The object as a read-modify-write starts from: this replica's copy first (the write
    /// is conditional on its revision, so a stale copy only costs a retry), the leader's
    /// after a conflict.
    pub(crate) async fn current(
        &self,
        target: &Target,
        attempt: usize,
    ) -> Result<Stored, ApiError> {
        self.get(target, attempt == 0).await
    }

    /// Applies a patch to an object, retrying on concurrent writes unless the patch itself
    /// names a resourceVersion.
    pub async fn patch(
        &self,
        target: &Target,
        patch_type: PatchType,
        body: &[u8],
        part: Part,
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if patch_type == PatchType::Apply {
            if part != Part::Main {
                return Err(ApiError::UnsupportedMediaType(
                    "apply patches are accepted on the main resource only".into(),
                ));
            }
            return self.apply(target, body, options).await;
        }
        for attempt in 0..RETRIES {
            let current = self.current(target, attempt).await?;
            // Patched without its resourceVersion, so one in the result comes from the patch
            // (a precondition the client asked for), never from the copy read.
            let mut base = current.object.clone();
            meta::metadata_mut(&mut base).remove("resourceVersion");
            let mut patched = patch::apply_patch(
                patch_type,
                &base,
                body,
                self.patch_meta(&target.resource).as_deref(),
            )?;
            let pinned = meta::str_field(&patched, &["metadata", "resourceVersion"])
                .map(str::to_string)
                .filter(|rv| !rv.is_empty());
            if let Some(pinned) = &pinned {
                if *pinned != current.revision.to_string() {
                    if attempt == 0 {
                        // This replica may lag the client: read the leader's copy.
                        continue;
                    }
                    return Err(target.conflict());
                }
            }
            check_type(&target.resource, &mut patched)?;
            check_identity(target, &patched)?;
            match self.replace(target, current, patched, part, options).await {
                Err(ApiError::Conflict { .. }) if pinned.is_none() => continue,
                other => return other,
            }
        }
        Err(target.conflict())
    }

    /// Writes `new` over `current` (both whole objects), keeping what clients cannot change.
    pub(crate) async fn replace(
        &self,
        target: &Target,
        current: Stored,
        new: Value,
        part: Part,
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let resource = &target.resource;
        let mut new = match part {
            Part::Main | Part::Scale => {
                let mut new = new;
                strategy::prepare_update(resource, &current.object, &mut new);
                new
            }
            Part::Status => strategy::prepare_status_update(&current.object, &new),
            Part::Finalize => strategy::prepare_finalize(&current.object, &new),
            Part::System => new,
        };
        keep_system_metadata(&current.object, &mut new);
        let subresource = match part {
            Part::Main => Some(None),
            Part::Status => Some(Some("status")),
            Part::Finalize => Some(Some("finalize")),
            Part::Scale => Some(Some("scale")),
            Part::System => None,
        };
        if let (Some(manager), Some(subresource)) = (options.manager(), subresource) {
            let meta = self.merge_meta(resource);
            let api_version = resource.api_version();
            let now = meta::now_rfc3339();
            let old = &current.object;
            apply::record_update(
                Some(old),
                &mut new,
                manager,
                &api_version,
                subresource,
                &*meta,
                &now,
            );
        }
        if resource.generation {
            let generation = current.object.pointer("/metadata/generation").and_then(Value::as_i64);
            let generation = generation.unwrap_or(1);
            let changed = meta::spec_part(&current.object) != meta::spec_part(&new);
            let next = if changed { generation + 1 } else { generation };
            meta::metadata_mut(&mut new).insert("generation".into(), next.into());
        }
        storage::set_resource_version(&mut new, current.revision);
        if new == current.object {
            return Ok(Written { object: new, created: false, warnings: Vec::new() });
        }
        let warnings = if matches!(part, Part::Main | Part::Scale) {
            self.admit(resource, &mut new, Some(&current.object), options).await?
        } else {
            Vec::new()
        };
        let side = self.allocations(resource, Some(&current.object), &mut new).await?;
        if options.dry_run {
            return Ok(Written { object: new, created: false, warnings });
        }
        let key = target.key();
        let grace = new.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
        if meta::is_deleting(&new) && !held_by_finalizers(&new) && grace.unwrap_or(0) == 0 {
            // The last finalizer is gone: the deletion completes now.
            return match self.objects.delete(&key, current.revision, &side).await? {
                StoreWritten::Done(_) => Ok(Written { object: new, created: false, warnings }),
                StoreWritten::Conflict(_) => Err(target.conflict()),
            };
        }
        match self.objects.update(&key, current.revision, &new, &side).await? {
            StoreWritten::Done(revision) => {
                storage::set_resource_version(&mut new, revision);
                Ok(Written { object: new, created: false, warnings })
            }
            StoreWritten::Conflict(None) => Err(target.not_found()),
            StoreWritten::Conflict(Some(_)) => Err(target.conflict()),
        }
    }

    /// Server-side apply (`application/apply-patch+yaml`): merges the configuration into the
    /// object (creating it if absent) for the request's field manager, refusing to change
    /// fields other managers own unless forced.
    pub async fn apply(
        &self,
        target: &Target,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut applied: Value = serde_yaml_ng::from_slice(body)
            .map_err(|err| ApiError::BadRequest(format!("error decoding YAML: {err}")))?;
        if !applied.is_object() {
            return Err(ApiError::BadRequest("the apply configuration must be an object".into()));
        }
        check_type(&target.resource, &mut applied)?;
        check_identity(target, &applied)?;
        let manager = options.field_manager.clone().unwrap_or_default();
        let meta = self.merge_meta(&target.resource);
        for _ in 0..RETRIES {
            let now = meta::now_rfc3339();
            let current = self.objects.get(&target.key(), false).await?;
            let live = current.as_ref().map(|stored| &stored.object);
            let mut object = apply::apply(live, &applied, &manager, options.force, &*meta, &now)?;
            // The apply itself recorded the managed fields.
            let applied_options = WriteOptions { field_manager: None, ..options.clone() };
            let outcome = match current {
                None => {
                    meta::metadata_mut(&mut object)
                        .insert("name".into(), target.name.clone().into());
                    let namespace = target.namespace.as_deref();
                    self.create(&target.resource, namespace, object, &applied_options).await
                }
                Some(current) => {
                    self.replace(target, current, object, Part::Main, &applied_options).await
                }
            };
            match outcome {
                Err(ApiError::AlreadyExists { .. } | ApiError::Conflict { .. }) => continue,
                other => return other,
            }
        }
        Err(target.conflict())
    }

    /// How lists and maps of this type merge: the built-in schema, or plain merging for
    /// custom resources.
    fn merge_meta(&self, resource: &ResourceType) -> Box<dyn PatchMeta> {
        self.patch_meta(resource).unwrap_or_else(|| Box::new(PlainMeta))
    }

    /// Values allocated with a write (service addresses and ports), as side writes of the
    /// same transaction.
    async fn allocations(
        &self,
        resource: &ResourceType,
        old: Option<&Value>,
        object: &mut Value,
    ) -> Result<Vec<SideWrite>, ApiError> {
        if resource.group.is_empty() && resource.kind == "Service" {
            return crate::allocate::service(&self.objects, &self.ranges, old, object).await;
        }
        Ok(Vec::new())
    }
}

/// The namespace an object is created in: the request's, which the body may repeat but not
/// contradict; none for cluster-scoped types.
fn object_namespace(
    resource: &ResourceType,
    namespace: Option<&str>,
    object: &Value,
) -> Result<Option<String>, ApiError> {
    if !resource.namespaced {
        return Ok(None);
    }
    let Some(namespace) = namespace else {
        return Err(ApiError::MethodNotAllowed);
    };
    match meta::namespace(object) {
        Some(given) if given != namespace => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => Ok(Some(namespace.to_string())),
    }
}

/// Refuses a body whose name or namespace differs from the URL's, and fills them in.
fn check_identity(target: &Target, object: &Value) -> Result<(), ApiError> {
    let name = meta::name(object);
    if !name.is_empty() && name != target.name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            target.name
        )));
    }
    if target.resource.namespaced {
        if let (Some(given), Some(expected)) = (meta::namespace(object), &target.namespace) {
            if given != expected {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on \
                     the request"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// Metadata only the server sets survives every update unchanged.
fn keep_system_metadata(current: &Value, new: &mut Value) {
    let kept: Vec<(&str, Option<Value>)> = [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ]
    .iter()
    .map(|field| (*field, current.get("metadata").and_then(|m| m.get(*field)).cloned()))
    .collect();
    let metadata = meta::metadata_mut(new);
    for (field, value) in kept {
        match value {
            Some(value) => metadata.insert(field.to_string(), value),
            None => metadata.remove(field),
        };
    }
    metadata.remove("selfLink");
}
