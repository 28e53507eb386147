"""``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: one gateway process, durable.

Durability: WAL with ``synchronous=FULL``, so once :meth:`journal_add` returns the event is in the
fsynced log and survives kill -9 or a power cut; acknowledging the webhook after it is safe.

Concurrency: one connection on one thread. Every method is a single SQL statement (dedup is one
``INSERT ... ON CONFLICT``, a lease one upsert), or for the turn's combined calls
(:mod:`adapters.stores._sqlite_batched`) one unit of statements run together, so concurrent tasks
cannot interleave inside an operation and no Python-side lock is needed. Statements and units of
concurrent callers are committed together (group commit, :mod:`adapters.stores._sqlite_batch`):
one ``fsync`` serves every webhook waiting on it, each answered only after the commit holding its
event.
``busy_timeout`` covers another process (the CLI) touching the file.

Leases: only one gateway process uses a file, so opening the store voids the leases a crashed
process left behind; its unfinished turns resume at once instead of after the lease TTL.

Growth: finished journal rows, expired values, locks and idle conversations are deleted on
start-up and every few hundred writes; reads ignore expired rows in between.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from adapters.stores._common import StoreBase, bad_url, mask_url, split_url
from adapters.stores._sqlite_batch import GroupCommitter
from adapters.stores._sqlite_batched import SQLiteBatched, decode_entry
from adapters.stores._sqlite_people import SQLitePeople
from adapters.stores._sqlite_sql import (
    ENTRY_COLUMNS,
    FORGET_JOURNAL,
    INCR,
    JOURNAL_ADD,
    JOURNAL_FINISH,
    JOURNAL_PROGRESS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SET_VALUE,
    TRY_LOCK,
    UNLOCK,
)
from gateway.errors import ConfigError, StoreUnavailable
from gateway.store import ConversationState, JournalEntry, JournalStatus, Store

T = TypeVar("T")
_PURGE_EVERY = 500
# Primary result codes that mean "the database cannot be used right now", not "our SQL is wrong".
_UNAVAILABLE_CODES = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}


def database_path(url: str) -> str:
    """The file a ``sqlite:`` URL names: three slashes for a relative path, four for an absolute one."""
    parts = urlsplit(url)
    if parts.netloc:
        raise bad_url(url, "use sqlite:///relative/path.db or sqlite:////absolute/path.db (three or four slashes)")
    path = unquote(parts.path)[1:]
    if not path or path.endswith("/"):
        raise bad_url(url, "the sqlite URL names no database file, e.g. sqlite:///.switchboard/state.db")
    return path


class SQLiteStore(SQLiteBatched, SQLitePeople, StoreBase, Store):
    """A single-process, crash-safe :class:`gateway.store.Store` in one SQLite file."""

    def __init__(self, url: str, *, dedup_ttl: float | None = None, conversation_ttl: float | None = None) -> None:
        plain, self._options = split_url(url, ("sqlite",), dedup_ttl=dedup_ttl, conversation_ttl=conversation_ttl)
        self.url = mask_url(url)
        path = database_path(plain)
        # Resolve now: a later chdir must not move the database.
        self.path = path if path == ":memory:" else str(Path(path).absolute())
        self._conn: GroupCommitter | None = None
        self._writes = 0

    # -- lifecycle -------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Open the file (creating its directory), switch to WAL, migrate the schema, purge."""
        if self._conn is not None:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = await GroupCommitter.open(self.path, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            with self._mapped():
                await conn.call(self._setup)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        # One gateway process per SQLite file: leases still held here belong to a process that
        # died, and waiting for them to expire would only delay resuming its conversations.
        await self._run("DELETE FROM locks")
        await self.purge()

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is fsynced before it returns, so an acknowledged event is on disk.
        conn.execute("PRAGMA synchronous = FULL")
        for version, statements in enumerate(MIGRATIONS):
            # IMMEDIATE takes the write lock before reading the version, so two processes starting
            # together cannot both apply the same migration.
            conn.execute("BEGIN IMMEDIATE")
            try:
                (current,) = conn.execute("PRAGMA user_version").fetchone()
                if current > SCHEMA_VERSION:
                    raise ConfigError(
                        f"gateway.store: {self.path} has schema version {current}, newer than this "
                        f"Switchboard understands ({SCHEMA_VERSION}); upgrade Switchboard"
                    )
                if current == version:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version + 1}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def purge(self) -> None:
        """Delete what has expired: finished events past the dedup TTL, values, locks, idle conversations."""
        dedup_ttl, conversation_ttl = self._options.dedup_ttl, self._options.conversation_ttl

        def purge(conn: sqlite3.Connection) -> None:  # one unit: one trip for the caller that runs it
            now = time.time()
            conn.execute("DELETE FROM journal WHERE finished_at <= ?", (now - dedup_ttl,))
            conn.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM locks WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM conversations WHERE touched_at <= ?", (now - conversation_ttl,))
            conn.execute("DELETE FROM identities WHERE touched_at <= ?", (now - conversation_ttl,))
            conn.execute("DELETE FROM identity_conversations WHERE last_seen <= ?", (now - conversation_ttl,))

        await self._unit(purge)

    # -- journal -------------------------------------------------------------------------------
    async def journal_add(self, entry: JournalEntry) -> bool:
        return await self._write(JOURNAL_ADD, self._add_params(entry, time.time())) == 1

    def _add_params(self, entry: JournalEntry, now: float) -> tuple[Any, ...]:
        """JOURNAL_ADD's parameters for ``entry``, journaled at ``now``."""
        event = entry.event
        finished_at = None if entry.status == "pending" else now
        return (entry.key, event.conversation_key, event.to_json(), entry.status, json.dumps(entry.progress),
                entry.attempts, event.received_at, now, finished_at, now - self._options.dedup_ttl)

    async def journal_pending(self) -> list[JournalEntry]:
        rows = await self._fetch(
            f"SELECT {ENTRY_COLUMNS} FROM journal WHERE status = 'pending' ORDER BY received_at, rowid"
        )
        return [decode_entry(row) for row in rows]

    async def journal_conversations(self) -> list[str]:
        # Answered from the journal_head index (conversation, received_at) WHERE status = 'pending'.
        rows = await self._fetch("SELECT DISTINCT conversation FROM journal WHERE status = 'pending'")
        return [str(row[0]) for row in rows]

    async def journal_head(self, conversation_key: str) -> JournalEntry | None:
        rows = await self._fetch(
            f"SELECT {ENTRY_COLUMNS} FROM journal WHERE conversation = ? AND status = 'pending'"
            " ORDER BY received_at, rowid LIMIT 1",
            (conversation_key,),
        )
        return decode_entry(rows[0]) if rows else None

    async def journal_progress(self, key: str, progress: dict[str, Any], attempts: int) -> None:
        await self._run(JOURNAL_PROGRESS, (json.dumps(progress), attempts, key))

    async def journal_finish(self, key: str, status: JournalStatus) -> None:
        await self._write(JOURNAL_FINISH, (status, time.time(), key))

    async def journal_forget(self, conversation_key: str) -> None:
        await self._run(FORGET_JOURNAL, (conversation_key, time.time()))

    # -- conversations -------------------------------------------------------------------------
    async def get_conversation(self, scope_key: str) -> ConversationState | None:
        rows = await self._fetch(
            "SELECT conversation_id, user_id, last_message_id, updated_at, paused FROM conversations"
            " WHERE scope_key = ? AND touched_at > ?",
            (scope_key, time.time() - self._options.conversation_ttl),
        )
        if not rows:
            return None
        cid, uid, mid, updated_at, paused = rows[0]
        return ConversationState(cid, uid, mid, updated_at, bool(paused))

    async def put_conversation(self, scope_key: str, state: ConversationState) -> None:
        await self._write(
            "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                scope_key,
                state.conversation_id,
                state.user_id,
                state.last_message_id,
                state.updated_at,
                int(state.paused),
                time.time(),
            ),
        )

    async def drop_conversation(self, scope_key: str) -> None:
        await self._run("DELETE FROM conversations WHERE scope_key = ?", (scope_key,))

    # -- identity links ------------------------------------------------------------------------
    async def get_link(self, identity_key: str) -> str | None:
        rows = await self._fetch("SELECT user_id FROM links WHERE identity_key = ?", (identity_key,))
        return str(rows[0][0]) if rows else None

    async def set_link(self, identity_key: str, user_id: str) -> None:
        await self._run("INSERT OR REPLACE INTO links VALUES (?, ?)", (identity_key, user_id))

    async def delete_link(self, identity_key: str) -> None:
        await self._run("DELETE FROM links WHERE identity_key = ?", (identity_key,))

    # -- small values ----------------------------------------------------------------------------
    async def get_value(self, key: str) -> str | None:
        rows = await self._fetch(
            "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)", (key, time.time())
        )
        return str(rows[0][0]) if rows else None

    async def set_value(self, key: str, value: str, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else time.time() + ttl
        await self._write(SET_VALUE, (key, value, expires_at))

    async def delete_value(self, key: str) -> None:
        await self._run("DELETE FROM kv WHERE key = ?", (key,))

    async def delete_values(self, prefix: str) -> int:
        # A range, not LIKE: it uses the primary key and needs no escaping of % and _.
        return await self._run("DELETE FROM kv WHERE key >= ? AND key < ?", (prefix, prefix + "\U0010ffff"))

    async def incr(self, key: str, ttl: float) -> int:
        rows = await self._fetch(INCR, (key, time.time(), ttl))
        await self._count_write()
        return int(rows[0][0])

    # -- leases ----------------------------------------------------------------------------------
    async def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        return bool(await self._fetch(TRY_LOCK, (key, owner, time.time(), ttl)))

    async def unlock(self, key: str, owner: str) -> None:
        await self._run(UNLOCK, (key, owner))

    # -- plumbing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Turn "the database cannot be used" errors into StoreUnavailable; SQL bugs stay visible."""
        try:
            yield
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", -1) & 0xFF in _UNAVAILABLE_CODES:
                raise StoreUnavailable(f"SQLite database {self.path}: {exc}") from exc
            raise

    def _db(self) -> GroupCommitter:
        if self._conn is None:
            # Also what a task still running during shutdown gets: a 503, not an AttributeError.
            raise StoreUnavailable(f"SQLite store {self.path} is not open")
        return self._conn

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mapped():
            return list(await self._db().execute(sql, params, fetch=True))

    async def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; the number of rows it changed."""
        with self._mapped():
            return int(await self._db().execute(sql, params))

    async def _unit(self, unit: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``unit``'s statements together: one trip to the writer thread, one commit."""
        with self._mapped():
            return await self._db().run(unit)

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Like :meth:`_run`, for writes that create rows the purge must eventually remove."""
        changed = await self._run(sql, params)
        await self._count_write()
        return changed

    async def _count_write(self) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            await self.purge()


def create(url: str) -> Store:
    """Entry point of ``switchboard.stores``: ``sqlite:///path.db`` (options: dedup_ttl, conversation_ttl)."""
    return SQLiteStore(url)
