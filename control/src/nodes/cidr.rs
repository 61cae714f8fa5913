//! Pod CIDRs: each node gets a /24 of the cluster's pod range 10.32.0.0/11 (8,192 nodes; the
//! service range 10.96.0.0/12 lies outside it), the lowest free one, as
//! kube-controller-manager's range allocator hands them out.

use std::collections::BTreeSet;

/// How many /24 blocks the /11 holds.
const BLOCKS: u32 = 8192;
/// The range's first address, 10.32.0.0, as a number.
const BASE: u32 = (10 << 24) | (32 << 16);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("the pod range 10.32.0.0/11 has no free /24 left for another node")]
    Exhausted,
}

/// The block with this index: the index-th /24 of the range.
pub fn block(index: u32) -> String {
    let address = std::net::Ipv4Addr::from(BASE + (index << 8));
    format!("{address}/24")
}

/// The index of a block this allocator hands out, if `cidr` is one.
pub fn index_of(cidr: &str) -> Option<u32> {
    let address: std::net::Ipv4Addr = cidr.strip_suffix("/24")?.parse().ok()?;
    let offset = u32::from(address).checked_sub(BASE)?;
    (offset & 0xff == 0 && offset >> 8 < BLOCKS).then_some(offset >> 8)
}

/// The lowest block neither taken by a node nor reserved by an allocation in flight.
pub fn first_free(taken: &BTreeSet<u32>, reserved: &BTreeSet<u32>) -> Result<u32, CidrError> {
    (0..BLOCKS).find(|i| !taken.contains(i) && !reserved.contains(i)).ok_or(CidrError::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_lowest_first() {
        assert_eq!(first_free(&BTreeSet::new(), &BTreeSet::new()), Ok(0));
        assert_eq!(first_free(&BTreeSet::from([0, 1, 3]), &BTreeSet::from([2])), Ok(4));
        let all: BTreeSet<u32> = (0..BLOCKS).collect();
        assert_eq!(first_free(&all, &BTreeSet::new()), Err(CidrError::Exhausted));
        assert_eq!(block(7), "10.32.7.0/24");
        assert_eq!(block(300), "10.33.44.0/24");
        assert_eq!(block(BLOCKS - 1), "10.63.255.0/24");
        assert_eq!(index_of("10.33.44.0/24"), Some(300));
        assert_eq!(index_of("10.64.0.0/24"), None);
        assert_eq!(index_of("10.32.7.1/24"), None);
        assert_eq!(index_of("10.244.0.0/24"), None);
    }
}
