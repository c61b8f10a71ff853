//! The store protocol: where cooldowns live beyond one middleware, and the
//! in-memory store.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::SWEEP_AT;
use super::shared_window::{self, Shared, View};
use crate::health::{Board, OutageQuery, OutageReport, OutageTurn};

/// The future a [`CooldownStore`] method returns: boxed and `Send`, borrowing the
/// store and the key.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where cooldowns live: "requests with this key should not be sent before then".
///
/// The middleware always keeps cooldowns in its own memory; a store set with
/// [`cooldown_store`](crate::LlmRetryMiddlewareBuilder::cooldown_store) shares
/// them further: [`MemoryCooldownStore`] between middlewares of one process,
/// `RedisCooldownStore` (feature `redis`) across a fleet, or your own. It is
/// asked ([`get`](Self::get)) before each send, and told
/// ([`extend`](Self::extend)) of each cooldown a response sets.
///
/// It also shares provider outages, per host, when it implements
/// [`outage`](Self::outage) and [`report_outage`](Self::report_outage): then one
/// probe serves every middleware sharing it.
///
/// Keys name the provider, the host, the port and a fingerprint of the
/// credential (outage keys: the host and the port); they never contain a secret. Implementations must never fail or
/// stall a request: bound each call, and on an outage answer from memory and log.
///
/// # Why boxed futures
///
/// The methods return a [`StoreFuture`] written out, rather than through
/// `#[async_trait]` or an associated future type: the middleware holds its store
/// as `Arc<dyn CooldownStore>`, so that its type has no store parameter, and a
/// trait object cannot have unnamed associated types. Implementors need no macro;
/// the one allocation per call is nothing beside a store's round trip, and a
/// middleware without a store never calls one.
///
/// # Implementing it
///
/// Wrap an `async` block in `Box::pin`; a store that answers at once can return
/// `Box::pin(std::future::ready(value))`.
///
/// ```
/// use std::collections::HashMap;
/// use std::time::SystemTime;
///
/// use reqwest_llm_retry::{CooldownStore, LlmRetryMiddleware, StoreFuture};
/// use tokio::sync::RwLock;
///
/// /// Cooldowns behind an async lock (a stand-in for a remote service).
/// #[derive(Debug, Default)]
/// struct SharedCooldowns {
///     until: RwLock<HashMap<String, SystemTime>>,
/// }
///
/// impl CooldownStore for SharedCooldowns {
///     fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
///         Box::pin(async move {
///             let until = self.until.read().await.get(key).copied()?;
///             (until > SystemTime::now()).then_some(until)
///         })
///     }
///
///     fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
///         Box::pin(async move {
///             let mut map = self.until.write().await;
///             let entry = map.entry(key.to_owned()).or_insert(until);
///             *entry = (*entry).max(until);
///         })
///     }
/// }
///
/// let middleware = LlmRetryMiddleware::builder().cooldown_store(SharedCooldowns::default()).build();
/// # let _ = middleware;
/// ```
pub trait CooldownStore: Send + Sync + fmt::Debug + 'static {
    /// The time before which requests with `key` should wait, if any.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>>;

    /// Requests with `key` should wait until `until`; an existing later time is kept.
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()>;

    /// Asked before each send instead of [`get`](Self::get): the cooldown of
    /// `key` if any, else spends one request of the key's current window for
    /// everyone who shares the store, and returns when to ask again when the
    /// window is already spent, or its boundary is too near. `window` is what
    /// the asking middleware knows of it (from rate-limit headers, or learned).
    ///
    /// The default shares cooldowns only (it calls `get`); [`MemoryCooldownStore`]
    /// and `RedisCooldownStore` share the budget too, so that a fleet spends one
    /// window's requests between its processes, instead of each spending all of
    /// them. They keep the window's end and length for everyone, and roll
    /// windows by that length, so that the fleet agrees on where windows
    /// begin; the ends servers tell correct it (see [`Window::told`]); and no
    /// request goes within a small guard either side of a boundary (2 ms plus
    /// 1/32 of the window), so that an end a few milliseconds off costs no 429.
    fn spend<'a>(&'a self, key: &'a str, window: Option<Window>) -> StoreFuture<'a, Option<SystemTime>> {
        let _ = window;
        self.get(key)
    }

    /// Asked, when the store is set, before a request is sent to a host in
    /// an outage (when its process's turn to probe has come), and before a
    /// retry to a host whose requests have started failing: whose turn it is
    /// to probe `host` (`host:port`, across every credential), for everyone
    /// sharing the store. This is how one probe serves a fleet.
    ///
    /// A store that shares outages keeps, per host, whether it is down, when
    /// its next probe is due, who holds the probe lease (one at a time, for
    /// `query.lease`) and when it last recovered; see [`OutageQuery`] for who
    /// records an outage, and [`OutageTurn`] for the answers.
    ///
    /// The default does not share outages: it answers `None`, and each
    /// process probes on its own. [`MemoryCooldownStore`] and
    /// `RedisCooldownStore` share them.
    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, Option<OutageTurn>> {
        let _ = (host, query);
        Box::pin(std::future::ready(None))
    }

    /// Told how a probe granted by [`outage`](Self::outage) went, or that a
    /// request to `host` succeeded after it was down. The default ignores it.
    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        let _ = (host, report);
        Box::pin(std::future::ready(()))
    }
}

