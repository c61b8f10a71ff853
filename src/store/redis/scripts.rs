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

/// Spends one send from each window it has a part in, all or none, or says
/// when to ask again (the cooldown's end, or a window's): the rules of
/// `store::window::spend_all`, line for line (its tests are this script's
/// specification; `tests/redis_store/` runs both against the same cases).
/// One round trip per send. KEYS: the cooldown, then the four windows' hashes
/// (requests, tokens, input tokens, output tokens), each expiring eight
/// windows (at least a minute) after its end. ARGV: now (ms since the epoch),
/// how long sends are counted before anyone knows the request window, then
/// for each window 7 values: whether the send has a part in it (1 or 0), the
/// asker's view of it (all 0 without one): its end, its length (0 when
/// unknown), its limit, whether a server told the end (1 or 0), what is known
/// to be used of it (-1 when unknown); and the send's cost in it.
pub(super) const SPEND: &str = r"
local now, open_for = tonumber(ARGV[1]), tonumber(ARGV[2])
local cooled = tonumber(redis.call('GET', KEYS[1]) or '0')
local function guard(len) return math.floor(len / 32) + 2 end
local function same(len) if len > 0 then return math.floor(len / 4) end return 20 end
local rounds = {10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 30000, 50000, 60000, 100000,
  200000, 500000, 1000000, 2000000, 3600000, 5000000, 10000000, 20000000, 50000000, 86400000}
local function round_length(len)
  for _, r in ipairs(rounds) do
    if math.abs(len - r) * 16 <= r then return r end
  end
  return len
end
local function fresh() return {e = now + open_for, len = 0, limit = 0, spent = 0, told = false, origin = 0} end
local function settle(key, v, open)
  local s = redis.call('HMGET', key, 'end', 'length', 'limit', 'spent', 'told', 'origin')
  local stored = s[1] and (tonumber(s[3]) > 0 or now < tonumber(s[1]))
  local st
  if stored and tonumber(s[3]) > 0 then
    st = {e = tonumber(s[1]), len = tonumber(s[2]), limit = tonumber(s[3]), spent = tonumber(s[4]),
      told = s[5] == '1', origin = tonumber(s[6])}
  else
    local counted = 0
    if stored then counted = tonumber(s[4]) end
    if v and v.e > now then
      st = {e = v.e, len = v.len, limit = v.limit, spent = counted, told = v.told, origin = 0}
      if v.told then st.origin = v.e end
    elseif stored then
      return {e = tonumber(s[1]), len = 0, limit = 0, spent = counted, told = false, origin = 0}
    elseif open then
      return fresh()
    else
      return nil
    end
  end
  if v then
    st.limit = v.limit
    if st.len == 0 then st.len = v.len end
  end
  local function roll(with_view)
    if now < st.e + guard(st.len) then return true end
    if st.len > 0 then
      st.e = st.e + (math.floor((now - st.e - guard(st.len)) / st.len) + 1) * st.len
    elseif with_view and v.e > now then
      st.e = v.e
    else
      return false
    end
    st.spent = 0
    st.told = with_view and v.told and v.e == st.e
    return true
  end
  if not roll(v ~= nil) then return fresh() end
  if v and v.told and math.abs(v.e - st.e) < same(st.len) then
    if st.told then st.e = math.min(st.e, v.e) else st.e = v.e end
    st.told = true
    local sm = same(st.len)
    if st.origin == 0 or math.abs(st.origin - st.e) < sm or st.len == 0 then
      if math.abs(st.origin - st.e) < sm then st.origin = math.min(st.origin, st.e) else st.origin = st.e end
    elseif st.e > st.origin then
      local windows = math.floor((st.e - st.origin + math.floor(st.len / 2)) / st.len)
      st.len = round_length(math.floor((st.e - st.origin + math.floor(windows / 2)) / math.max(windows, 1)))
    end
    if not roll(false) then return fresh() end
  end
  if v and v.used >= 0 and math.abs(v.e - st.e) < same(st.len) then st.spent = math.max(st.spent, v.used) end
  return st
end
local slots, wait = {}, 0
if cooled > now then wait = cooled end
for i = 1, 4 do
  local b = 2 + (i - 1) * 7
  if ARGV[b + 1] == '1' then
    local v = nil
    local vend, vlimit = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 4])
    if vend > 0 and vlimit > 0 then
      v = {e = vend, len = tonumber(ARGV[b + 3]), limit = vlimit, told = ARGV[b + 5] == '1', used = tonumber(ARGV[b + 6])}
    end
    local cost = tonumber(ARGV[b + 7])
    local st = settle(KEYS[i + 1], v, i == 1)
    slots[i] = {st = st, cost = cost}
    if st and st.limit > 0 then
      local g = guard(st.len)
      if now + g >= st.e or (cost <= st.limit and st.spent + cost > st.limit) then wait = math.max(wait, st.e + g) end
    end
  end
end
for i = 1, 4 do
  local slot = slots[i]
  if slot and slot.st == nil then
    redis.call('DEL', KEYS[i + 1])
  elseif slot then
    local st = slot.st
    if wait == 0 and (st.limit == 0 or slot.cost <= st.limit) then st.spent = st.spent + slot.cost end
    redis.call('HSET', KEYS[i + 1], 'end', st.e, 'length', st.len, 'limit', st.limit, 'spent', st.spent,
      'told', st.told and 1 or 0, 'origin', st.origin)
    if st.limit == 0 then
      redis.call('PEXPIRE', KEYS[i + 1], st.e - now)
    else
      redis.call('PEXPIRE', KEYS[i + 1], st.e - now + math.max(st.len * 8, 60000))
    end
  end
end
return wait";

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
