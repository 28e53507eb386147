"""What the store tests share: every backend opened the same way, and sample events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.stores import memory, sqlite
from adapters.stores import redis as redis_store
from gateway.events import Identity, InboundEvent
from gateway.store import JournalEntry, Store

CREATE: dict[str, Callable[[str], Store]] = {
    "memory": memory.create,
    "sqlite": sqlite.create,
    "redis": redis_store.create,
}
REPO = Path(__file__).resolve().parents[2]
DURABLE = [pytest.param("sqlite"), pytest.param("redis", marks=pytest.mark.redis)]
ALL = [pytest.param("memory"), *DURABLE]


@dataclass

class Opener:
    """Opens stores of one kind on one location; durable kinds see each other's data."""

    kind: str
    base_url: str
    opened: list[Store]

    async def __call__(self, options: str = "") -> Store:
        store = CREATE[self.kind](self.base_url + (f"?{options}" if options else ""))
        await store.initialize()
        self.opened.append(store)
        return store

    async def reopen(self, store: Store) -> Store:
        """What a restarted gateway gets: a new store object on the same URL."""
        await store.close()
        self.opened.remove(store)
        return await self()

    async def instances(self, store: Store) -> list[Store]:
        """Two stores as two gateway instances see them (memory cannot be shared: the same one twice)."""
        return [store, store if self.kind == "memory" else await self()]



def event(key: str, *, scope: str = "chat-1", received_at: float = 1000.0, text: str = "hi") -> InboundEvent:
    return InboundEvent(
        channel="tg",
        key=key,
        identity=Identity("telegram", "bot1", "42"),
        scope=scope,
        text=text,
        reply={"chat_id": 42, "thread": None},
        meta={"message_id": "m1"},
        received_at=received_at,
    )


def entry(key: str, *, scope: str = "chat-1", received_at: float = 1000.0, text: str = "hi") -> JournalEntry:
    return JournalEntry(event(key, scope=scope, received_at=received_at, text=text))


async def pending_keys(store: Store) -> list[str]:
    return [e.event.key for e in await store.journal_pending()]

