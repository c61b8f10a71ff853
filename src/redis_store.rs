//! A [`CooldownStore`] in Redis, so a fleet of processes sharing one API key
//! slows down together (feature `redis`).
//!
//! Keys are `{prefix}v1:{provider}:{host}:{port}:{fingerprint}`, values the
//! cooldown's end in milliseconds since the Unix epoch, with an expiry (`PX`)
//! at that time: nothing is left behind, and neither keys nor values contain
//! a secret. The `v1:` names the key format, which processes of different
//! versions share (see [`RedisCooldownStore`]). Every call is bounded by a short timeout; when Redis is down or
//! slow, the store answers from memory and logs a warning (at most one every
//! 30 s): a Redis outage never fails or stalls a request.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::cooldown::{CooldownStore, MemoryCooldownStore, View, Window, shared_window};
use crate::health::{OutageQuery, OutageReport, OutageTurn};

/// The version of the key and value format, after the prefix. Part of the
/// protocol between processes: changing the format means a new version here,
/// in a major release (see [`RedisCooldownStore`]).
const FORMAT: &str = "v1:";

/// Keeps the later of the stored and the new end time, with its expiry. A
/// value that is not a number (nothing this crate writes) counts as none.
const EXTEND: &str = r"
local current = tonumber(redis.call('GET', KEYS[1])) or 0
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1";

/// The cooldown if any (its end), else spends one request of the shared
/// window (`KEYS[2]`, a hash), or says when to ask again: the rules of
/// `cooldown::shared_window`, line for line (its tests are this script's
/// specification; `tests/redis_store.rs` runs both against the same cases).
/// One round trip per send; the window's key expires eight windows (at least
/// a minute) after its end. ARGV: now, then the asker's view of the window
/// (ms since the epoch; all 0 without one): its end, its length (0 when
/// unknown), its limit, whether a server told the end (1 or 0); then how
/// long sends are counted before anyone knows the window.
const SPEND: &str = r"
local now = tonumber(ARGV[1])
local cooled = tonumber(redis.call('GET', KEYS[1]) or '0')
if cooled > now then return cooled end
local vend, vlen, vlimit, vtold = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local viewed = vend > 0 and vlimit > 0
local s = redis.call('HMGET', KEYS[2], 'end', 'length', 'limit', 'spent', 'told', 'origin')
local e, len, limit, spent, told, origin
if s[1] and tonumber(s[3]) > 0 then
  e, len, limit, spent = tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
  told, origin = s[5] == '1', tonumber(s[6])
else
  local open = 0
  if s[1] and now < tonumber(s[1]) then open = tonumber(s[4]) end
  if viewed and vend > now then
    e, len, limit, spent, told, origin = vend, vlen, vlimit, open, vtold, 0
    if vtold then origin = vend end
  elseif open > 0 then
    redis.call('HINCRBY', KEYS[2], 'spent', 1)
    return 0
  else
    redis.call('HSET', KEYS[2], 'end', now + ARGV[6], 'length', 0, 'limit', 0, 'spent', 1, 'told', 0, 'origin', 0)
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
    return 0
  end
end
if viewed then
  limit = vlimit
  if len == 0 then len = vlen end
end
local function guard() return math.floor(len / 32) + 2 end
local function same() if len > 0 then return math.floor(len / 4) end return 20 end
local function roll(with_view)
  if now < e + guard() then return true end
  if len > 0 then
    e = e + (math.floor((now - e - guard()) / len) + 1) * len
  elseif with_view and vend > now then
    e = vend
  else
    return false
  end
  spent = 0
  told = with_view and vtold and vend == e
  return true
end
if not roll(viewed) then redis.call('DEL', KEYS[2]) return 0 end
if viewed and vtold and math.abs(vend - e) < same() then
  if told then e = math.min(e, vend) else e = vend end
  told = true
  if origin == 0 or math.abs(origin - e) < same() or len == 0 then
    if math.abs(origin - e) < same() then origin = math.min(origin, e) else origin = e end
  elseif e > origin then
    local windows = math.floor((e - origin + math.floor(len / 2)) / len)
    len = math.floor((e - origin + math.floor(windows / 2)) / math.max(windows, 1))
  end
  if not roll(false) then redis.call('DEL', KEYS[2]) return 0 end
