//! Content negotiation: request bodies in JSON or YAML, responses as JSON or YAML, and the
//! alternative renderings a client may ask for in `Accept` (`as=Table`,
//! `as=PartialObjectMetadata`, aggregated discovery).

use serde_json::Value;

use crate::error::ApiError;

/// How a response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Yaml => "application/yaml",
        }
    }
}

/// What shape the client wants the resource in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Object,
    Table,
    /// Objects reduced to their metadata (`PartialObjectMetadata[List]`).
    Metadata,
    /// `apidiscovery.k8s.io/v2` aggregated discovery.
    AggregatedDiscovery,
}

/// The negotiated response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    pub encoding: Encoding,
    pub shape: Shape,
}

/// One media range of an `Accept` header, with its parameters.
struct MediaRange<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl MediaRange<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

fn media_ranges(header: &str) -> Vec<MediaRange<'_>> {
    header
        .split(',')
        .map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().unwrap_or("");
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
                .collect();
            MediaRange { essence, params }
        })
        .collect()
}

impl Accept {
    pub const JSON: Accept = Accept { encoding: Encoding::Json, shape: Shape::Object };

    /// Picks the first media range the server can produce. An `Accept` with none it can
    /// produce is a 406; no header means JSON.
    pub fn negotiate(header: Option<&str>) -> Result<Accept, ApiError> {
        let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
            return Ok(Accept::JSON);
        };
        for range in media_ranges(header) {
            let encoding = match range.essence {
                "application/json" | "application/*" | "*/*" | "*" => Encoding::Json,
                "application/yaml" => Encoding::Yaml,
                // Protobuf responses are not produced; clients list JSON after it.
                _ => continue,
            };
            let shape = match (range.param("as"), range.param("g")) {
                (None, _) => Shape::Object,
                (Some("Table"), Some("meta.k8s.io")) => Shape::Table,
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                ) => Shape::Metadata,
                (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"))
                    if range.param("v") == Some("v2") =>
                {
                    Shape::AggregatedDiscovery
                }
                _ => continue,
            };
            return Ok(Accept { encoding, shape });
        }
        Err(ApiError::NotAcceptable(
            "only the following media types are accepted: application/json, application/yaml"
                .into(),
        ))
    }
}

/// The largest request body accepted (Kubernetes' limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    Protobuf,
}

impl BodyType {
    /// The body type of a create or update request; anything else is a 415.
    pub fn from_content_type(header: Option<&str>) -> Result<BodyType, ApiError> {
        let essence = header.unwrap_or("application/json").split(';').next().unwrap_or("").trim();
        match essence {
            "application/json" | "" => Ok(BodyType::Json),
            "application/yaml" => Ok(BodyType::Yaml),
            "application/vnd.kubernetes.protobuf" => Ok(BodyType::Protobuf),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json, application/yaml, \
                 application/vnd.kubernetes.protobuf (got {other:?})"
            ))),
        }
    }
}

/// Decodes a JSON or YAML body into one object.
pub fn decode_body(body: &[u8], body_type: BodyType) -> Result<Value, ApiError> {
    let value: Value = match body_type {
        BodyType::Json => serde_json::from_slice(body).map_err(|err| {
            ApiError::BadRequest(format!("error decoding request body as JSON: {err}"))
        })?,
        BodyType::Yaml => serde_yaml_ng::from_slice(body).map_err(|err| {
            ApiError::BadRequest(format!("error decoding request body as YAML: {err}"))
        })?,
        BodyType::Protobuf => crate::protobuf::decode(body).map_err(|err| match err {
            crate::protobuf::ProtobufError::UnknownType { .. } => {
                ApiError::UnsupportedMediaType(err.to_string())
            }
            other => ApiError::BadRequest(other.to_string()),
        })?,
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a single object, not a list or a scalar".into(),
        ));
    }
    Ok(value)
}

/// Encodes a value in the negotiated encoding.
pub fn encode(value: &Value, encoding: Encoding) -> Vec<u8> {
    match encoding {
        // Serializing a `Value` cannot fail: its map keys are strings.
        Encoding::Json => serde_json::to_vec(value).unwrap_or_default(),
        Encoding::Yaml => serde_yaml_ng::to_string(value).unwrap_or_default().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_headers_negotiate() {
        let cases = [
            (None, Some((Encoding::Json, Shape::Object))),
            (Some("application/json"), Some((Encoding::Json, Shape::Object))),
            (
                Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
                Some((Encoding::Json, Shape::Table)),
            ),
            (
                Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"),
                Some((Encoding::Json, Shape::AggregatedDiscovery)),
            ),
            (
                Some("application/vnd.kubernetes.protobuf, */*"),
                Some((Encoding::Json, Shape::Object)),
            ),
            (Some("application/yaml"), Some((Encoding::Yaml, Shape::Object))),
            (
                Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
                Some((Encoding::Json, Shape::Metadata)),
            ),
            (Some("text/html"), None),
            (Some("application/json;as=Unknown;g=x"), None),
        ];
        for (header, expected) in cases {
            let got = Accept::negotiate(header).ok().map(|a| (a.encoding, a.shape));
            assert_eq!(got, expected, "{header:?}");
        }
    }

    #[test]
    fn bodies_decode_or_fail_cleanly() {
        let json = decode_body(br#"{"kind":"Pod"}"#, BodyType::Json).unwrap();
        assert_eq!(json["kind"], "Pod");
        let yaml = decode_body(b"kind: Pod\nmetadata:\n  name: p\n", BodyType::Yaml).unwrap();
        assert_eq!(yaml["metadata"]["name"], "p");
        assert!(matches!(decode_body(b"{", BodyType::Json), Err(ApiError::BadRequest(_))));
        assert!(matches!(decode_body(b"[1]", BodyType::Json), Err(ApiError::BadRequest(_))));
        assert!(matches!(decode_body(b"a: [", BodyType::Yaml), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            BodyType::from_content_type(Some("text/plain")),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
