//! Pure helpers between DNS names and the identifiers the zone stores: dashed IP labels
//! (`10-0-0-1`), reverse-lookup names (`1.0.0.10.in-addr.arpa`) and names built from labels.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// Returns the IPv4 address spelled `a-b-c-d`, as in `10-0-0-1.default.pod.cluster.local`.
pub(crate) fn parse_dashed_ipv4(label: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = label.split('-');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Returns the address as one DNS label: dots (IPv4) or colons (IPv6) become dashes.
pub(crate) fn dashed(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// Returns the address a complete reverse-lookup name stands for: four decimal labels under
/// `in-addr.arpa` or thirty-two hex nibbles under `ip6.arpa`. Partial names give `None`.
pub(crate) fn parse_reverse_name(name: &Name) -> Option<IpAddr> {
    let labels: Vec<String> =
        name.iter().map(|label| String::from_utf8_lossy(label).to_ascii_lowercase()).collect();
    let (address, suffix) = labels.split_at(labels.len().checked_sub(2)?);
    match (suffix[0].as_str(), suffix[1].as_str()) {
        ("in-addr", "arpa") if address.len() == 4 => {
            let mut octets = [0u8; 4];
            for (octet, label) in octets.iter_mut().zip(address.iter().rev()) {
                if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                *octet = label.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        ("ip6", "arpa") if address.len() == 32 => {
            let mut value: u128 = 0;
            for label in address.iter().rev() {
                let nibble = match label.as_bytes() {
                    [digit] => char::from(*digit).to_digit(16)?,
                    _ => return None,
                };
                value = (value << 4) | u128::from(nibble);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

/// Returns true when the name lies under `in-addr.arpa` or `ip6.arpa`.
pub(crate) fn is_reverse_name(name: &Name) -> bool {
    let mut labels = name.iter().rev();
    let (Some(top), Some(second)) = (labels.next(), labels.next()) else {
        return false;
    };
    top.eq_ignore_ascii_case(b"arpa")
        && (second.eq_ignore_ascii_case(b"in-addr") || second.eq_ignore_ascii_case(b"ip6"))
}

/// Returns the reverse-lookup name of an address.
#[cfg(test)]
pub(crate) fn reverse_name(address: IpAddr) -> Option<Name> {
    let mut labels: Vec<String> = match address {
        IpAddr::V4(v4) => v4.octets().iter().rev().map(u8::to_string).collect(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|byte| [byte & 0x0f, byte >> 4])
            .map(|nibble| format!("{nibble:x}"))
            .collect(),
    };
    labels.extend(match address {
        IpAddr::V4(_) => ["in-addr".to_owned(), "arpa".to_owned()],
        IpAddr::V6(_) => ["ip6".to_owned(), "arpa".to_owned()],
    });
    Name::from_labels(labels.iter().map(String::as_bytes)).ok()
}

/// Returns `labels` (leftmost first) prepended to `origin`, or `None` when a label is empty or
/// longer than 63 bytes or the name would exceed 255 bytes.
pub(crate) fn child_name(labels: &[&str], origin: &Name) -> Option<Name> {
    Name::from_labels(labels.iter().map(|label| label.as_bytes())).ok()?.append_domain(origin).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_ipv4_labels_parse_only_when_well_formed() {
        assert_eq!(parse_dashed_ipv4("10-244-1-7"), Some(Ipv4Addr::new(10, 244, 1, 7)));
        for bad in ["10-244-1", "10-244-1-7-9", "10-244-1-256", "a-b-c-d", "10--1-7", "+1-2-3-4"] {
            assert_eq!(parse_dashed_ipv4(bad), None, "{bad}");
        }
    }

    #[test]
    fn reverse_names_round_trip() {
        for address in ["10.96.0.10", "fd00::1:2"] {
            let address: IpAddr = address.parse().unwrap();
            let name = reverse_name(address).unwrap();
            assert!(is_reverse_name(&name));
            assert_eq!(parse_reverse_name(&name), Some(address));
        }
        let partial = Name::from_ascii("0.10.in-addr.arpa.").unwrap();
        assert!(is_reverse_name(&partial));
        assert_eq!(parse_reverse_name(&partial), None);
        let upper = Name::from_ascii("10.0.96.10.IN-ADDR.ARPA.").unwrap();
        assert_eq!(parse_reverse_name(&upper), Some("10.96.0.10".parse().unwrap()));
    }

    #[test]
    fn ipv6_addresses_become_single_labels() {
        assert_eq!(dashed("fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(dashed("10.0.0.1".parse().unwrap()), "10-0-0-1");
    }
}
