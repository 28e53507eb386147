"""Scheduling turns: journal first, then one turn at a time per conversation, many in parallel.

``accept`` records events in the store's journal (deduplicated there) and schedules the new ones.
Each event becomes a task that waits for its conversation's lock (FIFO, so arrival order is kept)
and for a global slot (bounded concurrency). Delivery failures are retried with backoff; agent
failures end in an apology; the entry is then marked done or failed. Entries left unfinished by
a crash are resumed on start-up with their saved progress.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.channel import Answer, Progress, Reply
from gateway.errors import (
    AgentAuthError,
    AgentError,
    AgentRateLimited,
    ChannelError,
    ChannelPermanentError,
    ChannelRateLimited,
    CreditsExhausted,
)
from gateway.events import InboundEvent
from gateway.store import JournalEntry, Store

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.metrics import Metrics
    from gateway.turns import TurnRunner

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I can't answer right now. Please try again in a few minutes."
DELIVERY_ATTEMPTS = 5
MAX_WAIT = 60.0
TURN_TIMEOUT = 300.0


class _Lane:
    """The lock of one conversation, counted so idle lanes can be dropped."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Dispatcher:
    """Runs journaled events through the turn runner, in order per conversation."""

    def __init__(
        self,
        *,
        store: Store,
        runner: TurnRunner,
        channels: dict[str, Channel],
        metrics: Metrics,
        max_concurrency: int,
    ) -> None:
        self.store = store
        self.runner = runner
        self.channels = channels
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_concurrency)
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    # -- intake ----------------------------------------------------------------------------------
    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        """Journal each event (raises StoreUnavailable) and schedule the ones not seen before."""
        results = []
        for event in events:
            entry = JournalEntry(event)
            new = await self.store.journal_add(entry)
            self.metrics.inbound_events.labels(event.channel, "accepted" if new else "duplicate").inc()
            if new:
                self._schedule(entry)
            results.append(new)
        return results

    async def resume(self) -> int:
        """Schedule every unfinished journal entry (after a restart); returns how many."""
        entries = [e for e in await self.store.journal_pending() if e.event.channel in self.channels]
        for entry in entries:
            self._schedule(entry)
        if entries:
            log.info("resuming %d unfinished event(s) from the journal", len(entries))
        return len(entries)

    def _schedule(self, entry: JournalEntry) -> None:
        if self._closing:
            return  # stays pending in the journal; the next start resumes it
        lane = self._lanes.setdefault(entry.event.conversation_key, _Lane())
        lane.users += 1  # taken now, synchronously, so the FIFO position is the arrival order
        task = asyncio.create_task(self._work(entry, lane), name=f"turn:{entry.key}")
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("turn task crashed", exc_info=task.exception())
        if not self._tasks:
            self._idle.set()

    # -- running ---------------------------------------------------------------------------------
    async def run_now(self, event: InboundEvent, reply: Reply) -> Answer | None:
        """Run a turn outside the journal (web chat, voice), still in conversation order."""
        lane = self._lanes.setdefault(event.conversation_key, _Lane())
        lane.users += 1
        try:
            async with lane.lock, self._slots:
                return await self._attempt(self.channels[event.channel], event, reply)
        finally:
            self._release(event.conversation_key, lane)

    async def _work(self, entry: JournalEntry, lane: _Lane) -> None:
        key = entry.event.conversation_key
        try:
            async with lane.lock, self._slots:
                await self._process(entry)
        finally:
            self._release(key, lane)

    def _release(self, key: str, lane: _Lane) -> None:
        lane.users -= 1
        if lane.users == 0 and self._lanes.get(key) is lane:
            del self._lanes[key]

    async def _process(self, entry: JournalEntry) -> None:
        event = entry.event
        channel = self.channels.get(event.channel)
        if channel is None:
            log.warning("event %s names unknown channel %r; marking failed", entry.key, event.channel)
            await self.store.journal_finish(entry.key, "failed")
            return

        async def save(data: dict[str, Any]) -> None:
            await self.store.journal_progress(entry.key, data, entry.attempts)

        progress = Progress(entry.progress, save)
        reply = channel.open_reply(event, progress)
        try:
            ok = await asyncio.wait_for(self._attempt(channel, event, reply), TURN_TIMEOUT)
            status = "done" if ok is not None or event.kind == "feedback" else "failed"
        except TimeoutError:
            log.error("turn %s timed out after %.0fs", entry.key, TURN_TIMEOUT)
            status = "failed"
        await self.store.journal_finish(entry.key, status)
        self.metrics.turns.labels(event.channel, status).inc()

    async def _attempt(self, channel: Channel, event: InboundEvent, reply: Reply) -> Answer | None:
        """Run the turn with the failure policy; None when it ended in an apology or gave up."""
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                answer = await self.runner.run(channel, event, reply)
                return answer if answer is not None else Answer("")
            except ChannelPermanentError as exc:
                self.metrics.delivery_failures.labels(event.channel, type(exc).__name__).inc()
                log.error("channel %s refused delivery for good: %s", event.channel, exc)
                return None
            except ChannelRateLimited as exc:
                wait = min(exc.retry_after, MAX_WAIT)
                self.metrics.errors.labels("channel_rate_limited").inc()
            except ChannelError as exc:
                wait = _backoff(attempt)
                self.metrics.errors.labels("channel_error").inc()
                log.warning("channel %s failed (attempt %d): %s", event.channel, attempt, exc)
            except (AgentAuthError, CreditsExhausted) as exc:
                self.metrics.errors.labels("agent_" + type(exc).__name__).inc()
                log.error("agent refused (%s, %s): the operator must act", exc.code, exc)
                await self._apologise(reply)
                return None
            except AgentRateLimited as exc:
                wait = min(exc.retry_after, MAX_WAIT)
                self.metrics.errors.labels("agent_rate_limited").inc()
            except AgentError as exc:
                self.metrics.errors.labels("agent_" + type(exc).__name__).inc()
                log.error("agent failed for %s: %s (%s)", event.key, exc, exc.code)
                await self._apologise(reply)
                return None
            if attempt < DELIVERY_ATTEMPTS:
                await asyncio.sleep(wait)
        log.error("giving up on %s after %d attempts", event.key, DELIVERY_ATTEMPTS)
        await self._apologise(reply)
        return None

    async def _apologise(self, reply: Reply) -> None:
        try:
            await reply.fail(APOLOGY)
        except (ChannelError, AgentError, OSError) as exc:
            log.error("could not even send the apology: %s", exc)

    # -- lifecycle -------------------------------------------------------------------------------
    async def idle(self) -> None:
        """Wait until no turn is scheduled or running."""
        while self._tasks:
            await self._idle.wait()
            await asyncio.sleep(0)

    async def shutdown(self, grace: float) -> None:
        """Stop taking work; let running turns finish for ``grace`` seconds, then cancel them.

        A cancelled turn stays pending in the journal with its progress and is resumed next start.
        """
        self._closing = True
        if self._tasks:
            log.info("waiting up to %.0fs for %d turn(s) to finish", grace, len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


def _backoff(attempt: int) -> float:
    return min(MAX_WAIT, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
