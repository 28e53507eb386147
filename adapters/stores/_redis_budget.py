"""The agent rate budget in Redis: :class:`gateway.budget.BucketState`, one Lua call per step.

Key ``switchboard:v1:budget:<budget key>``: a hash with the fields of ``BucketState`` (t tokens,
s stamp, b blocked until, i informed until, n tickets handed out, a newest ticket applied, d
answers observed). Times
come from Redis's own clock (``TIME``), so instances with skewed clocks still share one bucket;
the hash expires when unused for a few windows. The scripts mirror ``BucketState`` line by line:
change both together (tests/test_budget.py runs the same cases against each).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rex

from adapters.stores._redis_batch import Pipeline
from adapters.stores._redis_people import PREFIX
from gateway.budget import Grant, Observation, RateLimit
from gateway.errors import StoreUnavailable

_UNAVAILABLE = (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError, rex.TryAgainError, OSError)

# ARGV[1] requests, ARGV[2] window seconds. Defines now, st (state), shape() and refill().
_COMMON = """
local L, W = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local raw = redis.call('HMGET', KEYS[1], 't', 's', 'b', 'i', 'n', 'a', 'd')
local st = {t = tonumber(raw[1]) or -1, s = tonumber(raw[2]) or 0, b = tonumber(raw[3]) or 0,
            i = tonumber(raw[4]) or 0, n = tonumber(raw[5]) or 0, a = tonumber(raw[6]) or 0,
            d = tonumber(raw[7]) or 0}
local function shape()
  if now < st.i then return L, 0 end
  return L / 2, L / (2 * W)
end
local function refill()
  local full, rate = shape()
  if st.t < 0 then st.t, st.s = full, now end
  local start = math.max(st.s, st.b)
  if now > start then
    if st.s < st.b then
      st.t = math.max(st.t, 1)
      st.d = st.n
    end
    st.t = st.t + (now - start) * rate
  end
  st.t = math.min(st.t, full)
  st.s = math.max(st.s, now)
end
local function save()
  redis.call('HSET', KEYS[1], 't', tostring(st.t), 's', tostring(st.s), 'b', tostring(st.b),
             'i', tostring(st.i), 'n', st.n, 'a', st.a, 'd', st.d)
  redis.call('PEXPIRE', KEYS[1], math.floor(math.max(60, 6 * W) * 1000))
end
"""

# Returns {wait seconds as text, ticket}.
TAKE = _COMMON + """
refill()
local wait, ticket = 0, 0
if now < st.b then
  wait = st.b - now
else
  local _, rate = shape()
  if st.t >= 1 or (rate == 0 and st.d >= st.n) then
    st.t = math.max(0, st.t - 1)
    st.n = st.n + 1
    ticket = st.n
  elseif rate > 0 then
    wait = (1 - st.t) / rate
  else
    wait = W / L
  end
end
save()
return {tostring(wait), ticket}
"""

# ARGV[3] ticket, ARGV[4] remaining or '', ARGV[5] reset (Unix seconds) or '', ARGV[6] retry-after or ''.
OBSERVE = _COMMON + """
refill()
local ticket, remaining = tonumber(ARGV[3]), tonumber(ARGV[4])
local reset, retry_after = tonumber(ARGV[5]), tonumber(ARGV[6])
local slot = W / L
st.d = math.min(st.n, st.d + 1)
if remaining then
  st.i = now + W
  if ticket > st.a then
    st.a = ticket
    st.t = math.min(math.max(0, remaining - (st.n - st.d)), L)
  end
  if remaining == 0 then
    st.t = 0
    local till = reset or (now + W)
    st.b = math.max(st.b, math.min(till, now + W) + slot)
  end
end
if retry_after then
  st.t = 0
  st.b = math.max(st.b, now + math.min(retry_after, 6 * W))
end
save()
return 1
"""


class RedisBucket:
    """:class:`gateway.budget.RateBucket` shared by every instance on one Redis."""

    def __init__(self, client: aioredis.Redis, url: str, pipeline: Pipeline | None = None) -> None:
        self._url = url
        # Through the store's pipeline when given: every agent call takes and settles a token.
        script = pipeline.script if pipeline is not None else client.register_script
        self._take = script(TAKE)
        self._observe = script(OBSERVE)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis at {self._url} is unavailable: {exc}") from exc

    async def take(self, key: str, limit: RateLimit) -> Grant:
        with self._guard():
            wait, ticket = await self._take(keys=[_key(key)], args=(limit.requests, repr(limit.window)))
        return Grant(float(wait), int(ticket))

    async def observe(self, key: str, limit: RateLimit, seen: Observation) -> None:
        args: tuple[Any, ...] = (
            limit.requests,
            repr(limit.window),
            seen.ticket,
            _opt(seen.remaining),
            _opt(seen.reset_at),
            _opt(seen.retry_after),
        )
        with self._guard():
            await self._observe(keys=[_key(key)], args=args)


def _key(key: str) -> str:
    return f"{PREFIX}budget:{key}"


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)
