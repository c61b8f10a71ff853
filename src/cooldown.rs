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
//!   middleware's own memory, and also in a [`CooldownStore`] when one is
//!   set: Redis to share it across a fleet (feature `redis`);
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
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderName;
use reqwest::Request;
use siphasher::sip128::{Hasher128, SipHasher13};
use url::Position;

use crate::provider::Provider;
use crate::rate_limits::{RateLimit, RateLimits};

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
/// Keys name the provider, the host, the port and a fingerprint of the
/// credential; they never contain a secret. Implementations must never fail or
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
    pub(crate) fn get_now(&self, key: &str) -> Option<SystemTime> {
        let now = SystemTime::now();
        self.lock().get(key).copied().filter(|until| *until > now)
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
}

impl CooldownStore for MemoryCooldownStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(std::future::ready(self.get_now(key)))
    }

    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.extend_now(key, until);
        Box::pin(std::future::ready(()))
    }
}

/// Headers whose values identify the credential; `HeaderName`s, so that a
/// comparison is a tag compare rather than a string compare.
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

/// Which requests share rate-limit state: the same provider, host, port and credential.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// A hash of all four, for the in-process map.
    id: u64,
    /// The store's form, `"{provider}:{host}:{port}:{fingerprint}"`; made only
    /// when there is a store to ask, because this runs before every request.
    text: Option<String>,
}

impl Key {
    /// The key of `request` to `provider`; with its text form when `with_text`.
    pub(crate) fn of(provider: Provider, request: &Request, with_text: bool) -> Key {
        let url = request.url();
        // The in-process id needs no keyed hash (it never leaves the
        // process), only a cheap one: this runs before every request. The
        // URL up to its path is scheme, host and port in one slice.
        let mut id = FoldHash::new(provider as u64);
        id.write(url[..Position::BeforePath].as_bytes());
        let mut id = id.finish();
        for (name, value) in request.headers() {
            if is_credential(name) {
                // Summed, so the order the headers were added in does not matter.
                let mut pair = FoldHash::new(0);
                pair.write(name.as_str().as_bytes());
                pair.write(value.as_bytes());
                id = id.wrapping_add(pair.finish());
            }
        }
        if url.query().is_some() {
            id = id.wrapping_add(query_keys_hash(url));
        }
        let text = with_text.then(|| {
            let host = url.host_str().unwrap_or_default();
            key_text(provider, host, url.port_or_known_default().unwrap_or_default(), request)
        });
        Key { id, text }
    }

    /// The store's form of the key.
    pub(crate) fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    #[cfg(test)]
    fn test(id: u64) -> Key {
        Key { id, text: Some(format!("test:{id}")) }
    }
}

/// Whether a header carries a credential.
#[inline(never)]
fn is_credential(name: &HeaderName) -> bool {
    CREDENTIAL_HEADERS.contains(name)
}

/// The hash of the `key=` query values (Gemini's API keys); 0 without any.
#[cold]
fn query_keys_hash(url: &reqwest::Url) -> u64 {
    url.query_pairs().filter(|(name, _)| name == "key").fold(0, |sum, (_, value)| {
        let mut hash = FoldHash::new(1);
        hash.write(value.as_bytes());
        sum.wrapping_add(hash.finish())
    })
}

