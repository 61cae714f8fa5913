//! Gathers [`Sources`]: the IO half of volume setup, kept apart so the rest of the module
//! stays pure. ConfigMaps and Secrets come from the node's watches of them
//! ([`ObjectReader`]), so a pass costs no request for them; claims, their volumes and tokens
//! come through the API.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use super::token::TokenCache;
use super::{referenced, Sources};
use crate::worker::objects_cache::ObjectReader;

/// Which objects to fetch besides ConfigMaps, Secrets and tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Everything the pod's start needs, PersistentVolumeClaims and their volumes included.
    Start,
    /// What a running pod's rewritten volumes read: claims are mounted once and not read again.
    Refresh,
}

/// Fetches what the pod's containers and volumes read: the ConfigMaps and Secrets it
/// references (volumes, projections, `env` and `envFrom`, from `objects`), for
/// [`Scope::Start`] its PersistentVolumeClaims and their bound PersistentVolumes, and the
/// service account tokens of its projected volumes (from `tokens` while fresh). Absent objects
/// are left out (the pure core and the volume setup say what that means for the pod); a token
/// that could not be had is kept as its error, for the volume to report. Other API errors fail
/// the fetch, and the pass with it.
pub(crate) async fn fetch(
    client: &kube::Client,
    objects: &ObjectReader,
    pod: &Pod,
    scope: Scope,
    tokens: &mut TokenCache,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<Sources, kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let references = referenced(pod);
    let mut sources = Sources { node_allocatable: node_allocatable.clone(), ..Sources::default() };
    for name in references.config_maps {
        if let Some(found) = objects.config_map(namespace, &name).await? {
            sources.config_maps.insert(name, found);
        }
    }
    for name in references.secrets {
        if let Some(found) = objects.secret(namespace, &name).await? {
            sources.secrets.insert(name, found);
        }
    }
    if scope == Scope::Start {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        let persistent_volumes: Api<PersistentVolume> = Api::all(client.clone());
        for name in references.claims {
            let Some(found) = claims.get_opt(&name).await? else { continue };
            let bound = found.spec.as_ref().and_then(|s| s.volume_name.clone());
            if let Some(volume) = bound.filter(|v| !v.is_empty()) {
                if let Some(pv) = persistent_volumes.get_opt(&volume).await? {
                    sources.persistent_volumes.insert(volume, pv);
                }
            }
            sources.claims.insert(name, found);
        }
    }
    sources.tokens = tokens.tokens(pod, client, Timestamp::now()).await;
    Ok(sources)
}
