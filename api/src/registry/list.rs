//! Lists: label and field selectors, pages with `limit` and `continue`, and the revision rules
//! of `resourceVersion` / `resourceVersionMatch`.

use std::time::Duration;

use base64::Engine;
use flotilla_store::KvStore;
use serde_json::{json, Value};

use super::Registry;
use crate::error::ApiError;
use crate::request::Query;
use crate::resources::ResourceType;
use crate::selector::{field_value, FieldSelector, LabelSelector};
use crate::storage::Stored;

/// Which objects a list or watch selects.
#[derive(Debug, Clone)]
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    group: String,
    plural: String,
}

impl Filter {
    pub fn from_query(resource: &ResourceType, query: &Query) -> Result<Filter, ApiError> {
        let labels = query
            .get("labelSelector")
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|err| ApiError::BadRequest(err.to_string()))?;
        let fields = query
            .get("fieldSelector")
            .map(FieldSelector::parse)
            .transpose()
            .map_err(|err| ApiError::BadRequest(err.to_string()))?;
        if let Some(fields) = &fields {
            fields.validate_for(&resource.group, &resource.plural).map_err(|err| {
                ApiError::BadRequest(format!(
                    "Unable to find {:?} that match label selector {:?}, field selector {:?}: {err}",
                    format!("{}, Resource={}", resource.api_version(), resource.plural),
                    query.get("labelSelector").unwrap_or(""),
                    query.get("fieldSelector").unwrap_or(""),
                ))
            })?;
        }
        Ok(Filter {
            labels,
            fields,
            group: resource.group.clone(),
            plural: resource.plural.clone(),
        })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub fn matches(&self, object: &Value) -> bool {
        if let Some(labels) = &self.labels {
            let empty = serde_json::Map::new();
            let object_labels =
                object.pointer("/metadata/labels").and_then(Value::as_object).unwrap_or(&empty);
            if !labels.matches(object_labels) {
                return false;
            }
        }
        if let Some(fields) = &self.fields {
            if !fields.matches(|field| field_value(&self.group, &self.plural, object, field)) {
                return false;
            }
        }
        true
    }
}

/// What a list asks for.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub filter: Filter,
    pub limit: i64,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub exact: bool,
}

impl ListOptions {
    pub fn from_query(resource: &ResourceType, query: &Query) -> Result<ListOptions, ApiError> {
        let limit = query.int("limit").map_err(ApiError::BadRequest)?.unwrap_or(0).max(0);
        let continue_token = query.get("continue").map(str::to_string);
        let resource_version = query.get("resourceVersion").map(str::to_string);
        if continue_token.is_some() && resource_version.as_deref().is_some_and(|rv| rv != "0") {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        let exact = match query.get("resourceVersionMatch") {
            None | Some("NotOlderThan") => false,
            Some("Exact") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
                )))
            }
        };
        Ok(ListOptions {
            filter: Filter::from_query(resource, query)?,
            limit,
            continue_token,
            resource_version,
            exact,
        })
    }
}

/// A list's items and what the client needs to go on.
pub struct ListResult {
    pub items: Vec<Stored>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// The expired-continue message kubectl shows.
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a \
consistent list result. You can start a new list without the continue parameter, or use the \
continue token in this response to retrieve the remainder of the results. Continuing with the \
provided token results in an inconsistent list - objects that were created, modified, or deleted \
between the time the first chunk was returned and now may show up in the list.";

fn encode_continue(revision: i64, start: &str) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": revision, "start": start });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let revision = value.get("rv").and_then(Value::as_i64).filter(|rv| *rv > 0).ok_or_else(bad)?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((revision, start.to_string()))
}

/// Where a list starts reading.
struct ListStart {
    start: Option<String>,
    revision: i64,
    continuing: bool,
    serializable: bool,
}

