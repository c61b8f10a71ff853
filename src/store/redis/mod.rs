//! A [`SharedStore`] in Redis, a single node or a Redis Cluster, so that a
//! fleet of processes sharing one API key paces itself as one client, and
//! probes a provider's outage with one request (feature `redis`).
//!
//! Every call is bounded (see [`RedisStoreBuilder::timeout`]); when Redis is
//! down or slow, the store answers from memory and logs a warning (at most
//! one every 30 s): a Redis outage never fails or stalls a request.

mod connection;
mod scripts;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use redis::IntoConnectionInfo;

use super::outage::RECORD_TTL;
use super::window::{self, SLOTS};
use super::{MemoryStore, OutageQuery, OutageReport, OutageTurn, SharedStore, Spend, StoreFuture, sealed};
use connection::Connection;
pub use connection::RedisStoreBuilder;

/// The version of the key and value format, after the prefix. Part of the
/// protocol between processes: changing the format means a new version here,
/// in a major release (see [`RedisStore`]).
const FORMAT: &str = "v2:";

/// How often an outage is logged.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// After a failed call, Redis is left alone this long, so an outage costs one
/// timeout per second rather than one per request.
const BACK_OFF: Duration = Duration::from_secs(1);

/// A [`SharedStore`] in Redis, a single node or a Redis Cluster, falling back
/// to memory on outages.
///
/// ```no_run
/// # async fn demo() -> Result<(), reqwest_llm_retry::redis::RedisError> {
/// use reqwest_llm_retry::{LlmRetryMiddleware, RedisStore};
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let middleware = LlmRetryMiddleware::builder().shared_store(store).build();
/// # Ok(()) }
/// ```
///
/// [`RedisStore::builder`] sets the key prefix and the bound on each call
/// before connecting, and connects to a cluster
/// ([`connect_cluster`](RedisStoreBuilder::connect_cluster)) or adopts a
/// connection made elsewhere.
///
/// # Key format (`v2`)
///
/// Every key is `{prefix}v2:` followed by a name whose part in braces is a
/// Redis Cluster hash tag: the keys one script touches share it, so they live
/// on one node and each script runs there in one round trip.
///
/// - **Cooldown**: `{prefix}v2:{<key>}`, where `<key>` is
///   `<provider>:<host>:<port>:<fingerprint>`, for instance
///   `llmretry:v2:{openai:api.openai.com:443:813f88be1d7d9385dc89f7235a444860}`.
///   `fingerprint` is 32 hex digits of a keyed hash of the credential, never
///   the credential itself (for an AWS SigV4 signature: of its access key,
///   region and service, not of the signature). The value is the cooldown's
///   end in milliseconds since the Unix epoch, as a decimal integer; the key
///   expires then.
/// - **Window**: `{prefix}v2:{<key>}:budget` for requests, and for each
///   token limit the key has `{prefix}v2:{<key>}:tokens`,
///   `{prefix}v2:{<key>}:input-tokens` or `{prefix}v2:{<key>}:output-tokens`:
///   a hash of decimal integers, `end` (the window's end, epoch
///   milliseconds), `length` (ms, 0 when unknown), `limit` (requests or
///   tokens; 0 while sends are counted before anyone knows the window),
///   `spent` (requests or tokens), `told` (1 when a server told
///   `end`, 0 when rolled) and `origin` (the earliest told end of an earlier
///   window, 0 when none). Each expires eight windows (at least a minute)
///   after `end`, or, while no one knows when its window ends (`limit` 0,
///   `end` then the expiry), a second after the first send it counted. One
///   script call reads and writes all of a key's windows.
/// - **Outage**: `{prefix}v2:outage:{<host>:<port>}`, a hash (field `next`:
///   when the next probe is due, while the host is down; field `up`: when it
///   recovered; epoch milliseconds), living 60 s after its last news; the
///   probe lease is `{prefix}v2:outage:{<host>:<port>}:probe`, living as long
///   as the lease (10 s). For a model with a fallback configured, whose
///   health is its own, `<host>:<port>/<model>` stands for `<host>:<port>`.
///
/// The format is a protocol between processes: every process of a fleet
/// reads what the others write, and a rolling deploy runs two releases side
/// by side. So it is covered by semver. It changes only with a new format
/// version (`v3:`), and only in a major release; processes on different
/// format versions then keep separate state rather than misread each
/// other's. A custom [`prefix`](RedisStoreBuilder::prefix) replaces only the
/// namespace before the version (braces in it are written as parentheses:
/// the hash tags are the store's).
pub struct RedisStore {
    connection: Connection,
    prefix: String,
    timeout: Duration,
    extend: redis::Script,
    spend: redis::Script,
    outage: redis::Script,
    outage_news: redis::Script,
    fallback: MemoryStore,
    health: Mutex<Health>,
}

