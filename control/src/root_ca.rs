//! The root CA publisher (Kubernetes' `root-ca-cert-publisher`): every active namespace has a
//! ConfigMap `kube-root-ca.crt` holding the cluster CA under `ca.crt`, which the
//! `kube-api-access-*` volume of every pod projects. One deleted is created again; one edited
//! gets its data back. The decision is [`plan`]; the reconcile only reads and writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, already_exists, conflict, not_found, Context};

/// The field manager the controller writes as.
const MANAGER: &str = "root-ca-cert-publisher";
/// The ConfigMap every namespace gets.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Its one key.
const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Kubernetes' own words for what the ConfigMap is for.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
     when using internal endpoints such as the internal service IP or kubernetes.default.svc. \
     No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What to do about one namespace's ConfigMap.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Nothing,
    Create(ConfigMap),
    /// Replace the stored ConfigMap (its resourceVersion kept, so the write is conditional).
    Update(ConfigMap),
}

/// Decides for a namespace (`active`: not terminating) whose ConfigMap is `existing`, given
/// the CA bundle `ca`. As in Kubernetes, the data must be exactly the CA and the description
/// annotation present; a description edited to other words is left as it is.
pub fn plan(active: bool, existing: Option<&ConfigMap>, ca: &str) -> Plan {
    let data = BTreeMap::from([(KEY.to_string(), ca.to_string())]);
    let Some(existing) = existing else {
        if !active {
            return Plan::Nothing;
        }
        return Plan::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        });
    };
    let described = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|description| !description.is_empty());
    if existing.data.as_ref() == Some(&data) && described {
        return Plan::Nothing;
    }
    let mut fixed = existing.clone();
    fixed.data = Some(data);
    fixed
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Plan::Update(fixed)
}

/// Runs the controller until `term` is cancelled, publishing `ca` (PEM).
pub async fn run(client: kube::Client, term: CancellationToken, ca: String) {
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let watches = move |c: Controller<Namespace>| {
        let ours = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}"));
        c.watches(config_maps, ours, |map: ConfigMap| {
            map.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
    };
    controller::run_with(client, term, MANAGER, reconcile, watches, ca).await;
}

async fn reconcile(
    namespace: Arc<Namespace>,
    context: Arc<Context<String>>,
) -> Result<Action, kube::Error> {
    let terminating = namespace.status.as_ref().and_then(|s| s.phase.as_deref())
        == Some("Terminating")
        || namespace.metadata.deletion_timestamp.is_some();
    let name = namespace.name_any();
    let maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), &name);
    let existing = maps.get_opt(CONFIG_MAP).await?;
    match plan(!terminating, existing.as_ref(), &context.state) {
        Plan::Nothing => {}
        Plan::Create(map) => match maps.create(&context.post(), &map).await {
            Ok(_) => tracing::debug!(namespace = %name, "published the root CA"),
            // Created meanwhile (the watch brings it back), or the namespace is gone or
            // terminating: nothing to do.
            Err(err) if already_exists(&err) || not_found(&err) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(err) => return Err(err),
        },
        Plan::Update(map) => {
            let params =
                PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
            match maps.replace(CONFIG_MAP, &params, &map).await {
                Ok(_) => tracing::info!(namespace = %name, "restored the root CA config map"),
                Err(err) if conflict(&err) || not_found(&err) => return Ok(controller::soon()),
                Err(err) => return Err(err),
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn stored(data: &[(&str, &str)], description: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                namespace: Some("dev".into()),
                resource_version: Some("42".into()),
                annotations: description
                    .map(|d| BTreeMap::from([(DESCRIPTION_ANNOTATION.to_string(), d.to_string())])),
                ..ObjectMeta::default()
            },
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn every_active_namespace_gets_the_ca_as_published() {
        let Plan::Create(created) = plan(true, None, CA) else { panic!("expected a create") };
        assert_eq!(created.metadata.name.as_deref(), Some(CONFIG_MAP));
        assert_eq!(created.data, Some(BTreeMap::from([(KEY.to_string(), CA.to_string())])));
        let annotations = created.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get(DESCRIPTION_ANNOTATION).map(String::as_str), Some(DESCRIPTION));
    }

    #[test]
    fn the_plan_fixes_only_what_differs() {
        let fixed = |mut map: ConfigMap| {
            map.data = Some(BTreeMap::from([(KEY.to_string(), CA.to_string())]));
            map.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            Plan::Update(map)
        };
        let cases = [
            ("as published", true, Some(stored(&[(KEY, CA)], Some(DESCRIPTION))), Plan::Nothing),
            ("own description kept", true, Some(stored(&[(KEY, CA)], Some("ours"))), Plan::Nothing),
            (
                "edited data",
                true,
                Some(stored(&[(KEY, "forged")], Some(DESCRIPTION))),
                fixed(stored(&[(KEY, "forged")], Some(DESCRIPTION))),
            ),
            (
                "extra key",
                true,
                Some(stored(&[(KEY, CA), ("other", "x")], Some(DESCRIPTION))),
                fixed(stored(&[], Some(DESCRIPTION))),
            ),
            (
                "description removed",
                true,
                Some(stored(&[(KEY, CA)], None)),
                fixed(stored(&[(KEY, CA)], None)),
            ),
            ("terminating, absent", false, None, Plan::Nothing),
        ];
        for (name, active, existing, expected) in cases {
            assert_eq!(plan(active, existing.as_ref(), CA), expected, "{name}");
        }
        // The fix keeps the stored resourceVersion: the write is conditional.
        let Plan::Update(map) = plan(true, Some(&stored(&[], None)), CA) else { panic!() };
        assert_eq!(map.metadata.resource_version.as_deref(), Some("42"));
    }
}
