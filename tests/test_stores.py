"""One contract for every state store, run against memory, a SQLite file and the real Redis.

Each test states something the gateway relies on (SPEC §5: ack first, no duplicates, nothing lost,
order per conversation) in terms of the ``Store`` protocol only; store-specific checks (SQLite
schema and purge, Redis key layout and outages) follow at the end.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rex

from adapters.stores import memory, sqlite
from adapters.stores import redis as redis_store
from gateway.errors import ConfigError, StoreUnavailable
from gateway.events import Identity, InboundEvent
from gateway.store import ConversationState, JournalEntry, JournalStatus, Store
from tests.conftest_stores import REDIS_TEST_URL, PrivateRedis, flush_test_redis, refused_port

CREATE: dict[str, Callable[[str], Store]] = {
    "memory": memory.create,
    "sqlite": sqlite.create,
    "redis": redis_store.create,
}
REPO = Path(__file__).resolve().parents[1]
DURABLE = [pytest.param("sqlite"), pytest.param("redis", marks=pytest.mark.redis)]
ALL = [pytest.param("memory"), *DURABLE]


@dataclass
class Opener:
    """Opens stores of one kind on one location; durable kinds see each other's data."""

    kind: str
    base_url: str
    opened: list[Store]

    async def __call__(self, options: str = "") -> Store:
        store = CREATE[self.kind](self.base_url + (f"?{options}" if options else ""))
        await store.initialize()
        self.opened.append(store)
        return store

    async def reopen(self, store: Store) -> Store:
        """What a restarted gateway gets: a new store object on the same URL."""
        await store.close()
        self.opened.remove(store)
        return await self()

    async def instances(self, store: Store) -> list[Store]:
        """Two stores as two gateway instances see them (memory cannot be shared: the same one twice)."""
        return [store, store if self.kind == "memory" else await self()]


@pytest.fixture(params=ALL)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    kind: str = request.param
    if kind == "redis":
        flush_test_redis()
    base = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": REDIS_TEST_URL}
    # tmp_path is absolute, so the SQLite URL gets its four slashes.
    result = Opener(kind, base[kind], [])
    yield result
    for store in result.opened:
        await store.close()


@pytest.fixture
async def store(opener: Opener) -> Store:
    return await opener()


def event(key: str, *, scope: str = "chat-1", received_at: float = 1000.0, text: str = "hi") -> InboundEvent:
    return InboundEvent(
        channel="tg",
        key=key,
        identity=Identity("telegram", "bot1", "42"),
        scope=scope,
        text=text,
        reply={"chat_id": 42, "thread": None},
        meta={"message_id": "m1"},
        received_at=received_at,
    )


def entry(key: str, *, scope: str = "chat-1", received_at: float = 1000.0, text: str = "hi") -> JournalEntry:
    return JournalEntry(event(key, scope=scope, received_at=received_at, text=text))


async def pending_keys(store: Store) -> list[str]:
    return [e.event.key for e in await store.journal_pending()]


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


# -- SQLite specifics ----------------------------------------------------------------------------


async def test_sqlite_creates_missing_directories_for_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with sqlite.SQLiteStore("sqlite:///.switchboard/state.db") as store:
        await store.set_value("k", "v")
    assert (tmp_path / ".switchboard" / "state.db").is_file()
    absolute = tmp_path / "deep" / "er" / "state.db"
    async with sqlite.SQLiteStore(f"sqlite:///{absolute}") as store:
        assert store.path == str(absolute)
    assert absolute.is_file()


async def test_sqlite_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with sqlite.SQLiteStore(f"sqlite:///{path}"):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (sqlite.SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"journal", "conversations", "links", "kv", "locks"} <= tables
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ConfigError, match=r"schema version 99, newer"):
        await sqlite.SQLiteStore(f"sqlite:///{path}").initialize()


async def test_sqlite_purge_keeps_storage_bounded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with sqlite.SQLiteStore(f"sqlite:///{path}?dedup_ttl=0.1") as store:
        for key in "123":
            await store.journal_add(entry(key))
        await store.journal_finish("tg:1", "done")
        await store.journal_finish("tg:2", "failed")
        await store.set_value("gone", "x", ttl=0.05)
        await store.try_lock("lease", "w", 0.05)
        await asyncio.sleep(0.2)
        await store.purge()
    with sqlite3.connect(path) as db:
        counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("journal", "kv", "locks")]
    db.close()
    assert counts == [1, 0, 0]


