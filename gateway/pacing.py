"""Pacing outbound platform calls by the scopes the platform limits them in.

Platforms limit in different scopes: Slack per API method per workspace (its tiers) and
``chat.postMessage`` about once per second per channel; Telegram about once per second per chat,
20 per minute per group and 30 per second per bot; Meta per page; Twilio per account. A channel
names, for every call, the :class:`Scope` s it falls in; its :class:`Pacer` keeps one bucket per
scope and:

* **paces**: a scope with a declared rate gives a token per call (``burst`` may go at once);
* **pauses exactly what was refused**: a 429 that names its scope pauses that scope for its
  ``Retry-After``; one that names none (every platform above, in practice) pauses the
  conversation's own scope and *reduces* the rate of the wider scopes the call fell in (to 80%
  of their declared rate, or of what they were doing and at least ``MIN_BASE``, at most once a
  second and never below half, recovering by a tenth per second; a conversation refused again
  right after its pause is the same refusal going on and cuts nothing more), so one refused
  conversation never stalls the others;
* **gives the turn's slot back** while it waits longer than a moment
  (:func:`gateway.slots.parked`), and says who waits, on what and why (:meth:`Pacer.waiting`,
  the admin API's ``/admin/v1/waiting``) and how long (``/metrics``).

A conversation is drained by one instance at a time (its lease), so its own scope lives in this
process. A scope marked ``shared`` (a bot, a group, a Slack channel several threads write to) is the
same limit for every instance: when the store keeps a bucket shared across processes (Redis), its
declared rate is also taken from there, through the agent budget's bucket
(:mod:`gateway.budget`, one Lua call), so several instances together keep to it. Pauses and rate
cuts after a 429 stay in the instance that got it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.budget import HasRateBucket, RateBucket, RateLimit
from gateway.errors import StoreUnavailable
from gateway.slots import parked

if TYPE_CHECKING:
    from gateway.metrics import Metrics

log = logging.getLogger(__name__)

#: waits shorter than this keep the turn's slot (giving it back and taking it again costs more)
PARK_AFTER = 0.5
#: a rate reduced after an unscoped 429 never goes below this share of what it was
FLOOR = 0.5
#: each unscoped 429 multiplies the wider scopes' rate by this (at most once per second)
CUT = 0.8
#: share of the original rate regained per second after a reduction
RECOVERY = 0.1
#: seconds the store's shared bucket may take to answer before a call is paced locally only
SHARED_TIMEOUT = 0.25
#: a scope without a declared rate is never cut below this many calls per second (its recent rate
#: may be tiny when the 429 comes, and a rate cut from that would starve it once traffic grows)
MIN_BASE = 5.0
#: a bucket unused for this long (and not paused or cut) is forgotten: conversations come and go
_IDLE = 120.0
#: buckets kept before idle ones are looked for
_PRUNE_ABOVE = 1000
#: how far back the rate a scope was doing is measured (for scopes without a declared rate)
_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class Scope:
    """One limit a call falls in.

    ``kind`` is what the platform calls the scope ("chat", "method", "workspace", "account",
    "bot", "group", "page"); ``key`` tells its instances apart. ``rate`` is calls per second (0:
    no declared rate: only 429s slow it) with ``burst`` calls allowed at once. The
    ``conversation`` scope is the one an unscoped 429 pauses.
    """

    kind: str
    key: str
    rate: float = 0.0
    burst: float = 1.0
    conversation: bool = False
    #: the same limit for every instance: its rate is also taken from the store's shared bucket
    shared: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(slots=True)
class _Bucket:
    scope: Scope
    tokens: float = -1.0
    stamp: float = 0.0
    paused_until: float = 0.0
    paused_why: str = ""
    #: when this scope was last refused, and the Retry-After then (to tell a new refusal from a repeat)
    refused_at: float = -1e9
    refused_for: float = 0.0
    #: reduced rate (calls per second) after an unscoped 429, its original and when it was cut
    cap: float | None = None
    base: float = 0.0
    cut_at: float = 0.0
    #: calls in the current and the previous ``_WINDOW`` (to know the rate a scope was doing)
    window_start: float = 0.0
    calls_now: int = 0
    calls_before: int = 0
    #: when a call last went (or a 429 came): idle buckets are dropped
    used: float = 0.0

    def idle(self, now: float) -> bool:
        return now >= self.paused_until and self.cap is None and now - self.used > _IDLE

    def rate(self, now: float) -> float:
        """Calls per second allowed now (0: unlimited)."""
        if self.cap is not None:
            cap = self.cap + RECOVERY * self.base * (now - self.cut_at)
            if cap < self.base:
                return cap
            self.cap = None
        return self.scope.rate

    def recent_rate(self, now: float) -> float:
        self._roll(now)
        return (self.calls_now + self.calls_before) / _WINDOW

    def _roll(self, now: float) -> None:
        if now - self.window_start >= 2 * _WINDOW:
            self.window_start, self.calls_now, self.calls_before = now, 0, 0
        elif now - self.window_start >= _WINDOW:
            self.window_start, self.calls_before, self.calls_now = self.window_start + _WINDOW, self.calls_now, 0

    def wait(self, now: float) -> float:
        """Seconds until a call may go (0: now)."""
        if now < self.paused_until:
            return self.paused_until - now
        rate = self.rate(now)
        if rate <= 0:
            return 0.0
        burst = max(1.0, self.scope.burst if self.cap is None else 1.0)
        if self.tokens < 0:
            self.tokens, self.stamp = burst, now
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / rate

    def take(self, now: float) -> None:
        self.used = now
        if self.rate(now) > 0:
            self.tokens -= 1.0
        self._roll(now)
        self.calls_now += 1

    def reduce(self, now: float) -> None:
        if self.cap is not None and now - self.cut_at < 1.0:
            return
        current = self.rate(now)
        if self.cap is None:
            self.base = current if current > 0 else max(MIN_BASE, self.recent_rate(now))
            current = self.base
        self.cap = max(self.base * FLOOR, current * CUT)
        self.cut_at = now
        self.tokens = min(self.tokens, 1.0)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Something that waits for a platform limit, as the admin API lists it."""

    channel: str
    scope: str
    kind: str
    what: str
    reason: str
    since: float
    until: float | None


