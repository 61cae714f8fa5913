//! Authentication: who sent a request. A client certificate signed by the cluster CA names the
//! user (subject CN) and groups (subject O), as Kubernetes reads them; a bearer token is looked
//! up in the static token file. A request with neither is refused.

use std::collections::HashMap;
use std::path::Path;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    /// Members of `system:masters` may do anything.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|group| group == "system:masters")
    }

    fn with_authenticated(mut self) -> User {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// Static bearer tokens, from a CSV file in Kubernetes' `--token-auth-file` format:
/// `token,user,uid,"group1,group2"`.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    users: HashMap<String, User>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: expected token,user,uid[,\"group1,group2\"]")]
    Malformed { path: String, line: usize },
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.display().to_string(), source })?;
        Tokens::parse(&text)
            .map_err(|line| TokenFileError::Malformed { path: path.display().to_string(), line })
    }

    /// Parses the CSV text; on error returns the 1-based line number.
    pub fn parse(text: &str) -> Result<Tokens, usize> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            let [token, name, uid, rest @ ..] = fields.as_slice() else {
                return Err(index + 1);
            };
            if token.is_empty() || name.is_empty() {
                return Err(index + 1);
            }
            let groups = rest
                .first()
                .map(|groups| {
                    groups.split(',').filter(|g| !g.is_empty()).map(str::to_string).collect()
                })
                .unwrap_or_default();
            users.insert(
                token.clone(),
                User { name: name.clone(), uid: uid.clone(), groups }.with_authenticated(),
            );
        }
        Ok(Tokens { users })
    }

    pub fn user(&self, token: &str) -> Option<User> {
        self.users.get(token).cloned()
    }
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            // `fields` starts with one element and only grows.
            c => fields.last_mut().into_iter().for_each(|field| field.push(c)),
        }
    }
    fields.into_iter().map(|field| field.trim().to_string()).collect()
}

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let subject = x509_subject(der)?;
    let mut name = None;
    let mut groups = Vec::new();
    for (oid, value) in subject {
        match oid {
            OID_COMMON_NAME => name = Some(value),
            OID_ORGANIZATION => groups.push(value),
            _ => {}
        }
    }
    Some(User { name: name?, uid: String::new(), groups }.with_authenticated())
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// One DER element: tag and contents.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |acc, &b| acc << 8 | b as usize);
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    Some((tag, &rest[..length], &rest[length..]))
}

/// The subject's attributes (OID bytes, string value) of a DER certificate. The chain was
/// verified by TLS before this runs; this only reads names.
fn x509_subject(der: &[u8]) -> Option<Vec<(&[u8], String)>> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const VERSION: u8 = 0xa0;
    let (tag, certificate, _) = der_element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // version (optional, explicit [0]), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, rest) = der_element(tbs)?;
    if tag == VERSION {
        tbs = rest;
        let (_, _, rest) = der_element(tbs)?;
        tbs = rest;
    } else {
        tbs = rest;
    }
    for _ in 0..3 {
        let (_, _, rest) = der_element(tbs)?;
        tbs = rest;
    }
    let (tag, mut names, _) = der_element(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut attributes = Vec::new();
    while !names.is_empty() {
        let (tag, mut set, rest) = der_element(names)?;
        names = rest;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, attribute, rest) = der_element(set)?;
            set = rest;
            let (_, oid, value) = der_element(attribute)?;
            let (_, text, _) = der_element(value)?;
            attributes.push((oid, String::from_utf8_lossy(text).into_owned()));
        }
    }
    Some(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_become_users() {
        let tokens = Tokens::parse(
            "# comment\nsecret1,alice,u1,\"dev,ops\"\nsecret2,bob,u2\n\nsecret3, carol , u3 ,admins",
        )
        .unwrap();
        let alice = tokens.user("secret1").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(tokens.user("secret2").unwrap().groups, ["system:authenticated"]);
        assert_eq!(tokens.user("secret3").unwrap().name, "carol");
        assert!(tokens.user("nope").is_none());
        assert_eq!(Tokens::parse("ok,a,1\nonlytoken").unwrap_err(), 2);
    }

    #[test]
    fn certificate_subject_names_user_and_groups() {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "jane");
        params.distinguished_name.push(rcgen::DnType::CountryName, "NL");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = user_from_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
        assert!(user.is_master());
        assert!(user_from_certificate(&cert.der()[..20]).is_none());
        assert!(user_from_certificate(b"").is_none());
    }
}
