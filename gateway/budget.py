"""The agent API's request budget: one token bucket per API key, shared by every instance.

Chatbase allows 100 requests per 10-second sliding window per API key (``agent.rate_limit``).
Instances that each retry on their own provoke 429s and risk harsher throttling, so every request
first takes a token from a bucket kept in the store (Redis: one Lua call; SQLite and memory: in
this process, which is the only one using them). The bucket is:

* **conservative when uninformed** (before the first answer and whenever no rate-limit header was
  seen for a window): capacity ``limit/2`` refilled at ``limit/(2*window)`` per second, which can
  never send more than ``limit`` in any window whatever the API's own algorithm;
* **refilled from what the API says** once headers flow (and no longer by time): every grant
  carries a ticket (a sequence number in the bucket), and a response to ticket ``n`` saying
  ``X-RateLimit-Remaining: R`` sets the tokens to ``R`` less the calls still in flight (granted,
  not yet answered), up as well as down (the newest ticket wins; answers to older ones are
  stale). An answer saying ``R = 0`` blocks the bucket until ``X-RateLimit-Reset`` (Unix
  milliseconds) plus one slot's time; after a block one token is granted as a probe, and its
  answer refills the rest. A 429 blocks for its ``Retry-After``.
  Without a header for a whole window the bucket is uninformed again.

:class:`Budget` is what the agent client calls: it queues this process's callers in arrival
order (only the head polls the store), and exports the queue depth and the time waited.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.errors import StoreUnavailable
from gateway.slots import parked

if TYPE_CHECKING:
    from gateway.config import AgentSettings
    from gateway.metrics import Metrics

log = logging.getLogger(__name__)

_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|min|h)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
#: longest a single poll of the store sleeps: another instance's answer may open the bucket sooner
_MAX_POLL = 0.5


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``requests`` per sliding ``window`` seconds."""

    requests: int
    window: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.window:g}s"


def parse_rate_limit(text: str) -> RateLimit | None:
    """``"100/10s"``, ``"100/s"``, ``"6000/1m"``, ``"500/1500ms"``; ``"off"`` is None. ValueError otherwise."""
    if text.strip().lower() == "off":
        return None
    match = _RATE.fullmatch(text)
    if not match:
        raise ValueError(f'expected requests per window such as "100/10s" (or "off"), got {text!r}')
    requests, amount, unit = int(match.group(1)), float(match.group(2) or 1), match.group(3) or "s"
    window = amount * _UNITS[unit]
    if requests < 1 or window <= 0:
        raise ValueError(f"a rate limit needs at least 1 request per a window longer than 0, got {text!r}")
    return RateLimit(requests, window)


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer of a bucket: a token (``wait == 0``, ``ticket`` its number) or how long to wait."""

    wait: float
    ticket: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    """What one API response said about the budget; Nones for headers it did not carry."""

    ticket: int
    remaining: int | None = None
    #: ``X-RateLimit-Reset`` as Unix seconds
    reset_at: float | None = None
    #: ``Retry-After`` seconds of a 429
    retry_after: float | None = None


class RateBucket(Protocol):
    """Where the bucket lives; every method is atomic across the processes that share it."""

    async def take(self, key: str, limit: RateLimit) -> Grant:
        """Take one token, or say how long until one may be there."""
        ...

    async def observe(self, key: str, limit: RateLimit, seen: Observation) -> None:
        """Correct the bucket from what a response said."""
        ...


@runtime_checkable
class HasRateBucket(Protocol):
    """A store that keeps a bucket shared across instances (Redis)."""

    def rate_bucket(self) -> RateBucket: ...


def bucket_for(store: object) -> RateBucket:
    """The store's shared bucket when it has one, else a bucket in this process."""
    return store.rate_bucket() if isinstance(store, HasRateBucket) else LocalBucket()


def budget_key(api_base: str, api_key: str) -> str:
    """The bucket's name: per API key (and API), without the key itself."""
    digest = hashlib.sha256(f"{api_base.rstrip('/')}\n{api_key}".encode()).hexdigest()
    return f"agent:{digest[:24]}"


@dataclass(slots=True)
class BucketState:
    """The bucket's fields; :data:`adapters.stores._redis_budget` keeps the same ones in a hash."""

    tokens: float = -1.0  # -1: new, filled on first use
    stamp: float = 0.0  # when tokens were last brought up to date
    blocked: float = 0.0  # no token before this time (Unix seconds)
    informed: float = 0.0  # a rate-limit header was seen; trusted until this time
    seq: int = 0  # tickets handed out
    applied: int = 0  # newest ticket whose observation set the tokens
    answered: int = 0  # answers observed: ``seq - answered`` calls are in flight

    def refill(self, now: float, limit: RateLimit) -> None:
        full, rate = _shape(self, now, limit)
        if self.tokens < 0:
            self.tokens, self.stamp = full, now
        start = max(self.stamp, self.blocked)
        if now > start:
            if self.stamp < self.blocked:
                self.tokens = max(self.tokens, 1.0)  # a block just ended: one probe may go
                self.answered = self.seq  # a window later, every earlier call was answered or lost
            self.tokens += (now - start) * rate
        self.tokens = min(self.tokens, full)
        self.stamp = max(self.stamp, now)

    def take(self, now: float, limit: RateLimit) -> Grant:
        self.refill(now, limit)
        if now < self.blocked:
            return Grant(self.blocked - now)
        rate = _shape(self, now, limit)[1]
        if self.tokens >= 1.0 or (not rate and self.answered >= self.seq):
            # Informed but empty with nothing in flight: no answer will come to refill the bucket,
            # and the last one did not say the window was full, so one probe asks.
            self.tokens = max(0.0, self.tokens - 1.0)
            self.seq += 1
            return Grant(0.0, self.seq)
        # Informed: the answers to the calls in flight will say more; look again a slot later.
        return Grant((1.0 - self.tokens) / rate if rate else limit.window / limit.requests)

    def observe(self, now: float, limit: RateLimit, seen: Observation) -> None:
        self.refill(now, limit)
        slot = limit.window / limit.requests
        self.answered = min(self.seq, self.answered + 1)
        if seen.remaining is not None:
            self.informed = now + limit.window
            if seen.ticket > self.applied:
                # The newest answer: what remained when it arrived, less every call still in flight
                # (calls of several instances reach the API out of ticket order).
                self.applied = seen.ticket
                self.tokens = float(min(max(0, seen.remaining - (self.seq - self.answered)), limit.requests))
            # Older answers are stale (calls of several instances arrive out of ticket order), except
            # for the one thing that is never stale: the window was full.
            if seen.remaining == 0:
                self.tokens = 0.0
                until = seen.reset_at if seen.reset_at is not None else now + limit.window
                self.blocked = max(self.blocked, min(until, now + limit.window) + slot)
        if seen.retry_after is not None:
            self.tokens = 0.0
            self.blocked = max(self.blocked, now + min(seen.retry_after, 6 * limit.window))


