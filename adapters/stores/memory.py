"""``memory://``: the whole store in dicts, for tests and throw-away demos (nothing survives a restart).

Every method runs without awaiting, so on one event loop each one is atomic and needs no lock.
Entries are kept as JSON, exactly as the durable stores keep them, so code that works here cannot
rely on sharing mutable objects with the store (or on progress that is not JSON-able).
Expiry is checked lazily on read, plus a sweep every few thousand writes so keys that are never
read again (rate-limit windows, finished events) do not pile up.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.stores._common import StoreBase, mask_url, split_url
from gateway.events import InboundEvent
from gateway.store import ConversationState, IdentityRecord, JournalEntry, JournalStatus, Store

_SWEEP_EVERY = 5000


@dataclass(slots=True)
class _Row:
    conversation: str
    event: str
    received_at: float
    seq: int
    status: JournalStatus
    progress: str
    attempts: int
    finished_at: float | None


def _age(row: _Row) -> tuple[float, int]:
    """Oldest first; ties in arrival order."""
    return (row.received_at, row.seq)


class MemoryStore(StoreBase, Store):
    """A process-local :class:`gateway.store.Store`."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        dedup_ttl: float | None = None,
        conversation_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _, self._options = split_url(url, ("memory",), dedup_ttl=dedup_ttl, conversation_ttl=conversation_ttl)
        self.url = mask_url(url)
        self._clock = clock
        self._journal: dict[str, _Row] = {}
        # conversation key -> its pending journal keys, so a head lookup skips finished rows
        self._queues: dict[str, set[str]] = {}
        self._seq = 0
        self._conversations: dict[str, tuple[ConversationState, float]] = {}
        self._links: dict[str, str] = {}
        self._values: dict[str, tuple[str, float | None]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        # identity key -> (record, store clock of the last touch)
        self._identities: dict[str, tuple[IdentityRecord, float]] = {}
        self._writes = 0

    async def initialize(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    # -- journal -------------------------------------------------------------------------------
    async def journal_add(self, entry: JournalEntry) -> bool:
        now = self._clock()
        old = self._journal.get(entry.key)
        if old is not None and not self._forgotten(old, now):
            return False
        self._seq += 1
        pending = entry.status == "pending"
        self._journal[entry.key] = _Row(
            conversation=entry.event.conversation_key,
            event=entry.event.to_json() if pending else "",
            received_at=entry.event.received_at,
            seq=self._seq,
            status=entry.status,
            progress=json.dumps(entry.progress),
            attempts=entry.attempts,
            finished_at=None if pending else now,
        )
        if pending:
            self._queues.setdefault(entry.event.conversation_key, set()).add(entry.key)
        self._wrote()
        return True

    async def journal_pending(self) -> list[JournalEntry]:
        rows = [self._journal[key] for keys in self._queues.values() for key in keys]
        return [self._entry(r) for r in sorted(rows, key=_age)]

    async def journal_conversations(self) -> list[str]:
        return [key for key, keys in self._queues.items() if keys]

    async def journal_head(self, conversation_key: str) -> JournalEntry | None:
        rows = [self._journal[key] for key in self._queues.get(conversation_key, ())]
        return self._entry(min(rows, key=_age)) if rows else None

    async def journal_progress(self, key: str, progress: dict[str, Any], attempts: int) -> None:
        row = self._journal.get(key)
        if row is not None and row.status == "pending":
            row.progress = json.dumps(progress)
            row.attempts = attempts

    async def journal_finish(self, key: str, status: JournalStatus) -> None:
        row = self._journal.get(key)
        if row is not None and row.status == "pending":
            row.status = status
            row.finished_at = self._clock()
            queue = self._queues[row.conversation]
            queue.discard(key)
            if not queue:
                del self._queues[row.conversation]
            # Like Redis, keep only what deduplication needs once the event is answered.
            row.event = row.progress = ""
            self._wrote()

    async def journal_forget(self, conversation_key: str) -> None:
        for key in list(self._queues.get(conversation_key, ())):
            await self.journal_finish(key, "failed")
        for row in self._journal.values():
            if row.conversation == conversation_key:
                row.conversation = ""

    def _forgotten(self, row: _Row, now: float) -> bool:
        return row.finished_at is not None and row.finished_at + self._options.dedup_ttl <= now

    @staticmethod
    def _entry(row: _Row) -> JournalEntry:
        return JournalEntry(
            event=InboundEvent.from_json(row.event),
            status=row.status,
            progress=json.loads(row.progress),
            attempts=row.attempts,
        )

    # -- conversations -------------------------------------------------------------------------
    async def get_conversation(self, scope_key: str) -> ConversationState | None:
        item = self._conversations.get(scope_key)
        if item is None:
            return None
        state, touched = item
        if touched + self._options.conversation_ttl <= self._clock():
            del self._conversations[scope_key]
            return None
        return dataclasses.replace(state)

    async def put_conversation(self, scope_key: str, state: ConversationState) -> None:
        self._conversations[scope_key] = (dataclasses.replace(state), self._clock())
        self._wrote()

    async def drop_conversation(self, scope_key: str) -> None:
        self._conversations.pop(scope_key, None)

    # -- identity links ------------------------------------------------------------------------
    async def get_link(self, identity_key: str) -> str | None:
        return self._links.get(identity_key)

    async def set_link(self, identity_key: str, user_id: str) -> None:
        self._links[identity_key] = user_id

    async def delete_link(self, identity_key: str) -> None:
        self._links.pop(identity_key, None)

    # -- small values ----------------------------------------------------------------------------
    async def get_value(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= self._clock():
            del self._values[key]
            return None
        return item[0]

    async def set_value(self, key: str, value: str, ttl: float | None = None) -> None:
        self._values[key] = (value, None if ttl is None else self._clock() + ttl)
        self._wrote()

    async def delete_value(self, key: str) -> None:
        self._values.pop(key, None)

    async def delete_values(self, prefix: str) -> int:
        doomed = [k for k in self._values if k.startswith(prefix)]
        for key in doomed:
            del self._values[key]
        return len(doomed)

    async def incr(self, key: str, ttl: float) -> int:
        now = self._clock()
        item = self._values.get(key)
        if item is None or (item[1] is not None and item[1] <= now):
            count, expires = 1, now + ttl
        else:
            # The window runs from the first increment; later ones must not extend it.
            count, expires = int(item[0]) + 1, item[1] if item[1] is not None else now + ttl
        self._values[key] = (str(count), expires)
        self._wrote()
        return count

    # -- people ----------------------------------------------------------------------------------
    async def touch_identity(self, identity_key: str, conversation_key: str, at: float) -> None:
        item = self._identities.get(identity_key)
        record = item[0] if item is not None and not self._idle(item[1]) else IdentityRecord(identity_key, at, at)
        record.last_seen = max(record.last_seen, at)
        record.conversations[conversation_key] = at
        cutoff = at - self._options.conversation_ttl
        record.conversations = {k: t for k, t in record.conversations.items() if t > cutoff}
        self._identities[identity_key] = (record, self._clock())
        self._wrote()

    async def get_identity(self, identity_key: str) -> IdentityRecord | None:
        item = self._identities.get(identity_key)
        if item is None or self._idle(item[1]):
            return None
        return dataclasses.replace(item[0], conversations=dict(item[0].conversations))

    async def list_identities(self, after: str | None, limit: int) -> list[IdentityRecord]:
        keys = sorted(k for k, (_, touched) in self._identities.items() if not self._idle(touched))
        found = [k for k in keys if after is None or k > after][:limit]
        return [r for r in [await self.get_identity(k) for k in found] if r is not None]

    async def delete_identity(self, identity_key: str) -> None:
        self._identities.pop(identity_key, None)

    async def linked_identities(self, user_id: str) -> list[str]:
        return sorted(k for k, v in self._links.items() if v == user_id)

    def _idle(self, touched: float) -> bool:
        return touched + self._options.conversation_ttl <= self._clock()

    # -- leases ----------------------------------------------------------------------------------
    async def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        held = self._locks.get(key)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._locks[key] = (owner, now + ttl)
        self._wrote()
        return True

    async def unlock(self, key: str, owner: str) -> None:
        held = self._locks.get(key)
        if held is not None and held[0] == owner:
            del self._locks[key]

    # -- housekeeping ----------------------------------------------------------------------------
    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self.sweep()

    def sweep(self) -> None:
        """Drop everything that has expired (reads already ignore it; this frees the memory)."""
        now = self._clock()
        conversation_ttl = self._options.conversation_ttl
        for key in [k for k, r in self._journal.items() if self._forgotten(r, now)]:
            del self._journal[key]
        for key in [k for k, (_, t) in self._conversations.items() if t + conversation_ttl <= now]:
            del self._conversations[key]
        for key in [k for k, (_, exp) in self._values.items() if exp is not None and exp <= now]:
            del self._values[key]
        for key in [k for k, (_, exp) in self._locks.items() if exp <= now]:
            del self._locks[key]
        for key in [k for k, (_, touched) in self._identities.items() if touched + conversation_ttl <= now]:
            del self._identities[key]


def create(url: str) -> Store:
    """Entry point of ``switchboard.stores``: ``memory://`` (options: dedup_ttl, conversation_ttl)."""
    return MemoryStore(url)
