//! `projected` volumes (kubelet's projected plugin, `collectData`): the files of every source
//! (configMap, secret, downwardAPI, serviceAccountToken) merged into one directory.
//!
//! Sources are applied in order and a later source's file replaces an earlier one at the same
//! path, as kubelet's map assignment does (the API rejects duplicate explicit paths; keys of
//! whole ConfigMaps or Secrets can still meet). Every source is tried and the errors of all
//! failing ones are reported together.

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource};

use super::atomic::{FileProjection, Payload};
use super::downward::{self, DownwardError};
use super::objects::{self, ObjectError, ObjectKind};
use super::token::TokenError;
use super::Sources;

/// The API's default `defaultMode` of a projected volume.
const DEFAULT_MODE: i32 = 0o644;

/// Why a projected volume's files could not be collected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProjectedError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Downward(#[from] DownwardError),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The caller did not obtain the token of a source (a bug, not an API failure).
    #[error("failed to fetch token: no token was requested for source {index}")]
    TokenNotRequested { index: usize },
    /// A source the agent cannot fill.
    #[error("projected source {index} ({kind}) is not supported by the Flotilla agent")]
    Unsupported { index: usize, kind: &'static str },
    /// Several sources failed; kubelet aggregates their errors as `[a, b]`.
    #[error("[{}]", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Several(Vec<ProjectedError>),
}

/// Returns the merged files of the projected volume `volume` of `pod`.
pub(crate) fn payload(
    pod: &Pod,
    volume: &str,
    source: &ProjectedVolumeSource,
    sources: &Sources,
) -> Result<Payload, ProjectedError> {
    let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    let mut errors = Vec::new();
    for (index, projection) in source.sources.iter().flatten().enumerate() {
        let files: Result<Payload, ProjectedError> = if let Some(map) = &projection.config_map {
            let data = sources.config_maps.get(&map.name).map(objects::config_map_data);
            objects::payload(
                ObjectKind::ConfigMap,
                &map.name,
                data,
                map.items.as_deref(),
                default_mode,
                map.optional == Some(true),
            )
            .map_err(Into::into)
        } else if let Some(secret) = &projection.secret {
            let data = sources.secrets.get(&secret.name).map(objects::secret_data);
            objects::payload(
                ObjectKind::Secret,
                &secret.name,
                data,
                secret.items.as_deref(),
                default_mode,
                secret.optional == Some(true),
            )
            .map_err(Into::into)
        } else if let Some(api) = &projection.downward_api {
            let items = api.items.as_deref().unwrap_or_default();
            downward::payload(pod, items, default_mode, &sources.node_allocatable)
                .map_err(Into::into)
        } else if let Some(token) = &projection.service_account_token {
            match sources.tokens.get(&(volume.to_owned(), index)) {
                Some(Ok(value)) => Ok(Payload::from([(
                    token.path.clone(),
                    FileProjection::new(value.clone(), default_mode),
                )])),
                Some(Err(error)) => Err(error.clone().into()),
                None => Err(ProjectedError::TokenNotRequested { index }),
            }
        } else if projection.cluster_trust_bundle.is_some() {
            Err(ProjectedError::Unsupported { index, kind: "clusterTrustBundle" })
        } else {
            Ok(Payload::new())
        };
        match files {
            Ok(files) => out.extend(files),
            Err(error) => errors.push(error),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(ProjectedError::Several(errors)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": []}
        }))
        .unwrap()
    }

    fn projected(json: serde_json::Value) -> ProjectedVolumeSource {
        serde_json::from_value(json).unwrap()
    }

    fn sources() -> Sources {
        let map: ConfigMap = serde_json::from_value(
            serde_json::json!({"data": {"ca.crt": "CA", "shared": "from map"}}),
        )
        .unwrap();
        let secret: Secret = serde_json::from_value(
            serde_json::json!({"data": {"password": "cHc=", "shared": "c2VjcmV0"}}),
        )
        .unwrap();
        let mut sources = Sources::default();
        sources.config_maps.insert("ca".into(), map);
        sources.secrets.insert("creds".into(), secret);
        sources.tokens.insert(("api".into(), 3), Ok("jwt".into()));
        sources
    }

    /// The files as (path, contents, mode).
    fn files(payload: &Payload) -> Vec<(String, String, u32)> {
        payload
            .iter()
            .map(|(p, f)| (p.clone(), String::from_utf8(f.data.clone()).unwrap(), f.mode))
            .collect()
    }

    #[test]
    fn sources_merge_into_one_directory() {
        let source = projected(serde_json::json!({
            "defaultMode": 0o440,
            "sources": [
                {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"secret": {"name": "creds", "items": [{"key": "password", "path": "auth/password", "mode": 0o400}]}},
                {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"serviceAccountToken": {"path": "token"}}
            ]
        }));
        let got = payload(&pod(), "api", &source, &sources()).unwrap();
        let expected = [
            ("auth/password", "pw", 0o400),
            ("ca.crt", "CA", 0o440),
            ("labels", "app=\"web\"", 0o440),
            ("token", "jwt", 0o440),
        ]
        .map(|(p, d, m)| (p.to_owned(), d.to_owned(), m));
        assert_eq!(files(&got), expected);
    }

    #[test]
    fn later_sources_win_a_path_and_optional_ones_may_be_absent() {
        let cases = [
            (
                "a secret after a configmap replaces the shared key",
                serde_json::json!([{"configMap": {"name": "ca"}}, {"secret": {"name": "creds"}}]),
                Ok(vec![("ca.crt", "CA"), ("password", "pw"), ("shared", "secret")]),
            ),
            (
                "a configmap after a secret replaces it back",
                serde_json::json!([{"secret": {"name": "creds"}}, {"configMap": {"name": "ca"}}]),
                Ok(vec![("ca.crt", "CA"), ("password", "pw"), ("shared", "from map")]),
            ),
            (
                "an absent optional source adds nothing",
                serde_json::json!([{"configMap": {"name": "absent", "optional": true}},
                                   {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca"}]}}]),
                Ok(vec![("ca", "CA")]),
            ),
            (
                "an absent source fails the volume",
                serde_json::json!([{"configMap": {"name": "ca"}}, {"secret": {"name": "absent"}}]),
                Err("secret \"absent\" not found"),
            ),
            (
                "every failing source is reported",
                serde_json::json!([{"secret": {"name": "absent"}},
                                   {"downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}]),
                Err("[secret \"absent\" not found, unsupported fieldPath: spec.nodeName]"),
            ),
            (
                "a token that could not be fetched fails the volume",
                serde_json::json!([{"serviceAccountToken": {"path": "token"}}]),
                Err("failed to fetch token: serviceaccounts \"default\" not found"),
            ),
        ];
        let mut sources = sources();
        let failed = TokenError::Fetch { reason: "serviceaccounts \"default\" not found".into() };
        sources.tokens = BTreeMap::from([(("api".to_string(), 0), Err(failed))]);
        for (name, list, expected) in cases {
            let source = projected(serde_json::json!({"sources": list}));
            let got = payload(&pod(), "api", &source, &sources);
            match expected {
                Ok(expected) => {
                    let got: Vec<(String, String)> =
                        files(&got.unwrap()).into_iter().map(|(p, d, _)| (p, d)).collect();
                    let expected: Vec<(String, String)> =
                        expected.into_iter().map(|(p, d)| (p.to_owned(), d.to_owned())).collect();
                    assert_eq!(got, expected, "{name}");
                }
                Err(message) => assert_eq!(got.unwrap_err().to_string(), message, "{name}"),
            }
        }
    }
}
