"""The SQLite store's combined calls (:class:`gateway.batched.BatchedStore`): one unit of work each.

Without them the SQLite store got each combined call as its steps one by one (the fallbacks in
:mod:`gateway.batched`), every step a trip to the group-commit thread waiting for a whole batch's
commit (an ``fsync``). Here each call is one unit (:meth:`GroupCommitter.run`): its statements run
together in one transaction, so one trip and one commit serve them, and nothing runs between them,
the way a Lua script runs on Redis. The semantics are the fallbacks', plus what the Redis store
adds: the rate count kept on the entry, the read noted on it, the lease fence.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.stores._common import StoreOptions
from adapters.stores._sqlite_sql import (
    CONVERSATION_AND_LINK,
    COUNTED_HEAD,
    INCR,
    JOURNAL_ADD,
    JOURNAL_FINISH,
    JOURNAL_PROGRESS,
    REMEMBER_CONVERSATION,
    SET_VALUE,
    TOUCH_IDENTITY,
    TOUCH_IDENTITY_CONVERSATION,
    TRY_LOCK,
    UNLOCK,
)
from gateway.batched import READ_NOTE, RateCount, TurnRead, read_note
from gateway.errors import LeaseLost
from gateway.events import InboundEvent
from gateway.store import ConversationState, JournalEntry, JournalStatus

T = TypeVar("T")


def decode_entry(row: Any) -> JournalEntry:
    """A pending entry from its ENTRY_COLUMNS: the noted read comes back in the progress under
    READ_NOTE and the rate count as ``rate_count``, as the Redis store returns them."""
    event, progress, attempts, note, count = row
    data = json.loads(progress)
    if note:
        data[READ_NOTE] = json.loads(note)
    return JournalEntry(InboundEvent.from_json(event), "pending", data, attempts, count)


class SQLiteBatched:
    """Mixed into :class:`adapters.stores.sqlite.SQLiteStore`, whose plumbing it uses."""

    _options: StoreOptions

    if TYPE_CHECKING:  # provided by SQLiteStore

        async def _unit(self, unit: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _count_write(self) -> None: ...

        def _add_params(self, entry: JournalEntry, now: float) -> tuple[Any, ...]: ...

    async def journal_add_counted(self, entry: JournalEntry, count: RateCount) -> bool:
        now = time.time()
        params = self._add_params(entry, now)

        def unit(conn: sqlite3.Connection) -> bool:
            if conn.execute(JOURNAL_ADD, params).rowcount != 1:
                return False  # a duplicate: not a new message, not counted
            if entry.status == "pending":
                (n,) = conn.execute(INCR, (count.key, now, count.window)).fetchone()
                conn.execute("UPDATE journal SET rate_count = ? WHERE key = ?", (int(n), entry.key))
            return True

        added = await self._unit(unit)
        await self._count_write()
        return added

    async def lock_head(self, lease: str, owner: str, ttl: float,
                        conversation_key: str) -> tuple[bool, JournalEntry | None]:
        def unit(conn: sqlite3.Connection) -> tuple[bool, Any]:
            now = time.time()
            if conn.execute(TRY_LOCK, (lease, owner, now, ttl)).fetchone() is None:
                return False, None  # no head is read without the lease
            return True, conn.execute(COUNTED_HEAD, (conversation_key,)).fetchone()

        locked, row = await self._unit(unit)
        return locked, None if row is None else decode_entry(row)

    async def finish_next(self, key: str, status: JournalStatus, conversation_key: str,
                          lease: str, owner: str, ttl: float) -> JournalEntry | None:
        def unit(conn: sqlite3.Connection) -> Any:
            now = time.time()
            conn.execute(JOURNAL_FINISH, (status, now, key))  # a finished entry is never brought back
            row = conn.execute(COUNTED_HEAD, (conversation_key,)).fetchone()
            if row is None:
                conn.execute(UNLOCK, (lease, owner))
            else:  # renewed only while it is ours, as on Redis
                conn.execute("UPDATE locks SET expires_at = ? WHERE key = ? AND owner = ? AND expires_at > ?",
                             (now + ttl, lease, owner, now))
            return row

        row = await self._unit(unit)
        return None if row is None else decode_entry(row)

    async def turn_read(self, identity_key: str, conversation_key: str, touch_at: float | None,
                        note: tuple[str, float] | None = None) -> TurnRead:
        conversation_ttl = self._options.conversation_ttl

        def unit(conn: sqlite3.Connection) -> TurnRead:
            now = time.time()
            if touch_at is not None:
                conn.execute(TOUCH_IDENTITY, (identity_key, touch_at, now, now - conversation_ttl))
                conn.execute(TOUCH_IDENTITY_CONVERSATION, (identity_key, conversation_key, touch_at))
            *found, link = conn.execute(CONVERSATION_AND_LINK,
                                        (conversation_key, now - conversation_ttl, identity_key)).fetchone()
            state = None if found[1] is None else ConversationState(found[0], found[1], found[2], found[3],
                                                                     bool(found[4]))
            noted = False
            if note is not None:  # the first read noted stays: a resumed turn must see that one
                text = json.dumps(read_note(note[1], state, link))
                noted = conn.execute("UPDATE journal SET note = ? WHERE key = ? AND status = 'pending'"
                                     " AND note IS NULL", (text, note[0])).rowcount == 1
            return TurnRead(state, link, noted)

        read = await self._unit(unit)
        if touch_at is not None:
            await self._count_write()
        return read

    async def remember(self, scope_key: str, state: ConversationState, message_key: str | None,
                       conversation_id: str, message_ttl: float) -> bool:
        remember = self._remembering(scope_key, state, message_key, conversation_id, message_ttl)
        paused = await self._unit(lambda conn: remember(conn, time.time()))
        await self._count_write()
        return paused

    async def save_answer(self, journal_key: str, progress: dict[str, Any], attempts: int, scope_key: str,
                          state: ConversationState, message_key: str | None, conversation_id: str,
                          message_ttl: float, lease: tuple[str, str, float] | None = None) -> bool:
        remember = self._remembering(scope_key, state, message_key, conversation_id, message_ttl)
        saved = json.dumps(progress)

        def unit(conn: sqlite3.Connection) -> bool:
            now = time.time()
            if lease is not None:
                _fence(conn, journal_key, *lease, now)
            conn.execute(JOURNAL_PROGRESS, (saved, attempts, journal_key))
            return remember(conn, now)

        paused = await self._unit(unit)
        await self._count_write()
        return paused

    async def journal_progress_leased(self, key: str, progress: dict[str, Any], attempts: int, lease: str,
                                      owner: str, ttl: float) -> None:
        saved = json.dumps(progress)

        def unit(conn: sqlite3.Connection) -> None:
            _fence(conn, key, lease, owner, ttl, time.time())
            conn.execute(JOURNAL_PROGRESS, (saved, attempts, key))

        await self._unit(unit)

    def _remembering(self, scope_key: str, state: ConversationState, message_key: str | None,
                     conversation_id: str, message_ttl: float) -> Callable[[sqlite3.Connection, float], bool]:
        """The statements of :meth:`remember` (for a unit; ``state`` read now, on the loop): the
        message map, then the conversation, keeping a pause set meanwhile. Returns the paused flag
        written."""
        row = (scope_key, state.conversation_id, state.user_id, state.last_message_id, state.updated_at,
               int(state.paused))
        conversation_ttl = self._options.conversation_ttl

        def remember(conn: sqlite3.Connection, now: float) -> bool:
            if message_key is not None:
                conn.execute(SET_VALUE, (message_key, conversation_id, now + message_ttl))
            (paused,) = conn.execute(REMEMBER_CONVERSATION, (*row, now, now - conversation_ttl)).fetchone()
            return bool(paused)

        return remember


def _fence(conn: sqlite3.Connection, key: str, lease: str, owner: str, ttl: float, now: float) -> None:
    """A running turn's writes happen only while its drain holds the lease, or takes it back
    because it expired and nobody took it meanwhile; else LeaseLost (the unit writes nothing)."""
    found = conn.execute("SELECT owner FROM locks WHERE key = ? AND expires_at > ?", (lease, now)).fetchone()
    if found is None:
        conn.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?)", (lease, owner, now + ttl))
    elif found[0] != owner:
        raise LeaseLost.held_elsewhere(lease, key)