async def test_sqlite_restart_voids_the_leases_of_the_dead_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    async with sqlite.SQLiteStore(url) as crashed:
        assert await crashed.try_lock("conv:tg:chat-1", "old-process", 60)
    async with sqlite.SQLiteStore(url) as restarted:
        assert await restarted.try_lock("conv:tg:chat-1", "new-process", 60)


async def test_sqlite_unusable_location_or_closed_store_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreUnavailable):
        await sqlite.SQLiteStore(f"sqlite:///{tmp_path}/a-file/state.db").initialize()
    store = sqlite.SQLiteStore(f"sqlite:///{tmp_path}/ok.db")
    await store.initialize()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get_value("k")


_KILLED_WRITER = """
import asyncio, sys, time
from adapters.stores.sqlite import SQLiteStore
from gateway.events import Identity, InboundEvent
from gateway.store import JournalEntry

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    await store.initialize()
    event = InboundEvent("tg", "1", Identity("telegram", "b", "1"), "chat", "hello", received_at=1.0)
    assert await store.journal_add(JournalEntry(event))
    await store.journal_progress("tg:1", {"parts": 1}, 1)
    print("acknowledged", flush=True)
    time.sleep(60)  # blocks the loop: no clean close can run before the kill

asyncio.run(main())
"""


async def test_sqlite_acknowledged_event_survives_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), url, stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 15) == b"acknowledged\n"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    async with sqlite.SQLiteStore(url) as store:
        (got,) = await store.journal_pending()
        assert (got.event.text, got.progress, got.attempts) == ("hello", {"parts": 1}, 1)


# -- Redis specifics -----------------------------------------------------------------------------


@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.mark.parametrize("opener", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_redis_keys_are_namespaced_and_finished_entries_shrink(store: Store, raw_redis: aioredis.Redis) -> None:
    await store.journal_add(entry("1", text="x" * 2000))
    await store.journal_add(entry("2"))
    await store.put_conversation("tg:chat-1", ConversationState("conv_1", "u_1"))
    await store.set_link("telegram|bot1|42", "u_1")
    await store.set_value("v", "1")
    await store.try_lock("l", "me", 30)
    assert all(key.startswith("switchboard:v1:") for key in await raw_redis.keys("*"))
    assert await raw_redis.pttl("switchboard:v1:journal:tg:1") == -1  # pending never expires
    await store.journal_finish("tg:1", "done")
    assert await raw_redis.hgetall("switchboard:v1:journal:tg:1") == {"s": "done"}
    assert 0 < await raw_redis.pttl("switchboard:v1:journal:tg:1") <= 7 * 86400 * 1000
    assert await raw_redis.zrange("switchboard:v1:pending", 0, -1) == ["tg:2"]
    await store.journal_finish("tg:2", "failed")
    assert not await raw_redis.exists("switchboard:v1:pending", "switchboard:v1:queue:tg:chat-1")
    assert 29 * 86400 * 1000 < await raw_redis.pttl("switchboard:v1:conv:tg:chat-1") <= 30 * 86400 * 1000
    # Issue 9 budgets 300 bytes of Redis per idle identity; measured with realistic ids.
    uuid_ = "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c"
    state = ConversationState(uuid_, "telegram.123456789.987654321", uuid_, 1712345678.123456)
    await store.put_conversation("tg-main:987654321", state)
    await store.set_link("telegram|123456789|987654321", "telegram.123456789.987654321")
    assert await raw_redis.memory_usage("switchboard:v1:conv:tg-main:987654321") < 250
    assert await raw_redis.memory_usage("switchboard:v1:link:telegram|123456789|987654321") < 200


@pytest.mark.redis
async def test_unreachable_redis_is_store_unavailable() -> None:
    with refused_port() as port:
        store = redis_store.create(f"redis://127.0.0.1:{port}/0")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await store.initialize()
        assert isinstance(caught.value.__cause__, rex.ConnectionError)
        with pytest.raises(StoreUnavailable):
            await store.journal_add(entry("1"))
        assert time.monotonic() - started < 2
        await store.close()


@pytest.mark.redis
async def test_redis_outage_is_store_unavailable_and_recovery_needs_no_restart() -> None:
    with PrivateRedis() as server:
        async with redis_store.RedisStore(server.url) as store:
            assert await store.journal_add(entry("1"))
            server.stop()
            with pytest.raises(StoreUnavailable):
                await store.journal_add(entry("2"))
            with pytest.raises(StoreUnavailable):
                await store.try_lock("l", "me", 1)
            server.start()
            assert await store.journal_add(entry("2"))  # the private server keeps no data
            assert await pending_keys(store) == ["2"]
