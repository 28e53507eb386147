"""Scenario 4b: Redis memory per idle identity, from MEMORY USAGE over many identities.

An *idle identity* is a person who talked to the agent and is not talking now: nothing of theirs
is in the journal, and what Redis keeps for them is their scope's conversation (the Chatbase
conversation to continue, with a TTL) plus, only if they were linked to another channel's identity,
their link and its reverse entry (fields of shared hash buckets: ``adapters/stores/_redis_links``). All
are written through the store's own methods with realistic Slack-sized ids.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from adapters.stores.redis import RedisStore
from gateway.events import Identity
from gateway.identity import user_id_for
from gateway.store import ConversationState

BATCH = 1000


def identity(i: int) -> Identity:
    return Identity("slack", "T0A1B2C3D", f"U{i:010X}")


async def _write(store: RedisStore, count: int, *, linked: bool) -> None:
    async def one(i: int) -> None:
        person = identity(i)
        user_id = user_id_for(person)
        state = ConversationState(str(uuid.uuid4()), user_id, str(uuid.uuid4()), 1_764_000_000.123456 + i)
        await store.put_conversation(f"slack:D{i:010X}", state)
        if linked:
            # Linked to a Telegram identity: the shared userId is the other identity's.
            await store.set_link(person.key(), user_id_for(Identity("telegram", "8123456789", str(900_000_000 + i))))

    for start in range(0, count, BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(start + BATCH, count))))


async def _usage(client: aioredis.Redis) -> dict[str, list[int]]:
    """MEMORY USAGE of every key, grouped by kind (``conv``, ``links``, ...: the part after the version)."""
    keys = [key async for key in client.scan_iter(match="switchboard:*", count=5000)]
    sizes: dict[str, list[int]] = {}
    for start in range(0, len(keys), 5000):
        chunk = keys[start : start + 5000]
        async with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.memory_usage(key, samples=0)
            used = await pipe.execute()
        for key, size in zip(chunk, used, strict=True):
            sizes.setdefault(key.split(":")[2], []).append(int(size))
    return sizes


async def footprint(url: str, conversations: int) -> dict[str, float]:
    """MEMORY USAGE per conversation of every kind of key a real run left in Redis (after each
    conversation's single message), e.g. ``{"conv": 216.0, "journal": 150.0, ...}``."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        sizes = await _usage(client)
    finally:
        await client.aclose()
    return {kind: sum(v) / conversations for kind, v in sorted(sizes.items())}


async def _used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def redis_memory(url: str, identities: int) -> dict[str, Any]:
    """Bytes per idle identity, unlinked and linked, over ``identities`` each (the database is flushed)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    out: dict[str, Any] = {"identities": identities}
    try:
        async with RedisStore(url) as store:
            for linked in (False, True):
                await client.flushdb()
                before = await _used_memory(client)
                await _write(store, identities, linked=linked)
                after = await _used_memory(client)
                sizes = await _usage(client)
                per_kind = {kind: sum(v) / identities for kind, v in sizes.items()}
                out["linked" if linked else "unlinked"] = {
                    "memory_usage_per_identity": sum(per_kind.values()),
                    "by_key": per_kind,
                    "used_memory_per_identity": (after - before) / identities,
                }
        await client.flushdb()
    finally:
        await client.aclose()
    return out
