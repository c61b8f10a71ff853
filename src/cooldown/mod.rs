//! Shared rate-limit state: one 429 slows every request that shares the key.
//!
//! Why: without it every in-flight request discovers a full window on its
//! own, and each gets its own 429. Measured on loopback with 16 concurrent
//! tasks against 20 requests per window, a loop that honours Retry-After
//! exactly still wastes about 0.76 calls per success. So all clones of one
//! middleware share state keyed by provider, host and a fingerprint of the
//! credential (a keyed hash of the auth header or `key=` value, never the key
//! itself):
//!
//! - a 429 with a wait, or a response whose rate-limit headers say a family
//!   is used up (`remaining: 0`), sets a cooldown: requests with that key
//!   wait until then before they are sent. The cooldown lives in the
//!   middleware's own memory, and also in a [`SharedStore`] when one is
//!   set: Redis to share it across a fleet (feature `redis`);
//! - in the process, the `remaining` count of the request limit is also
//!   spent locally as requests are sent, so the request that would be the
//!   21st in a 20-request window waits for the reset instead of being sent
//!   to collect a 429.
//!
//! - each token limit the provider states is spent the same way, by each
//!   request's estimated cost, in arrival order (see [`tokens`]).
//!
//! Waits stay bounded: a cooldown longer than `max_retry_after`, or one that
//! would end past `max_elapsed`, is not waited for; the request is sent and
//! the server decides (see [`hold`]).

mod admission;
mod budget;
mod credential;
mod hold;
mod key;
mod learner;
mod shared;
mod tokens;
mod wait;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Instant;

use crate::rate_limits::{RateLimit, RateLimits};
use crate::store::SharedStore;
pub(crate) use admission::Admission;
use budget::Budget;
pub(crate) use hold::hold;
pub(crate) use key::Key;
use key::KeyMap;
use learner::{Admit, Learner};
use tokens::{Ask, Cold, TokenGate, Tokens};
pub(crate) use tokens::{Said, limit_in_message, too_large};
pub(crate) use wait::{admit, pace};

/// Entries kept before expired ones are swept, bounding memory.
const SWEEP_AT: usize = 1024;
/// Budgets kept at most (keys with a live window beyond this are not paced).
const MAX_BUDGETS: usize = 16 * 1024;
/// Marks a scout's sequence number (see [`learner`]), so that its success is
/// told to the learner while other successes cost no lock.
const SCOUT: u64 = 1 << 63;
/// Marks a send made while every budget of its key was far from empty: of
/// the responses to such sends, only one in [`READ_ONE_IN`] is read.
const QUIET: u64 = 1 << 62;
/// While a key is quiet, one response in this many is read.
///
/// Why not every one: reading a response's rate-limit headers is most of
/// what a success costs, and while every budget has half its window left,
/// what they say changes nothing that is sent. What this process sends is
/// spent locally either way; one response in eight still corrects the
/// budgets for what others with the key spent.
const READ_ONE_IN: u64 = 8;
/// A request budget is far from empty with at least this many requests left (and half its limit).
const QUIET_LEFT: u64 = 64;

/// What this process knows about one key.
#[derive(Debug, Clone, Default)]
struct Entry {
    budget: Budget,
    /// No request with this key is sent before then.
    cooldown_until: Option<Instant>,
    /// Whether successes carry a `remaining` count: then the learner is not needed.
    counted: bool,
    /// Whether the last response read had half of each of its limits left.
    roomy: bool,
    learner: Learner,
    /// The token budgets, once a token limit is known.
    tokens: Option<Box<Tokens>>,
    /// Until then, the input of the first sends.
    cold: Cold,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.budget.reset_at.is_some_and(|r| r > now)
            || self.cooldown_until.is_some_and(|c| c > now)
            || self.learner.live(now)
            || self.tokens.as_ref().is_some_and(|tokens| tokens.live(now))
    }
}

/// What to do before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Send now; this is the send's sequence number.
    Go(u64),
    /// Wait this long first, then ask again.
    Wait(Duration),
}