/// When Redis last failed, and when its failure was last logged. On the
/// system's clock (`std::time::Instant`), not the crate's: both are about a
/// server on real sockets (how long it is left alone, how often a human is
/// warned), and a paused tokio clock, which jumps by the middleware's sleeps,
/// would end a back-off or a warning's quiet spell that no real time has passed for.
#[derive(Debug, Default)]
struct Health {
    last_warning: Option<Instant>,
    down_until: Option<Instant>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection's debug output would show the URL, which may carry a password.
        let cluster = matches!(self.connection, Connection::Cluster(_));
        f.debug_struct("RedisStore")
            .field("cluster", &cluster)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisStore {
    /// The default key prefix: the namespace before the format version.
    pub const DEFAULT_PREFIX: &'static str = "llmretry:";
    /// The default bound on each Redis call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// A builder, to set the prefix and the bound on each call before connecting.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// Connects to one Redis node at `url` (`redis://host:port/db`), with the
    /// defaults. Fails if Redis cannot be reached now; later outages are absorbed.
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        Self::builder().connect(url).await
    }

    /// Connects to a Redis Cluster through `nodes` (any of its nodes), with
    /// the defaults. Fails if none can be reached now; later outages are absorbed.
    pub async fn connect_cluster<T: IntoConnectionInfo>(
        nodes: impl IntoIterator<Item = T>,
    ) -> redis::RedisResult<Self> {
        Self::builder().connect_cluster(nodes).await
    }

