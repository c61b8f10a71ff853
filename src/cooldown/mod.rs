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
//! Waits stay bounded: a cooldown longer than `max_retry_after`, or one that
//! would end past `max_elapsed`, is not waited for; the request is sent and
//! the server decides (see [`hold`]).

mod budget;
mod credential;
mod hold;
mod key;
mod learner;
mod wait;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::clock::Instant;

use crate::rate_limits::{RateLimit, RateLimits};
use crate::store::{SharedStore, Window};
use budget::Budget;
pub(crate) use hold::hold;
pub(crate) use key::Key;
use key::KeyMap;
pub(crate) use learner::limit_in_message;
use learner::{Admit, Learner};
pub(crate) use wait::admit;

/// Entries kept before expired ones are swept, bounding memory.
const SWEEP_AT: usize = 1024;
/// Budgets kept at most (keys with a live window beyond this are not paced).
const MAX_BUDGETS: usize = 16 * 1024;
/// Marks a scout's sequence number (see [`learner`]), so that its success is
/// told to the learner while other successes cost no lock.
const SCOUT: u64 = 1 << 63;

/// What this process knows about one key.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    budget: Budget,
    /// No request with this key is sent before then.
    cooldown_until: Option<Instant>,
    /// Whether successes carry a `remaining` count: then the learner is not needed.
    counted: bool,
    learner: Learner,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.budget.reset_at.is_some_and(|r| r > now)
            || self.cooldown_until.is_some_and(|c| c > now)
            || self.learner.live(now)
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
fn first_send(entries: &mut Entries, id: u64, now: Instant) -> Gate {
    if entries.len() >= SWEEP_AT {
        entries.retain(|_, entry| entry.live(now));
    }
    if entries.len() >= MAX_BUDGETS {
        return Gate::Go(0);
    }
    let mut budget = Budget::new();
    let seq = budget.spend(now);
    entries.insert(id, Entry { budget, ..Entry::default() });
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

    /// Go (spending one request of the budget), or how long to wait first,
    /// by what this process knows.
    pub(crate) fn gate(&self, key: &Key, now: Instant) -> Gate {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&key.id) else { return first_send(&mut entries, key.id, now) };
        if let Some(until) = entry.cooldown_until.filter(|until| *until > now) {
            return Gate::Wait(until - now);
        }
        if entry.budget.left(now) == Some(0)
            && let Some(reset_at) = entry.budget.reset_at.filter(|r| *r > now)
        {
            return Gate::Wait(reset_at - now);
        }
        if entry.counted {
            return Gate::Go(entry.budget.spend(now));
        }
        match entry.learner.admit(now, entry.budget.next_seq) {
            Admit::Go => Gate::Go(entry.budget.spend(now)),
            Admit::Scout => Gate::Go(entry.budget.spend(now) | SCOUT),
            Admit::Wait(wait) => Gate::Wait(wait),
        }
    }

    /// The wait the store asks for, when there is a store: a cooldown for
    /// `key`, or the end of a window the fleet has spent. Spends one request
    /// of the shared window otherwise.
    pub(crate) async fn shared_wait(&self, key: &Key) -> Option<Duration> {
        let (store, text) = (self.store.as_ref()?, key.text()?);
        let (now, wall) = (Instant::now(), SystemTime::now());
        let window = self.window(key, now).and_then(|(limit, (end, told), length)| {
            let window = Window::new(wall.checked_add(end - now)?, limit);
            let window = if told { window.as_told() } else { window };
            Some(length.map_or(window, |length| window.with_length(length)))
        });
        let until = store.spend(text, window).await?;
        // An answer that passed during the round trip is still a "wait": going now would
        // send uncounted, just as the window opens; asking again spends.
        Some(until.duration_since(SystemTime::now()).unwrap_or_default().max(Duration::from_millis(1)))
    }

    /// The requests the current window of `key` admits, its end (and whether
    /// a server told it) and its length, when known: from rate-limit
    /// headers, or learned.
    fn window(&self, key: &Key, now: Instant) -> Option<(u64, (Instant, bool), Option<Duration>)> {
        let entries = self.entries();
        let entry = entries.get(&key.id)?;
        let learner = &entry.learner;
        if !entry.counted {
            return Some((learner.capacity_at(now)?, learner.end_at(now)?, learner.length()));
        }
        let limit = entry.budget.limit?;
        let told = entry.budget.reset_at.filter(|end| *end > now).map(|end| (end, true));
        Some((limit, told.or_else(|| learner.end_at(now))?, learner.length()))
    }

    /// Sends regardless of the budget (the wait was too long to honour).
    pub(crate) fn force(&self, key: &Key) -> u64 {
        self.entries().get_mut(&key.id).map_or(0, |entry| entry.budget.spend(Instant::now()))
    }

    /// Learns from a response to the send numbered `seq`; returns the
    /// cooldown it sets, which a store should hear about too. `said_limit`
    /// is a limit a 429's message names ("Limit 20").
    pub(crate) fn observe(
        &self,
        key: &Key,
        seq: u64,
        limits: Option<&RateLimits>,
        (rate_limited_for, said_limit): (Option<Duration>, Option<u64>),
        now: Instant,
    ) -> Option<Duration> {
        let (scout, seq) = (seq & SCOUT != 0, seq & !SCOUT);
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
        let limit = limit.or(said_limit);
        if requests.is_none() && cooldown.is_none() && limit.is_none() && !scout {
            return None;
        }
        let mut entries = self.entries();
        // Sends numbered 0 were not tracked (no entry then, or too many keys).
        if let Some(entry) = entries.get_mut(&key.id).filter(|_| seq > 0) {
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

    /// Tells the store about a cooldown of `wait` from now.
    pub(crate) async fn publish(&self, key: &Key, wait: Duration) {
        if let (Some(store), Some(text)) = (self.store.as_ref(), key.text())
            && let Some(until) = SystemTime::now().checked_add(wait)
        {
            store.extend(text, until).await;
        }
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
mod tests {
    use super::*;
    use crate::provider::Provider;
    use crate::store::{MemoryStore, TestStore};
    use reqwest::Request;

    fn request(auth: &str, url: &str) -> Request {
        reqwest::Client::new().post(url).header("authorization", auth).build().unwrap()
    }
    use crate::rate_limits::RateLimit;

    fn limits(limit: u64, remaining: u64, reset: Duration) -> RateLimits {
        let requests = RateLimit { limit: Some(limit), remaining: Some(remaining), reset: Some(reset) };
        RateLimits { requests: Some(requests), ..RateLimits::default() }
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn the_budget_stops_the_request_past_the_limit() {
        let pacer = Pacer::new(None);
        let k = Key::test(1);
        let Gate::Go(first) = pacer.gate(&k, now()) else { panic!() };
        // The server says: 2 left after the first request, window resets in 50 ms.
        pacer.observe(&k, first, Some(&limits(3, 2, Duration::from_millis(50))), (None, None), now());
        assert_eq!(pacer.gate(&k, now()), Gate::Go(2));
        assert_eq!(pacer.gate(&k, now()), Gate::Go(3));
        let Gate::Wait(wait) = pacer.gate(&k, now()) else { panic!("the 4th request must wait") };
        assert!(wait <= Duration::from_millis(50));
        assert_eq!(pacer.gate(&Key::test(2), now()), Gate::Go(1), "another key is unaffected");
        // A new window: the limit again.
        let later = now() + wait;
        for seq in 4..=6 {
            assert_eq!(pacer.gate(&k, later), Gate::Go(seq));
        }
        assert_eq!(pacer.gate(&k, later), Gate::Go(7), "reset unknown: never blocks forever");
    }

    #[test]
    fn without_counts_the_pacer_learns_the_window_and_scouts_past_it() {
        let pacer = Pacer::new(None);
        let (k, t0) = (Key::test(1), now());
        for seq in 1..=21 {
            assert_eq!(pacer.gate(&k, t0), Gate::Go(seq));
        }
        // The 21st is refused: the window admitted 20, and ends in 100 ms.
        pacer.observe(&k, 21, None, (Some(Duration::from_millis(100)), None), t0);
        assert_eq!(pacer.learned(&k, t0), Some(20));
        assert!(matches!(pacer.gate(&k, t0), Gate::Wait(_)));
        let t1 = t0 + Duration::from_millis(100);
        for seq in 22..=41 {
            assert_eq!(pacer.gate(&k, t1), Gate::Go(seq));
        }
        // The window is full and its end unknown: one scout goes, the others wait for it.
        let Gate::Go(scout) = pacer.gate(&k, t1) else { panic!("a scout") };
        assert_eq!(scout, 42 | SCOUT);
        assert!(matches!(pacer.gate(&k, t1), Gate::Wait(_)));
        // Its success says the window admits one more.
        assert_eq!(pacer.observe(&k, scout, None, (None, None), t1), None);
        assert_eq!(pacer.learned(&k, t1), Some(21));
        // A limit named in a 429's message is the capacity outright.
        pacer.observe(&k, 43, None, (Some(Duration::from_millis(90)), Some(20)), t1);
        assert_eq!(pacer.learned(&k, t1), Some(20));
        // Successes that carry a count turn the learner off for the key.
        let j = Key::test(2);
        assert_eq!(pacer.gate(&j, t0), Gate::Go(1));
        pacer.observe(&j, 1, Some(&limits(5, 4, Duration::from_secs(1))), (None, None), t0);
        assert!(pacer.entries().get(&j.id).unwrap().counted);
    }

    #[test]
    fn stale_snapshots_do_not_overwrite_newer_ones() {
        let pacer = Pacer::new(None);
        let k = Key::test(1);
        for seq in 1..=3 {
            assert_eq!(pacer.gate(&k, now()), Gate::Go(seq));
        }
        pacer.observe(&k, 3, Some(&limits(10, 0, Duration::from_secs(5))), (None, None), now());
        pacer.observe(&k, 1, Some(&limits(10, 9, Duration::from_secs(5))), (None, None), now());
        assert!(matches!(pacer.gate(&k, now()), Gate::Wait(_)));
    }

    #[test]
    fn memory_for_budgets_is_bounded() {
        let pacer = Pacer::new(None);
        for i in 0..(MAX_BUDGETS + 100) {
            pacer.gate(&Key::test(i as u64), now());
            pacer.observe(&Key::test(i as u64), 0, None, (Some(Duration::from_secs(60)), None), now());
        }
        assert!(pacer.entries().len() <= MAX_BUDGETS);
    }

    #[test]
    fn a_429_cools_the_key_down() {
        let pacer = Pacer::new(None);
        let (k, j) = (Key::test(1), Key::test(2));
        // One instant for both calls: the wait is exact, however slow the machine.
        let t0 = now();
        assert_eq!(
            pacer.observe(&k, 1, None, (Some(Duration::from_millis(40)), None), t0),
            Some(Duration::from_millis(40))
        );
        assert_eq!(pacer.gate(&k, t0), Gate::Wait(Duration::from_millis(40)));
        assert_eq!(pacer.gate(&k, t0 + Duration::from_millis(15)), Gate::Wait(Duration::from_millis(25)));
        assert!(matches!(pacer.gate(&k, t0 + Duration::from_millis(40)), Gate::Go(_)), "over at its end");
        assert!(matches!(pacer.gate(&j, t0), Gate::Go(_)));
        // Used-up token families cool down too.
        let used_up = RateLimit { limit: None, remaining: Some(0), reset: Some(Duration::from_millis(30)) };
        let tokens = RateLimits { tokens: Some(used_up), ..RateLimits::default() };
        pacer.observe(&j, 1, Some(&tokens), (None, None), now());
        assert!(matches!(pacer.gate(&j, now()), Gate::Wait(_)));
        // A plain success sets nothing.
        assert_eq!(pacer.observe(&j, 2, Some(&limits(10, 5, Duration::from_secs(1))), (None, None), now()), None);
    }

    #[tokio::test]
    async fn a_store_hears_of_cooldowns_and_is_asked_before_sending() {
        let store = Arc::new(MemoryStore::new());
        let pacer = Pacer::new(Some(store.clone() as Arc<dyn SharedStore>));
        let k = Key::of(Provider::OpenAi, &request("Bearer sk-1", "https://api.openai.com/v1/x"), true);
        assert_eq!(pacer.shared_wait(&k).await, None);
        pacer.publish(&k, Duration::from_secs(5)).await;
        assert!(store.cooldown_at(k.text().unwrap(), SystemTime::now()).is_some());
        let wait = pacer.shared_wait(&k).await.expect("the store's cooldown");
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
        // Without a store there is nothing to ask.
        assert_eq!(Pacer::new(None).shared_wait(&k).await, None);
    }

    #[tokio::test]
    async fn a_store_answer_that_passed_in_transit_is_asked_again_not_taken_as_leave() {
        // Every answer has passed by the time it arrives. Going at once would send
        // uncounted, just as the fleet's window opens.
        let late =
            TestStore { spend: Some(|| Some(SystemTime::now() - Duration::from_millis(3))), ..TestStore::default() };
        let pacer = Pacer::new(Some(Arc::new(late) as Arc<dyn SharedStore>));
        assert_eq!(pacer.shared_wait(&Key::test(1)).await, Some(Duration::from_millis(1)));
    }

    #[test]
    fn sweeps_drop_only_keys_whose_state_has_ended() {
        let pacer = Pacer::new(None);
        let t0 = now();
        let second = Duration::from_secs(1);
        // Half the keys cool down for a second, half have a one-second window; one cools down for an hour.
        for i in 0..SWEEP_AT as u64 {
            let k = Key::test(i);
            let Gate::Go(seq) = pacer.gate(&k, t0) else { panic!() };
            let (limits, cooldown) =
                if i % 2 == 0 { (None, Some(second)) } else { (Some(limits(10, 5, second)), None) };
            pacer.observe(&k, seq, limits.as_ref(), (cooldown, None), t0);
        }
        pacer.observe(&Key::test(0), 1, None, (Some(Duration::from_secs(3600)), None), t0);
        // A new key once the others' windows, cooldowns and what was learned of them have
        // ended (learned state is forgotten 60 s unused); the hour has not.
        let end = t0 + Duration::from_secs(61);
        assert!(matches!(pacer.gate(&Key::test(u64::MAX), end), Gate::Go(_)));
        assert_eq!(pacer.entries().len(), 2, "swept all but the live key and the new one");
        assert_eq!(pacer.gate(&Key::test(0), end), Gate::Wait(Duration::from_secs(3539)));
        // Before their end, nothing is swept.
        let pacer2 = Pacer::new(None);
        for i in 0..SWEEP_AT as u64 {
            let Gate::Go(seq) = pacer2.gate(&Key::test(i), t0) else { panic!() };
            let limits = (i % 2 == 1).then(|| limits(10, 5, second));
            pacer2.observe(&Key::test(i), seq, limits.as_ref(), ((i % 2 == 0).then_some(second), None), t0);
        }
        pacer2.gate(&Key::test(u64::MAX), t0 + second / 2);
        assert_eq!(pacer2.entries().len(), SWEEP_AT + 1);
    }

    #[test]
    fn a_forced_send_still_updates_the_budget() {
        let pacer = Pacer::new(None);
        let k = Key::test(1);
        let t0 = now();
        pacer.gate(&k, t0);
        let Gate::Go(second) = pacer.gate(&k, t0) else { panic!() };
        // One request left in this window; this process spends it.
        pacer.observe(&k, second, Some(&limits(10, 1, Duration::from_secs(5))), (None, None), t0);
        assert!(matches!(pacer.gate(&k, t0), Gate::Go(_)));
        assert!(matches!(pacer.gate(&k, t0), Gate::Wait(_)));
        // The wait was too long to honour: the request is sent anyway, and its answer counts.
        let forced = pacer.force(&k);
        pacer.observe(&k, forced, Some(&limits(10, 9, Duration::from_secs(5))), (None, None), t0);
        assert!(matches!(pacer.gate(&k, t0), Gate::Go(_)), "the forced send's response is the newest view");
    }
}
