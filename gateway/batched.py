"""Several store steps of one turn in one round trip, where the store can (Redis), else one by one.

Issue 18 measured about 18 store round trips per answer; each costs the gateway CPU and, under a
burst, a place in the connection pool's queue. A store that implements :class:`BatchedStore` does
each group below in one atomic call (a Lua script on Redis); any other store gets the same steps
made with its ordinary methods, so the semantics are the same everywhere:

* :func:`journal_add`: journal an event and, when a per-person rate limit is on, count the
  sender's message in its minute (the count comes back on the entry, ``rate_count``);
* :func:`lock_head`: take (or renew) the conversation's lease, read its oldest unfinished entry
  and count the attempt on it;
* :func:`finish_next`: mark the entry finished, then read the next one (counting its attempt) or,
  when there is none, give the lease back;
* :func:`turn_read`: record who spoke where (when due), read the conversation and the identity link
  and, for a turn about to ask the agent, note that read on its journal entry (see :data:`READ_NOTE`);
* :func:`remember`: write the answer's message→conversation map and the conversation, keeping a
  pause that staff or an operator set meanwhile;
* :func:`save_answer`: save the turn's progress (holding the agent's answer) and :func:`remember`;
* :func:`journal_progress`: save a running turn's progress, fenced by its drain's lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard, runtime_checkable

from gateway.progress import Progress
from gateway.store import ConversationState, JournalEntry, JournalStatus, JournalStore, KeyValueStore, PeopleStore

#: progress key under which a store returns, with the entry, the read :func:`turn_read` noted on it:
#: ``{"at": unix time, "state": [conversation_id, user_id, last_message_id, updated_at, paused] or
#: None, "link": userId or None}``. The turn runner turns it into its ``asked`` marker: noting the
#: read saves that marker's store call (the marker must be durable before the agent is asked).
READ_NOTE = "read"


@dataclass(frozen=True, slots=True)
class RateCount:
    """Count the sender's message in ``key`` (expiring after ``window`` seconds) while journaling."""

    key: str
    window: float


@dataclass(frozen=True, slots=True)
class TurnRead:
    """What a turn reads before it starts; ``noted``: the store noted it on the journal entry."""

    state: ConversationState | None
    link: str | None
    noted: bool = False


def read_note(at: float, state: ConversationState | None, link: str | None) -> dict[str, Any]:
    """The :data:`READ_NOTE` value a store returns for a read noted at ``at``."""
    row = None if state is None else [state.conversation_id, state.user_id, state.last_message_id,
                                      state.updated_at, state.paused]
    return {"at": at, "state": row, "link": link}


def from_read_note(note: dict[str, Any]) -> tuple[float, TurnRead]:
    """(when it was read, what was read) from a :data:`READ_NOTE` value."""
    row = note.get("state")
    state = None
    if isinstance(row, list) and len(row) == 5:
        state = ConversationState(row[0], str(row[1]), row[2], float(row[3]), bool(row[4]))
    link = note.get("link")
    return float(note.get("at", 0.0)), TurnRead(state, link if isinstance(link, str) and link else None)


@runtime_checkable
class BatchedStore(Protocol):
    """The combined calls; see the module docstring. Entries come with their attempt counted."""

    async def journal_add_counted(self, entry: JournalEntry, count: RateCount) -> bool: ...

    async def lock_head(self, lease: str, owner: str, ttl: float,
                        conversation_key: str) -> tuple[bool, JournalEntry | None]: ...

    async def finish_next(self, key: str, status: JournalStatus, conversation_key: str,
                          lease: str, owner: str, ttl: float) -> JournalEntry | None: ...

    async def turn_read(self, identity_key: str, conversation_key: str, touch_at: float | None,
                        note: tuple[str, float] | None = None) -> TurnRead: ...

    async def remember(self, scope_key: str, state: ConversationState, message_key: str | None,
                       conversation_id: str, message_ttl: float) -> bool: ...

    async def save_answer(self, journal_key: str, progress: dict[str, Any], attempts: int, scope_key: str,
                          state: ConversationState, message_key: str | None, conversation_id: str,
                          message_ttl: float, lease: tuple[str, str, float] | None = None) -> bool: ...

    async def journal_progress_leased(self, key: str, progress: dict[str, Any], attempts: int, lease: str,
                                      owner: str, ttl: float) -> None: ...


_KINDS: dict[type, bool] = {}


def _batched(store: object) -> TypeGuard[BatchedStore]:
    """``isinstance(store, BatchedStore)``, answered once per class: a runtime protocol check walks
    every member each time, and it runs on every store call of every turn."""
    kind = type(store)
    found = _KINDS.get(kind)
    if found is None:
        found = _KINDS[kind] = isinstance(store, BatchedStore)
    return found