    fn new(connection: Connection, prefix: String, timeout: Duration) -> Self {
        RedisStore {
            connection,
            prefix,
            timeout,
            extend: redis::Script::new(scripts::EXTEND),
            spend: redis::Script::new(scripts::SPEND),
            outage: redis::Script::new(scripts::OUTAGE),
            outage_news: redis::Script::new(scripts::OUTAGE_NEWS),
            fallback: MemoryStore::new(),
            health: Mutex::new(Health::default()),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` within the timeout, unless Redis failed less than [`BACK_OFF`] ago.
    async fn bounded<T>(&self, action: &str, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        if self.health().down_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, call).await;
        let now = Instant::now();
        let elapsed_us = u64::try_from((now - started).as_micros()).unwrap_or(u64::MAX);
        tracing::trace!(action, elapsed_us, ok = matches!(outcome, Ok(Ok(_))), "Redis store call");
        let error = match outcome {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        let mut health = self.health();
        health.down_until = Some(now + BACK_OFF);
        if health.last_warning.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            health.last_warning = Some(now);
            tracing::warn!(%error, action, "Redis store unavailable; using the in-memory store");
        }
        None
    }
}

/// What each window's hash appends to its key's cooldown name, by slot
/// (requests, tokens, input tokens, output tokens).
const WINDOWS: [&str; SLOTS] = ["budget", "tokens", "input-tokens", "output-tokens"];

/// The Redis key of a rate-limit key (see "Key format"): its cooldown; each
/// window's hash appends one of [`WINDOWS`].
fn cooldown_name(prefix: &str, key: &str) -> String {
    format!("{prefix}{FORMAT}{{{key}}}")
}

/// The Redis keys of a host's outage record and of its probe lease.
fn outage_names(prefix: &str, host: &str) -> (String, String) {
    let record = format!("{prefix}{FORMAT}outage:{{{host}}}");
    let lease = format!("{record}:probe");
    (record, lease)
}

/// A duration in whole milliseconds, at least 1 and at most a century (Redis
/// refuses a `PX` of 0, or one past a signed 64-bit time: a lease of
/// `Duration::MAX` would fail the call and leave the store down).
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.min(crate::clock::NEVER).as_millis()).unwrap_or(u64::MAX).max(1)
}

impl sealed::Sealed for RedisStore {}

impl SharedStore for RedisStore {
    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        Box::pin(self.extend_shared(key, until))
    }

    fn spend<'a>(&'a self, key: &'a str, spend: Spend) -> StoreFuture<'a, Option<SystemTime>> {
        Box::pin(self.spend_shared(key, spend))
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> StoreFuture<'a, OutageTurn> {
        Box::pin(self.outage_turn(host, query))
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> StoreFuture<'a, ()> {
        Box::pin(self.outage_report(host, report))
    }
}

// The store's calls, boxed by the `SharedStore` impl above.
impl RedisStore {
    async fn extend_shared(&self, key: &str, until: SystemTime) {
        // Memory always knows too, so an outage loses nothing this process learned.
        self.fallback.extend_now(key, until);
        let Ok(ttl) = until.duration_since(SystemTime::now()) else { return };
        let mut invocation = self.extend.key(cooldown_name(&self.prefix, key));
        invocation.arg(window::epoch_ms(until)).arg(ms(ttl));
        let mut connection = self.connection.clone();
        self.bounded("extend", invocation.invoke_async::<i64>(&mut connection)).await;
    }

    async fn spend_shared(&self, key: &str, spend: Spend) -> Option<SystemTime> {
        let now = SystemTime::now();
        let local = self.fallback.cooldown_at(key, now);
        let name = cooldown_name(&self.prefix, key);
        let mut invocation = self.spend.key(&name);
        for window in WINDOWS {
            invocation.key(format!("{name}:{window}"));
        }
        invocation.arg(window::epoch_ms(now)).arg(window::OPEN_FOR);
        for part in spend.parts() {
            let view = part.and_then(|part| part.view);
            let (end, length, limit, told) = view.map_or((0, 0, 0, false), |v| (v.end, v.length, v.limit, v.told));
            let used = view.and_then(|v| v.used).map_or(-1, |used| i64::try_from(used).unwrap_or(i64::MAX));
            invocation.arg(u8::from(part.is_some())).arg(end).arg(length).arg(limit).arg(u8::from(told));
            invocation.arg(used).arg(part.map_or(0, |part| part.cost));
        }
        let mut connection = self.connection.clone();
        // On an outage, memory answers: the cooldowns this process knows, and its own pacing.
        let remote = self
            .bounded("spend", invocation.invoke_async::<u64>(&mut connection))
            .await
            .filter(|ms| *ms > 0)
            .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
        local.into_iter().chain(remote).filter(|until| *until > now).max()
    }

    async fn outage_turn(&self, host: &str, query: OutageQuery) -> OutageTurn {
        let (record, lease) = outage_names(&self.prefix, host);
        let mut invocation = self.outage.key(&record);
        invocation.key(&lease);
        invocation
            .arg(window::epoch_ms(SystemTime::now()))
            .arg(query.since.map_or(0, window::epoch_ms))
            .arg(ms(query.lease))
            .arg(ms(RECORD_TTL));
        let mut connection = self.connection.clone();
        let Some(answer) = self.bounded("outage", invocation.invoke_async::<i64>(&mut connection)).await else {
            // Down: this process's memory answers, so that it probes on its own.
            return self.fallback.outage_now(host, query);
        };
        match answer {
            0 => OutageTurn::Up,
            ..0 => OutageTurn::Probe,
            at => OutageTurn::Wait(crate::clock::wall_later(
                SystemTime::UNIX_EPOCH,
                Duration::from_millis(at.unsigned_abs()),
            )),
        }
    }

    async fn outage_report(&self, host: &str, report: OutageReport) {
        // Memory hears it too, for when Redis is down.
        self.fallback.report_outage_now(host, report);
        let now = SystemTime::now();
        let (kind, at) = match report {
            OutageReport::ProbeFailed { next_probe } => ("failed", next_probe),
            OutageReport::ProbeAbandoned => ("abandoned", now),
            OutageReport::Recovered => ("up", now),
        };
        let (record, lease) = outage_names(&self.prefix, host);
        let mut invocation = self.outage_news.key(&record);
        invocation.key(&lease);
        invocation.arg(kind).arg(window::epoch_ms(at)).arg(ms(RECORD_TTL));
        let mut connection = self.connection.clone();
        self.bounded("report_outage", invocation.invoke_async::<i64>(&mut connection)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_takes_the_same_round_lengths_as_memory() {
        let list = scripts::SPEND.split("local rounds = {").nth(1).and_then(|rest| rest.split('}').next());
        let rounds: Vec<u64> = list.unwrap().split(',').map(|n| n.trim().parse().unwrap()).collect();
        assert_eq!(rounds, crate::store::window::ROUND_LENGTHS);
    }

    /// Redis Cluster's hash tag of a key: what is between its first `{` and the
    /// first `}` after it, when not empty; else the whole key.
    fn hash_tag(key: &str) -> &str {
        let Some(open) = key.find('{') else { return key };
        match key[open + 1..].find('}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        }
    }

    #[test]
    fn keys_name_the_format_version_after_the_prefix() {
        // A protocol between processes: changing this is a major release (see the type's docs).
        assert_eq!(RedisStore::DEFAULT_PREFIX, "llmretry:");
        let key = "openai:api.openai.com:443:813f88be1d7d9385dc89f7235a444860";
        assert_eq!(
            cooldown_name(RedisStore::DEFAULT_PREFIX, key),
            "llmretry:v2:{openai:api.openai.com:443:813f88be1d7d9385dc89f7235a444860}"
        );
        assert_eq!(cooldown_name("fleet-a:", "k"), "fleet-a:v2:{k}");
        let (record, lease) = outage_names("llmretry:", "api.anthropic.com:443");
        assert_eq!(record, "llmretry:v2:outage:{api.anthropic.com:443}");
        assert_eq!(lease, "llmretry:v2:outage:{api.anthropic.com:443}:probe");
    }

    #[test]
    fn every_scripts_keys_share_one_hash_tag() {
        // A Redis Cluster refuses a script whose keys live in different slots (CROSSSLOT).
        let key = "openai:api.openai.com:443:813f88be1d7d9385dc89f7235a444860";
        for prefix in ["llmretry:", "a{b:", "x{}:", "{tenant-7}:", "}{"] {
            let prefix = &RedisStore::builder().prefix(prefix).prefix;
            let cooldown = cooldown_name(prefix, key);
            for window in WINDOWS {
                assert_eq!(hash_tag(&cooldown), hash_tag(&format!("{cooldown}:{window}")), "{prefix}");
            }
            let (record, lease) = outage_names(prefix, "api.openai.com:443");
            assert_eq!(hash_tag(&record), hash_tag(&lease), "{prefix}");
        }
        // Keys spread over the cluster: one tag per key and per host, whatever the prefix.
        let prefix = &RedisStore::builder().prefix("x{}:").prefix;
        assert_eq!(prefix, "x():");
        assert_eq!(hash_tag(&cooldown_name(prefix, key)), key);
        assert_eq!(hash_tag(&outage_names(prefix, "h:443").0), "h:443");
    }

    #[test]
    fn expiries_are_whole_milliseconds_that_redis_accepts() {
        assert_eq!(ms(Duration::ZERO), 1, "a PX of 0 is refused");
        assert_eq!(ms(Duration::from_micros(2_999)), 2);
        let century = ms(Duration::MAX);
        assert_eq!(century, 3_153_600_000_000);
        assert!(century < i64::MAX as u64 / 2, "far inside a signed 64-bit expiry");
    }
}
