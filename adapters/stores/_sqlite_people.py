"""The SQLite store's :class:`gateway.store.PeopleStore` methods beyond plain links: identities, reverse links."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adapters.stores._common import StoreOptions
from adapters.stores._sqlite_sql import TOUCH_IDENTITY, TOUCH_IDENTITY_CONVERSATION
from gateway.store import IdentityRecord


class SQLitePeople:
    """Mixed into :class:`adapters.stores.sqlite.SQLiteStore`, whose plumbing it uses."""

    _options: StoreOptions

    if TYPE_CHECKING:  # provided by SQLiteStore

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        async def _run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

        async def _write(self, sql: str, params: Sequence[Any]) -> int: ...

    async def touch_identity(self, identity_key: str, conversation_key: str, at: float) -> None:
        now = time.time()
        await self._write(TOUCH_IDENTITY, (identity_key, at, now, now - self._options.conversation_ttl))
        await self._run(TOUCH_IDENTITY_CONVERSATION, (identity_key, conversation_key, at))

    async def get_identity(self, identity_key: str) -> IdentityRecord | None:
        found = await self._identities("identity_key = ?", (identity_key,), 1)
        return found[0] if found else None

    async def list_identities(self, after: str | None, limit: int) -> list[IdentityRecord]:
        return await self._identities("identity_key > ?", (after or "",), limit)

    async def _identities(self, where: str, params: tuple[Any, ...], limit: int) -> list[IdentityRecord]:
        cutoff = time.time() - self._options.conversation_ttl
        rows = await self._fetch(
            f"SELECT identity_key, first_seen, last_seen FROM identities WHERE {where} AND touched_at > ?"
            " ORDER BY identity_key LIMIT ?",
            (*params, cutoff, limit),
        )
        records = {key: IdentityRecord(key, first, last) for key, first, last in rows}
        if records:
            marks = ",".join("?" * len(records))
            ttl = self._options.conversation_ttl
            for key, conversation, seen in await self._fetch(
                "SELECT identity_key, conversation_key, last_seen FROM identity_conversations"
                f" WHERE identity_key IN ({marks})",
                tuple(records),
            ):
                # Like Redis and memory: conversations long before the identity's last word are stale.
                if seen > records[key].last_seen - ttl:
                    records[key].conversations[conversation] = seen
        return list(records.values())

    async def delete_identity(self, identity_key: str) -> None:
        await self._run("DELETE FROM identities WHERE identity_key = ?", (identity_key,))
        await self._run("DELETE FROM identity_conversations WHERE identity_key = ?", (identity_key,))

    async def linked_identities(self, user_id: str) -> list[str]:
        rows = await self._fetch("SELECT identity_key FROM links WHERE user_id = ? ORDER BY identity_key", (user_id,))
        return [str(row[0]) for row in rows]
