//! Lease deadlines, kept only by the leader.
//!
//! Which leases exist is replicated state (in the engine); when each one expires is not: the
//! leader keeps deadlines in memory, resets them all when it gains leadership (as etcd's lessor
//! "promotes"), and expires a lease by proposing its revocation through the log. A deposed
//! leader's proposal cannot commit, so it can never expire a lease.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The shortest TTL the etcd service grants: 1.5 × the election timeout rounded up, as in etcd,
/// so that a lease survives a leader change.
pub const MIN_LEASE_TTL: i64 = 2;

#[derive(Default)]
pub struct Lessor {
    state: Mutex<LessorState>,
}

#[derive(Default)]
struct LessorState {
    /// The leadership term the deadlines were set in.
    term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
}

impl Lessor {
    fn state(&self) -> std::sync::MutexGuard<'_, LessorState> {
        // Every critical section below is a handful of map operations that cannot panic midway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the ids of the leases, among `leases` (id, granted TTL), that have expired.
    /// Leases seen for the first time in this term get a full TTL from now.
    pub fn expired(&self, term: u64, leases: &[(i64, i64)], now: Instant) -> Vec<i64> {
        let mut state = self.state();
        if state.term != Some(term) {
            state.term = Some(term);
            state.deadlines.clear();
        }
        let live: std::collections::HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
        state.deadlines.retain(|id, _| live.contains(id));
        let mut expired = Vec::new();
        for (id, ttl) in leases {
            let deadline = *state.deadlines.entry(*id).or_insert_with(|| now + ttl_duration(*ttl));
            if deadline <= now {
                expired.push(*id);
            }
        }
        expired
    }

    /// Renews a lease; returns the TTL granted again.
    pub fn keep_alive(&self, term: u64, id: i64, ttl: i64, now: Instant) -> i64 {
        let mut state = self.state();
        if state.term != Some(term) {
            state.term = Some(term);
            state.deadlines.clear();
        }
        state.deadlines.insert(id, now + ttl_duration(ttl));
        ttl
    }

    /// Returns the remaining seconds of a lease (the full TTL if not yet tracked this term).
    pub fn remaining(&self, term: u64, id: i64, ttl: i64, now: Instant) -> i64 {
        let state = self.state();
        match state.deadlines.get(&id) {
            Some(deadline) if state.term == Some(term) => {
                let left = deadline.saturating_duration_since(now);
                // Round up, as etcd does, so a fresh lease reports its full TTL.
                left.as_millis().div_ceil(1000) as i64
            }
            _ => ttl,
        }
    }
}

/// A lease TTL in seconds as a duration (a negative TTL as none).
pub(crate) fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_renewal() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = [(1, 2), (2, 10)];
        assert!(lessor.expired(1, &leases, start).is_empty());
        assert_eq!(lessor.expired(1, &leases, start + Duration::from_secs(3)), vec![1]);
        lessor.keep_alive(1, 1, 2, start + Duration::from_secs(3));
        assert!(lessor.expired(1, &leases, start + Duration::from_secs(4)).is_empty());
        assert_eq!(lessor.remaining(1, 1, 2, start + Duration::from_secs(4)), 1);
    }

    #[test]
    fn a_new_term_grants_every_lease_a_full_ttl() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = [(1, 2)];
        lessor.expired(1, &leases, start);
        let later = start + Duration::from_secs(5);
        assert!(lessor.expired(2, &leases, later).is_empty(), "new leader must not expire at once");
        assert_eq!(lessor.remaining(2, 1, 2, later), 2);
        assert_eq!(lessor.expired(2, &leases, later + Duration::from_secs(2)), vec![1]);
    }
}
