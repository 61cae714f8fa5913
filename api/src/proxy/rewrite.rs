//! What a proxied request and its response carry, decided without IO, as kube-apiserver's
//! proxy handler and Go's reverse proxy decide it: the path sent to the backend, the headers
//! passed each way, and a redirect's `Location` rewritten to come back through the proxy.
//! HTML bodies are passed on as they are (kube rewrites their links; this proxy does not).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The request path split after the segment at `index` (counting non-empty segments from
/// 0): for the `proxy` segment, the path up to it and what follows it.
pub fn split_after_segment(path: &str, index: usize) -> Option<(&str, &str)> {
    let mut seen = 0;
    let mut offset = 0;
    for piece in path.split('/') {
        let end = offset + piece.len();
        offset = end + 1;
        if piece.is_empty() {
            continue;
        }
        if seen == index {
            return Some((&path[..end], &path[end..]));
        }
        seen += 1;
    }
    None
}

/// `path` with `.`, `..` and empty segments resolved, as Go's `path.Clean` resolves them for
/// an absolute path (the result starts with `/` and `..` stops at the root).
fn clean(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    format!("/{}", kept.join("/"))
}

/// `path` cleaned, keeping its trailing slash.
fn clean_keeping_slash(path: &str) -> String {
    let mut cleaned = clean(path);
    if path.ends_with('/') && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// The path sent to the backend: what follows `proxy` in the request path, cleaned, with a
/// trailing slash kept. Empty when nothing follows, which kube answers for GET and HEAD with
/// a redirect to the path with a slash added (relative links then resolve below the proxy),
/// and sends as `/` otherwise.
pub fn backend_path(rest: &str) -> String {
    if rest.is_empty() {
        String::new()
    } else {
        clean_keeping_slash(rest)
    }
}

/// The URI the client asked for, for the backend's `X-Forwarded-Uri`.
pub fn forwarded_uri(prefix: &str, backend_path: &str) -> String {
    clean_keeping_slash(&format!("{prefix}/{backend_path}"))
}

/// Headers that belong to one connection (RFC 9110 §7.6.1), as Go's reverse proxy lists them.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The CORS headers kube-apiserver removes from a backend's response, so a backend cannot
/// open the API server's origin to other sites.
const CORS: [&str; 4] = [
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
];

/// The tokens of the `Connection` headers, lowercased.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// Whether the request asks to switch protocols (`Connection: Upgrade`), as kube's
/// `IsUpgradeRequest` judges it.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    connection_tokens(headers).iter().any(|token| token == "upgrade")
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for token in connection_tokens(headers) {
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the backend is told about the client.
pub struct Forwarded<'a> {
    /// The `Host` the client asked for, passed on as kube's proxy passes it.
    pub host: Option<&'a HeaderValue>,
    pub client_ip: Option<IpAddr>,
    /// The path the client asked for (`X-Forwarded-Uri`).
    pub uri: &'a str,
}

/// The headers sent to the backend: the client's, without the credentials the API server
/// consumed (`Authorization` and `Impersonate-*`, which kube-apiserver removes once it has
/// authenticated the request), hop-by-hop headers and `Content-Length` (the body is framed
/// anew), with `X-Forwarded-For` and `X-Forwarded-Uri` added. An upgrade keeps
/// `Connection: Upgrade` and its `Upgrade` header.
pub fn request_headers(client: &HeaderMap, forwarded: &Forwarded<'_>) -> HeaderMap {
    let upgrade = is_upgrade(client).then(|| client.get(header::UPGRADE).cloned()).flatten();
    let mut headers = client.clone();
    remove_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    let impersonation: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("impersonate-")).cloned().collect();
    for name in impersonation {
        headers.remove(name);
    }
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::HOST);
    if let Some(host) = forwarded.host {
        headers.insert(header::HOST, host.clone());
    }
    if let Some(ip) = forwarded.client_ip {
        let prior: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let chain =
            if prior.is_empty() { ip.to_string() } else { format!("{}, {ip}", prior.join(", ")) };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(forwarded.uri) {
        headers.insert("x-forwarded-uri", value);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    headers
}

/// What a redirect's `Location` is rewritten against.
pub struct Redirect<'a> {
    /// The backend's host as its URL names it.
    pub backend_host: &'a str,
    /// The `Host` the client asked for.
    pub request_host: &'a str,
    /// The path up to `proxy`: `/api/v1/namespaces/default/pods/web:8080/proxy`.
    pub prefix: &'a str,
}

/// The backend's response headers as the client gets them: without hop-by-hop and CORS
/// headers, with a `Location` rewritten by [`rewrite_location`]. A switch of protocols keeps
/// its `Connection` and `Upgrade`.
pub fn response_headers(
    backend: &HeaderMap,
    redirect: &Redirect<'_>,
    switching: bool,
) -> HeaderMap {
    let mut headers = backend.clone();
    if switching {
        return headers;
    }
    remove_hop_by_hop(&mut headers);
    for name in CORS {
        headers.remove(name);
    }
    let location = headers.get(header::LOCATION).and_then(|value| value.to_str().ok());
    if let Some(location) = location.filter(|location| !location.is_empty()) {
        let rewritten = rewrite_location(location, redirect);
        if let Ok(value) = HeaderValue::from_str(&rewritten) {
            headers.insert(header::LOCATION, value);
        }
    }
    headers
}

/// Whether `text` is a URL scheme (a letter, then letters, digits, `+`, `-`, `.`).
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A redirect target rewritten to come back through the proxy, as kube's proxy transport
/// rewrites it: a URL on another host, or with a relative path, is left alone; one on the
/// backend's host (or without a host) loses its scheme and host and gets the proxy prefix;
/// one on the host the client asked for keeps them and gets the prefix. A path that already
/// starts with the prefix is not prefixed again.
pub fn rewrite_location(location: &str, redirect: &Redirect<'_>) -> String {
    let (scheme, rest) = match location.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, location),
    };
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    let host = authority.map(|authority| authority.rsplit_once('@').map_or(authority, |(_, h)| h));
    let host = host.unwrap_or_default();
    let different_host =
        !host.is_empty() && host != redirect.backend_host && host != redirect.request_host;
    if different_host || !path.starts_with('/') {
        return location.to_owned();
    }
    let origin = match (host == redirect.request_host, scheme, authority) {
        (true, Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        (true, None, Some(authority)) => format!("//{authority}"),
        _ => String::new(),
    };
    let path = if path.starts_with(redirect.prefix) {
        path.to_owned()
    } else {
        clean_keeping_slash(&format!("{}/{path}", redirect.prefix))
    };
    format!("{origin}{path}{tail}")
}
