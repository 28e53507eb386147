"""The combined store calls (gateway.batched) mean the same on Redis (one script each) and SQLite
(one unit of statements each, one commit) as the one-by-one steps every other store gets: the same
heads, attempts, leases, conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.stores import redis as redis_store
from adapters.stores import sqlite as sqlite_store
from adapters.stores.memory import MemoryStore
from gateway import batched
from gateway.events import Identity, InboundEvent
from gateway.store import ConversationState, JournalEntry, Store
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis


def event(key: str, scope: str = "ann") -> InboundEvent:
    return InboundEvent(channel="chat", key=key, identity=Identity("chat", "", "ann"), scope=scope, text=key)


@pytest.fixture(params=["memory", "redis", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        opened: Store = MemoryStore()
        assert not isinstance(opened, batched.BatchedStore)
    elif request.param == "sqlite":
        opened = sqlite_store.create(f"sqlite:///{tmp_path}/state.db")
        assert isinstance(opened, batched.BatchedStore)
    else:
        flush_test_redis()
        opened = redis_store.create(REDIS_TEST_URL)
        assert isinstance(opened, batched.BatchedStore)
    await opened.initialize()
    yield opened
    await opened.close()


async def test_lock_head_then_finish_next_walks_a_conversation_in_order_and_releases(store: Store) -> None:
    conversation = event("a").conversation_key
    for key in ("a", "b"):
        assert await store.journal_add(JournalEntry(event(key)))
    locked, head = await batched.lock_head(store, "conv:x", "me", 10, conversation)
    assert locked and head is not None and head.event.key == "a" and head.attempts == 1
    assert (await store.journal_head(conversation)).attempts == 1  # type: ignore[union-attr]  # saved
    assert await batched.lock_head(store, "conv:x", "other", 10, conversation) == (False, None)
    following = await batched.finish_next(store, head.key, "done", conversation, "conv:x", "me", 10)
    assert following is not None and following.event.key == "b" and following.attempts == 1
    assert not await store.try_lock("conv:x", "other", 10)  # still ours while an entry is left
    assert await batched.finish_next(store, following.key, "failed", conversation, "conv:x", "me", 10) is None
    assert await store.journal_head(conversation) is None
    assert await store.try_lock("conv:x", "other", 10)  # given back with the last entry
    assert not await store.journal_add(JournalEntry(event("a")))  # finished keys still deduplicate


async def test_finish_next_never_releases_someone_elses_lease(store: Store) -> None:
    conversation = event("a").conversation_key
    await store.journal_add(JournalEntry(event("a")))
    assert await store.try_lock("conv:x", "other", 10)
    assert await batched.finish_next(store, event("a").journal_key, "done", conversation, "conv:x", "me", 10) is None
    assert not await store.try_lock("conv:x", "me", 10)


async def test_turn_read_touches_when_asked_and_reads_conversation_and_link(store: Store) -> None:
    assert await batched.turn_read(store, "chat||ann", "chat:ann", None) == batched.TurnRead(None, None)
    assert await store.get_identity("chat||ann") is None
    await store.put_conversation("chat:ann", ConversationState("c1", "u1", "m1", 5.0))
    await store.set_link("chat||ann", "shared")
    read = await batched.turn_read(store, "chat||ann", "chat:ann", 1234.5)
    assert read == batched.TurnRead(ConversationState("c1", "u1", "m1", 5.0), "shared")
    record = await store.get_identity("chat||ann")
    assert record is not None and record.conversations == {"chat:ann": 1234.5}


@pytest.mark.parametrize("stored_paused", [False, True])
async def test_remember_keeps_a_pause_set_meanwhile_and_maps_the_message(store: Store, stored_paused: bool) -> None:
    await store.put_conversation("chat:ann", ConversationState("c0", "u1", None, 1.0, paused=stored_paused))
    state = ConversationState("c0", "u1", None, 1.0, paused=not stored_paused)
    state.conversation_id, state.last_message_id, state.updated_at = "c1", "m9", 2.0
    await batched.remember(store, "chat:ann", state, "msg:chat:ann:m9", "c1", 60)
    assert state.paused is stored_paused
    assert await store.get_conversation("chat:ann") == ConversationState("c1", "u1", "m9", 2.0, stored_paused)
    assert await store.get_value("msg:chat:ann:m9") == "c1"
    fresh = ConversationState("c2", "u1", None, 3.0, paused=True)
    await batched.remember(store, "chat:bob", fresh, None, "c2", 60)  # nothing stored: its own flag
    assert await store.get_conversation("chat:bob") == fresh


async def test_save_answer_saves_the_progress_with_the_conversation(store: Store) -> None:
    from gateway.progress import Progress

    entry = JournalEntry(event("a"))
    await store.journal_add(entry)
    saved: list[dict[str, object]] = []

    async def save(data: dict[str, object]) -> None:
        saved.append(data)
        await store.journal_progress(entry.key, data, 1)

    progress = Progress({"answer": {"text": "hi"}}, save, journal_key=entry.key, attempts=1)
    state = ConversationState("c1", "u1", "m1", 2.0)
    await batched.save_answer(store, progress, "chat:ann", state, "msg:chat:ann:m1", "c1", 60)
    head = await store.journal_head(entry.event.conversation_key)
    assert head is not None and head.progress == {"answer": {"text": "hi"}} and head.attempts == 1
    assert await store.get_conversation("chat:ann") == state
    assert await store.get_value("msg:chat:ann:m1") == "c1"


async def test_a_noted_read_comes_back_with_its_entry_once_and_only_while_pending(store: Store) -> None:
    """What a resumed turn learns: the agent may have been asked, in the conversation read then."""
    entry = JournalEntry(event("a"))
    await store.journal_add(entry)
    conversation = entry.event.conversation_key
    await store.put_conversation("chat:ann", ConversationState("c1", "u1", "m1", 5.0))
    read = await batched.turn_read(store, "chat||ann", "chat:ann", None, (entry.key, 100.0))
    assert read.state == ConversationState("c1", "u1", "m1", 5.0)
    if not isinstance(store, batched.BatchedStore):
        assert not read.noted  # the turn saves its marker itself
        return
    assert read.noted
    await store.put_conversation("chat:ann", ConversationState("c2", "u1", None, 6.0))
    again = await batched.turn_read(store, "chat||ann", "chat:ann", None, (entry.key, 200.0))
    assert not again.noted  # the first read stays: a resumed turn must see what the first run asked in
    locked, head = await batched.lock_head(store, "conv:x", "me", 10, conversation)
    assert locked and head is not None
    at, noted = batched.from_read_note(head.progress[batched.READ_NOTE])
    assert (at, noted.state, noted.link) == (100.0, ConversationState("c1", "u1", "m1", 5.0), None)
    assert [e.progress.get(batched.READ_NOTE) for e in await store.journal_pending()] == [head.progress["read"]]
    await batched.finish_next(store, head.key, "done", conversation, "conv:x", "me", 10)
    assert not (await batched.turn_read(store, "chat||ann", "chat:ann", None, (entry.key, 300.0))).noted


async def test_journal_add_counts_new_messages_once_where_the_store_can(store: Store) -> None:
    count = batched.RateCount("rate:chat||ann:1", 60)
    for key in ("a", "b", "a"):  # the second "a" is a platform retry: not a new message
        await batched.journal_add(store, JournalEntry(event(key)), count)
    pending = await store.journal_pending()
    if isinstance(store, batched.BatchedStore):
        assert [e.rate_count for e in pending] == [1, 2]
        assert await store.incr("rate:chat||ann:1", 60) == 3  # the same counter the turn would use
    else:
        assert [e.rate_count for e in pending] == [None, None]  # counted by the turn instead


async def test_a_turn_that_lost_its_lease_cannot_save_progress_where_the_store_fences(store: Store) -> None:
    """A store outage longer than the lease let another worker take the entry over: the stale
    turn's next save (an intent, before any visible action) fails instead of being written."""
    from gateway.errors import LeaseLost
    from gateway.progress import Progress

    entry = JournalEntry(event("a"))
    await store.journal_add(entry)
    assert await store.try_lock("conv:x", "other", 10)  # taken over
    if not isinstance(store, batched.BatchedStore):
        await batched.journal_progress(store, entry.key, {"sending": 1}, 1, "conv:x", "me", 10)
        return  # one process: nothing to fence against
    with pytest.raises(LeaseLost):
        await batched.journal_progress(store, entry.key, {"sending": 1}, 1, "conv:x", "me", 10)
    progress = Progress({"answer": {"text": "hi"}}, None, journal_key=entry.key, attempts=1, lease=("conv:x", "me", 10))
    with pytest.raises(LeaseLost):
        await batched.save_answer(store, progress, "chat:ann", ConversationState("c1", "u1"), None, "c1", 60)
    head = await store.journal_head(entry.event.conversation_key)
    assert head is not None and head.progress == {} and await store.get_conversation("chat:ann") is None
    # Expired and free again: the write takes the lease back (nobody resumed the entry meanwhile).
    await store.unlock("conv:x", "other")
    await batched.journal_progress(store, entry.key, {"sending": 1}, 1, "conv:x", "me", 10)
    assert not await store.try_lock("conv:x", "other", 10)
    await batched.save_answer(store, progress, "chat:ann", ConversationState("c1", "u1"), None, "c1", 60)
    head = await store.journal_head(entry.event.conversation_key)
    assert head is not None and head.progress == {"answer": {"text": "hi"}}