/// Every value of each [`CREDENTIAL_HEADERS`] name in that order, then
/// `key=` query values, as (name, value): what a store's fingerprint hashes.
fn for_each_credential(request: &Request, mut f: impl FnMut(&[u8], &[u8])) {
    for name in &CREDENTIAL_HEADERS {
        for value in request.headers().get_all(name) {
            f(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if request.url().query().is_some() {
        for (name, value) in request.url().query_pairs().filter(|(name, _)| name == "key") {
            f(name.as_bytes(), value.as_bytes());
        }
    }
}

/// A fast 64-bit hash (multiply-fold, as in FxHash) for in-process ids.
struct FoldHash(u64);

impl FoldHash {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn new(seed: u64) -> Self {
        FoldHash(seed.wrapping_mul(Self::K))
    }

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }

    // One copy of the loop, however many callers: this is on every request's path.
    #[inline(never)]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        // The length keeps ("ab", "c") apart from ("a", "bc").
        self.add(u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `"{provider}:{host}:{port}:{fingerprint}"`, the fingerprint a keyed
/// SipHash-1-3 of the credential; the format is shared by a fleet through
/// its store, so it never changes.
#[cold]
fn key_text(provider: Provider, host: &str, port: u16, request: &Request) -> String {
    let mut hasher = SipHasher13::new_with_key(&FINGERPRINT_KEY);
    for_each_credential(request, |name, value| {
        hasher.write(name);
        hasher.write(value);
    });
    let fingerprint = hasher.finish128().as_u128();
    format!("{}:{host}:{port}:{fingerprint:032x}", provider.name())
}

/// `"{provider}:{host:port}:{fingerprint}"` for a request: the key a store sees.
#[cfg(test)]
pub(crate) fn cooldown_key(provider: Provider, request: &Request) -> String {
    Key::of(provider, request, true).text.unwrap_or_default()
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

/// What this process knows about one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    budget: Budget,
    /// No request with this key is sent before then.
    cooldown_until: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.budget.reset_at.is_some_and(|r| r > now) || self.cooldown_until.is_some_and(|c| c > now)
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
    entries.insert(id, Entry { budget, cooldown_until: None });
    Gate::Go(seq)
}

/// Keys are already hashes: the map only folds their well-mixed high bits
/// (a multiply's) into the low ones it indexes by.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

type Entries = HashMap<u64, Entry, BuildHasherDefault<KeyHasher>>;

/// The shared state behind one middleware and its clones.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// A store shared beyond this middleware (`cooldown_store`); without
    /// one, cooldowns live in `entries` only.
    store: Option<Arc<dyn CooldownStore>>,
    entries: Mutex<Entries>,
}

impl Pacer {
    pub(crate) fn new(store: Option<Arc<dyn CooldownStore>>) -> Self {
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
        Gate::Go(entry.budget.spend(now))
    }

    /// The wait the store asks for, when there is a store and it has a cooldown for `key`.
    pub(crate) async fn shared_wait(&self, key: &Key) -> Option<Duration> {
        let (store, text) = (self.store.as_ref()?, key.text()?);
        let until = store.get(text).await?;
        until.duration_since(SystemTime::now()).ok().filter(|wait| !wait.is_zero())
    }

    /// Sends regardless of the budget (the wait was too long to honour).
    pub(crate) fn force(&self, key: &Key) -> u64 {
        self.entries().get_mut(&key.id).map_or(0, |entry| entry.budget.spend(Instant::now()))
    }

    /// Learns from a response to the send numbered `seq`; returns the
    /// cooldown it sets, which a store should hear about too.
    pub(crate) fn observe(
        &self,
        key: &Key,
        seq: u64,
        limits: Option<&RateLimits>,
        rate_limited_for: Option<Duration>,
        now: Instant,
    ) -> Option<Duration> {
        let requests = limits.and_then(|l| l.requests).filter(|r| r.remaining.is_some() && r.reset.is_some());
        // A 429's wait, or a used-up family's reset, becomes the key's cooldown.
        let exhausted = limits.and_then(RateLimits::exhausted_for);
        let cooldown = rate_limited_for.into_iter().chain(exhausted).max().filter(|w| !w.is_zero());
        if requests.is_none() && cooldown.is_none() {
            return None;
        }
        let mut entries = self.entries();
        if let Some(RateLimit { remaining: Some(remaining), reset: Some(reset), limit }) = requests
            // Sends numbered 0 were not tracked (no entry then, or too many keys).
            && let Some(budget) = entries.get_mut(&key.id).filter(|_| seq > 0).map(|entry| &mut entry.budget)
            // Responses arrive out of order: only a later send's view is newer.
            && seq >= budget.snapshot_seq
        {
            budget.snapshot_seq = seq;
            budget.remaining = Some(remaining);
            budget.limit = limit.or(budget.limit);
            budget.reset_at = now.checked_add(reset);
        }
        if let Some(until) = cooldown.and_then(|wait| now.checked_add(wait))
            && (entries.len() < MAX_BUDGETS || entries.contains_key(&key.id))
        {
            let entry = entries.entry(key.id).or_insert(Entry { budget: Budget::new(), cooldown_until: None });
            entry.cooldown_until = entry.cooldown_until.max(Some(until));
        }
        cooldown
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
        // The in-process ids separate the same requests.
        let id = |provider, auth, url| Key::of(provider, &request(auth, url), false).id;
        let a = id(Provider::OpenAi, "Bearer sk-AAAA", "https://api.openai.com/v1/x");
        assert_eq!(a, id(Provider::OpenAi, "Bearer sk-AAAA", "https://api.openai.com/v1/y?alt=1"));
        let others = [
            id(Provider::OpenAi, "Bearer sk-BBBB", "https://api.openai.com/v1/x"),
            id(Provider::OpenAi, "Bearer sk-AAAA", "http://api.openai.com:8080/v1/x"),
            id(Provider::Anthropic, "Bearer sk-AAAA", "https://api.openai.com/v1/x"),
            id(Provider::Gemini, "", "https://api.openai.com/v1/x?key=AIza1"),
            id(Provider::Gemini, "", "https://api.openai.com/v1/x?key=AIza2"),
        ];
        for (i, other) in others.iter().enumerate() {
            assert!(*other != a && others[..i].iter().all(|o| o != other), "{i}");
        }
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

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn the_budget_stops_the_request_past_the_limit() {
        let pacer = Pacer::new(None);
        let k = Key::test(1);
        let Gate::Go(first) = pacer.gate(&k, now()) else { panic!() };
        // The server says: 2 left after the first request, window resets in 50 ms.
        pacer.observe(&k, first, Some(&limits(3, 2, Duration::from_millis(50))), None, now());
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
    fn stale_snapshots_do_not_overwrite_newer_ones() {
        let pacer = Pacer::new(None);
        let k = Key::test(1);
        for seq in 1..=3 {
            assert_eq!(pacer.gate(&k, now()), Gate::Go(seq));
        }
        pacer.observe(&k, 3, Some(&limits(10, 0, Duration::from_secs(5))), None, now());
        pacer.observe(&k, 1, Some(&limits(10, 9, Duration::from_secs(5))), None, now());
        assert!(matches!(pacer.gate(&k, now()), Gate::Wait(_)));
    }

    #[test]
    fn memory_for_budgets_is_bounded() {
        let pacer = Pacer::new(None);
        for i in 0..(MAX_BUDGETS + 100) {
            pacer.gate(&Key::test(i as u64), now());
            pacer.observe(&Key::test(i as u64), 0, None, Some(Duration::from_secs(60)), now());
        }
        assert!(pacer.entries().len() <= MAX_BUDGETS);
    }

    #[test]
    fn a_429_cools_the_key_down() {
        let pacer = Pacer::new(None);
        let (k, j) = (Key::test(1), Key::test(2));
        // One instant for both calls: the wait is exact, however slow the machine.
        let t0 = now();
        assert_eq!(pacer.observe(&k, 1, None, Some(Duration::from_millis(40)), t0), Some(Duration::from_millis(40)));
        assert_eq!(pacer.gate(&k, t0), Gate::Wait(Duration::from_millis(40)));
        assert_eq!(pacer.gate(&k, t0 + Duration::from_millis(15)), Gate::Wait(Duration::from_millis(25)));
        assert!(matches!(pacer.gate(&k, t0 + Duration::from_millis(40)), Gate::Go(_)), "over at its end");
        assert!(matches!(pacer.gate(&j, t0), Gate::Go(_)));
        // Used-up token families cool down too.
        let used_up = RateLimit { limit: None, remaining: Some(0), reset: Some(Duration::from_millis(30)) };
        let tokens = RateLimits { tokens: Some(used_up), ..RateLimits::default() };
        pacer.observe(&j, 1, Some(&tokens), None, now());
        assert!(matches!(pacer.gate(&j, now()), Gate::Wait(_)));
        // A plain success sets nothing.
        assert_eq!(pacer.observe(&j, 2, Some(&limits(10, 5, Duration::from_secs(1))), None, now()), None);
    }

    #[tokio::test]
    async fn a_store_hears_of_cooldowns_and_is_asked_before_sending() {
        let store = Arc::new(MemoryCooldownStore::new());
        let pacer = Pacer::new(Some(store.clone() as Arc<dyn CooldownStore>));
        let k = Key::of(Provider::OpenAi, &request("Bearer sk-1", "https://api.openai.com/v1/x"), true);
        assert_eq!(pacer.shared_wait(&k).await, None);
        pacer.publish(&k, Duration::from_secs(5)).await;
        assert!(store.get_now(k.text().unwrap()).is_some());
        let wait = pacer.shared_wait(&k).await.expect("the store's cooldown");
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
        // Without a store there is nothing to ask.
        assert_eq!(Pacer::new(None).shared_wait(&k).await, None);
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
            pacer.observe(&k, seq, limits.as_ref(), cooldown, t0);
        }
        pacer.observe(&Key::test(0), 1, None, Some(Duration::from_secs(3600)), t0);
        // A new key at the exact end of the others: they have ended, the hour has not.
        let end = t0 + second;
        assert!(matches!(pacer.gate(&Key::test(u64::MAX), end), Gate::Go(_)));
        assert_eq!(pacer.entries().len(), 2, "swept all but the live key and the new one");
        assert_eq!(pacer.gate(&Key::test(0), end), Gate::Wait(Duration::from_secs(3599)));
        // Before their end, nothing is swept.
        let pacer2 = Pacer::new(None);
        for i in 0..SWEEP_AT as u64 {
            let Gate::Go(seq) = pacer2.gate(&Key::test(i), t0) else { panic!() };
            let limits = (i % 2 == 1).then(|| limits(10, 5, second));
            pacer2.observe(&Key::test(i), seq, limits.as_ref(), (i % 2 == 0).then_some(second), t0);
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
        pacer.observe(&k, second, Some(&limits(10, 1, Duration::from_secs(5))), None, t0);
        assert!(matches!(pacer.gate(&k, t0), Gate::Go(_)));
        assert!(matches!(pacer.gate(&k, t0), Gate::Wait(_)));
        // The wait was too long to honour: the request is sent anyway, and its answer counts.
        let forced = pacer.force(&k);
        pacer.observe(&k, forced, Some(&limits(10, 9, Duration::from_secs(5))), None, t0);
        assert!(matches!(pacer.gate(&k, t0), Gate::Go(_)), "the forced send's response is the newest view");
    }
}