/// A rate-limit window as a middleware knows it: when it ends, how many
/// requests it admits in all, and, when known, how long it lasts and whether
/// a server told its end. Passed to [`CooldownStore::spend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Window {
    /// When the window ends (and the next one opens).
    pub end: SystemTime,
    /// The requests the window admits, for everyone sharing the key.
    pub limit: u64,
    /// How long a window lasts, when known: a store rolls windows by it.
    pub length: Option<Duration>,
    /// Whether a server told `end` (a reset header, or a 429's wait), rather
    /// than the middleware predicting it. A told end is late by the
    /// response's latency, never early by more than its rounding: a store
    /// keeps the earliest told end of each window.
    pub told: bool,
}

impl Window {
    /// A window of `limit` requests ending at `end`, by prediction, of unknown length.
    pub fn new(end: SystemTime, limit: u64) -> Self {
        Window { end, limit, length: None, told: false }
    }

    /// The same window, known to last `length`.
    pub fn with_length(mut self, length: Duration) -> Self {
        self.length = Some(length).filter(|l| !l.is_zero());
        self
    }

    /// The same window, its end told by a server.
    pub fn as_told(mut self) -> Self {
        self.told = true;
        self
    }
}

/// A [`CooldownStore`] in this process's memory.
///
/// The middleware needs no store to share cooldowns among its own clones;
/// this one shares them among middlewares built separately (say, one per
/// client with different settings), through an `Arc`:
///
/// ```
/// use std::sync::Arc;
/// use reqwest_llm_retry::{LlmRetryMiddleware, MemoryCooldownStore};
/// let store = Arc::new(MemoryCooldownStore::new());
/// let chat = LlmRetryMiddleware::builder().cooldown_store(store.clone()).build();
/// let batch = LlmRetryMiddleware::builder().max_retries(8).cooldown_store(store).build();
/// ```
#[derive(Debug, Default)]
pub struct MemoryCooldownStore {
    map: Mutex<HashMap<String, SystemTime>>,
    /// Per key: the window shared by the middlewares using this store.
    budgets: Mutex<HashMap<String, Shared>>,
    /// Provider outages per host.
    outages: Board,
}

impl MemoryCooldownStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SystemTime>> {
        // A panic elsewhere while holding the lock leaves a map that is still valid.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Synchronous form of [`CooldownStore::get`].
    pub(crate) fn get_now(&self, key: &str) -> Option<SystemTime> {
        let now = SystemTime::now();
        self.lock().get(key).copied().filter(|until| *until > now)
    }

    /// Synchronous form of [`CooldownStore::spend`], at `now`.
    pub(crate) fn spend_at(&self, key: &str, window: Option<Window>, now: SystemTime) -> Option<SystemTime> {
        if let Some(until) = self.lock().get(key).copied().filter(|until| *until > now) {
            return Some(until);
        }
        let now_ms = shared_window::epoch_ms(now);
        let mut budgets = self.budgets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if budgets.len() >= SWEEP_AT {
            budgets.retain(|_, shared| shared.end + shared_window::keep(shared.length) > now_ms);
        }
        let mut shared = budgets.get(key).copied();
        let answer = shared_window::spend(&mut shared, window.and_then(View::of), now_ms);
        match (shared, budgets.get_mut(key)) {
            (Some(shared), Some(slot)) => *slot = shared,
            (Some(shared), None) => {
                budgets.insert(key.to_owned(), shared);
            }
            (None, _) => {
                budgets.remove(key);
            }
        }
        answer.err().map(|until| SystemTime::UNIX_EPOCH + Duration::from_millis(until))
    }

