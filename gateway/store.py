"""The state store interfaces, one per concern. Implementations: ``adapters.stores`` (memory, sqlite, redis).

* :class:`JournalStore`, the **journal** of inbound events: an event is recorded (and deduplicated)
  before the webhook is acknowledged, carries its delivery progress while it is worked on, and is
  marked finished once the reply was delivered; unfinished entries are resumed after a restart.
  Only the dispatcher writes it.
* :class:`KeyValueStore`, short-lived state under string keys: small **values** with optional
  expiry (channel cursors, pending link codes, handoff records), **counters** (rate limits),
  **leases** (one worker per conversation, across instances), and each channel scope's
  **conversation state** (the Chatbase conversation it talks in).
* :class:`PeopleStore`: **identities** (who spoke in which conversation, for the admin API and for
  forgetting a person on request; kept as long as conversations are, then garbage-collected) and
  **links** (identity key → shared Chatbase ``userId``, for cross-channel identity).

Conversation state lives in the key-value store, not beside the journal: everything that reads or
writes it (turns, commands, handoff, admin) also uses values, while the journal is the dispatcher's
alone, and it is a value with an expiry like the others (the store's ``conversation_ttl``).

:class:`Store` is the combination the gateway opens from ``gateway.store`` (plus its lifecycle).
A backend may implement it in one class or compose one class per concern. Contract test suites for
each protocol are in ``switchboard.testing.stores``. Every method may raise
:class:`gateway.errors.StoreUnavailable`.
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
    #: the sender's messages in the minute of this one, this one included, when the store counted
    #: them as it journaled it (:func:`gateway.batched.journal_add`); None: the turn counts
    rate_count: int | None = None

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


class JournalStore(Protocol):
    """The journal of inbound events: recorded before the ack, resumed after a restart."""

    async def journal_add(self, entry: JournalEntry) -> bool:
        """Record a new event atomically; False when its key was seen before (a duplicate)."""
        ...

    async def journal_pending(self) -> list[JournalEntry]:
        """Every unfinished entry, oldest first (ties in arrival order), events loaded.

        For inspection (operators, tests): the dispatcher itself resumes through
        :meth:`journal_conversations` and :meth:`journal_head`, which do not load every event.
        """
        ...

    async def journal_conversations(self) -> list[str]:
        """Keys of the conversations that have unfinished entries, without loading the entries.

        The dispatcher's sweeper asks every few seconds; under a backlog, loading (and decoding)
        every pending event just to find their conversations would cost more than the work itself.
        """
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

    async def journal_forget(self, conversation_key: str) -> None:
        """Drop what the journal keeps of a conversation (texts, routing).

        Unfinished entries of it are abandoned (marked failed). Finished event keys keep
        deduplicating, so a platform retry of a forgotten message is still not answered.
        """
        ...


class KeyValueStore(Protocol):
    """Values with optional expiry, counters, leases, and each scope's conversation state."""

    # -- small values ----------------------------------------------------------------------------
    async def get_value(self, key: str) -> str | None: ...

    async def set_value(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value``; without ``ttl`` it never expires (an earlier expiry is dropped)."""
        ...

    async def delete_value(self, key: str) -> None: ...

    async def delete_values(self, prefix: str) -> int:
        """Delete every small value whose key starts with ``prefix``; how many were deleted."""
        ...

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

    # -- conversations ---------------------------------------------------------------------------
    async def get_conversation(self, scope_key: str) -> ConversationState | None:
        """The scope's conversation, or None when never stored or idle past the store's conversation TTL."""
        ...

    async def put_conversation(self, scope_key: str, state: ConversationState) -> None:
        """Store the scope's conversation; each put renews its conversation TTL."""
        ...

    async def drop_conversation(self, scope_key: str) -> None: ...


class PeopleStore(Protocol):
    """Who spoke where (identities) and which identities share a Chatbase user (links)."""

    # -- identity links ------------------------------------------------------------------------
    async def get_link(self, identity_key: str) -> str | None: ...

    async def set_link(self, identity_key: str, user_id: str) -> None: ...

    async def delete_link(self, identity_key: str) -> None: ...

    async def linked_identities(self, user_id: str) -> list[str]:
        """The identity keys linked to ``user_id``, sorted."""
        ...

    # -- identities ------------------------------------------------------------------------------
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


class Store(JournalStore, KeyValueStore, PeopleStore, Protocol):
    """Durable state shared by the gateway's workers (and, with Redis, its instances): all three concerns.

    A backend class may subclass this protocol explicitly to inherit :meth:`forget_conversation`.
    """

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

    async def forget_conversation(self, conversation_key: str) -> None:
        """Drop a conversation's journal texts (:meth:`journal_forget`) and its state (:meth:`drop_conversation`)."""
        await self.journal_forget(conversation_key)
        await self.drop_conversation(conversation_key)
