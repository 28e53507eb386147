"""SQLite group commit: concurrent writes share a commit, and each caller hears back only after it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from adapters.stores._sqlite_batch import GroupCommitter
from adapters.stores.sqlite import SQLiteStore
from gateway.events import Identity, InboundEvent
from gateway.store import JournalEntry


def entry(n: int) -> JournalEntry:
    return JournalEntry(InboundEvent(channel="chat", key=f"e{n}", identity=Identity("chat", "", f"u{n}"),
                                     scope=f"u{n}", text=f"message {n}"))


async def test_a_burst_of_journal_writes_shares_commits_and_each_is_durable_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.initialize()
    committer = store._db()
    commits_before = committer.commits
    durable: list[bool] = []

    async def add(n: int) -> None:
        assert await store.journal_add(entry(n))
        # What another connection (a restarted process) reads at the moment the caller is told.
        with sqlite3.connect(path) as other:
            durable.append(other.execute("SELECT count(*) FROM journal WHERE key = ?",
                                         (entry(n).key,)).fetchone()[0] == 1)

    await asyncio.gather(*(add(n) for n in range(200)))
    commits = committer.commits - commits_before
    assert durable == [True] * 200
    assert commits < 100, f"{commits} commits for 200 concurrent writes"
    assert not await store.journal_add(entry(7))  # still deduplicated
    assert len(await store.journal_pending()) == 200
    await store.close()


async def test_a_failing_statement_fails_only_its_caller(tmp_path: Path) -> None:
    committer = await GroupCommitter.open(str(tmp_path / "t.db"), timeout=5.0)
    await committer.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    good = [committer.execute("INSERT INTO t VALUES (?)", (f"k{n}",)) for n in range(5)]
    bad = committer.execute("INSERT INTO t VALUES (?)", ("k1",))  # a duplicate key, same batch
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert results[:5] == [1] * 5 and isinstance(results[5], sqlite3.IntegrityError)
    assert await committer.execute("SELECT count(*) FROM t", fetch=True) == [(5,)]
    await committer.close()


async def test_an_error_that_ends_the_transaction_fails_the_whole_batch_and_writes_nothing(tmp_path: Path) -> None:
    committer = await GroupCommitter.open(str(tmp_path / "t.db"), timeout=5.0)
    await committer.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    calls = [committer.execute("INSERT INTO t VALUES (?)", (f"k{n}",)) for n in range(3)]
    calls.append(committer.execute("ROLLBACK"))  # ends the transaction, like a disk-full error would
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, sqlite3.Error) for r in results[:3])
    assert await committer.execute("SELECT count(*) FROM t", fetch=True) == [(0,)]
    await committer.close()


async def test_a_lone_statement_commits_by_itself(tmp_path: Path) -> None:
    committer = await GroupCommitter.open(str(tmp_path / "t.db"), timeout=5.0)
    await committer.execute("CREATE TABLE t (k TEXT)")
    assert await committer.execute("INSERT INTO t VALUES ('a')") == 1
    with sqlite3.connect(tmp_path / "t.db") as other:
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    await committer.close()