/// The first send with a key: numbering starts here, so that the first
/// responses' snapshots can be ordered; memory stays bounded.
#[cold]
fn first_send(entries: &mut Entries, id: u64, body: Option<&[u8]>, now: Instant) -> Gate {
    if entries.len() >= SWEEP_AT {
        entries.retain(|_, entry| entry.live(now));
    }
    if entries.len() >= MAX_BUDGETS {
        return Gate::Go(0);
    }
    let mut budget = Budget::new();
    let seq = budget.spend(now);
    let mut cold = Cold::default();
    cold.record(seq, body);
    entries.insert(id, Entry { budget, cold, ..Entry::default() });
    Gate::Go(seq)
}

type Entries = KeyMap<Entry>;

/// The shared state behind one middleware and its clones.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// A store shared beyond this middleware (`shared_store`); without
    /// one, cooldowns live in `entries` only.
    store: Option<Arc<dyn SharedStore>>,
    entries: Mutex<Entries>,
}

impl Pacer {
    pub(crate) fn new(store: Option<Arc<dyn SharedStore>>) -> Self {
        Pacer { store, entries: Mutex::new(Entries::default()) }
    }

    /// Whether cooldowns are also kept in a store, whose calls are async.
    pub(crate) fn has_store(&self) -> bool {
        self.store.is_some()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Go (spending one request of the budget, and the request's tokens), or
    /// how long to wait first, by what this process knows.
    pub(crate) fn gate(&self, key: &Key, ask: &mut Ask<'_>, now: Instant) -> Gate {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&key.id) else { return first_send(&mut entries, key.id, ask.body(), now) };
        let held = match (entry.cooldown_until, entry.budget.reset_at) {
            (Some(until), _) if until > now => Some(until - now),
            (_, Some(reset_at)) if reset_at > now && entry.budget.left(now) == Some(0) => Some(reset_at - now),
            _ => None,
        };
        if let Some(wait) = held {
            // Held for another reason, a request keeps its place for the tokens.
            if let Some(tokens) = entry.tokens.as_deref_mut() {
                tokens.hold_place(ask, tokens.cooled_for_tokens(now));
            }
            return Gate::Wait(wait);
        }
        let tokens = entry.tokens.as_deref_mut().map(|t| t.check(ask, entry.budget.next_seq, now));
        let token_scout = match tokens {
            Some(TokenGate::Wait(wait)) => return Gate::Wait(wait),
            found => found == Some(TokenGate::Scout),
        };
        let seq = if entry.counted {
            entry.budget.spend(now)
        } else {
            match entry.learner.admit(now, entry.budget.next_seq) {
                Admit::Go => entry.budget.spend(now),
                Admit::Scout => entry.budget.spend(now) | SCOUT,
                Admit::Wait(wait) => return Gate::Wait(wait),
            }
        };
        match entry.tokens.as_deref_mut() {
            Some(tokens) => tokens.spend(seq & !SCOUT, ask, token_scout, now),
            None => entry.cold.record(seq & !SCOUT, ask.body()),
        }
        // A store's shared window is kept from every response.
        let quiet = self.store.is_none()
            && entry.counted
            && entry.roomy
            && seq & SCOUT == 0
            && entry.budget.far(QUIET_LEFT, now)
            && matches!(tokens, None | Some(TokenGate::Far));
        Gate::Go(if quiet { seq | QUIET } else { seq })
    }

    /// Whether the response to the send numbered `seq` is to be read: always,
    /// unless its key was quiet when it went (see [`READ_ONE_IN`]).
    pub(crate) fn reads(seq: u64) -> bool {
        seq & QUIET == 0 || (seq & !(SCOUT | QUIET)).is_multiple_of(READ_ONE_IN)
    }

    /// A waiter for tokens gives up its place (its request went, or was dropped).
    pub(crate) fn leave(&self, key: &Key, ticket: u64) {
        if let Some(tokens) = self.entries().get_mut(&key.id).and_then(|entry| entry.tokens.as_deref_mut()) {
            tokens.leave(ticket);
        }
    }

    /// Sends regardless of the budget (the wait was too long to honour).
    pub(crate) fn force(&self, key: &Key, ask: &mut Ask<'_>) -> u64 {
        let now = Instant::now();
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&key.id) else { return 0 };
        let seq = entry.budget.spend(now);
        match entry.tokens.as_deref_mut() {
            Some(tokens) => tokens.spend(seq, ask, false, now),
            None => entry.cold.record(seq, ask.body()),
        }
        seq
    }

    /// Learns from a response to the send numbered `seq`; returns the
    /// cooldown it sets, which a store should hear about too. `said` is a
    /// limit a 429's message names ("Limit 20", "of 40,000 input tokens").
    pub(crate) fn observe(
        &self,
        key: &Key,
        seq: u64,
        limits: Option<&RateLimits>,
        (rate_limited_for, said): (Option<Duration>, Option<Said>),
        now: Instant,
    ) -> Option<Duration> {
        let (scout, seq) = (seq & SCOUT != 0, seq & !(SCOUT | QUIET));
        let requests = limits.and_then(|l| l.requests).filter(|r| r.remaining.is_some() && r.reset.is_some());
        // A 429's wait, or a used-up family's reset, becomes the key's cooldown.
        let exhausted = limits.and_then(RateLimits::exhausted_for);
        let cooldown = rate_limited_for.into_iter().chain(exhausted).max().filter(|w| !w.is_zero());
        // A limit without a count, or on a 429: the window's capacity outright (a
        // 429's numbering only counts this process's share of a fleet's window).
        let limit = limits
            .and_then(|l| l.requests)
            .filter(|r| r.remaining.is_none() || rate_limited_for.is_some())
            .and_then(|r| r.limit);
        let said_tokens = said.filter(|said| said.tokens.is_some());
        let limit = limit.or(said.filter(|said| said.tokens.is_none()).map(|said| said.limit));
        let tokens = Tokens::stated(key.provider, limits, said_tokens);
        if requests.is_none() && cooldown.is_none() && limit.is_none() && !scout && !tokens {
            return None;
        }
        let mut entries = self.entries();
        // Sends numbered 0 were not tracked (no entry then, or too many keys).
        if let Some(entry) = entries.get_mut(&key.id).filter(|_| seq > 0) {
            if tokens || entry.tokens.is_some() {
                let (next_seq, cold) = (entry.budget.next_seq, entry.cold);
                let budgets = entry.tokens.get_or_insert_with(|| Tokens::new(key.provider, next_seq, cold, now));
                budgets.observe(seq, limits, (said_tokens, rate_limited_for), now);
            }
            entry.roomy = limits.is_some_and(RateLimits::roomy);
            // A 429 for tokens says nothing of how many requests a window admits.
            let rate_limited_for = rate_limited_for.filter(|_| said_tokens.is_none());
            learn(entry, seq, scout, (requests.is_some(), rate_limited_for, limit), now);
            if let Some(RateLimit { remaining: Some(remaining), reset: Some(reset), limit }) = requests {
                // Responses arrive out of order: only a later send's view is newer.
                let budget = &mut entry.budget;
                if seq >= budget.snapshot_seq {
                    budget.snapshot_seq = seq;
                    budget.remaining = Some(remaining);
                    budget.limit = limit.or(budget.limit);
                    budget.reset_at = now.checked_add(reset);
                }
                // Successive resets give the window's length, which only a store's
                // shared window needs: alone, the budget above paces the key.
                if self.store.is_some()
                    && let Some(end) = now.checked_add(reset)
                {
                    entry.learner.saw_end(end, now);
                }
            }
        }
        if let Some(until) = cooldown.and_then(|wait| now.checked_add(wait))
            && (entries.len() < MAX_BUDGETS || entries.contains_key(&key.id))
        {
            let entry = entries.entry(key.id).or_default();
            entry.cooldown_until = entry.cooldown_until.max(Some(until));
        }
        cooldown
    }

    /// The capacity learned for `key`, if any.
    #[cfg(test)]
    fn learned(&self, key: &Key, now: Instant) -> Option<u64> {
        self.entries().get(&key.id).and_then(|entry| entry.learner.capacity_at(now))
    }
}

/// Feeds one response to the key's learner: `counted` when it carried a
/// `remaining` count, the 429's wait, a limit it named.
fn learn(
    entry: &mut Entry,
    seq: u64,
    scout: bool,
    (counted, rate_limited_for, limit): (bool, Option<Duration>, Option<u64>),
    now: Instant,
) {
    match rate_limited_for {
        Some(wait) => {
            if let Some(end) = now.checked_add(wait) {
                entry.learner.rate_limited(seq, end, now);
            }
        }
        // A success (or another error) with a count: the header budget paces this key.
        None if counted => entry.counted = true,
        None if scout => entry.learner.succeeded(seq, now),
        None => {}
    }
    if let Some(limit) = limit {
        entry.learner.told_limit(limit, now);
    }
}

#[cfg(test)]
mod tests;