    /// Synchronous form of [`CooldownStore::outage`].
    pub(crate) fn outage_now(&self, host: &str, query: OutageQuery) -> OutageTurn {
        self.outages.turn(host, query, SystemTime::now())
    }

    /// Synchronous form of [`CooldownStore::report_outage`].
    pub(crate) fn report_outage_now(&self, host: &str, report: OutageReport) {
        self.outages.report(host, report, SystemTime::now());
    }

    /// Synchronous form of [`CooldownStore::extend`].
    pub(crate) fn extend_now(&self, key: &str, until: SystemTime) {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            let now = SystemTime::now();
            map.retain(|_, until| *until > now);
        }
        let entry = map.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}

/// One store behind several middlewares.
impl<S: CooldownStore + ?Sized> CooldownStore for Arc<S> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        (**self).get(key)
    }

    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        (**self).extend(key, until)
    }

    fn spend<'a>(&'a self, key: &'a str, window: Option<Window>) -> StoreFuture<'a, Option<SystemTime>> {
        (**self).spend(key, window)
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, Option<OutageTurn>> {
        (**self).outage(host, query)
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        (**self).report_outage(host, report)
    }
}

impl CooldownStore for MemoryCooldownStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(std::future::ready(self.get_now(key)))
    }

    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.extend_now(key, until);
        Box::pin(std::future::ready(()))
    }

    fn spend<'a>(&'a self, key: &'a str, window: Option<Window>) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(std::future::ready(self.spend_at(key, window, SystemTime::now())))
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, Option<OutageTurn>> {
        Box::pin(std::future::ready(Some(self.outage_now(host, query))))
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        self.report_outage_now(host, report);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn memory_store_shares_one_windows_budget() {
        let store = MemoryCooldownStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let ms = Duration::from_millis;
        let window = Window::new(t0 + ms(200), 3).with_length(ms(200)).as_told();
        for _ in 0..3 {
            assert_eq!(store.spend_at("k", Some(window), t0), None);
        }
        // Spent, whoever asks: the rest wait for the window's end, and its guard (2 ms + 1/32).
        let next_opens = window.end + ms(8);
        assert_eq!(store.spend_at("k", Some(window), t0), Some(next_opens));
        let later_view = Window::new(t0 + ms(230), 3);
        assert_eq!(store.spend_at("k", Some(later_view), t0), Some(next_opens), "one window for all");
        assert_eq!(store.spend_at("j", Some(window), t0), None, "another key has its own");
        // The store rolls the window by its length, whatever the asker predicts.
        let early_view = Window::new(t0 + ms(390), 3);
        for _ in 0..3 {
            assert_eq!(store.spend_at("k", Some(early_view), next_opens), None);
        }
        assert_eq!(store.spend_at("k", Some(early_view), next_opens), Some(t0 + ms(408)));
        // A cooldown answers first; no window known: the send goes, and is counted for the window to come.
        store.extend_now("k", t0 + ms(1000));
        assert_eq!(store.spend_at("k", Some(window), t0 + ms(410)), Some(t0 + ms(1000)));
        assert_eq!(store.spend_at("n", None, t0), None);
        assert_eq!(store.spend_at("n", Some(Window::new(t0 + ms(200), 1)), t0), Some(t0 + ms(202)));
    }

    #[test]
    fn memory_store_keeps_the_later_time_and_sweeps() {
        let store = MemoryCooldownStore::new();
        let later = SystemTime::now() + Duration::from_secs(10);
        store.extend_now("k", later);
        store.extend_now("k", SystemTime::now() + Duration::from_secs(1));
        assert_eq!(store.get_now("k"), Some(later));
        // More live keys than the sweep threshold, then many that have ended.
        for i in 0..SWEEP_AT + 100 {
            store.extend_now(&format!("live{i}"), later);
        }
        for i in 0..2 * SWEEP_AT {
            store.extend_now(&format!("old{i}"), SystemTime::now() - Duration::from_secs(1));
        }
        assert!(store.lock().len() <= SWEEP_AT + 102, "ended keys are swept: {}", store.lock().len());
        assert_eq!(store.get_now("k"), Some(later), "live keys are not");
        assert_eq!(store.get_now("live7"), Some(later));
    }
}
