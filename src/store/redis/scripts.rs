//! The Lua scripts of [`RedisStore`](super::RedisStore): each is the twin,
//! line for line, of a pure function of [`store`](crate::store), so that Redis
//! and memory answer alike. Every script's keys share one hash tag, so that
//! a Redis Cluster runs it on one node.

/// Keeps the later of the stored and the new end time, with its expiry. A
/// value that is not a number (nothing this crate writes) counts as none.
pub(super) const EXTEND: &str = r"
local current = tonumber(redis.call('GET', KEYS[1])) or 0
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1";

/// The cooldown if any (its end), else spends one request of the shared
/// window (`KEYS[2]`, a hash), or says when to ask again: the rules of
/// `store::window::spend`, line for line (its tests are this script's
/// specification; `tests/redis_store.rs` runs both against the same cases).
/// One round trip per send; the window's key expires eight windows (at least
/// a minute) after its end. ARGV: now, then the asker's view of the window
/// (ms since the epoch; all 0 without one): its end, its length (0 when
/// unknown), its limit, whether a server told the end (1 or 0); then how
/// long sends are counted before anyone knows the window.
pub(super) const SPEND: &str = r"
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

/// A provider host's outage for the fleet (`store::outage::turn`, line by
/// line): KEYS[1] the host's record (a hash: `next`, the next probe's time,
/// while down; `up`, when it recovered), KEYS[2] the probe lease. ARGV: now,
/// the asker's outage start (0: none), the lease's and the record's life in
/// ms. Returns 0 (up), -1 (probe: the lease is the caller's) or when to ask again.
pub(super) const OUTAGE: &str = r"
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

/// News of an outage (`store::outage::apply`): KEYS as for [`OUTAGE`];
/// ARGV: `failed` (with the next probe's time), `abandoned` or `up`; a time
/// (ms); the record's life in ms.
pub(super) const OUTAGE_NEWS: &str = r"
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
