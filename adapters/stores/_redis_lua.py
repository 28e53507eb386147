"""The Lua scripts of the Redis store: each one reads and writes atomically, across instances."""

# KEYS: entry, pending, queue, seq[, counter].
# ARGV: event, progress, attempts, received_at, status, dedup ms, key, conversation key[, counter ms].
# With a counter (a per-person rate limit), a new pending entry also counts in it (as INCR below)
# and keeps the count in n.
JOURNAL_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[5] ~= 'pending' then
  redis.call('HSET', KEYS[1], 's', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return 1
end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'p', ARGV[2], 'a', ARGV[3], 'c', ARGV[8], 'q', seq)
if KEYS[5] then
  local n = redis.call('INCR', KEYS[5])
  if redis.call('PTTL', KEYS[5]) < 0 then redis.call('PEXPIRE', KEYS[5], ARGV[9]) end
  redis.call('HSET', KEYS[1], 'n', n)
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
return 1
"""
# The fields of a pending entry that reading it returns, in this order: event, progress, attempts,
# the read noted by TURN_READ (r) and the rate count (n); then q, the arrival sequence.
_FIELDS = "'e', 'p', 'a', 'r', 'n', 'q'"
# KEYS: queue. ARGV: journal key prefix. The head of one conversation in one round trip: the
# entry with the lowest received_at, ties broken by arrival sequence. It reads the journal hashes
# of the queue's members, keys it derives itself (this store serves one Redis, not a Cluster,
# whose slots its multi-key scripts already span). Returns {key, event, progress, attempts} or nil.
JOURNAL_HEAD = """
local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local best, best_score, best_seq = nil, nil, nil
for i = 1, #items, 2 do
  local score = tonumber(items[i + 1])
  if best_score and score > best_score then break end
  local row = redis.call('HMGET', ARGV[1] .. items[i], """ + _FIELDS + """)
  if row[1] and row[2] and row[3] and row[6] then
    local seq = tonumber(row[6])
    if not best or seq < best_seq then
      best, best_score, best_seq = {items[i], row[1], row[2], row[3], row[4], row[5]}, score, seq
    end
  end
end
return best
"""
# KEYS: entry. ARGV: progress, attempts. A finished entry is never brought back to life.
JOURNAL_PROGRESS = """
if redis.call('HEXISTS', KEYS[1], 'e') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'a', ARGV[2])
return 1
"""
# KEYS: lock. ARGV: owner, lease ms. The lease fence of a running turn's writes (a Lua snippet):
# nothing is written unless the drain still holds the lease, or takes it again because it expired
# and nobody took it meanwhile.
_FENCE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return -1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
"""
# KEYS: entry, lock. ARGV: progress, attempts, owner, lease ms. JOURNAL_PROGRESS behind the fence:
# -1 when another drain holds the lease.
JOURNAL_PROGRESS_LEASED = _FENCE.replace("KEYS[1]", "KEYS[2]").replace("ARGV[1]", "ARGV[3]").replace(
    "ARGV[2]", "ARGV[4]") + JOURNAL_PROGRESS
# KEYS: entry, pending, queue. ARGV: status, dedup ms, key.
JOURNAL_FINISH = """
if redis.call('HEXISTS', KEYS[1], 'e') == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
"""
# KEYS: counter. ARGV: window ms. The expiry is set once, when the window opens.
INCR = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
# KEYS: lock. ARGV: owner, ms. Take a free lease or extend our own, never someone else's.
TRY_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: identity hash, the identity index. ARGV: at, conversation key, ttl ms, identity key, cutoff.
# The hash holds f (first seen), l (last seen) and c:<conversation key> = last seen there; past 32
# conversations, those older than the cutoff are dropped so a busy identity's hash stays small.
TOUCH_IDENTITY = """
if redis.call('HSETNX', KEYS[1], 'f', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'l', ARGV[1])
elseif tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[1], 'l') or '0') then
  redis.call('HSET', KEYS[1], 'l', ARGV[1])
end
redis.call('HSET', KEYS[1], 'c:' .. ARGV[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) > 34 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'c:' and tonumber(all[i + 1]) <= tonumber(ARGV[5]) then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return 1
"""

