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
//!   wait until then before they are sent. The cooldown lives in a
//!   [`CooldownStore`], in memory by default, in Redis to share it across a
//!   fleet (feature `redis`);
//! - in the process, the `remaining` count of the request limit is also
//!   spent locally as requests are sent, so the request that would be the
//!   21st in a 20-request window waits for the reset instead of being sent
//!   to collect a 429.
//!
//! Waits stay bounded: a cooldown longer than `max_retry_after`, or one that
//! would end past `max_elapsed`, is not waited for; the request is sent and
//! the server decides.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderName;
use reqwest::Request;
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::provider::Provider;
use crate::rate_limits::RateLimits;

/// Where cooldowns live: "requests with this key should not be sent before then".
///
/// Keys name the provider, the host and a fingerprint of the credential; they
/// never contain a secret. Implementations must never fail a request: on an
/// outage, answer from memory and log.
#[async_trait::async_trait]
pub trait CooldownStore: Send + Sync + fmt::Debug + 'static {
    /// The time before which requests with `key` should wait, if any.
    async fn get(&self, key: &str) -> Option<SystemTime>;

    /// Requests with `key` should wait until `until`; an existing later time is kept.
    async fn extend(&self, key: &str, until: SystemTime);
}

/// The default [`CooldownStore`]: a map in this process, shared by every
/// clone of the middleware that uses it.
#[derive(Debug, Default)]
pub struct MemoryCooldownStore {
    map: Mutex<HashMap<String, SystemTime>>,
}

/// Entries kept before expired ones are swept, bounding memory.
const SWEEP_AT: usize = 1024;
/// Budgets kept at most (keys with a live window beyond this are not paced).
const MAX_BUDGETS: usize = 16 * 1024;

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
    pub fn get_now(&self, key: &str) -> Option<SystemTime> {
        let now = SystemTime::now();
        self.lock().get(key).copied().filter(|until| *until > now)
    }

    /// Synchronous form of [`CooldownStore::extend`].
    pub fn extend_now(&self, key: &str, until: SystemTime) {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            let now = SystemTime::now();
            map.retain(|_, until| *until > now);
        }
        let entry = map.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}

#[async_trait::async_trait]
impl CooldownStore for MemoryCooldownStore {
    async fn get(&self, key: &str) -> Option<SystemTime> {
        self.get_now(key)
    }

    async fn extend(&self, key: &str, until: SystemTime) {
        self.extend_now(key, until);
    }
}

/// Headers whose values identify the credential; `HeaderName`s, so that a
/// lookup is a hash probe rather than a parse of the name.
static CREDENTIAL_HEADERS: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("api-key"),
];

/// The fingerprint key. Not a secret (the fingerprint only has to differ per
/// credential and agree across a fleet); it makes the hash keyed so a
/// fingerprint cannot be looked up in a table of unkeyed hashes.
const FINGERPRINT_KEY: [u8; 16] = *b"llm-retry-cooldn";

/// `"{provider}:{host:port}:{fingerprint}"` for a request.
pub(crate) fn cooldown_key(provider: Provider, request: &Request) -> String {
    let mut hasher = SipHasher13::new_with_key(&FINGERPRINT_KEY);
    for name in &CREDENTIAL_HEADERS {
        for value in request.headers().get_all(name) {
            hasher.write(name.as_str().as_bytes());
            hasher.write(value.as_bytes());
        }
    }
    if request.url().query().is_some() {
        for (name, value) in request.url().query_pairs().filter(|(name, _)| name == "key") {
            hasher.write(name.as_bytes());
            hasher.write(value.as_bytes());
        }
    }
    let url = request.url();
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or_default();
    // Written out by hand: this runs before every request, and `format!`
    // with `{:032x}` cost more than the rest of the success path's
    // bookkeeping (about 3,000 instructions a request).
    let name = provider.name();
    let mut key = String::with_capacity(name.len() + host.len() + 40);
    key.push_str(name);
    key.push(':');
    key.push_str(host);
    key.push(':');
    let mut digits = [0u8; 5];
    let mut rest = port;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    key.extend(digits[start..].iter().map(|&d| char::from(d)));
    key.push(':');
    let fingerprint = hasher.finish128().as_u128();
    key.extend(
        (0..32).rev().map(|nibble| char::from(b"0123456789abcdef"[(fingerprint >> (4 * nibble)) as usize & 0xf])),
    );
    key
}

/// The per-key request budget of this process.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// The sequence number the next send gets.
    next_seq: u64,
    /// The latest snapshot: after the request with this sequence number,
    /// `remaining` requests were left until `reset_at`.
    snapshot_seq: u64,
    remaining: Option<u64>,
    limit: Option<u64>,
    reset_at: Option<Instant>,
}

impl Budget {
    fn new() -> Self {
        Budget { next_seq: 1, snapshot_seq: 0, remaining: None, limit: None, reset_at: None }
    }