end
local answer = 0
if now + guard() >= e or spent >= limit then answer = e + guard() else spent = spent + 1 end
redis.call('HSET', KEYS[2], 'end', e, 'length', len, 'limit', limit, 'spent', spent, 'told', told and 1 or 0, 'origin', origin)
redis.call('PEXPIRE', KEYS[2], e - now + math.max(len * 8, 60000))
return answer";

/// A provider host's outage for the fleet (`health::shared::turn`, line by
/// line): KEYS[1] the host's record (a hash: `next`, the next probe's time,
/// while down; `up`, when it recovered), KEYS[2] the probe lease. ARGV: now,
/// the asker's outage start (0: none), the lease's and the record's life in
/// ms. Returns 0 (up), -1 (probe: the lease is the caller's) or when to ask again.
const OUTAGE: &str = r"
local now = tonumber(ARGV[1])
local since = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'next', 'up')
local due = tonumber(state[1])
if not due then
  local up = tonumber(state[2])
  if since == 0 or (up and up >= since) then return 0 end
  due = now
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'next', due)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local lease = redis.call('PTTL', KEYS[2])
if lease > 0 then return now + lease end
if due > now then return due end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return -1";

/// News of an outage (`health::shared::apply`): KEYS as for [`OUTAGE`];
/// ARGV: `failed` (with the next probe's time), `abandoned` or `up`; a time
/// (ms); the record's life in ms.
const OUTAGE_NEWS: &str = r"
redis.call('DEL', KEYS[2])
if ARGV[1] == 'up' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'up', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif ARGV[1] == 'failed' and redis.call('HEXISTS', KEYS[1], 'next') == 1 then
  redis.call('HSET', KEYS[1], 'next', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1";

/// How often an outage is logged.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// After a failed call, Redis is left alone this long, so an outage costs one
/// timeout per second rather than one per request.
const BACK_OFF: Duration = Duration::from_secs(1);

/// A [`CooldownStore`] shared through Redis, falling back to memory on outages.
///
/// # Key format
///
/// A cooldown of requests to `provider` at `host:port` with one credential
/// is the Redis string `{prefix}v1:{provider}:{host}:{port}:{fingerprint}`
/// (for instance `llmretry:v1:openai:api.openai.com:443:813f…4860`), where
/// `fingerprint` is 32 hex digits of a keyed hash of the credential (never
/// the credential itself). Its value is the cooldown's end in milliseconds
/// since the Unix epoch, as a decimal integer; it expires then.
///
/// The key's window budget, shared by the fleet, is the same name with
/// `:budget` appended: a hash of decimal integers, `end` (the window's end,
/// epoch milliseconds), `length` (ms, 0 when unknown), `limit` (0 while sends
/// are counted before anyone knows the window), `spent`, `told` (1 when a
/// server told `end`, 0 when rolled) and `origin` (the earliest told end of
/// an earlier window, 0 when none). It expires eight windows (at least a
/// minute) after `end`, or a second after the first send it counted with no
/// window known.
///
/// A provider host's outage is the hash `{prefix}v1:outage:{host}:{port}`
/// (field `next`: when the next probe is due, while the host is down; field
/// `up`: when it recovered; times in ms since the epoch), living 60 s after
/// its last news, and the probe lease is `{prefix}v1:outage:{host}:{port}:probe`,
/// living as long as the lease (10 s).
///
/// The format is a protocol between processes: every process of a fleet
/// reads what the others write, and a rolling deploy runs two releases side
/// by side. So it is covered by semver. It changes only with a new format
/// version (`v2:`), and only in a major release; processes on different
/// format versions then keep separate cooldowns rather than misread each
/// other's. A custom [`prefix`](Self::prefix) replaces only the namespace
/// before the version.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis::RedisError> {
/// use reqwest_llm_retry::{LlmRetryMiddleware, RedisCooldownStore};
/// let store = RedisCooldownStore::connect("redis://127.0.0.1:6379/").await?;
/// let middleware = LlmRetryMiddleware::builder().cooldown_store(store).build();
/// # Ok(()) }
/// ```
pub struct RedisCooldownStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    spend: redis::Script,
    outage: redis::Script,
    outage_news: redis::Script,
    fallback: MemoryCooldownStore,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    last_warning: Option<Instant>,
    down_until: Option<Instant>,
}

