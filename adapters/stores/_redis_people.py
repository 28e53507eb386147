"""The Redis store's people methods (:class:`gateway.store.PeopleStore`): identities, and links (``_redis_links``).

Key layout: see :mod:`adapters.stores.redis` (``ident:``, ``idents``; links in ``_redis_links``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from adapters.stores import _redis_lua as lua
from adapters.stores._redis_links import V1, RedisLinks
from gateway.store import IdentityRecord

if TYPE_CHECKING:
    import redis.asyncio as aioredis

#: every key of this store starts with it but the links', which moved to ``switchboard:v2:`` (_redis_links)
PREFIX = V1
_IDENTS = PREFIX + "idents"


def _ident(identity_key: str) -> str:
    return f"{PREFIX}ident:{identity_key}"


class RedisPeople(RedisLinks):
    """Mixed into :class:`adapters.stores.redis.RedisStore`, whose client and guard it uses."""

    _client: aioredis.Redis
    _conversation_ms: int
    url: str

    if TYPE_CHECKING:  # provided by RedisStore

        @contextlib.contextmanager
        def _guard(self) -> Iterator[None]: ...

    def _register_people_scripts(self) -> None:
        self._register_link_scripts()
        self._touch = self._client.register_script(lua.TOUCH_IDENTITY)

    # -- identities ------------------------------------------------------------------------------
    async def touch_identity(self, identity_key: str, conversation_key: str, at: float) -> None:
        cutoff = at - self._conversation_ms / 1000
        keys = [_ident(identity_key), _IDENTS]
        with self._guard():
            await self._touch(keys=keys, args=(repr(at), conversation_key, self._conversation_ms, identity_key,
                                               repr(cutoff)))

    async def get_identity(self, identity_key: str) -> IdentityRecord | None:
        found = await self._load_identities([identity_key])
        return found[0] if found else None

    async def list_identities(self, after: str | None, limit: int) -> list[IdentityRecord]:
        found: list[IdentityRecord] = []
        start = f"({after}" if after else "-"
        while len(found) < limit:
            with self._guard():
                keys = await self._client.zrangebylex(_IDENTS, start, "+", start=0, num=limit - len(found))
            if not keys:
                break
            names = [_str(k) or "" for k in keys]
            found += await self._load_identities(names)
            start = f"({names[-1]}"
        return found

    async def _load_identities(self, keys: list[str]) -> list[IdentityRecord]:
        ttl = self._conversation_ms / 1000
        with self._guard():
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(_ident(key))
                rows: list[dict[str, str]] = await pipe.execute()
            records, expired = [], []
            for key, row in zip(keys, rows, strict=True):
                if "f" not in row or "l" not in row:
                    expired.append(key)  # its hash expired: drop it from the index too
                    continue
                last = float(row["l"])
                # Conversations long before the identity's last word are stale (pruned lazily).
                conversations = {
                    field[2:]: float(seen) for field, seen in row.items()
                    if field.startswith("c:") and float(seen) > last - ttl
                }
                records.append(IdentityRecord(key, float(row["f"]), last, conversations))
            if expired:
                await self._client.zrem(_IDENTS, *expired)
        return records

    async def delete_identity(self, identity_key: str) -> None:
        with self._guard():
            await self._client.delete(_ident(identity_key))
            await self._client.zrem(_IDENTS, identity_key)


def _str(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
