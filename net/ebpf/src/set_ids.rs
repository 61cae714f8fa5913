//! Allocation of backend set ids.
//!
//! Invariants: an id handed out is never one a service uses now, and never 0 (kept free so a
//! zeroed entry never names a real set). Ids grow from the highest one found in the maps when
//! the dataplane opens, so a restarted agent does not reuse the id of a set that an earlier
//! agent may still be deleting; they wrap around after `u32::MAX`, skipping ids in use.

use std::collections::HashSet;

/// The set ids in use and the next one to try.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetIds {
    next: u32,
    in_use: HashSet<u32>,
}

impl SetIds {
    /// Starts after the highest id in `in_use` and `seen` (ids found in the maps that no
    /// service uses, for example the leftovers of an interrupted update).
    pub(crate) fn new(
        in_use: impl IntoIterator<Item = u32>,
        seen: impl IntoIterator<Item = u32>,
    ) -> SetIds {
        let in_use: HashSet<u32> = in_use.into_iter().collect();
        let highest = in_use.iter().copied().chain(seen).max().unwrap_or(0);
        SetIds { next: successor(highest), in_use }
    }

    /// Returns the id the next new set gets, without taking it.
    pub(crate) fn peek(&self) -> u32 {
        // At most `MAX_SERVICES` ids are in use, far fewer than there are ids, so this loop
        // ends after at most `in_use.len() + 1` steps.
        let mut candidate = self.next;
        while self.in_use.contains(&candidate) {
            candidate = successor(candidate);
        }
        candidate
    }

    /// Records that a service now uses `id`.
    pub(crate) fn claim(&mut self, id: u32) {
        self.in_use.insert(id);
        self.next = successor(id);
    }

    /// Records that no service uses `id` any more.
    pub(crate) fn release(&mut self, id: u32) {
        self.in_use.remove(&id);
    }
}

/// The id after `id`, skipping 0.
fn successor(id: u32) -> u32 {
    match id.wrapping_add(1) {
        0 => 1,
        next => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_table_starts_at_one() {
        let ids = SetIds::new([], []);
        assert_eq!(ids.peek(), 1);
    }

    #[test]
    fn ids_continue_after_the_highest_found_on_open() {
        let ids = SetIds::new([3, 9, 4], [12]);
        assert_eq!(ids.peek(), 13);
        let ids = SetIds::new([3, 9, 4], []);
        assert_eq!(ids.peek(), 10);
    }

    #[test]
    fn peeking_does_not_take_the_id() {
        let mut ids = SetIds::new([], []);
        assert_eq!(ids.peek(), 1);
        assert_eq!(ids.peek(), 1);
        ids.claim(1);
        assert_eq!(ids.peek(), 2);
    }

    #[test]
    fn released_ids_are_not_handed_out_again_before_wrapping() {
        let mut ids = SetIds::new([], []);
        ids.claim(ids.peek());
        ids.claim(ids.peek());
        ids.release(1);
        assert_eq!(ids.peek(), 3);
    }

    #[test]
    fn ids_wrap_around_skipping_zero_and_ids_in_use() {
        let mut ids = SetIds::new([u32::MAX - 1, 1, 2], []);
        assert_eq!(ids.peek(), u32::MAX);
        ids.claim(u32::MAX);
        assert_eq!(ids.peek(), 3);
    }
}
