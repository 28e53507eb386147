"""``redis://[:password@]host:port/db`` (also ``rediss://`` and ``unix:///path.sock?db=N``): shared by instances.

Key layout (a version in every key, so that a later format can live beside this one:
``switchboard:v1:``, but ``switchboard:v2:`` for the links since issue 18)::

    switchboard:v1:journal:<journal key>  hash, pending: e=event JSON, p=progress JSON, a=attempts,
                                          c=conversation key, q=arrival sequence, r=the turn's
                                          read noted before asking the agent (JSON [time,
                                          conversation, link]), n=the sender's rate count; finished: only
                                          s=done|failed, with the dedup TTL (payload dropped, the key
                                          keeps deduplicating)
    switchboard:v1:pending                sorted set of pending journal keys, score = received_at
    switchboard:v1:queue:<conversation>   the same, for one conversation (``journal_head``); Redis
                                          deletes it when its last entry finishes
    switchboard:v1:seq                    arrival counter (breaks received_at ties in arrival order)
    switchboard:v1:conv:<scope key>       string: conversation_id, user_id, last_message_id, updated_at,
                                          paused joined by 0x1f (see _redis_conv: v2 since issue 18,
                                          v1 still read); TTL conversation_ttl, renewed by every put
    switchboard:v2:links:<n>              hash buckets: identity key -> the linked Chatbase userId,
    switchboard:v2:linked:<n>             and the reverse index (no TTL; see _redis_links, which
                                          also reads and moves the v1 link: and linked: keys)
    switchboard:v1:ident:<identity key>   hash: f=first seen, l=last seen (Unix time), and
                                          c:<conversation key>=last seen there; TTL
                                          conversation_ttl, renewed by every touch
    switchboard:v1:idents                 sorted set (all scores 0, so ordered by key): every
                                          identity key; members whose hash expired are dropped
                                          when a listing meets them
    switchboard:v1:val:<key>              string, optional TTL (values and ``incr`` counters)
    switchboard:v1:lock:<key>             string: the owner, with the lease TTL
    switchboard:v1:budget:<budget key>    hash: the agent API's rate budget (see _redis_budget)

Everything that reads and then writes runs as one Lua script, so it is atomic across instances: a
duplicate delivered to two instances at once is recorded exactly once, and an entry can never exist
without its place in ``pending`` or the other way round. Connection errors and timeouts become
:class:`StoreUnavailable` here, once, so callers answer 503 instead of crashing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from adapters.stores import _redis_lua as lua
from adapters.stores._common import StoreBase, bad_url, mask_url, split_url, ttl_ms
from adapters.stores._redis_batch import Pipeline, ScriptBatcher
from adapters.stores._redis_budget import RedisBucket
from adapters.stores._redis_conv import decode_conversation, encode_conversation
from adapters.stores._redis_links import link_bucket, v1_link
from adapters.stores._redis_people import _IDENTS, PREFIX, RedisPeople, _ident
from gateway.batched import READ_NOTE, RateCount, TurnRead, read_note
from gateway.errors import LeaseLost, StoreUnavailable
from gateway.events import InboundEvent
from gateway.store import ConversationState, JournalEntry, JournalStatus, Store

_PENDING = PREFIX + "pending"
_SEQ = PREFIX + "seq"
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})
# redis-py's own URL options that may sit beside ours, e.g. ?socket_timeout=2&dedup_ttl=3d
_PASSTHROUGH = {*URL_QUERY_ARGUMENT_PARSERS, "db", "username", "password", "client_name", "ssl_ca_certs"}
#: connections per gateway process; more commands than this wait (up to ``timeout``) for one
MAX_CONNECTIONS = 64
#: more connections, for journaling webhooks only
INTAKE_CONNECTIONS = 64
try:
    from redis.driver_info import DriverInfo

    # Given once: without it redis-py 8 looks its own version up in the installed package
    # metadata for every new connection, about a millisecond each while a burst grows the pool.
    _DRIVER: dict[str, Any] = {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}
except ImportError:  # redis-py before 7 reads its version once, at import
    _DRIVER = {}
_CONVERSATION_CACHE = 10_000
_UNAVAILABLE = (rex.ConnectionError, rex.TimeoutError, rex.ReadOnlyError, rex.TryAgainError, OSError)


def _journal(key: str) -> str:
    return f"{PREFIX}journal:{key}"


def _queue(conversation_key: str) -> str:
    return f"{PREFIX}queue:{conversation_key}"


class RedisStore(RedisPeople, StoreBase, Store):
    """A :class:`gateway.store.Store` that several gateway instances share."""

    def __init__(
        self,
        url: str,
        *,
        dedup_ttl: float | None = None,
        conversation_ttl: float | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        plain, options = split_url(
            url,
            ("redis", "rediss", "unix"),
            dedup_ttl=dedup_ttl,
            conversation_ttl=conversation_ttl,
            passthrough=_PASSTHROUGH,
        )
        self.url = mask_url(url)
        path = urlsplit(plain).path.strip("/")
        if plain.startswith(("redis:", "rediss:")) and path and not path.isdigit():
            # redis-py would silently fall back to database 0 and mix this data with another's.
            raise bad_url(url, f"the Redis database must be a number, as in redis://host:6379/0, not {path!r}")
        self._dedup_ms = ttl_ms(options.dedup_ttl)
        self._conversation_ms = ttl_ms(options.conversation_ttl)
        try:
            # Short timeouts: a webhook waits on us and must get its 503 inside the platform's
            # deadline. One quick retry on connection errors only reconnects stale pooled sockets
            # after a Redis restart; timeouts are not retried because the command may have run.
            # A blocking pool: under a burst, commands queue for a free connection instead of
            # failing with "Too many connections" (redis-py's default pool refuses past 100).
            def pool(size: int) -> aioredis.BlockingConnectionPool:
                return aioredis.BlockingConnectionPool.from_url(
                    plain,
                    max_connections=size,
                    timeout=timeout,
                    decode_responses=True,
                    socket_connect_timeout=connect_timeout,
                    socket_timeout=timeout,
                    retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1, (rex.ConnectionError,)),
                    **_DRIVER,
                )

            self._client: aioredis.Redis = aioredis.Redis.from_pool(pool(MAX_CONNECTIONS))  # owns it
            # Acks first: webhooks journal through connections of their own, so that under a
            # burst an acknowledgement never waits for a connection behind turn work.
            self._intake: aioredis.Redis = aioredis.Redis.from_pool(pool(INTAKE_CONNECTIONS))
        except ValueError as exc:
            raise bad_url(url, f"not a valid Redis URL: {exc}") from None
        client = self._client
        # Concurrent webhooks' journal writes go out as one pipeline: one round trip for a wave,
        # where each used to wait for a pooled connection and a round trip of its own.
        self._add = ScriptBatcher(self._intake, lua.JOURNAL_ADD)
        self._head = client.register_script(lua.JOURNAL_HEAD)
        #: journal key → conversation key of the heads this process read (journal_finish needs it)
        self._conversation_of: dict[str, str] = {}
        # The turns' scripts too: under load the calls of many turns share a round trip.
        self._turns = Pipeline(client)
        script = self._turns.script
        self._progress = script(lua.JOURNAL_PROGRESS)
        self._progress_leased = script(lua.JOURNAL_PROGRESS_LEASED)
        self._finish = script(lua.JOURNAL_FINISH)
        self._incr = script(lua.INCR)
        self._lock = script(lua.TRY_LOCK)
        self._unlock = script(lua.UNLOCK)
        self._lock_head = script(lua.LOCK_HEAD)
        self._finish_next = script(lua.FINISH_NEXT)
        self._turn_read = script(lua.TURN_READ)
        self._remember = script(lua.REMEMBER)
        self._save_answer = script(lua.SAVE_ANSWER)
        self._register_people_scripts()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis at {self.url} is unavailable: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Check that Redis answers (nothing to create: keys appear as they are written)."""
        await self.ping()

    async def close(self) -> None:
        await self._add.close()
        await self._turns.close()
        await self._intake.aclose()
        await self._client.aclose()

    async def ping(self) -> None:
        with self._guard():
            await self._client.ping()

    def rate_bucket(self) -> RedisBucket:
        """The agent rate budget, shared by every instance on this Redis (``gateway.budget``)."""
        return RedisBucket(self._client, self.url, self._turns)

    # -- journal -------------------------------------------------------------------------------
    async def journal_add(self, entry: JournalEntry) -> bool:
        keys, args = self._add_call(entry)
        with self._guard():
            return bool(await self._add(keys=keys, args=args))

    def _add_call(self, entry: JournalEntry) -> tuple[list[str], tuple[Any, ...]]:
        event = entry.event
        keys = [_journal(entry.key), _PENDING, _queue(event.conversation_key), _SEQ]
        args = (
            event.to_json(),
            json.dumps(entry.progress),
            entry.attempts,
            repr(event.received_at),
            entry.status,
            self._dedup_ms,
            entry.key,
            event.conversation_key,
        )
        return keys, args

    async def journal_add_counted(self, entry: JournalEntry, count: RateCount) -> bool:
        keys, args = self._add_call(entry)
        with self._guard():
            return bool(await self._add(keys=[*keys, f"{PREFIX}val:{count.key}"], args=(*args, ttl_ms(count.window))))

    async def journal_pending(self) -> list[JournalEntry]:
        with self._guard():
            scored = await self._client.zrange(_PENDING, 0, -1, withscores=True)
            return await self._load(cast(list[tuple[str, float]], scored))

    async def journal_conversations(self) -> list[str]:
        with self._guard():
            keys = await self._client.zrange(_PENDING, 0, -1)
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(_journal(str(key)), "c")
                found: list[str | None] = await pipe.execute()
        return sorted({c for c in found if c is not None})  # None: finished in between

    async def journal_head(self, conversation_key: str) -> JournalEntry | None:
        with self._guard():
            found = await self._head(keys=[_queue(conversation_key)], args=(_journal(""),))
        if not found:
            return None
        return self._headed(conversation_key, found)

    async def _load(self, scored: list[tuple[str, float]]) -> list[JournalEntry]:
        """The still-pending entries among ``(key, received_at)``, oldest first, ties in arrival order."""
        async with self._client.pipeline(transaction=False) as pipe:
            for key, _ in scored:
                pipe.hmget(_journal(key), "e", "p", "a", "r", "n", "q")
            rows: list[list[str | None]] = await pipe.execute()
        found = [
            (received_at, int(q), _entry(e, p, a, r, n))
            for (_, received_at), (e, p, a, r, n, q) in zip(scored, rows, strict=True)
            # Finished between the two round trips: no longer pending.
            if e is not None and p is not None and a is not None and q is not None
        ]
        found.sort(key=lambda item: item[:2])
        return [entry for _, _, entry in found]

    async def journal_progress(self, key: str, progress: dict[str, Any], attempts: int) -> None:
        with self._guard():
            await self._progress(keys=[_journal(key)], args=(json.dumps(progress), attempts))

    async def journal_progress_leased(self, key: str, progress: dict[str, Any], attempts: int, lease: str,
                                      owner: str, ttl: float) -> None:
        with self._guard():
            done = await self._progress_leased(keys=[_journal(key), f"{PREFIX}lock:{lease}"],
                                               args=(json.dumps(progress), attempts, owner, ttl_ms(ttl)))
        if int(done) < 0:
            raise LeaseLost.held_elsewhere(lease, key)

    async def journal_finish(self, key: str, status: JournalStatus) -> None:
        with self._guard():
            # The script declares every key it touches, so it needs the conversation first: known
            # when this process read the entry as a head (the usual case), else read from Redis.
            conversation_key = self._conversation_of.pop(key, None) or _text(
                await self._client.hget(_journal(key), "c")
            )
            if conversation_key is not None:
                keys = [_journal(key), _PENDING, _queue(conversation_key)]
                await self._finish(keys=keys, args=(status, self._dedup_ms, key))

    async def journal_forget(self, conversation_key: str) -> None:
        with self._guard():
            pending = await self._client.zrange(_queue(conversation_key), 0, -1)
            for key in pending:  # finishing drops the payload; the key keeps deduplicating
                keys = [_journal(str(key)), _PENDING, _queue(conversation_key)]
                await self._finish(keys=keys, args=("failed", self._dedup_ms, str(key)))

    # -- conversations -------------------------------------------------------------------------
    async def get_conversation(self, scope_key: str) -> ConversationState | None:
        with self._guard():
            raw = _text(await self._client.get(f"{PREFIX}conv:{scope_key}"))
        return None if raw is None else decode_conversation(raw)

    async def put_conversation(self, scope_key: str, state: ConversationState) -> None:
        raw = encode_conversation(state)
        with self._guard():
            await self._client.set(f"{PREFIX}conv:{scope_key}", raw, px=self._conversation_ms)

    async def drop_conversation(self, scope_key: str) -> None:
        with self._guard():
            await self._client.delete(f"{PREFIX}conv:{scope_key}")


    # -- small values ----------------------------------------------------------------------------
    async def get_value(self, key: str) -> str | None:
        with self._guard():
            return _text(await self._client.get(f"{PREFIX}val:{key}"))

    async def set_value(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._guard():
            await self._client.set(f"{PREFIX}val:{key}", value, px=None if ttl is None else ttl_ms(ttl))

    async def delete_value(self, key: str) -> None:
        with self._guard():
            await self._client.delete(f"{PREFIX}val:{key}")

    async def delete_values(self, prefix: str) -> int:
        # SCAN walks the whole keyspace: fine for a privacy request, never used on a hot path.
        pattern = f"{PREFIX}val:{prefix.translate(_GLOB_SPECIAL)}*"
        deleted = 0
        with self._guard():
            batch: list[str] = []
            async for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(str(key))
                if len(batch) == 500:
                    deleted += int(await self._client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self._client.delete(*batch))
        return deleted

    async def incr(self, key: str, ttl: float) -> int:
        with self._guard():
            return int(await self._incr(keys=[f"{PREFIX}val:{key}"], args=(ttl_ms(ttl),)))

    # -- leases ----------------------------------------------------------------------------------
    async def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        with self._guard():
            return bool(await self._lock(keys=[f"{PREFIX}lock:{key}"], args=(owner, ttl_ms(ttl))))

    async def unlock(self, key: str, owner: str) -> None:
        with self._guard():
            await self._unlock(keys=[f"{PREFIX}lock:{key}"], args=(owner,))


    # -- combined calls (gateway.batched): one round trip each -----------------------------------
    async def lock_head(self, lease: str, owner: str, ttl: float,
                        conversation_key: str) -> tuple[bool, JournalEntry | None]:
        with self._guard():
            found = await self._lock_head(keys=[f"{PREFIX}lock:{lease}", _queue(conversation_key)],
                                          args=(owner, ttl_ms(ttl), _journal("")))
        if not int(found[0]):
            return False, None
        return True, None if len(found) == 1 else self._headed(conversation_key, found[1:])

    async def finish_next(self, key: str, status: JournalStatus, conversation_key: str,
                          lease: str, owner: str, ttl: float) -> JournalEntry | None:
        self._conversation_of.pop(key, None)
        keys = [_journal(key), _PENDING, _queue(conversation_key), f"{PREFIX}lock:{lease}"]
        with self._guard():
            found = await self._finish_next(keys=keys, args=(status, self._dedup_ms, key, _journal(""), owner,
                                                             ttl_ms(ttl)))
        return self._headed(conversation_key, found) if found else None

    async def turn_read(self, identity_key: str, conversation_key: str, touch_at: float | None,
                        note: tuple[str, float] | None = None) -> TurnRead:
        keys = [_ident(identity_key), _IDENTS, f"{PREFIX}conv:{conversation_key}", link_bucket(identity_key),
                v1_link(identity_key)]
        if touch_at is None:
            args: tuple[Any, ...] = ("", "", "", "", "")
        else:
            cutoff = touch_at - self._conversation_ms / 1000
            args = (repr(touch_at), conversation_key, self._conversation_ms, identity_key, repr(cutoff))
        args = (*args, identity_key)
        if note is not None:
            keys.append(_journal(note[0]))
            args = (*args, repr(note[1]))
        with self._guard():
            raw, new, old, noted = await self._turn_read(keys=keys, args=args)
            link = await self._found_link(identity_key, new or None, old or None)
        return TurnRead(decode_conversation(raw) if raw else None, link, bool(int(noted)))

    async def remember(self, scope_key: str, state: ConversationState, message_key: str | None,
                       conversation_id: str, message_ttl: float) -> bool:
        keys, args = self._remember_call(scope_key, state, message_key, conversation_id, message_ttl)
        with self._guard():
            return bool(await self._remember(keys=keys, args=args))

    async def save_answer(self, journal_key: str, progress: dict[str, Any], attempts: int, scope_key: str,
                          state: ConversationState, message_key: str | None, conversation_id: str,
                          message_ttl: float, lease: tuple[str, str, float] | None = None) -> bool:
        keys, args = self._remember_call(scope_key, state, message_key, conversation_id, message_ttl)
        keys, args = [_journal(journal_key), *keys], (json.dumps(progress), attempts, *args)
        if lease is not None:
            keys, args = [*keys, f"{PREFIX}lock:{lease[0]}"], (*args, lease[1], ttl_ms(lease[2]))
        with self._guard():
            paused = int(await self._save_answer(keys=keys, args=args))
        if paused < 0 and lease is not None:  # only a fenced call answers -1
            raise LeaseLost.held_elsewhere(lease[0], journal_key)
        return bool(paused)

    def _remember_call(self, scope_key: str, state: ConversationState, message_key: str | None,
                       conversation_id: str, message_ttl: float) -> tuple[list[str], tuple[Any, ...]]:
        """Keys and arguments of REMEMBER: the state encoded both paused and not (the script
        keeps a pause set meanwhile)."""
        paused, state.paused = state.paused, False
        plain = encode_conversation(state)
        state.paused = True
        stopped = encode_conversation(state)
        state.paused = paused
        keys = [f"{PREFIX}conv:{scope_key}", f"{PREFIX}val:{message_key or ''}"]
        args = (plain, stopped, "1" if paused else "", self._conversation_ms,
                conversation_id if message_key else "", ttl_ms(message_ttl))
        return keys, args

    def _headed(self, conversation_key: str, found: list[Any]) -> JournalEntry:
        """The entry of a head read: [key, event, progress, attempts, read note, rate count]."""
        key, event, progress, attempts = (str(v) for v in found[:4])
        if len(self._conversation_of) >= _CONVERSATION_CACHE:
            self._conversation_of.clear()  # entries another instance finished; rare, so never many
        self._conversation_of[key] = conversation_key
        return _entry(event, progress, attempts, *found[4:6])


def _text(value: bytes | str | None) -> str | None:
    """redis-py types replies as bytes or str; with ``decode_responses`` they are always str."""
    return value.decode() if isinstance(value, bytes) else value


def _entry(event: str, progress: str, attempts: str, read: str | None = None,
           count: str | None = None) -> JournalEntry:
    data = json.loads(progress)
    if read:
        at, raw, link = json.loads(read)
        data[READ_NOTE] = read_note(float(at), decode_conversation(raw) if raw else None, link or None)
    return JournalEntry(InboundEvent.from_json(event), "pending", data, int(attempts),
                        int(count) if count else None)


def create(url: str) -> Store:
    """Entry point of ``switchboard.stores``: ``redis://host:port/db`` (options: dedup_ttl, conversation_ttl)."""
    return RedisStore(url)
