"""What the store tests share: the built-in factories by name (sample events come from the kit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adapters.stores import memory, sqlite
from adapters.stores import redis as redis_store
from gateway.store import Store
from switchboard.testing.stores import entry, event, pending_keys

__all__ = ["CREATE", "REPO", "entry", "event", "pending_keys"]

CREATE: dict[str, Callable[[str], Store]] = {
    "memory": memory.create,
    "sqlite": sqlite.create,
    "redis": redis_store.create,
}
REPO = Path(__file__).resolve().parents[2]
