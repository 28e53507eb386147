"""The store methods behind the admin API, linking and forgetting: one contract for all three stores.

Memory, a SQLite file and the real Redis (database 15) must agree on: identity records and their
conversations, cursor listing in key order, the reverse index of links, prefix deletion of values,
and forgetting a conversation without breaking deduplication.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from adapters.stores import memory, sqlite
from adapters.stores import redis as redis_store
from gateway.events import Identity, InboundEvent
from gateway.store import ConversationState, JournalEntry, Store
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis

CREATE: dict[str, Callable[[str], Store]] = {
    "memory": memory.create,
    "sqlite": sqlite.create,
    "redis": redis_store.create,
}
ALL = [pytest.param("memory"), pytest.param("sqlite"), pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=ALL)
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[str], Store]]:
    kind: str = request.param
    if kind == "redis":
        flush_test_redis()
    base = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": REDIS_TEST_URL}[kind]
    stores: list[Store] = []

    def make(options: str = "") -> Store:
        store = CREATE[kind](base + (f"?{options}" if options else ""))
        stores.append(store)
        return store

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(opened: Callable[[str], Store]) -> Store:
    s = opened("")
    await s.initialize()
    return s


def event(key: str, scope: str, text: str = "my secret question") -> InboundEvent:
    return InboundEvent(channel="sms", key=key, identity=Identity("twilio-sms", "", "+15550001"), scope=scope,
                        text=text, reply={"to": "+15550001"})


async def test_touching_an_identity_records_where_and_when_it_spoke(store: Store) -> None:
    assert await store.get_identity("sms|x|1") is None
    await store.touch_identity("sms|x|1", "sms:a", 1000.0)
    await store.touch_identity("sms|x|1", "sms:b", 1005.0)
    await store.touch_identity("sms|x|1", "sms:a", 1010.0)
    record = await store.get_identity("sms|x|1")
    assert record is not None
    assert (record.identity_key, record.first_seen, record.last_seen) == ("sms|x|1", 1000.0, 1010.0)
    assert record.conversations == {"sms:a": 1010.0, "sms:b": 1005.0}


async def test_conversations_long_before_the_last_word_are_dropped(opened: Callable[[str], Store]) -> None:
    store = opened("conversation_ttl=100")
    await store.initialize()
    for i in range(40):  # enough for Redis to prune its hash, not only to filter on reading
        await store.touch_identity("busy|1|1", f"thread:{i}", 1000.0 + i)
    await store.touch_identity("busy|1|1", "thread:new", 1135.0)
    record = await store.get_identity("busy|1|1")
    assert record is not None and record.first_seen == 1000.0 and record.last_seen == 1135.0
    assert sorted(record.conversations) == sorted(["thread:new", *(f"thread:{i}" for i in range(36, 40))])


async def test_identities_are_listed_in_key_order_page_by_page(store: Store) -> None:
    keys = [f"web|w|user{i:02d}" for i in range(7)] + ["email||a@x.org", "slack|T1|U*[?"]
    for i, key in enumerate(reversed(keys)):
        await store.touch_identity(key, f"c:{i}", 100.0 + i)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await store.list_identities(after, 3)
        assert len(page) <= 3
        if not page:
            break
        seen += [r.identity_key for r in page]
        after = page[-1].identity_key
    assert seen == sorted(keys)
    assert [r.identity_key for r in await store.list_identities("slack|T1|U*[?", 10)] == [
        k for k in sorted(keys) if k > "slack|T1|U*[?"
    ]


async def test_a_deleted_identity_is_gone_from_lookups_and_listings(store: Store) -> None:
    for key in ("a|1|1", "b|1|1", "c|1|1"):
        await store.touch_identity(key, "conv", 1.0)
    await store.delete_identity("b|1|1")
    assert await store.get_identity("b|1|1") is None
    assert [r.identity_key for r in await store.list_identities(None, 10)] == ["a|1|1", "c|1|1"]
    assert [r.identity_key for r in await store.list_identities(None, 1)] == ["a|1|1"]


async def test_identities_idle_past_the_conversation_ttl_are_forgotten(opened: Callable[[str], Store]) -> None:
    store = opened("conversation_ttl=0.3")
    await store.initialize()
    import time

    await store.touch_identity("old|1|1", "conv", time.time())
    await asyncio.sleep(0.4)
    await store.touch_identity("new|1|1", "conv", time.time())
    assert await store.get_identity("old|1|1") is None
    assert [r.identity_key for r in await store.list_identities(None, 10)] == ["new|1|1"]


async def test_links_are_found_by_their_target(store: Store) -> None:
    await store.set_link("a|1|1", "person-u")
    await store.set_link("b|1|1", "person-u")
    await store.set_link("c|1|1", "person-v")
    assert await store.linked_identities("person-u") == ["a|1|1", "b|1|1"]
    await store.set_link("b|1|1", "person-v")  # moved: no longer found under its old target
    assert await store.linked_identities("person-u") == ["a|1|1"]
    assert await store.linked_identities("person-v") == ["b|1|1", "c|1|1"]
    await store.delete_link("a|1|1")
    await store.delete_link("a|1|1")  # deleting twice is harmless
    assert await store.linked_identities("person-u") == []
    assert await store.get_link("a|1|1") is None
    assert await store.get_link("b|1|1") == "person-v"


async def test_values_are_deleted_by_prefix_and_only_by_prefix(store: Store) -> None:
    for key in ("rate:sms|x|1:1", "rate:sms|x|1:2", "rate:sms|x|10:1", "x*[1", "xy[1", "other"):
        await store.set_value(key, "v")
    await store.incr("rate:sms|x|1:3", 60)
    assert await store.delete_values("rate:sms|x|1:") == 3
    assert await store.get_value("rate:sms|x|1:1") is None
    assert await store.get_value("rate:sms|x|10:1") == "v"
    assert await store.delete_values("x*[") == 1  # glob characters are plain text here
    assert await store.get_value("xy[1") == "v"
    assert await store.get_value("other") == "v"
    assert await store.delete_values("nothing-here:") == 0


async def test_forgetting_a_conversation_keeps_nothing_of_it_but_dedup(store: Store) -> None:
    await store.journal_add(JournalEntry(event("done-1", "+15550001")))
    await store.journal_finish("sms:done-1", "done")
    await store.journal_add(JournalEntry(event("pending-1", "+15550001")))
    await store.journal_add(JournalEntry(event("other-1", "+15550002", text="keep me")))
    await store.put_conversation("sms:+15550001", ConversationState("c1", "u1", "m1", 1.0))
    await store.put_conversation("sms:+15550002", ConversationState("c2", "u2", "m2", 1.0))

    await store.forget_conversation("sms:+15550001")

    assert await store.get_conversation("sms:+15550001") is None
    assert await store.get_conversation("sms:+15550002") is not None
    assert [e.event.text for e in await store.journal_pending()] == ["keep me"]
    assert await store.journal_head("sms:+15550001") is None
    # A platform retry of a forgotten message is still a duplicate, never answered again.
    assert not await store.journal_add(JournalEntry(event("done-1", "+15550001")))
    assert not await store.journal_add(JournalEntry(event("pending-1", "+15550001")))


async def test_forgotten_conversations_leave_no_text_in_sqlite(tmp_path: Path) -> None:
    store = sqlite.create(f"sqlite:///{tmp_path}/state.db")
    await store.initialize()
    try:
        await store.journal_add(JournalEntry(event("done-1", "+15550001")))
        await store.journal_finish("sms:done-1", "done")  # SQLite keeps finished events until the purge
        await store.journal_add(JournalEntry(event("pending-1", "+15550001")))
        await store.forget_conversation("sms:+15550001")
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = db.execute("SELECT key, conversation, event, progress, status FROM journal ORDER BY key").fetchall()
    assert rows == [("sms:done-1", "", "", "{}", "done"), ("sms:pending-1", "", "", "{}", "failed")]


@pytest.mark.redis
async def test_forgotten_conversations_leave_no_key_or_text_in_redis() -> None:
    flush_test_redis()
    store = redis_store.create(REDIS_TEST_URL)
    await store.initialize()
    try:
        await store.journal_add(JournalEntry(event("done-1", "+15550001")))
        await store.journal_finish("sms:done-1", "done")
        await store.journal_add(JournalEntry(event("pending-1", "+15550001")))
        await store.put_conversation("sms:+15550001", ConversationState("c1", "u1", "m1", 1.0))
        await store.forget_conversation("sms:+15550001")
    finally:
        await store.close()
    async with aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True) as r:
        keys = sorted(await r.keys("*"))
        assert not [k for k in keys if "+15550001" in k]
        for key in keys:
            if await r.type(key) == "hash":
                assert "+15550001" not in str(await r.hgetall(key))
