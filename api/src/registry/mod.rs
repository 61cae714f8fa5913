//! The generic registry: create, read, update, patch, delete and watch for every resource type
//! in the catalog, over objects in the store. Type-specific behaviour (defaults, status
//! handling, allocation) lives in `strategy`; everything here is the same for every type.

mod admit;
mod delete;
mod list;
mod watch;
mod write;

use std::sync::Arc;

use flotilla_store::KvStore;
use serde_json::Value;

pub use delete::{DeleteOptions, Propagation};
pub use list::{EncodedList, Filter, ListOptions, ListResult};
pub use watch::{WatchEvent, WatchObject, WatchOptions, WatchStream};
pub use write::{FieldValidation, Part, WriteOptions, Written};

use crate::allocate::ServiceRanges;
use crate::error::ApiError;
use crate::openapi::OpenApi;
use crate::patch::PatchMeta;
use crate::resources::{Catalog, ResourceType};
use crate::storage::{Objects, Stored};

/// The registry over one store replica; cheap to clone.
pub struct Registry<S> {
    pub catalog: Catalog,
    pub objects: Objects<S>,
    pub ranges: ServiceRanges,
    /// Schemas of the served types: field validation and strategic merge metadata.
    pub openapi: Arc<OpenApi>,
}

impl<S: Clone> Clone for Registry<S> {
    fn clone(&self) -> Self {
        Registry {
            catalog: self.catalog.clone(),
            objects: self.objects.clone(),
            ranges: self.ranges,
            openapi: self.openapi.clone(),
        }
    }
}

/// The OpenAPI extensions that carry a built-in field's strategic merge metadata.
fn patch_extensions(definition: &str, field: &str) -> Option<Value> {
    let (strategy, merge_key) = crate::patch::meta::declared_patch_meta(definition, field)?;
    let mut extensions = serde_json::Map::new();
    if !strategy.name().is_empty() {
        extensions.insert("x-kubernetes-patch-strategy".into(), strategy.name().into());
    }
    if let Some(key) = merge_key {
        extensions.insert("x-kubernetes-patch-merge-key".into(), key.into());
    }
    Some(Value::Object(extensions))
}

/// Which object a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub name: String,
}

impl Target {
    pub fn key(&self) -> String {
        self.resource.key(self.namespace.as_deref(), &self.name)
    }

    pub fn not_found(&self) -> ApiError {
        ApiError::NotFound { resource: self.resource.group_resource(), name: self.name.clone() }
    }

    pub fn conflict(&self) -> ApiError {
        ApiError::Conflict {
            resource: self.resource.group_resource(),
            name: self.name.clone(),
            message: "the object has been modified; please apply your changes to the latest \
                      version and try again"
                .into(),
        }
    }
}

impl<S: KvStore> Registry<S> {
    pub fn new(catalog: Catalog, store: S, ranges: ServiceRanges) -> Self {
        let openapi = OpenApi::new(catalog.clone()).with_patch_extensions(patch_extensions);
        Registry { catalog, objects: Objects::new(store), ranges, openapi: Arc::new(openapi) }
    }

    /// Reads one object. `resourceVersion=0` semantics (any version is fine) read from this
    /// replica without a read barrier.
    pub async fn get(&self, target: &Target, any_version: bool) -> Result<Stored, ApiError> {
        self.objects.get(&target.key(), any_version).await?.ok_or_else(|| target.not_found())
    }

    /// How a patch of this type merges lists (None: strategic merge patch is not supported).
    pub(crate) fn patch_meta(&self, resource: &ResourceType) -> Option<Box<dyn PatchMeta>> {
        if resource.schema.is_some() {
            return None;
        }
        let meta = self.openapi.patch_meta(&resource.group, &resource.version, &resource.kind)?;
        Some(Box::new(meta))
    }

    /// Refuses writes into a namespace that does not exist or is being deleted.
    pub(crate) async fn ensure_namespace_accepts(&self, namespace: &str) -> Result<(), ApiError> {
        let Some(namespaces) = self.catalog.get("", "v1", "namespaces") else {
            return Ok(());
        };
        let found = self.objects.get(&namespaces.key(None, namespace), true).await?;
        match found {
            None => Err(ApiError::NotFound {
                resource: namespaces.group_resource(),
                name: namespace.to_string(),
            }),
            Some(stored) if crate::meta::is_deleting(&stored.object) => {
                Err(ApiError::Forbidden(format!(
                    "unable to create new content in namespace {namespace} because it is being \
                     terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }
}

/// Sets `apiVersion` and `kind` to the type's own, refusing a body that names another type.
pub(crate) fn check_type(resource: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    if let Some(given) = object.get("apiVersion").and_then(Value::as_str) {
        if !given.is_empty() && given != api_version {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({given}) does not match the expected API version \
                 ({api_version})"
            )));
        }
    }
    if let Some(given) = object.get("kind").and_then(Value::as_str) {
        if !given.is_empty() && given != resource.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    object["apiVersion"] = Value::String(api_version);
    object["kind"] = Value::String(resource.kind.clone());
    Ok(())
}
