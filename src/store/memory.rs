//! [`MemoryStore`]: the protocol's rules applied to maps in this process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::outage::{Board, OutageQuery, OutageReport, OutageTurn};
use super::window::{self, SLOTS, Shared};
use super::{SharedStore, Spend, StoreFuture, sealed};

/// Entries kept before expired ones are swept, bounding memory.
const SWEEP_AT: usize = 1024;

/// A [`SharedStore`] in this process's memory.
///
/// The middleware needs no store to share pacing and health among its own
/// clones; this one shares them among middlewares built separately (say, one
/// per client with different settings), through an `Arc`:
///
/// ```
/// use std::sync::Arc;
/// use reqwest_llm_retry::{LlmRetryMiddleware, MemoryStore};
/// let store = Arc::new(MemoryStore::new());
/// let chat = LlmRetryMiddleware::builder().shared_store(store.clone()).build();
/// let batch = LlmRetryMiddleware::builder().max_retries(8).shared_store(store).build();
/// ```
///
/// A `RedisStore` keeps one too, to answer from while Redis is down.
#[derive(Debug, Default)]
pub struct MemoryStore {
    cooldowns: Mutex<HashMap<String, SystemTime>>,
    /// Per key: the windows shared by the middlewares using this store (requests, then tokens).
    windows: Mutex<HashMap<String, [Option<Shared>; SLOTS]>>,
    /// Provider outages per host.
    outages: Board,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn cooldowns(&self) -> MutexGuard<'_, HashMap<String, SystemTime>> {
        // A panic elsewhere while holding the lock leaves a map that is still valid.
        self.cooldowns.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cooldown of `key` at `now`, if any.
    pub(crate) fn cooldown_at(&self, key: &str, now: SystemTime) -> Option<SystemTime> {
        self.cooldowns().get(key).copied().filter(|until| *until > now)
    }

    /// [`SharedStore::spend`] at `now`.
    pub(crate) fn spend_at(&self, key: &str, spend: Spend, now: SystemTime) -> Option<SystemTime> {
        let cooled = self.cooldown_at(key, now);
        let now_ms = window::epoch_ms(now);
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= SWEEP_AT {
            let live = |shared: &Shared| shared.end + window::keep(shared.length) > now_ms;
            windows.retain(|_, slots| slots.iter().flatten().any(live));
        }
        let mut slots = windows.get(key).copied().unwrap_or_default();
        let answer = window::spend_all(&mut slots, &spend.parts(), (now_ms, cooled.map_or(0, window::epoch_ms)));
        match (slots.iter().any(Option::is_some), windows.get_mut(key)) {
            (true, Some(kept)) => *kept = slots,
            (true, None) => {
                windows.insert(key.to_owned(), slots);
            }
            (false, _) => {
                windows.remove(key);
            }
        }
        // The cooldown itself, to the nanosecond, when it is what holds the send.
        answer.err().map(|until| {
            cooled
                .filter(|c| window::epoch_ms(*c) >= until)
                .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_millis(until))
        })
    }

    /// [`SharedStore::outage`], now.
    pub(crate) fn outage_now(&self, host: &str, query: OutageQuery) -> OutageTurn {
        self.outages.turn(host, query, SystemTime::now())
    }

    /// [`SharedStore::report_outage`], now.
    pub(crate) fn report_outage_now(&self, host: &str, report: OutageReport) {
        self.outages.report(host, report, SystemTime::now());
    }

    /// [`SharedStore::extend`], now.
    pub(crate) fn extend_now(&self, key: &str, until: SystemTime) {
        let mut cooldowns = self.cooldowns();
        if cooldowns.len() >= SWEEP_AT {
            let now = SystemTime::now();
            cooldowns.retain(|_, until| *until > now);
        }
        let entry = cooldowns.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}

impl sealed::Sealed for MemoryStore {}

impl SharedStore for MemoryStore {
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.extend_now(key, until);
        Box::pin(std::future::ready(()))
    }

    fn spend<'a>(&'a self, key: &'a str, spend: Spend) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(std::future::ready(self.spend_at(key, spend, SystemTime::now())))
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, OutageTurn> {
        Box::pin(std::future::ready(self.outage_now(host, query)))
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        self.report_outage_now(host, report);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Window;

    #[test]
    fn memory_store_shares_one_windows_budget() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let ms = Duration::from_millis;
        let window = Window::new(t0 + ms(200), 3).with_length(ms(200)).as_told();
        for _ in 0..3 {
            assert_eq!(store.spend_at("k", Spend::from(Some(window)), t0), None);
        }
        // Spent, whoever asks: the rest wait for the window's end, and its guard (2 ms + 1/32).
        let next_opens = window.end + ms(8);
        assert_eq!(store.spend_at("k", Spend::from(Some(window)), t0), Some(next_opens));
        let later_view = Window::new(t0 + ms(230), 3);
        assert_eq!(store.spend_at("k", Spend::from(Some(later_view)), t0), Some(next_opens), "one window for all");
        assert_eq!(store.spend_at("j", Spend::from(Some(window)), t0), None, "another key has its own");
        // The store rolls the window by its length, whatever the asker predicts.
        let early_view = Window::new(t0 + ms(390), 3);
        for _ in 0..3 {
            assert_eq!(store.spend_at("k", Spend::from(Some(early_view)), next_opens), None);
        }
        assert_eq!(store.spend_at("k", Spend::from(Some(early_view)), next_opens), Some(t0 + ms(408)));
        // A cooldown answers first; no window known: the send goes, and is counted for the window to come.
        store.extend_now("k", t0 + ms(1000));
        assert_eq!(store.spend_at("k", Spend::from(Some(window)), t0 + ms(410)), Some(t0 + ms(1000)));
        assert_eq!(store.spend_at("n", Spend::from(None), t0), None);
        assert_eq!(store.spend_at("n", Spend::from(Some(Window::new(t0 + ms(200), 1))), t0), Some(t0 + ms(202)));
    }

    #[test]
    fn memory_store_keeps_the_later_time_and_sweeps() {
        let store = MemoryStore::new();
        let later = SystemTime::now() + Duration::from_secs(10);
        store.extend_now("k", later);
        store.extend_now("k", SystemTime::now() + Duration::from_secs(1));
        assert_eq!(store.cooldown_at("k", SystemTime::now()), Some(later));
        // More live keys than the sweep threshold, then many that have ended.
        for i in 0..SWEEP_AT + 100 {
            store.extend_now(&format!("live{i}"), later);
        }
        for i in 0..2 * SWEEP_AT {
            store.extend_now(&format!("old{i}"), SystemTime::now() - Duration::from_secs(1));
        }
        assert!(store.cooldowns().len() <= SWEEP_AT + 102, "ended keys are swept: {}", store.cooldowns().len());
        assert_eq!(store.cooldown_at("k", SystemTime::now()), Some(later), "live keys are not");
        assert_eq!(store.cooldown_at("live7", SystemTime::now()), Some(later));
    }
}