class _Dispatching(JournalStore, KeyValueStore, Protocol):
    pass


class _Turning(KeyValueStore, PeopleStore, Protocol):
    pass


async def _counted(store: _Dispatching, entry: JournalEntry | None) -> JournalEntry | None:
    if entry is not None:
        entry.attempts += 1
        await store.journal_progress(entry.key, entry.progress, entry.attempts)
    return entry


async def journal_add(store: JournalStore, entry: JournalEntry, count: RateCount | None) -> bool:
    """Journal ``entry`` (False: a duplicate); a store that can counts ``count`` in the same call and
    sets ``rate_count`` on the entries it returns later. Others leave the counting to the turn."""
    if count is not None and _batched(store):
        return await store.journal_add_counted(entry, count)
    return await store.journal_add(entry)


async def lock_head(store: _Dispatching, lease: str, owner: str, ttl: float,
                    conversation_key: str) -> tuple[bool, JournalEntry | None]:
    """(lease taken, head with its attempt counted); no head is read without the lease."""
    if _batched(store):
        return await store.lock_head(lease, owner, ttl, conversation_key)
    if not await store.try_lock(lease, owner, ttl):
        return False, None
    return True, await _counted(store, await store.journal_head(conversation_key))


async def head(store: _Dispatching, conversation_key: str) -> JournalEntry | None:
    """The head with its attempt counted, the lease being held already."""
    return await _counted(store, await store.journal_head(conversation_key))


async def finish_next(store: _Dispatching, key: str, status: JournalStatus, conversation_key: str,
                      lease: str, owner: str, ttl: float) -> JournalEntry | None:
    """Finish ``key``; the next head (lease renewed), or None once the lease was given back."""
    if _batched(store):
        return await store.finish_next(key, status, conversation_key, lease, owner, ttl)
    await store.journal_finish(key, status)
    entry = await store.journal_head(conversation_key)
    if entry is None:
        await store.unlock(lease, owner)
        return None
    return await _counted(store, entry)


async def turn_read(store: _Turning, identity_key: str, conversation_key: str, touch_at: float | None,
                    note: tuple[str, float] | None = None) -> TurnRead:
    """The scope's stored conversation and the identity's link, after recording the touch if due.

    ``note`` (journal key, time): a store that can also notes the read on that pending entry, unless
    one is noted there already, and says so (``noted``); the entry then comes back with it under
    :data:`READ_NOTE`. Other stores never note (the caller saves its marker itself).
    """
    if _batched(store):
        return await store.turn_read(identity_key, conversation_key, touch_at, note)
    if touch_at is not None:
        await store.touch_identity(identity_key, conversation_key, touch_at)
    return TurnRead(await store.get_conversation(conversation_key), await store.get_link(identity_key))


async def remember(store: _Turning, scope_key: str, state: ConversationState, message_key: str | None,
                   conversation_id: str, message_ttl: float) -> None:
    """Save ``state`` (its ``paused`` replaced by the stored one if that changed meanwhile)."""
    if _batched(store):
        state.paused = await store.remember(scope_key, state, message_key, conversation_id, message_ttl)
        return
    if message_key is not None:
        await store.set_value(message_key, conversation_id, message_ttl)
    current = await store.get_conversation(scope_key)
    if current is not None and current.paused != state.paused:
        state.paused = current.paused  # paused or resumed while the agent was answering: that wins
    await store.put_conversation(scope_key, state)


async def journal_progress(store: JournalStore, key: str, progress: dict[str, Any], attempts: int,
                           lease: str, owner: str, ttl: float) -> None:
    """Save a running turn's progress; a store that can writes it only while the drain's lease is
    its own (taking it again if it expired and is free), and raises :class:`LeaseLost` otherwise.

    Fencing: a store outage longer than the lease lets another worker resume the entry while
    this turn still runs; every visible action saves its intent first, so the stale turn stops
    there instead of posting the answer a second time.
    """
    if _batched(store):
        await store.journal_progress_leased(key, progress, attempts, lease, owner, ttl)
    else:
        await store.journal_progress(key, progress, attempts)


async def save_answer(store: _Turning, progress: Progress, scope_key: str, state: ConversationState,
                      message_key: str | None, conversation_id: str | None, message_ttl: float) -> None:
    """Save ``progress`` (it holds the agent's answer), then the conversation as :func:`remember`;
    fenced by the progress's lease like :func:`journal_progress`, where the store can."""
    if _batched(store) and progress.journal_key is not None and conversation_id:
        state.paused = await store.save_answer(progress.journal_key, progress.data, progress.attempts, scope_key,
                                               state, message_key, conversation_id, message_ttl, progress.lease)
        return
    await progress.save()
    if conversation_id:
        await remember(store, scope_key, state, message_key, conversation_id, message_ttl)
