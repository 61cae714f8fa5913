//! Authentication: who sent a request. A client certificate signed by the cluster CA names the
//! user (subject CN) and groups (subject O), as Kubernetes reads them; a bearer token is looked
//! up in the static token file, or else checked as a service-account token
//! ([`crate::serviceaccount`]). A request with none of these is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// What else the authenticator knows (`authentication.kubernetes.io/pod-name`, …), as
    /// `kubectl auth whoami` shows it.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// Members of `system:masters` may do anything.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|group| group == "system:masters")
    }

    pub(crate) fn with_authenticated(mut self) -> User {
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
                User { name: name.clone(), uid: uid.clone(), groups, ..User::default() }
                    .with_authenticated(),
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
    let subject = flotilla_store::pki::Subject::read(der)?;
    let name = subject.common_name?;
    let groups = subject.organizations;
    Some(User { name, groups, ..User::default() }.with_authenticated())
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
    fn a_certificate_names_the_user_by_cn_and_its_groups_by_o() {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "jane");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = user_from_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
        assert!(user.is_master());
        let mut nameless = rcgen::CertificateParams::default();
        nameless.distinguished_name = rcgen::DistinguishedName::new();
        let nameless = nameless.self_signed(&key).unwrap();
        assert!(user_from_certificate(nameless.der()).is_none());
    }
}
