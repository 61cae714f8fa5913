//! Field selectors: the `fieldSelector` syntax of apimachinery's `fields.ParseSelector` and the
//! per-resource fields Kubernetes 1.33 lets clients select on.
//!
//! Which fields a resource accepts mirrors the field-label conversion function Kubernetes
//! registers for its kind; the values mirror the registry's `ToSelectableFields`. Resources
//! without a conversion function accept `metadata.name` and `metadata.namespace` only. A field
//! that is accepted but missing from an object reads as "", as Go's `fields.Set.Get` does.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::validation::go_quote;

/// Why a field selector was rejected; `Display` is the message the Kubernetes API server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Unparseable { selector: String, term: String },
    /// A value has a backslash not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscape { sequence: String },
    /// A value has a bare `,` or `=`; Kubernetes prints the character's code point.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.character))]
    UnescapedCharacter { character: char },
    /// The resource does not support selecting on `field`.
    #[error("{message}")]
    UnsupportedField { field: String, message: String },
}

/// A term's comparison; `==` parses as [`FieldOperator::Equals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field=value` or `field!=value` term, with the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A parsed field selector: the AND of its terms, sorted like Kubernetes sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Returns the selector that matches every object (the empty string).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the `fieldSelector` syntax (`fields.ParseSelector`): terms separated by unescaped
    /// commas, each `field=value`, `field==value` or `field!=value`, with `\,` `\=` `\\` escapes
    /// in values. Whitespace is not trimmed; empty terms are skipped.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|term| !term.is_empty()) {
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(FieldSelectorError::Unparseable {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: unescape_value(raw_value)?,
            });
        }
        Ok(Self { requirements })
    }

    /// Returns whether the selector places no restriction.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Returns the terms in evaluation order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Returns the value an `=` term requires for `field`, if any (`RequiresExactMatch`); the API
    /// server uses it for `metadata.name` and the `spec.nodeName` index.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|term| term.field == field && term.operator == FieldOperator::Equals)
            .map(|term| term.value.as_str())
    }

    /// Returns whether the fields seen through `lookup` satisfy every term; a field `lookup`
    /// does not know reads as "".
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|term| {
            let actual = lookup(&term.field).unwrap_or_default();
            (actual == term.value) == (term.operator == FieldOperator::Equals)
        })
    }

    /// Returns whether an object of `group`/`resource` matches, reading fields with
    /// [`field_value`]. Run [`FieldSelector::validate_for`] first: unsupported fields read as "".
    pub fn matches_object(&self, group: &str, resource: &str, object: &Value) -> bool {
        self.matches(|field| field_value(group, resource, object, field))
    }

    /// Checks every term against the fields `group`/`resource` supports and returns Kubernetes'
    /// error for the first unsupported one (terms are checked in sorted order, as Kubernetes
    /// does). Groups Kubernetes does not serve itself are treated as namespaced custom
    /// resources; use [`FieldSelector::validate_for_custom_resource`] to pass the scope.
    pub fn validate_for(&self, group: &str, resource: &str) -> Result<(), FieldSelectorError> {
        self.validate_with(&support(group, resource))
    }

    /// Checks every term against what a custom resource supports: `metadata.name`, and
    /// `metadata.namespace` when namespaced. CRD `selectableFields` are not supported yet.
    pub fn validate_for_custom_resource(&self, namespaced: bool) -> Result<(), FieldSelectorError> {
        self.validate_with(&custom_resource_support(namespaced))
    }

    fn validate_with(&self, support: &Support) -> Result<(), FieldSelectorError> {
        match self.requirements.iter().find(|term| !support.accepts(&term.field)) {
            None => Ok(()),
            Some(term) => Err(FieldSelectorError::UnsupportedField {
                field: term.field.clone(),
                message: support.rejection.message(&term.field),
            }),
        }
    }
}

impl fmt::Display for FieldSelector {
    /// Renders like `Selector.String()`: terms joined by `,`, `==` shown as `=`, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, term) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let operator = match term.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{operator}{}", term.field, escape_value(&term.value))?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        Self::parse(selector)
    }
}

