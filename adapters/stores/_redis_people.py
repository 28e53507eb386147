"""The Redis store's people methods (:class:`gateway.store.PeopleStore`): links with their reverse index, identities.

Key layout: see :mod:`adapters.stores.redis` (``link:``, ``linked:``, ``ident:``, ``idents``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from adapters.stores import _redis_lua as lua
from gateway.errors import StoreUnavailable
from gateway.store import IdentityRecord

if TYPE_CHECKING:
    import redis.asyncio as aioredis

#: every key of this store starts with it; a later format can live beside this one
PREFIX = "switchboard:v1:"
_IDENTS = PREFIX + "idents"
#: a link that moves between our read and our write is re-read this many times
_LINK_RACES = 5


def _link(identity_key: str) -> str:
    return f"{PREFIX}link:{identity_key}"


def _linked(user_id: str) -> str:
    return f"{PREFIX}linked:{user_id}"


def _ident(identity_key: str) -> str:
    return f"{PREFIX}ident:{identity_key}"


class RedisPeople:
    """Mixed into :class:`adapters.stores.redis.RedisStore`, whose client and guard it uses."""

    _client: aioredis.Redis
    _conversation_ms: int
    url: str

    if TYPE_CHECKING:  # provided by RedisStore

        @contextlib.contextmanager
        def _guard(self) -> Iterator[None]: ...

    def _register_people_scripts(self) -> None:
        self._set_link = self._client.register_script(lua.SET_LINK)
        self._delete_link = self._client.register_script(lua.DELETE_LINK)
        self._touch = self._client.register_script(lua.TOUCH_IDENTITY)

    # -- identity links ------------------------------------------------------------------------
    async def get_link(self, identity_key: str) -> str | None:
        with self._guard():
            return _str(await self._client.get(_link(identity_key)))

    async def set_link(self, identity_key: str, user_id: str) -> None:
        with self._guard():
            for _ in range(_LINK_RACES):
                current = _str(await self._client.get(_link(identity_key)))
                keys = [_link(identity_key), _linked(current or ""), _linked(user_id)]
                if await self._set_link(keys=keys, args=(current or "", user_id, identity_key)):
                    return
        raise StoreUnavailable(f"link of {identity_key!r} keeps changing under us")

    async def delete_link(self, identity_key: str) -> None:
        with self._guard():
            for _ in range(_LINK_RACES):
                current = _str(await self._client.get(_link(identity_key)))
                if current is None:
                    return
                keys = [_link(identity_key), _linked(current)]
                if await self._delete_link(keys=keys, args=(current, identity_key)):
                    return
        raise StoreUnavailable(f"link of {identity_key!r} keeps changing under us")

    async def linked_identities(self, user_id: str) -> list[str]:
        with self._guard():
            members = await self._client.smembers(_linked(user_id))
        return sorted(str(m) for m in members)

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
