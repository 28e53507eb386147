"""The dispatcher through store outages: no crash, no leaked lease, nothing it delivered forgotten."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters.stores.memory import MemoryStore
from gateway.channel import Answer, Channel, ChannelSettings, Reply
from gateway.dispatch import Dispatcher
from gateway.errors import StoreUnavailable
from gateway.events import Identity, InboundEvent
from gateway.metrics import Metrics
from gateway.store import JournalEntry
from switchboard.testing.services import StubServices

EVENT = InboundEvent(channel="chat", key="e1", identity=Identity("chat", "", "ann"), scope="ann", text="hi")
LEASE = f"conv:{EVENT.conversation_key}"


class FlakyStore(MemoryStore):
    """A memory store that can be "down", and whose try_lock reports a cancellation the way the
    Redis client sometimes does when it lands on a command's own timeout: as a store error."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.fail_progress_after = -1  # the n-th journal_progress call from now fails (then down)
        self.fail_finish = False  # the next journal_finish fails (then down)
        self.lock_calls = 0
        self.renewing = asyncio.Event()

    async def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        if self.down:
            raise StoreUnavailable("store down")
        self.lock_calls += 1
        if self.lock_calls > 1:  # a heartbeat's renewal: slow, and cancelled mid-way
            self.renewing.set()
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                raise StoreUnavailable("Timeout reading from the store") from None
        return await super().try_lock(key, owner, ttl)

    async def journal_progress(self, key: str, progress: dict[str, Any], attempts: int) -> None:
        if self.fail_progress_after == 0:
            self.down = True
        self.fail_progress_after -= 1
        if self.down:
            raise StoreUnavailable("store down")
        await super().journal_progress(key, progress, attempts)

    async def journal_finish(self, key: str, status: Any) -> None:
        if self.fail_finish:
            self.fail_finish, self.down = False, True
        if self.down:
            raise StoreUnavailable("store down")
        await super().journal_finish(key, status)

    async def journal_head(self, conversation_key: str) -> JournalEntry | None:
        if self.down:
            raise StoreUnavailable("store down")
        return await super().journal_head(conversation_key)


class Chat(Channel):
    """Records what it sends; every part is one visible message."""

    type = "chat"

    def __init__(self) -> None:
        super().__init__("chat", ChannelSettings(type="chat"), StubServices(None))  # type: ignore[arg-type]
        self.sent: list[str] = []

    def describe(self) -> str:
        return "a chat in memory"

    async def send_text(self, event: InboundEvent, text: str) -> str | None:
        self.sent.append(text)
        return f"m{len(self.sent)}"


class Runner:
    """The agent's side of a turn: answers at once, or when ``release`` is set."""

    def __init__(self, release: asyncio.Event | None = None, text: str = "The answer.") -> None:
        self.release = release
        self.text = text
        self.turns = 0

    async def run(self, channel: Channel, event: InboundEvent, reply: Reply) -> Answer:
        self.turns += 1
        if self.release is not None:
            await self.release.wait()
        answer = Answer(self.text)
        await reply.finish(answer)
        return answer


def dispatcher(store: MemoryStore, runner: Runner, channel: Chat, lease_ttl: float = 0.3) -> Dispatcher:
    return Dispatcher(store=store, runner=runner, channels={"chat": channel},  # type: ignore[arg-type]
                      metrics=Metrics(), max_concurrency=4, lease_ttl=lease_ttl, sweep_interval=60)


async def test_a_heartbeat_cut_short_mid_renewal_never_outlives_its_drain() -> None:
    store, chat = FlakyStore(), Chat()
    release = asyncio.Event()
    d = dispatcher(store, Runner(release), chat)
    await d.accept([EVENT])
    await asyncio.wait_for(store.renewing.wait(), 5)
    release.set()  # the turn ends while the heartbeat is inside a renewal
    await asyncio.wait_for(d.idle(), 5)
    await asyncio.sleep(0.5)  # longer than a lease: a surviving heartbeat would have renewed it
    assert await store.try_lock(LEASE, "someone else", 10)
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("lease:")] == []


async def test_a_lease_the_store_cannot_give_is_a_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    store, chat = FlakyStore(), Chat()
    d = dispatcher(store, Runner(), chat)
    await d.accept([EVENT])
    await asyncio.wait_for(d.idle(), 5)
    store.down = True
    with caplog.at_level(logging.WARNING):
        d.kick(EVENT.conversation_key)
        await asyncio.wait_for(d.idle(), 5)
    assert any("not draining" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info or "crashed" in r.getMessage()]


async def test_what_a_turn_sent_before_the_store_failed_is_written_back_and_not_sent_again() -> None:
    store, chat = FlakyStore(), Chat()
    chat.max_text_length = 12  # "The answer." and "And more." go as two messages
    runner = Runner(text="The answer. And more.")
    d = dispatcher(store, runner, chat, lease_ttl=5)
    store.fail_progress_after = 2  # attempts, then the first part's intent, then (down) its id
    await d.accept([EVENT])
    while not store.down:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the outage lasts a while
    assert chat.sent == ["The answer."]
    store.down = False
    await asyncio.wait_for(d.idle(), 10)
    assert chat.sent == ["The answer.", "And more."]  # the resumed turn knew the first had gone out
    assert await store.journal_head(EVENT.conversation_key) is None  # finished
    assert runner.turns == 2


async def test_an_answer_delivered_just_before_the_store_failed_is_finished_not_sent_again() -> None:
    """The last part's id is saved with nothing of its own (the finish follows): an outage at the
    finish writes it back with the finish, once the store is back."""
    store, chat = FlakyStore(), Chat()
    runner = Runner()
    d = dispatcher(store, runner, chat, lease_ttl=5)
    store.fail_finish = True
    await d.accept([EVENT])
    while not store.down:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert chat.sent == ["The answer."]
    store.down = False
    await asyncio.wait_for(d.idle(), 10)
    assert chat.sent == ["The answer."] and runner.turns == 1
    assert await store.journal_head(EVENT.conversation_key) is None


async def test_an_event_given_up_after_five_attempts_ends_in_an_apology_not_silence() -> None:
    from gateway.policy import APOLOGY, MAX_EVENT_ATTEMPTS

    store, chat = FlakyStore(), Chat()
    runner = Runner()
    d = dispatcher(store, runner, chat)
    await store.journal_add(JournalEntry(EVENT))
    await store.journal_progress(EVENT.journal_key, {}, MAX_EVENT_ATTEMPTS)  # it crashed us five times
    d.kick(EVENT.conversation_key)
    await asyncio.wait_for(d.idle(), 5)
    assert chat.sent == [APOLOGY] and runner.turns == 0  # no sixth turn: an apology instead
    assert await store.journal_head(EVENT.conversation_key) is None
