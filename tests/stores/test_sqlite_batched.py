"""SQLite's combined calls: one unit of statements each, all or nothing, kept across a restart.

What they mean is tested on every store in test_batched.py; here what is SQLite's own: a unit that
fails leaves nothing behind and fails only its caller, what a unit wrote is on disk when its caller
hears back, and a database written before the combined calls existed opens and keeps working.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from adapters.stores._sqlite_batch import GroupCommitter
from adapters.stores._sqlite_sql import MIGRATIONS
from adapters.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from gateway import batched
from gateway.errors import LeaseLost
from gateway.events import Identity, InboundEvent
from gateway.store import ConversationState, JournalEntry


def event(key: str) -> InboundEvent:
    return InboundEvent(channel="chat", key=key, identity=Identity("chat", "", "ann"), scope="ann", text=key)


async def test_a_failing_unit_leaves_nothing_and_fails_only_its_caller(tmp_path: Path) -> None:
    committer = await GroupCommitter.open(str(tmp_path / "t.db"), timeout=5.0)
    await committer.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")

    def good(n: int) -> object:
        return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (f"good{n}",)).rowcount

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('half')")
        raise LeaseLost("stop before the second write")

    def duplicate(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('dup')")
        conn.execute("INSERT INTO t VALUES ('dup')")  # an SQL error half-way

    calls = [committer.run(good(0)), committer.run(half_done), committer.execute("INSERT INTO t VALUES ('plain')"),
             committer.run(duplicate), committer.run(good(1))]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == results[2] == results[4] == 1
    assert isinstance(results[1], LeaseLost) and isinstance(results[3], sqlite3.IntegrityError)
    rows = await committer.execute("SELECT k FROM t ORDER BY k", fetch=True)
    assert rows == [("good0",), ("good1",), ("plain",)]
    await committer.close()


async def test_a_combined_call_is_durable_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.initialize()
    await batched.journal_add(store, JournalEntry(event("a")), batched.RateCount("rate:ann", 60))
    locked, head = await batched.lock_head(store, "conv:ann", "me", 30, event("a").conversation_key)
    assert locked and head is not None
    state = ConversationState("c1", "u1", "m1", 2.0)
    await batched.turn_read(store, "chat||ann", "chat:ann", 5.0, (head.key, 10.0))
    await batched.remember(store, "chat:ann", state, "msg:m1", "c1", 60)
    # What another connection (a restarted process) reads at the moment the caller is told.
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT attempts, rate_count, note IS NOT NULL FROM journal").fetchone() == (1, 1, 1)
        assert other.execute("SELECT owner FROM locks").fetchone() == ("me",)
        assert other.execute("SELECT conversation_id FROM conversations").fetchone() == ("c1",)
        assert other.execute("SELECT value FROM kv WHERE key = 'msg:m1'").fetchone() == ("c1",)
    await store.close()
    async with SQLiteStore(f"sqlite:///{path}") as restarted:  # the leases of the dead process are void
        locked, again = await batched.lock_head(restarted, "conv:ann", "new", 30, event("a").conversation_key)
        assert locked and again is not None and again.attempts == 2 and again.rate_count == 1
        assert batched.from_read_note(again.progress[batched.READ_NOTE])[0] == 10.0


async def test_a_database_from_before_the_combined_calls_opens_and_keeps_its_entries(tmp_path: Path) -> None:
    path, written = tmp_path / "state.db", event("a")
    with sqlite3.connect(path) as old:
        for statement in (s for migration in MIGRATIONS[:2] for s in migration):
            old.execute(statement)
        old.execute("PRAGMA user_version = 2")
        old.execute("INSERT INTO journal (key, conversation, event, status, progress, attempts, received_at,"
                    " created_at) VALUES (?, ?, ?, 'pending', '{\"sent\": 1}', 1, 1.0, 1.0)",
                    (written.journal_key, written.conversation_key, written.to_json()))
    async with SQLiteStore(f"sqlite:///{path}") as store:
        locked, head = await batched.lock_head(store, "conv:ann", "me", 30, written.conversation_key)
        assert locked and head is not None
        assert (head.event, head.progress, head.attempts, head.rate_count) == (written, {"sent": 1}, 2, None)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_the_fence_takes_back_a_lease_that_expired_in_another_owners_hands(tmp_path: Path) -> None:
    """Expired and not taken again: nobody resumed the entry meanwhile, so the turn may go on."""
    async with SQLiteStore(f"sqlite:///{tmp_path}/state.db") as store:
        entry = JournalEntry(event("a"))
        await store.journal_add(entry)
        assert await store.try_lock("conv:ann", "other", 30)
        with pytest.raises(LeaseLost):
            await store.journal_progress_leased(entry.key, {"sending": 1}, 1, "conv:ann", "me", 30)
        await store._run("UPDATE locks SET expires_at = 0")  # its 30 s are over
        await store.journal_progress_leased(entry.key, {"sending": 1}, 1, "conv:ann", "me", 30)
        assert (await store.journal_pending())[0].progress == {"sending": 1}
        assert not await store.try_lock("conv:ann", "other", 30)
