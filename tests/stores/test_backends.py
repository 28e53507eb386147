"""Checks specific to one backend: SQLite schema, purge, crash safety and forgetting; Redis key layout and outages."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from zlib import crc32

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rex

from adapters.stores import redis as redis_store
from adapters.stores import sqlite
from gateway.errors import ConfigError, StoreUnavailable
from gateway.events import Identity, InboundEvent
from gateway.store import ConversationState, JournalEntry, Store
from tests.conftest_stores import REDIS_TEST_URL, PrivateRedis, flush_test_redis, refused_port
from tests.stores.support import REPO, entry, pending_keys

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


def _sms(key: str, scope: str, text: str = "my secret question") -> JournalEntry:
    return JournalEntry(InboundEvent(channel="sms", key=key, identity=Identity("twilio-sms", "", "+15550001"),
                                     scope=scope, text=text, reply={"to": "+15550001"}))


async def test_forgotten_conversations_leave_no_text_in_sqlite(tmp_path: Path) -> None:
    store = sqlite.create(f"sqlite:///{tmp_path}/state.db")
    await store.initialize()
    try:
        await store.journal_add(_sms("done-1", "+15550001"))
        await store.journal_finish("sms:done-1", "done")  # SQLite keeps finished events until the purge
        await store.journal_add(_sms("pending-1", "+15550001"))
        await store.forget_conversation("sms:+15550001")
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = db.execute("SELECT key, conversation, event, progress, status FROM journal ORDER BY key").fetchall()
    assert rows == [("sms:done-1", "", "", "{}", "done"), ("sms:pending-1", "", "", "{}", "failed")]


# -- Redis specifics -----------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_keys_are_namespaced_and_finished_entries_shrink(
    redis_backed: Store, raw_redis: aioredis.Redis
) -> None:
    store = redis_backed
    await store.journal_add(entry("1", text="x" * 2000))
    await store.journal_add(entry("2"))
    await store.put_conversation("tg:chat-1", ConversationState("conv_1", "u_1"))
    await store.set_link("telegram|bot1|42", "u_1")
    await store.set_value("v", "1")
    await store.try_lock("l", "me", 30)
    # Links live in hash buckets under the v2 prefix (issue 18), everything else under v1.
    links = f"switchboard:v2:links:{crc32(b'telegram|bot1|42') % 4096}"
    linked = f"switchboard:v2:linked:{crc32(b'u_1') % 4096}"
    assert {key for key in await raw_redis.keys("*") if not key.startswith("switchboard:v1:")} == {links, linked}
    assert await raw_redis.hgetall(links) == {"telegram|bot1|42": "u_1"}
    assert await raw_redis.hgetall(linked) == {"telegram|bot1|42": str(crc32(b"u_1") // 4096 % 128)}
    assert await raw_redis.pttl("switchboard:v1:journal:tg:1") == -1  # pending never expires
    await store.journal_finish("tg:1", "done")
    assert await raw_redis.hgetall("switchboard:v1:journal:tg:1") == {"s": "done"}
    assert 0 < await raw_redis.pttl("switchboard:v1:journal:tg:1") <= 7 * 86400 * 1000
    assert await raw_redis.zrange("switchboard:v1:pending", 0, -1) == ["tg:2"]
    await store.journal_finish("tg:2", "failed")
    assert not await raw_redis.exists("switchboard:v1:pending", "switchboard:v1:queue:tg:chat-1")
    assert 29 * 86400 * 1000 < await raw_redis.pttl("switchboard:v1:conv:tg:chat-1") <= 30 * 86400 * 1000
    # Issues 9 and 18 budget 300 bytes of Redis per idle identity (bench/memory.py measures it over
    # 100,000): the conversation string with realistic ids stays in jemalloc's 96-byte class, and
    # link buckets stay compact listpacks.
    uuid_ = "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c"
    state = ConversationState(uuid_, "telegram.123456789.987654321", uuid_, 1712345678.123456)
    await store.put_conversation("tg-main:987654321", state)
    assert await raw_redis.memory_usage("switchboard:v1:conv:tg-main:987654321") <= 184
    assert {await raw_redis.object("encoding", key) for key in (links, linked)} == {"listpack"}


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


@pytest.mark.redis
async def test_forgotten_conversations_leave_no_key_or_text_in_redis() -> None:
    flush_test_redis()
    store = redis_store.create(REDIS_TEST_URL)
    await store.initialize()
    try:
        await store.journal_add(_sms("done-1", "+15550001"))
        await store.journal_finish("sms:done-1", "done")
        await store.journal_add(_sms("pending-1", "+15550001"))
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