/// Escapes `\`, `,` and `=` in a value (`fields.EscapeValue`).
pub fn escape_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if matches!(character, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Reverses [`escape_value`], rejecting bare `,`/`=` and unknown escapes (`fields.UnescapeValue`).
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_string());
    }
    let mut unescaped = String::with_capacity(value.len());
    let mut in_escape = false;
    for character in value.chars() {
        if in_escape {
            if !matches!(character, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscape {
                    sequence: format!("\\{character}"),
                });
            }
            unescaped.push(character);
            in_escape = false;
            continue;
        }
        match character {
            '\\' => in_escape = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedCharacter { character }),
            other => unescaped.push(other),
        }
    }
    if in_escape {
        return Err(FieldSelectorError::InvalidEscape { sequence: "\\".to_string() });
    }
    Ok(unescaped)
}

/// Splits on commas not preceded by a backslash (`splitTerms`).
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_escape = false;
    for (index, character) in selector.char_indices() {
        if in_escape {
            in_escape = false;
        } else if character == '\\' {
            in_escape = true;
        } else if character == ',' {
            terms.push(&selector[start..index]);
            start = index + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator, trying `!=`, `==` then `=` at each position
/// (`splitTerm`).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        for (token, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(token) {
                return Some((&term[..index], operator, value));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Per-resource support.

const OBJECT_META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    // Accepted for old clients and read as spec.nodeName.
    "spec.host",
];

const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

const EVENTS_API_FIELDS: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// Groups served by Kubernetes itself; any other group is a custom resource.
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Built-in cluster-scoped resources; their `metadata.namespace` always reads as "".
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("", "componentstatuses"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies"),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("certificates.k8s.io", "clustertrustbundles"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "servicecidrs"),
    ("node.k8s.io", "runtimeclasses"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "resourceslices"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
];

/// The wording of a resource's rejection, one per style of conversion function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    /// Conversion functions of most kinds and of custom resources.
    NotSupported,
    /// `runtime.DefaultMetaV1FieldSelectorConversion`, for kinds without a conversion function.
    NotKnown,
    /// batch/v1 Job's conversion function.
    BatchJob,
}

impl Rejection {
    fn message(self, field: &str) -> String {
        match self {
            Rejection::NotSupported => format!("field label not supported: {field}"),
            Rejection::NotKnown => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(field)
            ),
            Rejection::BatchJob => {
                format!("field label {} not supported for batchv1.Job", go_quote(field))
            }
        }
    }
}

/// The fields a resource accepts and how it words a rejection.
struct Support {
    fields: &'static [&'static str],
    rejection: Rejection,
}

impl Support {
    fn accepts(&self, field: &str) -> bool {
        self.fields.contains(&field)
    }
}

fn support(group: &str, resource: &str) -> Support {
    let (fields, rejection): (&'static [&'static str], Rejection) = match (group, resource) {
        ("", "pods") => (POD_FIELDS, Rejection::NotSupported),
        ("", "nodes") => (&["metadata.name", "spec.unschedulable"], Rejection::NotSupported),
        ("", "replicationcontrollers") => {
            (&["metadata.name", "metadata.namespace", "status.replicas"], Rejection::NotSupported)
        }
        ("", "events") => (CORE_EVENT_FIELDS, Rejection::NotSupported),
        ("", "namespaces") => (&["status.phase", "metadata.name"], Rejection::NotSupported),
        ("", "secrets") => {
            (&["type", "metadata.namespace", "metadata.name"], Rejection::NotSupported)
        }
        ("", "services") => (
            &["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"],
            Rejection::NotSupported,
        ),
        ("events.k8s.io", "events") => (EVENTS_API_FIELDS, Rejection::NotSupported),
        ("batch", "jobs") => {
            (&["metadata.name", "metadata.namespace", "status.successful"], Rejection::BatchJob)
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            (&["metadata.name", "spec.signerName"], Rejection::NotSupported)
        }
        _ if BUILT_IN_GROUPS.contains(&group) => (OBJECT_META_FIELDS, Rejection::NotKnown),
        _ => return custom_resource_support(true),
    };
    Support { fields, rejection }
}

fn custom_resource_support(namespaced: bool) -> Support {
    let fields: &'static [&'static str] =
        if namespaced { OBJECT_META_FIELDS } else { &["metadata.name"] };
    Support { fields, rejection: Rejection::NotSupported }
}