/// A list's items already encoded as a JSON array.
pub struct EncodedList {
    pub items: Vec<u8>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// A compacted revision: 410, worded for a continued list or a list at a revision.
fn list_error(err: ApiError, continuing: bool, options: &ListOptions) -> ApiError {
    match err {
        ApiError::Expired(_) if continuing => ApiError::Gone(CONTINUE_EXPIRED.into()),
        ApiError::Expired(_) => ApiError::Expired(format!(
            "Timeout: Too large resource version or compacted: {}",
            options.resource_version.as_deref().unwrap_or("")
        )),
        other => other,
    }
}

/// How long a read at a revision this replica has not reached yet waits for it.
const FUTURE_REVISION_WAIT: Duration = Duration::from_secs(3);

impl<S: KvStore> Registry<S> {
    /// Waits until this replica has applied `revision`; a revision it does not reach in time
    /// is a 504, as Kubernetes answers a resourceVersion newer than its cache.
    async fn wait_for_revision(&self, revision: i64) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + FUTURE_REVISION_WAIT;
        loop {
            let current = self.objects.current_revision();
            if current >= revision {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Timeout(format!(
                    "Too large resource version: {revision}, current: {current}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where a list starts: the key to start from, the revision to read at, whether it
    /// continues an earlier page, and whether it may read this replica as it is.
    async fn list_start(&self, prefix: &str, options: &ListOptions) -> Result<ListStart, ApiError> {
        if let Some(asked) = options.resource_version.as_deref().and_then(|rv| rv.parse().ok()) {
            self.wait_for_revision(asked).await?;
        }
        let (start, revision, continuing) = match &options.continue_token {
            Some(token) => {
                let (revision, start) = decode_continue(token)?;
                (Some(format!("{prefix}{start}")), revision, true)
            }
            None => {
                let revision = match (&options.resource_version, options.exact) {
                    (Some(rv), true) => rv.parse::<i64>().map_err(|_| {
                        ApiError::BadRequest(format!("invalid resource version: {rv}"))
                    })?,
                    _ => 0,
                };
                (None, revision, false)
            }
        };
        let serializable = options.resource_version.as_deref() == Some("0") && !continuing;
        Ok(ListStart { start, revision, continuing, serializable })
    }

    /// A list with no selector, as one JSON array of the stored objects (resourceVersions
    /// added), never decoding them: what plain `kubectl get -o json` and clients' lists cost.
    pub async fn list_encoded(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<EncodedList, ApiError> {
        let prefix = resource.list_prefix(namespace);
        let begin = self.list_start(&prefix, options).await?;
        let (kvs, revision, more, remaining) = self
            .objects
            .list_stored(
                &prefix,
                begin.start.as_deref(),
                begin.revision,
                options.limit,
                begin.serializable,
            )
            .await
            .map_err(|err| list_error(err, begin.continuing, options))?;
        let size: usize = kvs.iter().map(|kv| kv.value.len() + 32).sum();
        let mut items = Vec::with_capacity(size + 2);
        items.push(b'[');
        for (index, kv) in kvs.iter().enumerate() {
            if index > 0 {
                items.push(b',');
            }
            crate::storage::write_with_revision(&kv.value, kv.mod_revision, &mut items)?;
        }
        items.push(b']');
        let next = match kvs.last() {
            Some(last) if more && options.limit > 0 => {
                let key = String::from_utf8_lossy(&last.key);
                Some(encode_continue(revision, &format!("{}\u{0}", &key[prefix.len()..])))
            }
            _ => None,
        };
        Ok(EncodedList {
            items,
            revision,
            continue_token: next.clone(),
            remaining: next.and(Some(remaining)).filter(|n| *n > 0),
        })
    }

    pub async fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let prefix = resource.list_prefix(namespace);
        let ListStart { mut start, mut revision, continuing, serializable } =
            self.list_start(&prefix, options).await?;
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = None;
        loop {
            let want = if options.limit > 0 { options.limit - items.len() as i64 } else { 0 };
            let page = self
                .objects
                .list(&prefix, start.as_deref(), revision, want, serializable)
                .await
                .map_err(|err| list_error(err, continuing, options))?;
            revision = page.revision;
            let count = page.items.len();
            let mut last_key = None;
            for (index, item) in page.items.into_iter().enumerate() {
                last_key = Some(item.key.clone());
                if options.filter.matches(&item.object) {
                    items.push(item);
                }
                let full = options.limit > 0 && items.len() as i64 >= options.limit;
                if full {
                    let rest_in_page = index + 1 < count;
                    if rest_in_page || page.more {
                        let key = last_key.clone().unwrap_or_default();
                        next = Some(format!("{}\u{0}", &key[prefix.len()..]));
                        if options.filter.is_everything() {
                            remaining = Some(page.remaining + (count - index - 1) as i64);
                        }
                    }
                    break;
                }
            }
            let full = options.limit > 0 && items.len() as i64 >= options.limit;
            match last_key {
                Some(key) if page.more && !full => start = Some(format!("{key}\u{0}")),
                _ => break,
            }
        }
        Ok(ListResult {
            items,
            revision,
            continue_token: next.map(|start| encode_continue(revision, &start)),
            remaining: remaining.filter(|n| *n > 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_continue(42, "default/web\u{0}");
        assert_eq!(decode_continue(&token).unwrap(), (42, "default/web\u{0}".to_string()));
        assert!(decode_continue("not base64!").is_err());
        let escape = encode_continue(1, "../../secrets");
        assert!(decode_continue(&escape).is_err());
    }
}
