//! Name and label formats: DNS labels and subdomains, qualified names, label values and
//! path-segment names (apimachinery `util/validation` and `api/validation/path`).
//!
//! Each `is_*` check returns one message per broken rule, in Kubernetes' order; empty means
//! valid. The Go regular expressions are replaced by byte-class matchers of the same language.

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
                                  must start and end with an alphanumeric character";
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric \
                               characters, '-', '_' or '.', and must start and end with an \
                               alphanumeric character";
/// Maximum length of a label value, in bytes.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case \
                                 alphanumeric characters or '-', and must start and end with an \
                                 alphanumeric character";
/// Maximum length of an RFC 1123 label, in bytes.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;

const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
                                     alphanumeric characters, '-' or '.', and must start and end \
                                     with an alphanumeric character";
/// Maximum length of an RFC 1123 subdomain, in bytes.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric \
                                 characters or '-', start with an alphabetic character, and end \
                                 with an alphanumeric character";
/// Maximum length of an RFC 1035 label, in bytes.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;

// ---------------------------------------------------------------------------------------------
// Messages shared by the `is_*` checks.

/// Returns Kubernetes' "string too long" explanation (`validation.MaxLenError`).
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Returns Kubernetes' "must not be empty" explanation (`validation.EmptyError`).
pub fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Returns Kubernetes' explanation of a regex mismatch (`validation.RegexError`), including its
/// doubled space after each example.
pub fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{regex}')");
    }
    let mut text = format!("{message} (e.g. ");
    for (index, example) in examples.iter().enumerate() {
        if index > 0 {
            text.push_str(" or ");
        }
        text.push('\'');
        text.push_str(example);
        text.push_str("', ");
    }
    text.push_str("regex used for validation is '");
    text.push_str(regex);
    text.push_str("')");
    text
}

// ---------------------------------------------------------------------------------------------
// Character-class matchers standing in for the Go regular expressions above.

fn is_lower_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

/// Matches `^[first]([middle]*[last])?$` over bytes, which is the shape of every format here.
fn matches_word(
    value: &str,
    first: fn(u8) -> bool,
    middle: fn(u8) -> bool,
    last: fn(u8) -> bool,
) -> bool {
    let bytes = value.as_bytes();
    let Some((&head, rest)) = bytes.split_first() else {
        return false;
    };
    if !first(head) {
        return false;
    }
    match rest.split_last() {
        None => true,
        Some((&tail, inner)) => last(tail) && inner.iter().all(|&byte| middle(byte)),
    }
}

fn matches_dns1123_label(value: &str) -> bool {
    matches_word(
        value,
        is_lower_alphanumeric,
        |b| is_lower_alphanumeric(b) || b == b'-',
        is_lower_alphanumeric,
    )
}

fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

fn matches_dns1035_label(value: &str) -> bool {
    matches_word(
        value,
        |b| b.is_ascii_lowercase(),
        |b| is_lower_alphanumeric(b) || b == b'-',
        is_lower_alphanumeric,
    )
}

fn matches_qualified_name_part(value: &str) -> bool {
    matches_word(
        value,
        |b| b.is_ascii_alphanumeric(),
        |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'),
        |b| b.is_ascii_alphanumeric(),
    )
}

// ---------------------------------------------------------------------------------------------
// The `validation.Is*` family.

/// Checks a qualified name (label key, annotation key, finalizer): an optional DNS subdomain
/// prefix and `/`, then a name of at most 63 characters (`validation.IsQualifiedName`).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push(format!("prefix part {}", empty_error()));
            } else {
                errors.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|msg| format!("prefix part {msg}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errors
}

/// Checks a label value: empty, or a qualified-name part of at most 63 characters
/// (`validation.IsValidLabelValue`).
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Checks an RFC 1123 label (`validation.IsDNS1123Label`).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain that is not a label can only be failing on its dots.
            errors.push("must not contain dots".to_string());
        } else {
            errors.push(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errors
}

/// Checks an RFC 1123 subdomain (`validation.IsDNS1123Subdomain`).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errors.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errors
}

/// Checks an RFC 1035 label (`validation.IsDNS1035Label`).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errors.push(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errors
}

/// Checks that a name can be one path segment of a REST or storage path
/// (`path.IsValidPathSegmentName`).
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    is_valid_path_segment_prefix(name)
}

/// Checks a prefix of a path-segment name; `.` and `..` are fine because a suffix follows
/// (`path.IsValidPathSegmentPrefix`).
pub fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(*illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Object names.

/// Which format a resource's `metadata.name` must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// RFC 1123 subdomain: most resources (pods, deployments, configmaps, ...).
    Subdomain,
    /// RFC 1123 label: namespaces, services' ports, ...
    Dns1123Label,
    /// RFC 1035 label: services.
    Dns1035Label,
    /// Any string usable as a path segment: RBAC roles, custom resources without a stricter rule.
    PathSegment,
}

/// Validates a full object name; returns Kubernetes' messages (`ValidateNameFunc(name, false)`).
pub fn validate_name(name: &str, rule: NameRule) -> Vec<String> {
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Dns1123Label => is_dns1123_label(name),
        NameRule::Dns1035Label => is_dns1035_label(name),
        NameRule::PathSegment => is_valid_path_segment_name(name),
    }
}

/// Validates `metadata.generateName`, which gets a suffix appended (`ValidateNameFunc(name, true)`).
pub fn validate_generate_name(prefix: &str, rule: NameRule) -> Vec<String> {
    match rule {
        NameRule::PathSegment => is_valid_path_segment_prefix(prefix),
        _ => validate_name(&mask_trailing_dash(prefix), rule),
    }
}