/// Returns the value Kubernetes compares a field selector against for `field` of an object of
/// `group` ("" for core) / `resource` (plural), or `None` when the resource does not support
/// selecting on `field`. Missing fields read as "", booleans as `true`/`false`, counts as
/// decimal integers (0 when missing).
pub fn field_value(group: &str, resource: &str, object: &Value, field: &str) -> Option<String> {
    if !support(group, resource).accepts(field) {
        return None;
    }
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let flag = |pointer: &str| object.pointer(pointer).and_then(Value::as_bool).unwrap_or(false);
    let count = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let first_non_empty = |primary: &str, fallback: &str| {
        let value = text(primary);
        if value.is_empty() {
            text(fallback)
        } else {
            value
        }
    };
    let value = match (group, resource, field) {
        (_, _, "metadata.name") => text("/metadata/name").to_string(),
        (_, _, "metadata.namespace") => {
            if CLUSTER_SCOPED.contains(&(group, resource)) {
                String::new()
            } else {
                text("/metadata/namespace").to_string()
            }
        }
        ("", "pods", "spec.nodeName" | "spec.host") => text("/spec/nodeName").to_string(),
        ("", "pods", "spec.restartPolicy") => text("/spec/restartPolicy").to_string(),
        ("", "pods", "spec.schedulerName") => text("/spec/schedulerName").to_string(),
        ("", "pods", "spec.serviceAccountName") => {
            // v1's deprecated `serviceAccount` fills the name when it is unset.
            first_non_empty("/spec/serviceAccountName", "/spec/serviceAccount").to_string()
        }
        ("", "pods", "spec.hostNetwork") => flag("/spec/hostNetwork").to_string(),
        ("", "pods", "status.phase") => text("/status/phase").to_string(),
        ("", "pods", "status.podIP") => {
            first_non_empty("/status/podIP", "/status/podIPs/0/ip").to_string()
        }
        // Accepted by Kubernetes but absent from the pod's field set, so always "".
        ("", "pods", "status.podIPs") => String::new(),
        ("", "pods", "status.nominatedNodeName") => text("/status/nominatedNodeName").to_string(),
        ("", "nodes", "spec.unschedulable") => flag("/spec/unschedulable").to_string(),
        ("", "replicationcontrollers", "status.replicas") => count("/status/replicas").to_string(),
        ("", "namespaces", "status.phase") => text("/status/phase").to_string(),
        ("", "secrets", "type") => text("/type").to_string(),
        ("", "services", "spec.clusterIP") => text("/spec/clusterIP").to_string(),
        ("", "services", "spec.type") => text("/spec/type").to_string(),
        ("", "events", "source") => {
            first_non_empty("/source/component", "/reportingComponent").to_string()
        }
        ("", "events", _) => text(&format!("/{}", field.replace('.', "/"))).to_string(),
        ("events.k8s.io", "events", "source") => {
            first_non_empty("/deprecatedSource/component", "/reportingController").to_string()
        }
        ("events.k8s.io", "events", _) => {
            text(&format!("/{}", field.replace('.', "/"))).to_string()
        }
        ("batch", "jobs", "status.successful") => count("/status/succeeded").to_string(),
        ("certificates.k8s.io", "certificatesigningrequests", "spec.signerName") => {
            text("/spec/signerName").to_string()
        }
        _ => String::new(),
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_valid_selectors_to_canonical_strings() {
        let cases = [
            ("", ""),
            ("metadata.name=foo", "metadata.name=foo"),
            ("b=2,a==1", "a=1,b=2"),
            ("a!=x", "a!=x"),
            (r"a=b\,c", r"a=b\,c"),
            (r"a=\\", r"a=\\"),
            (r"a=x\=y", r"a=x\=y"),
            (",,a=b,", "a=b"),
            ("a=", "a="),
            ("=a", "=a"),
            ("spec.nodeName=,status.phase!=Succeeded", "spec.nodeName=,status.phase!=Succeeded"),
            ("a =b", "a =b"),
        ];
        for (input, canonical) in cases {
            let selector = FieldSelector::parse(input)
                .unwrap_or_else(|error| panic!("{input:?} failed: {error}"));
            assert_eq!(selector.to_string(), canonical, "input {input:?}");
            assert_eq!(FieldSelector::parse(canonical).unwrap(), selector, "input {input:?}");
        }
        let selector = FieldSelector::parse(r"a=b\,c,d!=\\").unwrap();
        assert_eq!(
            selector.requirements(),
            [
                FieldRequirement {
                    field: "a".into(),
                    operator: FieldOperator::Equals,
                    value: "b,c".into()
                },
                FieldRequirement {
                    field: "d".into(),
                    operator: FieldOperator::NotEquals,
                    value: "\\".into()
                },
            ]
        );
    }

    #[test]
    fn rejects_invalid_selectors_with_kubernetes_messages() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("x=1,y", "invalid selector: 'x=1,y'; can't understand 'y'"),
            (" ", "invalid selector: ' '; can't understand ' '"),
            (r"a=\q", r"invalid field selector: invalid escape sequence: \q"),
            (r"a=b\", r"invalid field selector: invalid escape sequence: \"),
            ("a=b=c", "invalid field selector: unescaped character in value: 61"),
            ("a!==b", "invalid field selector: unescaped character in value: 61"),
        ];
        for (input, expected) in cases {
            match FieldSelector::parse(input) {
                Ok(selector) => panic!("{input:?} parsed as {selector}"),
                Err(error) => assert_eq!(error.to_string(), expected, "input {input:?}"),
            }
        }
    }

    #[test]
    fn escaping_round_trips() {
        for value in ["", "plain", r"a\b", "a,b", "a=b", r"\,=\\"] {
            assert_eq!(unescape_value(&escape_value(value)).unwrap(), value);
        }
    }

    #[test]
    fn matches_through_lookup() {
        let lookup = |field: &str| match field {
            "status.phase" => Some("Running".to_string()),
            "spec.nodeName" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("", true),
            ("status.phase=Running", true),
            ("status.phase==Running", true),
            ("status.phase!=Running", false),
            ("status.phase=Pending", false),
            ("spec.nodeName=", true),
            ("unknown=", true),
            ("unknown!=x", true),
            ("status.phase=Running,spec.nodeName!=", false),
        ];
        for (input, expected) in cases {
            assert_eq!(FieldSelector::parse(input).unwrap().matches(lookup), expected, "{input:?}");
        }
    }

    #[test]
    fn validates_fields_per_resource() {
        let cases = [
            ("", "pods", "spec.nodeName=n1,status.phase=Running,spec.host=n1", None),
            ("", "pods", "spec.foo=x", Some("field label not supported: spec.foo")),
            ("", "pods", "z.b=1,a.b=2", Some("field label not supported: a.b")),
            ("", "nodes", "spec.unschedulable=true,metadata.name=n", None),
            ("", "nodes", "metadata.namespace=x", Some("field label not supported: metadata.namespace")),
            ("", "namespaces", "status.phase=Active", None),
            ("", "secrets", "type=Opaque", None),
            ("", "services", "spec.type=NodePort,spec.clusterIP=None", None),
            ("", "events", "involvedObject.name=p,reason=Failed,source=kubelet", None),
            ("", "configmaps", "metadata.namespace=default", None),
            (
                "",
                "configmaps",
                "data.x=1",
                Some("\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
            ),
            (
                "apps",
                "replicasets",
                "status.replicas=0",
                Some("\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
            ),
            ("", "replicationcontrollers", "status.replicas=0", None),
            ("batch", "jobs", "status.successful=1", None),
            ("batch", "jobs", "status.active=1", Some("field label \"status.active\" not supported for batchv1.Job")),
            (
                "batch",
                "cronjobs",
                "spec.suspend=true",
                Some("\"spec.suspend\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
            ),
            ("events.k8s.io", "events", "regarding.name=p,reportingController=x", None),
            (
                "events.k8s.io",
                "events",
                "involvedObject.name=p",
                Some("field label not supported: involvedObject.name"),
            ),
            ("certificates.k8s.io", "certificatesigningrequests", "spec.signerName=x", None),
            ("example.com", "widgets", "metadata.namespace=a", None),
            ("example.com", "widgets", "spec.size=1", Some("field label not supported: spec.size")),
        ];
        for (group, resource, input, expected) in cases {
            let result = FieldSelector::parse(input).unwrap().validate_for(group, resource);
            let actual = result.err().map(|error| error.to_string());
            assert_eq!(actual.as_deref(), expected, "{group}/{resource} {input:?}");
        }
        let cluster_scoped = FieldSelector::parse("metadata.namespace=a").unwrap();
        assert_eq!(
            cluster_scoped.validate_for_custom_resource(false).unwrap_err().to_string(),
            "field label not supported: metadata.namespace"
        );
        assert!(cluster_scoped.validate_for_custom_resource(true).is_ok());
    }

    #[test]
    fn reads_pod_fields() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "serviceAccount": "legacy"},
            "status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        });
        let cases = [
            ("metadata.name", Some("p")),
            ("metadata.namespace", Some("ns")),
            ("spec.nodeName", Some("n1")),
            ("spec.host", Some("n1")),
            ("spec.restartPolicy", Some("Always")),
            ("spec.schedulerName", Some("")),
            ("spec.serviceAccountName", Some("legacy")),
            ("spec.hostNetwork", Some("false")),
            ("status.phase", Some("")),
            ("status.podIP", Some("10.0.0.1")),
            ("status.podIPs", Some("")),
            ("status.nominatedNodeName", Some("")),
            ("spec.containers", None),
        ];
        for (field, expected) in cases {
            assert_eq!(field_value("", "pods", &pod, field).as_deref(), expected, "{field}");
        }
        let host_network = json!({"spec": {"hostNetwork": true}, "status": {"podIP": "10.0.0.2"}});
        assert_eq!(field_value("", "pods", &host_network, "spec.hostNetwork").unwrap(), "true");
        assert_eq!(field_value("", "pods", &host_network, "status.podIP").unwrap(), "10.0.0.2");
    }

    #[test]
    fn reads_fields_of_other_resources() {
        let cases = [
            (
                "",
                "nodes",
                json!({"spec": {"unschedulable": true}}),
                "spec.unschedulable",
                Some("true"),
            ),
            ("", "nodes", json!({}), "spec.unschedulable", Some("false")),
            ("", "nodes", json!({}), "metadata.namespace", None),
            (
                "",
                "namespaces",
                json!({"status": {"phase": "Terminating"}}),
                "status.phase",
                Some("Terminating"),
            ),
            (
                "",
                "persistentvolumes",
                json!({"metadata": {"namespace": "x"}}),
                "metadata.namespace",
                Some(""),
            ),
            (
                "",
                "replicationcontrollers",
                json!({"status": {"replicas": 3}}),
                "status.replicas",
                Some("3"),
            ),
            ("", "secrets", json!({"type": "Opaque"}), "type", Some("Opaque")),
            (
                "",
                "services",
                json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.1"}}),
                "spec.clusterIP",
                Some("10.96.0.1"),
            ),
            ("", "services", json!({"spec": {"type": "NodePort"}}), "spec.type", Some("NodePort")),
            (
                "",
                "events",
                json!({"involvedObject": {"kind": "Pod"}}),
                "involvedObject.kind",
                Some("Pod"),
            ),
            ("", "events", json!({"reportingComponent": "kubelet"}), "source", Some("kubelet")),
            (
                "",
                "events",
                json!({"source": {"component": "sched"}, "reportingComponent": "k"}),
                "source",
                Some("sched"),
            ),
            (
                "",
                "events",
                json!({"reportingComponent": "kubelet"}),
                "reportingComponent",
                Some("kubelet"),
            ),
            (
                "events.k8s.io",
                "events",
                json!({"regarding": {"name": "p"}}),
                "regarding.name",
                Some("p"),
            ),
            ("events.k8s.io", "events", json!({"reportingController": "c"}), "source", Some("c")),
            (
                "events.k8s.io",
                "events",
                json!({"deprecatedSource": {"component": "d"}}),
                "source",
                Some("d"),
            ),
            ("batch", "jobs", json!({}), "status.successful", Some("0")),
            ("batch", "jobs", json!({"status": {"succeeded": 2}}), "status.successful", Some("2")),
            ("apps", "replicasets", json!({"status": {"replicas": 2}}), "status.replicas", None),
            (
                "apps",
                "deployments",
                json!({"metadata": {"name": "d", "namespace": "n"}}),
                "metadata.namespace",
                Some("n"),
            ),
            (
                "certificates.k8s.io",
                "certificatesigningrequests",
                json!({"spec": {"signerName": "s"}}),
                "spec.signerName",
                Some("s"),
            ),
            (
                "example.com",
                "widgets",
                json!({"metadata": {"name": "w"}}),
                "metadata.name",
                Some("w"),
            ),
            ("example.com", "widgets", json!({"spec": {"size": 1}}), "spec.size", None),
        ];
        for (group, resource, object, field, expected) in cases {
            assert_eq!(
                field_value(group, resource, &object, field).as_deref(),
                expected,
                "{group}/{resource} {field}"
            );
        }
    }

    #[test]
    fn matches_objects_of_a_resource() {
        let pending = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}});
        let selector = FieldSelector::parse("spec.nodeName=,status.phase!=Succeeded").unwrap();
        assert!(selector.validate_for("", "pods").is_ok());
        assert!(selector.matches_object("", "pods", &pending));
        let bound = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(!selector.matches_object("", "pods", &bound));
        assert_eq!(selector.requires_exact_match("spec.nodeName"), Some(""));
        assert_eq!(selector.requires_exact_match("status.phase"), None);
    }
}