# The head search of JOURNAL_HEAD as a Lua function, for the combined scripts below; it counts
# the attempt on the entry it returns (the dispatcher runs every head it is given).
_COUNTED_HEAD = """
local function counted_head(queue, prefix)
  local items = redis.call('ZRANGE', queue, 0, -1, 'WITHSCORES')
  local best, best_score, best_seq = nil, nil, nil
  for i = 1, #items, 2 do
    local score = tonumber(items[i + 1])
    if best_score and score > best_score then break end
    local row = redis.call('HMGET', prefix .. items[i], """ + _FIELDS + """)
    if row[1] and row[2] and row[3] and row[6] then
      local seq = tonumber(row[6])
      if not best or seq < best_seq then
        best, best_score, best_seq = {items[i], row[1], row[2], row[3], row[4], row[5]}, score, seq
      end
    end
  end
  if best then best[4] = tostring(redis.call('HINCRBY', prefix .. best[1], 'a', 1)) end
  return best
end
"""
# KEYS: lock, queue. ARGV: owner, lease ms, journal key prefix.
# {0} while another owner holds the lease; else {1} or {1, key, event, progress, attempts, r, n}.
LOCK_HEAD = _COUNTED_HEAD + """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local best = counted_head(KEYS[2], ARGV[3])
if not best then return {1} end
return {1, best[1], best[2], best[3], best[4], best[5], best[6]}
"""
# KEYS: entry, pending, queue, lock. ARGV: status, dedup ms, key, journal key prefix, owner, lease ms.
# Finishes the entry (as JOURNAL_FINISH), then returns the next head with the lease renewed, or
# nil after giving the lease back (only if this owner holds it).
FINISH_NEXT = _COUNTED_HEAD + """
if redis.call('HEXISTS', KEYS[1], 'e') == 1 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 's', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
local best = counted_head(KEYS[3], ARGV[4])
local mine = redis.call('GET', KEYS[4]) == ARGV[5]
if best then
  if mine then redis.call('PEXPIRE', KEYS[4], ARGV[6]) end
  return best
end
if mine then redis.call('DEL', KEYS[4]) end
return nil
"""
# KEYS: identity hash, identity index, conversation, links bucket, v1 link[, journal entry]. ARGV:
# as TOUCH_IDENTITY, at = '' to skip the touch, then the identity key[, then the time of the read].
# With the entry, the read is noted on it (r: JSON [time, conversation, link]) if it is pending and
# has none yet: a resumed turn learns from it that the agent may have been asked, and in which
# conversation. Returns {conversation, v2 link, v1 link, 1 if noted else 0}, false for each one
# missing (the caller moves a v1 link: see _redis_links; a v1 link wins, as there).
TURN_READ = """
if ARGV[1] ~= '' then
""" + TOUCH_IDENTITY.replace("return 1\n", "") + """
end
local conv, new, old = redis.call('GET', KEYS[3]), redis.call('HGET', KEYS[4], ARGV[6]), redis.call('GET', KEYS[5])
local noted = 0
if KEYS[6] and redis.call('HEXISTS', KEYS[6], 'e') == 1 and redis.call('HSETNX', KEYS[6], 'r',
    cjson.encode({ARGV[7], conv or '', old or new or ''})) == 1 then
  noted = 1
end
return {conv, new, old, noted}
"""
# KEYS: conversation, message map value. ARGV: state encoded not paused, encoded paused, its own
# paused ('1' or ''), conversation ms, message map value, message map ms.
# A pause set or lifted meanwhile (staff, an operator) wins; returns the paused flag written.
REMEMBER = """
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6]) end
local cur = redis.call('GET', KEYS[1])
local paused = ARGV[3] == '1'
if cur then
  if string.sub(cur, 1, 1) == '[' then paused = string.sub(cur, -5) == 'true]'
  else paused = string.sub(cur, -1) == '1' end
end
redis.call('SET', KEYS[1], paused and ARGV[2] or ARGV[1], 'PX', ARGV[4])
return paused and 1 or 0
"""
# KEYS: entry, conversation, message map value[, lock]. ARGV: progress, attempts, then REMEMBER's
# six[, owner, lease ms]. The answer saved in the progress (unless the entry finished meanwhile)
# and, with it, REMEMBER; with a lock, behind the fence (-1 when another drain holds the lease).
SAVE_ANSWER = """
if KEYS[4] then
""" + _FENCE.replace("KEYS[1]", "KEYS[4]").replace("ARGV[1]", "ARGV[9]").replace("ARGV[2]", "ARGV[10]") + """
end
if redis.call('HEXISTS', KEYS[1], 'e') == 1 then redis.call('HSET', KEYS[1], 'p', ARGV[1], 'a', ARGV[2]) end
""" + REMEMBER.replace("KEYS[2]", "KEYS[3]").replace("KEYS[1]", "KEYS[2]").replace(
    "ARGV[6]", "ARGV[8]").replace("ARGV[5]", "ARGV[7]").replace("ARGV[4]", "ARGV[6]").replace(
    "ARGV[3]", "ARGV[5]").replace("ARGV[2]", "ARGV[4]").replace("ARGV[1]", "ARGV[3]")
