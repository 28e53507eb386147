"""The state store interface. Implementations: ``adapters.stores`` (memory, sqlite, redis).

A store keeps four kinds of state:

* the **journal** of inbound events: an event is recorded (and deduplicated) before the
  webhook is acknowledged, carries its delivery progress while it is worked on, and is marked
  finished once the reply was delivered; unfinished entries are resumed after a restart;
* **conversations**: the active Chatbase conversation of each channel scope;
* **links**: identity key → shared Chatbase ``userId`` (cross-channel identity);
* small **values** with optional expiry, for channel cursors and rate limits;
* **identities**: who spoke in which conversation, for the admin API and for forgetting a
  person on request (kept as long as conversations are, then garbage-collected).

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


@dataclass(slots=True)
class IdentityRecord:
    """One channel identity the gateway has seen, and the conversations it spoke in."""

    identity_key: str
    first_seen: float
    last_seen: float
    #: conversation key -> when this identity last spoke there
    conversations: dict[str, float] = field(default_factory=dict)


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

    # -- people: identities, reverse links, forgetting ----------------------------------------------
    async def touch_identity(self, identity_key: str, conversation_key: str, at: float) -> None:
        """Remember that ``identity_key`` spoke in ``conversation_key`` at ``at`` (Unix time)."""
        ...

    async def get_identity(self, identity_key: str) -> IdentityRecord | None:
        """The identity's record, or None when never seen (or idle past the store's conversation TTL)."""
        ...

    async def list_identities(self, after: str | None, limit: int) -> list[IdentityRecord]:
        """Up to ``limit`` identities in identity-key order, starting after the key ``after``."""
        ...

    async def delete_identity(self, identity_key: str) -> None:
        """Forget the identity's record (its link, conversations and values are removed separately)."""
        ...

    async def linked_identities(self, user_id: str) -> list[str]:
        """The identity keys linked to ``user_id``, sorted."""
        ...

    async def delete_values(self, prefix: str) -> int:
        """Delete every small value whose key starts with ``prefix``; how many were deleted."""
        ...

    async def forget_conversation(self, conversation_key: str) -> None:
        """Drop a conversation's state and what the journal keeps of it (texts, routing).

        Unfinished entries of it are abandoned (marked failed). Finished event keys keep
        deduplicating, so a platform retry of a forgotten message is still not answered.
        """
        ...

    # -- leases (one worker per conversation, across instances) ----------------------------------
    async def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        """Take or extend the lease ``key`` for ``owner``; False while another owner holds it."""
        ...

    async def unlock(self, key: str, owner: str) -> None:
        """Give the lease back, only if ``owner`` still holds it."""
        ...

    # -- the sweeper's view of the journal -----------------------------------------------------
    async def journal_conversations(self) -> list[str]:
        """Keys of the conversations that have unfinished entries, without loading the entries.

        The dispatcher's sweeper asks every few seconds; under a backlog, loading (and decoding)
        every pending event just to find their conversations would cost more than the work itself.
        """
        ...
