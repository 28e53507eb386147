"""The Lua scripts of the Redis store: each one reads and writes atomically, across instances."""

# KEYS: entry, pending, queue, seq.
# ARGV: event, progress, attempts, received_at, status, dedup ms, key, conversation key.
JOURNAL_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[5] ~= 'pending' then
  redis.call('HSET', KEYS[1], 's', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return 1
end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'p', ARGV[2], 'a', ARGV[3], 'c', ARGV[8], 'q', seq)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
return 1
"""
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
  local row = redis.call('HMGET', ARGV[1] .. items[i], 'e', 'p', 'a', 'q')
  if row[1] and row[2] and row[3] and row[4] then
    local seq = tonumber(row[4])
    if not best or seq < best_seq then
      best, best_score, best_seq = {items[i], row[1], row[2], row[3]}, score, seq
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
# KEYS: link, linked set of the current target, linked set of the new target.
# ARGV: expected current target ('' for none), new target, identity key. 0: the link moved meanwhile.
SET_LINK = """
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
if cur then redis.call('SREM', KEYS[2], ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""
# KEYS: link, linked set of the current target. ARGV: expected current target, identity key.
DELETE_LINK = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 1 end
if cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
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
