"""Scheduling turns: journal first, then each conversation drained in order, by one worker at a time.

The unit of work is a *conversation*, not an event. ``accept`` journals events (the store
deduplicates) and kicks their conversations. Draining a conversation takes its lease in the store
(so across instances only one worker drains it), then runs the conversation's oldest unfinished
entry, marks it finished, and repeats until none is left. That keeps arrival order per
conversation across instances, lets different conversations run concurrently (bounded by
``max_concurrency``), and makes recovery the same code path: a sweeper periodically kicks every
conversation with unfinished entries, so entries of a crashed instance are drained by a live one
once its lease expires, with the delivery progress it saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway import batched
from gateway.channel import Answer, Progress, Reply
from gateway.errors import LeaseLost, StoreUnavailable
from gateway.events import InboundEvent
from gateway.policy import MAX_EVENT_ATTEMPTS, apologise, attempt_turn
from gateway.slots import TurnSlot
from gateway.store import JournalEntry, JournalStatus, JournalStore, KeyValueStore

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.metrics import Metrics
    from gateway.turns import TurnRunner

log = logging.getLogger(__name__)

TURN_TIMEOUT = 300.0
DELIVERY_DEADLINE = 3600.0
RATE_LIMIT_TEXT = "You're sending messages faster than I can answer. Please wait a minute and try again."


class DispatchStore(JournalStore, KeyValueStore, Protocol):
    """What the dispatcher needs of the store: the journal, leases and rate-limit counters (no people)."""


class _Lane:
    """An in-process lock for one conversation, counted so idle ones are dropped."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Turn:
    """The entry a drain is working on, and its outcome once known (for the write-back)."""

    __slots__ = ("entry", "lease", "status")

    def __init__(self, lease: str, owner: str) -> None:
        self.entry: JournalEntry | None = None
        self.status: JournalStatus | None = None
        self.lease = (lease, owner)


class _Heartbeat:
    """Renews a drain's lease while a turn runs; stopped around the release.

    A timer, not a task, until a renewal is due: most turns end well within a third of the lease,
    and then the heartbeat costs one timer handle instead of a task waiting on an event.
    """

    def __init__(self, dispatcher: Dispatcher, lease: str, owner: str, conversation_key: str) -> None:
        self.lease, self.owner = lease, owner
        self._dispatcher = dispatcher
        self._name = f"lease:{conversation_key}"
        self._stopped = True
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        #: renewals sent so far, and whether one is awaiting its answer (see :meth:`quiet_since`)
        self.renewals = 0
        self.renewing = False

    def mark(self) -> tuple[int, bool]:
        """Where the renewals stand, for :meth:`quiet_since`."""
        return self.renewals, self.renewing

    def quiet_since(self, mark: tuple[int, bool]) -> bool:
        """No renewal was under way at ``mark`` nor sent after it: a release made since then stands
        (call once the heartbeat is stopped)."""
        return mark == (self.renewals, False) and not self.renewing

    def start(self) -> None:
        if self._stopped:
            self._stopped = False
            self._arm()

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._dispatcher.lease_ttl / 3, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._stopped:
            self._task = asyncio.create_task(self._renew(), name=self._name)

    async def _renew(self) -> None:
        """Renew the lease once, then arm the next renewal unless stopped meanwhile.

        The stop flag rather than cancellation alone ends it: the Redis client can turn a
        cancellation that lands on a command timing out into a timeout error, which the outage
        handling here would swallow, and a heartbeat that outlives its drain holds the
        conversation forever.
        """
        store, ttl = self._dispatcher.store, self._dispatcher.lease_ttl
        self.renewals += 1
        self.renewing = True
        try:
            if not await store.try_lock(self.lease, self.owner, ttl):
                log.error("lost lease %s to another instance", self.lease)
        except StoreUnavailable as exc:
            log.warning("could not renew lease %s: %s", self.lease, exc)
        finally:
            # A cancelled renewal may still reach the store: it stays "under way" for good.
            if not self._stopped:
                self.renewing = False
        if not self._stopped:
            self._task = None
            self._arm()