impl std::fmt::Debug for RedisCooldownStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection's debug output would show the URL, which may carry a password.
        f.debug_struct("RedisCooldownStore").field("prefix", &self.prefix).field("timeout", &self.timeout).finish()
    }
}

impl RedisCooldownStore {
    /// The default key prefix: the namespace before the format version.
    pub const DEFAULT_PREFIX: &'static str = "llmretry:";
    /// The default bound on each Redis call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// Connects to `url` (`redis://host:port/db`). Fails if Redis cannot be
    /// reached now; later outages are absorbed (see the type's docs).
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Self::DEFAULT_TIMEOUT))
            .set_response_timeout(Some(Self::DEFAULT_TIMEOUT))
            .set_number_of_retries(1);
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(Self::with_connection(connection))
    }

    /// Uses an existing connection manager.
    pub fn with_connection(connection: ConnectionManager) -> Self {
        RedisCooldownStore {
            connection,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            script: redis::Script::new(EXTEND),
            spend: redis::Script::new(SPEND),
            outage: redis::Script::new(OUTAGE),
            outage_news: redis::Script::new(OUTAGE_NEWS),
            fallback: MemoryCooldownStore::new(),
            health: Mutex::new(Health::default()),
        }
    }

    /// Prefixes every key with `prefix` (default [`Self::DEFAULT_PREFIX`]);
    /// the format version follows it (see the key format above).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each Redis call (default [`Self::DEFAULT_TIMEOUT`]); past it, memory answers.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The Redis key of a cooldown key: the one place keys are built (a window's
    /// budget appends `:budget` to it).
    /// The Redis key of `key`: the one place key names are built (see "Key format").
    fn name(&self, key: &str) -> String {
        redis_key(&self.prefix, key)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` within the timeout, unless Redis failed less than [`BACK_OFF`] ago.
    async fn bounded<T>(&self, action: &str, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        if self.health().down_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let error = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        let now = Instant::now();
        let mut health = self.health();
        health.down_until = Some(now + BACK_OFF);
        if health.last_warning.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            health.last_warning = Some(now);
            tracing::warn!(%error, action, "Redis cooldown store unavailable; using the in-memory store");
        }
        None
    }
}

/// The Redis key of a cooldown key: prefix, format version, key.
fn redis_key(prefix: &str, key: &str) -> String {
    format!("{prefix}{FORMAT}{key}")
}

/// A duration in whole milliseconds, at least 1 (Redis refuses a `PX` of 0).
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl CooldownStore for RedisCooldownStore {
    fn get<'a>(&'a self, key: &'a str) -> crate::cooldown::StoreFuture<'a, Option<SystemTime>> {
        Box::pin(self.load(key))
    }

    fn extend<'a>(&'a self, key: &'a str, until: SystemTime) -> crate::cooldown::StoreFuture<'a, ()> {
        Box::pin(self.store(key, until))
    }

    fn spend<'a>(
        &'a self,
        key: &'a str,
        window: Option<Window>,
    ) -> crate::cooldown::StoreFuture<'a, Option<SystemTime>> {
        Box::pin(self.spend_shared(key, window))
    }

    fn outage<'a>(&'a self, host: &'a str, query: OutageQuery) -> crate::cooldown::StoreFuture<'a, Option<OutageTurn>> {
        Box::pin(self.outage_turn(host, query))
    }

    fn report_outage<'a>(&'a self, host: &'a str, report: OutageReport) -> crate::cooldown::StoreFuture<'a, ()> {
        Box::pin(self.outage_report(host, report))
    }
}

// The store's calls, boxed by the `CooldownStore` impl above.
impl RedisCooldownStore {
    async fn load(&self, key: &str) -> Option<SystemTime> {
        let local = self.fallback.get_now(key);
        let mut connection = self.connection.clone();
        let name = self.name(key);
        let remote = self
            .bounded("get", redis::cmd("GET").arg(&name).query_async::<Option<u64>>(&mut connection))
            .await
            .flatten()
            .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
        let now = SystemTime::now();
        local.into_iter().chain(remote).filter(|until| *until > now).max()
    }

    /// The shared window's budget is that window's key, the cooldown's with `:budget` appended.
    async fn spend_shared(&self, key: &str, window: Option<Window>) -> Option<SystemTime> {
        let local = self.fallback.get_now(key);
        let mut connection = self.connection.clone();
        let name = self.name(key);
        let mut invocation = self.spend.key(&name);
        invocation.key(format!("{name}:budget"));
        let now = SystemTime::now();
        let view = window.and_then(View::of).unwrap_or(View { end: 0, length: 0, limit: 0, told: false });
        invocation.arg(epoch_ms(now)).arg(view.end).arg(view.length).arg(view.limit).arg(u8::from(view.told));
        invocation.arg(shared_window::OPEN_FOR);
        // On an outage, memory answers: the cooldowns this process knows, and its own pacing.
        let remote = self
            .bounded("spend", invocation.invoke_async::<u64>(&mut connection))
            .await
            .filter(|ms| *ms > 0)
            .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
        local.into_iter().chain(remote).filter(|until| *until > now).max()
    }

    /// A host's outage record and its probe lease: `outage:{host}:{port}`, and that with `:probe`.
    fn outage_keys(&self, host: &str) -> (String, String) {
        let record = self.name(&format!("outage:{host}"));
        let lease = format!("{record}:probe");
        (record, lease)
    }

    async fn outage_turn(&self, host: &str, query: OutageQuery) -> Option<OutageTurn> {
        let (record, lease) = self.outage_keys(host);
        let mut invocation = self.outage.key(&record);
        invocation.key(&lease);
        let now = SystemTime::now();
        invocation
            .arg(epoch_ms(now))
            .arg(query.since.map_or(0, epoch_ms))
            .arg(ms(query.lease))
            .arg(ms(crate::health::RECORD_TTL));
        let mut connection = self.connection.clone();
        let Some(answer) = self.bounded("outage", invocation.invoke_async::<i64>(&mut connection)).await else {
            // Down: this process's memory answers, so that it probes on its own.
            return Some(self.fallback.outage_now(host, query));
        };
        Some(match answer {
            0 => OutageTurn::Up,
            ..0 => OutageTurn::Probe,
            at => OutageTurn::Wait(SystemTime::UNIX_EPOCH + Duration::from_millis(at.unsigned_abs())),
        })
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
        let (record, lease) = self.outage_keys(host);
        let mut invocation = self.outage_news.key(&record);
        invocation.key(&lease);
        invocation.arg(kind).arg(epoch_ms(at)).arg(ms(crate::health::RECORD_TTL));
        let mut connection = self.connection.clone();
        self.bounded("report_outage", invocation.invoke_async::<i64>(&mut connection)).await;
    }

    async fn store(&self, key: &str, until: SystemTime) {
        // Memory always knows too, so an outage loses nothing this process learned.
        self.fallback.extend_now(key, until);
        let Ok(ttl) = until.duration_since(SystemTime::now()) else { return };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.connection.clone();
        let name = self.name(key);
        let mut invocation = self.script.key(&name);
        invocation.arg(epoch_ms(until)).arg(ttl_ms);
        self.bounded("extend", invocation.invoke_async::<i64>(&mut connection)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_format_version_after_the_prefix() {
        // A protocol between processes: changing this is a major release (see the type's docs).
        assert_eq!(RedisCooldownStore::DEFAULT_PREFIX, "llmretry:");
        let key = "openai:api.openai.com:443:813f88be1d7d9385dc89f7235a444860";
        assert_eq!(
            redis_key(RedisCooldownStore::DEFAULT_PREFIX, key),
            "llmretry:v1:openai:api.openai.com:443:813f88be1d7d9385dc89f7235a444860"
        );
        assert_eq!(redis_key("fleet-a:", "k"), "fleet-a:v1:k");
        assert_eq!(epoch_ms(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), 1_700_000_000_123);
    }
}
