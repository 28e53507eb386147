"""One contract for every state store, run against memory, a SQLite file and the real Redis.

Each test states something the gateway relies on (SPEC §5: ack first, no duplicates, nothing lost,
order per conversation) in terms of the ``Store`` protocol only. Store-specific checks are in test_backends.py.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path

import pytest

from adapters.stores import memory, sqlite
from adapters.stores import redis as redis_store
from gateway.errors import ConfigError
from gateway.events import Identity, InboundEvent
from gateway.store import ConversationState, JournalEntry, JournalStatus, Store
from tests.stores.support import CREATE, DURABLE, Opener, entry, pending_keys

# -- journal -----------------------------------------------------------------------------------


async def test_same_event_twice_is_recorded_once(store: Store) -> None:
    assert await store.journal_add(entry("1", text="first"))
    assert not await store.journal_add(entry("1", text="platform retry"))
    assert await store.journal_add(entry("2"))
    assert [e.event.text for e in await store.journal_pending()] == ["first", "hi"]


async def test_concurrent_deliveries_of_one_event_record_it_once(opener: Opener, store: Store) -> None:
    instances = await opener.instances(store)
    results = await asyncio.gather(*(instances[i % 2].journal_add(entry("dup")) for i in range(20)))
    assert sorted(results) == [False] * 19 + [True]
    assert await pending_keys(store) == ["dup"]


async def test_pending_is_oldest_first_with_ties_in_arrival_order(store: Store) -> None:
    for key, received_at in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0), ("b1", 2.0)]:
        assert await store.journal_add(entry(key, received_at=received_at, scope=key))
    assert await pending_keys(store) == ["a", "b", "b2", "b1", "c"]


async def test_head_is_the_oldest_unfinished_entry_of_its_conversation(store: Store) -> None:
    assert await store.journal_head("tg:chat-1") is None
    for key, scope, received_at in [
        ("3", "A", 3.0),
        ("1", "A", 1.0),
        ("0", "B", 0.5),
        ("2b", "A", 2.0),
        ("2a", "A", 2.0),
    ]:
        await store.journal_add(entry(key, scope=scope, received_at=received_at))
    heads = []
    while (head := await store.journal_head("tg:A")) is not None:
        heads.append(head.event.key)
        await store.journal_finish(head.key, "done")
    assert heads == ["1", "2b", "2a", "3"]
    assert await pending_keys(store) == ["0"]
    assert await store.journal_head("tg:chat-1") is None


async def test_conversations_with_unfinished_entries_are_listed_once(store: Store) -> None:
    """What the sweeper kicks after a restart or a dead instance: every conversation with work left."""
    assert await store.journal_conversations() == []
    for key, scope in [("1", "A"), ("2", "A"), ("3", "B"), ("4", "C")]:
        await store.journal_add(entry(key, scope=scope, received_at=float(key)))
    await store.journal_finish("tg:4", "done")
    assert sorted(await store.journal_conversations()) == ["tg:A", "tg:B"]
    await store.journal_finish("tg:1", "done")
    await store.journal_finish("tg:2", "failed")
    assert await store.journal_conversations() == ["tg:B"]


async def test_event_round_trips_unchanged(store: Store) -> None:
    original = InboundEvent(
        channel="slack-main",
        key="Ev01|ü",
        identity=Identity("slack", "T1", "U1"),
        scope="C1:1700000000.000100",
        text="Grüße 👋\nline two",
        kind="feedback",
        reply={"channel": "C1", "thread_ts": "1700000000.000100", "nested": {"a": [1, 2.5, None, True]}},
        meta={"feedback": "positive"},
        received_at=1712345678.123456,
    )
    assert await store.journal_add(JournalEntry(original))
    (got,) = await store.journal_pending()
    assert got.event == original
    assert (got.key, got.status, got.progress, got.attempts) == ("slack-main:Ev01|ü", "pending", {}, 0)


async def test_progress_is_kept_and_readable(store: Store) -> None:
    await store.journal_add(entry("1"))
    await store.journal_progress("tg:1", {"sent": ["ts1"], "parts": 1}, 1)
    await store.journal_progress("tg:1", {"sent": ["ts1", "ts2"], "parts": 2}, 2)
    (got,) = await store.journal_pending()
    assert (got.progress, got.attempts) == ({"sent": ["ts1", "ts2"], "parts": 2}, 2)
    head = await store.journal_head("tg:chat-1")
    assert head is not None and (head.event, head.progress, head.attempts) == (got.event, got.progress, 2)


@pytest.mark.parametrize("status", ["done", "failed"])
async def test_finished_event_leaves_pending_but_keeps_deduplicating(store: Store, status: JournalStatus) -> None:
    await store.journal_add(entry("1"))
    await store.journal_add(entry("2"))
    await store.journal_finish("tg:1", status)
    assert await pending_keys(store) == ["2"]
    assert not await store.journal_add(entry("1"))
    head = await store.journal_head("tg:chat-1")
    assert head is not None and head.key == "tg:2"
    # A late progress write (a slow worker) must not bring the finished entry back.
    await store.journal_progress("tg:1", {"parts": 9}, 9)
    await store.journal_finish("tg:1", "failed")
    assert await pending_keys(store) == ["2"]
    await store.journal_finish("tg:never-added", "done")
    assert await store.journal_add(entry("never-added"))


async def test_finished_keys_are_forgotten_after_the_dedup_ttl(opener: Opener) -> None:
    store = await opener("dedup_ttl=0.2")
    await store.journal_add(entry("1"))
    await store.journal_finish("tg:1", "done")
    assert not await store.journal_add(entry("1"))
    await asyncio.sleep(0.3)
    assert await store.journal_add(entry("1", text="again"))
    assert [e.event.text for e in await store.journal_pending()] == ["again"]


async def test_pending_events_have_no_expiry(opener: Opener) -> None:
    store = await opener("dedup_ttl=0.1")
    await store.journal_add(entry("1"))
    await asyncio.sleep(0.2)
    assert await pending_keys(store) == ["1"]
    assert not await store.journal_add(entry("1"))


@pytest.mark.parametrize("opener", DURABLE, indirect=True)
async def test_restart_resumes_pending_events_with_their_progress(opener: Opener, store: Store) -> None:
    for key, at in [("1", 1.0), ("2", 2.0), ("3", 3.0)]:
        await store.journal_add(entry(key, received_at=at))
    await store.journal_progress("tg:2", {"message_ids": [7]}, 1)
    await store.journal_finish("tg:1", "done")
    store = await opener.reopen(store)
    assert [(e.event.key, e.progress, e.attempts) for e in await store.journal_pending()] == [
        ("2", {"message_ids": [7]}, 1),
        ("3", {}, 0),
    ]
    assert not await store.journal_add(entry("1"))
    assert not await store.journal_add(entry("2"))
    head = await store.journal_head("tg:chat-1")
    assert head is not None and (head.key, head.progress) == ("tg:2", {"message_ids": [7]})


# -- conversations and links -------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        ConversationState("conv_1", "telegram.bot1.42", "msg_1", 1700000000.25, paused=True),
        ConversationState(None, "u_ü"),
        # Values a compact encoding could trip on.
        ConversationState("", "u", "", 0.0),
        ConversationState("[x", "a\x1fb", "m\x1f", -1.5e-7, paused=True),
    ],
)
async def test_conversations_round_trip(store: Store, state: ConversationState) -> None:
    assert await store.get_conversation("tg:chat-1") is None
    await store.put_conversation("tg:chat-1", state)
    assert await store.get_conversation("tg:chat-1") == state
    fresh = ConversationState("conv_2", "u_1", "msg_9", 1.0)
    await store.put_conversation("tg:chat-1", fresh)
    await store.put_conversation("tg:chat-2", state)
    assert await store.get_conversation("tg:chat-1") == fresh
    await store.drop_conversation("tg:chat-1")
    await store.drop_conversation("tg:missing")
    assert await store.get_conversation("tg:chat-1") is None
    assert await store.get_conversation("tg:chat-2") == state


async def test_idle_conversations_expire_and_each_put_renews_them(opener: Opener) -> None:
    store = await opener("conversation_ttl=0.3")
    await store.put_conversation("s", ConversationState("c", "u"))
    await asyncio.sleep(0.2)
    await store.put_conversation("s", ConversationState("c", "u", "m"))
    await asyncio.sleep(0.2)
    assert await store.get_conversation("s") == ConversationState("c", "u", "m")
    await asyncio.sleep(0.2)
    assert await store.get_conversation("s") is None


async def test_links_round_trip(store: Store) -> None:
    assert await store.get_link("slack|T1|U1") is None
    await store.set_link("slack|T1|U1", "u_shared")
    await store.set_link("telegram|bot|42", "u_shared")
    await store.set_link("slack|T1|U1", "u_other")
    assert await store.get_link("slack|T1|U1") == "u_other"
    await store.delete_link("slack|T1|U1")
    await store.delete_link("slack|T1|missing")
    assert await store.get_link("slack|T1|U1") is None
    assert await store.get_link("telegram|bot|42") == "u_shared"


# -- values, counters, leases --------------------------------------------------------------------


async def test_values_with_and_without_expiry(store: Store) -> None:
    assert await store.get_value("cursor") is None
    await store.set_value("cursor", "41")
    await store.set_value("cursor", "42")
    await store.set_value("short", "x", ttl=0.15)
    await store.set_value("renewed", "old", ttl=0.15)
    await store.set_value("renewed", "new")  # a plain set drops the earlier expiry
    assert await store.get_value("short") == "x"
    await asyncio.sleep(0.25)
    assert (await store.get_value("cursor"), await store.get_value("short")) == ("42", None)
    assert await store.get_value("renewed") == "new"
    await store.delete_value("cursor")
    await store.delete_value("missing")
    assert await store.get_value("cursor") is None


async def test_incr_counts_in_a_window_that_later_increments_do_not_extend(store: Store) -> None:
    assert [await store.incr("rate:u1", 0.4) for _ in range(3)] == [1, 2, 3]
    assert await store.get_value("rate:u1") == "3"
    assert await store.incr("rate:u2", 0.4) == 1
    await asyncio.sleep(0.2)
    assert await store.incr("rate:u1", 0.4) == 4
    await asyncio.sleep(0.3)
    assert await store.incr("rate:u1", 0.4) == 1


async def test_concurrent_incr_loses_no_count(opener: Opener, store: Store) -> None:
    instances = await opener.instances(store)
    counts = await asyncio.gather(*(instances[i % 2].incr("burst", 10) for i in range(30)))
    assert sorted(counts) == list(range(1, 31))


async def test_lease_is_exclusive_extendable_and_only_its_owner_unlocks(store: Store) -> None:
    assert await store.try_lock("conv:1", "a", 5)
    assert not await store.try_lock("conv:1", "b", 5)
    assert await store.try_lock("conv:1", "a", 5)
    assert await store.try_lock("conv:2", "b", 5)
    await store.unlock("conv:1", "b")
    assert not await store.try_lock("conv:1", "b", 5)
    await store.unlock("conv:1", "a")
    assert await store.try_lock("conv:1", "b", 5)
    assert not await store.try_lock("conv:1", "a", 5)


async def test_lease_expires_unless_extended(store: Store) -> None:
    assert await store.try_lock("stuck", "dead-worker", 0.15)
    assert await store.try_lock("busy", "worker", 0.3)
    await asyncio.sleep(0.2)
    assert await store.try_lock("busy", "worker", 0.3)  # extends from now
    assert await store.try_lock("stuck", "live-worker", 5)
    await asyncio.sleep(0.2)
    assert not await store.try_lock("busy", "other", 5)
    await store.unlock("stuck", "dead-worker")  # the late unlock of the old owner is ignored
    assert not await store.try_lock("stuck", "dead-worker", 5)


async def test_concurrent_lease_requests_have_one_winner(opener: Opener, store: Store) -> None:
    instances = await opener.instances(store)
    won = await asyncio.gather(*(instances[i % 2].try_lock("conv", f"w{i}", 5) for i in range(20)))
    assert won.count(True) == 1


async def test_ping_and_masked_url(store: Store) -> None:
    await store.ping()
    assert store.url.split(":")[0] in ("memory", "sqlite", "redis")


# -- configuration -------------------------------------------------------------------------------


def test_entry_points_name_these_factories() -> None:
    found = {ep.name: ep.load() for ep in importlib.metadata.entry_points(group="switchboard.stores")}
    assert {name: found.get(name) for name in CREATE} == CREATE


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("memory", "sqlite:///x.db"),
        ("memory", "memory://?conversation_ttl=0"),
        ("sqlite", "sqlite://state.db"),
        ("sqlite", "sqlite:///"),
        ("sqlite", "sqlite:///x.db?dedup_ttl=soon"),
        ("sqlite", "sqlite:///x.db?dedup=7d"),
        ("redis", "redis://localhost:notaport/0"),
        ("redis", "redis://localhost/notadb"),
        ("redis", "redis://:s3cret@localhost/0?dedup_ttl=-1"),
        ("redis", "http://localhost:6379"),
    ],
)
def test_bad_url_is_one_line_config_error(kind: str, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CREATE[kind](url)
    message = str(caught.value)
    assert message.startswith("gateway.store: ") and "\n" not in message and "s3cret" not in message


@pytest.mark.parametrize("options", ["dedup_ttl=2d&conversation_ttl=12h", "dedup_ttl=90&conversation_ttl=30m"])
def test_duration_options_are_accepted(tmp_path: Path, options: str) -> None:
    sqlite.create(f"sqlite:///{tmp_path}/x.db?{options}")
    memory.create(f"memory://?{options}")


async def test_redis_url_hides_the_password() -> None:
    for url in (
        "redis://:s3cret@127.0.0.1:6379/15",
        "redis://bot:s3cret@127.0.0.1/15",
        "unix:///r.sock?password=s3cret",
    ):
        store = redis_store.create(url)
        assert "s3cret" not in store.url and "***" in store.url
        await store.close()


