//! What a request asks for: the route parsed from its path (as Kubernetes' RequestInfo does) and
//! its query parameters. Pure functions, no IO.

use std::collections::BTreeMap;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    /// `/healthz`, `/livez`, `/readyz` and their per-check subpaths.
    Health,
    Metrics,
    /// `/.well-known/openid-configuration`: the service-account issuer's OIDC document.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the keys service-account tokens are signed with.
    Jwks,
    OpenApiV2,
    OpenApiV3Index,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`: the group and version.
    OpenApiV3 {
        group: String,
        version: String,
    },
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: all groups.
    Groups,
    /// `/apis/{group}`.
    Group {
        group: String,
    },
    /// `/api/v1`, `/apis/{group}/{version}`: the resources of a group version.
    Resources {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
}

/// A path into a resource: a collection (no name), an object, or an object's subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Subresources of a namespace, which `/namespaces/{name}/…` would otherwise read as a
/// resource inside the namespace.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Parses a request path. Returns None for paths the server does not serve.
pub fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Some(Route::Health),
        ["metrics"] => Some(Route::Metrics),
        [".well-known", "openid-configuration"] => Some(Route::OpenIdConfiguration),
        ["openid", "v1", "jwks"] => Some(Route::Jwks),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Index),
        ["openapi", "v3", "api", version] => {
            Some(Route::OpenApiV3 { group: String::new(), version: version.to_string() })
        }
        ["openapi", "v3", "apis", group, version] => {
            Some(Route::OpenApiV3 { group: group.to_string(), version: version.to_string() })
        }
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", group] => Some(Route::Group { group: group.to_string() }),
        ["api", version] => {
            Some(Route::Resources { group: String::new(), version: version.to_string() })
        }
        ["apis", group, version] => {
            Some(Route::Resources { group: group.to_string(), version: version.to_string() })
        }
        ["api", version, rest @ ..] => resource_path("", version, rest).map(Route::Resource),
        ["apis", group, version, rest @ ..] => {
            resource_path(group, version, rest).map(Route::Resource)
        }
        _ => None,
    }
}

fn resource_path(group: &str, version: &str, mut rest: &[&str]) -> Option<ResourcePath> {
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        } else {
            // `/namespaces/{name}[/status|finalize]` is the namespace object itself.
            return Some(ResourcePath {
                group: group.to_string(),
                version: version.to_string(),
                plural: "namespaces".into(),
                namespace: None,
                name: namespace,
                subresource: rest.get(2).map(|s| s.to_string()),
            });
        }
    }
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name), None),
        [plural, name, sub, ..] => (plural, Some(name), Some(*sub)),
        _ => return None,
    };
    Some(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        namespace,
        name: name.map(|n| n.to_string()),
        subresource: subresource.map(|s| s.to_string()),
    })
}

/// Decoded query parameters; a repeated parameter keeps its first value.
#[derive(Debug, Clone, Default)]
pub struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut params = BTreeMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(percent_decode(key)).or_insert_with(|| percent_decode(value));
        }
        Query { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// An integer parameter; a malformed one is the caller's 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("invalid value for {key}: {text:?} is not an integer")),
        }
    }
}

/// Decodes `%XX` escapes and `+` (form encoding) in a query component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<Route> {
        Some(Route::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }))
    }

    #[test]
    fn paths_route_like_kubernetes_request_info() {
        let cases = [
            ("/version", Some(Route::Version)),
            ("/readyz/ping", Some(Route::Health)),
            ("/api", Some(Route::CoreVersions)),
            ("/apis", Some(Route::Groups)),
            ("/apis/apps", Some(Route::Group { group: "apps".into() })),
            ("/api/v1", Some(Route::Resources { group: "".into(), version: "v1".into() })),
            ("/api/v1/pods", resource("", "pods", None, None, None)),
            ("/api/v1/namespaces", resource("", "namespaces", None, None, None)),
            ("/api/v1/namespaces/dev", resource("", "namespaces", None, Some("dev"), None)),
            (
                "/api/v1/namespaces/dev/status",
                resource("", "namespaces", None, Some("dev"), Some("status")),
            ),
            (
                "/api/v1/namespaces/dev/finalize",
                resource("", "namespaces", None, Some("dev"), Some("finalize")),
            ),
            ("/api/v1/namespaces/dev/pods", resource("", "pods", Some("dev"), None, None)),
            (
                "/api/v1/namespaces/dev/pods/web",
                resource("", "pods", Some("dev"), Some("web"), None),
            ),
            (
                "/api/v1/namespaces/dev/pods/web/log",
                resource("", "pods", Some("dev"), Some("web"), Some("log")),
            ),
            ("/api/v1/nodes/n1/status", resource("", "nodes", None, Some("n1"), Some("status"))),
            (
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                resource("apps", "deployments", Some("a"), Some("d"), Some("scale")),
            ),
            ("/apis/apps/v1/deployments", resource("apps", "deployments", None, None, None)),
            (
                "/openapi/v3/apis/apps/v1",
                Some(Route::OpenApiV3 { group: "apps".into(), version: "v1".into() }),
            ),
            ("/nothing/here", None),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path), expected, "{path}");
        }
    }

    #[test]
    fn query_parameters_are_decoded() {
        let query = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=5&watch=true&limit=9&empty=",
        ));
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a,b)"));
        assert_eq!(query.int("limit"), Ok(Some(5)));
        assert!(query.flag("watch"));
        assert_eq!(query.get("empty"), None);
        assert!(query.int("labelSelector").is_err());
        assert_eq!(Query::parse(Some("a=%zz%4")).get("a"), Some("%zz%4"));
    }
}
