"""The Redis store's identity links: hash buckets (layout v2), read from the v1 keys they replace.

Key layout (only these keys moved to ``switchboard:v2:``)::

    switchboard:v2:links:<n>    hash: identity key -> the linked Chatbase userId, for the identity
                                keys with crc32(identity key) mod 4096 = n (no TTL)
    switchboard:v2:linked:<n>   hash: identity key -> tag, the reverse index: every identity linked
                                to a userId with crc32(userId) mod 4096 = n, tagged with bits 12-18
                                of that crc32 (0-127) to skip most of the others (no TTL)

Why buckets: one key per link (v1: a ``link:`` string and a ``linked:`` set per userId) cost 152 +
248 bytes of ``MEMORY USAGE``, mostly key names, key-space entries and Redis 7.0's hash-table sets.
As fields of a small hash, which Redis keeps as one compact listpack while it has at most
``hash-max-listpack-entries`` (512 by default) fields of at most ``hash-max-listpack-value`` (64)
bytes, a link and its reverse entry cost about 100 bytes together. 4,096 buckets keep about 25
fields each at 100,000 links (under 128 even with a stricter server) and stay listpacks up to about
1.8 million; past that, or with ids over 64 bytes, a bucket becomes a hash table: still correct,
only larger. A tag can be shared by several userIds, so reverse lookups check each candidate's link.

Lazy migration from v1 (``switchboard:v1:link:<identity key>`` string, ``switchboard:v1:linked:
<userId>`` set): every read looks at both layouts in the same round trip, and a link found in v1 is
moved into its buckets (one script, atomic, that also drops the v1 key and its reverse entry). A
link present in both comes from an instance still running the v1 code after this one wrote v2
(the v2 code deletes the v1 key whenever it writes), so the v1 value is the newer and wins.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gateway.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis.asyncio as aioredis

V1 = "switchboard:v1:"
V2 = "switchboard:v2:"
#: buckets of each kind; changing it would lose every link written with the old count
LINK_BUCKETS = 4096
_TAGS = 128
#: a link that moves between our read and our write is re-read this many times
_LINK_RACES = 5

# KEYS: links bucket, linked bucket of the current v2 target, linked bucket of the new target,
# v1 link, v1 linked set of the v1 target. ARGV: identity key, expected v2 target, expected v1
# target ('' for none), new target ('' to delete the link), its tag.
# Sets, moves (new target = the v1 target) or deletes a link; 0: it changed since it was read.
WRITE_LINK = """
local new = redis.call('HGET', KEYS[1], ARGV[1])
local old = redis.call('GET', KEYS[4])
if (new or '') ~= ARGV[2] or (old or '') ~= ARGV[3] then return 0 end
if new then redis.call('HDEL', KEYS[2], ARGV[1]) end
if old then
  redis.call('DEL', KEYS[4])
  redis.call('SREM', KEYS[5], ARGV[1])
end
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
end
return 1
"""


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def link_bucket(identity_key: str) -> str:
    """The hash holding this identity's link (field: the identity key)."""
    return f"{V2}links:{_crc(identity_key) % LINK_BUCKETS}"


def linked_bucket(user_id: str) -> tuple[str, int]:
    """The hash of the reverse index holding the identities linked to ``user_id``, and their tag."""
    crc = _crc(user_id)
    return f"{V2}linked:{crc % LINK_BUCKETS}", crc // LINK_BUCKETS % _TAGS


def v1_link(identity_key: str) -> str:
    return f"{V1}link:{identity_key}"


def v1_linked(user_id: str) -> str:
    return f"{V1}linked:{user_id}"


class RedisLinks:
    """Mixed into :class:`adapters.stores.redis.RedisStore` (through ``RedisPeople``)."""

    _client: aioredis.Redis

    if TYPE_CHECKING:  # provided by RedisStore

        @contextlib.contextmanager
        def _guard(self) -> Iterator[None]: ...

    def _register_link_scripts(self) -> None:
        self._write_link_script = self._client.register_script(WRITE_LINK)

    async def get_link(self, identity_key: str) -> str | None:
        with self._guard():
            new, old = await self._read_link(identity_key)
            return await self._found_link(identity_key, new, old)

    async def set_link(self, identity_key: str, user_id: str) -> None:
        with self._guard():
            for _ in range(_LINK_RACES):
                new, old = await self._read_link(identity_key)
                if await self._write_link(identity_key, new, old, user_id):
                    return
        raise StoreUnavailable(f"link of {identity_key!r} keeps changing under us")

    async def delete_link(self, identity_key: str) -> None:
        with self._guard():
            for _ in range(_LINK_RACES):
                new, old = await self._read_link(identity_key)
                if (new is None and old is None) or await self._write_link(identity_key, new, old, ""):
                    return
        raise StoreUnavailable(f"link of {identity_key!r} keeps changing under us")

    async def linked_identities(self, user_id: str) -> list[str]:
        bucket, tag = linked_bucket(user_id)
        with self._guard():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(bucket)
                pipe.smembers(v1_linked(user_id))
                tagged, v1_members = await pipe.execute()
            candidates = sorted({key for key, t in tagged.items() if int(t) == tag} | {str(m) for m in v1_members})
            async with self._client.pipeline(transaction=False) as pipe:
                for key in candidates:
                    pipe.hget(link_bucket(key), key)
                    pipe.get(v1_link(key))
                found = await pipe.execute()
            linked = []
            for i, key in enumerate(candidates):
                if await self._found_link(key, found[2 * i], found[2 * i + 1]) == user_id:
                    linked.append(key)
        return linked

    async def _read_link(self, identity_key: str) -> tuple[str | None, str | None]:
        """The identity's link in v2 and in v1, in one round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(link_bucket(identity_key), identity_key)
            pipe.get(v1_link(identity_key))
            new, old = await pipe.execute()
        return new, old

    async def _found_link(self, identity_key: str, new: str | None, old: str | None) -> str | None:
        """The link read as ``new`` (v2) and ``old`` (v1); a v1 link is moved to v2 first."""
        if old is None:
            return new
        # A lost race means another call changed or moved the link meanwhile: nothing left to do.
        await self._write_link(identity_key, new, old, old)
        return old

    async def _write_link(self, identity_key: str, new: str | None, old: str | None, target: str) -> bool:
        """Replace the link read as ``new`` and ``old`` by ``target`` ('' deletes it); False if it changed."""
        current, _ = linked_bucket(new or "")
        bucket, tag = linked_bucket(target) if target else (current, 0)
        keys = [link_bucket(identity_key), current, bucket, v1_link(identity_key), v1_linked(old or "")]
        args = (identity_key, new or "", old or "", target, tag)
        return bool(await self._write_link_script(keys=keys, args=args))
