"""The state store interface. Implementations: ``adapters.stores`` (memory, sqlite, redis).

A store keeps four kinds of state:

* the **journal** of inbound events: an event is recorded (and deduplicated) before the
  webhook is acknowledged, carries its delivery progress while it is worked on, and is marked
  finished once the reply was delivered; unfinished entries are resumed after a restart;
* **conversations**: the active Chatbase conversation of each channel scope;
* **links**: identity key → shared Chatbase ``userId`` (cross-channel identity);
* small **values** with optional expiry, for channel cursors and rate limits.

Every method may raise :class:`gateway.errors.StoreUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.events import InboundEvent

JournalStatus = Literal["pending", "done", "failed"]


@dataclass(slots=True)
class JournalEntry:
    """One recorded inbound event and what was already delivered for it."""

    event: InboundEvent
    status: JournalStatus = "pending"
    progress: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    @property
    def key(self) -> str:
        return self.event.journal_key


@dataclass(slots=True)
class ConversationState:
    """The Chatbase conversation a channel scope currently talks in."""

    conversation_id: str | None
    user_id: str
    last_message_id: str | None = None
    updated_at: float = 0.0
    paused: bool = False


class Store(Protocol):
    """Durable state shared by the gateway's workers (and, with Redis, its instances)."""

    url: str

    async def initialize(self) -> None:
        """Connect and create what is missing (tables, indexes)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""
        ...

    # -- journal -------------------------------------------------------------------------------
    async def journal_add(self, entry: JournalEntry) -> bool:
        """Record a new event atomically; False when its key was seen before (a duplicate)."""
        ...

    async def journal_pending(self) -> list[JournalEntry]:
        """Unfinished entries, oldest first: what a restarted gateway must resume."""
        ...

    async def journal_head(self, conversation_key: str) -> JournalEntry | None:
        """The oldest unfinished entry of one conversation (the only one that may run next)."""
        ...

    async def journal_progress(self, key: str, progress: dict[str, Any], attempts: int) -> None:
        """Persist what was already delivered for an entry (so a resumed turn never repeats it)."""
        ...

    async def journal_finish(self, key: str, status: JournalStatus) -> None:
        """Mark an entry done or failed. Its key keeps deduplicating for the store's dedup TTL."""
        ...

    # -- conversations -------------------------------------------------------------------------
    async def get_conversation(self, scope_key: str) -> ConversationState | None: ...

    async def put_conversation(self, scope_key: str, state: ConversationState) -> None: ...

    async def drop_conversation(self, scope_key: str) -> None: ...

    # -- identity links ------------------------------------------------------------------------
    async def get_link(self, identity_key: str) -> str | None: ...

    async def set_link(self, identity_key: str, user_id: str) -> None: ...

    async def delete_link(self, identity_key: str) -> None: ...

    # -- small values ----------------------------------------------------------------------------
    async def get_value(self, key: str) -> str | None: ...

    async def set_value(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def delete_value(self, key: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter that expires ``ttl`` seconds after its creation; return the new value."""
        ...

    # -- leases (one worker per conversation, across instances) ----------------------------------
    async def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        """Take or extend the lease ``key`` for ``owner``; False while another owner holds it."""
        ...

    async def unlock(self, key: str, owner: str) -> None:
        """Give the lease back, only if ``owner`` still holds it."""
        ...
