//! The subject names of a DER certificate (CN and O, as Kubernetes reads a client certificate:
//! CN is the user, each O a group). It only reads names: the chain must have been verified
//! (by TLS) before a name is trusted.

/// The names a certificate's subject carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
}

impl Subject {
    /// Reads the subject of a DER certificate; `None` when it is not one.
    pub fn read(der: &[u8]) -> Option<Subject> {
        let mut subject = Subject::default();
        for (oid, value) in x509_subject(der)? {
            match oid {
                OID_COMMON_NAME => subject.common_name = Some(value),
                OID_ORGANIZATION => subject.organizations.push(value),
                _ => {}
            }
        }
        Some(subject)
    }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn common_name_and_organizations_are_read_and_other_attributes_skipped() {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "jane");
        params.distinguished_name.push(rcgen::DnType::CountryName, "NL");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let subject = Subject::read(cert.der()).unwrap();
        assert_eq!(subject.common_name.as_deref(), Some("jane"));
        assert_eq!(subject.organizations, ["system:masters"]);
    }

    #[test]
    fn truncated_or_empty_input_is_no_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::default().self_signed(&key).unwrap();
        assert!(Subject::read(&cert.der()[..20]).is_none());
        assert!(Subject::read(b"").is_none());
    }
}