class Dispatcher:
    """Drains conversations from the journal; one per app."""

    def __init__(
        self,
        *,
        store: DispatchStore,
        runner: TurnRunner,
        channels: dict[str, Channel],
        metrics: Metrics,
        max_concurrency: int,
        lease_ttl: float = 15.0,
        sweep_interval: float = 5.0,
        user_rate_limit: int = 0,
        turn_timeout: float = TURN_TIMEOUT,
        delivery_deadline: float = DELIVERY_DEADLINE,
        instance_id: str | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.channels = channels
        self.metrics = metrics
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.lease_ttl = lease_ttl
        self.sweep_interval = sweep_interval
        self.user_rate_limit = user_rate_limit
        self.turn_timeout = turn_timeout
        self.delivery_deadline = delivery_deadline
        self._slots = asyncio.Semaphore(max_concurrency)
        self._drains: dict[str, asyncio.Task[None]] = {}
        #: every drain task still running, also one past its last look (finishing, releasing)
        self._active: set[asyncio.Task[None]] = set()
        self._lanes: dict[str, _Lane] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._sweeper: asyncio.Task[None] | None = None

    # -- intake ----------------------------------------------------------------------------------
    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        """Journal each event (raises StoreUnavailable) and kick the conversations of new ones."""
        results = []
        for event in events:
            new = await batched.journal_add(self.store, JournalEntry(event), self._rate_count(event))
            self.metrics.inbound_events.labels(event.channel, "accepted" if new else "duplicate").inc()
            if new:
                self.kick(event.conversation_key, wait=2 * self.lease_ttl)
            results.append(new)
        return results

    def kick(self, conversation_key: str, *, wait: float = 0.0) -> None:
        """Make sure someone drains ``conversation_key``; wait up to ``wait`` s for its lease."""
        if self._closing or conversation_key in self._drains:
            return  # a running drain re-reads the journal head after every entry
        task = asyncio.create_task(self._drain(conversation_key, wait), name=f"drain:{conversation_key}")
        self._drains[conversation_key] = task
        self._active.add(task)
        self._idle.clear()
        task.add_done_callback(lambda t: self._drained(conversation_key, t))

    def _drained(self, conversation_key: str, task: asyncio.Task[None]) -> None:
        if self._drains.get(conversation_key) is task:
            del self._drains[conversation_key]
        self._active.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("drain of %s crashed", conversation_key, exc_info=task.exception())
        if not self._active:
            self._idle.set()

    # -- draining --------------------------------------------------------------------------------
    async def _drain(self, conversation_key: str, wait: float) -> None:
        lease = f"conv:{conversation_key}"
        # The owner is this drain, not this instance: two drains of one conversation may overlap
        # briefly in one process, and must exclude each other exactly as across instances.
        owner = f"{self.instance_id}:{uuid.uuid4().hex[:8]}"
        try:
            locked, first = await self._acquire(lease, owner, wait, conversation_key)
            if not locked:
                return  # another instance holds it and will see our entry when it reads the head
        except StoreUnavailable as exc:
            log.warning("store unavailable, not draining %s now: %s (the sweeper retries)", conversation_key, exc)
            return
        beat = _Heartbeat(self, lease, owner, conversation_key)
        me = asyncio.current_task()
        turn = _Turn(lease, owner)
        released = False
        try:
            while True:
                beat.start()
                try:
                    released = await self._drain_entries(conversation_key, me, turn, first, beat)
                    return
                except LeaseLost as exc:
                    log.warning("stopped the turn of %s: %s (taken over during a store outage; that worker "
                                "resumes it)", conversation_key, exc)
                    return
                except StoreUnavailable as exc:
                    first = None
                    log.error("store unavailable while draining %s: %s", conversation_key, exc)
                    if turn.entry is None or not await self._write_back(turn, lease, owner):
                        return  # nothing unsaved (or someone else resumed it): the sweeper retries
        finally:
            # The heartbeat must be over before the unlock: a renewal landing after it would take
            # the lease again, for a drain that is gone (the conversation would never move again).
            await beat.stop()
            if not released:
                with contextlib.suppress(StoreUnavailable):  # else the lease expires by itself
                    await self.store.unlock(lease, owner)

    async def _drain_entries(self, conversation_key: str, me: asyncio.Task[Any] | None, turn: _Turn,
                             entry: JournalEntry | None, beat: _Heartbeat) -> bool:
        """Run entries until none is left; True when the last call gave the lease back."""
        if entry is None:
            entry = await self._last_look(conversation_key, me)
        while entry is not None:
            turn.entry, turn.status = entry, None
            async with TurnSlot(self._slots):
                status = await self._process(entry, turn)
            # As in _last_look: deregister before reading the next head, then the finish, the
            # read and (when nothing is left) the release are one store call. The heartbeat keeps
            # running through it (a store that hangs longer than the lease must not lose it); a
            # renewal sent meanwhile could land after the release, and only then is the lease
            # given back once more, by the caller, after the heartbeat stopped.
            if self._drains.get(conversation_key) is me:
                del self._drains[conversation_key]
            mark = beat.mark()
            entry = await batched.finish_next(self.store, turn.entry.key, status, conversation_key,
                                              beat.lease, beat.owner, self.lease_ttl)
            self.metrics.turns.labels(turn.entry.event.channel, status).inc()
            turn.entry = None
            if entry is None:
                await beat.stop()
                return beat.quiet_since(mark)
            if me is not None and conversation_key not in self._drains:
                self._drains[conversation_key] = me
            beat.start()
        return False

    async def _write_back(self, turn: _Turn, lease: str, owner: str) -> bool:
        """A store error cut a turn short: save what it knows it delivered once the store is back.

        The progress in memory (parts sent, message ids, the agent's answer) is newer than the
        journal's copy. It is written back only while this drain holds the conversation's lease
        (so it can never overwrite a newer run's progress); then draining carries on. Returns False
        when the lease went to another worker (which resumes from the journal's copy, reconciling
        with the platform where it can) or the gateway is stopping.
        """
        entry = turn.entry
        assert entry is not None
        delay = 0.1
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                if not await self.store.try_lock(lease, owner, self.lease_ttl):
                    log.warning("the lease of %s went elsewhere during the outage; its progress there "
                                "is older than ours", entry.key)
                    return False
                await self.store.journal_progress(entry.key, entry.progress, entry.attempts)
                if turn.status is not None:
                    await self._finish(entry, turn.status)
            except StoreUnavailable:
                continue
            log.info("store back: saved the progress of %s that the outage interrupted", entry.key)
            turn.entry = None
            return True
        return False

    async def _last_look(self, conversation_key: str, me: asyncio.Task[Any] | None) -> JournalEntry | None:
        """Deregister, then read the head while still holding the lease; None ends the drain.

        An event journaled meanwhile is either seen here or kicks a fresh drain, which waits for
        our lease. We never hand over to that drain while holding the lease: a sweeper's kick does
        not wait for a lease, so yielding to it could leave the conversation undrained until the
        next sweep. One read per entry, never two.
        """
        if self._drains.get(conversation_key) is me:
            del self._drains[conversation_key]
        entry = await batched.head(self.store, conversation_key)  # idle() counts us in _active meanwhile
        if entry is not None and me is not None and conversation_key not in self._drains:
            self._drains[conversation_key] = me
        return entry

    async def _acquire(self, lease: str, owner: str, wait: float,
                       conversation_key: str) -> tuple[bool, JournalEntry | None]:
        """Take the lease (waiting up to ``wait`` s) and read the head, in one store call each try."""
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            locked, entry = await batched.lock_head(self.store, lease, owner, self.lease_ttl, conversation_key)
            if locked:
                return True, entry
            if time.monotonic() >= deadline or self._closing:
                return False, None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _process(self, entry: JournalEntry, turn: _Turn) -> JournalStatus:
        """Run one entry (its attempt already counted by the head read); its outcome, unfinished."""
        event = entry.event
        channel = self.channels.get(event.channel)
        if channel is None:
            log.error("event %s names an unknown channel; marking it failed", entry.key)
            turn.status = "failed"
            return "failed"

        lease, owner = turn.lease

        async def save(data: dict[str, Any]) -> None:
            await batched.journal_progress(self.store, entry.key, data, entry.attempts, lease, owner, self.lease_ttl)

        reply = channel.open_reply(event, Progress(entry.progress, save, journal_key=entry.key,
                                                   attempts=entry.attempts, lease=(lease, owner, self.lease_ttl)))
        if entry.attempts > MAX_EVENT_ATTEMPTS:
            log.error("event %s failed %d times; marking it failed", entry.key, MAX_EVENT_ATTEMPTS)
            # Once, so an apology that itself crashes cannot loop: it replaces a placeholder left
            # showing "thinking…" (never silence, never a stray placeholder).
            if entry.attempts == MAX_EVENT_ATTEMPTS + 1 and event.kind != "feedback":
                try:
                    await apologise(reply)
                finally:
                    await reply.close()
            turn.status = "failed"
            return "failed"
        status: JournalStatus
        try:
            if await self._over_rate_limit(entry, reply):
                status = "done"
            else:
                ok = await self._timed_turn(channel, event, reply)
                status = "done" if ok is not None else "failed"
        finally:
            await reply.close()  # a turn stopped by a store outage leaves no typing or edit task behind
        turn.status = status
        return status

    async def _timed_turn(self, channel: Channel, event: InboundEvent, reply: Reply) -> Answer | None:
        """A turn bounded in time: one that never ends (a stream dripping forever) is apologised for.

        Each run of the turn is bounded by ``turn_timeout`` inside :func:`attempt_turn`, so the time
        it spends waiting out a platform's rate limit (up to ``delivery_deadline``) does not count.
        """
        try:
            return await attempt_turn(self, channel, event, reply)
        except TimeoutError:
            log.error("turn %s timed out after %.0fs", event.journal_key, self.turn_timeout)
            self.metrics.errors.labels("turn_timeout").inc()
            if event.kind != "feedback":
                await apologise(reply)
            return None

    async def _finish(self, entry: JournalEntry, status: JournalStatus) -> None:
        await self.store.journal_finish(entry.key, status)
        self.metrics.turns.labels(entry.event.channel, status).inc()

    def _rate_count(self, event: InboundEvent) -> batched.RateCount | None:
        """The per-person counter of ``event``'s minute (by arrival), if the limit applies to it."""
        if not self.user_rate_limit or event.kind != "message":
            return None
        return batched.RateCount(f"rate:{event.identity.key()}:{int(event.received_at // 60)}", 60)

    async def _over_rate_limit(self, entry: JournalEntry, reply: Reply) -> bool:
        """Per-person limit: the first message over it gets one notice, later ones nothing.

        Counted when the event was journaled where the store can (no round trip of its own, and a
        resumed entry is never counted twice), else here."""
        event = entry.event
        rate = self._rate_count(event)
        if rate is None:
            return False
        count = entry.rate_count
        if count is None:
            count = await self.store.incr(rate.key, rate.window)
        if count <= self.user_rate_limit:
            return False
        self.metrics.inbound_events.labels(event.channel, "rate_limited").inc()
        if count == self.user_rate_limit + 1:
            await reply.finish(Answer(RATE_LIMIT_TEXT))
        return True

    # -- synchronous turns (web chat, voice) -----------------------------------------------------
    async def run_now(self, event: InboundEvent, reply: Reply) -> Answer | None:
        """Run a turn outside the journal (the client holds the connection), in conversation order."""
        key = event.conversation_key
        lane = self._lanes.setdefault(key, _Lane())
        lane.users += 1
        try:
            async with lane.lock, TurnSlot(self._slots):
                return await self._timed_turn(self.channels[event.channel], event, reply)
        finally:
            await reply.close()
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume unfinished entries now, then keep sweeping for orphaned ones."""
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="journal-sweeper")

    async def sweep(self) -> int:
        """Kick every conversation that has unfinished entries; returns how many were kicked."""
        # Conversation keys are "<channel>:<scope>" and channel names hold no colon.
        keys = [k for k in await self.store.journal_conversations() if k.partition(":")[0] in self.channels]
        for key in keys:
            self.kick(key)
        return len(keys)

    async def _sweep_forever(self) -> None:
        me = asyncio.current_task()
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError from exc  # a stop the Redis client reported as a timeout
                log.warning("journal sweep skipped: %s", exc)

    async def idle(self) -> None:
        """Wait until no conversation is being drained here (also none finishing or looking for its
        next entry: every drain task counts until it ends)."""
        while self._active:
            await self._idle.wait()
            await asyncio.sleep(0)

    async def shutdown(self, grace: float) -> None:
        """Stop taking work; give running turns ``grace`` seconds, then cancel them.

        A cancelled turn stays unfinished in the journal with its progress; the next start (or
        another instance) resumes it.
        """
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        tasks = set(self._active)
        if tasks:
            log.info("waiting up to %.0fs for %d conversation(s) to finish", grace, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