    /// Takes the next sequence number, spending one request of the budget.
    fn spend(&mut self, now: Instant) -> u64 {
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

    /// Requests still allowed in this window, if known.
    fn left(&self, now: Instant) -> Option<u64> {
        if self.reset_at.is_some_and(|reset_at| now >= reset_at) {
            // A new window: the whole limit (the next send re-snapshots it).
            return self.limit;
        }
        let sent_since = self.next_seq - 1 - self.snapshot_seq;
        Some(self.remaining?.saturating_sub(sent_since))
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

/// The shared state behind one middleware and its clones.
#[derive(Debug)]
pub(crate) struct Pacer {
    store: Arc<dyn CooldownStore>,
    budgets: Mutex<HashMap<String, Budget>>,
}

impl Pacer {
    pub(crate) fn new(store: Arc<dyn CooldownStore>) -> Self {
        Pacer { store, budgets: Mutex::new(HashMap::new()) }
    }

    fn budgets(&self) -> MutexGuard<'_, HashMap<String, Budget>> {
        self.budgets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Go (spending one request of the budget), or how long to wait first.
    pub(crate) async fn gate(&self, key: &str) -> Gate {
        if let Some(until) = self.store.get(key).await
            && let Ok(wait) = until.duration_since(SystemTime::now())
            && !wait.is_zero()
        {
            return Gate::Wait(wait);
        }
        let now = Instant::now();
        let mut budgets = self.budgets();
        if !budgets.contains_key(key) {
            // Numbering starts with the first send, so that the first
            // responses' snapshots can be ordered; memory stays bounded.
            if budgets.len() >= SWEEP_AT {
                budgets.retain(|_, b| b.reset_at.is_some_and(|r| r > now));
            }
            if budgets.len() >= MAX_BUDGETS {
                return Gate::Go(0);
            }
            budgets.insert(key.to_owned(), Budget::new());
        }
        let Some(budget) = budgets.get_mut(key) else { return Gate::Go(0) };
        if budget.left(now) == Some(0)
            && let Some(reset_at) = budget.reset_at.filter(|r| *r > now)
        {
            return Gate::Wait(reset_at - now);
        }
        Gate::Go(budget.spend(now))
    }

    /// Sends regardless of the budget (the wait was too long to honour).
    pub(crate) fn force(&self, key: &str) -> u64 {
        self.budgets().get_mut(key).map_or(0, |budget| budget.spend(Instant::now()))
    }

    /// Learns from a response to the send numbered `seq`.
    pub(crate) async fn observe(
        &self,
        key: &str,
        seq: u64,
        limits: Option<&RateLimits>,
        rate_limited_for: Option<Duration>,
    ) {
        let now = Instant::now();
        if let Some(requests) = limits.and_then(|l| l.requests)
            && let (Some(remaining), Some(reset)) = (requests.remaining, requests.reset)
        {
            self.learn(key, seq, remaining, requests.limit, reset, now);
        }
        self.cool_down(key, limits, rate_limited_for).await;
    }

    /// Records the server's view of the request budget after send `seq`.
    fn learn(&self, key: &str, seq: u64, remaining: u64, limit: Option<u64>, reset: Duration, now: Instant) {
        let mut budgets = self.budgets();
        // Sends numbered 0 were not tracked (no budget then, or too many keys).
        let Some(budget) = budgets.get_mut(key).filter(|_| seq > 0) else { return };
        // Responses arrive out of order: only a later send's view is newer.
        if seq >= budget.snapshot_seq {
            budget.snapshot_seq = seq;
            budget.remaining = Some(remaining);
            budget.limit = limit.or(budget.limit);
            budget.reset_at = now.checked_add(reset);
        }
    }

    /// A 429's wait, or a used-up family's reset, becomes the key's cooldown.
    async fn cool_down(&self, key: &str, limits: Option<&RateLimits>, rate_limited_for: Option<Duration>) {
        let exhausted = limits.and_then(RateLimits::exhausted_for);
        if let Some(wait) = rate_limited_for.into_iter().chain(exhausted).max().filter(|w| !w.is_zero())
            && let Some(until) = SystemTime::now().checked_add(wait)
        {
            self.store.extend(key, until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limits::RateLimit;

    fn limits(limit: u64, remaining: u64, reset: Duration) -> RateLimits {
        let requests = RateLimit { limit: Some(limit), remaining: Some(remaining), reset: Some(reset) };
        RateLimits { requests: Some(requests), ..RateLimits::default() }
    }

    fn request(auth: &str, url: &str) -> Request {
        reqwest::Client::new().post(url).header("authorization", auth).build().unwrap()
    }

    #[test]
    fn keys_separate_credentials_hosts_and_providers_and_hide_the_key() {
        let a = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "https://api.openai.com/v1/x"));
        let a2 = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "https://api.openai.com/v1/y?alt=1"));
        let b = cooldown_key(Provider::OpenAi, &request("Bearer sk-BBBB", "https://api.openai.com/v1/x"));
        let c = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "http://api.openai.com:8080/v1/x"));
        let d = cooldown_key(Provider::Anthropic, &request("Bearer sk-AAAA", "https://api.openai.com/v1/x"));
        assert_eq!(a, a2);
        assert!(a != b && a != c && a != d && b != c);
        assert!(a.starts_with("openai:api.openai.com:443:"), "{a}");
        assert!(!a.contains("AAAA"));
        let g1 = cooldown_key(Provider::Gemini, &request("", "https://x.example/v1?key=AIza1"));
        let g2 = cooldown_key(Provider::Gemini, &request("", "https://x.example/v1?key=AIza2"));
        assert!(g1 != g2 && !g1.contains("AIza"));
    }

