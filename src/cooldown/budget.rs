//! The window budget: how many requests this process may still send with a
//! key before the window resets.

use crate::clock::Instant;

/// The per-key request budget of this process.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// The sequence number the next send gets.
    pub(super) next_seq: u64,
    /// The latest snapshot: after the request with this sequence number,
    /// `remaining` requests were left until `reset_at`.
    pub(super) snapshot_seq: u64,
    pub(super) remaining: Option<u64>,
    pub(super) limit: Option<u64>,
    pub(super) reset_at: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

impl Budget {
    pub(super) fn new() -> Self {
        Budget { next_seq: 1, snapshot_seq: 0, remaining: None, limit: None, reset_at: None }
    }

    /// Takes the next sequence number, spending one request of the budget.
    pub(super) fn spend(&mut self, now: Instant) -> u64 {
        // Past the reset, the limit is the new snapshot, taken now.
        if self.reset_at.is_some_and(|reset_at| now >= reset_at) {
            self.remaining = self.limit;
            self.snapshot_seq = self.next_seq - 1;
            self.reset_at = None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Whether at least `margin` requests, and half the limit, are left.
    pub(super) fn far(&self, margin: u64, now: Instant) -> bool {
        let half = self.limit.map_or(u64::MAX, |limit| limit / 2);
        self.left(now).is_some_and(|left| left >= margin.max(half))
    }

    /// Requests still allowed in this window, if known.
    pub(super) fn left(&self, now: Instant) -> Option<u64> {
        if self.reset_at.is_some_and(|reset_at| now >= reset_at) {
            // A new window: the whole limit (the next send re-snapshots it).
            return self.limit;
        }
        let sent_since = self.next_seq - 1 - self.snapshot_seq;
        Some(self.remaining?.saturating_sub(sent_since))
    }
}