/// Makes a trailing dash acceptable before validating a generated-name prefix. Kubernetes drops
/// two characters, not one, before appending `a` (`maskTrailingDash`); kept for identical output.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        // The trailing '-' is one byte, so `len - 2` is a boundary unless the character before it
        // is multi-byte; such names are invalid anyway, so fall back to removing only the dash.
        let cut = name.len() - 2;
        let kept = if name.is_char_boundary(cut) { &name[..cut] } else { &name[..name.len() - 1] };
        return format!("{kept}a");
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUALIFIED: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
        start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
        '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
        alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
        character (e.g. 'example.com', regex used for validation is \
        '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
        characters or '-', and must start and end with an alphanumeric character (e.g. \
        'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters \
        or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. \
        'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
        characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
        'MyValue',  or 'my_value',  or '12345', regex used for validation is \
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn owned(messages: &[&str]) -> Vec<String> {
        messages.iter().map(|message| message.to_string()).collect()
    }

    #[test]
    fn subdomain_table() {
        let long = format!("{}.com", "a".repeat(250));
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("example.com", vec![]),
            ("a", vec![]),
            ("0.a-b.c9", vec![]),
            ("Bad_Name", owned(&[SUBDOMAIN])),
            ("a..b", owned(&[SUBDOMAIN])),
            ("-a", owned(&[SUBDOMAIN])),
            ("a.", owned(&[SUBDOMAIN])),
            ("", owned(&[SUBDOMAIN])),
            ("é", owned(&[SUBDOMAIN])),
            (&long, owned(&["must be no more than 253 characters"])),
        ];
        for (input, expected) in cases {
            assert_eq!(is_dns1123_subdomain(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn label_table() {
        let long = "a".repeat(64);
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("my-name", vec![]),
            ("123-abc", vec![]),
            ("a.b", owned(&["must not contain dots"])),
            ("A", owned(&[LABEL])),
            ("a-", owned(&[LABEL])),
            ("", owned(&[LABEL])),
            (&long, owned(&["must be no more than 63 characters"])),
        ];
        for (input, expected) in cases {
            assert_eq!(is_dns1123_label(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn dns1035_table() {
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("my-name", vec![]),
            ("a", vec![]),
            ("abc-123", vec![]),
            ("1abc", owned(&[DNS1035])),
            ("a.b", owned(&[DNS1035])),
            ("abc-", owned(&[DNS1035])),
        ];
        for (input, expected) in cases {
            assert_eq!(is_dns1035_label(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn qualified_name_table() {
        let prefixed_subdomain = format!("prefix part {SUBDOMAIN}");
        let name_part = format!("name part {QUALIFIED}");
        let too_many = format!(
            "a qualified name {QUALIFIED} with an optional DNS subdomain prefix and '/' (e.g. \
             'example.com/MyName')"
        );
        let long = "a".repeat(64);
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("app", vec![]),
            ("My.Name_1", vec![]),
            ("example.com/MyName", vec![]),
            ("k8s.io/a", vec![]),
            ("a_", vec![name_part.clone()]),
            ("", vec!["name part must be non-empty".to_string(), name_part.clone()]),
            ("/a", vec!["prefix part must be non-empty".to_string()]),
            ("Example.com/a", vec![prefixed_subdomain]),
            ("a/b/c", vec![too_many]),
            ("example.com/", vec!["name part must be non-empty".to_string(), name_part.clone()]),
            (&long, vec!["name part must be no more than 63 characters".to_string()]),
        ];
        for (input, expected) in cases {
            assert_eq!(is_qualified_name(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn label_value_table() {
        let long = "a".repeat(64);
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("", vec![]),
            ("v1.2_3-x", vec![]),
            ("-a", owned(&[LABEL_VALUE])),
            ("a b", owned(&[LABEL_VALUE])),
            (&long, owned(&["must be no more than 63 characters"])),
        ];
        for (input, expected) in cases {
            assert_eq!(is_valid_label_value(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn path_segment_table() {
        assert!(is_valid_path_segment_name("system:admin").is_empty());
        assert_eq!(is_valid_path_segment_name(".."), owned(&["may not be '..'"]));
        assert_eq!(is_valid_path_segment_name("."), owned(&["may not be '.'"]));
        assert_eq!(
            is_valid_path_segment_name("a/b%c"),
            owned(&["may not contain '/'", "may not contain '%'"])
        );
        assert!(is_valid_path_segment_prefix("..").is_empty());
    }

    #[test]
    fn names_by_rule() {
        assert!(validate_name("web-0", NameRule::Dns1123Label).is_empty());
        assert_eq!(validate_name("0web", NameRule::Dns1035Label), owned(&[DNS1035]));
        assert!(validate_name("Any:Thing", NameRule::PathSegment).is_empty());
        assert_eq!(validate_name("a_b", NameRule::Subdomain), owned(&[SUBDOMAIN]));
    }

    #[test]
    fn generate_name_allows_a_trailing_dash() {
        assert!(validate_generate_name("web-", NameRule::Subdomain).is_empty());
        assert!(validate_generate_name("web-", NameRule::Dns1035Label).is_empty());
        assert!(validate_generate_name("a/", NameRule::PathSegment).len() == 1);
        assert!(validate_generate_name("..", NameRule::PathSegment).is_empty());
        // Kubernetes drops the character before the dash too, so "a_-" is accepted.
        assert!(validate_generate_name("a_-", NameRule::Subdomain).is_empty());
        assert_eq!(validate_generate_name("Web-", NameRule::Subdomain), owned(&[SUBDOMAIN]));
    }
}