    #[test]
    fn keys_keep_their_format_across_versions() {
        // A fleet sharing a Redis store may run several versions: keys must not change.
        let key = cooldown_key(Provider::OpenAi, &request("Bearer sk-AAAA", "http://api.openai.com:8080/v1/x"));
        assert_eq!(key, "openai:api.openai.com:8080:813f88be1d7d9385dc89f7235a444860");
        let key = cooldown_key(Provider::Gemini, &request("", "https://x.example/v1?key=AIza1"));
        assert_eq!(key, "gemini:x.example:443:cbe99358c5a5b5938c5afc2ce7eecc0e");
    }

    #[tokio::test]
    async fn the_budget_stops_the_request_past_the_limit() {
        let pacer = Pacer::new(Arc::new(MemoryCooldownStore::new()));
        let Gate::Go(first) = pacer.gate("k").await else { panic!() };
        // The server says: 2 left after the first request, window resets in 50 ms.
        pacer.observe("k", first, Some(&limits(3, 2, Duration::from_millis(50))), None).await;
        assert_eq!(pacer.gate("k").await, Gate::Go(2));
        assert_eq!(pacer.gate("k").await, Gate::Go(3));
        let Gate::Wait(wait) = pacer.gate("k").await else { panic!("the 4th request must wait") };
        assert!(wait <= Duration::from_millis(50));
        assert_eq!(pacer.gate("other").await, Gate::Go(1), "another key is unaffected");
        tokio::time::sleep(wait).await;
        // A new window: the limit again.
        for seq in 4..=6 {
            assert_eq!(pacer.gate("k").await, Gate::Go(seq));
        }
        assert_eq!(pacer.gate("k").await, Gate::Go(7), "reset unknown: never blocks forever");
    }

    #[tokio::test]
    async fn stale_snapshots_do_not_overwrite_newer_ones() {
        let pacer = Pacer::new(Arc::new(MemoryCooldownStore::new()));
        for seq in 1..=3 {
            assert_eq!(pacer.gate("k").await, Gate::Go(seq));
        }
        pacer.observe("k", 3, Some(&limits(10, 0, Duration::from_secs(5))), None).await;
        pacer.observe("k", 1, Some(&limits(10, 9, Duration::from_secs(5))), None).await;
        assert!(matches!(pacer.gate("k").await, Gate::Wait(_)));
    }

    #[tokio::test]
    async fn memory_for_budgets_is_bounded() {
        let pacer = Pacer::new(Arc::new(MemoryCooldownStore::new()));
        for i in 0..(MAX_BUDGETS + 100) {
            pacer.gate(&format!("tenant-{i}")).await;
        }
        assert!(pacer.budgets().len() <= MAX_BUDGETS);
    }

    #[tokio::test]
    async fn a_429_cools_the_key_down_in_the_store() {
        let store = Arc::new(MemoryCooldownStore::new());
        let pacer = Pacer::new(store.clone());
        pacer.observe("k", 1, None, Some(Duration::from_millis(40))).await;
        let Gate::Wait(wait) = pacer.gate("k").await else { panic!() };
        assert!(wait > Duration::from_millis(30) && wait <= Duration::from_millis(40));
        assert!(store.get_now("k").is_some());
        assert!(matches!(pacer.gate("j").await, Gate::Go(_)));
        // Used-up token families cool down too.
        let used_up = RateLimit { limit: None, remaining: Some(0), reset: Some(Duration::from_millis(30)) };
        let tokens = RateLimits { tokens: Some(used_up), ..RateLimits::default() };
        pacer.observe("j", 1, Some(&tokens), None).await;
        assert!(matches!(pacer.gate("j").await, Gate::Wait(_)));
    }

    #[test]
    fn memory_store_keeps_the_later_time_and_sweeps() {
        let store = MemoryCooldownStore::new();
        let later = SystemTime::now() + Duration::from_secs(10);
        store.extend_now("k", later);
        store.extend_now("k", SystemTime::now() + Duration::from_secs(1));
        assert_eq!(store.get_now("k"), Some(later));
        for i in 0..2 * SWEEP_AT {
            store.extend_now(&format!("old{i}"), SystemTime::now() - Duration::from_secs(1));
        }
        assert!(store.lock().len() <= SWEEP_AT + 1);
    }
}