class Pacer:
    """The buckets of one channel's scopes; see the module docstring."""

    _serials = itertools.count(1)

    def __init__(self, channel: str, metrics: Metrics | None = None, store: Callable[[], object] | None = None) -> None:
        self.channel = channel
        self._metrics = metrics
        self._store = store
        self._shared: RateBucket | None = None
        self._shared_failed = False
        self._buckets: dict[str, _Bucket] = {}
        self._prune_at = _PRUNE_ABOVE
        self._waiters: dict[int, Waiting] = {}

    def _bucket(self, scope: Scope) -> _Bucket:
        bucket = self._buckets.get(scope.name)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune()
            bucket = self._buckets[scope.name] = _Bucket(scope, used=time.monotonic())
        elif bucket.scope != scope:
            bucket.scope = scope  # re-declared with another rate: keeps its pause and counts
        return bucket

    def _prune(self) -> None:
        now = time.monotonic()
        for name in [n for n, b in self._buckets.items() if b.idle(now)]:
            del self._buckets[name]
        # Look again once as many more are kept: pruning stays linear in the number of calls.
        self._prune_at = max(_PRUNE_ABOVE, 2 * len(self._buckets))

    async def pace(self, scopes: Sequence[Scope], what: str) -> None:
        """Wait until every scope allows one more call, then count it. ``what`` names the waiter."""
        buckets = [self._bucket(s) for s in scopes]
        while True:
            now = time.monotonic()
            waits = [(b.wait(now), b) for b in buckets]
            wait, slowest = max(waits, key=lambda w: w[0], default=(0.0, None))
            if wait <= 0 or slowest is None:
                wait, slowest = await self._take_shared(buckets)
            if wait <= 0 or slowest is None:
                for bucket in buckets:
                    bucket.take(now)
                return
            scope = slowest.scope
            reason = slowest.paused_why if now < slowest.paused_until else f"paced at {slowest.rate(now):.3g}/s"
            async with self.waiting_on(scope, what, reason, until=time.time() + wait, park=wait >= PARK_AFTER):
                await asyncio.sleep(wait)

    async def _take_shared(self, buckets: list[_Bucket]) -> tuple[float, _Bucket | None]:
        """Take a token of every shared scope from the store's bucket; (seconds to wait, the scope
        that said so) when one has none. Without a shared bucket (or while the store is down) the
        local buckets alone pace."""
        shared = [b for b in buckets if b.scope.shared and b.scope.rate > 0]
        bucket = self._shared_bucket() if shared else None
        if bucket is None:
            return 0.0, None
        for local in shared:
            scope = local.scope
            # The agent budget's bucket lets half its limit go while no rate headers inform it (and
            # platforms send none), so the declared rate is passed doubled, over a window of at
            # least a second that holds at least two calls.
            window = max(1.0, 2.0 / scope.rate)
            limit = RateLimit(max(2, round(2 * scope.rate * window)), window)
            try:
                # Bounded: a post's intent is already saved, and a store that hangs must not hold
                # the post until the conversation's lease has gone to another instance.
                grant = await asyncio.wait_for(bucket.take(f"pace:{self.channel}:{scope.name}", limit),
                                               SHARED_TIMEOUT)
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("shared pacing unavailable (%s); pacing %s in this instance only",
                            exc or "no answer in time", scope.name)
                return 0.0, None
            if grant.wait > 0:
                return grant.wait, local
        return 0.0, None

    def _shared_bucket(self) -> RateBucket | None:
        if self._shared is not None or self._store is None or self._shared_failed:
            return self._shared
        try:
            store = self._store()
        except (RuntimeError, AttributeError):  # not started (or `switchboard check`): nothing is shared yet
            return None
        if isinstance(store, HasRateBucket):
            self._shared = store.rate_bucket()
        else:
            self._shared_failed = True  # memory and SQLite serve one process
        return self._shared

    def refused(self, scopes: Sequence[Scope], retry_after: float, *, named: str | None = None,
                why: str = "429") -> None:
        """A call in ``scopes`` got a 429 asking to wait ``retry_after`` s; ``named`` is the scope
        kind the platform said it concerns (None: it did not say)."""
        now = time.monotonic()
        reason = f"{why}, Retry-After {retry_after:g}s"
        target = [s for s in scopes if s.kind == named] if named else [s for s in scopes if s.conversation]
        if not target:  # nothing narrower to blame: the whole call's narrowest scope
            target = list(scopes[:1])
        repeat = False
        for scope in target:
            bucket = self._bucket(scope)
            # Refused again right after its pause: the same refusal going on, not news about the rate.
            repeat = repeat or now - bucket.refused_at <= 2 * bucket.refused_for + 1.0
            bucket.refused_at, bucket.refused_for, bucket.used = now, retry_after, now
            bucket.paused_until = max(bucket.paused_until, now + retry_after)
            bucket.paused_why = reason
        if named is None and not repeat:
            for scope in scopes:
                if scope not in target:
                    self._bucket(scope).reduce(now)
        if self._metrics is not None:
            for scope in target:
                self._metrics.rate_limited.labels(self.channel, scope.kind).inc()

    def paused_for(self, scope: Scope) -> float:
        """Seconds ``scope`` stays paused (0 when it is not)."""
        bucket = self._buckets.get(scope.name)
        return 0.0 if bucket is None else max(0.0, bucket.paused_until - time.monotonic())

    @contextlib.asynccontextmanager
    async def waiting_on(self, scope: Scope, what: str, reason: str, *, until: float | None,
                         park: bool = True) -> AsyncIterator[None]:
        """Mark ``what`` as waiting on ``scope`` (listed, counted, timed); the turn's slot is given
        back meanwhile when ``park``."""
        serial = next(self._serials)
        self._waiters[serial] = Waiting(self.channel, scope.name, scope.kind, what, reason, time.time(), until)
        started = time.monotonic()
        metrics = self._metrics
        if metrics is not None:
            metrics.rate_limit_waiting.labels(self.channel, scope.kind).inc()
        try:
            if park:
                async with parked():
                    yield
            else:
                yield
        finally:
            del self._waiters[serial]
            if metrics is not None:
                metrics.rate_limit_waiting.labels(self.channel, scope.kind).dec()
                metrics.rate_limit_wait_seconds.labels(self.channel, scope.kind).inc(time.monotonic() - started)

    def waiting(self) -> list[Waiting]:
        """What waits now, oldest first."""
        return sorted(self._waiters.values(), key=lambda w: w.since)