def _shape(state: BucketState, now: float, limit: RateLimit) -> tuple[float, float]:
    """(capacity, refill per second): half the budget refilled by time when uninformed; the whole
    budget refilled only by the API's answers when informed (a sliding window frees slots when
    old calls age out, not at a steady rate, so a time refill would overshoot after a burst)."""
    if now < state.informed:
        return float(limit.requests), 0.0
    return limit.requests / 2, limit.requests / (2 * limit.window)


class LocalBucket:
    """The bucket in this process (memory and SQLite stores serve one process)."""

    def __init__(self) -> None:
        self._states: dict[str, BucketState] = {}

    async def take(self, key: str, limit: RateLimit) -> Grant:
        return self._states.setdefault(key, BucketState()).take(time.time(), limit)

    async def observe(self, key: str, limit: RateLimit, seen: Observation) -> None:
        self._states.setdefault(key, BucketState()).observe(time.time(), limit, seen)


class Budget:
    """One API key's budget as the agent client uses it: ``acquire`` before, ``observe`` after."""

    def __init__(self, bucket: RateBucket, key: str, limit: RateLimit, metrics: Metrics | None = None,
                 agent: str = "default") -> None:
        self.bucket = bucket
        self.key = key
        #: the metrics label: the name of the agent (or agents, joined by "+") using this key
        self.agent = agent
        self.limit = limit
        self._metrics = metrics
        # asyncio.Lock wakes waiters in arrival order: a turn that waits keeps its place.
        self._queue = asyncio.Lock()
        self._wait = 0.0

    async def acquire(self) -> int:
        """Wait for a token; returns its ticket (0 when the store could not be asked).

        A call that has to wait queues behind the ones already waiting in this process and gives
        its turn's slot back meanwhile (:func:`gateway.slots.parked`).
        """
        started = time.monotonic()
        try:
            if not self._queue.locked():  # nobody queued before us: try at once
                async with self._queue:
                    ticket = await self._take()
                if ticket is not None:
                    return ticket
            gauge = self._metrics.budget_waiting.labels(self.agent) if self._metrics else None
            if gauge is not None:
                gauge.inc()
            try:
                async with parked(), self._queue:
                    while (ticket := await self._take()) is None:
                        await asyncio.sleep(min(self._wait, _MAX_POLL))
                    return ticket
            finally:
                if gauge is not None:
                    gauge.dec()
        finally:
            if self._metrics is not None:
                self._metrics.budget_wait_seconds.labels(self.agent).observe(time.monotonic() - started)

    async def _take(self) -> int | None:
        """A ticket, or None after noting how long to wait in ``_wait``."""
        try:
            grant = await self.bucket.take(self.key, self.limit)
        except StoreUnavailable as exc:
            # The journal lives in the same store; a turn that runs now was already journaled,
            # so letting its call go is better than stalling it.
            log.warning("rate budget unavailable (%s); calling the agent without it", exc)
            return 0
        if grant.wait <= 0:
            return grant.ticket
        self._wait = grant.wait
        return None

    async def observe(self, seen: Observation) -> None:
        """Feed back what a response said; a 429 is counted as a rejected call."""
        if seen.retry_after is not None and self._metrics is not None:
            self._metrics.budget_rejected.labels(self.agent).inc()
        try:
            await self.bucket.observe(self.key, self.limit, seen)
        except StoreUnavailable as exc:
            log.warning("rate budget unavailable (%s); the next call may be refused", exc)


def agent_budget(settings: AgentSettings, store: object, metrics: Metrics | None = None,
                 agent: str = "default") -> Budget | None:
    """The budget of ``settings``' API key, kept in ``store`` when it can share one; None when off."""
    limit = settings.budget
    if limit is None:
        return None
    return Budget(bucket_for(store), budget_key(settings.api_base, settings.api_key), limit, metrics, agent)


def agent_budgets(agents: Mapping[str, AgentSettings], store: object,
                  metrics: Metrics | None = None) -> dict[str, Budget | None]:
    """The budget of every agent by name; agents on one API key share one budget (and queue)."""
    sharing: dict[str, list[str]] = {}
    for name, settings in agents.items():
        sharing.setdefault(budget_key(settings.api_base, settings.api_key), []).append(name)
    bucket = bucket_for(store)
    budgets: dict[str, Budget | None] = {}
    for key, names in sharing.items():
        limit = agents[names[0]].budget
        budget = None if limit is None else Budget(bucket, key, limit, metrics, "+".join(names))
        budgets.update(dict.fromkeys(names, budget))
    return budgets
